//! The isthmus sidecar proxy.
//!
//! Inbound, it terminates mutual TLS, identifies the caller by the SPIFFE
//! ID in its certificate, enforces the service's intentions (L4 per
//! connection, L7 per HTTP request) and forwards to the local application.
//! Outbound, it listens on 127.0.0.1 for each upstream, balances across
//! the upstream's endpoints and originates mutual TLS, checking the
//! server's SPIFFE ID. Its identity (leaf certificate), trust bundle,
//! intentions and upstream endpoints come from the agent as blocking
//! queries and are swapped in without a restart.
//!
//! [`start`] assembles one proxy; the binary (`isthmus-proxy`) is a thin
//! wrapper around it.
//!
//! What it shares with the mesh gateway (watching the agent, registration,
//! the admin listener, readiness, config layering, supervision and drain,
//! counted I/O, hop-by-hop headers) is in `isthmus_dataplane`.
//!
//! | module | role |
//! |---|---|
//! | `config`, `cli` | settings: defaults < config file (HCL/JSON) < flags |
//! | `sidecar_for` | `--sidecar-for`/`--proxy-id`: settings read from the agent's `connect-proxy` registration |
//! | `identity` | leaf + proxy view → immutable `Snapshot` (TLS server config, trust bundle, compiled intentions) behind an `ArcSwap` |
//! | `inbound` (+ `http`, `tcp`) | accept, mTLS, caller identity, intentions, forward to the local app |
//! | `outbound` (+ `http`), `upstream`, `balance`, `pool` | per-upstream listener, route (endpoints + TLS) watching, P2C balancing, pooled HTTP/2 mTLS |
//! | `http` | HTTP plumbing of both directions: response body, local responses, upgrades, serving one connection |
//! | `admin`, `metrics`, `registration` | `/config` and what `/ready` waits for, Prometheus metrics, the `connect-proxy` registration body |
#![forbid(unsafe_code)]

mod admin;
mod balance;
pub mod cli;
pub mod config;
mod http;
mod identity;
mod inbound;

mod metrics;
mod outbound;
mod pool;
pub mod registration;
pub mod sidecar_for;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use isthmus_dataplane::drain;
use isthmus_dataplane::readiness::Readiness;
use isthmus_dataplane::registration::Registrar;
use isthmus_dataplane::supervise::{
    bind, AdminTask, BindError, Supervised, SupervisorFailure, DEREGISTER_TIMEOUT,
};
use isthmus_runtime::client::Client;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use crate::config::{Advertise, Protocol, ProxyConfig, UpstreamSpec};

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("setting up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Why a running proxy stopped other than by [`RunningProxy::shutdown`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the proxy's {task} task failed: {reason}")]
    TaskFailed { task: &'static str, reason: String },
    #[error("the proxy stopped before it was ready")]
    Stopped,
}

impl SupervisorFailure for ProxyError {
    fn supervisor_failed(reason: String) -> Self {
        ProxyError::TaskFailed {
            task: "supervisor",
            reason,
        }
    }
}

/// A started proxy. Dropping it without [`RunningProxy::shutdown`] stops
/// it abruptly (no deregistration, no drain).
pub struct RunningProxy {
    service: String,
    proxy_id: String,
    inbound_addr: SocketAddr,
    advertise: Advertise,
    admin_addr: SocketAddr,
    upstreams: Vec<(String, SocketAddr)>,
    readiness: Arc<Readiness>,
    supervised: Supervised<ProxyError>,
}

/// Everything that stops the proxy's tasks at once.
#[derive(Clone)]
struct Kill {
    inbound: drain::Switches,
    outbound: drain::Switches,
    stop: Arc<watch::Sender<bool>>,
}

impl Kill {
    fn now(&self) {
        self.inbound.abort();
        self.outbound.abort();
        self.stop.send_replace(true);
    }
}

