//! `PUT /v1/catalog/register` and `PUT /v1/catalog/deregister`.

use axum::extract::{Query, State as Extract};
use axum::response::Response;
use isthmus_api::catalog_register::{CatalogDeregistration, CatalogRegistration};

use super::error::ApiError;
use super::{json_response, ConsulJson, Params, State};
use crate::catalog_nodes;

fn dc_param(state: &State, params: &Params) -> Result<(), ApiError> {
    Ok(catalog_nodes::check_datacenter(
        &state.node,
        params.get("dc").map_or("", String::as_str),
    )?)
}

pub async fn register(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    ConsulJson(reg): ConsulJson<CatalogRegistration>,
) -> Result<Response, ApiError> {
    dc_param(&state, &params)?;
    catalog_nodes::validate(&reg, &state.node)?;
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
    ConsulJson(dereg): ConsulJson<CatalogDeregistration>,
) -> Result<Response, ApiError> {
    dc_param(&state, &params)?;
    let node = dereg.node.clone();
    let local = state.node.clone();
    state
        .store
        .write(move |txn| catalog_nodes::deregister(txn, dereg.clone(), &local))
        .await?;
    tracing::info!(node = %node, "catalog deregistration");
    Ok(json_response(&params, &true, None))
}
