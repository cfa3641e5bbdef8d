//! Outbound HTTP: each request from the local application goes to one of
//! the upstream's endpoints over a pooled HTTP/2 mTLS connection. A request
//! that never left (the connection could not be made, or was closed before
//! the request was written) is retried once; anything else fails with an
//! explicit status, an `x-isthmus-error` header and a reason.

use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use isthmus_dataplane::http::strip_hop_by_hop;

use crate::balance::{pick, InFlight};
use crate::http::{is_upgrade_request, local_response, splice_upgrades, ResponseBody};
use crate::metrics::{Metrics, OutboundError};
use crate::pool::ConnectError;
use crate::upstream::{Route, Upstream};
use isthmus_dataplane::drain::Drain;

/// One retry, on another endpoint when the first could not be reached.
const ATTEMPTS: usize = 2;

/// Why a request got no response from the upstream.
struct Failure {
    kind: OutboundError,
    detail: String,
}

impl Failure {
    fn new(kind: OutboundError, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }

    fn connect(e: &ConnectError) -> Failure {
        Failure::new(e.kind(), e.to_string())
    }

    fn response(&self, upstream: &Upstream) -> Response<ResponseBody> {
        let (status, error) = match self.kind {
            OutboundError::NotReady => (StatusCode::SERVICE_UNAVAILABLE, "proxy not ready"),
            OutboundError::NoEndpoint => (StatusCode::SERVICE_UNAVAILABLE, "no healthy endpoint"),
            OutboundError::Connect => (StatusCode::SERVICE_UNAVAILABLE, "upstream connect failed"),
            OutboundError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "upstream connect timeout"),
            OutboundError::Tls => (StatusCode::BAD_GATEWAY, "upstream tls failed"),
            OutboundError::Protocol => (StatusCode::BAD_GATEWAY, "upstream protocol error"),
            OutboundError::Request => (StatusCode::BAD_GATEWAY, "upstream request failed"),
        };
        local_response(
            status,
            Some(error),
            format!("{}: {}\n", upstream.label, self.detail),
        )
    }
}

/// Forwards one request and counts it.
pub(super) async fn handle(
    metrics: &Metrics,
    upstream: &Upstream,
    request: Request<Incoming>,
    drain: &Drain,
) -> Response<ResponseBody> {
    let started = Instant::now();
    metrics.outbound.request();
    let response = match forward(upstream, request, drain).await {
        Ok(response) => response,
        Err(failure) => {
            tracing::debug!(upstream = %upstream.label, kind = failure.kind.label(), detail = %failure.detail, "outbound request failed");
            failure.response(upstream)
        }
    };
    metrics.outbound.response(response.status(), started);
    response
}

async fn forward(
    upstream: &Upstream,
    mut request: Request<Incoming>,
    drain: &Drain,
) -> Result<Response<ResponseBody>, Failure> {
    let route = upstream.current_route();
    if let Some((kind, reason)) = &route.unavailable {
        upstream.errors.count(*kind);
        return Err(Failure::new(*kind, reason.clone()));
    }
    route.count_request();
    if is_upgrade_request(&request) {
        // Boxed: a rare path whose future (TCP connect, TLS and HTTP/1.1
        // handshakes) would otherwise size every request's future, which
        // hyper keeps allocated for as long as each connection lives.
        return Box::pin(upgrade(upstream, &route, request, drain)).await;
    }
    prepare(upstream, &mut request);
    let mut exclude = None;
    let mut failure = None;
    for _ in 0..ATTEMPTS {
        let Some(i) = pick(&route.endpoints, exclude) else {
            break;
        };
        let endpoint = &route.endpoints[i];
        let in_flight = InFlight::new(endpoint.clone());
        let mut sender = match endpoint.pool.get(&endpoint.connector, &endpoint.addr).await {
            Ok(sender) => sender,
            Err(e) => {
                upstream.errors.count(e.kind());
                endpoint.load.failed();
                failure = Some(Failure::connect(&e));
                exclude = Some(i);
                continue;
            }
        };
        match sender.try_send_request(request).await {
            Ok(response) => {
                return Ok(response.map(|body| ResponseBody::remote(body, Some(in_flight))))
            }
            Err(mut e) => match e.take_message() {
                // Never written: the connection was closing. Safe to send again.
                Some(unsent) => {
                    request = unsent;
                    failure = Some(Failure::new(OutboundError::Request, e.error().to_string()));
                }
                None => {
                    upstream.errors.count(OutboundError::Request);
                    let error = e.into_error();
                    return Err(Failure::new(
                        OutboundError::Request,
                        isthmus_dataplane::retry::error_chain(&error),
                    ));
                }
            },
        }
    }
    let failure =
        failure.unwrap_or_else(|| Failure::new(OutboundError::NoEndpoint, "no endpoint to try"));
    if failure.kind == OutboundError::Request {
        // Retried transparently until now; this one reaches the caller.
        upstream.errors.count(OutboundError::Request);
    }
    Err(failure)
}

/// Makes a request from the local application fit for HTTP/2 to the
/// upstream: absolute URI (authority from `Host`), no hop-by-hop headers.
fn prepare(upstream: &Upstream, request: &mut Request<Incoming>) {
    let authority = request
        .headers()
        .get(HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
        .or_else(|| request.uri().authority().cloned())
        .unwrap_or_else(|| {
            Authority::try_from(upstream.spec.service.as_str())
                .expect("a service name is an authority")
        });
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(
        request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    *request.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
    *request.version_mut() = Version::HTTP_2;
    let headers = request.headers_mut();
    strip_hop_by_hop(headers, false);
    headers.remove(HOST);
}

/// An HTTP/1.1 upgrade (WebSocket) gets its own HTTP/1.1 mTLS connection;
/// once both sides switched, bytes are copied through.
async fn upgrade(
    upstream: &Upstream,
    route: &Arc<Route>,
    mut request: Request<Incoming>,
    drain: &Drain,
) -> Result<Response<ResponseBody>, Failure> {
    let Some(connector) = &route.upgrade else {
        return Err(Failure::new(
            OutboundError::Protocol,
            "upgrades need HTTP mode",
        ));
    };
    let Some(i) = pick(&route.endpoints, None) else {
        return Err(Failure::new(
            OutboundError::NoEndpoint,
            "no endpoint to try",
        ));
    };
    let endpoint = &route.endpoints[i];
    let in_flight = InFlight::new(endpoint.clone());
    let mut sender = match connector.http1_upgradable(&endpoint.addr).await {
        Ok(sender) => sender,
        Err(e) => {
            upstream.errors.count(e.kind());
            endpoint.load.failed();
            return Err(Failure::connect(&e));
        }
    };
    let downstream = hyper::upgrade::on(&mut request);
    strip_hop_by_hop(request.headers_mut(), true);
    let mut response = sender.send_request(request).await.map_err(|e| {
        upstream.errors.count(OutboundError::Request);
        Failure::new(
            OutboundError::Request,
            isthmus_dataplane::retry::error_chain(&e),
        )
    })?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let remote = hyper::upgrade::on(&mut response);
        splice_upgrades(downstream, remote, drain.clone());
        strip_hop_by_hop(response.headers_mut(), true);
    } else {
        strip_hop_by_hop(response.headers_mut(), false);
    }
    Ok(response.map(|body| ResponseBody::remote(body, Some(in_flight))))
}