impl RunningProxy {
    /// The address the inbound (mTLS) listener is bound to.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.inbound_addr
    }

    /// `host:port` as registered in the catalog.
    pub fn advertise_addr(&self) -> String {
        self.advertise.to_string()
    }

    /// The address of the admin listener (plain HTTP).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The local listener of an upstream, by label (`service` or `service@peer`).
    pub fn upstream_addr(&self, label: &str) -> Option<SocketAddr> {
        self.upstreams
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, addr)| *addr)
    }

    /// Every upstream's label and local listener, in configuration order.
    pub fn upstream_addrs(&self) -> &[(String, SocketAddr)] {
        &self.upstreams
    }

    /// The catalog service ID the proxy registers under (`<service-id>-sidecar-proxy`).
    pub fn proxy_id(&self) -> &str {
        &self.proxy_id
    }

    /// The line the binary prints once ready.
    pub fn ready_line(&self) -> String {
        let upstreams: Vec<String> = self
            .upstreams
            .iter()
            .map(|(label, addr)| format!("{label}={addr}"))
            .collect();
        format!(
            "isthmus-proxy running: service={} inbound={} admin=http://{} upstreams={}",
            self.service,
            self.inbound_addr,
            self.admin_addr,
            upstreams.join(",")
        )
    }

    /// Resolves once the proxy is ready (first leaf and view loaded, so the
    /// inbound listener serves, and registered), or fails if it stopped first.
    pub async fn ready(&self) -> Result<(), ProxyError> {
        self.readiness
            .wait_ready()
            .await
            .map_err(|_| ProxyError::Stopped)
    }

    /// Graceful shutdown: stop accepting, deregister, let in-flight
    /// requests finish for up to the drain timeout, then stop.
    pub async fn shutdown(mut self) -> Result<(), ProxyError> {
        self.supervised.shutdown().await
    }

    /// Runs until the proxy stops by itself (it failed, or `POST /shutdown`
    /// on the admin listener) or the process gets SIGTERM or SIGINT, which
    /// shuts it down gracefully: what the binary does once it started.
    pub async fn until_terminated(&mut self) -> Result<(), ProxyError> {
        self.supervised.until_terminated().await
    }

    /// Resolves once the proxy has stopped: after a shutdown was asked for
    /// (`POST /shutdown` on the admin listener), or if it failed.
    pub async fn wait(&mut self) -> Result<(), ProxyError> {
        self.supervised.wait().await
    }
}

/// Starts a proxy: binds every listener, starts watching the leaf, the
/// proxy view and the upstreams, and serves. Until the first leaf and view
/// arrive, `/ready` says 503 and inbound connections are refused; then the
/// proxy registers in the catalog. See [`RunningProxy::ready`].
pub async fn start(config: ProxyConfig) -> Result<RunningProxy, StartError> {
    config.validate().map_err(|e| StartError::Config(e.0))?;
    let client = Client::with_credentials(&config.control, &config.agent_credentials)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let (inbound_listener, inbound_addr) = bind("inbound listener", config.inbound_bind).await?;
    let advertise = match config::ADVERTISE.resolve(config.advertise.as_deref(), inbound_addr) {
        Ok(advertise) => advertise,
        // Serving someone else's registration: the address is only shown.
        Err(_) if config.registered.is_some() => Advertise {
            host: inbound_addr.ip().to_string(),
            port: inbound_addr.port(),
        },
        Err(e) => return Err(StartError::Config(e.0)),
    };
    let mut upstream_listeners = Vec::new();
    for spec in &config.upstreams {
        let what = format!("listener of the upstream {}", spec.label());
        let local = SocketAddr::new(spec.local_address, spec.local_port);
        let (listener, addr) = bind(&what, local).await?;
        upstream_listeners.push(outbound::Listener {
            spec: spec.clone(),
            listener,
            addr,
        });
    }
    let (admin_listener, admin_addr) = bind("admin listener", config.admin_bind).await?;

    let metrics = Arc::new(metrics::Metrics::new()?);
    let readiness = Arc::new(admin::readiness());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    // Watchers and registration run until the very end of a shutdown.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let agent_restarted = Arc::new(Notify::new());

    let (identity, identity_task) = identity::spawn(
        &client,
        &config.service,
        config.protocol,
        readiness.clone(),
        agent_restarted.clone(),
        stop_rx.clone(),
    );
    let (inbound_group, inbound_drain) = drain::group();
    let inbound_task = inbound::start(
        inbound_listener,
        &config,
        identity.clone(),
        metrics.clone(),
        inbound_drain,
    );
    let (outbound_group, outbound_drain) = drain::group();
    let upstream_ports: Vec<u16> = upstream_listeners.iter().map(|l| l.addr.port()).collect();
    let upstream_addrs = upstream_listeners
        .iter()
        .map(|l| (l.spec.label(), l.addr))
        .collect();
    let (upstreams, outbound_tasks) = outbound::start(
        upstream_listeners,
        &config,
        &client,
        &identity,
        metrics.clone(),
        &outbound_drain,
        &stop_rx,
    );
    drop(outbound_drain);

    let proxy_id = registration::proxy_id(&config);
    let config_state = admin::ConfigState {
        readiness: readiness.clone(),
        identity: identity.clone(),
        upstreams: upstreams.into(),
        facts: Arc::new(admin::Facts {
            service: config.service.clone(),
            service_id: config.service_id().to_owned(),
            proxy_id: proxy_id.clone(),
            protocol: config.protocol,
            inbound: inbound_addr,
            advertise: advertise.to_string(),
            local_app: config.local_app,
        }),
    };
    let admin_task = AdminTask::spawn(|stop| {
        admin::serve(
            admin_listener,
            metrics,
            shutdown_tx.clone(),
            config_state,
            config.admin_limits(),
            stop,
        )
    });

    // With --sidecar-for the registration is the operator's: neither made
    // nor removed here.
    let (registrar, registration_task) = if let Some(registered) = &config.registered {
        readiness.set_registered(true);
        let notice = sidecar_for::spawn_change_notice(&client, registered, stop_rx);
        (None, Some(notice))
    } else {
        let registration = registration::registration(&config, &advertise, &upstream_ports);
        let registrar = Arc::new(Registrar::new(client, &registration));
        let task = tokio::spawn(registration::register_once_serving(
            registrar.clone(),
            identity.changes(),
            readiness.clone(),
            agent_restarted,
            stop_rx,
        ));
        (Some(registrar), Some(task))
    };

    let kill = Kill {
        inbound: inbound_group.switches(),
        outbound: outbound_group.switches(),
        stop: stop_tx.clone(),
    };
    let mut watchers = outbound_tasks;
    watchers.push(identity_task);
    let supervisor = tokio::spawn(supervise(Tasks {
        shutdown: shutdown_rx,
        readiness: readiness.clone(),
        registrar,
        inbound: inbound_task,
        inbound_group,
        outbound_group,
        watchers,
        registration: registration_task,
        stop: stop_tx,
        admin: admin_task,
        drain_timeout: config.drain_timeout,
    }));

    tracing::info!(
        service = %config.service,
        inbound = %inbound_addr,
        advertise = %advertise,
        admin = %admin_addr,
        protocol = %config.protocol,
        upstreams = config.upstreams.len(),
        "sidecar proxy started; waiting for the leaf certificate and proxy view"
    );
    Ok(RunningProxy {
        service: config.service,
        proxy_id,
        inbound_addr,
        advertise,
        admin_addr,
        upstreams: upstream_addrs,
        readiness,
        supervised: Supervised::new(shutdown_tx, supervisor).with_kill_on_drop(move || kill.now()),
    })
}

