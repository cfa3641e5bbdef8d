//! Checks registered on their own (`/v1/agent/check/register`) and the
//! maintenance-mode checks (`/v1/agent/maintenance`,
//! `/v1/agent/service/maintenance/<id>`), stored in the `checks` table next
//! to the checks that come with a service registration.
//!
//! A check without a ServiceID is a node check: it counts for every
//! instance on this node in health queries, as in Consul.

use isthmus_api::catalog::{
    AgentService, CheckDefinition, HealthCheck, STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING,
};

use crate::catalog::{self, LocalNode, StoredCheck, TYPE_MAINTENANCE};
use crate::check_kind;
use crate::store::{Reads, StoreError, Table, Txn};

pub const NODE_MAINTENANCE_CHECK_ID: &str = "_node_maintenance";
const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";
const DEFAULT_NODE_REASON: &str = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.";
const DEFAULT_SERVICE_REASON: &str = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.";

/// Why a check registration, deregistration or maintenance change failed,
/// with Consul's texts.
#[derive(Debug, thiserror::Error)]
pub enum AgentCheckError {
    /// The check definition is not valid.
    #[error("{0}")]
    InvalidCheck(String),
    /// The check names a ServiceID that is not registered.
    #[error("ServiceID {service_id:?} does not exist")]
    UnknownOwner { service_id: String },
    #[error("Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck { id: String },
    /// Maintenance asked for a service that is not registered.
    #[error("No service registered with ID {id:?}")]
    UnknownService { id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn service_maintenance_check_id(service_id: &str) -> String {
    format!("{SERVICE_MAINTENANCE_PREFIX}{service_id}")
}

/// Validates a `PUT /v1/agent/check/register` body into the check to
/// store (its ServiceID is checked against the store by [`register`]).
pub fn prepare(mut def: CheckDefinition, node: &LocalNode) -> Result<StoredCheck, AgentCheckError> {
    let name = def.name.clone().filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Err(AgentCheckError::InvalidCheck("Missing check name".into()));
    };
    let status = def.status.clone().filter(|s| !s.is_empty());
    if let Some(s) = &status {
        if ![STATUS_PASSING, STATUS_WARNING, STATUS_CRITICAL].contains(&s.as_str()) {
            return Err(AgentCheckError::InvalidCheck("Bad check status".into()));
        }
    }
    let kind = check_kind::check_kind(&def, "Check")
        .map_err(|e| AgentCheckError::InvalidCheck(format!("Invalid check: {e}")))?;
    if let Some(d) = &def.deregister_critical_service_after {
        check_kind::parse_duration_field("DeregisterCriticalServiceAfter", d)
            .map_err(|e| AgentCheckError::InvalidCheck(format!("Invalid check: {e}")))?;
    }
    let check_id = def
        .check_id
        .clone()
        .or_else(|| def.id.clone())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| name.clone());
    if check_id.contains('/') || check_id.chars().any(char::is_control) {
        return Err(AgentCheckError::InvalidCheck(format!(
            "Invalid check: CheckID {check_id:?} must not contain '/'"
        )));
    }
    let service_id = def.service_id.clone().unwrap_or_default();
    if service_id.is_empty() {
        // Only a service can be deregistered when its check stays critical.
        def.deregister_critical_service_after = None;
    }
    def.check_id = Some(check_id.clone());
    def.id = None;
    def.service_id = Some(service_id.clone()).filter(|s| !s.is_empty());
    Ok(StoredCheck {
        state: HealthCheck {
            node: node.name.clone(),
            check_id,
            name,
            status: status.unwrap_or_else(|| STATUS_CRITICAL.to_owned()),
            notes: def.notes.clone().unwrap_or_default(),
            service_id,
            r#type: check_kind::check_type(&kind).to_owned(),
            interval: def.interval.clone().unwrap_or_default(),
            timeout: def.timeout.clone().unwrap_or_default(),
            ..HealthCheck::default()
        },
        definition: def,
    })
}

fn owning_service(txn: &Txn, service_id: &str) -> Result<Option<AgentService>, AgentCheckError> {
    if service_id.is_empty() {
        return Ok(None);
    }
    let service: Option<AgentService> = txn.get(Table::Services, service_id)?;
    service
        .map(Some)
        .ok_or_else(|| AgentCheckError::UnknownOwner {
            service_id: service_id.to_owned(),
        })
}

/// Writes a check registered on its own, replacing one with the same ID
/// (which keeps its status when it is of the same type, so re-registering
/// does not flap).
pub fn register(txn: &mut Txn, mut check: StoredCheck) -> Result<StoredCheck, AgentCheckError> {
    if let Some(service) = owning_service(txn, &check.state.service_id)? {
        check.state.service_name = service.service;
        check.state.service_tags = service.tags;
    }
    let index = txn.index();
    match catalog::get_check(txn, &check.state.check_id)? {
        Some(existing) => {
            check.state.create_index = existing.state.create_index;
            if existing.state.r#type == check.state.r#type
                && existing.state.service_id == check.state.service_id
                && check.definition.status.is_none()
            {
                check.state.status = existing.state.status;
                check.state.output = existing.state.output;
            }
        }
        None => check.state.create_index = index,
    }
    check.state.modify_index = index;
    txn.put(Table::Checks, &check.state.check_id, &check)?;
    Ok(check)
}

