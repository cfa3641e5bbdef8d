//! The gateway's TLS listener: accept, peek the SNI (without consuming the
//! ClientHello), then
//! - SNI = this gateway's peering server name: terminate TLS and serve
//!   peering requests (see [`peering`](crate::peering));
//! - SNI = a peered service name
//!   (`<svc>.<ns>.<partition>.<peer>.external.<trust-domain>`): pass the
//!   connection through, TLS untouched, to one of the service's sidecars
//!   if the view allows it (see [`passthrough`](crate::passthrough));
//! - any other SNI, none, or not TLS: close the connection.
//!
//! Every connection counts against the listener's cap (closed at accept
//! when over it). A peering connection must complete a request's headers
//! within the header-read timeout of its TLS handshake, and is closed
//! after the idle timeout with no request or HTTP/2 stream open (a
//! replication stream is an open stream, so it is never idle); see
//! [`isthmus_runtime::listen`].
//!
//! On shutdown it stops accepting, asks every HTTP connection to finish
//! (HTTP/2 GOAWAY, HTTP/1 close after the current request), lets
//! passed-through connections run on, and aborts whatever is left when the
//! drain timeout passes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use isthmus_api::naming::parse_peered_sni;
use isthmus_runtime::listen::{ConnLimiter, ConnPermit, Limits, Watchdog};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::connection::Connection;
use crate::metrics::Metrics;
use crate::passthrough::{self, Passthrough, Target};
use crate::peering::PeeringService;
use crate::sni;
use crate::tls::ClientChain;
use crate::view::SharedView;

/// How long a client may take to send its ClientHello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake may take once the hello is in.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a connection task needs; shared by all of them.
pub(crate) struct Listener {
    pub(crate) shared: SharedView,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) peering: Arc<PeeringService>,
    passthrough: Passthrough,
    http: auto::Builder<TokioExecutor>,
    limits: Limits,
    limiter: Arc<ConnLimiter>,
}

/// What to do with an accepted connection, decided from its SNI.
enum Route {
    /// Terminate TLS with this config and serve peering requests.
    Peering(Arc<ServerConfig>),
    /// Pass it through to a sidecar of an exported service.
    Passthrough(String, Target),
    /// Already counted and logged; close it.
    Refused,
}

impl Listener {
    pub(crate) fn new(
        shared: SharedView,
        metrics: Arc<Metrics>,
        peering: Arc<PeeringService>,
        limits: Limits,
        passthrough_idle: Duration,
    ) -> Listener {
        let limiter = ConnLimiter::new("gateway", &limits, metrics.tls_listener.clone());
        Listener {
            shared,
            passthrough: Passthrough::new(metrics.clone(), passthrough_idle),
            metrics,
            peering,
            http: isthmus_runtime::listen::server(&limits),
            limits,
            limiter,
        }
    }

    /// Accepts until shutdown, then drains for at most `drain`.
    pub(crate) async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
        drain: Duration,
    ) {
        let mut connections = JoinSet::new();
        let per_connection = shutdown.clone();
        loop {
            tokio::select! {
                _ = isthmus_dataplane::shutdown::stopped(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, remote)) => {
                        let Some(permit) = self.limiter.admit(remote.ip()) else {
                            drop(tcp);
                            continue;
                        };
                        let _ = tcp.set_nodelay(true);
                        connections.spawn(self.clone().connection(tcp, remote, permit, per_connection.clone()));
                    }
                    Err(e) => {
                        // Typically out of file descriptors: pause instead of spinning.
                        tracing::warn!(error = %e, "accepting a peering connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = connections.join_next() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a peering connection task panicked");
                        }
                    }
                }
            }
        }
        drop(listener);
        tracing::info!(open = connections.len(), drain = ?drain, "peering listener closed; draining connections");
        let deadline = tokio::time::sleep(drain);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::info!(aborted = connections.len(), "drain timeout reached; closing the remaining connections");
                    connections.shutdown().await;
                    break;
                }
                next = connections.join_next() => if next.is_none() { break },
            }
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: SocketAddr,
        _permit: ConnPermit,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let _open = self.metrics.connection_opened();
        let sni = tokio::select! {
            _ = isthmus_dataplane::shutdown::stopped(&mut shutdown) => return,
            sni = sni::peek_server_name(&tcp, HELLO_TIMEOUT) => sni,
        };
        let config = match self.route(sni, remote) {
            Route::Peering(config) => config,
            Route::Passthrough(sni, target) => {
                self.passthrough
                    .serve(tcp, remote, &sni, target, shutdown)
                    .await;
                return;
            }
            Route::Refused => return,
        };
        self.metrics.peering_connection();
        let handshake =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp));
        let tls = tokio::select! {
            _ = isthmus_dataplane::shutdown::stopped(&mut shutdown) => return,
            r = handshake => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(remote = %remote, error = %e, "peering TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(remote = %remote, "peering TLS handshake timed out");
                    return;
                }
            },
        };
        let Some(chain) = ClientChain::from_connection(tls.get_ref().1) else {
            tracing::warn!(remote = %remote, "peering connection without a client certificate");
            return;
        };
        tracing::debug!(remote = %remote, fingerprint = %chain.fingerprint, "peering connection established");
        let conn = Arc::new(Connection::new(chain, remote));
        let peering = self.peering.clone();
        let service = service_fn(move |request| {
            let peering = peering.clone();
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(peering.handle(&conn, request).await) }
        });
        // The header-read timeout runs from here, the end of the handshake.
        let watchdog = Watchdog::new(&self.limits, &self.metrics.peering_listener);
        let http = self
            .http
            .serve_connection(TokioIo::new(tls), watchdog.track(service));
        let graceful = async move { isthmus_dataplane::shutdown::stopped(&mut shutdown).await };
        let ended = watchdog.drive(http, graceful, std::future::pending()).await;
        if let isthmus_runtime::listen::Ended::TimedOut(timeout) = ended {
            tracing::debug!(remote = %remote, timeout = timeout.label(), "closed a peering connection: timed out");
        }
    }

    /// Decides against the current snapshot (no await, so the snapshot
    /// guard is never held across one); counts and logs refusals.
    fn route(&self, sni: Result<Option<String>, sni::SniError>, remote: SocketAddr) -> Route {
        let name = match sni {
            Ok(Some(name)) => name,
            Ok(None) => {
                tracing::info!(remote = %remote, "refusing connection: no SNI");
                self.metrics.refused_connection();
                return Route::Refused;
            }
            Err(e) => {
                tracing::debug!(remote = %remote, error = %e, "refusing connection: no usable TLS ClientHello");
                self.metrics.refused_connection();
                return Route::Refused;
            }
        };
        let snapshot = self.shared.load();
        if name.eq_ignore_ascii_case(&snapshot.view.server_name) {
            return Route::Peering(snapshot.server_config.clone());
        }
        let Some(peered) = parse_peered_sni(&name) else {
            tracing::info!(
                remote = %remote,
                sni = %name,
                "refusing connection: the SNI is neither this gateway's peering name nor a peered service name"
            );
            self.metrics.refused_connection();
            return Route::Refused;
        };
        match passthrough::decide(&snapshot.view, &peered) {
            Ok(target) => Route::Passthrough(name, target),
            Err(refused) => {
                tracing::info!(
                    remote = %remote,
                    sni = %name,
                    reason = refused.reason.label(),
                    detail = %refused.detail,
                    "refusing service connection"
                );
                self.metrics.passthrough_refused(refused.reason);
                Route::Refused
            }
        }
    }
}
