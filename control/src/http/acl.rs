//! `/v1/acl/*`: bootstrap, tokens and policies, with Consul's paths, JSON,
//! statuses and texts. Reads need `acl` read, writes `acl` write; a token
//! may always read itself (`/v1/acl/token/self`). While ACLs are disabled
//! every path answers Consul's 401 `ACL support disabled`.

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use isthmus_api::acl::wire::{AclPolicyWrite, AclToken, AclTokenWrite};
use isthmus_api::acl::{Access, Resource};
use isthmus_api::consul_json::{self, ConsulBody};
use time::OffsetDateTime;

use super::authz::{request_token, Authz};
use super::error::ApiError;
use super::{blocking_json, json_response, read_body, Params, State};
use crate::acl::tokens::{self, WriteContext};
use crate::acl::{bootstrap, policies, tables};
use crate::store::{Reads, Snapshot, Table};

/// What Consul shows instead of a SecretID to a reader without `acl` write.
const REDACTED_SECRET: &str = "<hidden>";

fn require_enabled(state: &State) -> Result<(), ApiError> {
    if state.acl.enabled() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "ACL support disabled",
        ))
    }
}

/// Any other `/v1/acl/...` path (roles, auth methods, ...).
pub async fn other(Extract(state): Extract<State>) -> ApiError {
    match require_enabled(&state) {
        Err(e) => e,
        Ok(()) => ApiError::not_found("Not found: isthmus has no such ACL endpoint"),
    }
}

/// `PUT /v1/acl/bootstrap`: the first management token, once.
pub async fn bootstrap(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    let token = state
        .store
        .write(|txn| bootstrap::bootstrap(txn, OffsetDateTime::now_utc()))
        .await?;
    tracing::info!("ACL bootstrap completed");
    Ok(json_response(&params, &token, None))
}

/// `PUT /v1/acl/token`.
pub async fn token_create(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    body: Body,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Write)?;
    let request: AclTokenWrite = decode(body, "Token").await?;
    tokens::validate(&request)?;
    let ctx = write_context(&state);
    let token = state
        .store
        .write(move |txn| tokens::create(txn, &request, ctx))
        .await?;
    Ok(json_response(&params, &token, None))
}

/// `PUT /v1/acl/token/:id`.
pub async fn token_update(
    Extract(state): Extract<State>,
    Path(accessor_id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    body: Body,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Write)?;
    let mut request: AclTokenWrite = decode(body, "Token").await?;
    if request.accessor_id.is_empty() {
        request.accessor_id = accessor_id.clone();
    }
    if request.accessor_id != accessor_id {
        return Err(ApiError::bad_request(
            "Token Accessor ID in URL and payload do not match",
        ));
    }
    tokens::validate(&request)?;
    let ctx = write_context(&state);
    let token = state
        .store
        .write(move |txn| tokens::update(txn, &request, ctx))
        .await?;
    Ok(json_response(&params, &token, None))
}

/// `GET /v1/acl/token/:id` (blocking).
pub async fn token_read(
    Extract(state): Extract<State>,
    Path(accessor_id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Read)?;
    let reveal = authz.allows(Resource::Acl, "", Access::Write);
    let now = OffsetDateTime::now_utc();
    blocking_json(&state, &params, |snap| {
        let token = tables::token(snap, &accessor_id)?
            .filter(|t| !tokens::is_expired(t, now))
            .ok_or_else(|| ApiError::not_found("Requested token does not exist"))?;
        let token = shown(snap, token, reveal)?;
        Ok((token, acl_index(snap)?))
    })
    .await
}

/// `GET /v1/acl/token/self`: the token the request presents.
pub async fn token_self(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    let secret = request_token(&headers, &uri).unwrap_or_default();
    let now = OffsetDateTime::now_utc();
    blocking_json(&state, &params, |snap| {
        let token = tables::token_by_secret(snap, &secret)?
            .filter(|t| !tokens::is_expired(t, now))
            .ok_or_else(|| ApiError::not_found("Supplied token does not exist"))?;
        Ok((shown(snap, token, true)?, acl_index(snap)?))
    })
    .await
}

/// `DELETE /v1/acl/token/:id`.
pub async fn token_delete(
    Extract(state): Extract<State>,
    Path(accessor_id): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    uri: Uri,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Write)?;
    let requester = request_token(&headers, &uri);
    state
        .store
        .write(move |txn| tokens::delete(txn, &accessor_id, requester.as_deref()))
        .await?;
    Ok(json_response(&params, &true, None))
}

