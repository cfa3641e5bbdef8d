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

use crate::catalog_tables::{
    catalog_row, LocalNode, Select, StoredCheck, BY_DESTINATION, BY_KIND, BY_NAME, BY_SERVICE,
};
use crate::store::{Reads, StoreError, Table, Txn, WatchKey};

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
    select: Select<'_>,
    passing_only: bool,
) -> Result<Vec<ServiceEntry>, StoreError> {
    let mut entries = Vec::new();
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
pub fn catalog_rows(r: &impl Reads, select: Select<'_>) -> Result<Vec<CatalogService>, StoreError> {
    instances(r, select)?
        .into_iter()
        .map(|(key, service)| {
            let node = api_node(r, split(&key).0)?;
            Ok(catalog_row(&node, service))
        })
        .collect()
}

/// Every service instance the other agents registered.
pub fn all_services(r: &impl Reads) -> Result<Vec<AgentService>, StoreError> {
    r.scan(Table::RemoteServices, "")
}

/// What a health answer for `service` reads besides this agent's rows.
pub fn changed_keys(service: &str) -> [WatchKey; 3] {
    [
        WatchKey::Index(Table::RemoteServices, BY_NAME, service.into()),
        WatchKey::Table(Table::RemoteChecks),
        WatchKey::Table(Table::NodeHealth),
    ]
}

/// Every agent node's record: this one and the others.
pub fn agent_nodes(r: &impl Reads, local: &LocalNode) -> Result<Vec<Node>, StoreError> {
    let mut nodes = vec![local.to_api()];
    for node in r.scan::<LocalNode>(Table::RemoteNodes, "")? {
        nodes.push(node.to_api());
    }
    Ok(nodes)
}

/// Brings the `serfHealth` checks in line with which agents are alive
/// (the leader's job); returns how many it changed.
pub fn reconcile_liveness(
    txn: &mut Txn,
    alive: &[String],
    failed: &[String],
) -> Result<usize, StoreError> {
    let mut changed = 0;
    let wanted = alive
        .iter()
        .map(|n| (n, STATUS_PASSING, SERF_ALIVE))
        .chain(failed.iter().map(|n| (n, STATUS_CRITICAL, SERF_DEAD)));
    for (node, status, output) in wanted {
        let current: Option<HealthCheck> = txn.get(Table::NodeHealth, node)?;
        if current
            .as_ref()
            .is_some_and(|c| c.status == status && c.output == output)
        {
            continue;
        }
        let index = txn.index();
        let check = HealthCheck {
            node: node.clone(),
            check_id: SERF_CHECK_ID.into(),
            name: SERF_CHECK_NAME.into(),
            status: status.into(),
            output: output.into(),
            create_index: current.as_ref().map_or(index, |c| c.create_index),
            modify_index: index,
            ..HealthCheck::default()
        };
        txn.put(Table::NodeHealth, node, &check)?;
        changed += 1;
    }
    // Nodes that left the cluster take their liveness with them.
    for node in txn.keys(Table::NodeHealth, "") {
        if !alive.contains(&node) && !failed.contains(&node) {
            txn.delete(Table::NodeHealth, &node)?;
            changed += 1;
        }
    }
    Ok(changed)
}
