//! `/v1/connect/intentions`: Consul's intention API (list, create, exact,
//! match, by ID) over the `service-intentions` config entries
//! ([`crate::intentions`]). `/check` lives with the other authorization
//! endpoints in `connect`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::connect_intention::{Intention, IntentionBody, IntentionTarget};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use isthmus_api::acl::{Access, Authorizer, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json_acl, json_response, ConsulJson, Params, State};
use crate::intentions::{self, MatchBy};

/// How many `name` parameters one match query may carry.
const MAX_MATCH_NAMES: usize = 64;

/// Intentions are governed by their destination (Consul's
/// `intentions = "read"|"write"` inside a service rule).
fn readable(authz: &Authorizer, intention: &Intention) -> bool {
    authz.allows(
        Resource::Intention,
        &intention.destination_name,
        Access::Read,
    )
}

fn require_write(authz: &Authz, destination: &str) -> Result<(), ApiError> {
    authz.require(Resource::Intention, destination, Access::Write)
}

/// Write on the destination of the intention `id`, when there is one.
fn require_write_by_id(state: &State, authz: &Authz, id: &str) -> Result<(), ApiError> {
    match intentions::get_by_id(&state.store.snapshot()?, id) {
        Ok(existing) => require_write(authz, &existing.destination_name),
        Err(_) => Ok(()),
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// A required `source`/`destination` parameter, parsed as Consul does.
fn target(params: &Params, name: &str, allow_peer: bool) -> Result<IntentionTarget, ApiError> {
    let raw = params.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad_request(format!("required query parameter '{name}' not set"))
    })?;
    IntentionTarget::parse(raw, allow_peer)
        .map_err(|e| ApiError::bad_request(format!("{name} {raw:?} is invalid: {e}")))
}

/// `GET /v1/connect/intentions`: every intention, highest precedence first.
pub async fn list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut all = intentions::list(snap)?;
        authz.retain(&mut all, readable);
        Ok((all, snap.watch_index()))
    })
    .await
}

/// `POST /v1/connect/intentions` (legacy): creates an intention with a new
/// ID and answers `{"ID": ...}`.
pub async fn create(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(body): ConsulJson<IntentionBody>,
) -> Result<Response, ApiError> {
    require_write(&authz, &body.destination_name)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_rfc3339();
    let id = state
        .store
        .write(move |txn| intentions::legacy_create(txn, &body, id.clone(), &now))
        .await?;
    tracing::info!(id = %id, "intention created");
    Ok(json_response(&params, &json!({ "ID": id }), None))
}

/// `GET /v1/connect/intentions/exact?source=&destination=`.
pub async fn get_exact(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let source = target(&params, "source", true)?;
    let destination = target(&params, "destination", false)?;
    authz.require(Resource::Intention, &destination.name, Access::Read)?;
    blocking_json_acl(&state, &params, &authz, |snap| {
        let found = intentions::get_exact(snap, &source, &destination)?;
        Ok((found, snap.watch_index()))
    })
    .await
}

/// `PUT /v1/connect/intentions/exact?source=&destination=`: creates or
/// replaces that intention; answers `true`.
pub async fn put_exact(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(body): ConsulJson<IntentionBody>,
) -> Result<Response, ApiError> {
    let source = target(&params, "source", false)?;
    let destination = target(&params, "destination", false)?;
    require_write(&authz, &destination.name)?;
    let (logged_source, logged_destination) = (source.name.clone(), destination.name.clone());
    state
        .store
        .write(move |txn| intentions::upsert_exact(txn, &source, &destination, &body))
        .await?;
    tracing::info!(source = %logged_source, destination = %logged_destination, "intention written");
    Ok(json_response(&params, &true, None))
}

/// `DELETE /v1/connect/intentions/exact?source=&destination=`; answers `true`.
pub async fn delete_exact(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let source = target(&params, "source", false)?;
    let destination = target(&params, "destination", false)?;
    require_write(&authz, &destination.name)?;
    state
        .store
        .write(move |txn| intentions::delete_exact(txn, &source, &destination))
        .await?;
    Ok(json_response(&params, &true, None))
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=N[&name=M]`:
/// an object keyed by each name, listing the intentions that apply to it.
pub async fn matches(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let by: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| key == "by")
        .map(|(_, value)| value.as_str())
        .collect();
    let by = match by.as_slice() {
        [by] => *by,
        _ => {
            return Err(ApiError::bad_request(
                "required query parameter 'by' not set",
            ))
        }
    };
    let by = match by {
        "source" => MatchBy::Source,
        "destination" => MatchBy::Destination,
        _ => {
            return Err(ApiError::bad_request(
                "'by' parameter must be one of 'source' or 'destination'",
            ))
        }
    };
    let names: Vec<String> = pairs
        .into_iter()
        .filter(|(key, _)| key == "name")
        .map(|(_, value)| value)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "required query parameter 'name' not set",
        ));
    }
    if names.len() > MAX_MATCH_NAMES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_MATCH_NAMES} 'name' parameters are accepted"
        )));
    }
    let targets = names
        .iter()
        .map(|name| {
            IntentionTarget::parse(name, false)
                .map_err(|e| ApiError::bad_request(format!("name {name:?} is invalid: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    blocking_json_acl(&state, &params, &authz, |snap| {
        let mut found = intentions::matches(snap, by, &targets)?;
        for matched in &mut found {
            authz.retain(matched, readable);
        }
        let answer: BTreeMap<&str, Vec<Intention>> =
            names.iter().map(String::as_str).zip(found).collect();
        Ok((answer, snap.watch_index()))
    })
    .await
}

/// `GET /v1/connect/intentions/:id` (legacy).
pub async fn get_by_id(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    blocking_json_acl(&state, &params, &authz, |snap| {
        let found = intentions::get_by_id(snap, &id)?;
        authz.require(Resource::Intention, &found.destination_name, Access::Read)?;
        Ok((found, snap.watch_index()))
    })
    .await
}

/// `PUT /v1/connect/intentions/:id` (legacy): answers `{"ID": ...}`.
pub async fn update_by_id(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(body): ConsulJson<IntentionBody>,
) -> Result<Response, ApiError> {
    require_write_by_id(&state, &authz, &id)?;
    require_write(&authz, &body.destination_name)?;
    let now = now_rfc3339();
    let intention_id = id.clone();
    state
        .store
        .write(move |txn| intentions::legacy_update(txn, &intention_id, &body, &now))
        .await?;
    tracing::info!(id = %id, "intention updated");
    Ok(json_response(&params, &json!({ "ID": id }), None))
}

/// `DELETE /v1/connect/intentions/:id` (legacy): answers `true`.
pub async fn delete_by_id(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_write_by_id(&state, &authz, &id)?;
    let intention_id = id.clone();
    state
        .store
        .write(move |txn| intentions::legacy_delete(txn, &intention_id))
        .await?;
    tracing::info!(id = %id, "intention deleted");
    Ok(json_response(&params, &true, None))
}
