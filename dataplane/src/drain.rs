//! Graceful shutdown of a group of connections (all inbound, or all
//! outbound): every connection task, and every upgraded connection spawned
//! from one, holds a [`Drain`]. Draining asks them to finish (HTTP/2
//! GOAWAY, HTTP/1 close after the current response), waits until every
//! handle is gone or the deadline passes, then aborts the rest.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use isthmus_runtime::listen::{BurstLog, ConnLimiter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

/// How long aborted connections get to notice before draining gives up on them.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// The handle each connection task holds.
#[derive(Debug, Clone)]
pub struct Drain {
    graceful: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    /// Never used to send: the group is drained when every clone is dropped.
    _token: mpsc::Sender<()>,
}

impl Drain {
    /// Resolves once draining started: finish what is in flight, take nothing new.
    pub async fn draining(&self) {
        let mut graceful = self.graceful.clone();
        let _ = graceful.wait_for(|d| *d).await;
    }

    /// Resolves once the drain deadline passed: stop now.
    pub async fn aborted(&self) {
        let mut abort = self.abort.clone();
        let _ = abort.wait_for(|a| *a).await;
    }
}

/// The other end: starts and awaits the drain of one group.
#[derive(Debug)]
pub struct Group {
    switches: Switches,
    done: mpsc::Receiver<()>,
}

/// What stops a group, cloneable so that dropping a proxy can abort it.
#[derive(Debug, Clone)]
pub struct Switches {
    graceful: Arc<watch::Sender<bool>>,
    abort: Arc<watch::Sender<bool>>,
}

impl Switches {
    /// Stops everything at once.
    pub fn abort(&self) {
        self.graceful.send_replace(true);
        self.abort.send_replace(true);
    }
}

pub fn group() -> (Group, Drain) {
    let (graceful_tx, graceful) = watch::channel(false);
    let (abort_tx, abort) = watch::channel(false);
    let (token, done) = mpsc::channel(1);
    let switches = Switches {
        graceful: Arc::new(graceful_tx),
        abort: Arc::new(abort_tx),
    };
    (
        Group { switches, done },
        Drain {
            graceful,
            abort,
            _token: token,
        },
    )
}

impl Group {
    pub fn switches(&self) -> Switches {
        self.switches.clone()
    }

    /// Asks every connection to finish and waits for them until `deadline`,
    /// then aborts the rest. Returns whether everything finished in time.
    pub async fn drain(mut self, deadline: Instant) -> bool {
        self.switches.graceful.send_replace(true);
        let finished = tokio::time::timeout_at(deadline, self.done.recv())
            .await
            .is_ok();
        if !finished {
            self.switches.abort.send_replace(true);
            let _ = tokio::time::timeout(ABORT_GRACE, self.done.recv()).await;
        }
        finished
    }
}

/// Accepts connections until draining starts and runs `handle` for each in
/// its own task, with its own [`Drain`]. A connection over `limiter`'s cap
/// is closed at once (counted and logged by the limiter). The listener is
/// closed on return.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    name: String,
    drain: Drain,
    limiter: Arc<ConnLimiter>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Drain) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accept_failures = BurstLog::default();
    loop {
        tokio::select! {
            _ = drain.draining() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let Some(permit) = limiter.admit(remote.ip()) else {
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let span = tracing::debug_span!("connection", listener = %name, remote = %remote);
                    let connection = handle(tcp, remote, drain.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        connection.await;
                    }.instrument(span));
                }
                Err(e) => {
                    // Typically out of file descriptors: pause instead of spinning.
                    if let Some(failures) = accept_failures.should_log() {
                        tracing::warn!(listener = %name, error = %e, failures, "accepting a connection failed");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracing::debug!(listener = %name, "stopped accepting");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_when_every_handle_is_gone() {
        let (group, drain) = group();
        let worker = drain.clone();
        drop(drain);
        let task = tokio::spawn(async move {
            worker.draining().await;
        });
        let finished = group.drain(Instant::now() + Duration::from_secs(5)).await;
        assert!(finished);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn aborts_stragglers_at_the_deadline() {
        let (group, drain) = group();
        let stubborn = drain.clone();
        drop(drain);
        let task = tokio::spawn(async move {
            stubborn.aborted().await;
        });
        let finished = group
            .drain(Instant::now() + Duration::from_millis(50))
            .await;
        assert!(!finished);
        task.await.unwrap();
    }
}
