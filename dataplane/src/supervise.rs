//! The lifecycle both roles share around their own tasks: binding the
//! listeners, the handle a started role returns ([`Supervised`]: ask for
//! shutdown, wait for the supervisor, stop abruptly on drop), and the end
//! of every shutdown (deregistering, stopping the admin listener).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long deregistration may take during shutdown.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long admin connections get to finish once the role has drained.
pub const ADMIN_STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("binding the {what} on {addr}: {source}")]
pub struct BindError {
    /// Which listener (`admin listener`).
    pub what: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` and returns the listener with the address it got (port 0
/// picks one).
pub async fn bind(what: &str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let error = |source| BindError {
        what: what.to_owned(),
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// The running admin listener and what stops it.
pub struct AdminTask {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

/// Completes when the admin listener is asked to stop.
pub type AdminStop = Pin<Box<dyn Future<Output = ()> + Send>>;

impl AdminTask {
    /// Spawns `serve`, handing it the future that says when to stop.
    pub fn spawn<Fut>(serve: impl FnOnce(AdminStop) -> Fut) -> AdminTask
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        AdminTask { task, stop }
    }

    /// Stops it at once (the role failed to start).
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Stops it, giving open admin connections [`ADMIN_STOP_TIMEOUT`].
    pub async fn stop(self) {
        let AdminTask { mut task, stop } = self;
        let _ = stop.send(());
        if tokio::time::timeout(ADMIN_STOP_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// How a role's error says that its supervisor task itself failed.
pub trait SupervisorFailure {
    fn supervisor_failed(reason: String) -> Self;
}

/// A started role's supervisor: [`Supervised::shutdown`] asks for a
/// graceful shutdown and waits for it; dropping it without that stops the
/// role abruptly (no deregistration, no drain).
pub struct Supervised<E> {
    shutdown: Arc<watch::Sender<bool>>,
    supervisor: Option<JoinHandle<Result<(), E>>>,
    /// What else dropping must stop at once.
    on_drop: Option<Box<dyn Fn() + Send + Sync>>,
}

impl<E: SupervisorFailure> Supervised<E> {
    pub fn new(
        shutdown: Arc<watch::Sender<bool>>,
        supervisor: JoinHandle<Result<(), E>>,
    ) -> Supervised<E> {
        Supervised {
            shutdown,
            supervisor: Some(supervisor),
            on_drop: None,
        }
    }

    /// Also runs `kill` when dropped before the role stopped.
    pub fn with_kill_on_drop(mut self, kill: impl Fn() + Send + Sync + 'static) -> Supervised<E> {
        self.on_drop = Some(Box::new(kill));
        self
    }

    /// Graceful shutdown: asks for it and waits until the role stopped.
    pub async fn shutdown(&mut self) -> Result<(), E> {
        self.shutdown.send_replace(true);
        self.wait().await
    }

    /// Runs until the role stops by itself (it failed, or `POST /shutdown`)
    /// or the process is told to terminate (SIGTERM, SIGINT), which shuts
    /// the role down gracefully.
    pub async fn until_terminated(&mut self) -> Result<(), E> {
        tokio::select! {
            _ = crate::shutdown::terminated() => {}
            stopped = self.wait() => return stopped,
        }
        self.shutdown().await
    }

    /// Resolves once the role has stopped: after a shutdown was asked for
    /// (also by `POST /shutdown` on the admin listener), or if it failed.
    pub async fn wait(&mut self) -> Result<(), E> {
        let Some(supervisor) = self.supervisor.as_mut() else {
            return Ok(());
        };
        let result = supervisor.await;
        self.supervisor = None;
        result.unwrap_or_else(|e| Err(E::supervisor_failed(e.to_string())))
    }
}

impl<E> Drop for Supervised<E> {
    fn drop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            self.shutdown.send_replace(true);
            if let Some(kill) = &self.on_drop {
                kill();
            }
            supervisor.abort();
        }
    }
}
