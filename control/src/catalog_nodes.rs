//! Nodes other than this agent's, written with `PUT /v1/catalog/register`
//! and `/v1/catalog/deregister` (Consul's "external" nodes), stored one
//! record per node in the `nodes` table.
//!
//! As in Consul, the checks of such a node are not run by anyone: they hold
//! the status they were registered with until the next registration.

use isthmus_api::catalog::{
    AgentService, CatalogService, HealthCheck, Node, ServiceEntry, STATUS_CRITICAL, STATUS_PASSING,
};
use isthmus_api::catalog_register::{CatalogDeregistration, CatalogRegistration};
use serde::{Deserialize, Serialize};

use crate::catalog_tables::LocalNode;
use crate::store::{Reads, StoreError, Table, Txn};

/// One external node with everything registered on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExternalNode {
    pub node: Node,
    /// Sorted by service ID.
    pub services: Vec<AgentService>,
    /// Sorted by check ID.
    pub checks: Vec<HealthCheck>,
}

/// Why an external node's registration or deregistration failed, with
/// Consul's texts (the 500s are Consul's RPC errors, kept for clients that
/// match on them).
#[derive(Debug, thiserror::Error)]
pub enum CatalogNodeError {
    /// A required field is missing ("Missing node name", ...).
    #[error("{0}")]
    Missing(&'static str),
    #[error(
        "Node {name:?} is this agent's own node: register its services and checks with \
         /v1/agent/service/register and /v1/agent/check/register"
    )]
    LocalNode { name: String },
    #[error("No path to datacenter")]
    NoPathToDatacenter,
    #[error("Check node {check_node:?} does not match the registration's node {node:?}")]
    CheckNodeMismatch { check_node: String, node: String },
    /// A check names a ServiceID the node does not have.
    #[error("Missing service registration")]
    MissingServiceRegistration,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Node names compare case-insensitively, as in Consul's catalog.
fn key(name: &str) -> String {
    name.to_lowercase()
}

