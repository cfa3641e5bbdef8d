//! `PUT /v1/catalog/register` and `PUT /v1/catalog/deregister`.

use axum::extract::{Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog_register::{CatalogDeregistration, CatalogRegistration};

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{json_response, ConsulJson, Params, State};
use crate::catalog_nodes;
use crate::store::Snapshot;

/// Consul's rule for a catalog registration: write on the node when its
/// record would be created or changed, write on the service registered
/// (and on the one a proxy fronts), and on the node or service of each
/// check.
fn require_register(
    authz: &Authz,
    snap: &Snapshot,
    reg: &CatalogRegistration,
) -> Result<(), ApiError> {
    let existing = catalog_nodes::get(snap, &reg.node)?;
    let node_unchanged = existing
        .as_ref()
        .is_some_and(|n| n.node.address == reg.address);
    if !(reg.skip_node_update || node_unchanged) {
        authz.require(Resource::Node, &reg.node, Access::Write)?;
    }
    if let Some(service) = &reg.service {
        authz.require(Resource::Service, &service.service, Access::Write)?;
        if let Some(proxy) = &service.proxy {
            if !proxy.destination_service_name.is_empty() {
                authz.require(
                    Resource::Service,
                    &proxy.destination_service_name,
                    Access::Write,
                )?;
            }
        }
    }
    let checks = reg.check.iter().chain(reg.checks.iter().flatten());
    for check in checks {
        if check.service_id.is_empty() {
            authz.require(Resource::Node, &reg.node, Access::Write)?;
        } else {
            let named = reg
                .service
                .as_ref()
                .filter(|s| s.id == check.service_id || s.service == check.service_id);
            let name = match (named, &existing) {
                (Some(service), _) => service.service.clone(),
                (None, Some(node)) => node
                    .services
                    .iter()
                    .find(|s| s.id == check.service_id)
                    .map(|s| s.service.clone())
                    .unwrap_or_else(|| check.service_id.clone()),
                (None, None) => check.service_id.clone(),
            };
            authz.require(Resource::Service, &name, Access::Write)?;
        }
    }
    Ok(())
}

/// A catalog deregistration: write on the service removed, or on the node
/// for a node check or the whole node.
fn require_deregister(
    authz: &Authz,
    snap: &Snapshot,
    dereg: &CatalogDeregistration,
) -> Result<(), ApiError> {
    let existing = catalog_nodes::get(snap, &dereg.node)?;
    let service_name = |id: &str| {
        existing
            .as_ref()
            .and_then(|n| n.services.iter().find(|s| s.id == id))
            .map(|s| s.service.clone())
    };
    if !dereg.service_id.is_empty() {
        if let Some(name) = service_name(&dereg.service_id) {
            authz.require(Resource::Service, &name, Access::Write)?;
        }
        return Ok(());
    }
    if !dereg.check_id.is_empty() {
        let check_service = existing.as_ref().and_then(|n| {
            n.checks
                .iter()
                .find(|c| c.check_id == dereg.check_id)
                .map(|c| c.service_name.clone())
        });
        return match check_service {
            Some(service) if !service.is_empty() => {
                authz.require(Resource::Service, &service, Access::Write)
            }
            _ => authz.require(Resource::Node, &dereg.node, Access::Write),
        };
    }
    authz.require(Resource::Node, &dereg.node, Access::Write)
}

fn dc_param(state: &State, params: &Params) -> Result<(), ApiError> {
    Ok(catalog_nodes::check_datacenter(
        &state.node,
        params.get("dc").map_or("", String::as_str),
    )?)
}

pub async fn register(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(reg): ConsulJson<CatalogRegistration>,
) -> Result<Response, ApiError> {
    dc_param(&state, &params)?;
    catalog_nodes::validate(&reg, &state.node)?;
    require_register(&authz, &state.store.snapshot()?, &reg)?;
    let node = reg.node.clone();
    let local = state.node.clone();
    state
        .store
        .write(move |txn| catalog_nodes::register(txn, reg.clone(), &local))
        .await?;
    tracing::info!(node = %node, "catalog registration");
    Ok(json_response(&params, &true, None))
}

pub async fn deregister(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(dereg): ConsulJson<CatalogDeregistration>,
) -> Result<Response, ApiError> {
    dc_param(&state, &params)?;
    require_deregister(&authz, &state.store.snapshot()?, &dereg)?;
    let node = dereg.node.clone();
    let local = state.node.clone();
    state
        .store
        .write(move |txn| catalog_nodes::deregister(txn, dereg.clone(), &local))
        .await?;
    tracing::info!(node = %node, "catalog deregistration");
    Ok(json_response(&params, &true, None))
}