struct Tasks {
    shutdown: watch::Receiver<bool>,
    readiness: Arc<Readiness>,
    /// `None` when serving an operator's registration (`--sidecar-for`).
    registrar: Option<Arc<Registrar>>,
    inbound: JoinHandle<()>,
    inbound_group: drain::Group,
    outbound_group: drain::Group,
    /// Identity and upstream watchers, and the outbound accept loops.
    watchers: Vec<JoinHandle<()>>,
    registration: Option<JoinHandle<()>>,
    stop: Arc<watch::Sender<bool>>,
    admin: AdminTask,
    drain_timeout: Duration,
}

/// Waits for the shutdown signal (or an inbound listener failure), then
/// shuts down: not ready; deregister while draining inbound connections
/// and then outbound ones (the local application may still need its
/// upstreams to finish inbound requests), all within the drain timeout;
/// then stop watching the agent and close the admin listener.
async fn supervise(mut tasks: Tasks) -> Result<(), ProxyError> {
    let mut failure = None;
    tokio::select! {
        _ = isthmus_dataplane::shutdown::stopped(&mut tasks.shutdown) => {}
        result = &mut tasks.inbound => {
            failure = Some(ProxyError::TaskFailed {
                task: "inbound listener",
                reason: result.err().map_or_else(|| "stopped unexpectedly".to_owned(), |e| e.to_string()),
            });
        }
    }
    tracing::info!("sidecar proxy shutting down");
    tasks.readiness.set_draining();
    // No re-registration may race the deregistration below.
    if let Some(task) = &tasks.registration {
        task.abort();
    }
    let deregister = async {
        if let Some(registrar) = &tasks.registrar {
            registrar.deregister_within(DEREGISTER_TIMEOUT).await;
        }
    };
    let deadline = Instant::now() + tasks.drain_timeout;
    let drain = async {
        let inbound = tasks.inbound_group.drain(deadline).await;
        let outbound = tasks.outbound_group.drain(deadline).await;
        if inbound && outbound {
            tracing::info!("every connection finished");
        } else {
            tracing::info!(drain_timeout = ?tasks.drain_timeout, "drain timeout reached; closed the remaining connections");
        }
    };
    tokio::join!(deregister, drain);
    tasks.stop.send_replace(true);
    for task in &tasks.watchers {
        task.abort();
    }
    tasks.inbound.abort();
    tasks.admin.stop().await;
    tasks.readiness.set_stopped();
    tracing::info!("sidecar proxy stopped");
    failure.map_or(Ok(()), Err)
}
