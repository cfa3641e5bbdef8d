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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::log::{Op, Publish, RowSink};
use super::schema::Schema;
use super::state::MemState;
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

/// Operations one group may hold, below etcd's default `--max-txn-ops`
/// (128), so grouping never makes a transaction etcd refuses; a single
/// write larger than this still goes alone.
const MAX_GROUP_OPS: usize = 100;

/// One queued write, its closure and its answer behind a trait object so
/// writes of any types share the committer's queue.
trait Job: Send {
    /// Runs the write on `base`; its changes, if it made any. Its value or
    /// error is kept for [`Job::finish`].
    fn run(&mut self, base: &MemState) -> Option<Change>;
    /// Answers the writer: its value, its own error, or the commit's.
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct TypedJob<T, E, F> {
    f: F,
    outcome: Option<Result<T, E>>,
    answer: tokio::sync::oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for TypedJob<T, E, F>
where
    F: FnMut(&mut Txn) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, base: &MemState) -> Option<Change> {
        match run_txn(base, &mut self.f) {
            Ok((value, change)) => {
                self.outcome = Some(Ok(value));
                change
            }
            Err(e) => {
                self.outcome = Some(Err(e));
                None
            }
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let answer = match (committed, self.outcome) {
            (Err(e), Some(Ok(_))) | (Err(e), None) => Err(E::from(e)),
            (_, Some(outcome)) => outcome,
            (Ok(()), None) => Err(E::from(StoreError::Task("the write never ran".into()))),
        };
        let _ = self.answer.send(answer);
    }
}

/// The write path of a store over a shared log: one committer thread
/// takes every queued write, runs them one after the other on the newest
/// applied state, and sends them as one transaction (group commit, as the
/// embedded store does); if another agent wrote first, it runs them all
/// again on the newer state.
pub(crate) struct SharedWriter {
    log: Arc<dyn SharedLog>,
    queue: Mutex<Option<std::sync::mpsc::Sender<Box<dyn Job>>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for SharedWriter {
    fn drop(&mut self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(thread) = self
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = thread.join();
        }
    }
}

impl SharedWriter {
    pub(crate) fn new(
        log: Arc<dyn SharedLog>,
        shared: Arc<Shared>,
    ) -> Result<SharedWriter, StoreError> {
        let (queue, jobs) = std::sync::mpsc::channel();
        let committing = log.clone();
        let committer = std::thread::Builder::new()
            .name("store-shared-commit".into())
            .spawn(move || run_committer(committing, shared, jobs))
            .map_err(|e| StoreError::Backend(format!("starting the commit thread: {e}")))?;
        Ok(SharedWriter {
            log,
            queue: Mutex::new(Some(queue)),
            committer: Mutex::new(Some(committer)),
        })
    }

    pub(crate) async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut Txn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job = Box::new(TypedJob {
            f,
            outcome: None,
            answer,
        });
        {
            let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue
                .as_ref()
                .ok_or_else(|| StoreError::Task("the store is closed".into()))?
                .send(job)
                .map_err(|_| StoreError::Task("the commit thread stopped".into()))?;
        }
        answered
            .await
            .map_err(|_| E::from(StoreError::Task("the commit thread stopped".into())))?
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

/// The committer thread's loop: runs until every sender is gone.
fn run_committer(
    log: Arc<dyn SharedLog>,
    shared: Arc<Shared>,
    jobs: std::sync::mpsc::Receiver<Box<dyn Job>>,
) {
    let mut waiting: std::collections::VecDeque<Box<dyn Job>> = Default::default();
    loop {
        if waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        while let Ok(job) = jobs.try_recv() {
            waiting.push_back(job);
        }
        let mut group: Vec<Box<dyn Job>> = Vec::new();
        let mut committed = Err(gave_up());
        for _ in 0..MAX_ATTEMPTS {
            let base = shared.published.load_full();
            let mut state = base.clone();
            let mut ops = Vec::new();
            // The first attempt takes writes until the group is full; a
            // retry runs the same group again on the newer state.
            let retry = !group.is_empty();
            let mut taken = 0;
            while taken < group.len() || (!retry && !waiting.is_empty()) {
                if taken == group.len() {
                    let job = waiting.pop_front().expect("not empty");
                    group.push(job);
                }
                let before = ops.len();
                if let Some(change) = group[taken].run(&state) {
                    if !retry && before > 0 && before + change.ops.len() > MAX_GROUP_OPS {
                        // Full: this write goes first in the next group.
                        waiting.push_front(group.pop().expect("just pushed"));
                        break;
                    }
                    ops.extend(change.ops);
                    state = change.state;
                }
                taken += 1;
            }
            if ops.is_empty() {
                committed = Ok(());
                break;
            }
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            log.commit(
                base.index,
                ops,
                Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            );
            match rx.recv() {
                Ok(Ok(())) => {
                    committed = Ok(());
                    break;
                }
                Ok(Err(StoreError::Conflict)) => continue,
                Ok(Err(e)) => {
                    committed = Err(e);
                    break;
                }
                Err(_) => {
                    committed = Err(StoreError::Task("the shared log stopped".into()));
                    break;
                }
            }
        }
        for job in group {
            let result = match &committed {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Backend(e.to_string())),
            };
            job.finish(result);
        }
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
