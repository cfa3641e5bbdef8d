//! Inbound HTTP: each request's path is normalized (or the request refused
//! with 400), then the request is authorized against the current
//! intentions (L7 permissions by method, normalized path and headers; an
//! L4 deny, a withdrawn export or `can_connect` since the connection
//! opened), then forwarded with the normalized path to the local
//! application over a pooled plaintext client, bodies streamed both ways.
//! An upgraded connection (WebSocket) is judged again at every change of
//! the snapshot, and cut once it is no longer allowed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use isthmus_api::http_path::{self, NormalPath, PathError};
use isthmus_api::intentions::Decision;
use isthmus_dataplane::http::strip_hop_by_hop;

use super::{Admitted, Caller, Inbound};
use crate::config::Protocol;
use crate::http::{
    forbidden, is_upgrade_request, local_response, splice_upgrades_until, ResponseBody,
};
use crate::metrics::Layer;

const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The local application, as an HTTP client sees it.
pub(crate) struct LocalApp {
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
    version: Version,
}

impl LocalApp {
    pub(crate) fn new(addr: SocketAddr, protocol: Protocol) -> LocalApp {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(APP_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(APP_IDLE_TIMEOUT)
            .http2_only(protocol == Protocol::Http2);
        LocalApp {
            client: builder.build(connector),
            authority: Authority::try_from(addr.to_string())
                .expect("a socket address is an authority"),
            version: if protocol == Protocol::Http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
        }
    }
}

/// Normalizes, authorizes and forwards one request.
pub(super) async fn handle(
    connection: &Arc<Admitted>,
    request: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let traffic = &connection.inbound.metrics.inbound;
    traffic.request();
    let response = authorize_and_forward(connection, request).await;
    traffic.response(response.status(), started);
    let caller = &connection.caller;
    caller
        .traffic(&connection.inbound.metrics)
        .response(response.status(), started);
    response
}

/// What an upgrade was authorized on: judged again whenever the
/// intentions, the trust bundle or the exports change.
struct UpgradeRequest {
    method: Method,
    path: NormalPath<'static>,
    headers: HeaderMap,
}

async fn authorize_and_forward(
    connection: &Arc<Admitted>,
    mut request: Request<Incoming>,
) -> Response<ResponseBody> {
    let (inbound, caller) = (&*connection.inbound, &connection.caller);
    // Every request, whatever the intentions, so that what the application
    // serves is what was judged.
    let path = match http_path::normalize(request.uri().path()) {
        Ok(path) => path,
        Err(e) => return refuse_path(inbound, caller, &request, e),
    };
    if let Some(denied) = denial(inbound, caller, &request, &path) {
        return denied;
    }
    let upgrade = is_upgrade_request(&request).then(|| UpgradeRequest {
        method: request.method().clone(),
        path: path.clone().into_owned(),
        headers: request.headers().clone(),
    });
    if let Some(normal) = path.into_rewritten() {
        if let Err(e) = set_path(&mut request, normal) {
            tracing::debug!(error = %e, "cannot rewrite the request's path");
            return refuse_path(inbound, caller, &request, PathError::InvalidCharacter);
        }
    }
    forward(connection, request, upgrade).await
}

/// 400 for a request whose path cannot be normalized.
fn refuse_path(
    inbound: &Inbound,
    caller: &Caller,
    request: &Request<Incoming>,
    error: PathError,
) -> Response<ResponseBody> {
    tracing::debug!(
        source = %caller.name,
        peer = %caller.peer_label,
        method = %request.method(),
        kind = error.label(),
        "refusing a request: {error}"
    );
    inbound.metrics.inbound_path_refused(error);
    local_response(StatusCode::BAD_REQUEST, None, format!("{error}\n"))
}

/// Replaces the request's path with its normal form, keeping the query.
fn set_path(request: &mut Request<Incoming>, path: String) -> Result<(), http::Error> {
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query)?);
    *request.uri_mut() = Uri::from_parts(parts)?;
    Ok(())
}

