//! Node-scoped reads: `/v1/health/state/:state`, `/v1/health/node/:node`,
//! `/v1/catalog/node/:node`, `/v1/catalog/node-services/:node` and
//! `/v1/status/peers`.
//!
//! The catalog holds this agent's node and the external nodes written with
//! `/v1/catalog/register`; a name that is neither reads as an empty node the
//! way Consul answers for a node it does not know.

use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog::{
    AgentService, HealthCheck, Node, STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING,
};
use serde::Serialize;

use super::authz::{self, Authz};
use super::error::ApiError;
use super::list_query::ListQuery;
use super::{blocking_json_acl, json_response, Params, State};
use crate::catalog::{self, LocalNode};
use crate::catalog_nodes::{self, ExternalNode};
use crate::catalog_remote;
use crate::store::{Reads, Snapshot, StoreError, Table};

/// Consul's `?state=any`: every check whatever its status.
const STATE_ANY: &str = "any";

/// Node names compare case-insensitively, as in Consul's catalog.
fn is_local(node: &LocalNode, name: &str) -> bool {
    node.name.eq_ignore_ascii_case(name)
}

/// This agent's checks and its node's liveness, by check ID.
fn sorted_checks(snap: &Snapshot, node: &LocalNode) -> Result<Vec<HealthCheck>, StoreError> {
    let mut checks = catalog::check_states(snap, node)?;
    checks.extend(catalog_remote::serf_health(snap, &node.name)?);
    checks.sort_by(|a, b| a.check_id.cmp(&b.check_id));
    Ok(checks)
}

/// Every node besides this agent's: the cluster's other agents' (etcd)
/// and the external ones.
fn other_nodes(snap: &Snapshot) -> Result<Vec<ExternalNode>, StoreError> {
    let mut nodes = catalog_remote::agent_nodes(snap)?;
    nodes.extend(catalog_nodes::all(snap)?);
    Ok(nodes)
}

/// Another node by name: one of the cluster's agents or an external one.
fn other_node(snap: &Snapshot, name: &str) -> Result<Option<ExternalNode>, StoreError> {
    match catalog_remote::agent_node(snap, name)? {
        Some(node) => Ok(Some(node)),
        None => catalog_nodes::get(snap, name),
    }
}

/// Every check on every node: this agent's first, then the others'.
fn all_checks(snap: &Snapshot, node: &LocalNode) -> Result<Vec<HealthCheck>, StoreError> {
    let mut checks = sorted_checks(snap, node)?;
    for other in other_nodes(snap)? {
        checks.extend(other.checks);
    }
    Ok(checks)
}

/// Keeps the checks on nodes whose meta holds every `?node-meta=` pair
/// (this agent's node has no meta, so it matches only when none is asked).
pub(super) fn retain_by_node_meta(
    list: &ListQuery,
    snap: &Snapshot,
    node: &LocalNode,
    checks: &mut Vec<HealthCheck>,
) -> Result<(), StoreError> {
    if !list.wants_node_meta() {
        return Ok(());
    }
    let mut matching: Vec<String> = Vec::new();
    if list.node_meta_matches(&node.to_api().meta) {
        matching.push(node.name.clone());
    }
    for external in other_nodes(snap)? {
        if list.node_meta_matches(&external.node.meta) {
            matching.push(external.node.node);
        }
    }
    checks.retain(|c| matching.iter().any(|n| n.eq_ignore_ascii_case(&c.node)));
    Ok(())
}

/// Indexes of the tables holding checks.
fn checks_index(snap: &Snapshot) -> Result<u64, StoreError> {
    Ok([
        Table::Checks,
        Table::Nodes,
        Table::RemoteChecks,
        Table::RemoteNodes,
        Table::NodeHealth,
    ]
    .into_iter()
    .map(|t| snap.table_index(t))
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .max()
    .unwrap_or(0))
}

/// Indexes of the tables holding nodes and their services.
fn services_index(snap: &Snapshot) -> Result<u64, StoreError> {
    Ok([
        Table::Services,
        Table::Meta,
        Table::Nodes,
        Table::RemoteServices,
        Table::RemoteNodes,
    ]
    .into_iter()
    .map(|t| snap.table_index(t))
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .max()
    .unwrap_or(0))
}

