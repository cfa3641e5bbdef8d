//! Peering requests that reach an agent which does not lead the cluster
//! are passed on to the leader, which runs the cluster's peering streams
//! and exchanges: a mesh gateway may forward to any agent. The relay speaks
//! HTTP/2 (h2c) to the leader's API, streaming both bodies, like the
//! gateway's own forwarding.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri, Version};
use axum::response::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::error::ApiError;
use super::State;

/// Marks a relayed request with the relaying agent's node: a request is
/// relayed at most once.
pub const HEADER_RELAYED_BY: &str = "x-isthmus-relayed-by";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Headers that describe one hop, not the request.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Where this request must go instead, when another agent leads: `Ok(None)`
/// when this agent leads (or is the cluster's only one).
pub fn leader_elsewhere(state: &State, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if state.membership.is_leader() {
        return Ok(None);
    }
    if headers.contains_key(HEADER_RELAYED_BY) {
        return Err(unavailable(
            "this agent was named the leader but no longer leads (the leadership is changing); retry",
        ));
    }
    match state.membership.view().leader {
        Some(leader) => Ok(Some(leader.api)),
        None => Err(unavailable("the cluster has no leader right now; retry")),
    }
}

fn unavailable(message: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message.to_owned())
}

/// Sends a `POST path` with `headers` and `body` to the leader at `leader`
/// and answers with what it answers.
pub async fn to_leader(
    state: &State,
    leader: &str,
    path: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    request_leader(state, leader, Method::POST, path, headers, body).await
}

/// Like [`to_leader`], with any method: for what only the leader knows
/// (its gateway probes' results).
pub async fn request_leader(
    state: &State,
    leader: &str,
    method: Method,
    path: &str,
    mut headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let uri: Uri = format!("http://{leader}{path}")
        .parse()
        .map_err(|e| ApiError::internal(format!("the leader's address {leader:?}: {e}")))?;
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(axum::http::header::HOST);
    headers.insert(
        HEADER_RELAYED_BY,
        HeaderValue::from_str(&state.node.name)
            .unwrap_or_else(|_| HeaderValue::from_static("agent")),
    );
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_2;
    *request.headers_mut() = headers;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .build(connector);
    tracing::debug!(%leader, path, "relaying a peering request to the leader");
    let response = client.request(request).await.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("relaying to the cluster's leader at {leader}: {e}"),
        )
    })?;
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}
