//! The Consul-compatible HTTP API.
//!
//! Every read endpoint over stored state (catalog, health, config entries,
//! CA) supports blocking queries (`?index=N&wait=D`) and answers with
//! `X-Consul-Index`; errors are plain text with a 4xx/5xx status. The web
//! UI's static assets are served under `/ui/` (see `ui`).

mod acl;
mod agent;
mod agent_checks;
mod agent_lifecycle;
mod auth;
pub mod authz;
mod catalog;
mod catalog_register;
mod config;
mod connect;
pub mod error;
mod intentions;
mod internal;
mod list_query;
mod metrics;
mod nodes;
mod origin;
mod peering;
mod peering_gateways;
mod proxy;
mod relay;
mod scope;
mod state;
mod topology;
pub mod ui;
mod ui_services;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::Router;
use isthmus_api::consul_json::{self, ConsulBody};
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::error::ApiError;
use crate::store::Snapshot;
pub use state::AgentState;

type State = Arc<AgentState>;
/// Query-string parameters as given (`?passing` arrives as `passing=""`).
pub type Params = HashMap<String, String>;

/// Bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

pub fn router(state: State) -> Router {
    let ui_enabled = state.config.ui.enabled;
    let api = Router::new()
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/metrics", get(metrics::agent_metrics))
        .route("/metrics", get(metrics::prometheus))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/reload", put(agent_lifecycle::reload))
        .route("/v1/agent/leave", put(agent_lifecycle::leave))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/service/{id}", get(agent::service))
        .route("/v1/agent/service/register", put(agent::register))
        .route("/v1/agent/service/deregister/{id}", put(agent::deregister))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/check/pass/{id}", put(agent::check_pass))
        .route("/v1/agent/check/warn/{id}", put(agent::check_warn))
        .route("/v1/agent/check/fail/{id}", put(agent::check_fail))
        .route("/v1/agent/check/update/{id}", put(agent::check_update))
        .route("/v1/agent/check/register", put(agent_checks::register))
        .route(
            "/v1/agent/check/deregister/{id}",
            put(agent_checks::deregister),
        )
        .route("/v1/agent/maintenance", put(agent_checks::node_maintenance))
        .route(
            "/v1/agent/service/maintenance/{id}",
            put(agent_checks::service_maintenance),
        )
        .route("/v1/agent/connect/ca/roots", get(connect::roots))
        .route("/v1/agent/connect/ca/leaf/{service}", get(connect::leaf))
        .route("/v1/agent/connect/authorize", post(connect::authorize))
        .route("/v1/connect/ca/roots", get(connect::roots))
        .route(
            "/v1/connect/intentions",
            get(intentions::list).post(intentions::create),
        )
        .route(
            "/v1/connect/intentions/check",
            get(connect::intention_check),
        )
        .route(
            "/v1/connect/intentions/exact",
            get(intentions::get_exact)
                .put(intentions::put_exact)
                .delete(intentions::delete_exact),
        )
        .route("/v1/connect/intentions/match", get(intentions::matches))
        .route(
            "/v1/connect/intentions/{id}",
            get(intentions::get_by_id)
                .put(intentions::update_by_id)
                .delete(intentions::delete_by_id),
        )
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{name}", get(catalog::service))
        .route("/v1/catalog/register", put(catalog_register::register))
        .route("/v1/catalog/deregister", put(catalog_register::deregister))
        .route("/v1/health/service/", get(catalog::health_service_all))
        .route("/v1/health/service/{name}", get(catalog::health_service))
        .route("/v1/health/connect/{name}", get(catalog::health_connect))
        .route("/v1/health/ingress/{name}", get(catalog::health_ingress))
        .route("/v1/catalog/connect/{name}", get(catalog::connect))
        .route(
            "/v1/catalog/gateway-services/{gateway}",
            get(catalog::gateway_services),
        )
        // Setting the agent's tokens through the API is not implemented:
        // Consul's answer while ACLs are off.
        .route("/v1/agent/token/{kind}", any(acl_disabled))
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/token", put(acl::token_create))
        .route("/v1/acl/token/self", get(acl::token_self))
        .route(
            "/v1/acl/token/{id}",
            get(acl::token_read)
                .put(acl::token_update)
                .delete(acl::token_delete),
        )
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/policy", put(acl::policy_create))
        .route("/v1/acl/policy/name/{name}", get(acl::policy_read_by_name))
        .route(
            "/v1/acl/policy/{id}",
            get(acl::policy_read)
                .put(acl::policy_update)
                .delete(acl::policy_delete),
        )
        .route("/v1/acl/policies", get(acl::policy_list))
        .route("/v1/acl/roles", get(acl::role_list))
        .route("/v1/acl/{*rest}", any(acl::other))
        .route("/v1/health/checks/{name}", get(catalog::health_checks))
        .route("/v1/health/state/", get(nodes::health_state_missing))
        .route("/v1/health/state/{state}", get(nodes::health_state))
        .route("/v1/health/node/", get(nodes::node_missing))
        .route("/v1/health/node/{node}", get(nodes::health_node))
        .route("/v1/catalog/node/", get(nodes::node_missing))
        .route("/v1/catalog/node/{node}", get(nodes::node))
        .route("/v1/catalog/node-services/", get(nodes::node_missing))
        .route(
            "/v1/catalog/node-services/{node}",
            get(nodes::node_services),
        )
        .route("/v1/status/leader", get(agent::leader))
        .route("/v1/status/peers", get(nodes::peers))
        .route("/v1/config", put(config::apply))
        .route("/v1/config/{kind}", get(config::list))
        .route(
            "/v1/config/{kind}/{name}",
            get(config::read).delete(config::delete),
        )
        .route("/v1/peering/token", post(peering::token))
        .route("/v1/peering/establish", post(peering::establish))
        .route("/v1/peerings", get(peering::list))
        .route(
            isthmus_api::peering_gateways::PATH,
            get(peering_gateways::list),
        )
        .route(
            "/v1/peering/{name}",
            get(peering::read).delete(peering::delete),
        )
        .route("/v1/exported-services", get(peering::exported_services))
        .route("/v1/internal/ui/services", get(ui_services::services))
        .route(
            "/v1/auth/groups",
            get(auth::list_groups).post(auth::create_group),
        )
        .route(
            "/v1/auth/groups/{name}",
            get(auth::read_group).delete(auth::delete_group),
        )
        .route(
            "/v1/auth/groups/{name}/permissions",
            post(auth::add_permission).delete(auth::remove_permission),
        )
        .route("/v1/auth/identities", get(auth::list_identities))
        .route("/v1/auth/identities/tls/{name}", get(auth::read_identity))
        .route(
            "/v1/auth/identities/tls/{name}/groups",
            post(auth::add_identity_group),
        )
        .route(
            "/v1/auth/identities/tls/{name}/groups/{group}",
            delete(auth::remove_identity_group),
        )
        .route(
            isthmus_api::gateway::AGENT_PATH_VIEW,
            get(internal::gateway_view),
        )
        .route(
            isthmus_api::peering::AGENT_PATH_EXCHANGE,
            post(internal::exchange),
        )
        .route(
            isthmus_api::peering::AGENT_PATH_STREAM,
            post(internal::stream),
        )
        .route(isthmus_api::proxy::AGENT_PATH_VIEW, get(proxy::view))
        .route("/v1/internal/ui/topology", get(topology::topology))
        .route(
            "/v1/internal/proxy/upstream/{service}",
            get(proxy::upstream),
        );
    // `ui_config { enabled = false }` leaves the API and drops the pages.
    let routes = if ui_enabled {
        api.merge(ui::routes())
    } else {
        api
    };
    routes
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            scope::datacenter,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(scope::not_found_text(request.uri().path()))
}

