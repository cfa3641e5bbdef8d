//! The `mesh` config entry (always named `mesh`): cluster-wide mesh settings.
//!
//! `Peering.PeerThroughMeshGateways` (also `peer_through_mesh_gateways`) is
//! accepted with either value. isthmus peers only through mesh gateways —
//! peering control traffic and service traffic both enter through the
//! cluster's gateway — which is the behaviour Consul has with `true`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_scope, validate_meta, ConfigEntryError};

/// The only name a mesh entry may have.
pub const MESH_ENTRY_NAME: &str = "mesh";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mesh {
    /// Always `mesh`. Consul's JSON for this kind carries no `Name`, so it is
    /// not written out; a document without one gets it.
    #[serde(default, skip_serializing)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "TransparentProxyMesh::is_empty")]
    pub transparent_proxy: TransparentProxyMesh,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_enabling_permissive_mutual_tls: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering: Option<PeeringMesh>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransparentProxyMesh {
    #[serde(default)]
    pub mesh_destinations_only: bool,
}

impl TransparentProxyMesh {
    fn is_empty(&self) -> bool {
        !self.mesh_destinations_only
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeeringMesh {
    #[serde(default)]
    pub peer_through_mesh_gateways: bool,
}

impl Mesh {
    pub(super) fn normalize(&mut self) {
        if self.name.is_empty() {
            self.name = MESH_ENTRY_NAME.to_owned();
        }
    }

    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        if self.name != MESH_ENTRY_NAME {
            return Err(ConfigEntryError::Invalid(format!(
                "invalid name ({:?}), only {MESH_ENTRY_NAME:?} is supported",
                self.name
            )));
        }
        check_scope("Namespace", self.namespace.as_deref())?;
        check_scope("Partition", self.partition.as_deref())?;
        validate_meta(&self.meta)
    }
}
