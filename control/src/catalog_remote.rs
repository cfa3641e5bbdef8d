//! The catalog's view of the cluster's other agents (`--store etcd`):
//! their services, checks and node records, as their own agents wrote
//! them (the `remote_*` tables, keyed by node), and every agent node's
//! liveness check, `serfHealth` (the `node_health` table, written by the
//! leader from the cluster's membership).
//!
//! Health and catalog queries answer with these next to this agent's own
//! instances, so a service is found on whichever node it runs; an instance
//! on a node whose agent died is critical through its node's `serfHealth`.

use isthmus_api::catalog::{
    AgentService, CatalogService, HealthCheck, Node, ServiceEntry, STATUS_CRITICAL, STATUS_PASSING,
};

use crate::catalog_nodes::ExternalNode;
use crate::catalog_tables::{
    catalog_row, LocalNode, Select, StoredCheck, BY_DESTINATION, BY_KIND, BY_NAME, BY_SERVICE,
    BY_SERVICE_NAME,
};
use crate::store::{Reads, StoreError, Table, Txn, WatchKey};

/// The service every agent node offers, as Consul lists its servers.
pub const SERVER_SERVICE: &str = "consul";

/// The liveness check's ID and name, as Consul's.
pub const SERF_CHECK_ID: &str = "serfHealth";
const SERF_CHECK_NAME: &str = "Serf Health Status";
const SERF_ALIVE: &str = "Agent alive and reachable";
const SERF_DEAD: &str = "Agent not live or unreachable";

/// Splits a remote table's key into its node and the row's own key.
fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, ""))
}

/// A remote node's record as the API shows it (a bare one if its record
/// has not arrived yet).
fn api_node(r: &impl Reads, name: &str) -> Result<Node, StoreError> {
    Ok(match r.get::<LocalNode>(Table::RemoteNodes, name)? {
        Some(node) => node.to_api(),
        None => Node {
            node: name.to_owned(),
            ..Node::default()
        },
    })
}

/// A node's liveness check, if the leader has written one.
pub fn serf_health(r: &impl Reads, node: &str) -> Result<Option<HealthCheck>, StoreError> {
    r.get(Table::NodeHealth, node)
}

/// The checks of `node` that apply to all of its instances: its node
/// checks and its liveness.
fn node_checks(r: &impl Reads, node: &str) -> Result<Vec<HealthCheck>, StoreError> {
    let mut checks: Vec<HealthCheck> = r
        .lookup::<StoredCheck>(Table::RemoteChecks, BY_SERVICE, &format!("{node}/"))?
        .into_iter()
        .map(|c| c.state)
        .collect();
    checks.extend(serf_health(r, node)?);
    Ok(checks)
}

fn instances(
    r: &impl Reads,
    select: Select<'_>,
) -> Result<Vec<(String, AgentService)>, StoreError> {
    match select {
        Select::Named(name) => r.lookup_keyed(Table::RemoteServices, BY_NAME, name),
        Select::ConnectFor(name) => r.lookup_keyed(Table::RemoteServices, BY_DESTINATION, name),
    }
}

/// Other agents' instances with their checks (their own, their node's,
/// its liveness), sorted by check ID.
pub fn service_entries(
    r: &impl Reads,
    local: &LocalNode,
    select: Select<'_>,
    passing_only: bool,
) -> Result<Vec<ServiceEntry>, StoreError> {
    let mut entries = server_entries(r, local, select, passing_only)?;
    for (key, service) in instances(r, select)? {
        let (node, _) = split(&key);
        let mut checks: Vec<HealthCheck> = r
            .lookup::<StoredCheck>(
                Table::RemoteChecks,
                BY_SERVICE,
                &format!("{node}/{}", service.id),
            )?
            .into_iter()
            .map(|c| c.state)
            .chain(node_checks(r, node)?)
            .collect();
        checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
        if passing_only && !checks.iter().all(|c| c.status == STATUS_PASSING) {
            continue;
        }
        entries.push(ServiceEntry {
            node: api_node(r, node)?,
            checks,
            service,
        });
    }
    Ok(entries)
}

