//! Limits every HTTP listener of the project applies (the agent's API, the
//! admin listeners, the gateway's peering server, the sidecar's inbound):
//!
//! - a connection cap, in total and optionally per client IP
//!   ([`ConnLimiter`]): a connection over it is accepted and closed at
//!   once, so the accept queue keeps draining and the process keeps its
//!   file descriptors;
//! - a header-read timeout: a connection that has not completed a request's
//!   headers within it is closed, whether it sent nothing, a partial request
//!   line or only the HTTP/2 preface;
//! - an idle timeout: a connection with no request in flight (HTTP/1
//!   keep-alive, or HTTP/2 with no open stream) for that long is closed.
//!   A request is in flight from its headers until its response body ends,
//!   so long-polls and long-lived streams are never idle.
//!
//! [`server`] configures hyper-util's builder, [`Watchdog`] enforces the
//! timeouts on one connection, [`serve`] is a whole accept loop for plain
//! HTTP listeners ([`serve_upgraded`] with [`tls_handshake`] for HTTPS:
//! the handshake has its own timeout and holds the connection's place
//! under the cap), and [`ListenerMetrics`] counts refusals and timeouts in a
//! component's registry.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{IntCounter, IntCounterVec, Registry};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Default time a connection gets to complete a request's headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a connection may stay open with no request in flight.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default connection cap of the admin listeners (scrapes and probes).
pub const DEFAULT_ADMIN_MAX_CONNS: usize = 64;
/// Interval of HTTP/2 keep-alive pings (they never count as activity).
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// At most one refusal log line per listener per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
const CLIENT_SHARDS: usize = 16;
/// How long a timed-out connection gets to close after its GOAWAY.
pub(crate) const TIMEOUT_GRACE: Duration = Duration::from_millis(500);

/// One listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// Connections open at once, at least 1.
    pub max_conns: usize,
    /// Connections open at once from one client IP; 0 for no such cap.
    pub max_conns_per_client: usize,
}

impl Limits {
    /// The default timeouts with a total cap and no per-client cap.
    pub const fn with_max_conns(max_conns: usize) -> Limits {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_conns,
            max_conns_per_client: 0,
        }
    }

    /// What an admin listener gets by default.
    pub const fn admin() -> Limits {
        Limits::with_max_conns(DEFAULT_ADMIN_MAX_CONNS)
    }

    /// Lowers the connection cap to three quarters of the process's
    /// open-file limit if it is above that (logged), so that a flood up to
    /// the cap leaves descriptors for everything else (health checks, the
    /// store, outgoing connections). `what` names the listener in the log.
    pub fn fit_fd_limit(&mut self, what: &str) {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let Some(limit) = limit else {
            return;
        };
        let budget = usize::try_from(limit / 4 * 3).unwrap_or(usize::MAX).max(1);
        if self.max_conns > budget {
            tracing::warn!(
                listener = what,
                configured = self.max_conns,
                max_conns = budget,
                open_file_limit = limit,
                "lowering the connection cap to 3/4 of the open-file limit (RLIMIT_NOFILE)"
            );
            self.max_conns = budget;
        }
    }

    /// Checks values an operator could have got wrong; `what` names the
    /// listener in the message.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.max_conns == 0 {
            return Err(format!("{what}: the connection cap must be at least 1"));
        }
        if self.header_read_timeout < Duration::from_millis(10) {
            return Err(format!(
                "{what}: the header read timeout must be at least 10ms"
            ));
        }
        if self.idle_timeout < Duration::from_millis(10) {
            return Err(format!("{what}: the idle timeout must be at least 10ms"));
        }
        Ok(())
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    MaxConns,
    MaxConnsPerClient,
}

impl Refusal {
    pub const ALL: [Refusal; 2] = [Refusal::MaxConns, Refusal::MaxConnsPerClient];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConns => "max_conns",
            Refusal::MaxConnsPerClient => "max_conns_per_client",
        }
    }
}

/// Why a connection was closed by a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    HeaderRead,
    Idle,
    /// A TLS listener's client did not complete its handshake in time.
    TlsHandshake,
}

impl Timeout {
    pub const ALL: [Timeout; 3] = [Timeout::HeaderRead, Timeout::Idle, Timeout::TlsHandshake];

    pub fn label(self) -> &'static str {
        match self {
            Timeout::HeaderRead => "header_read",
            Timeout::Idle => "idle",
            Timeout::TlsHandshake => "tls_handshake",
        }
    }
}

/// The two counter families of a component's listeners:
/// `<prefix>connections_refused_total{listener,reason}` and
/// `<prefix>connections_timed_out_total{listener,timeout}`.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    refused: IntCounterVec,
    timed_out: IntCounterVec,
}

