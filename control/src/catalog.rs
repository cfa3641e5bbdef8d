//! The catalog: registered service instances and their health checks on
//! this node, stored in the `services` and `checks` tables.

use std::collections::{BTreeMap, HashSet};

use isthmus_api::catalog::{
    AgentService, AgentServiceConnect, CatalogService, CheckDefinition, HealthCheck, ServiceEntry,
    ServiceRegistration, KIND_CONNECT_PROXY, KIND_MESH_GATEWAY, STATUS_CRITICAL, STATUS_PASSING,
    STATUS_WARNING,
};

use crate::catalog_remote;
pub use crate::catalog_tables::{
    catalog_row, schema, LocalNode, Select, StoredCheck, BY_DESTINATION, BY_KIND, BY_NAME,
    BY_SERVICE, BY_SERVICE_NAME, TYPE_MAINTENANCE, TYPICAL_BY_NAME,
};
use crate::check_kind::{check_kind, check_type, parse_duration_field};
use crate::store::{Reads, StoreError, Table, Txn, WatchKey};

/// Why a service registration, deregistration or check update failed.
/// The texts are Consul's, as clients and scripts match on them.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The registration body is not a valid service definition.
    #[error("{0}")]
    InvalidRegistration(String),
    #[error("CheckID {check_id:?} already belongs to service {owner:?}")]
    CheckOwnedByAnotherService { check_id: String, owner: String },
    #[error(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    )]
    UnknownService { id: String },
    #[error("Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck { id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A validated registration, ready to write.
#[derive(Debug, Clone)]
pub struct Registration {
    pub service: AgentService,
    pub checks: Vec<StoredCheck>,
}

fn validate_service_id(id: &str) -> Result<(), CatalogError> {
    if id.is_empty() || id.len() > 256 || id.contains('/') || id.chars().any(char::is_control) {
        return Err(CatalogError::InvalidRegistration(format!(
            "ID: {id:?} is not a valid service ID: it must be 1 to 256 characters without '/'"
        )));
    }
    Ok(())
}

