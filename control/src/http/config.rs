//! `/v1/config`: config entries of every supported kind.

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::config_entry::{self, ConfigEntry};

use isthmus_api::acl::{Access, Authorizer, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json_acl, json_response, read_json, Params, State};
use crate::config_entries;
use crate::store::{Reads, Table};

fn cas(params: &Params) -> Result<Option<u64>, ApiError> {
    params
        .get("cas")
        .map(|raw| {
            raw.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("cas: {raw:?} is not a valid index")))
        })
        .transpose()
}

/// What governs writing an entry, as in Consul: `mesh` for exported-services,
/// proxy-defaults and mesh; the destination's `intentions` for
/// service-intentions; the service itself for service-resolver and
/// service-defaults.
fn governed_by<'a>(kind: &str, name: &'a str) -> (Resource, &'a str) {
    match kind {
        config_entry::KIND_SERVICE_INTENTIONS => (Resource::Intention, name),
        config_entry::KIND_SERVICE_RESOLVER | config_entry::KIND_SERVICE_DEFAULTS => {
            (Resource::Service, name)
        }
        _ => (Resource::Mesh, ""),
    }
}

/// What reading an entry needs: read on what governs its writing, except
/// proxy-defaults and mesh, which Consul lets anyone read (every proxy needs them).
fn read_governed_by<'a>(kind: &str, name: &'a str) -> Option<(Resource, &'a str)> {
    match kind {
        config_entry::KIND_PROXY_DEFAULTS | config_entry::KIND_MESH => None,
        _ => Some(governed_by(kind, name)),
    }
}

fn may_read(authz: &Authorizer, kind: &str, name: &str) -> bool {
    read_governed_by(kind, name)
        .is_none_or(|(resource, segment)| authz.allows(resource, segment, Access::Read))
}

fn kind(raw: &str) -> Result<&'static str, ApiError> {
    config_entry::validate_kind(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn apply(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    body: Body,
) -> Result<Response, ApiError> {
    let cas = cas(&params)?;
    let document: serde_json::Value = read_json(body).await?;
    let mut entry =
        ConfigEntry::from_json(document).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // As Consul: writing the entry itself ends what the legacy intention API kept on it.
    if let ConfigEntry::ServiceIntentions(intentions) = &mut entry {
        intentions
            .clear_legacy_fields()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let (kind, name) = (entry.kind(), entry.name().to_owned());
    let (resource, segment) = governed_by(kind, &name);
    authz.require(resource, segment, Access::Write)?;
    if let ConfigEntry::ServiceResolver(resolver) = &entry {
        for related in resolver.related_services() {
            authz.require(Resource::Service, related, Access::Read)?;
        }
    }
    let written = state
        .store
        .write(move |txn| config_entries::set(txn, entry.clone(), cas))
        .await?;
    if written {
        tracing::info!(kind, name = %name, "config entry written");
    }
    Ok(json_response(&params, &written, None))
}

pub async fn list(
    Extract(state): Extract<State>,
    Path(raw_kind): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let kind = kind(&raw_kind)?;
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut entries = config_entries::list(snap, kind)?;
        authz.retain(&mut entries, |a, entry| may_read(a, kind, entry.name()));
        let entries: Vec<serde_json::Value> = entries.iter().map(ConfigEntry::to_json).collect();
        Ok((entries, snap.table_index(Table::ConfigEntries)?))
    })
    .await
}

pub async fn read(
    Extract(state): Extract<State>,
    Path((raw_kind, name)): Path<(String, String)>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let kind = kind(&raw_kind)?;
    if let Some((resource, segment)) = read_governed_by(kind, &name) {
        authz.require(resource, segment, Access::Read)?;
    }
    blocking_json_acl(&state, &params, &authz, |snap| {
        let entry = config_entries::get(snap, kind, &name)?.ok_or_else(|| {
            ApiError::not_found(format!("Config entry not found for {kind:?} / {name:?}"))
        })?;
        Ok((entry.to_json(), snap.table_index(Table::ConfigEntries)?))
    })
    .await
}

pub async fn delete(
    Extract(state): Extract<State>,
    Path((raw_kind, name)): Path<(String, String)>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let kind = kind(&raw_kind)?;
    let cas = cas(&params)?;
    let (resource, segment) = governed_by(kind, &name);
    authz.require(resource, segment, Access::Write)?;
    let entry_name = name.clone();
    let deleted = state
        .store
        .write(move |txn| config_entries::delete(txn, kind, &entry_name, cas))
        .await?;
    if deleted {
        tracing::info!(kind, name = %name, "config entry deleted");
    }
    Ok(json_response(&params, &deleted, None))
}
