//! The outbound side: one plaintext listener per upstream on 127.0.0.1,
//! for the local application only. Each upstream has its own protocol (from
//! the agent's view of it, else the proxy's own). HTTP mode accepts HTTP/1.1 and h2c and
//! forwards each request over pooled, multiplexed HTTP/2 mTLS connections
//! to the upstream's endpoints (see [`http`]); TCP mode opens one mTLS
//! connection per local connection and copies bytes.

mod http;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use isthmus_runtime::client::Client;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::balance::{pick, InFlight};
use crate::config::UpstreamSpec;
use crate::identity::Identity;
use crate::metrics::{Metrics, OutboundError};
use crate::upstream::{spawn_watch, Upstream};
use isthmus_dataplane::drain::Drain;
use isthmus_dataplane::io::{splice, CountingIo, Spliced};

/// What every outbound connection shares.
pub(crate) struct Outbound {
    metrics: Arc<Metrics>,
    server: auto::Builder<TokioExecutor>,
    limits: isthmus_runtime::listen::Limits,
}

/// A bound upstream listener, waiting to be served.
pub(crate) struct Listener {
    pub(crate) spec: UpstreamSpec,
    pub(crate) listener: TcpListener,
    pub(crate) addr: SocketAddr,
}

/// Assembles the outbound side: for each upstream, a watcher that keeps
/// its route current (until `stop`) and a listener that serves it (until
/// `drain`). Returns the upstreams (for `/config`) and their tasks.
pub(crate) fn start(
    listeners: Vec<Listener>,
    config: &crate::config::ProxyConfig,
    client: &Client,
    identity: &Identity,
    metrics: Arc<Metrics>,
    drain: &Drain,
    stop: &watch::Receiver<bool>,
) -> (Vec<Arc<Upstream>>, Vec<JoinHandle<()>>) {
    let (protocol, limits) = (config.protocol, config.limits);
    let outbound = Arc::new(Outbound {
        metrics: metrics.clone(),
        server: crate::http::server(&limits),
        limits,
    });
    let mut upstreams = Vec::new();
    let mut tasks = Vec::new();
    for Listener {
        spec,
        listener,
        addr,
    } in listeners
    {
        let errors = metrics.upstream_errors(&spec.label());
        let targets = metrics.upstream_targets(&spec.label());
        let upstream_protocol = spec.protocol.unwrap_or(protocol);
        let upstream = Arc::new(Upstream::new(
            spec,
            addr,
            upstream_protocol,
            errors,
            targets,
            identity.clone(),
        ));
        tasks.push(spawn_watch(
            upstream.clone(),
            client,
            identity.clone(),
            stop.clone(),
        ));
        let outbound = outbound.clone();
        let serving = upstream.clone();
        tasks.push(tokio::spawn(isthmus_dataplane::drain::accept_loop(
            listener,
            format!("upstream {}", upstream.label),
            drain.clone(),
            isthmus_runtime::listen::ConnLimiter::new(
                "outbound",
                &limits,
                metrics.outbound_listener.clone(),
            ),
            move |tcp, _remote, drain| outbound.clone().connection(serving.clone(), tcp, drain),
        )));
        upstreams.push(upstream);
    }
    (upstreams, tasks)
}

impl Outbound {
    async fn connection(self: Arc<Self>, upstream: Arc<Upstream>, tcp: TcpStream, drain: Drain) {
        let _open = self.metrics.outbound.connection();
        let io = self.metrics.outbound.count(tcp);
        // Each upstream has its own protocol, which the agent may change.
        if upstream.current_route().protocol.is_http() {
            let context = Arc::new((self.clone(), upstream, drain.clone()));
            let service = service_fn(move |request| {
                let context = context.clone();
                async move {
                    let (outbound, upstream, drain) = &*context;
                    Ok::<_, Infallible>(
                        http::handle(&outbound.metrics, upstream, request, drain).await,
                    )
                }
            });
            crate::http::serve_connection(
                &self.server,
                TokioIo::new(io),
                service,
                drain,
                &self.limits,
                &self.metrics.outbound_listener,
            )
            .await;
        } else {
            forward_tcp(&upstream, io, drain).await;
        }
    }
}

/// TCP mode: one mTLS connection per local connection; a connection
/// failure is retried once on another endpoint (nothing was sent yet).
async fn forward_tcp(upstream: &Upstream, mut local: CountingIo<TcpStream>, drain: Drain) {
    let route = upstream.current_route();
    if let Some((kind, reason)) = &route.unavailable {
        tracing::debug!(upstream = %upstream.label, reason = %reason, "closing a local connection: upstream unavailable");
        upstream.errors.count(*kind);
        return;
    }
    route.count_request();
    let mut exclude = None;
    let (mut remote, _in_flight) = loop {
        let Some(i) = pick(&route.endpoints, exclude) else {
            return;
        };
        let endpoint = &route.endpoints[i];
        let in_flight = InFlight::new(endpoint.clone());
        match endpoint.connector.connect(&endpoint.addr).await {
            Ok(remote) => break (remote, in_flight),
            Err(e) => {
                tracing::debug!(upstream = %upstream.label, error = %e, "connecting to an upstream endpoint failed");
                upstream.errors.count(e.kind());
                endpoint.load.failed();
                if exclude.is_some() {
                    return;
                }
                exclude = Some(i);
            }
        }
    };
    match splice(&mut local, &mut remote, drain.aborted()).await {
        Spliced::Done(sent, received) => {
            tracing::debug!(upstream = %upstream.label, sent, received, "outbound TCP connection finished");
        }
        Spliced::Failed(e) => {
            tracing::debug!(upstream = %upstream.label, error = %e, "outbound TCP connection failed");
            upstream.errors.count(OutboundError::Request);
        }
        Spliced::Stopped => {
            tracing::debug!(upstream = %upstream.label, "outbound TCP connection cut at the drain deadline")
        }
    }
}
