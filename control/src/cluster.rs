//! Who this cluster is: its name, UUID and trust domain, fixed at first
//! start and kept in the store.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterIdentity {
    pub id: String,
    pub name: String,
    pub trust_domain: String,
}
