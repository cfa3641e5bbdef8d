//! Watching one agent endpoint with blocking queries (`?index=N&wait=D`,
//! answered when `X-Consul-Index` passes `N`), for every view a role keeps
//! current (the proxy's leaf, proxy view and upstreams; the gateway's
//! gateway view): a task per endpoint sends
//! every new value to whoever builds state from it, and waits until that
//! [`Fresh`] value is dropped (processed) before asking again, so a query
//! for index `N` means the value of `N` is in effect. Errors back off
//! (capped, with jitter) and are logged once per run, not once per retry.

use std::sync::Arc;
use std::time::Duration;

use isthmus_runtime::client::{Client, ClientError};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::retry::{error_chain, Backoff, FailureLog};
use crate::shutdown::stopped;

/// How long each blocking query may wait on the agent.
const BLOCKING_WAIT: &str = "5m";
/// The client-side bound on one query: the wait plus slack.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5 * 60 + 30);
/// A query answered this fast with an unchanged index is not blocking;
/// the next one waits this long so a misbehaving agent is not hammered.
const MIN_QUERY_INTERVAL: Duration = Duration::from_millis(500);
/// The first delay after a failed query (it doubles up to `BACKOFF_MAX`).
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A failure that keeps recurring is logged again (as a warning) this often.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Api(#[from] ClientError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A new value and its index. Drop it once the value is in effect.
pub struct Fresh<T> {
    pub value: T,
    pub index: u64,
    pub done: Done,
}

/// Dropping it tells the watcher the value is in effect.
pub struct Done(#[allow(dead_code)] oneshot::Sender<()>);

/// What the watcher logs when fetching fails, fails again, and works
/// again, so that each role keeps the log lines its operators know.
#[derive(Debug, Clone, Copy)]
pub struct LogWording {
    pub failed: &'static str,
    pub failed_again: &'static str,
    pub recovered: &'static str,
}

impl LogWording {
    /// Lines that name the endpoint only in their `what` field.
    pub const GENERIC: LogWording = LogWording {
        failed: "fetching from the agent failed; retrying with backoff",
        failed_again: "fetching from the agent failed again",
        recovered: "the agent answers again",
    };
}

/// One endpoint to watch.
pub struct Query {
    pub client: Client,
    /// The path, possibly with a query string already.
    pub path: String,
    /// What is being fetched, for logs ("leaf certificate").
    pub what: &'static str,
    /// Poked when the index goes backwards: the agent restarted.
    pub agent_restarted: Option<Arc<Notify>>,
    /// The index the caller already holds the value of (from its own first
    /// fetch); `None` starts with a plain (non-blocking) query.
    pub known_index: Option<u64>,
    pub wording: LogWording,
}

impl Query {
    fn url(&self, index: Option<u64>) -> String {
        match index {
            None => self.path.clone(),
            Some(index) => {
                let separator = if self.path.contains('?') { '&' } else { '?' };
                format!("{}{separator}index={index}&wait={BLOCKING_WAIT}", self.path)
            }
        }
    }

    /// One query: plain without `index`, blocking with it.
    pub async fn fetch<T: DeserializeOwned>(
        &self,
        index: Option<u64>,
    ) -> Result<(T, u64), QueryError> {
        let url = self.url(index);
        let (value, index) = tokio::time::timeout(QUERY_TIMEOUT, self.client.get_json::<T>(&url))
            .await
            .map_err(|_| QueryError::Timeout(QUERY_TIMEOUT))??;
        Ok((value, index.unwrap_or(0)))
    }
}

/// Starts watching: the receiver gets the first value and then every
/// changed one. The task ends at shutdown or when the receiver is dropped.
pub fn spawn<T>(
    query: Query,
    mut shutdown: watch::Receiver<bool>,
) -> (mpsc::Receiver<Fresh<T>>, JoinHandle<()>)
where
    T: DeserializeOwned + PartialEq + Clone + Send + Sync + 'static,
{
    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = stopped(&mut shutdown) => {}
            _ = run(query, tx) => {}
        }
    });
    (rx, task)
}

async fn run<T>(query: Query, tx: mpsc::Sender<Fresh<T>>)
where
    T: DeserializeOwned + PartialEq + Clone + Send + Sync + 'static,
{
    let mut index: Option<u64> = query.known_index.map(|i| i.max(1));
    let mut last: Option<T> = None;
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    let mut failures = FailureLog::new(WARN_EVERY);
    loop {
        let started = Instant::now();
        let delay = match query.fetch::<T>(index).await {
            Ok((value, new_index)) => {
                let recovered = failures.recovered();
                if recovered > 0 {
                    tracing::info!(
                        what = query.what,
                        failures = recovered,
                        "{}",
                        query.wording.recovered
                    );
                }
                backoff.reset();
                if let (Some(old), Some(restarted)) = (index, &query.agent_restarted) {
                    if new_index < old {
                        tracing::info!(
                            old,
                            new = new_index,
                            "the agent's index went backwards; it was probably restarted"
                        );
                        restarted.notify_one();
                    }
                }
                let unchanged = index == Some(new_index.max(1));
                // An index of 0 would make the next query return at once.
                index = Some(new_index.max(1));
                if last.as_ref() != Some(&value) {
                    last = Some(value.clone());
                    let (done, processed) = oneshot::channel();
                    let fresh = Fresh {
                        value,
                        index: new_index,
                        done: Done(done),
                    };
                    if tx.send(fresh).await.is_err() {
                        return;
                    }
                    // Err once the value was dropped, i.e. processed.
                    let _ = processed.await;
                }
                (unchanged && started.elapsed() < MIN_QUERY_INTERVAL).then_some(MIN_QUERY_INTERVAL)
            }
            Err(e) => {
                let message = error_chain(&e);
                if failures.failed(&message) {
                    tracing::warn!(
                        what = query.what,
                        path = %query.path,
                        control = %query.client.base(),
                        error = %message,
                        "{}",
                        query.wording.failed
                    );
                } else {
                    tracing::debug!(what = query.what, error = %message, "{}", query.wording.failed_again);
                }
                Some(backoff.next_delay())
            }
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let client = Client::new("127.0.0.1:1").unwrap();
        let query = |path: &str| Query {
            client: client.clone(),
            path: path.to_owned(),
            what: "test",
            agent_restarted: None,
            known_index: None,
            wording: LogWording::GENERIC,
        };
        assert_eq!(query("/v1/x").url(None), "/v1/x");
        assert_eq!(query("/v1/x").url(Some(7)), "/v1/x?index=7&wait=5m");
        assert_eq!(
            query("/v1/x?peer=p").url(Some(7)),
            "/v1/x?peer=p&index=7&wait=5m"
        );
    }
}
