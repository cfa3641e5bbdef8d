Kind           = "service-resolver"
Name           = "backend"
ConnectTimeout = "3s"
DefaultSubset  = "v1"
Subsets = {
  v1 = { Filter = "Service.Meta.version == \"1\"", OnlyPassing = true }
}
Failover = {
  "*" = {
    Targets = [
      { Peer = "cluster-01" },
      { Service = "backend-dr", Peer = "cluster-03" }
    ]
  }
}
