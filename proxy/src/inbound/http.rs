//! Inbound HTTP: each request is authorized against the current
//! intentions (L7 permissions by method, path and headers; an L4 deny that
//! arrived since the connection opened), then forwarded to the local
//! application over a pooled plaintext client, bodies streamed both ways.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use isthmus_api::intentions::Decision;

use super::{Caller, Inbound};
use crate::config::Protocol;
use crate::drain::Drain;
use crate::http::{
    forbidden, is_upgrade_request, local_response, splice_upgrades, strip_hop_by_hop, ResponseBody,
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

/// Authorizes and forwards one request.
pub(super) async fn handle(
    inbound: &Inbound,
    caller: &Caller,
    request: Request<Incoming>,
    drain: &Drain,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let traffic = &inbound.metrics.inbound;
    traffic.request();
    let response = match denial(inbound, caller, &request) {
        None => forward(inbound, caller, request, drain).await,
        Some(denied) => denied,
    };
    traffic.response(response.status(), started);
    response
}

/// Checks the request against the intentions in force now: the response
/// to send instead of forwarding, if it is denied.
fn denial(
    inbound: &Inbound,
    caller: &Caller,
    request: &Request<Incoming>,
) -> Option<Response<ResponseBody>> {
    let guard = inbound.identity.load();
    let snapshot = guard
        .as_deref()
        .expect("a connection exists only after the first snapshot");
    // A peer's caller whose service export was withdrawn is refused like an
    // untrusted one.
    let decision = caller
        .peer(snapshot)
        .filter(|peer| Caller::not_exported(snapshot, *peer, &inbound.service).is_none())
        .map(|peer| {
            snapshot
                .policy
                .intentions
                .decide(&caller.source(peer), &inbound.service)
        });
    match decision {
        Some(Decision::L4 { allow: true, .. }) => None,
        Some(Decision::L7(rules)) => {
            let path = request.uri().path();
            if rules.authorize(request.method(), path, request.headers()) {
                caller.counter(&caller.l7_allowed, &inbound.metrics, true, Layer::L7);
                None
            } else {
                tracing::debug!(source = %caller.name, method = %request.method(), "request denied by an L7 intention");
                caller.counter(&caller.l7_denied, &inbound.metrics, false, Layer::L7);
                Some(forbidden())
            }
        }
        // Denied since the connection opened (or the caller's peering is gone):
        // refuse, and ask an HTTP/1 caller to go away.
        Some(Decision::L4 { allow: false, .. }) | None => {
            let reason = decision.map_or_else(
                || "trust domain no longer trusted, or service no longer exported".to_owned(),
                |d| d.reason(),
            );
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
    }
}

async fn forward(
    inbound: &Inbound,
    caller: &Caller,
    mut request: Request<Incoming>,
    drain: &Drain,
) -> Response<ResponseBody> {
    let app = &inbound.app;
    let upgrade = is_upgrade_request(&request).then(|| hyper::upgrade::on(&mut request));
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
                Some(downstream) if switching => {
                    let upstream = hyper::upgrade::on(&mut response);
                    splice_upgrades(downstream, upstream, drain.clone());
                    strip_hop_by_hop(response.headers_mut(), true);
                }
                _ => strip_hop_by_hop(response.headers_mut(), false),
            }
            response.map(|body| ResponseBody::remote(body, None))
        }
        Err(e) => {
            let unreachable = e.is_connect();
            tracing::debug!(error = %isthmus_api::retry::error_chain(&e), "forwarding to the local application failed");
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
