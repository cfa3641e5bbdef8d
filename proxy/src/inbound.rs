//! The inbound side: terminate mutual TLS, identify the caller by its
//! SPIFFE ID, decide with the service's intentions, forward to the local
//! application.
//!
//! Per connection: TLS with the current snapshot's server config (client
//! certificate required, checked against the roots of the trust domain it
//! claims), the caller's trust domain mapped to a peer (or none, for a
//! local caller), what that peer may reach (exported to it and
//! `can_connect`), and the L4 decision: a deny closes the connection. HTTP
//! connections are then checked again per request (normalized path, L7
//! permissions, and changes made since the connection opened); TCP
//! connections and upgraded HTTP connections are closed if a later change
//! denies them.

mod http;
mod tcp;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use isthmus_api::intentions::{Decision, Source};
use isthmus_api::naming::SpiffeId;
use isthmus_dataplane::mtls::spiffe_id_of;
use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{Protocol, ProxyConfig};
use crate::identity::{Identity, Snapshot};
use crate::metrics::{InboundError, Layer, Metrics, SourceTraffic};
use isthmus_dataplane::drain::Drain;
use isthmus_dataplane::io::CountingIo;

/// How long a caller may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Tls = TlsStream<CountingIo<TcpStream>>;

/// What every inbound connection shares.
pub(crate) struct Inbound {
    service: String,
    protocol: Protocol,
    identity: Identity,
    metrics: Arc<Metrics>,
    app: http::LocalApp,
    app_addr: SocketAddr,
    server: auto::Builder<TokioExecutor>,
    limits: isthmus_runtime::listen::Limits,
}

/// Assembles the inbound side and starts accepting on `listener`.
/// Connections that arrive before the first leaf and view are refused.
pub(crate) fn start(
    listener: TcpListener,
    config: &ProxyConfig,
    identity: Identity,
    metrics: Arc<Metrics>,
    drain: Drain,
) -> JoinHandle<()> {
    let inbound = Arc::new(Inbound {
        service: config.service.clone(),
        protocol: config.protocol,
        identity,
        metrics,
        app: http::LocalApp::new(config.local_app, config.protocol),
        app_addr: config.local_app,
        server: crate::http::server(&config.limits),
        limits: config.limits,
    });
    let mut cap = config.limits;
    cap.fit_fd_limit("inbound");
    let limiter = isthmus_runtime::listen::ConnLimiter::new(
        "inbound",
        &cap,
        inbound.metrics.inbound_listener.clone(),
    );
    tokio::spawn(isthmus_dataplane::drain::accept_loop(
        listener,
        "inbound".to_owned(),
        drain,
        limiter,
        move |tcp, remote, drain| inbound.clone().connection(tcp, remote, drain),
    ))
}

/// The authenticated caller of one connection.
pub(crate) struct Caller {
    name: Box<str>,
    namespace: Box<str>,
    trust_domain: Box<str>,
    /// `By=<our SPIFFE ID>;URI=<the caller's>`.
    xfcc: HeaderValue,
    /// Bounded metric labels.
    src_label: Box<str>,
    peer_label: Box<str>,
    l7_allowed: OnceLock<IntCounter>,
    l7_denied: OnceLock<IntCounter>,
    l4_denied: OnceLock<IntCounter>,
    /// Its responses, by the same labels; resolved at its first request.
    traffic: OnceLock<SourceTraffic>,
}

/// One admitted HTTP connection: what its requests (and the upgraded
/// connections spawned from them) share.
pub(crate) struct Admitted {
    inbound: Arc<Inbound>,
    caller: Caller,
    drain: Drain,
}

/// What the intentions say about a caller right now.
pub(crate) enum Verdict {
    Allow,
    /// Check each request with the L7 rules.
    PerRequest,
    Deny {
        layer: Layer,
        reason: String,
    },
}

impl Caller {
    fn peer<'s>(&self, snapshot: &'s Snapshot) -> Option<Option<&'s str>> {
        snapshot.bundle.peer_of(&self.trust_domain)
    }

    /// Why this caller may not reach `service` whatever the intentions say:
    /// a peer's caller only reaches services exported to its peering *and*
    /// that its peering may connect to (`can_connect`). The gateway routed
    /// it, and checked `can_connect`, by the peer name the caller claimed in
    /// its SNI; only the certificate's trust domain proves the peer.
    fn unreachable(snapshot: &Snapshot, peer: Option<&str>, service: &str) -> Option<String> {
        let peer = peer?;
        let Some(trust) = snapshot.view.peers.iter().find(|p| p.name == peer) else {
            return Some(format!("peer {peer} is not in the proxy view"));
        };
        if !trust.exported_services.iter().any(|s| s == service) {
            return Some(format!("service {service} is not exported to peer {peer}"));
        }
        if !trust.connectable_services.iter().any(|s| s == service) {
            return Some(format!(
                "peer {peer} may not connect to service {service} (no can_connect)"
            ));
        }
        None
    }

    fn source<'a>(&'a self, peer: Option<&'a str>) -> Source<'a> {
        Source {
            peer,
            namespace: &self.namespace,
            name: &self.name,
        }
    }

    /// This caller's response counters and latency histogram.
    fn traffic(&self, metrics: &Metrics) -> &SourceTraffic {
        self.traffic
            .get_or_init(|| metrics.source_traffic(&self.src_label, &self.peer_label))
    }

    fn counter(&self, cell: &OnceLock<IntCounter>, metrics: &Metrics, allow: bool, layer: Layer) {
        cell.get_or_init(|| metrics.authorization(allow, layer, &self.src_label, &self.peer_label))
            .inc();
    }
}