/// Removes a check by ID, whatever registered it.
pub fn deregister(txn: &mut Txn, check_id: &str) -> Result<(), AgentCheckError> {
    if !txn.delete(Table::Checks, check_id)? {
        // Consul vets the check ID before deregistering, with this text.
        return Err(AgentCheckError::UnknownCheck {
            id: check_id.to_owned(),
        });
    }
    Ok(())
}

fn maintenance_check(
    node: &LocalNode,
    check_id: String,
    name: &str,
    reason: &str,
    service: Option<&AgentService>,
) -> StoredCheck {
    StoredCheck {
        state: HealthCheck {
            node: node.name.clone(),
            check_id: check_id.clone(),
            name: name.to_owned(),
            status: STATUS_CRITICAL.to_owned(),
            notes: reason.to_owned(),
            service_id: service.map(|s| s.id.clone()).unwrap_or_default(),
            service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
            service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
            r#type: TYPE_MAINTENANCE.to_owned(),
            ..HealthCheck::default()
        },
        definition: CheckDefinition {
            check_id: Some(check_id),
            name: Some(name.to_owned()),
            notes: Some(reason.to_owned()),
            status: Some(STATUS_CRITICAL.to_owned()),
            service_id: service.map(|s| s.id.clone()),
            ..CheckDefinition::default()
        },
    }
}

fn put_new(txn: &mut Txn, mut check: StoredCheck) -> Result<(), AgentCheckError> {
    if catalog::get_check(txn, &check.state.check_id)?.is_some() {
        return Ok(()); // already in maintenance: Consul keeps the first reason
    }
    let index = txn.index();
    check.state.create_index = index;
    check.state.modify_index = index;
    txn.put(Table::Checks, &check.state.check_id, &check)?;
    Ok(())
}

/// Turns node maintenance on or off.
pub fn node_maintenance(
    txn: &mut Txn,
    node: &LocalNode,
    enable: bool,
    reason: &str,
) -> Result<(), AgentCheckError> {
    if !enable {
        txn.delete(Table::Checks, NODE_MAINTENANCE_CHECK_ID)?;
        return Ok(());
    }
    let reason = if reason.is_empty() {
        DEFAULT_NODE_REASON
    } else {
        reason
    };
    let check = maintenance_check(
        node,
        NODE_MAINTENANCE_CHECK_ID.to_owned(),
        "Node Maintenance Mode",
        reason,
        None,
    );
    put_new(txn, check)
}

/// Turns a service's maintenance on or off.
pub fn service_maintenance(
    txn: &mut Txn,
    node: &LocalNode,
    service_id: &str,
    enable: bool,
    reason: &str,
) -> Result<(), AgentCheckError> {
    let service: AgentService =
        txn.get(Table::Services, service_id)?
            .ok_or_else(|| AgentCheckError::UnknownService {
                id: service_id.to_owned(),
            })?;
    let check_id = service_maintenance_check_id(service_id);
    if !enable {
        txn.delete(Table::Checks, &check_id)?;
        return Ok(());
    }
    let reason = if reason.is_empty() {
        DEFAULT_SERVICE_REASON
    } else {
        reason
    };
    let check = maintenance_check(
        node,
        check_id,
        "Service Maintenance Mode",
        reason,
        Some(&service),
    );
    put_new(txn, check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> LocalNode {
        LocalNode {
            id: "id".into(),
            name: "n1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
        }
    }

    #[test]
    fn the_check_id_defaults_to_the_name_and_node_checks_never_deregister() {
        let check = prepare(
            CheckDefinition {
                name: Some("disk".into()),
                ttl: Some("10s".into()),
                deregister_critical_service_after: Some("1m".into()),
                ..CheckDefinition::default()
            },
            &node(),
        )
        .unwrap();
        assert_eq!(check.state.check_id, "disk");
        assert_eq!(check.state.status, STATUS_CRITICAL);
        assert_eq!(check.state.r#type, "ttl");
        assert_eq!(check.deregister_after(), None);
    }

    #[test]
    fn a_service_check_keeps_its_deregistration_deadline() {
        let check = prepare(
            CheckDefinition {
                name: Some("disk".into()),
                id: Some("disk-1".into()),
                service_id: Some("web".into()),
                tcp: Some("127.0.0.1:80".into()),
                interval: Some("1s".into()),
                deregister_critical_service_after: Some("1m".into()),
                ..CheckDefinition::default()
            },
            &node(),
        )
        .unwrap();
        assert_eq!(check.state.check_id, "disk-1");
        assert_eq!(check.state.service_id, "web");
        assert_eq!(check.state.r#type, "tcp");
        assert_eq!(
            check.deregister_after(),
            Some(std::time::Duration::from_secs(60))
        );
    }
}