/// The `consul` service's instances: one per agent node, with that
/// node's checks.
fn server_entries(
    r: &impl Reads,
    local: &LocalNode,
    select: Select<'_>,
    passing_only: bool,
) -> Result<Vec<ServiceEntry>, StoreError> {
    let Select::Named(name) = select else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for (node, service) in r.lookup_keyed::<AgentService>(Table::ServerServices, BY_NAME, name)? {
        let (api_node, mut checks) = if node == local.name {
            let mut checks: Vec<HealthCheck> = r
                .lookup::<StoredCheck>(Table::Checks, BY_SERVICE, "")?
                .into_iter()
                .map(|c| HealthCheck {
                    node: local.name.clone(),
                    ..c.state
                })
                .collect();
            checks.extend(serf_health(r, &node)?);
            (local.to_api(), checks)
        } else {
            (api_node(r, &node)?, node_checks(r, &node)?)
        };
        checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
        if passing_only && !checks.iter().all(|c| c.status == STATUS_PASSING) {
            continue;
        }
        entries.push(ServiceEntry {
            node: api_node,
            checks,
            service,
        });
    }
    Ok(entries)
}

/// Other agents' instances of `kind` (`mesh-gateway`, ...) whose checks
/// and node all pass.
pub fn passing_of_kind(r: &impl Reads, kind: &str) -> Result<Vec<AgentService>, StoreError> {
    let mut passing = Vec::new();
    for (key, service) in r.lookup_keyed::<AgentService>(Table::RemoteServices, BY_KIND, kind)? {
        let (node, _) = split(&key);
        let own = r.lookup::<StoredCheck>(
            Table::RemoteChecks,
            BY_SERVICE,
            &format!("{node}/{}", service.id),
        )?;
        let healthy = own.iter().all(|c| c.state.status == STATUS_PASSING)
            && node_checks(r, node)?
                .iter()
                .all(|c| c.status == STATUS_PASSING);
        if healthy {
            passing.push(service);
        }
    }
    Ok(passing)
}

/// Other agents' `/v1/catalog/service` rows.
pub fn catalog_rows(
    r: &impl Reads,
    local: &LocalNode,
    select: Select<'_>,
) -> Result<Vec<CatalogService>, StoreError> {
    let servers = match select {
        Select::Named(name) => {
            r.lookup_keyed::<AgentService>(Table::ServerServices, BY_NAME, name)?
        }
        Select::ConnectFor(_) => Vec::new(),
    };
    let servers = servers.into_iter().map(|(node, service)| {
        let node = if node == local.name {
            local.to_api()
        } else {
            api_node(r, &node)?
        };
        Ok(catalog_row(&node, service))
    });
    instances(r, select)?
        .into_iter()
        .map(|(key, service)| {
            let node = api_node(r, split(&key).0)?;
            Ok(catalog_row(&node, service))
        })
        .chain(servers)
        .collect()
}

/// Every service instance the other agents registered, and the agents'
/// own `consul` instances.
pub fn all_services(r: &impl Reads) -> Result<Vec<AgentService>, StoreError> {
    let mut services = r.scan(Table::RemoteServices, "")?;
    services.extend(r.scan::<AgentService>(Table::ServerServices, "")?);
    Ok(services)
}

/// What a health answer for `service` reads besides this agent's rows.
pub fn changed_keys(service: &str) -> [WatchKey; 5] {
    [
        WatchKey::Index(Table::RemoteServices, BY_NAME, service.into()),
        WatchKey::Index(Table::ServerServices, BY_NAME, service.into()),
        WatchKey::Index(Table::RemoteChecks, BY_SERVICE_NAME, service.into()),
        // Other nodes' node checks.
        WatchKey::Index(Table::RemoteChecks, BY_SERVICE_NAME, "".into()),
        WatchKey::Table(Table::NodeHealth),
    ]
}

