//! The stub agent's handlers: blocking queries over its versioned
//! resources, the service catalog, and echoing peering endpoints.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use super::{service_resource, upstream_resource, StubState, Versioned};
use super::{GATEWAY_VIEW, LEAF, PROXY_VIEW};

type Params = HashMap<String, String>;

/// How long a blocking query without `wait` holds, as the agent's default.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The index and wait of a (blocking) query, after recording it.
fn record(state: &StubState, resource: &str, query: &Params) -> (u64, Duration) {
    let index: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    state.queried.send_modify(|q| {
        let seen = q.entry(resource.to_owned()).or_insert(0);
        *seen = (*seen).max(index);
    });
    let wait = query
        .get("wait")
        .and_then(|w| isthmus_api::duration::parse(w).ok())
        .unwrap_or(DEFAULT_WAIT);
    (index, wait)
}

/// A blocking query on `sender`: answers once it is set and newer than
/// the query's index, or when the wait runs out.
async fn versioned<T: Clone + serde::Serialize>(
    state: &StubState,
    resource: &str,
    sender: &Versioned<T>,
    query: &Params,
) -> Response {
    let (index, wait) = record(state, resource, query);
    let mut rx = sender.subscribe();
    let _ = tokio::time::timeout(wait, rx.wait_for(|(i, v)| v.is_some() && *i > index)).await;
    let (current, value) = rx.borrow().clone();
    match value {
        Some(value) => ([("x-consul-index", current.to_string())], Json(value)).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "nothing yet").into_response(),
    }
}

pub(super) async fn gateway_view(
    State(state): State<StubState>,
    Query(query): Query<Params>,
) -> Response {
    versioned(&state, GATEWAY_VIEW, &state.gateway_view, &query).await
}

pub(super) async fn leaf(
    State(state): State<StubState>,
    Path(_service): Path<String>,
    Query(query): Query<Params>,
) -> Response {
    versioned(&state, LEAF, &state.leaf, &query).await
}

pub(super) async fn proxy_view(
    State(state): State<StubState>,
    Query(query): Query<Params>,
) -> Response {
    versioned(&state, PROXY_VIEW, &state.proxy_view, &query).await
}

pub(super) async fn upstream(
    State(state): State<StubState>,
    Path(service): Path<String>,
    Query(query): Query<Params>,
) -> Response {
    let key = match query.get("peer") {
        Some(peer) => format!("{service}@{peer}"),
        None => service.clone(),
    };
    let (index, wait) = record(&state, &upstream_resource(&key), &query);
    let mut rx = state.upstreams.subscribe();
    let _ = tokio::time::timeout(
        wait,
        rx.wait_for(|all| all.get(&key).is_some_and(|(i, _)| *i > index)),
    )
    .await;
    let current = rx.borrow().get(&key).cloned();
    match current {
        Some((i, view)) => ([("x-consul-index", i.to_string())], Json(view)).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no such upstream yet").into_response(),
    }
}

pub(super) async fn register(
    State(state): State<StubState>,
    Json(body): Json<Value>,
) -> StatusCode {
    if state.refuse.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let id = body["ID"].as_str().unwrap_or_default().to_owned();
    state.catalog.send_modify(|(index, services)| {
        services.insert(id, body.clone());
        *index += 1;
    });
    let _ = state.registrations.send(body);
    StatusCode::OK
}

pub(super) async fn deregister(
    State(state): State<StubState>,
    Path(id): Path<String>,
) -> StatusCode {
    state.catalog.send_modify(|(index, services)| {
        services.remove(&id);
        *index += 1;
    });
    let _ = state.deregistrations.send(id);
    StatusCode::OK
}

/// `/v1/agent/service/<id>`, blocking on the catalog's index: the
/// registration, or 404.
pub(super) async fn service(
    State(state): State<StubState>,
    Path(id): Path<String>,
    Query(query): Query<Params>,
) -> Response {
    let (index, wait) = record(&state, &service_resource(&id), &query);
    let mut rx = state.catalog.subscribe();
    if index > 0 {
        let _ = tokio::time::timeout(wait, rx.wait_for(|(i, _)| *i > index)).await;
    }
    let (current, services) = rx.borrow().clone();
    match services.get(&id) {
        Some(body) => (
            [("x-consul-index", current.to_string())],
            Json(body.clone()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown service ID: {id}")).into_response(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Value {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |v| Value::String(v.to_owned()))
}

/// Answers with the caller the gateway vouched for and the body it forwarded.
pub(super) async fn exchange(headers: HeaderMap, body: Bytes) -> Json<Value> {
    Json(serde_json::json!({
        "fingerprint": header(&headers, "x-isthmus-client-fingerprint"),
        "peer": header(&headers, "x-isthmus-peer"),
        "body": String::from_utf8_lossy(&body),
    }))
}

/// Says who it is talking to, then echoes the request body as it arrives.
pub(super) async fn stream(headers: HeaderMap, body: Body) -> Body {
    let peer = headers
        .get("x-isthmus-peer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let hello = futures_util::stream::once(async move {
        Ok::<_, axum::Error>(Bytes::from(format!("peer={peer}\n")))
    });
    Body::from_stream(hello.chain(body.into_data_stream()))
}

/// Answers with the service, the peer and the query the gateway forwarded.
pub(super) async fn health(
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Params>,
) -> Json<Value> {
    Json(serde_json::json!({
        "service": name,
        "peer": header(&headers, "x-isthmus-peer"),
        "query": query,
    }))
}
