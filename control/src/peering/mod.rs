//! Peerings (LXD: cluster links) as the control plane keeps them, and the
//! machinery that keeps them alive: token and exchange (acceptor side),
//! establish and the dialing loop (dialer side), and the replication
//! stream both sides speak, and the leader's probes of the peers' gateways.

pub mod context;
pub mod delete;
pub mod dial;
pub mod error;
pub mod gateway_probe;
pub mod manager;
pub mod stream;
pub mod token;

use std::collections::BTreeMap;

use isthmus_api::auth::{self, Permission};
use isthmus_api::catalog::{AgentService, ServiceEntry, KIND_MESH_GATEWAY};
use isthmus_api::config_entry::{ConfigEntry, KIND_EXPORTED_SERVICES};
use isthmus_api::peering::{self as api, Peering, Remote, StreamStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::{self, LocalNode, Select};
use crate::config_entries;
use crate::store::{Reads, StoreError, Table, Txn};

pub use context::PeeringContext;
pub use error::PeeringError;
pub use manager::PeeringManager;

/// Which end of the peering this cluster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Generated the token; the peer dials in through our gateway.
    Acceptor,
    /// Established with a token; keeps the stream open.
    Dialer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Acceptor => "acceptor",
            Role::Dialer => "dialer",
        }
    }
}

/// A pending establishment secret (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSecret {
    pub hash: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// A peering as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeeringRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The lifecycle state (`PENDING` … `TERMINATED`); `ACTIVE`/`FAILING`
    /// follow the stream and its heartbeats.
    pub state: String,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// The other side's ID for this peering.
    #[serde(default)]
    pub peer_id: String,
    #[serde(default)]
    pub peer_server_name: String,
    /// The peer's mesh gateway addresses.
    #[serde(default)]
    pub peer_server_addresses: Vec<String>,
    /// The peer's CA roots, pinned: the trust bundle.
    #[serde(default)]
    pub peer_ca_pems: Vec<String>,
    #[serde(default)]
    pub peer_trust_domain: String,
    /// SHA-256 of the peer's gateway certificate (the identity's identifier).
    #[serde(default)]
    pub peer_gateway_fingerprint: String,
    #[serde(default)]
    pub remote: Remote,
    /// Auth groups of the peer's identity `tls/<name>`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The peer's name for this cluster: the `<peer>` part of the SNI our
    /// workloads dial the peer's exported services with.
    #[serde(default)]
    pub name_at_peer: String,
    /// Acceptor: the current establishment secret.
    #[serde(default)]
    pub establishment: Option<PendingSecret>,
    /// Acceptor: hash of the stream secret; dialer: the secret itself.
    #[serde(default)]
    pub stream_secret: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `secret` hashes to `stored_hash`, in time that does not depend
/// on where the two hashes first differ.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let computed = hash_secret(secret);
    computed.len() == stored_hash.len()
        && computed
            .bytes()
            .zip(stored_hash.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// A random secret: 32 bytes of two v4 UUIDs' randomness, hex.
pub fn new_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

impl PeeringRecord {
    pub fn identity_name(&self) -> String {
        format!("tls/{}", self.name)
    }

    /// Whether the peer has completed establishment (its identity is known).
    pub fn established(&self) -> bool {
        !self.peer_trust_domain.is_empty()
            && !matches!(
                self.state.as_str(),
                api::STATE_PENDING | api::STATE_TERMINATED | api::STATE_DELETING
            )
    }

    pub fn identity(&self) -> auth::Identity {
        let pending = self.peer_gateway_fingerprint.is_empty();
        auth::Identity {
            authentication_method: "tls".into(),
            r#type: if pending {
                api::IDENTITY_TYPE_LINK_PENDING.into()
            } else {
                api::IDENTITY_TYPE_LINK.into()
            },
            name: self.name.clone(),
            identifier: self.peer_gateway_fingerprint.clone(),
            groups: self.groups.clone(),
            trust_domain: self.peer_trust_domain.clone(),
        }
    }
}

pub fn get(r: &impl Reads, name: &str) -> Result<Option<PeeringRecord>, StoreError> {
    r.get(Table::Peerings, name)
}

pub fn list(r: &impl Reads) -> Result<Vec<PeeringRecord>, StoreError> {
    r.scan(Table::Peerings, "")
}

