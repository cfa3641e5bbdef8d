//! `/v1/catalog/*` and `/v1/health/*`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog::{AgentService, CatalogService, Node};

use super::authz::{self, Authz};
use super::error::ApiError;
use super::list_query::ListQuery;
use super::{blocking_json_acl, flag, json_response, Params, State};
use crate::catalog::{self, Select};
use crate::catalog_nodes;
use crate::store::{Reads, Snapshot, StoreError, Table};

/// Health answers depend on both services and checks.
fn health_index(snap: &Snapshot) -> Result<u64, StoreError> {
    Ok(snap
        .table_index(Table::Services)?
        .max(snap.table_index(Table::Checks)?)
        .max(snap.table_index(Table::Nodes)?))
}

/// The index of a query that read only what it answers with (one
/// service's instances and their checks): where that last changed, as
/// Consul's per-service indexes do, so its watchers sleep through changes
/// to other services.
fn read_index(snap: &Snapshot) -> u64 {
    snap.watch_index()
}

fn valid_service_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::bad_request("Missing service name"));
    }
    Ok(())
}

pub async fn datacenters(Extract(state): Extract<State>, Query(params): Query<Params>) -> Response {
    json_response(&params, &[&state.cluster.name], None)
}

pub async fn nodes(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut nodes = vec![state.node.to_api()];
        nodes.extend(
            crate::catalog_remote::agent_nodes(snap)?
                .into_iter()
                .map(|n| n.node),
        );
        nodes.extend(catalog_nodes::all(snap)?.into_iter().map(|n| n.node));
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        list.narrow(&mut nodes)?;
        authz.retain(&mut nodes, |a, n| authz::node_readable(a, &n.node));
        let index = snap
            .table_index(Table::Meta)?
            .max(snap.table_index(Table::Nodes)?)
            .max(snap.table_index(Table::RemoteNodes)?);
        Ok((nodes, index))
    })
    .await
}

/// `/v1/catalog/services[?peer=X]`: service names and their tags, ours or
/// (with `peer`) those imported from the peer. Like Consul, a peer name is
/// not checked: one with no peering has imported nothing (`{}`).
pub async fn services(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    refuse_relayed_peer_query(&headers, &params)?;
    if let Some(peer) = peer_param(&params) {
        return blocking_json_acl(&state, &params, &authz, |snap| {
            let mut names = BTreeMap::new();
            for name in crate::peering::imported_names(snap, &peer)? {
                let (entries, _) = super::internal::imported_entries(snap, &peer, &name, false)?;
                let mut tags: Vec<String> =
                    entries.into_iter().flat_map(|e| e.service.tags).collect();
                tags.sort();
                tags.dedup();
                names.insert(name, tags);
            }
            authz.retain_map(&mut names, |a, name, _| authz::service_readable(a, name));
            Ok((names, snap.table_index(Table::Imported)?))
        })
        .await;
    }
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut names = catalog::service_names(snap)?;
        for node in catalog_nodes::all(snap)? {
            for service in node.services {
                let tags = names.entry(service.service).or_default();
                tags.extend(service.tags);
                tags.sort();
                tags.dedup();
            }
        }
        authz.retain_map(&mut names, |a, name, _| authz::service_readable(a, name));
        let index = snap
            .table_index(Table::Services)?
            .max(snap.table_index(Table::Nodes)?);
        Ok((names, index))
    })
    .await
}

/// `/v1/catalog/service/<name>[?peer=X]`: our instances of `name`, or (with
/// `peer`) those imported from the peer (`[]` for a peer name with no
/// peering, as Consul answers).
pub async fn service(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    refuse_relayed_peer_query(&headers, &params)?;
    if let Some(peer) = peer_param(&params) {
        return blocking_json_acl(&state, &params, &authz, |snap| {
            let (entries, index) = super::internal::imported_entries(snap, &peer, &name, false)?;
            let mut rows: Vec<CatalogService> = entries
                .into_iter()
                .map(|entry| catalog_row(&entry.node, entry.service))
                .collect();
            list.narrow(&mut rows)?;
            authz.retain(&mut rows, |a, r| {
                authz::service_readable(a, &r.service_name)
            });
            Ok((rows, index))
        })
        .await;
    }
    catalog_rows(state, params, authz, list, Select::Named(&name)).await
}

