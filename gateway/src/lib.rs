//! The isthmus mesh gateway.
//!
//! It terminates peering connections from other clusters on the peering
//! server name `server.<cluster>.peering.<trust-domain>`, identifies the
//! calling peer by its client certificate, and forwards to the local agent
//! only what that peering allows (see [`peering`](crate::peering)). Peers'
//! service traffic, addressed by the SNI
//! `<svc>.<ns>.<partition>.<peer>.external.<trust-domain>`, is passed
//! through to the exported service's sidecars without terminating TLS, so
//! the caller's sidecar and the service's sidecar do mTLS end to end (see
//! [`passthrough`](crate::passthrough)). Everything it knows comes from the agent's gateway view, watched with
//! blocking queries and swapped in without a restart.
//!
//! [`start`] assembles one gateway: bind the listeners, load the first
//! view, start accepting, register in the catalog. The binary
//! (`isthmus-gateway`) is a thin wrapper; `isthmus agent --dev` runs the
//! same thing in-process. What it shares with the sidecar proxy (watching
//! the agent, registration, the admin listener, readiness, config layering,
//! supervision, counted I/O, hop-by-hop headers) is in `isthmus_dataplane`.
#![forbid(unsafe_code)]

mod admin;
pub mod cli;
pub mod config;
mod connection;
mod exchange;
mod forward;
mod listener;
mod metrics;
mod passthrough;
mod peering;
pub mod registration;
pub mod sni;
mod tls;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use isthmus_dataplane::readiness::Readiness;
use isthmus_dataplane::registration::Registrar;
use isthmus_dataplane::supervise::{
    bind, AdminTask, BindError, Supervised, SupervisorFailure, DEREGISTER_TIMEOUT,
};
use isthmus_runtime::client::Client;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use crate::config::{Advertise, GatewayConfig};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("no usable gateway view from the isthmus agent at {control} within {timeout:?}: {last_error}")]
    NoView {
        control: String,
        timeout: Duration,
        last_error: String,
    },
    #[error("setting up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Why a running gateway stopped other than by [`RunningGateway::shutdown`].
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway's {task} task failed: {reason}")]
    TaskFailed { task: &'static str, reason: String },
}

impl SupervisorFailure for GatewayError {
    fn supervisor_failed(reason: String) -> Self {
        GatewayError::TaskFailed {
            task: "supervisor",
            reason,
        }
    }
}

/// A started gateway. Dropping it without [`RunningGateway::shutdown`]
/// stops it abruptly (no deregistration, no drain).
pub struct RunningGateway {
    bind_addr: SocketAddr,
    advertise: Advertise,
    admin_addr: SocketAddr,
    service_id: String,
    supervised: Supervised<GatewayError>,
}

impl RunningGateway {
    /// The address the TLS listener (peering and service traffic) is bound to.
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind_addr
    }

    /// `host:port` as registered in the catalog and put into peering tokens.
    pub fn advertise_addr(&self) -> String {
        self.advertise.to_string()
    }

    /// The address of the admin listener (plain HTTP).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The catalog service ID the gateway registered under.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// Graceful shutdown: stop accepting, deregister, let in-flight
    /// requests finish for up to the drain timeout, then stop.
    pub async fn shutdown(mut self) -> Result<(), GatewayError> {
        self.supervised.shutdown().await
    }

    /// Runs until the gateway stops by itself (it failed, or `POST /shutdown`
    /// on the admin listener) or the process gets SIGTERM or SIGINT, which
    /// shuts it down gracefully: what the binary does once it started.
    pub async fn until_terminated(&mut self) -> Result<(), GatewayError> {
        self.supervised.until_terminated().await
    }

    /// Resolves once the gateway has stopped: after a shutdown was asked
    /// for (`POST /shutdown` on the admin listener), or if it failed.
    pub async fn wait(&mut self) -> Result<(), GatewayError> {
        self.supervised.wait().await
    }
}