impl ListenerMetrics {
    pub fn register(registry: &Registry, prefix: &str) -> Result<Self, prometheus::Error> {
        Ok(ListenerMetrics {
            refused: crate::metrics::counter_vec(
                registry,
                &format!("{prefix}connections_refused_total"),
                "Connections closed at accept because a connection cap was reached, by listener and cap",
                &["listener", "reason"],
            )?,
            timed_out: crate::metrics::counter_vec(
                registry,
                &format!("{prefix}connections_timed_out_total"),
                "Connections closed because no request headers came in time (header_read), \
                 no request was in flight for too long (idle) or a TLS handshake did not \
                 complete in time (tls_handshake), by listener",
                &["listener", "timeout"],
            )?,
        })
    }

    /// One listener's counters, every series created at zero.
    pub fn listener(&self, name: &str) -> ListenerCounters {
        ListenerCounters {
            refused: Refusal::ALL.map(|r| self.refused.with_label_values(&[name, r.label()])),
            timed_out: Timeout::ALL.map(|t| self.timed_out.with_label_values(&[name, t.label()])),
            name: name.into(),
            timeout_log: Arc::default(),
        }
    }
}

/// One listener's resolved counters.
#[derive(Debug, Clone)]
pub struct ListenerCounters {
    refused: [IntCounter; 2],
    timed_out: [IntCounter; 3],
    name: Arc<str>,
    /// Timeouts are logged once per burst, per listener.
    timeout_log: Arc<BurstLog>,
}

impl ListenerCounters {
    /// Counters registered nowhere (tests, or components without metrics).
    pub fn detached() -> ListenerCounters {
        let counter = || IntCounter::new("detached_total", "not registered").expect("valid name");
        ListenerCounters {
            refused: [counter(), counter()],
            timed_out: [counter(), counter(), counter()],
            name: "detached".into(),
            timeout_log: Arc::default(),
        }
    }

    pub fn refused(&self, reason: Refusal) {
        self.refused[reason as usize].inc();
    }

    /// Counts a connection closed by `timeout`, and logs (once per burst).
    pub fn timed_out(&self, timeout: Timeout) {
        self.timed_out[timeout as usize].inc();
        if let Some(count) = self.timeout_log.should_log() {
            tracing::info!(
                listener = %self.name,
                timeout = timeout.label(),
                closed = count,
                "closing connections: timed out (no complete request headers in time, or idle)"
            );
        }
    }

    pub fn refused_count(&self, reason: Refusal) -> u64 {
        self.refused[reason as usize].get()
    }

    pub fn timed_out_count(&self, timeout: Timeout) -> u64 {
        self.timed_out[timeout as usize].get()
    }
}

/// Logs at most one line per [`LOG_INTERVAL`], saying how many events the
/// line stands for, so a flood cannot flood the log.
#[derive(Debug)]
pub struct BurstLog {
    start: Instant,
    /// Milliseconds since `start` of the last line, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for BurstLog {
    fn default() -> Self {
        BurstLog {
            start: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl BurstLog {
    /// Whether to log now; if so, the number of events since the last line
    /// (this one included).
    pub fn should_log(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_INTERVAL.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed) + 1);
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Caps the connections of one listener, in total and per client IP.
/// Admitting takes no lock without a per-client cap, and one short lock on
/// one of [`CLIENT_SHARDS`] maps with it.
#[derive(Debug)]
pub struct ConnLimiter {
    name: &'static str,
    max_conns: usize,
    max_per_client: usize,
    open: AtomicUsize,
    clients: Box<[Mutex<HashMap<IpAddr, usize>>]>,
    counters: ListenerCounters,
    log: BurstLog,
}

/// Holds a connection's place until dropped.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    client: Option<IpAddr>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.client {
            let mut clients = self
                .limiter
                .shard(ip)
                .lock()
                .expect("limiter lock poisoned");
            if let Some(n) = clients.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    clients.remove(&ip);
                }
            }
        }
        self.limiter.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnLimiter {
    pub fn new(name: &'static str, limits: &Limits, counters: ListenerCounters) -> Arc<Self> {
        Arc::new(ConnLimiter {
            name,
            max_conns: limits.max_conns.max(1),
            max_per_client: limits.max_conns_per_client,
            open: AtomicUsize::new(0),
            clients: (0..CLIENT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            counters,
            log: BurstLog::default(),
        })
    }

    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, usize>> {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) ^ (u128::from(v6) >> 64)) as usize,
        };
        &self.clients[h.wrapping_mul(0x9E37_79B9) % CLIENT_SHARDS]
    }

    /// Connections currently admitted.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Admits a connection from `client`, or counts, logs (once per burst)
    /// and refuses it; the caller then closes it.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<ConnPermit> {
        match self.try_admit(client) {
            Ok(permit) => Some(permit),
            Err(reason) => {
                self.counters.refused(reason);
                if let Some(count) = self.log.should_log() {
                    tracing::warn!(
                        listener = self.name,
                        client = %client,
                        reason = reason.label(),
                        max_conns = self.max_conns,
                        max_conns_per_client = self.max_per_client,
                        refused = count,
                        "refusing connections: connection cap reached"
                    );
                }
                None
            }
        }
    }

    fn try_admit(self: &Arc<Self>, client: IpAddr) -> Result<ConnPermit, Refusal> {
        let previous = self.open.fetch_add(1, Ordering::AcqRel);
        if previous >= self.max_conns {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::MaxConns);
        }
        if self.max_per_client == 0 {
            return Ok(ConnPermit {
                limiter: self.clone(),
                client: None,
            });
        }
        let mut clients = self.shard(client).lock().expect("limiter lock poisoned");
        let n = clients.entry(client).or_insert(0);
        if *n >= self.max_per_client {
            drop(clients);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::MaxConnsPerClient);
        }
        *n += 1;
        drop(clients);
        Ok(ConnPermit {
            limiter: self.clone(),
            client: Some(client),
        })
    }
}