/// `GET /v1/acl/tokens` (`?policy=`, `?servicename=`; blocking).
pub async fn token_list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Read)?;
    let reveal = authz.allows(Resource::Acl, "", Access::Write);
    let now = OffsetDateTime::now_utc();
    let policy = params.get("policy").filter(|p| !p.is_empty()).cloned();
    let service = params.get("servicename").filter(|s| !s.is_empty()).cloned();
    blocking_json(&state, &params, |snap| {
        // One filter from its index, the other (when both) on the result.
        let all = match (&policy, &service) {
            (Some(policy), _) => tables::tokens_with_policy(snap, policy)?,
            (None, Some(service)) => tables::tokens_with_service(snap, service)?,
            (None, None) => tables::tokens(snap)?,
        };
        let mut stubs = Vec::with_capacity(all.len());
        for token in all {
            if tokens::is_expired(&token, now) {
                continue;
            }
            if let Some(service) = &service {
                if !token
                    .service_identities
                    .iter()
                    .any(|i| &i.service_name == service)
                {
                    continue;
                }
            }
            stubs.push(shown(snap, token, reveal)?.stub());
        }
        Ok((stubs, acl_index(snap)?))
    })
    .await
}

/// `PUT /v1/acl/policy`.
pub async fn policy_create(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    body: Body,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Write)?;
    let request: AclPolicyWrite = decode(body, "Policy").await?;
    if !request.id.is_empty() {
        return Err(ApiError::bad_request(
            "Cannot specify the ID when creating a new policy",
        ));
    }
    policies::validate(&request)?;
    let policy = state
        .store
        .write(move |txn| policies::upsert(txn, &request))
        .await?;
    Ok(json_response(&params, &policy, None))
}

/// `PUT /v1/acl/policy/:id`.
pub async fn policy_update(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
    body: Body,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Write)?;
    let mut request: AclPolicyWrite = decode(body, "Policy").await?;
    if request.id.is_empty() {
        request.id = id.clone();
    } else if request.id != id {
        return Err(ApiError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    policies::validate(&request)?;
    let policy = state
        .store
        .write(move |txn| policies::upsert(txn, &request))
        .await?;
    Ok(json_response(&params, &policy, None))
}

/// `GET /v1/acl/policy/:id` (blocking).
pub async fn policy_read(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let policy = tables::policy(snap, &id)?.ok_or_else(policy_missing)?;
        Ok((policy, snap.table_index(Table::AclPolicies)?))
    })
    .await
}

/// `GET /v1/acl/policy/name/:name` (blocking).
pub async fn policy_read_by_name(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let policy = tables::policy_by_name(snap, &name)?.ok_or_else(policy_missing)?;
        Ok((policy, snap.table_index(Table::AclPolicies)?))
    })
    .await
}

/// `DELETE /v1/acl/policy/:id`.
pub async fn policy_delete(
    Extract(state): Extract<State>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Write)?;
    state
        .store
        .write(move |txn| policies::delete(txn, &id))
        .await?;
    Ok(json_response(&params, &true, None))
}

/// `GET /v1/acl/policies` (blocking).
pub async fn policy_list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let stubs: Vec<_> = tables::policies(snap)?.iter().map(|p| p.stub()).collect();
        Ok((stubs, snap.table_index(Table::AclPolicies)?))
    })
    .await
}

/// `GET /v1/acl/roles`: isthmus has no roles (token role links are
/// refused), so the list is always empty.
pub async fn role_list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_enabled(&state)?;
    authz.require(Resource::Acl, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        Ok((Vec::<()>::new(), snap.table_index(Table::AclTokens)?))
    })
    .await
}

fn policy_missing() -> ApiError {
    ApiError::not_found("Requested policy does not exist")
}

/// A token as a reader sees it: current policy names, the secret hidden
/// from readers who may not write ACLs.
fn shown(snap: &Snapshot, token: AclToken, reveal: bool) -> Result<AclToken, ApiError> {
    let mut token = tables::with_current_links(snap, token)?;
    if !reveal {
        token.secret_id = REDACTED_SECRET.into();
    }
    Ok(token)
}

/// Tokens show their policies' names: either table moves their answer.
fn acl_index(snap: &Snapshot) -> Result<u64, ApiError> {
    Ok(snap
        .table_index(Table::AclTokens)?
        .max(snap.table_index(Table::AclPolicies)?))
}

fn write_context(state: &State) -> WriteContext {
    WriteContext {
        now: OffsetDateTime::now_utc(),
        min_expiration_ttl: state.acl.settings().min_expiration_ttl,
    }
}

/// A body decoded like Consul's (`Token decoding failed: ...`); an empty
/// body is an empty object.
async fn decode<T: ConsulBody>(body: Body, what: &str) -> Result<T, ApiError> {
    let bytes = read_body(body).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    consul_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("{what} decoding failed: {e}")))
}