/// Validates a `PUT /v1/agent/service/register` body.
pub fn prepare(reg: ServiceRegistration, node: &LocalNode) -> Result<Registration, CatalogError> {
    if reg.name.is_empty() {
        return Err(CatalogError::InvalidRegistration(
            "Missing service name".into(),
        ));
    }
    isthmus_api::naming::validate_dns_label("Name: service name", &reg.name)
        .map_err(CatalogError::InvalidRegistration)?;
    let id = reg.id.clone().unwrap_or_else(|| reg.name.clone());
    validate_service_id(&id)?;
    for (field, value) in [("Namespace", &reg.namespace), ("Partition", &reg.partition)] {
        if let Some(v) = value {
            if !v.is_empty() && v != "default" {
                return Err(CatalogError::InvalidRegistration(format!(
                    "{field}: {v:?} is not supported: isthmus has only the \"default\" {}",
                    field.to_lowercase()
                )));
            }
        }
    }
    let kind = reg.kind.clone().filter(|k| !k.is_empty());
    match kind.as_deref() {
        None => {
            if reg.proxy.is_some() {
                return Err(CatalogError::InvalidRegistration("Proxy: only valid for services of Kind \"connect-proxy\" or \"mesh-gateway\"".into()));
            }
        }
        Some(KIND_CONNECT_PROXY) => {
            let dest = reg.proxy.as_ref().map(|p| p.destination_service_name.as_str());
            if dest.is_none_or(str::is_empty) {
                return Err(CatalogError::InvalidRegistration("Proxy.DestinationServiceName must be set for Connect proxy".into()));
            }
            if reg.port.unwrap_or(0) == 0 {
                return Err(CatalogError::InvalidRegistration("Port must be set for a Connect proxy".into()));
            }
        }
        Some(KIND_MESH_GATEWAY) => {
            if reg.port.unwrap_or(0) == 0 {
                return Err(CatalogError::InvalidRegistration("Port must be set for a mesh-gateway".into()));
            }
        }
        Some(other) => {
            return Err(CatalogError::InvalidRegistration(format!(
                "Kind: invalid service kind {other:?}: expected \"connect-proxy\" or \"mesh-gateway\" (or none)"
            )))
        }
    }

    let mut definitions: Vec<(String, CheckDefinition)> = Vec::new();
    if let Some(check) = reg.check.clone() {
        definitions.push(("Check".to_owned(), check));
    }
    for (i, check) in reg.checks.iter().enumerate() {
        definitions.push((format!("Checks[{i}]"), check.clone()));
    }
    let numbered = definitions.len() > 1;
    let mut seen = HashSet::new();
    let mut checks = Vec::with_capacity(definitions.len());
    for (n, (field, mut def)) in definitions.into_iter().enumerate() {
        let kind = check_kind(&def, &field).map_err(CatalogError::InvalidRegistration)?;
        if let Some(d) = &def.deregister_critical_service_after {
            parse_duration_field(&format!("{field}.DeregisterCriticalServiceAfter"), d)
                .map_err(CatalogError::InvalidRegistration)?;
        }
        let status = def
            .status
            .clone()
            .unwrap_or_else(|| STATUS_CRITICAL.to_owned());
        if ![STATUS_PASSING, STATUS_WARNING, STATUS_CRITICAL].contains(&status.as_str()) {
            return Err(CatalogError::InvalidRegistration(format!(
                "{field}.Status: {status:?} is not one of passing, warning or critical"
            )));
        }
        let check_id = def
            .check_id
            .clone()
            .or_else(|| def.id.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| {
                if numbered {
                    format!("service:{id}:{}", n + 1)
                } else {
                    format!("service:{id}")
                }
            });
        if check_id.contains('/') {
            return Err(CatalogError::InvalidRegistration(format!(
                "{field}.CheckID: {check_id:?} must not contain '/'"
            )));
        }
        if !seen.insert(check_id.clone()) {
            return Err(CatalogError::InvalidRegistration(format!(
                "{field}.CheckID: {check_id:?} is used more than once"
            )));
        }
        def.check_id = Some(check_id.clone());
        def.id = None;
        def.service_id = Some(id.clone());
        checks.push(StoredCheck {
            state: HealthCheck {
                node: node.name.clone(),
                check_id,
                name: def
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("Service '{}' check", reg.name)),
                status,
                notes: def.notes.clone().unwrap_or_default(),
                output: String::new(),
                service_id: id.clone(),
                service_name: reg.name.clone(),
                service_tags: reg.tags.clone(),
                r#type: check_type(&kind).to_owned(),
                interval: def.interval.clone().unwrap_or_default(),
                timeout: def.timeout.clone().unwrap_or_default(),
                ..HealthCheck::default()
            },
            definition: def,
        });
    }

    let service = AgentService {
        kind,
        id,
        service: reg.name,
        tags: reg.tags,
        meta: reg.meta,
        port: reg.port.unwrap_or(0),
        address: reg.address.unwrap_or_default(),
        tagged_addresses: reg.tagged_addresses,
        weights: reg.weights.unwrap_or_default(),
        enable_tag_override: reg.enable_tag_override,
        proxy: reg.proxy,
        connect: reg
            .connect
            .filter(|c| c.native)
            .map(|_| AgentServiceConnect { native: true }),
        datacenter: node.datacenter.clone(),
        ..AgentService::default()
    };
    Ok(Registration { service, checks })
}

/// What a registration changed, for the check runner.
pub struct Registered {
    pub registration: Registration,
    /// Checks the service had before and no longer has.
    pub dropped_checks: Vec<String>,
}

/// Writes a registration, replacing the service's previous checks. A check
/// that already existed keeps its status, so re-registering does not flap.
pub fn register(txn: &mut Txn, mut reg: Registration) -> Result<Registered, CatalogError> {
    let index = txn.index();
    let previous: Option<AgentService> = txn.get(Table::Services, &reg.service.id)?;
    reg.service.create_index = previous.map_or(index, |p| p.create_index);
    reg.service.modify_index = index;

    let old_checks = service_checks(txn, &reg.service.id)?;
    for check in &mut reg.checks {
        if let Some(existing) = txn.get::<StoredCheck>(Table::Checks, &check.state.check_id)? {
            if existing.state.service_id != reg.service.id {
                return Err(CatalogError::CheckOwnedByAnotherService {
                    check_id: check.state.check_id.clone(),
                    owner: existing.state.service_id,
                });
            }
            check.state.create_index = existing.state.create_index;
            if existing.state.r#type == check.state.r#type {
                check.state.status = existing.state.status;
                check.state.output = existing.state.output;
            }
        } else {
            check.state.create_index = index;
        }
        check.state.modify_index = index;
    }
    let keep: HashSet<&str> = reg
        .checks
        .iter()
        .map(|c| c.state.check_id.as_str())
        .collect();
    let mut dropped_checks = Vec::new();
    for mut old in old_checks {
        if old.state.r#type == TYPE_MAINTENANCE {
            // Re-registering does not end maintenance (as in Consul).
            old.state.service_name = reg.service.service.clone();
            old.state.service_tags = reg.service.tags.clone();
            txn.put(Table::Checks, &old.state.check_id, &old)?;
        } else if !keep.contains(old.state.check_id.as_str()) {
            txn.delete(Table::Checks, &old.state.check_id)?;
            dropped_checks.push(old.state.check_id);
        }
    }
    txn.put(Table::Services, &reg.service.id, &reg.service)?;
    for check in &reg.checks {
        txn.put(Table::Checks, &check.state.check_id, check)?;
    }
    Ok(Registered {
        registration: reg,
        dropped_checks,
    })
}