/// The server builder every listener uses: HTTP/1.1 (with hyper's own
/// header-read timeout) or HTTP/2 (with keep-alive pings), by preface.
pub fn server(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    configure(&mut builder, limits);
    builder
}

/// Applies the timer, the header-read timeout and HTTP/2 keep-alive to
/// `builder` (for callers that set more options of their own).
pub fn configure(builder: &mut auto::Builder<TokioExecutor>, limits: &Limits) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE);
}

/// Serves plain HTTP on `listener` until `shutdown` completes: admits each
/// connection through `limiter`, serves it with `make_service(remote)`
/// under `limits`' timeouts, then stops accepting, asks every connection
/// to finish (HTTP/2 GOAWAY, HTTP/1 close after the current response) and
/// waits for them.
pub async fn serve<F, S, B>(
    listener: TcpListener,
    limiter: Arc<ConnLimiter>,
    limits: Limits,
    counters: ListenerCounters,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>> + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let plain = |tcp: TcpStream| std::future::ready(Some(tcp));
    serve_upgraded(
        listener,
        limiter,
        limits,
        counters,
        plain,
        make_service,
        shutdown,
    )
    .await;
}

/// [`serve`], with each admitted connection first passed through `upgrade`
/// (a TLS handshake, say), inside the connection's task and holding its
/// place under the cap; `None` drops the connection. The header-read
/// timeout starts once `upgrade` is done.
pub async fn serve_upgraded<U, UF, IO, F, S, B>(
    listener: TcpListener,
    limiter: Arc<ConnLimiter>,
    limits: Limits,
    counters: ListenerCounters,
    upgrade: U,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    U: Fn(TcpStream) -> UF,
    UF: Future<Output = Option<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>> + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let builder = Arc::new(server(&limits));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let accept_log = BurstLog::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let Some(permit) = limiter.admit(remote.ip()) else {
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let upgrading = upgrade(tcp);
                    let service = make_service(remote);
                    let builder = builder.clone();
                    let counters = counters.clone();
                    let mut stop = stop_rx.clone();
                    connections.spawn(async move {
                        let _permit = permit;
                        let io = tokio::select! {
                            io = upgrading => io,
                            _ = stop.wait_for(|s| *s) => None,
                        };
                        let Some(io) = io else {
                            return;
                        };
                        let watchdog = Watchdog::new(&limits, &counters);
                        let service = watchdog.track(service);
                        let connection = builder.serve_connection(TokioIo::new(io), service);
                        let graceful = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        watchdog.drive(connection, graceful, std::future::pending()).await;
                    });
                }
                Err(e) => {
                    // Typically out of file descriptors: pause instead of spinning.
                    if let Some(count) = accept_log.should_log() {
                        tracing::warn!(listener = limiter.name, error = %e, failures = count, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    stop_tx.send_replace(true);
    while connections.join_next().await.is_some() {}
}

/// Raises this process's soft limit on open files to its hard limit, so
/// the connection caps, not the file limit, are what refuse a flood.
/// Returns `(before, after)`; logging is the caller's.
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    let Some(hard) = limit.maximum else {
        // Unlimited hard limit: raise to a generous finite value.
        let target = 1 << 20;
        if before >= target {
            return Ok((before, before));
        }
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: None,
            },
        )
        .map_err(std::io::Error::from)?;
        return Ok((before, target));
    };
    if before >= hard {
        return Ok((before, before));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        },
    )
    .map_err(std::io::Error::from)?;
    Ok((before, hard))
}

#[cfg(test)]
mod tests;
mod tls;
mod watchdog;

pub use tls::tls_handshake;
pub use watchdog::{Ended, Tracked, TrackedBody, Watchdog};
