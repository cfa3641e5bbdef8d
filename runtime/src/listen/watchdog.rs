//! Enforcing the header-read and idle timeouts on one connection: a
//! request is in flight from the service call until its response body
//! ends; the connection is closed when none has been for the allowance.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;

use super::{Limits, ListenerCounters, Timeout, TIMEOUT_GRACE};

/// What is happening on one connection, shared by its requests.
#[derive(Debug)]
struct Activity {
    start: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the last request ended.
    idle_since: AtomicU64,
    served: AtomicBool,
    ended: Notify,
}

/// Enforces the header-read and idle timeouts on one connection: wrap the
/// service with [`Watchdog::track`], then run the connection with
/// [`Watchdog::drive`].
#[derive(Debug)]
pub struct Watchdog {
    activity: Arc<Activity>,
    header_read: Duration,
    idle: Duration,
    counters: ListenerCounters,
}

/// How a connection driven by a [`Watchdog`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client or the server closed it (graceful shutdown included).
    Closed,
    /// It ended with an error (not a timeout).
    Failed,
    /// Closed by a timeout (already counted).
    TimedOut(Timeout),
    /// The abort future completed first.
    Aborted,
}

impl Watchdog {
    pub fn new(limits: &Limits, counters: &ListenerCounters) -> Watchdog {
        Watchdog {
            activity: Arc::new(Activity {
                start: tokio::time::Instant::now(),
                in_flight: AtomicUsize::new(0),
                idle_since: AtomicU64::new(0),
                served: AtomicBool::new(false),
                ended: Notify::new(),
            }),
            header_read: limits.header_read_timeout,
            idle: limits.idle_timeout,
            counters: counters.clone(),
        }
    }

    /// Wraps `service` so that each request is in flight until its
    /// response body ends.
    pub fn track<S>(&self, service: S) -> Tracked<S> {
        Tracked {
            inner: service,
            activity: self.activity.clone(),
        }
    }

    /// Runs `connection` until it ends, a timeout closes it, or `abort`
    /// completes; starts its graceful shutdown when `graceful` completes.
    pub async fn drive<C, G, A>(self, connection: C, graceful: G, abort: A) -> Ended
    where
        C: GracefulConnection,
        C::Error: Into<Box<dyn StdError + Send + Sync>>,
        G: Future<Output = ()>,
        A: Future<Output = ()>,
    {
        tokio::pin!(connection, graceful, abort);
        let expired = self.expired();
        tokio::pin!(expired);
        let mut draining = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    return match result {
                        Ok(()) => Ended::Closed,
                        Err(e) => {
                            let e = e.into();
                            if is_header_timeout(&*e) {
                                self.counters.timed_out(Timeout::HeaderRead);
                                Ended::TimedOut(Timeout::HeaderRead)
                            } else {
                                tracing::debug!(error = %e, "HTTP connection ended with an error");
                                Ended::Failed
                            }
                        }
                    };
                }
                timeout = expired.as_mut() => {
                    self.counters.timed_out(timeout);
                    tracing::debug!(timeout = timeout.label(), "closing an HTTP connection: timed out");
                    // No request is in flight: an HTTP/2 client gets a
                    // GOAWAY (so it retries elsewhere rather than on a
                    // dead connection), HTTP/1 is closed; either way the
                    // connection is dropped after a short grace.
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = tokio::time::sleep(TIMEOUT_GRACE) => {}
                        _ = abort.as_mut() => return Ended::Aborted,
                    }
                    return Ended::TimedOut(timeout);
                }
                _ = graceful.as_mut(), if !draining => {
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = abort.as_mut() => return Ended::Aborted,
            }
        }
    }

    /// Resolves when the connection has had no request in flight for its
    /// allowance: the header-read timeout before the first request, the
    /// idle timeout after.
    async fn expired(&self) -> Timeout {
        let a = &self.activity;
        loop {
            if a.in_flight.load(Ordering::Acquire) > 0 {
                a.ended.notified().await;
                continue;
            }
            let since = a.idle_since.load(Ordering::Acquire);
            let (limit, timeout) = if a.served.load(Ordering::Acquire) {
                (self.idle, Timeout::Idle)
            } else {
                (self.header_read, Timeout::HeaderRead)
            };
            tokio::time::sleep_until(a.start + Duration::from_millis(since) + limit).await;
            if a.in_flight.load(Ordering::Acquire) == 0
                && a.idle_since.load(Ordering::Acquire) == since
                && a.served.load(Ordering::Acquire) == (timeout == Timeout::Idle)
            {
                return timeout;
            }
        }
    }
}

fn is_header_timeout(e: &(dyn StdError + Send + Sync + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>() {
            if hyper_err.is_timeout() {
                return true;
            }
        }
        current = err.source();
    }
    false
}

/// A service whose requests a [`Watchdog`] sees.
#[derive(Debug, Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

/// Marks a request in flight until dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.start.elapsed().as_millis() as u64;
        a.idle_since.store(now, Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.ended.notify_one();
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    B: Body + Unpin,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = InFlight::new(&self.activity);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _in_flight: guard,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it ends.
#[derive(Debug)]
pub struct TrackedBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