/// An imported instance as a catalog row.
fn catalog_row(node: &Node, service: AgentService) -> CatalogService {
    CatalogService {
        id: node.id.clone(),
        node: node.node.clone(),
        address: node.address.clone(),
        datacenter: node.datacenter.clone(),
        tagged_addresses: node.tagged_addresses.clone(),
        node_meta: node.meta.clone(),
        service_kind: service.kind.clone().unwrap_or_default(),
        service_id: service.id,
        service_name: service.service,
        service_tags: service.tags,
        service_address: service.address,
        service_meta: service.meta,
        service_port: service.port,
        service_weights: service.weights,
        service_enable_tag_override: service.enable_tag_override,
        service_proxy: service.proxy,
        create_index: service.create_index,
        modify_index: service.modify_index,
    }
}

/// `/v1/catalog/connect/<name>`: the catalog rows of the sidecar proxies
/// that front `name` (what Consul calls its connect-capable endpoints).
pub async fn connect(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    catalog_rows(state, params, authz, list, Select::ConnectFor(&name)).await
}

/// Catalog rows for `select`: this node's, plus external nodes' for a
/// named service.
async fn catalog_rows(
    state: State,
    params: Params,
    authz: Authz,
    list: ListQuery,
    select: Select<'_>,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut rows = catalog::catalog_service(snap, &state.node, select)?;
        if let Select::Named(name) = select {
            rows.extend(catalog_nodes::catalog_service(snap, name)?);
        }
        // By node, then service ID, as Consul's catalog orders them.
        rows.sort_by(|a, b| (&a.node, &a.service_id).cmp(&(&b.node, &b.service_id)));
        list.narrow(&mut rows)?;
        authz.retain(&mut rows, authz::row_readable);
        Ok((rows, read_index(snap)))
    })
    .await
}

/// `/v1/health/ingress/<name>`: the ingress gateways in front of `name`.
/// isthmus has no ingress gateways, so the answer is always empty, with
/// the catalog's index as Consul gives it.
pub async fn health_ingress(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    blocking_json_acl(&state, &params, &authz, |snap| {
        let none: Vec<isthmus_api::catalog::ServiceEntry> = Vec::new();
        Ok((none, snap.table_index(Table::Services)?))
    })
    .await
}

async fn health(
    state: State,
    params: Params,
    authz: Authz,
    list: ListQuery,
    select: Select<'_>,
) -> Result<Response, ApiError> {
    let passing = flag(&params, "passing");
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut entries = catalog::service_entries(snap, &state.node, select, passing)?;
        if let Select::Named(name) = select {
            entries.extend(catalog_nodes::service_entries(snap, name, passing)?);
            entries
                .sort_by(|a, b| (&a.node.node, &a.service.id).cmp(&(&b.node.node, &b.service.id)));
        }
        list.narrow(&mut entries)?;
        authz.retain(&mut entries, authz::entry_readable);
        Ok((entries, read_index(snap)))
    })
    .await
}

pub async fn health_service(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    refuse_relayed_peer_query(&headers, &params)?;
    if let Some(peer) = peer_param(&params) {
        return imported(state, params.clone(), authz, list, peer, Some(name)).await;
    }
    if headers.contains_key(isthmus_api::peering::HEADER_PEER) {
        return relayed_for_peer(state, params, authz, name).await;
    }
    health(state, params, authz, list, Select::Named(&name)).await
}

