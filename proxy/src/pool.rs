//! Originating mutual TLS to an upstream endpoint, and a small pool of
//! multiplexed HTTP/2 connections per endpoint. A pool slot holds one
//! connection: requests share it (cloning its `SendRequest`), concurrent
//! requests that find it empty share one connection attempt, and a closed
//! connection is replaced by the next request. The slot's lock is only
//! held to look or swap, never across an await.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::metrics::OutboundError;

/// TCP connect plus TLS handshake, unless the upstream's resolver sets
/// `ConnectTimeout`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per endpoint: enough to spread one busy upstream over cores.
const POOL_SIZE: usize = 2;
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);
const HTTP2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no connection to an endpoint could be made. Nothing was sent, so
/// a retry elsewhere is always safe.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: Arc<str>,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr}: no TLS session within {after:?}")]
    Timeout { addr: Arc<str>, after: Duration },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: Arc<str>,
        #[source]
        source: io::Error,
    },
    #[error("{addr}: {problem}")]
    Protocol { addr: Arc<str>, problem: String },
}

impl ConnectError {
    pub(crate) fn kind(&self) -> OutboundError {
        match self {
            ConnectError::Connect { .. } => OutboundError::Connect,
            ConnectError::Timeout { .. } => OutboundError::Timeout,
            ConnectError::Tls { .. } => OutboundError::Tls,
            ConnectError::Protocol { .. } => OutboundError::Protocol,
        }
    }
}

/// Dials one upstream: our leaf as the client certificate, the upstream's
/// SPIFFE ID and roots checked, its SNI presented, one ALPN choice.
pub(crate) struct Connector {
    tls: TlsConnector,
    server_name: ServerName<'static>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Connector {
    pub(crate) fn new(
        config: ClientConfig,
        server_name: ServerName<'static>,
        timeout: Duration,
    ) -> Connector {
        Connector {
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
            timeout,
        }
    }

    pub(crate) async fn connect(
        &self,
        addr: &Arc<str>,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let attempt = async {
            let tcp =
                TcpStream::connect(&**addr)
                    .await
                    .map_err(|source| ConnectError::Connect {
                        addr: addr.clone(),
                        source,
                    })?;
            let _ = tcp.set_nodelay(true);
            self.tls
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|source| ConnectError::Tls {
                    addr: addr.clone(),
                    source,
                })
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| ConnectError::Timeout {
                addr: addr.clone(),
                after: self.timeout,
            })?
    }

    /// A new HTTP/2 connection (the connector must offer ALPN h2).
    async fn http2(
        self: Arc<Self>,
        addr: Arc<str>,
    ) -> Result<http2::SendRequest<Incoming>, ConnectError> {
        let tls = self.connect(&addr).await?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(ConnectError::Protocol {
                addr,
                problem: "the upstream's proxy did not negotiate HTTP/2 (is it in tcp mode?)"
                    .into(),
            });
        }
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(HTTP2_KEEP_ALIVE)
            .keep_alive_timeout(HTTP2_KEEP_ALIVE_TIMEOUT)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ConnectError::Protocol {
                addr: addr.clone(),
                problem: format!("HTTP/2 handshake: {e}"),
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(endpoint = %addr, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }

    /// A new HTTP/1.1 connection that may be upgraded (WebSocket); not pooled.
    pub(crate) async fn http1_upgradable(
        &self,
        addr: &Arc<str>,
    ) -> Result<http1::SendRequest<Incoming>, ConnectError> {
        let tls = self.connect(addr).await?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ConnectError::Protocol {
                addr: addr.clone(),
                problem: format!("HTTP/1.1 handshake: {e}"),
            })?;
        let addr = addr.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(endpoint = %addr, error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }
}

type Connecting =
    Shared<BoxFuture<'static, Result<http2::SendRequest<Incoming>, Arc<ConnectError>>>>;

enum Slot {
    Idle,
    Connecting(Connecting),
    Ready(http2::SendRequest<Incoming>),
}

/// HTTP/2 connections to one endpoint.
pub(crate) struct Pool {
    slots: Box<[Mutex<Slot>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("slots", &self.slots.len())
            .finish()
    }
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    pub(crate) fn new() -> Pool {
        Pool {
            slots: (0..POOL_SIZE).map(|_| Mutex::new(Slot::Idle)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connection to send one request on, opening one if needed.
    pub(crate) async fn get(
        &self,
        connector: &Arc<Connector>,
        addr: &Arc<str>,
    ) -> Result<http2::SendRequest<Incoming>, Arc<ConnectError>> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        let connecting = {
            let mut state = lock(slot);
            match &*state {
                Slot::Ready(sender) if !sender.is_closed() => return Ok(sender.clone()),
                Slot::Connecting(connecting) => connecting.clone(),
                Slot::Ready(_) | Slot::Idle => {
                    let connecting = connector
                        .clone()
                        .http2(addr.clone())
                        .map(|r| r.map_err(Arc::new))
                        .boxed()
                        .shared();
                    *state = Slot::Connecting(connecting.clone());
                    connecting
                }
            }
        };
        let result = connecting.clone().await;
        let mut state = lock(slot);
        if matches!(&*state, Slot::Connecting(c) if c.ptr_eq(&connecting)) {
            *state = match &result {
                Ok(sender) => Slot::Ready(sender.clone()),
                Err(_) => Slot::Idle,
            };
        }
        result
    }
}
