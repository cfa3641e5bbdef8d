//! HTTP plumbing shared by both directions: the response body type,
//! proxy-generated responses, hop-by-hop headers, upgrades, and serving
//! one connection with graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use isthmus_runtime::listen::{Limits, ListenerCounters, Watchdog};

use crate::balance::InFlight;
use crate::upstream::Endpoint;
use isthmus_dataplane::coalesce::{self, Coalesce};
use isthmus_dataplane::drain::Drain;
use isthmus_dataplane::io::{splice, Spliced};

/// Says which proxy-generated error a response is.
pub(crate) const ERROR_HEADER: &str = "x-isthmus-error";
/// Envoy's body for a request an L7 intention denies.
pub(crate) const RBAC_DENIED: &str = "RBAC: access denied";

/// A response body: streamed from the other side, or made by the proxy.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    Remote {
        /// From the app: small chunks that arrive together leave as one
        /// frame (one TLS record, one write), none waiting for more.
        body: Coalesce<Incoming>,
        /// Keeps the request counted against its endpoint until the body ends.
        _in_flight: Option<InFlight<Endpoint>>,
    },
    Local(Full<Bytes>),
}

impl ResponseBody {
    /// A body from the other sidecar, passed on frame by frame: it comes
    /// in frames of up to 16 KiB already, and the HTTP/1 writer queues
    /// them without copying, so merging them would only add a copy.
    pub(crate) fn remote(body: Incoming, in_flight: Option<InFlight<Endpoint>>) -> ResponseBody {
        ResponseBody::Remote {
            body: Coalesce::new(body, 0),
            _in_flight: in_flight,
        }
    }

    /// A body from the local application, whose small chunks are merged
    /// (fewer HTTP/2 DATA frames and TLS records to the other sidecar).
    pub(crate) fn from_app(body: Incoming) -> ResponseBody {
        ResponseBody::Remote {
            body: Coalesce::new(body, coalesce::DEFAULT_MAX),
            _in_flight: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Remote { body, .. } => Pin::new(body).poll_frame(cx),
            ResponseBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|never: Infallible| match never {}))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Remote { body, .. } => body.is_end_stream(),
            ResponseBody::Local(full) => full.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Remote { body, .. } => body.size_hint(),
            ResponseBody::Local(full) => full.size_hint(),
        }
    }
}

/// A response the proxy makes itself.
pub(crate) fn local_response(
    status: StatusCode,
    error: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::Local(Full::new(body.into())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(error) = error {
        headers.insert(ERROR_HEADER, HeaderValue::from_static(error));
    }
    response
}

/// 403 for a request the intentions deny.
pub(crate) fn forbidden() -> Response<ResponseBody> {
    local_response(
        StatusCode::FORBIDDEN,
        None,
        Bytes::from_static(RBAC_DENIED.as_bytes()),
    )
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An HTTP/1.1 request asking to switch protocols (WebSocket).
pub(crate) fn is_upgrade_request<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request.headers().contains_key(UPGRADE)
        && has_token(request.headers(), &CONNECTION, "upgrade")
}

/// The server side of both directions: HTTP/1.1 (with upgrades) or HTTP/2,
/// detected from the connection preface, with `limits`' header-read timeout.
pub(crate) fn server(limits: &Limits) -> auto::Builder<TokioExecutor> {
    isthmus_runtime::listen::server(limits)
}

/// Serves one connection until it ends; when draining starts, HTTP/2 gets
/// a GOAWAY and HTTP/1 closes after the current response; at the drain
/// deadline the connection is dropped. A connection that completes no
/// request's headers within the header-read timeout, or has no request in
/// flight for the idle timeout, is closed (and counted in `counters`).
pub(crate) async fn serve_connection<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    drain: Drain,
    limits: &Limits,
    counters: &ListenerCounters,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let watchdog = Watchdog::new(limits, counters);
    let connection = builder.serve_connection_with_upgrades(io, watchdog.track(service));
    watchdog
        .drive(connection, drain.draining(), drain.aborted())
        .await;
}

/// Once both sides of an upgrade are switched, copies bytes between them
/// until both are done (or the drain deadline).
pub(crate) fn splice_upgrades(downstream: OnUpgrade, upstream: OnUpgrade, drain: Drain) {
    splice_upgrades_until(downstream, upstream, drain, std::future::pending());
}

/// [`splice_upgrades`], also cut as soon as `revoked` resolves (the caller
/// is no longer allowed).
pub(crate) fn splice_upgrades_until(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    drain: Drain,
    revoked: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        let (downstream, upstream) = match tokio::try_join!(downstream, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgrade did not complete");
                return;
            }
        };
        let (mut downstream, mut upstream) = (TokioIo::new(downstream), TokioIo::new(upstream));
        let mut why = "at the drain deadline";
        let stop = async {
            tokio::select! {
                _ = drain.aborted() => {}
                _ = revoked => why = "the caller is no longer allowed",
            }
        };
        match splice(&mut downstream, &mut upstream, stop).await {
            Spliced::Done(up, down) => tracing::debug!(up, down, "upgraded connection finished"),
            Spliced::Failed(e) => tracing::debug!(error = %e, "upgraded connection failed"),
            Spliced::Stopped => tracing::debug!("upgraded connection cut: {why}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use isthmus_dataplane::http::strip_hop_by_hop;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn upgrades_keep_what_they_need() {
        let mut request = Request::new(());
        *request.headers_mut() = headers(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade_request(&request));
        strip_hop_by_hop(request.headers_mut(), true);
        let h = request.headers();
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("sec-websocket-key").unwrap(), "k");
        assert!(h.get("x-hop").is_none());

        let mut h2 = Request::new(());
        *h2.version_mut() = Version::HTTP_2;
        *h2.headers_mut() = headers(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        assert!(!is_upgrade_request(&h2));
    }

    #[test]
    fn local_responses() {
        let denied = forbidden();
        assert_eq!(denied.status(), StatusCode::FORBIDDEN);
        assert!(denied.headers().get(ERROR_HEADER).is_none());
        let unavailable = local_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("no healthy endpoint"),
            "why",
        );
        assert_eq!(unavailable.headers()[ERROR_HEADER], "no healthy endpoint");
    }
}