/// `GET /v1/health/state/:state`: the checks in `state` (`any` for all).
/// As in Consul, a state that is none of these matches no check, and a
/// status matches whatever its case (`any` only in lowercase).
pub async fn health_state(
    Extract(state): Extract<State>,
    Path(wanted): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    let wanted = if wanted == STATE_ANY {
        Some(STATE_ANY)
    } else {
        [STATUS_PASSING, STATUS_WARNING, STATUS_CRITICAL]
            .into_iter()
            .find(|s| s.eq_ignore_ascii_case(&wanted))
    };
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut checks: Vec<HealthCheck> = match wanted {
            None => Vec::new(),
            Some(STATE_ANY) => all_checks(snap, &state.node)?,
            Some(status) => all_checks(snap, &state.node)?
                .into_iter()
                .filter(|c| c.status == status)
                .collect(),
        };
        retain_by_node_meta(&list, snap, &state.node, &mut checks)?;
        list.narrow(&mut checks)?;
        authz.retain(&mut checks, authz::check_readable);
        Ok((checks, checks_index(snap)?))
    })
    .await
}

/// `GET /v1/health/state/` without a state.
pub async fn health_state_missing() -> ApiError {
    ApiError::bad_request("Missing check state")
}

/// `GET /v1/health/node/:node`: every check on the node, node-level and
/// service checks alike; `[]` for a node the catalog does not have.
pub async fn health_node(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    let local = is_local(&state.node, &name);
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut checks = if local {
            sorted_checks(snap, &state.node)?
        } else {
            other_node(snap, &name)?
                .map(|n| n.checks)
                .unwrap_or_default()
        };
        list.narrow(&mut checks)?;
        authz.retain(&mut checks, authz::check_readable);
        Ok((checks, checks_index(snap)?))
    })
    .await
}

/// `GET /v1/health/node/` and `/v1/catalog/node-services/` without a node.
pub async fn node_missing() -> ApiError {
    ApiError::bad_request("Missing node name")
}

/// Consul's `NodeServiceList`: both fields are `null` for an unknown node
/// (Consul answers its zero value).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeServices {
    node: Option<Node>,
    services: Option<Vec<AgentService>>,
}

/// `GET /v1/catalog/node-services/:node`.
pub async fn node_services(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    let local = is_local(&state.node, &name);
    blocking_json_acl(&state, &params, &authz, |snap| {
        let index = services_index(snap)?;
        let unknown = NodeServices {
            node: None,
            services: None,
        };
        // A node the token may not read is answered as an unknown one.
        if !authz.node_read(&name) {
            authz.mark_filtered();
            return Ok((unknown, index));
        }
        if !local {
            let answer = match other_node(snap, &name)? {
                Some(mut external) => {
                    list.narrow(&mut external.services)?;
                    authz.retain(&mut external.services, |a, s| {
                        authz::service_readable(a, &s.service)
                    });
                    NodeServices {
                        node: Some(external.node),
                        services: Some(external.services),
                    }
                }
                None => unknown,
            };
            return Ok((answer, index));
        }
        let mut services = catalog::all_services(snap)?;
        services.sort_by(|a, b| a.id.cmp(&b.id));
        list.narrow(&mut services)?;
        authz.retain(&mut services, |a, s| authz::service_readable(a, &s.service));
        let found = NodeServices {
            node: Some(state.node.to_api()),
            services: Some(services),
        };
        Ok((found, index))
    })
    .await
}

/// `GET /v1/status/peers`: the servers of the datacenter. Every live
/// isthmus agent of the cluster can serve and lead, so all of them, by the
/// HTTP address `/v1/status/leader` gives.
pub async fn peers(Extract(state): Extract<State>, Query(params): Query<Params>) -> Response {
    let view = state.membership.view();
    let peers: Vec<&str> = view
        .members
        .values()
        .filter(|(_, status)| *status == crate::membership::MemberStatus::Alive)
        .map(|(m, _)| m.api.as_str())
        .collect();
    json_response(&params, &peers, None)
}

/// `GET /v1/catalog/node/:node`: the node and its services keyed by ID
/// (Consul's `NodeServices`), or `null` for a node the catalog does not know.
pub async fn node(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let local = is_local(&state.node, &name);
    blocking_json_acl(&state, &params, &authz, |snap| {
        let index = services_index(snap)?;
        if !authz.node_read(&name) {
            authz.mark_filtered();
            return Ok((None, index));
        }
        let found = if local {
            Some((state.node.to_api(), catalog::all_services(snap)?))
        } else {
            other_node(snap, &name)?.map(|other| (other.node, other.services))
        };
        let answer = found.map(|(node, mut services)| {
            authz.retain(&mut services, |a, s| authz::service_readable(a, &s.service));
            serde_json::json!({
                "Node": node,
                "Services": services
                    .into_iter()
                    .map(|s| (s.id.clone(), s))
                    .collect::<std::collections::BTreeMap<String, AgentService>>(),
            })
        });
        Ok((answer, index))
    })
    .await
}