/// Removes a service and its checks; returns the removed check IDs.
pub fn deregister(txn: &mut Txn, service_id: &str) -> Result<Vec<String>, CatalogError> {
    if !txn.delete(Table::Services, service_id)? {
        return Err(CatalogError::UnknownService {
            id: service_id.to_owned(),
        });
    }
    let mut removed = Vec::new();
    for check in service_checks(txn, service_id)? {
        txn.delete(Table::Checks, &check.state.check_id)?;
        removed.push(check.state.check_id);
    }
    Ok(removed)
}

/// Records a check result; writes only when status or output changed.
pub fn set_check_status(
    txn: &mut Txn,
    check_id: &str,
    status: &str,
    output: &str,
) -> Result<StoredCheck, CatalogError> {
    let mut check: StoredCheck =
        txn.get(Table::Checks, check_id)?
            .ok_or_else(|| CatalogError::UnknownCheck {
                id: check_id.to_owned(),
            })?;
    if check.state.status != status || check.state.output != output {
        check.state.status = status.to_owned();
        check.state.output = output.to_owned();
        check.state.modify_index = txn.index();
        txn.put(Table::Checks, check_id, &check)?;
    }
    Ok(check)
}

pub fn get_service(r: &impl Reads, service_id: &str) -> Result<Option<AgentService>, StoreError> {
    r.get(Table::Services, service_id)
}

pub fn all_services(r: &impl Reads) -> Result<Vec<AgentService>, StoreError> {
    r.scan(Table::Services, "")
}

pub fn all_checks(r: &impl Reads) -> Result<Vec<StoredCheck>, StoreError> {
    r.scan(Table::Checks, "")
}

/// The checks of every instance of `service` on this node, as the API
/// shows them.
pub fn service_name_checks(
    r: &impl Reads,
    node: &LocalNode,
    service: &str,
) -> Result<Vec<HealthCheck>, StoreError> {
    Ok(
        r.lookup::<StoredCheck>(Table::Checks, BY_SERVICE_NAME, service)?
            .into_iter()
            .map(|c| HealthCheck {
                node: node.name.clone(),
                ..c.state
            })
            .collect(),
    )
}

/// Every check's state as the API shows it: on this node as it is named now.
pub fn check_states(r: &impl Reads, node: &LocalNode) -> Result<Vec<HealthCheck>, StoreError> {
    Ok(all_checks(r)?
        .into_iter()
        .map(|c| HealthCheck {
            node: node.name.clone(),
            ..c.state
        })
        .collect())
}

pub fn get_check(r: &impl Reads, check_id: &str) -> Result<Option<StoredCheck>, StoreError> {
    r.get(Table::Checks, check_id)
}

fn service_checks(r: &impl Reads, service_id: &str) -> Result<Vec<StoredCheck>, StoreError> {
    r.lookup(Table::Checks, BY_SERVICE, service_id)
}

/// The checks that apply to one instance (its own, then the node's), as
/// the API shows them: on this node as it is named now.
fn instance_checks(
    r: &impl Reads,
    node: &LocalNode,
    service_id: &str,
    node_checks: &[HealthCheck],
) -> Result<Vec<HealthCheck>, StoreError> {
    let mut checks: Vec<HealthCheck> = service_checks(r, service_id)?
        .into_iter()
        .map(|c| HealthCheck {
            node: node.name.clone(),
            ..c.state
        })
        .chain(node_checks.iter().cloned())
        .collect();
    checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    Ok(checks)
}

