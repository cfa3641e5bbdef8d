//! The store over a log that several agents share (etcd): how writes
//! commit, and how every agent's state follows the log.
//!
//! The log is the truth and each agent's state a replica of it. A write
//! runs against this agent's newest applied state at index `I` and is sent
//! to the log as a transaction that succeeds only if the cluster's index
//! is still `I` (compare-and-swap). If another agent wrote first, the
//! write is run again on the newer state once this agent has applied it;
//! the transaction's own closure decides again, so `?cas` checks and
//! "create if missing" stay correct across agents. A write is acknowledged
//! only once this agent's state has applied it (read-your-writes).
//!
//! States change only through the [`Applier`], fed in log order by the
//! backend's follower: one committed transaction at a time, or, after a
//! lost or compacted watch, a whole fresh read that never moves the index
//! backwards.

use std::sync::Arc;
use std::time::Duration;

use super::log::{Op, Publish, RowSink};
use super::schema::Schema;
use super::watch::WatchKey;
use super::{
    load_state, run_txn, Change, Shared, StoreError, Table, Txn, GLOBAL_INDEX_KEY,
    TABLE_INDEX_PREFIX,
};

/// Reports how a commit ended: `Ok` once committed and applied here,
/// [`StoreError::Conflict`] when the cluster's index had moved on (by then
/// this agent has applied the newer state).
pub type CommitDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A log shared by several agents.
pub trait SharedLog: Send + Sync + 'static {
    /// Hands every row, as of one point of the log, to `row` (blocking).
    fn load(&self, row: &mut RowSink<'_>) -> Result<(), StoreError>;
    /// Starts applying, in order and through `applier`, every change
    /// committed after the point `load` read.
    fn follow(&self, applier: Applier);
    /// Commits `ops` if the cluster's index is still `expected`; reports
    /// through `done`.
    fn commit(&self, expected: u64, ops: Vec<Op>, done: CommitDone);
}

/// How many times one write is run again after losing to other agents'
/// writes before it gives up.
const MAX_ATTEMPTS: usize = 64;

/// The write path of a store over a shared log.
pub(crate) struct SharedWriter {
    log: Arc<dyn SharedLog>,
    /// This agent's writes take turns: they would only conflict with each
    /// other (one cluster-wide index), each retry costing a round trip.
    turn: tokio::sync::Semaphore,
}

impl SharedWriter {
    pub(crate) fn new(log: Arc<dyn SharedLog>) -> SharedWriter {
        SharedWriter {
            log,
            turn: tokio::sync::Semaphore::new(1),
        }
    }

    pub(crate) async fn write<T, E, F>(&self, shared: &Arc<Shared>, mut f: F) -> Result<T, E>
    where
        F: FnMut(&mut Txn) -> Result<T, E>,
        E: From<StoreError>,
    {
        let _turn = self
            .turn
            .acquire()
            .await
            .map_err(|_| StoreError::Task("the store is closed".into()))?;
        for _ in 0..MAX_ATTEMPTS {
            let base = shared.published.load_full();
            let (value, change) = run_txn(&base, &mut f)?;
            let Some(Change { ops, .. }) = change else {
                return Ok(value);
            };
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.log.commit(
                base.index,
                ops,
                Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            );
            let result = rx
                .await
                .map_err(|_| StoreError::Task("the shared log stopped".into()))?;
            match result {
                Ok(()) => return Ok(value),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(gave_up().into())
    }

    /// The blocking form, for start-up code (never on an async worker: it
    /// does not take this agent's turn, and retries on conflicts instead).
    pub(crate) fn write_blocking<T, E, F>(&self, shared: &Arc<Shared>, mut f: F) -> Result<T, E>
    where
        F: FnMut(&mut Txn) -> Result<T, E>,
        E: From<StoreError>,
    {
        for _ in 0..MAX_ATTEMPTS {
            let base = shared.published.load_full();
            let (value, change) = run_txn(&base, &mut f)?;
            let Some(Change { ops, .. }) = change else {
                return Ok(value);
            };
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            self.log.commit(
                base.index,
                ops,
                Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            );
            let result = rx
                .recv()
                .map_err(|_| StoreError::Task("the shared log stopped".into()))?;
            match result {
                Ok(()) => return Ok(value),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(gave_up().into())
    }
}

fn gave_up() -> StoreError {
    StoreError::Backend(format!(
        "the write lost to other agents' writes {MAX_ATTEMPTS} times in a row; retry"
    ))
}

/// Whether a row is one of the log's index stamps rather than data.
fn is_index_stamp(table: Table, key: &str) -> bool {
    table == Table::Meta && (key == GLOBAL_INDEX_KEY || key.starts_with(TABLE_INDEX_PREFIX))
}

/// Applies the shared log's changes to this agent's state, in order.
#[derive(Clone)]
pub struct Applier {
    shared: Arc<Shared>,
    schema: Arc<Schema>,
}

impl Applier {
    pub(super) fn new(shared: Arc<Shared>, schema: Arc<Schema>) -> Applier {
        Applier { shared, schema }
    }

    /// The index of the newest change applied.
    pub fn index(&self) -> u64 {
        self.shared.published.load().index
    }

    /// Applies one committed transaction of the log, at `index`. A
    /// transaction at or below the applied index was seen already (the
    /// follower restarted behind a fresh read) and is skipped.
    pub fn apply(&self, index: u64, ops: &[Op]) -> Result<(), StoreError> {
        let base = self.shared.published.load_full();
        if index <= base.index {
            return Ok(());
        }
        let mut state = (*base).clone();
        let mut touched = Vec::new();
        for op in ops {
            match op {
                Op::Put { table, key, bytes } => {
                    if is_index_stamp(*table, key) {
                        continue;
                    }
                    let cell = state.cell_from_bytes(*table, key, bytes, index)?;
                    state.put(*table, key, cell, index, &mut touched)?;
                }
                Op::Delete { table, key } => {
                    state.delete(*table, key, index, &mut touched)?;
                }
            }
        }
        state.stamp(index, &touched);
        self.shared.publish(Arc::new(state), &touched);
        Ok(())
    }

    /// Replaces the whole state with a fresh read of the log (after the
    /// follower lost its place). A read older than the applied state is
    /// refused: the state never goes backwards. Every waiting query is
    /// woken to look again.
    pub fn replace(
        &self,
        feed: impl FnOnce(&mut RowSink<'_>) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let state = load_state(self.schema.clone(), feed)?;
        if state.index < self.index() {
            return Ok(false);
        }
        let touched: Vec<WatchKey> = Table::ALL.into_iter().map(WatchKey::Table).collect();
        self.shared.publish(Arc::new(state), &touched);
        self.shared.watches.notify_all();
        Ok(true)
    }

    /// Waits until the applied index reaches `index`; false on timeout.
    pub async fn wait_for(&self, index: u64, timeout: Duration) -> bool {
        let mut applied = self.shared.index.subscribe();
        tokio::time::timeout(timeout, applied.wait_for(|at| *at >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