pub fn find_by_id(r: &impl Reads, id: &str) -> Result<Option<PeeringRecord>, StoreError> {
    Ok(list(r)?.into_iter().find(|p| p.id == id))
}

/// Writes `record`, stamping its indexes.
pub fn put(txn: &mut Txn, mut record: PeeringRecord) -> Result<PeeringRecord, StoreError> {
    let index = txn.index();
    if record.create_index == 0 {
        record.create_index = index;
    }
    record.modify_index = index;
    txn.put(Table::Peerings, &record.name.clone(), &record)?;
    Ok(record)
}

/// Changes a peering's state if it is still there and different.
pub fn set_state(
    txn: &mut Txn,
    name: &str,
    state: &str,
) -> Result<Option<PeeringRecord>, StoreError> {
    let Some(mut record) = get(txn, name)? else {
        return Ok(None);
    };
    if record.state == state {
        return Ok(Some(record));
    }
    record.state = state.to_owned();
    put(txn, record).map(Some)
}

/// The peer deleted its side: keep the record as `TERMINATED`, drop what we
/// imported and the peer's trust bundle at once.
pub fn mark_terminated(txn: &mut Txn, name: &str) -> Result<(), StoreError> {
    if let Some(mut record) = get(txn, name)? {
        record.state = api::STATE_TERMINATED.into();
        record.peer_ca_pems.clear();
        record.stream_secret = None;
        put(txn, record)?;
    }
    drop_imported(txn, name)
}

