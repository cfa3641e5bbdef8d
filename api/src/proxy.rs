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
    /// The target the endpoints belong to, `service` or `service@peer`:
    /// where the resolved chain (redirect, failover) led. Empty from an
    /// agent that does not resolve chains; then it is `service[@peer]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Each target the chain considered, in order, and why it was chosen or
    /// skipped. At most one step is chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainStep>,
    /// The service-resolver's `ConnectTimeout` (TCP connect plus TLS
    /// handshake), in milliseconds; `None`: the sidecar's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
}

impl UpstreamView {
    /// [`UpstreamView::target`], or what it is for an agent that leaves it empty.
    pub fn target_label(&self) -> String {
        if self.target.is_empty() {
            target_label(&self.service, self.peer.as_deref())
        } else {
            self.target.clone()
        }
    }
}

/// `service`, or `service@peer` for a peer's service.
pub fn target_label(service: &str, peer: Option<&str>) -> String {
    match peer {
        Some(peer) => format!("{service}@{peer}"),
        None => service.to_owned(),
    }
}

/// One target of an upstream's resolved chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainStep {
    /// `service` or `service@peer`.
    pub target: String,
    /// Whether the upstream's endpoints are this target's.
    pub chosen: bool,
    /// Why it was chosen or skipped.
    pub reason: String,
}
