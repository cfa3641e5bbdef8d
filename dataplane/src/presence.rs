//! Whether a gateway's or a sidecar's own registration is still in its
//! agent's catalog.
//!
//! A registration can disappear behind its owner's back: an operator (or a
//! script) deregisters it, the agent removes it after its check stayed
//! critical for `DeregisterCriticalServiceAfter` (say, while the agent's
//! own checks failed), or an in-memory agent restarts. [`wait_until_gone`]
//! watches `/v1/agent/service/<id>` with blocking queries and returns as
//! soon as the agent answers 404, so the owner can register again at once.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::retry::Backoff;
use isthmus_runtime::client::{encode, Client};

/// How long each blocking query may wait on the agent.
const WAIT: &str = "30s";
/// A blocking query that has not answered well after its wait is stuck.
const QUERY_TIMEOUT: Duration = Duration::from_secs(45);
/// An unchanged answer this fast means the agent did not block.
const NOT_BLOCKING: Duration = Duration::from_millis(100);

/// Resolves once the agent answers that the service `id` is not registered
/// (404). Errors (agent unreachable, a 5xx) say nothing about the
/// registration: they back off and ask again.
pub async fn wait_until_gone(client: &Client, id: &str) {
    let base = format!("/v1/agent/service/{}", encode(id));
    let mut index: Option<u64> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let path = match index {
            None => base.clone(),
            Some(index) => format!("{base}?index={index}&wait={WAIT}"),
        };
        let asked = tokio::time::Instant::now();
        let answer =
            tokio::time::timeout(QUERY_TIMEOUT, client.send(Method::GET, &path, None)).await;
        let pause = match answer {
            Ok(Ok(response)) if response.status == StatusCode::NOT_FOUND => return,
            Ok(Ok(response)) if response.status.is_success() => {
                // An index of 0 would make the next query return at once.
                let new = response.index.unwrap_or(0).max(1);
                let unchanged = index == Some(new);
                index = Some(new);
                if unchanged && asked.elapsed() < NOT_BLOCKING {
                    // The agent does not block (it is shutting down, or
                    // too old to): do not spin.
                    Some(backoff.next_delay())
                } else {
                    backoff.reset();
                    None
                }
            }
            Ok(Ok(response)) => {
                tracing::debug!(status = %response.status, id, "checking the registration");
                Some(backoff.next_delay())
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %crate::retry::error_chain(&e), id, "checking the registration");
                Some(backoff.next_delay())
            }
            Err(_) => Some(backoff.next_delay()),
        };
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}
