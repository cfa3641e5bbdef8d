//! `service-defaults`, `proxy-defaults` and `mesh`: decoding from HCL and
//! JSON, round trips, and validation texts.

use serde_json::{json, Value};

use super::{decode, error_text, round_trips};
use crate::config_entry::*;

const SERVICE_DEFAULTS_HCL: &str = r#"
Kind     = "service-defaults"
Name     = "backend"
Protocol = "HTTP2"
Mode     = "direct"
MeshGateway { Mode = "remote" }
UpstreamConfig {
  Defaults { ConnectTimeoutMs = 500 }
  Overrides = [
    { Name = "db", Protocol = "tcp" },
    { Name = "billing", Peer = "cluster-02", Protocol = "grpc" }
  ]
}
"#;

const PROXY_DEFAULTS_HCL: &str = r#"
Kind = "proxy-defaults"
Name = "global"
Config {
  protocol = "http"
  local_connect_timeout_ms = 1000
}
"#;

const MESH_HCL: &str = r#"
Kind = "mesh"
Peering {
  PeerThroughMeshGateways = true
}
"#;

fn entry(hcl: &str) -> ConfigEntry {
    let entry = decode(parse_document(hcl).expect("HCL parses")).expect("valid entry");
    round_trips(&entry);
    entry
}

#[test]
fn service_defaults_from_hcl() {
    let ConfigEntry::ServiceDefaults(defaults) = entry(SERVICE_DEFAULTS_HCL) else {
        panic!("wrong kind");
    };
    assert_eq!(
        defaults.protocol(),
        Some("http2"),
        "lower-cased as Consul does"
    );
    assert_eq!(defaults.mesh_gateway.mode, "remote");
    let upstreams = defaults.upstream_config.as_ref().unwrap();
    assert_eq!(
        upstreams.defaults.as_ref().unwrap().connect_timeout_ms,
        Some(500)
    );
    assert_eq!(upstreams.overrides[1].peer.as_deref(), Some("cluster-02"));
}

#[test]
fn proxy_defaults_from_hcl_keep_config_verbatim() {
    let entry = entry(PROXY_DEFAULTS_HCL);
    let ConfigEntry::ProxyDefaults(defaults) = &entry else {
        panic!("wrong kind");
    };
    assert_eq!(defaults.protocol().as_deref(), Some("http"));
    assert_eq!(entry.to_json()["Config"]["local_connect_timeout_ms"], 1000);
    let unnamed = decode(json!({"Kind": "proxy-defaults", "Config": {"Protocol": "TCP"}}))
        .expect("a nameless proxy-defaults is global");
    assert_eq!(unnamed.name(), "global");
    let ConfigEntry::ProxyDefaults(unnamed) = unnamed else {
        panic!("wrong kind");
    };
    assert_eq!(unnamed.protocol().as_deref(), Some("tcp"));
}

#[test]
fn mesh_takes_both_spellings_of_peer_through_mesh_gateways() {
    let entry = entry(MESH_HCL);
    assert_eq!(entry.name(), "mesh");
    assert!(
        entry.to_json().get("Name").is_none(),
        "Consul writes no Name for mesh"
    );
    for (key, value) in [
        ("PeerThroughMeshGateways", true),
        ("peer_through_mesh_gateways", false),
    ] {
        let ConfigEntry::Mesh(mesh) =
            decode(json!({"Kind": "mesh", "Name": "mesh", "Peering": {key: value}})).unwrap()
        else {
            panic!("wrong kind");
        };
        assert_eq!(mesh.peering.unwrap().peer_through_mesh_gateways, value);
    }
}

fn service_defaults(fields: Value) -> Value {
    let mut object = json!({"Kind": "service-defaults", "Name": "backend"});
    object
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    object
}

#[test]
fn validation_texts() {
    let cases = [
        (json!({"Kind": "service-defaults"}), "Name is required"),
        (
            json!({"Kind": "service-defaults", "Name": "*"}),
            "service-defaults name must be the name of a service, and not a wildcard",
        ),
        (
            service_defaults(json!({"Protocol": "udp"})),
            "Protocol \"udp\" is not supported: use one of tcp, http, http2, grpc",
        ),
        (
            service_defaults(json!({"Mode": "sideways"})),
            "Invalid Proxy Mode: \"sideways\"",
        ),
        (
            service_defaults(json!({"MeshGateway": {"Mode": "far"}})),
            "Invalid Mesh Gateway Mode: \"far\"",
        ),
        (
            service_defaults(json!({"UpstreamConfig": {"Overrides": [{"Protocol": "http"}]}})),
            "error in upstream override for : Name is required",
        ),
        (
            service_defaults(json!({"UpstreamConfig": {"Overrides": [{"Name": "*"}]}})),
            "error in upstream override for *: Wildcard name is not supported",
        ),
        (
            service_defaults(json!({"UpstreamConfig": {"Defaults": {"Name": "db"}}})),
            "error in upstream defaults: Name must be empty",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "web"}),
            "invalid name (\"web\"), only \"global\" is supported",
        ),
        (
            json!({"Kind": "proxy-defaults", "Config": {"protocol": "smtp"}}),
            "Config: protocol \"smtp\" is not supported: use one of tcp, http, http2, grpc",
        ),
        (
            json!({"Kind": "proxy-defaults", "Config": {"protocol": 7}}),
            "Config.protocol must be a string",
        ),
        (
            json!({"Kind": "mesh", "Name": "other"}),
            "invalid name (\"other\"), only \"mesh\" is supported",
        ),
        (
            json!({"Kind": "mesh", "Peering": {"PeerThroughMeshGateways": "yes"}}),
            "Peering.PeerThroughMeshGateways must be true or false",
        ),
        (json!({"Kind": "mesh", "TLS": {}}), "unknown field \"TLS\""),
    ];
    for (value, expected) in cases {
        assert_eq!(error_text(value.clone()), expected, "{value}");
    }
}