fn refuse_local(local: &LocalNode, name: &str) -> Result<(), CatalogNodeError> {
    if local.name.eq_ignore_ascii_case(name) {
        return Err(CatalogNodeError::LocalNode {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Consul's answer for a datacenter other than ours (an RPC routing error).
pub fn check_datacenter(local: &LocalNode, dc: &str) -> Result<(), CatalogNodeError> {
    if !dc.is_empty() && dc != local.datacenter {
        return Err(CatalogNodeError::NoPathToDatacenter);
    }
    Ok(())
}

/// Validates a registration before any write, with Consul's texts.
pub fn validate(reg: &CatalogRegistration, local: &LocalNode) -> Result<(), CatalogNodeError> {
    if reg.node.is_empty() {
        return Err(CatalogNodeError::Missing("Missing node name"));
    }
    if reg.address.is_empty() && !reg.skip_node_update {
        return Err(CatalogNodeError::Missing("Missing node address"));
    }
    if let Some(service) = &reg.service {
        if service.service.is_empty() {
            return Err(CatalogNodeError::Missing("Missing service name"));
        }
    }
    check_datacenter(local, &reg.datacenter)?;
    refuse_local(local, &reg.node)
}

/// Writes a registration: the node (unless `SkipNodeUpdate` and it exists),
/// then its service, then its checks, each replacing the one with its ID.
pub fn register(
    txn: &mut Txn,
    reg: CatalogRegistration,
    local: &LocalNode,
) -> Result<(), CatalogNodeError> {
    let index = txn.index();
    let key = key(&reg.node);
    let existing: Option<ExternalNode> = txn.get(Table::Nodes, &key)?;
    let mut record = match existing {
        Some(record) if reg.skip_node_update => record,
        Some(mut record) => {
            record.node = Node {
                id: reg.id.clone(),
                node: reg.node.clone(),
                address: reg.address.clone(),
                datacenter: local.datacenter.clone(),
                tagged_addresses: reg.tagged_addresses.clone().unwrap_or_default(),
                meta: reg.node_meta.clone().unwrap_or_default(),
                peer_name: None,
                create_index: record.node.create_index,
                modify_index: index,
            };
            record
        }
        None => {
            if reg.address.is_empty() {
                return Err(CatalogNodeError::Missing("Missing node address"));
            }
            ExternalNode {
                node: Node {
                    id: reg.id.clone(),
                    node: reg.node.clone(),
                    address: reg.address.clone(),
                    datacenter: local.datacenter.clone(),
                    tagged_addresses: reg.tagged_addresses.clone().unwrap_or_default(),
                    meta: reg.node_meta.clone().unwrap_or_default(),
                    peer_name: None,
                    create_index: index,
                    modify_index: index,
                },
                ..ExternalNode::default()
            }
        }
    };

    if let Some(def) = reg.service {
        let id = if def.id.is_empty() {
            def.service.clone()
        } else {
            def.id
        };
        let previous = record.services.iter().position(|s| s.id == id);
        let create_index = previous.map_or(index, |i| record.services[i].create_index);
        let service = AgentService {
            kind: def.kind.filter(|k| !k.is_empty()),
            id,
            service: def.service,
            tags: def.tags.unwrap_or_default(),
            meta: def.meta.unwrap_or_default(),
            port: def.port,
            address: def.address,
            tagged_addresses: def.tagged_addresses.unwrap_or_default(),
            weights: def.weights.unwrap_or_default(),
            enable_tag_override: def.enable_tag_override,
            proxy: def.proxy,
            connect: None,
            peer_name: None,
            datacenter: local.datacenter.clone(),
            create_index,
            modify_index: index,
        };
        match previous {
            Some(i) => record.services[i] = service,
            None => record.services.push(service),
        }
        record.services.sort_by(|a, b| a.id.cmp(&b.id));
    }

    let checks = reg.check.into_iter().chain(reg.checks.unwrap_or_default());
    for mut def in checks {
        // As in Consul, a check without an ID is identified by its name.
        if def.check_id.is_empty() {
            def.check_id = def.name.clone();
        }
        if def.check_id.is_empty() {
            return Err(CatalogNodeError::Missing("Missing check ID"));
        }
        if !def.node.is_empty() && !def.node.eq_ignore_ascii_case(&record.node.node) {
            return Err(CatalogNodeError::CheckNodeMismatch {
                check_node: def.node,
                node: record.node.node,
            });
        }
        let (service_name, service_tags) = if def.service_id.is_empty() {
            (String::new(), Vec::new())
        } else {
            let service = record
                .services
                .iter()
                .find(|s| s.id == def.service_id)
                .ok_or(CatalogNodeError::MissingServiceRegistration)?;
            (service.service.clone(), service.tags.clone())
        };
        let previous = record
            .checks
            .iter()
            .position(|c| c.check_id == def.check_id);
        let create_index = previous.map_or(index, |i| record.checks[i].create_index);
        let check = HealthCheck {
            node: record.node.node.clone(),
            name: if def.name.is_empty() {
                def.check_id.clone()
            } else {
                def.name
            },
            check_id: def.check_id,
            status: if def.status.is_empty() {
                STATUS_CRITICAL.to_owned()
            } else {
                def.status
            },
            notes: def.notes,
            output: def.output,
            service_id: def.service_id,
            service_name,
            service_tags,
            r#type: def.r#type,
            create_index,
            modify_index: index,
            ..HealthCheck::default()
        };
        match previous {
            Some(i) => record.checks[i] = check,
            None => record.checks.push(check),
        }
    }
    // Service checks follow their service's current name and tags.
    for check in &mut record.checks {
        if let Some(s) = record.services.iter().find(|s| s.id == check.service_id) {
            check.service_name = s.service.clone();
            check.service_tags = s.tags.clone();
        }
    }
    record.checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    txn.put(Table::Nodes, &key, &record)?;
    Ok(())
}

/// Applies a deregistration: one check, one service with its checks, or
/// (neither given) the whole node. Unknown names are no-ops, as in Consul.
pub fn deregister(
    txn: &mut Txn,
    dereg: CatalogDeregistration,
    local: &LocalNode,
) -> Result<(), CatalogNodeError> {
    if dereg.node.is_empty() {
        return Err(CatalogNodeError::Missing("Missing node name"));
    }
    check_datacenter(local, &dereg.datacenter)?;
    refuse_local(local, &dereg.node)?;
    let key = key(&dereg.node);
    let Some(mut record) = txn.get::<ExternalNode>(Table::Nodes, &key)? else {
        return Ok(());
    };
    if dereg.service_id.is_empty() && dereg.check_id.is_empty() {
        txn.delete(Table::Nodes, &key)?;
        return Ok(());
    }
    if !dereg.service_id.is_empty() {
        record.services.retain(|s| s.id != dereg.service_id);
        record.checks.retain(|c| c.service_id != dereg.service_id);
    }
    if !dereg.check_id.is_empty() {
        record.checks.retain(|c| c.check_id != dereg.check_id);
    }
    txn.put(Table::Nodes, &key, &record)?;
    Ok(())
}

/// The external node named `name` (any case).
pub fn get(r: &impl Reads, name: &str) -> Result<Option<ExternalNode>, StoreError> {
    r.get(Table::Nodes, &key(name))
}

pub fn all(r: &impl Reads) -> Result<Vec<ExternalNode>, StoreError> {
    r.scan(Table::Nodes, "")
}

/// `/v1/catalog/service/<name>` rows on external nodes.
pub fn catalog_service(r: &impl Reads, name: &str) -> Result<Vec<CatalogService>, StoreError> {
    let mut rows = Vec::new();
    for record in all(r)? {
        for s in record.services.iter().filter(|s| s.service == name) {
            let node = &record.node;
            rows.push(CatalogService {
                id: node.id.clone(),
                node: node.node.clone(),
                address: node.address.clone(),
                datacenter: node.datacenter.clone(),
                tagged_addresses: node.tagged_addresses.clone(),
                node_meta: node.meta.clone(),
                service_kind: s.kind.clone().unwrap_or_default(),
                service_id: s.id.clone(),
                service_name: s.service.clone(),
                service_tags: s.tags.clone(),
                service_address: s.address.clone(),
                service_meta: s.meta.clone(),
                service_port: s.port,
                service_weights: s.weights,
                service_enable_tag_override: s.enable_tag_override,
                service_proxy: s.proxy.clone(),
                create_index: s.create_index,
                modify_index: s.modify_index,
            });
        }
    }
    Ok(rows)
}

/// `/v1/health/service/<name>` entries on external nodes: each instance with
/// its node's node-level checks and its own.
pub fn service_entries(
    r: &impl Reads,
    name: &str,
    passing_only: bool,
) -> Result<Vec<ServiceEntry>, StoreError> {
    let mut entries = Vec::new();
    for record in all(r)? {
        for s in record.services.iter().filter(|s| s.service == name) {
            let checks: Vec<HealthCheck> = record
                .checks
                .iter()
                .filter(|c| c.service_id == s.id || c.service_id.is_empty())
                .cloned()
                .collect();
            if passing_only && checks.iter().any(|c| c.status != STATUS_PASSING) {
                continue;
            }
            entries.push(ServiceEntry {
                node: record.node.clone(),
                service: s.clone(),
                checks,
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use isthmus_api::catalog_register::{CatalogCheck, CatalogServiceDef};

    use super::*;

    fn local() -> LocalNode {
        LocalNode {
            id: "id".into(),
            name: "agent-1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
        }
    }

    fn reg() -> CatalogRegistration {
        CatalogRegistration {
            node: "ext".into(),
            address: "10.0.0.1".into(),
            ..CatalogRegistration::default()
        }
    }

    #[test]
    fn validation_uses_consuls_texts_in_consuls_order() {
        let message = |r: &CatalogRegistration| validate(r, &local()).unwrap_err().to_string();
        assert!(message(&CatalogRegistration::default()).contains("Missing node name"));
        let mut r = reg();
        r.address.clear();
        assert!(message(&r).contains("Missing node address"));
        let mut r = reg();
        r.service = Some(CatalogServiceDef::default());
        assert!(message(&r).contains("Missing service name"));
        let mut r = reg();
        r.datacenter = "dc2".into();
        assert!(message(&r).contains("No path to datacenter"));
        let mut r = reg();
        r.node = "AGENT-1".into();
        assert!(message(&r).contains("own node"));
        assert!(validate(&reg(), &local()).is_ok());
        let mut r = reg();
        r.datacenter = "dc1".into();
        assert!(validate(&r, &local()).is_ok());
    }

    #[test]
    fn a_service_defaults_its_id_and_a_check_its_id_and_status() {
        let store = crate::store::Store::in_memory().unwrap();
        let mut r = reg();
        r.service = Some(CatalogServiceDef {
            service: "db".into(),
            ..CatalogServiceDef::default()
        });
        r.checks = Some(vec![CatalogCheck {
            name: "db-check".into(),
            service_id: "db".into(),
            ..CatalogCheck::default()
        }]);
        store
            .write_blocking(|txn| register(txn, r.clone(), &local()))
            .unwrap();
        let node = get(&store.snapshot().unwrap(), "EXT").unwrap().unwrap();
        assert_eq!(node.services[0].id, "db");
        assert_eq!(node.checks[0].check_id, "db-check");
        assert_eq!(node.checks[0].status, STATUS_CRITICAL);
        assert_eq!(node.checks[0].service_name, "db");
        assert_eq!(node.node.datacenter, "dc1");
    }
}
