//! Watching the agent's gateway view (`GET /v1/internal/gateway/view`, a
//! blocking query) and publishing it, with the TLS server config and the
//! peers' parsed trust anchors, through an `ArcSwap`: every new connection
//! and request reads the current snapshot, so a new view needs no restart.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use isthmus_api::gateway::{GatewayPeer, GatewayView, AGENT_PATH_VIEW};
use isthmus_api::tls::{root_store, TlsError};
use isthmus_dataplane::watcher::{self, LogWording, Query, QueryError, BACKOFF_BASE, WARN_EVERY};
use isthmus_runtime::client::{Client, ClientError};
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::admin::VIEW_LOADED;
use isthmus_dataplane::readiness::Readiness;
use isthmus_dataplane::retry::{error_chain, Backoff, FailureLog};

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

/// One plain (non-blocking) fetch of the view.
async fn fetch(query: &Query) -> Result<(GatewayView, u64), ViewError> {
    query.fetch(None).await.map_err(|e| match e {
        QueryError::Api(e) => ViewError::Fetch(e),
        QueryError::Timeout(timeout) => ViewError::Timeout(timeout),
    })
}

/// The gateway view's endpoint, to watch from `known_index` (or, without
/// it, to fetch once).
pub(crate) fn query(
    client: &Client,
    known_index: Option<u64>,
    agent_restarted: Option<Arc<Notify>>,
) -> Query {
    Query {
        client: client.clone(),
        path: AGENT_PATH_VIEW.to_owned(),
        what: "gateway view",
        agent_restarted,
        known_index,
        wording: LogWording {
            failed: "gateway view update failed; retrying with backoff",
            failed_again: "gateway view update failed again",
            recovered: "gateway view is being received again",
        },
    }
}

/// Fetches views until one is usable or `timeout` passes; the error names
/// the last failure.
pub(crate) async fn first_view(
    client: &Client,
    timeout: Duration,
) -> Result<(Snapshot, u64), String> {
    let deadline = Instant::now() + timeout;
    let query = query(client, None, None);
    let mut backoff = Backoff::new(BACKOFF_BASE, Duration::from_secs(5));
    let mut failures = FailureLog::new(WARN_EVERY);
    let mut last_error = None;
    loop {
        let attempt = tokio::time::timeout_at(deadline, async {
            let (view, index) = fetch(&query).await?;
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
    /// The index of the view `shared` holds.
    pub(crate) index: u64,
    pub(crate) readiness: Arc<Readiness>,
    /// Poked when the agent's index went backwards (it restarted and may
    /// have lost our registration).
    pub(crate) agent_restarted: Arc<Notify>,
}

impl Watcher {
    pub(crate) async fn run(self, shutdown: watch::Receiver<bool>) {
        let query = query(
            &self.client,
            Some(self.index),
            Some(self.agent_restarted.clone()),
        );
        let (mut views, task) = watcher::spawn::<GatewayView>(query, shutdown);
        // Ends at shutdown, when the watcher task stops sending.
        while let Some(fresh) = views.recv().await {
            // Dropping `fresh` (its `done`) tells the watcher it is published.
            self.accept(fresh.value, fresh.index);
        }
        task.abort();
    }

    fn accept(&self, view: GatewayView, index: u64) {
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
                self.readiness.set_met(VIEW_LOADED);
            }
            Err(e) => {
                tracing::warn!(index, error = %e, "ignoring an unusable gateway view; keeping the previous one");
            }
        }
    }
}