/// Addresses of this cluster's mesh gateways whose checks pass.
pub fn gateway_addresses(r: &impl Reads) -> Result<Vec<String>, StoreError> {
    let mut gateways = Vec::new();
    for s in r.lookup::<AgentService>(Table::Services, catalog::BY_KIND, KIND_MESH_GATEWAY)? {
        if catalog::instance_passing(r, &s.id)? {
            gateways.push(s);
        }
    }
    // Gateways registered through the cluster's other agents (etcd).
    gateways.extend(crate::catalog_remote::passing_of_kind(
        r,
        KIND_MESH_GATEWAY,
    )?);
    let mut addresses: Vec<String> = gateways
        .into_iter()
        .map(|s| {
            if s.address.contains(':') && !s.address.starts_with('[') {
                format!("[{}]:{}", s.address, s.port)
            } else {
                format!("{}:{}", s.address, s.port)
            }
        })
        .filter(|a| api::valid_server_address(a))
        .collect();
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

/// Removes every service imported from `peer`.
pub fn drop_imported(txn: &mut Txn, peer: &str) -> Result<(), StoreError> {
    for key in imported_keys(txn, peer)? {
        txn.delete(Table::Imported, &key)?;
    }
    Ok(())
}

fn imported_keys(r: &impl Reads, peer: &str) -> Result<Vec<String>, StoreError> {
    Ok(r.keys(Table::Imported, &format!("{peer}/")))
}

/// Names of the services imported from `peer`.
pub fn imported_names(r: &impl Reads, peer: &str) -> Result<Vec<String>, StoreError> {
    let prefix = format!("{peer}/");
    Ok(imported_keys(r, peer)?
        .into_iter()
        .map(|key| key[prefix.len()..].to_owned())
        .collect())
}

pub fn imported_service(
    r: &impl Reads,
    peer: &str,
    service: &str,
) -> Result<Vec<ServiceEntry>, StoreError> {
    Ok(r.get(Table::Imported, &format!("{peer}/{service}"))?
        .unwrap_or_default())
}

/// The union of the permissions of `groups` (missing groups grant nothing).
pub fn permissions(r: &impl Reads, groups: &[String]) -> Result<Vec<Permission>, StoreError> {
    let mut all = Vec::new();
    for name in groups {
        if name == auth::BUILTIN_PEERING_GROUP {
            all.extend(auth::builtin_peering_permissions());
        } else if let Some(group) = r.get::<auth::Group>(Table::AuthGroups, name)? {
            all.extend(group.permissions);
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// The exported-services entry (there is one, named `default`).
fn exports(
    r: &impl Reads,
) -> Result<Option<isthmus_api::config_entry::ExportedServices>, StoreError> {
    Ok(
        match config_entries::get(r, KIND_EXPORTED_SERVICES, "default")? {
            Some(ConfigEntry::ExportedServices(e)) => Some(e),
            _ => None,
        },
    )
}

/// Names of the services this cluster exports to `peer` that `peer`'s
/// identity may see: the exported-services entry (`*` expanded to every
/// registered service) filtered by the identity's permissions.
pub fn exported_names(r: &impl Reads, record: &PeeringRecord) -> Result<Vec<String>, StoreError> {
    let Some(exports) = exports(r)? else {
        return Ok(Vec::new());
    };
    let permissions = permissions(r, &record.groups)?;
    let mut names: Vec<String> = Vec::new();
    for exported in exports.services_for_peer(&record.name) {
        if exported == "*" {
            // Every typical service's name, from the index: no scan, and
            // a watcher wakes only when a name appears or goes.
            names.extend(r.index_values(Table::Services, catalog::TYPICAL_BY_NAME)?);
        } else {
            names.push(exported.to_owned());
        }
    }
    names.sort();
    names.dedup();
    names.retain(|n| auth::can_view_service(&permissions, n));
    Ok(names)
}

/// Of `exported` (what [`exported_names`] gave for `record`), the services
/// `record`'s peer may connect to: those its identity's groups grant
/// `can_connect` on. The sidecars check a caller's real peering against
/// this, whatever peer name the caller put in its SNI.
pub fn connectable_names(
    r: &impl Reads,
    record: &PeeringRecord,
    exported: &[String],
) -> Result<Vec<String>, StoreError> {
    let permissions = permissions(r, &record.groups)?;
    Ok(exported
        .iter()
        .filter(|name| auth::can_connect_service(&permissions, name))
        .cloned()
        .collect())
}

/// An exported service's instances as sent to a peer: all instances, each
/// with one check carrying the worst status of its checks.
pub fn flattened_instances(
    r: &impl Reads,
    node: &LocalNode,
    service: &str,
) -> Result<Vec<ServiceEntry>, StoreError> {
    let mut entries = catalog::service_entries(r, node, Select::Named(service), false)?;
    for entry in &mut entries {
        let status = entry.aggregate_status().to_owned();
        let template = entry.checks.first().cloned().unwrap_or_default();
        entry.checks = vec![isthmus_api::catalog::HealthCheck {
            node: entry.node.node.clone(),
            check_id: format!("{}:overall-check", entry.service.id),
            name: "overall-check".into(),
            status,
            service_id: entry.service.id.clone(),
            service_name: entry.service.service.clone(),
            service_tags: entry.service.tags.clone(),
            r#type: String::new(),
            create_index: template.create_index,
            modify_index: template.modify_index,
            ..Default::default()
        }];
    }
    Ok(entries)
}

/// The API view of a peering, with live stream status.
pub fn to_api(
    r: &impl Reads,
    record: &PeeringRecord,
    status: manager::LiveStatus,
) -> Result<Peering, StoreError> {
    Ok(Peering {
        id: record.id.clone(),
        name: record.name.clone(),
        partition: "default".into(),
        deleted_at: record.deleted_at.clone(),
        meta: record.meta.clone(),
        state: record.state.clone(),
        peer_id: record.peer_id.clone(),
        peer_ca_pems: record.peer_ca_pems.clone(),
        peer_server_name: record.peer_server_name.clone(),
        peer_server_addresses: record.peer_server_addresses.clone(),
        stream_status: StreamStatus {
            imported_services: imported_names(r, &record.name)?,
            exported_services: if record.established() {
                exported_names(r, record)?
            } else {
                Vec::new()
            },
            last_heartbeat: status.last_heartbeat,
            last_receive: status.last_receive,
            last_send: status.last_send,
        },
        remote: record.remote.clone(),
        role: record.role.as_str().into(),
        identity: record.identity_name(),
        create_index: record.create_index,
        modify_index: record.modify_index,
    })
}

#[cfg(test)]
mod tests {
    use super::{hash_secret, new_secret, secret_matches};

    #[test]
    fn secrets_match_only_their_own_hash() {
        let secret = new_secret();
        let stored = hash_secret(&secret);
        assert!(secret_matches(&secret, &stored));
        assert!(!secret_matches(&new_secret(), &stored));
        assert!(!secret_matches(&secret, &stored[..63]));
        assert!(!secret_matches(&secret, ""));
    }
}