/// The index at which anything a health answer for `service` is built
/// from last changed: its instances, their checks, the node's checks. One
/// lookup each, no rows read.
pub fn service_changed_at(r: &impl Reads, service: &str) -> u64 {
    [
        WatchKey::Index(Table::Services, BY_NAME, service.into()),
        WatchKey::Index(Table::Checks, BY_SERVICE_NAME, service.into()),
        WatchKey::Index(Table::Checks, BY_SERVICE, "".into()),
    ]
    .into_iter()
    .chain(catalog_remote::changed_keys(service))
    .map(|key| r.changed_at(&key))
    .max()
    .unwrap_or(0)
}

/// Whether every check of an instance (its own and the node's) passes.
pub fn instance_passing(r: &impl Reads, service_id: &str) -> Result<bool, StoreError> {
    let passing =
        |checks: Vec<StoredCheck>| checks.iter().all(|c| c.state.status == STATUS_PASSING);
    Ok(passing(service_checks(r, service_id)?) && passing(service_checks(r, "")?))
}

/// Instances with their checks, sorted by service ID.
pub fn service_entries(
    r: &impl Reads,
    node: &LocalNode,
    select: Select<'_>,
    passing_only: bool,
) -> Result<Vec<ServiceEntry>, StoreError> {
    let services: Vec<AgentService> = match select {
        Select::Named(name) => r.lookup(Table::Services, BY_NAME, name)?,
        Select::ConnectFor(name) => r.lookup(Table::Services, BY_DESTINATION, name)?,
    };
    let mut node_checks: Vec<HealthCheck> = service_checks(r, "")?
        .into_iter()
        .map(|c| HealthCheck {
            node: node.name.clone(),
            ..c.state
        })
        .collect();
    node_checks.extend(catalog_remote::serf_health(r, &node.name)?);
    let api_node = node.to_api();
    let mut entries = Vec::with_capacity(services.len());
    for service in services {
        let checks = instance_checks(r, node, &service.id, &node_checks)?;
        if passing_only && !checks.iter().all(|c| c.status == STATUS_PASSING) {
            continue;
        }
        entries.push(ServiceEntry {
            node: api_node.clone(),
            checks,
            service,
        });
    }
    entries.extend(catalog_remote::service_entries(
        r,
        node,
        select,
        passing_only,
    )?);
    entries.sort_by(|a, b| (&a.service.id, &a.node.node).cmp(&(&b.service.id, &b.node.node)));
    Ok(entries)
}

/// `/v1/catalog/service/<name>` rows (`Named`), or `/v1/catalog/connect/<name>`
/// rows (`ConnectFor`: the sidecar proxies that front `name`).
pub fn catalog_service(
    r: &impl Reads,
    node: &LocalNode,
    select: Select<'_>,
) -> Result<Vec<CatalogService>, StoreError> {
    let api_node = node.to_api();
    let services: Vec<AgentService> = match select {
        Select::Named(name) => r.lookup(Table::Services, BY_NAME, name)?,
        Select::ConnectFor(name) => r.lookup(Table::Services, BY_DESTINATION, name)?,
    };
    let mut rows: Vec<CatalogService> = services
        .into_iter()
        .map(|s| catalog_row(&api_node, s))
        .chain(catalog_remote::catalog_rows(r, node, select)?)
        .collect();
    rows.sort_by(|a, b| a.service_id.cmp(&b.service_id));
    Ok(rows)
}

/// `/v1/catalog/services`: every service name with the union of its tags.
pub fn service_names(r: &impl Reads) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in all_services(r)?
        .into_iter()
        .chain(catalog_remote::all_services(r)?)
    {
        let tags = names.entry(s.service).or_default();
        for tag in s.tags {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    for tags in names.values_mut() {
        tags.sort();
    }
    Ok(names)
}

/// `host:port` of every healthy sidecar fronting `service` on this node.
pub fn sidecar_endpoints(
    r: &impl Reads,
    node: &LocalNode,
    service: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(service_entries(r, node, Select::ConnectFor(service), true)?
        .into_iter()
        .map(|entry| {
            let host = if entry.service.address.is_empty() {
                entry.node.address.clone()
            } else {
                entry.service.address.clone()
            };
            if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{}", entry.service.port)
            } else {
                format!("{host}:{}", entry.service.port)
            }
        })
        .collect())
}
