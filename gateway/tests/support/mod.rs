//! Test support for the gateway: the local and peer clusters as the
//! gateway view carries them, built on the shared test kit (PKI, stub
//! agent, metrics, admin requests, bodies), a client that dials the gateway
//! as a peer, and a stub sidecar for service traffic passed through.
#![allow(dead_code, unused_imports)]

pub mod peer_client;
pub mod sidecar;

use std::collections::BTreeMap;

use isthmus_api::auth::{builtin_peering_permissions, Permission};
use isthmus_api::gateway::{GatewayPeer, GatewayView};
pub use isthmus_testkit::admin::{admin_get, admin_metrics, wait_for_metric};
pub use isthmus_testkit::body::{channel, full, read_all, RequestBody};
pub use isthmus_testkit::metrics::parse_prometheus;
pub use isthmus_testkit::net::{closed_addr, wait_closed};
pub use isthmus_testkit::pki::{Ca, Leaf};
pub use isthmus_testkit::process::{ready_line, sigterm_and_wait};
pub use isthmus_testkit::stub_agent::StubAgent;
pub use isthmus_testkit::wait::eventually;
pub use isthmus_testkit::WAIT;
pub use peer_client::*;
pub use sidecar::*;

pub const LOCAL_CLUSTER: &str = "cluster-01";
pub const LOCAL_TD: &str = "aaaa.isthmus";

pub fn server_name() -> String {
    isthmus_api::peering::server_name(LOCAL_CLUSTER, LOCAL_TD)
}

/// A peer cluster: its CA and its gateway's (client) certificate.
pub struct PeerCluster {
    pub name: String,
    pub trust_domain: String,
    pub ca: Ca,
    pub gateway: Leaf,
}

impl PeerCluster {
    pub fn new(name: &str, trust_domain: &str) -> PeerCluster {
        let ca = Ca::new(trust_domain, name);
        let gateway = ca.gateway_leaf();
        PeerCluster {
            name: name.into(),
            trust_domain: trust_domain.into(),
            ca,
            gateway,
        }
    }

    /// The view entry for this cluster, with the built-in `peering` group.
    pub fn peer(&self, state: &str, exported: &[&str]) -> GatewayPeer {
        GatewayPeer {
            name: self.name.clone(),
            state: state.into(),
            trust_domain: self.trust_domain.clone(),
            root_pems: vec![self.ca.pem.clone()],
            identity: format!("tls/{}", self.name),
            groups: vec!["peering".into()],
            permissions: builtin_peering_permissions(),
            exported_services: exported.iter().map(|s| s.to_string()).collect(),
        }
    }
}

pub fn can_view(service: &str) -> Permission {
    Permission {
        entity_type: "service".into(),
        entity_name: Some(service.into()),
        entitlement: "can_view".into(),
    }
}

/// The local cluster: CA and gateway certificate, as the view carries them.
pub struct LocalCluster {
    pub ca: Ca,
    pub gateway: Leaf,
}

impl LocalCluster {
    pub fn new() -> LocalCluster {
        let ca = Ca::new(LOCAL_TD, LOCAL_CLUSTER);
        let gateway = ca.gateway_leaf();
        LocalCluster { ca, gateway }
    }

    pub fn view(&self, peers: Vec<GatewayPeer>) -> GatewayView {
        GatewayView {
            cluster: LOCAL_CLUSTER.into(),
            trust_domain: LOCAL_TD.into(),
            server_name: server_name(),
            certificate_pem: self.gateway.cert_pem.clone(),
            private_key_pem: self.gateway.key_pem.clone(),
            fingerprint: self.gateway.fingerprint.clone(),
            local_root_pems: vec![self.ca.pem.clone()],
            peers,
            endpoints: BTreeMap::new(),
        }
    }
}