/// Starts a gateway: binds both listeners, waits (up to
/// `config.startup_timeout`) for the agent's first gateway view, starts
/// serving, and registers in the catalog (retrying in the background if
/// that first attempt fails; `/ready` says 503 until it succeeds).
pub async fn start(config: GatewayConfig) -> Result<RunningGateway, StartError> {
    config
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let client = Client::with_credentials(&config.control, &config.agent_credentials)
        .map_err(|e| StartError::Config(e.to_string()))?;
    config.exchange.validate().map_err(StartError::Config)?;
    let (listener, bind_addr) = bind("peering listener", config.bind).await?;
    let advertise = config::ADVERTISE
        .resolve(config.advertise.as_deref(), bind_addr)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let (admin_listener, admin_addr) = bind("admin listener", config.admin_bind).await?;

    let metrics = Arc::new(metrics::Metrics::new()?);
    let readiness = Arc::new(admin::readiness());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);

    // Admin first, so /live answers (and /ready says why not) while we wait.
    let admin_task = AdminTask::spawn(|stop| {
        admin::serve(
            admin_listener,
            metrics.clone(),
            readiness.clone(),
            shutdown_tx.clone(),
            config.admin_limits(),
            stop,
        )
    });

    let (first, index) = match view::first_view(&client, config.startup_timeout).await {
        Ok(first) => first,
        Err(last_error) => {
            admin_task.abort();
            return Err(StartError::NoView {
                control: client.base().to_owned(),
                timeout: config.startup_timeout,
                last_error,
            });
        }
    };
    tracing::info!(
        cluster = %first.view.cluster,
        server_name = %first.view.server_name,
        peers = first.view.peers.len(),
        "gateway view loaded"
    );
    let shared: view::SharedView = Arc::new(ArcSwap::from_pointee(first));
    readiness.set_met(admin::VIEW_LOADED);

    let agent_restarted = Arc::new(Notify::new());
    let watcher = view::Watcher {
        client: client.clone(),
        shared: shared.clone(),
        index: index.max(1),
        readiness: readiness.clone(),
        agent_restarted: agent_restarted.clone(),
    };
    let watcher_task = tokio::spawn(watcher.run(shutdown_rx.clone()));

    let peering = Arc::new(peering::PeeringService {
        shared: shared.clone(),
        forwarder: forward::Forwarder::new(
            client.base(),
            config.agent_credentials.token.as_deref(),
        ),
        exchanges: exchange::Exchanges::new(
            client.base(),
            config.agent_credentials.token.as_deref(),
            config.exchange,
            metrics.clone(),
        ),
        metrics: metrics.clone(),
    });
    let data_path = Arc::new(listener::Listener::new(
        shared,
        metrics,
        peering,
        {
            let mut limits = config.limits;
            limits.fit_fd_limit("gateway");
            limits
        },
        config.passthrough_idle_timeout,
    ));
    let listener_task =
        tokio::spawn(data_path.run(listener, shutdown_rx.clone(), config.drain_timeout));
    readiness.set_met(admin::LISTENING);

    let registrar = Arc::new(Registrar::new(
        client,
        &registration::registration(&advertise),
    ));
    let registered = match registrar.register().await {
        Ok(()) => true,
        Err(e) => {
            let error = isthmus_dataplane::retry::error_chain(&e);
            tracing::warn!(error = %error, "catalog registration failed; retrying in the background");
            false
        }
    };
    readiness.set_registered(registered);
    let registration_task = tokio::spawn(registrar.clone().keep_registered(
        registered,
        readiness.clone(),
        agent_restarted,
        shutdown_rx.clone(),
    ));

    let supervisor = tokio::spawn(supervise(Tasks {
        shutdown: shutdown_rx,
        readiness,
        registrar: registrar.clone(),
        listener: listener_task,
        watcher: watcher_task,
        registration: registration_task,
        admin: admin_task,
        drain_timeout: config.drain_timeout,
    }));

    tracing::info!(bind = %bind_addr, advertise = %advertise, admin = %admin_addr, "mesh gateway running");
    Ok(RunningGateway {
        bind_addr,
        advertise,
        admin_addr,
        service_id: registrar.id().to_owned(),
        supervised: Supervised::new(shutdown_tx, supervisor),
    })
}

struct Tasks {
    shutdown: watch::Receiver<bool>,
    readiness: Arc<Readiness>,
    registrar: Arc<Registrar>,
    listener: JoinHandle<()>,
    watcher: JoinHandle<()>,
    registration: JoinHandle<()>,
    admin: AdminTask,
    drain_timeout: Duration,
}

