//! What a sidecar proxy needs from its agent, besides its leaf certificate
//! (`/v1/agent/connect/ca/leaf/<service>`): served as blocking queries.

use serde::{Deserialize, Serialize};

use crate::config_entry::ServiceIntentions;

/// Trust and policy: `GET /v1/internal/proxy/view`.
pub const AGENT_PATH_VIEW: &str = "/v1/internal/proxy/view";

/// Where an upstream is: `GET /v1/internal/proxy/upstream/<service>[?peer=<peer>]`.
pub fn agent_path_upstream(service: &str, peer: Option<&str>) -> String {
    match peer {
        Some(peer) => format!("/v1/internal/proxy/upstream/{service}?peer={peer}"),
        None => format!("/v1/internal/proxy/upstream/{service}"),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyView {
    pub cluster: String,
    pub trust_domain: String,
    /// The agent's default intention policy.
    pub default_allow: bool,
    pub local_root_pems: Vec<String>,
    /// Established peers: callers from their trust domain are that peer's.
    pub peers: Vec<PeerTrust>,
    /// Every service-intentions entry; the proxy compiles the ones for its service.
    pub intentions: Vec<ServiceIntentions>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerTrust {
    /// Our name for the peering.
    pub name: String,
    pub trust_domain: String,
    /// The peer's cluster (datacenter) name, part of its SPIFFE IDs.
    pub datacenter: String,
    pub root_pems: Vec<String>,
    /// Our services exported to this peer. The gateway routes by the peer
    /// name a caller *claims* in its SNI, so the destination sidecar checks
    /// the caller's real peer (from its certificate) against this list.
    #[serde(default)]
    pub exported_services: Vec<String>,
    /// Of those, the ones this peer's workloads may connect to: exported
    /// to it *and* granted `can_connect` by its identity's auth groups. The
    /// gateway checks `can_connect` for the peer the SNI names, which the
    /// caller chooses; the sidecar checks it again for the peer its
    /// certificate proves. Missing (a view from an older agent) means
    /// nothing is connectable: peers' callers are refused, not let in.
    #[serde(default)]
    pub connectable_services: Vec<String>,
}

/// How to reach an upstream: dial any endpoint, present `sni`, and accept
/// only a server whose SPIFFE ID is `spiffe_id` under `trust_domain`'s roots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpstreamView {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub trust_domain: String,
    pub sni: String,
    #[serde(rename = "SpiffeID")]
    pub spiffe_id: String,
    /// `host:port`: healthy sidecars (local) or the peer's mesh gateways.
    pub endpoints: Vec<String>,
    /// Why there are no endpoints, when there are none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// What callers speak to this service (`tcp`, `http`, `http2`, `grpc`),
    /// from its `service-defaults` or the `proxy-defaults` `global` entry;
    /// `None`: the sidecar's own protocol setting decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}