/// A peer's health query relayed by our gateway: the same flattened
/// instances replication sends (one overall check per instance), so a peer
/// never reads our checks' `Output` or `Notes` (probe errors, addresses,
/// whatever an app reports), whichever way it asks.
async fn relayed_for_peer(
    state: State,
    params: Params,
    authz: Authz,
    name: String,
) -> Result<Response, ApiError> {
    let passing = flag(&params, "passing");
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut entries = crate::peering::flattened_instances(snap, &state.node, &name)?;
        if passing {
            entries.retain(|e| e.aggregate_status() == isthmus_api::catalog::STATUS_PASSING);
        }
        authz.retain(&mut entries, authz::entry_readable);
        Ok((entries, health_index(snap)?))
    })
    .await
}

/// `/v1/health/service/?peer=X` (the seed's connectivity check): every
/// instance imported from the peer. Without `peer` a name is required.
pub async fn health_service_all(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    refuse_relayed_peer_query(&headers, &params)?;
    match peer_param(&params) {
        Some(peer) => imported(state, params.clone(), authz, list, peer, None).await,
        None => Err(ApiError::bad_request("Missing service name")),
    }
}

/// A peer's query relayed by our gateway may read our own services only,
/// never what we imported from another peer.
fn refuse_relayed_peer_query(
    headers: &axum::http::HeaderMap,
    params: &Params,
) -> Result<(), ApiError> {
    if let Some(caller) = headers.get(isthmus_api::peering::HEADER_PEER) {
        if params.contains_key("peer") {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                format!(
                    "peer {} may query only services this cluster exports, not imported ones",
                    caller.to_str().unwrap_or("?")
                ),
            ));
        }
    }
    Ok(())
}

fn peer_param(params: &Params) -> Option<String> {
    params.get("peer").filter(|p| !p.is_empty()).cloned()
}

async fn imported(
    state: State,
    params: Params,
    authz: Authz,
    list: ListQuery,
    peer: String,
    service: Option<String>,
) -> Result<Response, ApiError> {
    let passing = flag(&params, "passing");
    // Like Consul, the peer name is not checked: a name with no peering
    // has imported nothing, and the answer is `[]`.
    blocking_json_acl(&state, &params, &authz, |snap| {
        let (mut entries, index) = match &service {
            Some(name) => super::internal::imported_entries(snap, &peer, name, passing)?,
            None => {
                let mut all = Vec::new();
                for name in crate::peering::imported_names(snap, &peer)? {
                    all.extend(super::internal::imported_entries(snap, &peer, &name, passing)?.0);
                }
                (all, snap.table_index(Table::Imported)?)
            }
        };
        list.narrow(&mut entries)?;
        authz.retain(&mut entries, |a, e| {
            authz::service_readable(a, &e.service.service)
        });
        Ok((entries, index))
    })
    .await
}

pub async fn health_connect(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    health(state, params, authz, list, Select::ConnectFor(&name)).await
}

pub async fn health_checks(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    list: ListQuery,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut checks = catalog::service_name_checks(snap, &state.node, &name)?;
        checks.extend(crate::catalog_remote::service_checks(snap, &name)?);
        checks.sort_by(|a, b| (&a.check_id, &a.node).cmp(&(&b.check_id, &b.node)));
        for node in catalog_nodes::all(snap)? {
            checks.extend(node.checks.into_iter().filter(|c| c.service_name == name));
        }
        super::nodes::retain_by_node_meta(&list, snap, &state.node, &mut checks)?;
        list.narrow(&mut checks)?;
        authz.retain(&mut checks, authz::check_readable);
        Ok((checks, read_index(snap)))
    })
    .await
}

/// `GET /v1/catalog/gateway-services/:gateway`: the services a mesh
/// gateway exposes to peers; `[]` for a name that is no gateway.
pub async fn gateway_services(
    Extract(state): Extract<State>,
    Path(gateway): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut rows = crate::gateway_services::gateway_services(snap, &gateway)?;
        // Consul asks for read on the gateway, then on each service.
        if !authz::service_readable(authz.authorizer(), &gateway) {
            if !rows.is_empty() {
                authz.mark_filtered();
            }
            rows.clear();
        }
        authz.retain(&mut rows, |a, r| {
            authz::service_readable(a, &r.service.name)
        });
        Ok((rows, read_index(snap)))
    })
    .await
}