/// A request body decoded like Consul decodes it: keys matched
/// case-insensitively and in snake_case ([`isthmus_api::consul_json`]),
/// unknown ones refused with their path, the body size limit kept.
pub struct ConsulJson<T>(pub T);

impl<S: Send + Sync, T: ConsulBody + Send> FromRequest<S> for ConsulJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(request.into_body()).await?;
        consul_json::from_slice(&bytes)
            .map(ConsulJson)
            .map_err(|e| ApiError::bad_request(format!("Body decoding failed: {e}")))
    }
}

/// Reads a JSON body, refusing oversize or malformed ones with a message
/// that says what was wrong.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Body decoding failed: {e}")))
}

pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body is larger than the limit of {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::bad_request(format!("reading request body: {e}"))
            }
        })
}

/// A JSON response, pretty-printed when the query has `?pretty`.
pub fn json_response<T: Serialize>(params: &Params, value: &T, index: Option<u64>) -> Response {
    let pretty = params.contains_key("pretty");
    let body = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    let body = match body {
        Ok(mut body) => {
            // Like Consul: a trailing newline only for people reading ?pretty.
            if pretty {
                body.push(b'\n');
            }
            body
        }
        Err(e) => return ApiError::internal(format!("encoding response: {e}")).into_response(),
    };
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Some(index) = index {
        let headers = response.headers_mut();
        headers.insert("x-consul-index", HeaderValue::from(index));
        headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
        headers.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    }
    response
}

