//! What the peering code works with, handed to it by the agent: the
//! store, this cluster's identity, node and CA, the live sessions, the
//! replication counters and the limits on what a peer may send.

use std::sync::Arc;

use isthmus_api::peering_limits::ImportLimits;

use super::gateway_probe::GatewayProbes;
use super::manager::PeeringManager;
use crate::ca::CertificateAuthority;
use crate::catalog::LocalNode;
use crate::cluster::ClusterIdentity;
use crate::metrics::PeerMetrics;
use crate::store::Store;

pub struct PeeringContext {
    pub store: Store,
    pub cluster: ClusterIdentity,
    /// The node this cluster's exported instances are on.
    pub node: LocalNode,
    pub ca: Arc<CertificateAuthority>,
    /// Live sessions, dial tasks and deletions.
    pub manager: PeeringManager,
    pub metrics: PeerMetrics,
    /// What the leader's probes of the peers' gateways last found.
    pub probes: GatewayProbes,
    /// The largest replication stream message accepted from a peer.
    pub max_message_bytes: usize,
    /// How much a peer may export to us.
    pub import_limits: ImportLimits,
}