/// The checks of other agents' instances of `service`, as
/// `/v1/health/checks/<service>` lists them.
pub fn service_checks(r: &impl Reads, service: &str) -> Result<Vec<HealthCheck>, StoreError> {
    Ok(
        r.lookup::<StoredCheck>(Table::RemoteChecks, BY_SERVICE_NAME, service)?
            .into_iter()
            .map(|c| c.state)
            .collect(),
    )
}

/// Another agent's node with its services and every check on it (its
/// services', its node checks and its liveness), shaped as an external
/// node so node-scoped reads treat both alike; names compare
/// case-insensitively, as in Consul's catalog.
pub fn agent_node(r: &impl Reads, name: &str) -> Result<Option<ExternalNode>, StoreError> {
    let Some(name) = r
        .keys(Table::RemoteNodes, "")
        .into_iter()
        .find(|n| n.eq_ignore_ascii_case(name))
    else {
        return Ok(None);
    };
    let prefix = format!("{name}/");
    let services: Vec<AgentService> = r.scan(Table::RemoteServices, &prefix)?;
    let mut checks: Vec<HealthCheck> = r
        .scan::<StoredCheck>(Table::RemoteChecks, &prefix)?
        .into_iter()
        .map(|c| c.state)
        .collect();
    checks.extend(serf_health(r, &name)?);
    checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    Ok(Some(ExternalNode {
        node: api_node(r, &name)?,
        services,
        checks,
    }))
}

/// Every other agent's node, as [`agent_node`] shapes them.
pub fn agent_nodes(r: &impl Reads) -> Result<Vec<ExternalNode>, StoreError> {
    let mut nodes = Vec::new();
    for name in r.keys(Table::RemoteNodes, "") {
        nodes.extend(agent_node(r, &name)?);
    }
    Ok(nodes)
}

/// One agent node as the leader reconciles it.
#[derive(Debug, Clone)]
pub struct AgentNode {
    pub name: String,
    pub address: String,
    /// The port of its HTTP API (its `consul` service's port).
    pub api_port: u16,
    pub alive: bool,
}

/// Brings the `serfHealth` checks and the `consul` service instances in
/// line with the cluster's agents (the leader's job); returns how many
/// rows it changed.
pub fn reconcile_liveness(txn: &mut Txn, nodes: &[AgentNode]) -> Result<usize, StoreError> {
    let mut changed = 0;
    let index = txn.index();
    for node in nodes {
        let (status, output) = if node.alive {
            (STATUS_PASSING, SERF_ALIVE)
        } else {
            (STATUS_CRITICAL, SERF_DEAD)
        };
        let current: Option<HealthCheck> = txn.get(Table::NodeHealth, &node.name)?;
        let same = current
            .as_ref()
            .is_some_and(|c| c.status == status && c.output == output);
        if !same {
            let check = HealthCheck {
                node: node.name.clone(),
                check_id: SERF_CHECK_ID.into(),
                name: SERF_CHECK_NAME.into(),
                status: status.into(),
                output: output.into(),
                create_index: current.as_ref().map_or(index, |c| c.create_index),
                modify_index: index,
                ..HealthCheck::default()
            };
            txn.put(Table::NodeHealth, &node.name, &check)?;
            changed += 1;
        }
        let server: Option<AgentService> = txn.get(Table::ServerServices, &node.name)?;
        let same = server
            .as_ref()
            .is_some_and(|s| s.port == node.api_port && s.address == node.address);
        if !same {
            let service = AgentService {
                id: SERVER_SERVICE.into(),
                service: SERVER_SERVICE.into(),
                address: node.address.clone(),
                port: node.api_port,
                create_index: server.as_ref().map_or(index, |s| s.create_index),
                modify_index: index,
                ..AgentService::default()
            };
            txn.put(Table::ServerServices, &node.name, &service)?;
            changed += 1;
        }
    }
    // Nodes that left the cluster take their rows with them.
    for table in [Table::NodeHealth, Table::ServerServices] {
        for name in txn.keys(table, "") {
            if !nodes.iter().any(|n| n.name == name) {
                txn.delete(table, &name)?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}
