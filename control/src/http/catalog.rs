//! `/v1/catalog/*` and `/v1/health/*`.

use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog::HealthCheck;

use super::{blocking_json, flag, json_response, Params, State};
use crate::catalog::{self, Select};
use crate::error::ApiError;
use crate::store::{Reads, Snapshot, StoreError, Table};

/// Health answers depend on both services and checks.
fn health_index(snap: &Snapshot) -> Result<u64, StoreError> {
    Ok(snap
        .table_index(Table::Services)?
        .max(snap.table_index(Table::Checks)?))
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
) -> Result<Response, ApiError> {
    blocking_json(&state, &params, |snap| {
        Ok((vec![state.node.to_api()], snap.table_index(Table::Meta)?))
    })
    .await
}

pub async fn services(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    blocking_json(&state, &params, |snap| {
        Ok((
            catalog::service_names(snap)?,
            snap.table_index(Table::Services)?,
        ))
    })
    .await
}

pub async fn service(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    blocking_json(&state, &params, |snap| {
        Ok((
            catalog::catalog_service(snap, &state.node, &name)?,
            snap.table_index(Table::Services)?,
        ))
    })
    .await
}

async fn health(state: State, params: Params, select: Select<'_>) -> Result<Response, ApiError> {
    let passing = flag(&params, "passing");
    blocking_json(&state, &params, |snap| {
        Ok((
            catalog::service_entries(snap, &state.node, select, passing)?,
            health_index(snap)?,
        ))
    })
    .await
}

pub async fn health_service(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    health(state, params, Select::Named(&name)).await
}

pub async fn health_connect(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    health(state, params, Select::ConnectFor(&name)).await
}

pub async fn health_checks(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    valid_service_name(&name)?;
    blocking_json(&state, &params, |snap| {
        let checks: Vec<HealthCheck> = catalog::check_states(snap, &state.node)?
            .into_iter()
            .filter(|c| c.service_name == name)
            .collect();
        Ok((checks, snap.table_index(Table::Checks)?))
    })
    .await
}
