Kind = "mesh"
Peering {
  peer_through_mesh_gateways = true
}
