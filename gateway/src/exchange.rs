//! `POST /v1/peering/exchange`: the one request the gateway serves before
//! it knows who the caller is (any client certificate will do; the agent
//! checks the single-use establishment secret). So it is bounded:
//!
//! - at most `exchange_max_per_connection` at once on one TLS connection
//!   (429) and `exchange_max_concurrent` in all (503);
//! - the body is read whole at the gateway, at most
//!   `exchange_max_body_bytes` (413) within `exchange_body_timeout` (408),
//!   before anything is sent to the agent;
//! - it then goes to the agent as one small buffered body over an HTTP/2
//!   connection of its own, so slow or numerous exchanges never hold
//!   streams on the connection that authenticated peers' streams and
//!   health queries use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use isthmus_api::peering::{AGENT_PATH_EXCHANGE, HEADER_CLIENT_FINGERPRINT};

use crate::connection::Connection;
use crate::forward::{text, Forwarder, ResponseBody};
use crate::metrics::{Endpoint, ExchangeRefusal, Metrics, Outcome, UNKNOWN_PEER};

/// The exchange's bounds (from the gateway's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimits {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_per_connection: usize,
    pub max_concurrent: usize,
}

impl ExchangeLimits {
    /// Every limit must let at least something through.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes == 0
            || self.body_timeout.is_zero()
            || self.max_per_connection == 0
            || self.max_concurrent == 0
        {
            return Err(format!(
                "exchange limits must all be above zero (max body bytes {}, body timeout {}, \
                 per connection {}, concurrent {})",
                self.max_body_bytes,
                isthmus_api::duration::format(self.body_timeout),
                self.max_per_connection,
                self.max_concurrent
            ));
        }
        Ok(())
    }
}

/// Serves exchanges; one per gateway.
#[derive(Debug)]
pub(crate) struct Exchanges {
    limits: ExchangeLimits,
    in_flight: AtomicUsize,
    forwarder: Forwarder<Full<Bytes>>,
    metrics: Arc<Metrics>,
}

/// Takes one unit of `counter` if it is below `limit`.
fn acquire(counter: &AtomicUsize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

/// An exchange in progress: released (both counts) when dropped.
struct Slot<'a> {
    connection: &'a AtomicUsize,
    total: &'a AtomicUsize,
    metrics: &'a Metrics,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.connection.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.metrics.exchange_finished();
    }
}

impl Exchanges {
    pub(crate) fn new(
        base: &str,
        token: Option<&str>,
        limits: ExchangeLimits,
        metrics: Arc<Metrics>,
    ) -> Exchanges {
        Exchanges {
            limits,
            in_flight: AtomicUsize::new(0),
            forwarder: Forwarder::new(base, token),
            metrics,
        }
    }

    fn slot<'a>(&'a self, conn: &'a Connection) -> Result<Slot<'a>, ExchangeRefusal> {
        if !acquire(&conn.exchanges, self.limits.max_per_connection) {
            return Err(ExchangeRefusal::ConnectionLimit);
        }
        if !acquire(&self.in_flight, self.limits.max_concurrent) {
            conn.exchanges.fetch_sub(1, Ordering::AcqRel);
            return Err(ExchangeRefusal::TotalLimit);
        }
        self.metrics.exchange_started();
        Ok(Slot {
            connection: &conn.exchanges,
            total: &self.in_flight,
            metrics: &self.metrics,
        })
    }

    fn refuse(&self, conn: &Connection, reason: ExchangeRefusal) -> Response<ResponseBody> {
        let limits = &self.limits;
        let (status, message) = match reason {
            ExchangeRefusal::ConnectionLimit => (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many concurrent peering exchanges on this connection (limit: {})",
                    limits.max_per_connection
                ),
            ),
            ExchangeRefusal::TotalLimit => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many concurrent peering exchanges at this gateway (limit: {}); retry later",
                    limits.max_concurrent
                ),
            ),
            ExchangeRefusal::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "peering exchange body is larger than {} bytes",
                    limits.max_body_bytes
                ),
            ),
            ExchangeRefusal::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "peering exchange body not received within {}",
                    isthmus_api::duration::format(limits.body_timeout)
                ),
            ),
        };
        tracing::info!(
            remote = %conn.remote,
            fingerprint = %conn.chain.fingerprint,
            reason = reason.label(),
            "refused a peering exchange: {message}"
        );
        self.metrics.exchange_refused(reason);
        self.metrics
            .request(UNKNOWN_PEER, Endpoint::Exchange, Outcome::Limited);
        text(status, message)
    }

    /// Reads the body (bounded in size and time), then forwards it with the
    /// client certificate's fingerprint.
    pub(crate) async fn handle(
        &self,
        conn: &Connection,
        request: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let _slot = match self.slot(conn) {
            Ok(slot) => slot,
            Err(reason) => return self.refuse(conn, reason),
        };
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body_bytes as u64) {
            return self.refuse(conn, ExchangeRefusal::TooLarge);
        }
        let read = Limited::new(body, self.limits.max_body_bytes).collect();
        let body = match tokio::time::timeout(self.limits.body_timeout, read).await {
            Err(_) => return self.refuse(conn, ExchangeRefusal::Timeout),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return self.refuse(conn, ExchangeRefusal::TooLarge)
            }
            Ok(Err(e)) => {
                tracing::info!(remote = %conn.remote, error = %e, "reading a peering exchange body failed");
                self.metrics
                    .request(UNKNOWN_PEER, Endpoint::Exchange, Outcome::Error);
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the peering exchange body: {e}"),
                );
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let fingerprint =
            HeaderValue::from_str(&conn.chain.fingerprint).expect("hex is a valid header value");
        let header = (
            HeaderName::from_static(HEADER_CLIENT_FINGERPRINT),
            fingerprint,
        );
        let request = Request::from_parts(parts, Full::new(body));
        match self
            .forwarder
            .forward(request, AGENT_PATH_EXCHANGE, header)
            .await
        {
            Ok(response) => {
                self.metrics
                    .request(UNKNOWN_PEER, Endpoint::Exchange, Outcome::Allowed);
                response
            }
            Err(e) => {
                let detail = e.detail();
                tracing::warn!(error = %detail, "forwarding a peering exchange failed");
                self.metrics
                    .request(UNKNOWN_PEER, Endpoint::Exchange, Outcome::Error);
                text(StatusCode::BAD_GATEWAY, detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_stop_at_their_limit() {
        let counter = AtomicUsize::new(0);
        assert!(acquire(&counter, 2));
        assert!(acquire(&counter, 2));
        assert!(!acquire(&counter, 2));
        counter.fetch_sub(1, Ordering::AcqRel);
        assert!(acquire(&counter, 2));
        assert_eq!(counter.load(Ordering::Acquire), 2);
    }
}
