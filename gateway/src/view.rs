//! Watching the agent's gateway view (`GET /v1/internal/gateway/view`, a
//! blocking query) and publishing it, with the TLS server config and the
//! peers' parsed trust anchors, through an `ArcSwap`: every new connection
//! and request reads the current snapshot, so a new view needs no restart.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use isthmus_api::gateway::{GatewayPeer, GatewayView, AGENT_PATH_VIEW};
use isthmus_api::tls::{root_store, TlsError};
use isthmus_runtime::client::{Client, ClientError};
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::admin::Readiness;
use isthmus_dataplane::retry::{error_chain, Backoff, FailureLog};

/// How long each blocking query may wait on the agent.
const BLOCKING_WAIT: &str = "5m";
/// The client-side bound on one blocking query: the wait plus slack.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5 * 60 + 30);
/// A query answered this fast with an unchanged index is not blocking;
/// the next one waits this long so a misbehaving agent is not hammered.
const MIN_QUERY_INTERVAL: Duration = Duration::from_millis(500);
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const WARN_EVERY: Duration = Duration::from_secs(60);

/// One published view and what is derived from it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Increases with every published view (identity caches key on it).
    pub(crate) generation: u64,
    pub(crate) view: GatewayView,
    pub(crate) server_config: Arc<ServerConfig>,
    /// The peers' trust anchors, parallel to `view.peers`; `None` when a
    /// peer has none (yet) or they do not parse.
    pub(crate) peer_roots: Vec<Option<Arc<RootCertStore>>>,
}

pub(crate) type SharedView = Arc<ArcSwap<Snapshot>>;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ViewError {
    #[error("fetching the gateway view: {0}")]
    Fetch(#[from] ClientError),
    #[error("the gateway view request timed out after {0:?}")]
    Timeout(Duration),
    #[error("the gateway view's certificate is unusable: {0}")]
    Certificate(TlsError),
}

impl Snapshot {
    /// Derives a snapshot; the TLS config is reused when the certificate
    /// and key did not change, so sessions survive unrelated updates.
    pub(crate) fn build(
        view: GatewayView,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, ViewError> {
        let server_config = match previous {
            Some(p)
                if p.view.certificate_pem == view.certificate_pem
                    && p.view.private_key_pem == view.private_key_pem =>
            {
                p.server_config.clone()
            }
            _ => crate::tls::server_config(&view).map_err(ViewError::Certificate)?,
        };
        let peer_roots = view.peers.iter().map(peer_roots).collect();
        Ok(Snapshot {
            generation: previous.map_or(1, |p| p.generation + 1),
            view,
            server_config,
            peer_roots,
        })
    }
}

fn peer_roots(peer: &GatewayPeer) -> Option<Arc<RootCertStore>> {
    if peer.root_pems.is_empty() {
        return None;
    }
    match root_store(&peer.root_pems) {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            tracing::warn!(peer = %peer.name, error = %e, "ignoring the peer's unusable CA roots");
            None
        }
    }
}

async fn fetch(client: &Client, index: Option<u64>) -> Result<(GatewayView, u64), ViewError> {
    let path = match index {
        Some(index) => format!("{AGENT_PATH_VIEW}?index={index}&wait={BLOCKING_WAIT}"),
        None => AGENT_PATH_VIEW.to_owned(),
    };
    let (view, index) = tokio::time::timeout(QUERY_TIMEOUT, client.get_json::<GatewayView>(&path))
        .await
        .map_err(|_| ViewError::Timeout(QUERY_TIMEOUT))??;
    Ok((view, index.unwrap_or(0)))
}

/// Fetches views until one is usable or `timeout` passes; the error names
/// the last failure.
pub(crate) async fn first_view(
    client: &Client,
    timeout: Duration,
) -> Result<(Snapshot, u64), String> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Backoff::new(BACKOFF_BASE, Duration::from_secs(5));
    let mut failures = FailureLog::new(WARN_EVERY);
    let mut last_error = None;
    loop {
        let attempt = tokio::time::timeout_at(deadline, async {
            let (view, index) = fetch(client, None).await?;
            Ok::<_, ViewError>((Snapshot::build(view, None)?, index))
        })
        .await;
        let error = match attempt {
            Ok(Ok(first)) => return Ok(first),
            Ok(Err(e)) => error_chain(&e),
            // Cut short by the deadline: the previous failure says more.
            Err(_) => {
                return Err(last_error.unwrap_or_else(|| "the agent did not answer".to_owned()))
            }
        };
        if failures.failed(&error) {
            tracing::warn!(control = %client.base(), error = %error, "waiting for the gateway view");
        }
        let delay = backoff.next_delay();
        if Instant::now() + delay >= deadline {
            return Err(error);
        }
        last_error = Some(error);
        tokio::time::sleep(delay).await;
    }
}

/// Keeps the shared view current until shutdown. A new snapshot is
/// published before the next query is sent.
pub(crate) struct Watcher {
    pub(crate) client: Client,
    pub(crate) shared: SharedView,
    pub(crate) index: u64,
    pub(crate) readiness: Arc<Readiness>,
    /// Poked when the agent's index went backwards (it restarted and may
    /// have lost our registration).
    pub(crate) agent_restarted: Arc<Notify>,
}

impl Watcher {
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        let mut failures = FailureLog::new(WARN_EVERY);
        loop {
            let started = Instant::now();
            let result = tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
                r = fetch(&self.client, Some(self.index)) => r,
            };
            let delay = match result {
                Ok((view, index)) => {
                    let previous_failures = failures.recovered();
                    if previous_failures > 0 {
                        tracing::info!(
                            failures = previous_failures,
                            "gateway view is being received again"
                        );
                    }
                    backoff.reset();
                    let unchanged = index == self.index;
                    self.accept(view, index);
                    (unchanged && started.elapsed() < MIN_QUERY_INTERVAL)
                        .then_some(MIN_QUERY_INTERVAL)
                }
                Err(e) => {
                    let message = error_chain(&e);
                    if failures.failed(&message) {
                        tracing::warn!(control = %self.client.base(), error = %message, "gateway view update failed; retrying with backoff");
                    } else {
                        tracing::debug!(error = %message, "gateway view update failed again");
                    }
                    Some(backoff.next_delay())
                }
            };
            if let Some(delay) = delay {
                tokio::select! {
                    _ = crate::stopped(&mut shutdown) => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }

    fn accept(&mut self, view: GatewayView, index: u64) {
        if index < self.index {
            // Consul's rule: an index that goes backwards means a reset.
            tracing::info!(
                old = self.index,
                new = index,
                "the agent's index went backwards; it was probably restarted"
            );
            self.agent_restarted.notify_one();
        }
        // An index of 0 would make the next query return at once.
        self.index = index.max(1);
        let current = self.shared.load();
        if current.view == view {
            return;
        }
        match Snapshot::build(view, Some(&current)) {
            Ok(snapshot) => {
                tracing::info!(
                    generation = snapshot.generation,
                    index,
                    peers = snapshot.view.peers.len(),
                    "gateway view updated"
                );
                drop(current);
                self.shared.store(Arc::new(snapshot));
                self.readiness.set_view_loaded();
            }
            Err(e) => {
                tracing::warn!(index, error = %e, "ignoring an unusable gateway view; keeping the previous one");
            }
        }
    }
}
