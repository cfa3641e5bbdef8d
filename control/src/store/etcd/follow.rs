//! Keeps this agent's state in step with etcd: watches the cluster's
//! prefix from the revision after the last one applied and applies each
//! write transaction (all events of one revision) as one change. When the
//! watch breaks it resumes from where it was; when etcd has compacted that
//! revision away it reads the whole state afresh (the applier refuses a
//! read older than what it serves).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};

use super::super::log::Op;
use super::super::shared_log::Applier;
use super::super::{StoreError, Table};
use super::keys::EtcdKeys;
use super::read_all;

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(super) struct Follower {
    pub(super) client: Client,
    pub(super) keys: EtcdKeys,
    pub(super) index_key: String,
    pub(super) applier: Applier,
    pub(super) next_revision: i64,
}

/// Why a watch ended.
enum Lost {
    /// etcd no longer has the revision we need: read everything again.
    Compacted,
    /// The connection or the stream failed: watch again from where we were.
    Broken(String),
}

impl Follower {
    pub(super) async fn run(mut self) {
        let mut backoff = RETRY_MIN;
        loop {
            let lost = self.watch().await;
            match lost {
                Lost::Compacted => {
                    tracing::warn!(
                        revision = self.next_revision,
                        "etcd compacted the revisions this agent had not applied yet; reading the whole state again"
                    );
                    match self.resync().await {
                        Ok(()) => backoff = RETRY_MIN,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading the state from etcd failed; retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(RETRY_MAX);
                        }
                    }
                }
                Lost::Broken(reason) => {
                    tracing::warn!(%reason, revision = self.next_revision, "the etcd watch ended; watching again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Follows the watch until it ends; applies what it delivers.
    async fn watch(&mut self) -> Lost {
        let options = WatchOptions::new()
            .with_range(EtcdKeys::range_end(self.keys.data_prefix()))
            .with_start_revision(self.next_revision);
        let mut stream = match self
            .client
            .watch(self.keys.data_prefix().to_owned(), Some(options))
            .await
        {
            Ok(stream) => stream,
            Err(e) => return Lost::Broken(e.to_string()),
        };
        loop {
            let response = match stream.message().await {
                Ok(Some(response)) => response,
                Ok(None) => return Lost::Broken("the stream closed".into()),
                Err(e) => return Lost::Broken(e.to_string()),
            };
            if response.compact_revision() > 0 {
                return Lost::Compacted;
            }
            if response.canceled() {
                return Lost::Broken(format!("canceled: {}", response.cancel_reason()));
            }
            // Events come in revision order; one revision is one transaction.
            let events = response.events();
            let mut start = 0;
            while start < events.len() {
                let revision = events[start].kv().map(|kv| kv.mod_revision()).unwrap_or(0);
                let mut end = start + 1;
                while end < events.len()
                    && events[end].kv().map(|kv| kv.mod_revision()).unwrap_or(0) == revision
                {
                    end += 1;
                }
                self.apply_transaction(revision, &events[start..end]);
                self.next_revision = revision + 1;
                start = end;
            }
        }
    }

    fn apply_transaction(&self, revision: i64, events: &[etcd_client::Event]) {
        let mut index = None;
        let mut ops = Vec::with_capacity(events.len());
        for event in events {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = kv.key_str() else { continue };
            if key == self.index_key && event.event_type() == EventType::Put {
                index = serde_json::from_slice::<u64>(kv.value()).ok();
            }
            let Some((table, row)) = self.keys.row(key) else {
                continue;
            };
            ops.push(match event.event_type() {
                EventType::Put => Op::Put {
                    table,
                    key: Arc::from(&*row),
                    bytes: kv.value().to_vec(),
                },
                EventType::Delete => Op::Delete {
                    table,
                    key: Arc::from(&*row),
                },
            });
        }
        let Some(index) = index else {
            // Every isthmus write bumps the index; this one did not.
            tracing::warn!(
                revision,
                "ignoring a change under the cluster's etcd prefix that no isthmus agent wrote"
            );
            return;
        };
        if let Err(e) = self.applier.apply(index, &ops) {
            tracing::error!(error = %e, index, revision, "applying a change from etcd failed; skipping it");
        }
    }

    /// Reads the whole state at the newest revision and serves it.
    async fn resync(&mut self) -> Result<(), StoreError> {
        let mut rows: Vec<(Table, String, Vec<u8>)> = Vec::new();
        let revision = read_all(
            self.client.clone(),
            self.keys.clone(),
            |table, key, bytes| {
                rows.push((table, key.to_owned(), bytes.to_vec()));
                Ok(())
            },
        )
        .await?;
        let replaced = self.applier.replace(|row| {
            for (table, key, bytes) in &rows {
                row(*table, key, bytes)?;
            }
            Ok(())
        })?;
        if !replaced {
            tracing::warn!(
                revision,
                "etcd's state is older than what this agent serves; kept ours"
            );
        }
        self.next_revision = revision + 1;
        Ok(())
    }
}
