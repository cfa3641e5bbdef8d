//! The ordered, durable log behind the state, and group commit.
//!
//! A [`Log`] is what a storage backend provides: every row at start-up, and
//! appending a group of writes as one durable transaction. The embedded
//! backend is redb; a distributed one (etcd) implements the same trait.
//!
//! Writers apply their change to the in-memory head state one at a time
//! (in memory, fast) and queue it; one committer thread takes everything
//! queued, appends it in one transaction (one fsync), then publishes the
//! state as of the last write in the group and acknowledges each writer.
//! A write is therefore acknowledged, and visible to readers, only once it
//! is durable.

use std::sync::mpsc;
use std::sync::Arc;

use super::watch::WatchKey;
use super::{StoreError, Table};

/// One change to one row.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        table: Table,
        key: Arc<str>,
        bytes: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Arc<str>,
    },
}

/// Receives one stored row at load: its table, key and JSON.
pub type RowSink<'a> = dyn FnMut(Table, &str, &[u8]) -> Result<(), StoreError> + 'a;

/// A durable, ordered home for the rows.
pub trait Log: Send + 'static {
    /// Hands every stored row to `row`, table by table (one row at a time,
    /// so loading never holds the whole log in memory twice).
    fn load(&mut self, row: &mut RowSink<'_>) -> Result<(), StoreError>;
    /// Applies `ops` in order as one transaction; returns once durable.
    fn append(&mut self, ops: &[&Op]) -> Result<(), StoreError>;
}

/// A log that keeps nothing (`--dev` without a data directory).
pub struct NoLog;

impl Log for NoLog {
    fn load(&mut self, _row: &mut RowSink<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    fn append(&mut self, _ops: &[&Op]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// How a writer learns that its write is durable (or not).
pub(crate) enum Ack {
    Async(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
    Blocking(mpsc::SyncSender<Result<(), StoreError>>),
}

impl Ack {
    fn send(self, result: Result<(), StoreError>) {
        match self {
            Ack::Async(tx) => {
                let _ = tx.send(result);
            }
            Ack::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A write waiting for the committer.
pub(crate) struct Pending<S> {
    pub(crate) ops: Vec<Op>,
    pub(crate) touched: Vec<WatchKey>,
    /// The state as of this write.
    pub(crate) state: S,
    /// The head's generation it was built on; a failed commit starts a new
    /// one, and writes built on the failed state are refused.
    pub(crate) generation: u64,
    pub(crate) ack: Ack,
}

/// The most writes one transaction takes (bounds its size and latency).
pub(crate) const MAX_GROUP: usize = 4096;

/// How long the committer waits for a group to fill when the last one held
/// several writes: writers answered by the last commit are sending their
/// next writes, and a group of one followed by a group of all the others
/// would halve the throughput. A lone writer never waits.
const GATHER: std::time::Duration = std::time::Duration::from_micros(250);

/// What the committer does once a group is durable or has failed.
pub(crate) trait Publish<S>: Send + 'static {
    /// The generation writes must carry to be committed.
    fn generation(&self) -> u64;
    /// Makes `state` the readers' state and wakes `touched`'s watchers.
    fn publish(&self, state: S, touched: &[WatchKey]);
    /// Throws away the head's writes that were not made durable.
    fn rollback(&self);
}

/// The committer thread's loop: runs until every sender is gone.
pub(crate) fn run_committer<S, P: Publish<S>>(
    mut log: Box<dyn Log>,
    queue: mpsc::Receiver<Pending<S>>,
    publisher: P,
) {
    let mut last_group = 1;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        if group.len() < last_group {
            let deadline = std::time::Instant::now() + GATHER;
            while group.len() < last_group.min(MAX_GROUP) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match queue.recv_timeout(left) {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
        }
        last_group = group.len();
        let generation = publisher.generation();
        let (current, stale): (Vec<_>, Vec<_>) =
            group.into_iter().partition(|p| p.generation == generation);
        for pending in stale {
            pending.ack.send(Err(StoreError::Backend(
                "an earlier write failed to commit; retry".into(),
            )));
        }
        if current.is_empty() {
            continue;
        }
        let ops: Vec<&Op> = current.iter().flat_map(|p| p.ops.iter()).collect();
        match log.append(&ops) {
            Ok(()) => {
                let touched: Vec<WatchKey> = current
                    .iter()
                    .flat_map(|p| p.touched.iter().cloned())
                    .collect();
                let mut acks = Vec::with_capacity(current.len());
                let mut last = None;
                for pending in current {
                    acks.push(pending.ack);
                    last = Some(pending.state);
                }
                if let Some(state) = last {
                    publisher.publish(state, &touched);
                }
                for ack in acks {
                    ack.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = current.len(), "committing to the store failed");
                publisher.rollback();
                let message = e.to_string();
                for pending in current {
                    pending.ack.send(Err(StoreError::Backend(message.clone())));
                }
            }
        }
    }
}
