//! The catalog's records as the store keeps them: the node record, stored
//! checks, the secondary indexes health and catalog queries select on, and
//! the row shapes both this agent's catalog and the other agents'
//! (`catalog_remote`) answer with.

use std::collections::BTreeMap;
use std::time::Duration;

use isthmus_api::catalog::{
    AgentService, CatalogService, CheckDefinition, HealthCheck, Node, KIND_CONNECT_PROXY,
};
use isthmus_api::duration;
use serde::{Deserialize, Serialize};

use crate::check_kind::{check_kind, CheckKind};
use crate::store::{Schema, Table};

/// Index of `services` by service name.
pub const BY_NAME: &str = "name";
/// Index of `services` by the service a sidecar proxy fronts.
pub const BY_DESTINATION: &str = "destination";
/// Index of `services` by kind (typical services, the most, are not in it).
pub const BY_KIND: &str = "kind";
/// Index of typical services (not proxies or gateways) by name: its
/// values are the names a `*` export covers.
pub const TYPICAL_BY_NAME: &str = "typical-name";
/// Index of `checks` by service ID (`""` for node checks).
pub const BY_SERVICE: &str = "service";
/// Index of `checks` by the name of their service (`""` for node checks).
pub const BY_SERVICE_NAME: &str = "service-name";

/// The catalog's tables as the store keeps them: decoded once, indexed by
/// what health and catalog queries select on, so a query costs what it
/// returns, not the size of the catalog.
pub fn schema() -> Schema {
    fn service_name(s: &AgentService) -> Vec<String> {
        vec![s.service.clone()]
    }
    /// The service a connect query for it finds this instance under: the
    /// one a sidecar fronts, or a Connect-native instance's own (as
    /// Consul's connect index files them).
    fn destination(s: &AgentService) -> Vec<String> {
        match &s.proxy {
            Some(proxy) if s.kind.as_deref() == Some(KIND_CONNECT_PROXY) => {
                vec![proxy.destination_service_name.clone()]
            }
            _ if s.connect.as_ref().is_some_and(|c| c.native) => vec![s.service.clone()],
            _ => Vec::new(),
        }
    }
    fn kind(s: &AgentService) -> Vec<String> {
        s.kind.iter().filter(|k| !k.is_empty()).cloned().collect()
    }
    fn typical_name(s: &AgentService) -> Vec<String> {
        match s.kind.as_deref() {
            None | Some("") => vec![s.service.clone()],
            Some(_) => Vec::new(),
        }
    }
    fn check_service(c: &StoredCheck) -> Vec<String> {
        vec![c.state.service_id.clone()]
    }
    fn check_service_name(c: &StoredCheck) -> Vec<String> {
        vec![c.state.service_name.clone()]
    }
    /// Other agents' checks by `<node>/<service ID>` (`<node>/` for
    /// their node checks): service IDs repeat across nodes.
    fn remote_check_service(c: &StoredCheck) -> Vec<String> {
        vec![format!("{}/{}", c.state.node, c.state.service_id)]
    }
    let service_indexes = || {
        vec![
            (BY_NAME, service_name as fn(&AgentService) -> Vec<String>),
            (BY_DESTINATION, destination),
            (BY_KIND, kind),
            (TYPICAL_BY_NAME, typical_name),
        ]
    };
    Schema::new()
        .table::<AgentService>(Table::Services, service_indexes())
        .table::<StoredCheck>(
            Table::Checks,
            vec![
                (BY_SERVICE, check_service as fn(&StoredCheck) -> Vec<String>),
                (BY_SERVICE_NAME, check_service_name),
            ],
        )
        .table::<AgentService>(Table::RemoteServices, service_indexes())
        .table::<AgentService>(Table::ServerServices, service_indexes())
        .table::<StoredCheck>(
            Table::RemoteChecks,
            vec![
                (
                    BY_SERVICE,
                    remote_check_service as fn(&StoredCheck) -> Vec<String>,
                ),
                (BY_SERVICE_NAME, check_service_name),
            ],
        )
}

/// The node this agent represents in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalNode {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
}

impl LocalNode {
    pub fn to_api(&self) -> Node {
        Node {
            id: self.id.clone(),
            node: self.name.clone(),
            address: self.address.clone(),
            datacenter: self.datacenter.clone(),
            tagged_addresses: BTreeMap::from([
                ("lan".to_owned(), self.address.clone()),
                ("wan".to_owned(), self.address.clone()),
            ]),
            ..Node::default()
        }
    }
}

/// A check's state together with the definition the agent runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCheck {
    pub state: HealthCheck,
    pub definition: CheckDefinition,
}

/// `Type` of the maintenance checks (`agent_checks`): the check runner
/// leaves them alone and re-registering a service keeps them.
pub const TYPE_MAINTENANCE: &str = "maintenance";

impl StoredCheck {
    /// How to run this check; definitions are validated at registration so
    /// this only fails on a corrupt store.
    pub fn kind(&self) -> Result<CheckKind, String> {
        check_kind(&self.definition, "Check")
    }

    /// Remove the service once the check has been critical this long.
    pub fn deregister_after(&self) -> Option<Duration> {
        self.definition
            .deregister_critical_service_after
            .as_deref()
            .and_then(|d| duration::parse(d).ok())
    }
}

/// Which instances a health query returns.
#[derive(Debug, Clone, Copy)]
pub enum Select<'a> {
    /// Instances of the named service.
    Named(&'a str),
    /// Sidecar proxies fronting the named service (`/v1/health/connect`).
    ConnectFor(&'a str),
}

/// One `/v1/catalog/service` row: an instance on `node`.
pub fn catalog_row(node: &Node, s: AgentService) -> CatalogService {
    CatalogService {
        id: node.id.clone(),
        node: node.node.clone(),
        address: node.address.clone(),
        datacenter: node.datacenter.clone(),
        tagged_addresses: node.tagged_addresses.clone(),
        node_meta: node.meta.clone(),
        service_kind: s.kind.clone().unwrap_or_default(),
        service_id: s.id,
        service_name: s.service,
        service_tags: s.tags,
        service_address: s.address,
        service_meta: s.meta,
        service_port: s.port,
        service_weights: s.weights,
        service_enable_tag_override: s.enable_tag_override,
        service_proxy: s.proxy,
        create_index: s.create_index,
        modify_index: s.modify_index,
    }
}
