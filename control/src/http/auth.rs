//! `/v1/auth/*`: groups, their permissions, and identities.

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::auth::{GroupCreate, Permission};
use serde::Deserialize;

use isthmus_api::consul_json::{value, ConsulBody, Schema};

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json, ConsulJson, Params, State};
use crate::auth;
use crate::store::{Reads, Snapshot, StoreError, Table};

fn auth_index(snap: &Snapshot) -> Result<u64, StoreError> {
    Ok(snap
        .table_index(Table::AuthGroups)?
        .max(snap.table_index(Table::Peerings)?))
}

fn ok() -> Response {
    Response::new(Body::empty())
}

pub async fn list_groups(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        Ok((auth::list_groups(snap)?, auth_index(snap)?))
    })
    .await
}

pub async fn create_group(
    Extract(state): Extract<State>,
    authz: Authz,
    ConsulJson(request): ConsulJson<GroupCreate>,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    let group = state
        .store
        .write(move |txn| auth::create_group(txn, &request.name, &request.description))
        .await?;
    tracing::info!(group = %group.name, "auth group created");
    Ok(ok())
}

pub async fn read_group(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let group = auth::get_group(snap, &name)?
            .ok_or_else(|| ApiError::not_found(format!("Group {name:?} not found")))?;
        Ok((group, auth_index(snap)?))
    })
    .await
}

pub async fn delete_group(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    let group = name.clone();
    state
        .store
        .write(move |txn| auth::delete_group(txn, &group))
        .await?;
    tracing::info!(group = %name, "auth group deleted");
    Ok(ok())
}

async fn change_permission(
    state: State,
    group: String,
    permission: Permission,
    add: bool,
) -> Result<Response, ApiError> {
    let shown = permission.to_string();
    let name = group.clone();
    state
        .store
        .write(move |txn| auth::change_permission(txn, &name, permission.clone(), add))
        .await?;
    tracing::info!(group = %group, permission = %shown, added = add, "auth group permission changed");
    Ok(ok())
}

pub async fn add_permission(
    Extract(state): Extract<State>,
    Path(group): Path<String>,
    authz: Authz,
    ConsulJson(permission): ConsulJson<Permission>,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    change_permission(state, group, permission, true).await
}

pub async fn remove_permission(
    Extract(state): Extract<State>,
    Path(group): Path<String>,
    authz: Authz,
    ConsulJson(permission): ConsulJson<Permission>,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    change_permission(state, group, permission, false).await
}

pub async fn list_identities(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        Ok((auth::identities(snap)?, auth_index(snap)?))
    })
    .await
}

pub async fn read_identity(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        Ok((auth::identity(snap, &name)?, auth_index(snap)?))
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GroupRef {
    group: String,
}

impl ConsulBody for GroupRef {
    const SCHEMA: &'static Schema = &Schema::closed(&[value("Group")]);
}

pub async fn add_identity_group(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    authz: Authz,
    ConsulJson(request): ConsulJson<GroupRef>,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    state
        .store
        .write(move |txn| auth::change_identity_group(txn, &name, &request.group, true))
        .await?;
    Ok(ok())
}

pub async fn remove_identity_group(
    Extract(state): Extract<State>,
    Path((name, group)): Path<(String, String)>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    state
        .store
        .write(move |txn| auth::change_identity_group(txn, &name, &group, false))
        .await?;
    Ok(ok())
}