impl Inbound {
    async fn connection(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr, drain: Drain) {
        let Some(snapshot) = self.identity.current() else {
            tracing::debug!(remote = %remote, "refusing a connection: no leaf certificate and proxy view yet");
            self.metrics.inbound_error(InboundError::NotReady);
            return;
        };
        let _open = self.metrics.inbound.connection();
        let acceptor = TlsAcceptor::from(snapshot.server_config.clone());
        drop(snapshot);
        let io = self.metrics.inbound.count(tcp);
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io));
        let tls = tokio::select! {
            _ = drain.aborted() => return,
            result = handshake => match result {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    let kind = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        InboundError::Closed
                    } else {
                        InboundError::Handshake
                    };
                    tracing::debug!(remote = %remote, error = %e, "inbound TLS handshake failed");
                    self.metrics.inbound_error(kind);
                    return;
                }
                Err(_) => {
                    tracing::debug!(remote = %remote, "inbound TLS handshake timed out");
                    self.metrics.inbound_error(InboundError::Timeout);
                    return;
                }
            },
        };
        let caller = match self.identify(&tls) {
            Ok(caller) => caller,
            Err(problem) => {
                tracing::info!(remote = %remote, problem = %problem, "refusing an inbound connection: unusable client identity");
                self.metrics.inbound_error(InboundError::Identity);
                return;
            }
        };
        match self.verdict(&caller) {
            Verdict::Deny { layer, reason } => {
                self.denied(&caller, layer, &reason);
                return;
            }
            Verdict::Allow => self
                .metrics
                .authorization(true, Layer::L4, &caller.src_label, &caller.peer_label)
                .inc(),
            Verdict::PerRequest => {}
        }
        tracing::debug!(remote = %remote, source = %caller.name, "inbound connection admitted");
        if self.protocol.is_http() {
            let connection = Arc::new(Admitted {
                inbound: self.clone(),
                caller,
                drain: drain.clone(),
            });
            let service = service_fn(move |request| {
                let connection = connection.clone();
                async move { Ok::<_, Infallible>(http::handle(&connection, request).await) }
            });
            crate::http::serve_connection(
                &self.server,
                TokioIo::new(tls),
                service,
                drain,
                &self.limits,
                &self.metrics.inbound_listener,
            )
            .await;
        } else {
            tcp::serve(&self, tls, caller, drain).await;
        }
    }

    /// Who is calling, from the client certificate the handshake verified.
    fn identify(&self, tls: &Tls) -> Result<Caller, String> {
        let connection = tls.get_ref().1;
        let cert = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or("no client certificate")?;
        let id = spiffe_id_of(cert).map_err(|e| e.0)?;
        let SpiffeId::Service {
            trust_domain,
            namespace,
            service,
            ..
        } = &id
        else {
            return Err(format!("{id} is not a service identity"));
        };
        let snapshot = self.identity.current().ok_or("no snapshot")?;
        let peer = snapshot
            .bundle
            .peer_of(trust_domain)
            .ok_or_else(|| format!("the trust domain {trust_domain} is no longer trusted"))?;
        let xfcc = HeaderValue::try_from(format!("By={};URI={id}", snapshot.leaf.uri))
            .map_err(|e| format!("{id}: {e}"))?;
        Ok(Caller {
            src_label: snapshot.policy.source_label(service).into(),
            peer_label: peer.unwrap_or("").into(),
            name: service.as_str().into(),
            namespace: namespace.as_str().into(),
            trust_domain: trust_domain.as_str().into(),
            xfcc,
            l7_allowed: OnceLock::new(),
            l7_denied: OnceLock::new(),
            l4_denied: OnceLock::new(),
            traffic: OnceLock::new(),
        })
    }

    /// What the intentions in force in `snapshot` say about a caller, or
    /// why it is refused whatever they say (its trust domain is no longer
    /// trusted, or its peering may not reach this service).
    fn decide<'s>(&self, caller: &Caller, snapshot: &'s Snapshot) -> Result<Decision<'s>, String> {
        let Some(peer) = caller.peer(snapshot) else {
            return Err(format!(
                "the trust domain {} is no longer trusted",
                caller.trust_domain
            ));
        };
        if let Some(reason) = Caller::unreachable(snapshot, peer, &self.service) {
            return Err(reason);
        }
        Ok(snapshot
            .policy
            .intentions
            .decide(&caller.source(peer), &self.service))
    }

    /// The current intentions' verdict on a caller's connection.
    fn verdict(&self, caller: &Caller) -> Verdict {
        let guard = self.identity.load();
        let Some(snapshot) = guard.as_deref() else {
            return Verdict::Deny {
                layer: Layer::L4,
                reason: "no proxy view".into(),
            };
        };
        let decision = match self.decide(caller, snapshot) {
            Ok(decision) => decision,
            Err(reason) => {
                return Verdict::Deny {
                    layer: Layer::L4,
                    reason,
                }
            }
        };
        match decision {
            Decision::L4 { allow: true, .. } => Verdict::Allow,
            Decision::L7(_) if self.protocol.is_http() => Verdict::PerRequest,
            Decision::L7(_) => Verdict::Deny {
                layer: Layer::L7,
                reason: decision.reason(),
            },
            Decision::L4 { allow: false, .. } => Verdict::Deny {
                layer: Layer::L4,
                reason: decision.reason(),
            },
        }
    }

    /// Logs and counts a connection-level deny.
    fn denied(&self, caller: &Caller, layer: Layer, reason: &str) {
        tracing::info!(
            source = %caller.name,
            peer = %caller.peer_label,
            destination = %self.service,
            reason = %reason,
            "inbound connection denied"
        );
        let cell = match layer {
            Layer::L4 => &caller.l4_denied,
            Layer::L7 => &caller.l7_denied,
        };
        caller.counter(cell, &self.metrics, false, layer);
    }
}
