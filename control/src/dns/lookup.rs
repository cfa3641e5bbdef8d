//! What a parsed DNS name finds in one store snapshot: the healthy
//! instances of a service (here, on external catalog nodes, or imported
//! from a peer), a node's address, or nothing. Plain reads, no waiting.

use isthmus_api::acl::Authorizer;

use crate::acl_filter::{entry_readable, node_readable, service_readable};
use std::net::IpAddr;

use isthmus_api::catalog::{ServiceEntry, STATUS_PASSING, STATUS_WARNING};
use isthmus_api::dns_name::{DnsLookup, Scope, ServiceQuery};
use rand::seq::SliceRandom;

use crate::catalog::{self, LocalNode, Select};
use crate::catalog_nodes;
use crate::store::{Reads, StoreError};

/// One instance a service answer points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The service name (for its TTL).
    pub service: String,
    pub node: String,
    pub node_address: String,
    /// The instance's own address, or its node's when it has none.
    pub address: String,
    pub port: u16,
}

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The domain itself.
    Apex,
    /// A service's healthy instances, shuffled (possibly none: the name
    /// exists but no instance is healthy, or none matches the tag).
    Endpoints(Vec<Endpoint>),
    /// A node and its address.
    Node { node: String, address: String },
    /// An `.addr.` name: the address it encodes.
    Addr(IpAddr),
    /// No such service, node, datacenter or peer.
    NoSuchName,
}

/// Resolves `lookup` against `r` as the agent on `local` sees it.
pub fn find(
    r: &impl Reads,
    local: &LocalNode,
    lookup: &DnsLookup,
    only_passing: bool,
    authz: &Authorizer,
) -> Result<Found, StoreError> {
    let other_datacenter = |dc: &Option<String>| {
        dc.as_deref()
            .is_some_and(|dc| !dc.eq_ignore_ascii_case(&local.datacenter))
    };
    match lookup {
        DnsLookup::Apex => Ok(Found::Apex),
        DnsLookup::Addr { datacenter, .. } if other_datacenter(datacenter) => Ok(Found::NoSuchName),
        DnsLookup::Addr { ip, .. } => Ok(Found::Addr(*ip)),
        DnsLookup::Node { datacenter, .. } if other_datacenter(datacenter) => Ok(Found::NoSuchName),
        // What the token may not read does not exist, as in Consul.
        DnsLookup::Node { node, .. } if !node_readable(authz, node) => Ok(Found::NoSuchName),
        DnsLookup::Node { node, .. } => node_address(r, local, node),
        DnsLookup::Service(query) => {
            if let Scope::Local { datacenter } = &query.scope {
                if other_datacenter(datacenter) {
                    return Ok(Found::NoSuchName);
                }
            }
            service(r, local, query, only_passing, authz)
        }
    }
}

fn node_address(r: &impl Reads, local: &LocalNode, node: &str) -> Result<Found, StoreError> {
    if node.eq_ignore_ascii_case(&local.name) {
        return Ok(Found::Node {
            node: local.name.clone(),
            address: local.address.clone(),
        });
    }
    Ok(match catalog_nodes::get(r, node)? {
        Some(external) => Found::Node {
            node: external.node.node,
            address: external.node.address,
        },
        None => Found::NoSuchName,
    })
}

fn service(
    r: &impl Reads,
    local: &LocalNode,
    query: &ServiceQuery,
    only_passing: bool,
    authz: &Authorizer,
) -> Result<Found, StoreError> {
    let mut entries: Vec<ServiceEntry> = match &query.scope {
        Scope::Peer(peer) => {
            if crate::peering::get(r, peer)?.is_none() {
                return Ok(Found::NoSuchName);
            }
            crate::peering::imported_service(r, peer, &query.service)?
        }
        Scope::Local { .. } if query.connect => {
            let mut entries =
                catalog::service_entries(r, local, Select::ConnectFor(&query.service), false)?;
            entries.extend(external_sidecars(r, &query.service)?);
            entries
        }
        Scope::Local { .. } => {
            let mut entries =
                catalog::service_entries(r, local, Select::Named(&query.service), false)?;
            entries.extend(catalog_nodes::service_entries(r, &query.service, false)?);
            entries
        }
    };
    match &query.scope {
        // A peer's instances live on its nodes: read on the service is what counts.
        Scope::Peer(_) => entries.retain(|e| service_readable(authz, &e.service.service)),
        Scope::Local { .. } => entries.retain(|e| entry_readable(authz, e)),
    }
    if entries.is_empty() {
        return Ok(Found::NoSuchName);
    }
    let mut endpoints: Vec<Endpoint> = entries
        .into_iter()
        .filter(|e| healthy(e, only_passing))
        .filter(|e| match &query.tag {
            Some(tag) => e.service.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)),
            None => true,
        })
        .map(|e| Endpoint {
            address: if e.service.address.is_empty() {
                e.node.address.clone()
            } else {
                e.service.address.clone()
            },
            service: e.service.service,
            node: e.node.node,
            node_address: e.node.address,
            port: e.service.port,
        })
        .collect();
    // Spread the load over the instances, as Consul does.
    endpoints.shuffle(&mut rand::rng());
    Ok(Found::Endpoints(endpoints))
}