/// Checks the request against the intentions in force now: the response
/// to send instead of forwarding, if it is denied.
fn denial(
    inbound: &Inbound,
    caller: &Caller,
    request: &Request<Incoming>,
    path: &NormalPath<'_>,
) -> Option<Response<ResponseBody>> {
    let guard = inbound.identity.load();
    let snapshot = guard
        .as_deref()
        .expect("a connection exists only after the first snapshot");
    // A peer's caller whose peering lost the service (export or
    // can_connect withdrawn) is refused like an untrusted one.
    let reason = match inbound.decide(caller, snapshot) {
        Ok(Decision::L4 { allow: true, .. }) => return None,
        Ok(Decision::L7(rules)) => {
            return if rules.authorize(request.method(), path, request.headers()) {
                caller.counter(&caller.l7_allowed, &inbound.metrics, true, Layer::L7);
                None
            } else {
                tracing::debug!(source = %caller.name, method = %request.method(), "request denied by an L7 intention");
                caller.counter(&caller.l7_denied, &inbound.metrics, false, Layer::L7);
                Some(forbidden())
            };
        }
        Ok(decision) => decision.reason(),
        Err(reason) => reason,
    };
    // Denied since the connection opened: refuse, and ask an HTTP/1 caller
    // to go away.
    if caller.l4_denied.get().is_none() {
        inbound.denied(caller, Layer::L4, &reason);
    } else {
        caller.counter(&caller.l4_denied, &inbound.metrics, false, Layer::L4);
    }
    let mut response = forbidden();
    if request.version() < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Some(response)
}

/// Why an upgraded connection may no longer run, if it may not: judged as
/// its upgrade request was, against the snapshot in force now.
fn upgrade_revoked(connection: &Admitted, upgrade: &UpgradeRequest) -> Option<(Layer, String)> {
    let inbound = &connection.inbound;
    let guard = inbound.identity.load();
    let Some(snapshot) = guard.as_deref() else {
        return Some((Layer::L4, "no proxy view".into()));
    };
    match inbound.decide(&connection.caller, snapshot) {
        Err(reason) => Some((Layer::L4, reason)),
        Ok(Decision::L4 { allow: true, .. }) => None,
        Ok(Decision::L7(rules)) => {
            if rules.authorize(&upgrade.method, &upgrade.path, &upgrade.headers) {
                None
            } else {
                let intention = rules.intention();
                Some((
                    Layer::L7,
                    format!(
                        "the L7 intention {} => {} no longer allows the upgrade {} {}",
                        intention.source, intention.destination, upgrade.method, upgrade.path
                    ),
                ))
            }
        }
        Ok(decision) => Some((Layer::L4, decision.reason())),
    }
}

/// Resolves once a change (intentions, trust bundle, exports) no longer
/// allows an upgraded connection; checked once at once, then at every new
/// snapshot, as TCP connections are.
async fn until_revoked(connection: Arc<Admitted>, upgrade: UpgradeRequest) {
    let mut changes = connection.inbound.identity.changes();
    loop {
        if let Some((layer, reason)) = upgrade_revoked(&connection, &upgrade) {
            tracing::debug!(source = %connection.caller.name, "cutting an upgraded connection");
            connection
                .inbound
                .denied(&connection.caller, layer, &reason);
            return;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn forward(
    connection: &Arc<Admitted>,
    mut request: Request<Incoming>,
    upgrade_request: Option<UpgradeRequest>,
) -> Response<ResponseBody> {
    let (caller, app) = (&connection.caller, &connection.inbound.app);
    let upgrade = upgrade_request.map(|checked| (hyper::upgrade::on(&mut request), checked));
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
    if !parts.headers.contains_key(HOST) {
        if let Some(authority) = parts.uri.authority() {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(HOST, host);
            }
        }
    }
    parts.headers.insert(XFCC, caller.xfcc.clone());
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(app.authority.clone());
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    parts.uri = Uri::from_parts(uri).expect("scheme, authority and path make a URI");
    parts.version = app.version;
    match app.client.request(Request::from_parts(parts, body)).await {
        Ok(mut response) => {
            let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            match upgrade {
                Some((downstream, checked)) if switching => {
                    let upstream = hyper::upgrade::on(&mut response);
                    let revoked = until_revoked(connection.clone(), checked);
                    splice_upgrades_until(downstream, upstream, connection.drain.clone(), revoked);
                    strip_hop_by_hop(response.headers_mut(), true);
                }
                _ => strip_hop_by_hop(response.headers_mut(), false),
            }
            response.map(ResponseBody::from_app)
        }
        Err(e) => {
            let unreachable = e.is_connect();
            tracing::debug!(error = %isthmus_dataplane::retry::error_chain(&e), "forwarding to the local application failed");
            if unreachable {
                local_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("local application unreachable"),
                    format!(
                        "cannot connect to the local application at {}\n",
                        app.authority
                    ),
                )
            } else {
                local_response(
                    StatusCode::BAD_GATEWAY,
                    Some("local application failed"),
                    "the local application's response failed\n",
                )
            }
        }
    }
}