/// Waits for the shutdown signal (or a data-path failure), then runs the
/// shutdown sequence: not ready, stop accepting and drain while
/// deregistering, stop the rest.
///
/// Every task handle is awaited at most until it completes once: the
/// listener also ends by itself when asked to stop, and may win the first
/// race; awaiting its handle again would panic ("`JoinHandle` polled after
/// completion").
async fn supervise(mut tasks: Tasks) -> Result<(), GatewayError> {
    let mut failure = None;
    // Set once the listener's handle has yielded its result.
    let mut listener_done = false;
    tokio::select! {
        _ = isthmus_dataplane::shutdown::stopped(&mut tasks.shutdown) => {}
        result = &mut tasks.listener => {
            listener_done = true;
            // The listener also ends when asked to stop; winning this race
            // then is not a failure.
            let asked_to_stop = *tasks.shutdown.borrow();
            match result {
                Ok(()) if asked_to_stop => {}
                Ok(()) => failure = Some(GatewayError::TaskFailed {
                    task: "peering listener",
                    reason: "stopped unexpectedly".to_owned(),
                }),
                Err(e) => failure = Some(GatewayError::TaskFailed {
                    task: "peering listener",
                    reason: e.to_string(),
                }),
            }
        }
    }
    tracing::info!("mesh gateway shutting down");
    tasks.readiness.set_draining();
    // No re-registration may race the deregistration below.
    tasks.registration.abort();
    tasks.watcher.abort();
    let deregister = tasks.registrar.deregister_within(DEREGISTER_TIMEOUT);
    if failure.is_none() && !listener_done {
        // The listener drains for at most the drain timeout; allow it a
        // little more before giving up on it.
        let drained = tokio::time::timeout(
            tasks.drain_timeout + Duration::from_secs(1),
            &mut tasks.listener,
        );
        let (_, drained) = tokio::join!(deregister, drained);
        if let Ok(Err(e)) = drained {
            failure = Some(GatewayError::TaskFailed {
                task: "peering listener",
                reason: e.to_string(),
            });
        }
    } else {
        deregister.await;
    }
    // Aborting a finished task is a no-op; it never polls the handle.
    tasks.listener.abort();
    tasks.admin.stop().await;
    tracing::info!("mesh gateway stopped");
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks whose listener has already finished, as it does when asked
    /// to stop with no connection open, with the shutdown already asked.
    async fn finished_listener_tasks() -> (Tasks, watch::Sender<bool>) {
        let (shutdown_tx, shutdown_rx) = watch::channel(true);
        let listener = tokio::spawn(async {});
        // Let the listener task run to completion before the supervisor
        // sees it, so both branches of its first race are ready at once.
        while !listener.is_finished() {
            tokio::task::yield_now().await;
        }
        // Nothing listens on port 1 of loopback: deregistration fails fast.
        let client = Client::new("http://127.0.0.1:1").unwrap();
        let advertise = config::ADVERTISE
            .resolve(Some("127.0.0.1:8443"), "127.0.0.1:8443".parse().unwrap())
            .unwrap();
        let tasks = Tasks {
            shutdown: shutdown_rx,
            readiness: Arc::new(admin::readiness()),
            registrar: Arc::new(Registrar::new(
                client,
                &registration::registration(&advertise),
            )),
            listener,
            watcher: tokio::spawn(std::future::pending()),
            registration: tokio::spawn(std::future::pending()),
            admin: AdminTask::spawn(|stop| stop),
            drain_timeout: Duration::from_millis(100),
        };
        (tasks, shutdown_tx)
    }

    /// The supervisor's first race picks a ready branch at random; either
    /// way it must not await the finished listener again. Before the fix,
    /// each run panicked with probability one half.
    #[tokio::test]
    async fn supervisor_survives_a_listener_that_finished_before_it_looked() {
        for _ in 0..64 {
            let (tasks, _shutdown) = finished_listener_tasks().await;
            let supervisor = tokio::spawn(supervise(tasks));
            let result = supervisor.await.expect("the supervisor does not panic");
            assert!(result.is_ok(), "{result:?}");
        }
    }
}