/// Answered unless a check is critical (or in maintenance); with
/// `only_passing`, every check must pass.
fn healthy(entry: &ServiceEntry, only_passing: bool) -> bool {
    match entry.aggregate_status() {
        STATUS_PASSING => true,
        STATUS_WARNING => !only_passing,
        _ => false,
    }
}

/// Sidecars on external catalog nodes whose destination is `service`.
fn external_sidecars(r: &impl Reads, service: &str) -> Result<Vec<ServiceEntry>, StoreError> {
    let mut entries = Vec::new();
    for record in catalog_nodes::all(r)? {
        for s in &record.services {
            let fronts = s
                .proxy
                .as_ref()
                .is_some_and(|p| p.destination_service_name == service);
            if s.kind.as_deref() == Some("connect-proxy") && fronts {
                entries.push(ServiceEntry {
                    node: record.node.clone(),
                    service: s.clone(),
                    checks: record
                        .checks
                        .iter()
                        .filter(|c| c.service_id == s.id || c.service_id.is_empty())
                        .cloned()
                        .collect(),
                });
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use isthmus_api::catalog::{STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING};
    use isthmus_api::catalog_register::{CatalogCheck, CatalogRegistration, CatalogServiceDef};
    use isthmus_api::dns_name::parse;

    use super::*;
    use crate::store::Store;

    fn store() -> Store {
        Store::with_log(Box::new(crate::store::NoLog), crate::catalog::schema()).unwrap()
    }

    fn local() -> LocalNode {
        LocalNode {
            id: "id".into(),
            name: "agent-1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
        }
    }

    /// An external node `node` at `address` with one `db` instance.
    fn external(store: &Store, node: &str, address: &str, tags: &[&str], status: &str) {
        let reg = CatalogRegistration {
            node: node.into(),
            address: address.into(),
            service: Some(CatalogServiceDef {
                service: "db".into(),
                id: format!("db-{node}"),
                port: 5432,
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                ..CatalogServiceDef::default()
            }),
            checks: Some(vec![CatalogCheck {
                name: "db alive".into(),
                check_id: format!("db-{node}-alive"),
                service_id: format!("db-{node}"),
                status: status.into(),
                ..CatalogCheck::default()
            }]),
            ..CatalogRegistration::default()
        };
        store
            .write_blocking(|txn| catalog_nodes::register(txn, reg.clone(), &local()))
            .unwrap();
    }

    fn find_name(store: &Store, name: &str, only_passing: bool) -> Found {
        let lookup = parse(name, "consul").unwrap();
        let authz = isthmus_api::acl::Authorizer::allow_all();
        find(
            &store.snapshot().unwrap(),
            &local(),
            &lookup,
            only_passing,
            &authz,
        )
        .unwrap()
    }

    fn addresses(found: Found) -> Vec<String> {
        let Found::Endpoints(endpoints) = found else {
            panic!("not endpoints: {found:?}")
        };
        let mut addresses: Vec<String> = endpoints.into_iter().map(|e| e.address).collect();
        addresses.sort();
        addresses
    }

    #[test]
    fn instances_are_filtered_by_health_tag_and_datacenter() {
        let store = store();
        external(&store, "n1", "10.0.0.1", &["primary"], STATUS_PASSING);
        external(&store, "n2", "10.0.0.2", &["replica"], STATUS_WARNING);
        external(&store, "n3", "10.0.0.3", &["replica"], STATUS_CRITICAL);

        assert_eq!(
            addresses(find_name(&store, "db.service.consul", false)),
            ["10.0.0.1", "10.0.0.2"]
        );
        assert_eq!(
            addresses(find_name(&store, "db.service.dc1.consul", true)),
            ["10.0.0.1"]
        );
        assert_eq!(
            addresses(find_name(&store, "_db._REPLICA.service.consul", false)),
            ["10.0.0.2"]
        );
        // Known, but nothing healthy matches: no endpoints (NXDOMAIN later).
        assert_eq!(
            addresses(find_name(&store, "replica.db.service.consul", true)),
            Vec::<String>::new()
        );
        for missing in [
            "web.service.consul",
            "db.service.dc2.consul",
            "db.service.other.peer.consul",
            "n9.node.consul",
            "7f000001.addr.dc2.consul",
        ] {
            assert_eq!(
                find_name(&store, missing, false),
                Found::NoSuchName,
                "{missing}"
            );
        }
    }

    #[test]
    fn nodes_are_this_agent_and_external_ones_in_any_case() {
        let store = store();
        external(&store, "Ext-1", "10.0.0.7", &[], STATUS_PASSING);
        assert_eq!(
            find_name(&store, "AGENT-1.node.consul", false),
            Found::Node {
                node: "agent-1".into(),
                address: "127.0.0.1".into()
            }
        );
        assert_eq!(
            find_name(&store, "ext-1.node.dc1.consul", false),
            Found::Node {
                node: "Ext-1".into(),
                address: "10.0.0.7".into()
            }
        );
        assert_eq!(find_name(&store, "consul.", false), Found::Apex);
    }
}
