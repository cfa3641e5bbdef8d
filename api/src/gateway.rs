//! What a mesh gateway needs from its agent, served at
//! `GET /v1/internal/gateway/view` (a blocking query): its certificate and
//! every peer's trust anchors, identity, permissions and exports.

use serde::{Deserialize, Serialize};

use crate::auth::Permission;

pub const AGENT_PATH_VIEW: &str = "/v1/internal/gateway/view";
/// The service name mesh gateways register under.
pub const SERVICE_NAME: &str = "mesh-gateway";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayView {
    pub cluster: String,
    pub trust_domain: String,
    /// `server.<cluster>.peering.<trust-domain>`: terminated by the gateway.
    pub server_name: String,
    /// The gateway's certificate (server and client auth), the same for
    /// every gateway of the cluster so the token's fingerprint pins it.
    pub certificate_pem: String,
    pub private_key_pem: String,
    /// SHA-256, lower-case hex, of the certificate.
    pub fingerprint: String,
    /// This cluster's own CA roots.
    pub local_root_pems: Vec<String>,
    pub peers: Vec<GatewayPeer>,
    /// Exported services' healthy sidecar endpoints (`host:port`), for
    /// passing peers' service traffic through by SNI.
    #[serde(default)]
    pub endpoints: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayPeer {
    pub name: String,
    /// The peer's state (`PENDING`, `ACTIVE`, ...).
    pub state: String,
    /// Known once the peering is established.
    pub trust_domain: String,
    /// The peer's pinned CA roots; client certificates must chain to them.
    pub root_pems: Vec<String>,
    /// `tls/<name>`.
    pub identity: String,
    pub groups: Vec<String>,
    /// The union of the groups' permissions.
    pub permissions: Vec<Permission>,
    /// Service names exported to this peer (`*` entries expanded).
    pub exported_services: Vec<String>,
}