/// `?index=` and `?wait=` of a blocking query.
#[derive(Debug, Clone, Copy)]
pub struct Blocking {
    pub min_index: Option<u64>,
    pub wait: Duration,
}

impl Blocking {
    pub fn from_params(params: &Params) -> Result<Blocking, ApiError> {
        let min_index = match params.get("index").map(String::as_str) {
            None | Some("") => None,
            Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "Invalid index {raw:?}: must be a non-negative integer"
                ))
            })?),
        };
        let wait = match params.get("wait").map(String::as_str) {
            None | Some("") => DEFAULT_WAIT,
            Some(raw) => isthmus_api::duration::parse(raw)
                .map_err(|e| ApiError::bad_request(format!("Invalid wait time: {e}")))?
                .min(MAX_WAIT),
        };
        Ok(Blocking { min_index, wait })
    }
}

/// Runs `query` against a fresh snapshot until the index it reports moves
/// past `?index=`, the wait elapses or the agent shuts down, then answers
/// with the latest result. Between runs it waits on exactly what the query
/// read (the snapshot records it): a write elsewhere does not wake it, and a
/// query woken by a change that leaves its index where it was goes back to
/// waiting. Idle waits cost a parked task and nothing else.
pub async fn blocking_json<T, F>(
    state: &AgentState,
    params: &Params,
    query: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: Fn(&Snapshot) -> Result<(T, u64), ApiError>,
{
    let blocking = Blocking::from_params(params)?;
    let deadline = tokio::time::Instant::now() + blocking.wait;
    let mut shutting_down = state.shutting_down.clone();
    let mut last_run = false;
    loop {
        let snap = state.store.recording_snapshot();
        let (value, index) = query(&snap)?;
        let index = index.max(1);
        let done = match blocking.min_index {
            None => true,
            // An index from the future means the state was reset (a dev
            // agent restarted): answer at once so the client resyncs.
            Some(min) => index > min || min > state.store.index(),
        };
        if done || last_run || *shutting_down.borrow() {
            return Ok(json_response(params, &value, Some(index)));
        }
        // Not kept while parked (a result can be large and thousands of
        // queries wait): the wait's end runs the query once more instead.
        drop(value);
        let watched = snap.watch_set();
        let since = snap.state_index();
        drop(snap);
        tokio::select! {
            changed = state.store.wait_for_change(&watched, since, deadline) => {
                last_run = !changed;
            }
            _ = shutting_down.changed() => last_run = true,
        }
    }
}

/// [`blocking_json`] for a read whose results the token narrows: each run
/// of `query` starts unfiltered, and the answer says whether the one
/// returned was filtered.
pub async fn blocking_json_acl<T, F>(
    state: &AgentState,
    params: &Params,
    authz: &authz::Authz,
    query: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: Fn(&Snapshot) -> Result<(T, u64), ApiError>,
{
    let response = blocking_json(state, params, |snap| {
        authz.reset_filtered();
        query(snap)
    })
    .await?;
    Ok(authz.annotate(response))
}

/// `/v1/agent/token/:kind`: Consul's answer while ACLs are disabled; with
/// them enabled, the agent's tokens come from its settings only.
async fn acl_disabled(axum::extract::State(state): axum::extract::State<State>) -> ApiError {
    if state.acl.enabled() {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "isthmus takes the agent's tokens from its settings (acl { tokens { ... } }), not from this endpoint",
        )
    } else {
        ApiError::new(StatusCode::UNAUTHORIZED, "ACL support disabled")
    }
}

/// Whether a flag-like query parameter is set (`?passing`, `?passing=true`).
pub fn flag(params: &Params, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}
