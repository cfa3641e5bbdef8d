//! `/v1/agent/check/register`, `/v1/agent/check/deregister/<id>`,
//! `/v1/agent/maintenance` and `/v1/agent/service/maintenance/<id>`.

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog::CheckDefinition;

use isthmus_api::acl::{Access, Resource};

use super::agent::{require_check_write, require_service_write};
use super::authz::Authz;
use super::error::ApiError;
use super::{ConsulJson, Params, State};
use crate::agent_checks;

pub async fn register(
    Extract(state): Extract<State>,
    authz: Authz,
    ConsulJson(definition): ConsulJson<CheckDefinition>,
) -> Result<Response, ApiError> {
    match definition.service_id.as_deref().filter(|id| !id.is_empty()) {
        Some(service_id) => require_service_write(&state, &authz, service_id)?,
        None => authz.require(Resource::Node, &state.node.name, Access::Write)?,
    }
    let prepared = agent_checks::prepare(definition, &state.node)?;
    let check = state
        .store
        .write(move |txn| agent_checks::register(txn, prepared.clone()))
        .await?;
    state.checks.start(&check);
    tracing::info!(check = %check.state.check_id, service = %check.state.service_id, "check registered");
    Ok(Response::new(Body::empty()))
}

pub async fn deregister(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    authz: Authz,
) -> Result<Response, ApiError> {
    if let Some(check) = crate::catalog::get_check(&state.store.snapshot()?, &id)? {
        require_check_write(&state, &authz, &check.state)?;
    }
    let check_id = id.clone();
    state
        .store
        .write(move |txn| agent_checks::deregister(txn, &check_id))
        .await?;
    state.checks.stop(&id);
    tracing::info!(check = %id, "check deregistered");
    Ok(Response::new(Body::empty()))
}

/// The `enable` parameter, required and a Go boolean, as Consul reads it.
fn enable(params: &Params) -> Result<bool, ApiError> {
    let raw = params
        .get("enable")
        .ok_or_else(|| ApiError::bad_request("Missing value for enable"))?;
    match raw.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "Invalid value for enable: {raw:?}"
        ))),
    }
}

fn reason(params: &Params) -> String {
    params.get("reason").cloned().unwrap_or_default()
}

pub async fn node_maintenance(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Node, &state.node.name, Access::Write)?;
    let enable = enable(&params)?;
    let reason = reason(&params);
    let node = state.node.clone();
    state
        .store
        .write(move |txn| agent_checks::node_maintenance(txn, &node, enable, &reason))
        .await?;
    tracing::info!(enable, "node maintenance");
    Ok(Response::new(Body::empty()))
}

pub async fn service_maintenance(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request("Missing service ID"));
    }
    require_service_write(&state, &authz, &id)?;
    let enable = enable(&params)?;
    let reason = reason(&params);
    let node = state.node.clone();
    let service_id = id.clone();
    state
        .store
        .write(move |txn| {
            agent_checks::service_maintenance(txn, &node, &service_id, enable, &reason)
        })
        .await?;
    tracing::info!(service = %id, enable, "service maintenance");
    Ok(Response::new(Body::empty()))
}
