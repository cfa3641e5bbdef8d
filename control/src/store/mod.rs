//! The control plane's state: keyed tables held in memory, indexed, fed by
//! an ordered durable log, with fine-grained watches for blocking queries.
//!
//! Everything above this module sees only [`Store`], [`Snapshot`] and
//! [`Txn`]: typed reads and writes over named tables. Reads are answered
//! from an in-memory [`state`](state) (persistent maps: a snapshot is a
//! pointer copy, consistent, and never blocks a writer); values are decoded
//! once, and tables that have a [`Schema`] keep secondary indexes, so a
//! query costs what it returns, not the size of the catalog. Writes run one
//! at a time against the newest state, then wait for the [`log`](log) (redb
//! by default) to make them durable with group commit: concurrent writes
//! share one transaction and one fsync, and each is acknowledged, and
//! visible to readers, only once durable.
//!
//! Every committed write transaction that changes something bumps the
//! global index by one and records it as the index of each table, row and
//! index value it touched; blocking queries wait on exactly what they read
//! ([`watch`](watch)).

pub mod etcd;
mod log;
pub mod private;
mod reads;
mod redb_backend;
mod schema;
mod shared_log;
mod state;
mod txn;
mod watch;

use std::sync::{mpsc, Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::watch as index_watch;

pub use log::{Log, NoLog, Op, RowSink};
pub use reads::{Reads, Snapshot};
pub use redb_backend::RedbBackend;
pub use schema::{Schema, Stored};
pub use shared_log::{Applier, SharedLog};
pub use state::MemState;
pub use txn::Txn;
pub use watch::WatchKey;

use log::{Ack, Pending, Publish};
use shared_log::SharedWriter;
use watch::Watches;

/// The tables the control plane keeps. Keys are strings, values JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Indexes and singletons: cluster identity, CA.
    Meta,
    Services,
    Checks,
    ConfigEntries,
    /// Peerings (cluster links), keyed by name.
    Peerings,
    /// Services imported from peers, keyed `<peer>/<service>`.
    Imported,
    /// Auth groups, keyed by name.
    AuthGroups,
    /// Nodes other than this agent's, registered through
    /// `/v1/catalog/register`, keyed by lowercased node name.
    Nodes,
    /// Services registered through the cluster's other agents (etcd),
    /// keyed `<node>/<service ID>`; written only by their own agent.
    RemoteServices,
    /// Checks of the cluster's other agents, keyed `<node>/<check ID>`.
    RemoteChecks,
    /// The node records of the cluster's other agents, keyed by node name.
    RemoteNodes,
    /// Each agent node's liveness check (`serfHealth`), keyed by node
    /// name; written by the leader from the cluster's membership.
    NodeHealth,
    /// The `consul` service's instance on each agent node (the API every
    /// agent serves), keyed by node name; written by the leader.
    ServerServices,
    /// ACL tokens, keyed by AccessorID (indexed by SecretID and by the
    /// policies they link).
    AclTokens,
    /// ACL policies, keyed by ID (indexed by name).
    AclPolicies,
}

impl Table {
    pub const ALL: [Table; 15] = [
        Table::Meta,
        Table::Services,
        Table::Checks,
        Table::ConfigEntries,
        Table::Peerings,
        Table::Imported,
        Table::AuthGroups,
        Table::Nodes,
        Table::RemoteServices,
        Table::RemoteChecks,
        Table::RemoteNodes,
        Table::NodeHealth,
        Table::ServerServices,
        Table::AclTokens,
        Table::AclPolicies,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Services => "services",
            Table::Checks => "checks",
            Table::ConfigEntries => "config_entries",
            Table::Peerings => "peerings",
            Table::Imported => "imported",
            Table::AuthGroups => "auth_groups",
            Table::Nodes => "nodes",
            Table::RemoteServices => "remote_services",
            Table::RemoteChecks => "remote_checks",
            Table::RemoteNodes => "remote_nodes",
            Table::NodeHealth => "node_health",
            Table::ServerServices => "server_services",
            Table::AclTokens => "acl_tokens",
            Table::AclPolicies => "acl_policies",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store backend: {0}")]
    Backend(String),
    #[error("stored value {table}/{key} is corrupt: {source}")]
    Corrupt {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("encoding value for {table}/{key}: {source}")]
    Encode {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("store write task failed: {0}")]
    Task(String),
    #[error("stored value {table}/{key} cannot be read as {wanted}")]
    WrongType {
        table: &'static str,
        key: String,
        wanted: &'static str,
    },
    /// A shared log's index moved on before this write committed (another
    /// agent wrote first); the write runs again on the newer state.
    #[error("another agent's write committed first")]
    Conflict,
    #[error("table {table} has no index {index:?}")]
    UnknownIndex { table: &'static str, index: String },
}

const GLOBAL_INDEX_KEY: &str = "index";
const TABLE_INDEX_PREFIX: &str = "index/";

fn table_index_key(table: Table) -> String {
    format!("{TABLE_INDEX_PREFIX}{}", table.name())
}

/// Handle to the state; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    queue: Mutex<Option<mpsc::Sender<Pending<Arc<MemState>>>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set when the log is shared with other agents: writes go there
    /// instead of to the committer.
    shared_log: Option<SharedWriter>,
}

impl Drop for Inner {
    /// Closes the queue and waits for the committer to finish what was
    /// queued and release the log (a reopened file must not find it busy).
    fn drop(&mut self) {
        let queue = self.queue.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(queue.take());
        let committer = self.committer.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = committer.take() {
            let _ = thread.join();
        }
    }
}

/// What writers, readers and the committer thread share.
struct Shared {
    /// The newest state, including writes not yet durable: writers build
    /// on it, one at a time.
    head: Mutex<Head>,
    /// The newest durable state: what readers see.
    published: ArcSwap<MemState>,
    index: index_watch::Sender<u64>,
    watches: Arc<Watches>,
}

struct Head {
    state: Arc<MemState>,
    generation: u64,
}

impl Shared {
    fn new(state: Arc<MemState>) -> Arc<Shared> {
        let (index_tx, _) = index_watch::channel(state.index);
        Arc::new(Shared {
            head: Mutex::new(Head {
                state: state.clone(),
                generation: 0,
            }),
            published: ArcSwap::new(state),
            index: index_tx,
            watches: Arc::new(Watches::default()),
        })
    }
}

impl Publish<Arc<MemState>> for Arc<Shared> {
    fn generation(&self) -> u64 {
        self.head
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    fn publish(&self, state: Arc<MemState>, touched: &[WatchKey]) {
        let new_index = state.index;
        self.published.store(state);
        self.watches.notify(touched);
        self.index.send_if_modified(|current| {
            let moved = new_index > *current;
            if moved {
                *current = new_index;
            }
            moved
        });
    }

    fn rollback(&self) {
        let mut head = self.head.lock().unwrap_or_else(|e| e.into_inner());
        head.state = self.published.load_full();
        head.generation += 1;
    }
}

impl Store {
    /// Opens (creating if needed) a crash-safe store file, with no schema.
    pub fn open(path: &std::path::Path) -> Result<Store, StoreError> {
        Self::with_log(Box::new(RedbBackend::open(path)?), Schema::new())
    }

    /// A store that lives only in memory (for `--dev`), with no schema.
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::with_log(Box::new(NoLog), Schema::new())
    }

    /// Loads every row from `log` into memory, builds the indexes `schema`
    /// names, and starts the committer.
    pub fn with_log(mut log: Box<dyn Log>, schema: Schema) -> Result<Store, StoreError> {
        let state = Arc::new(load_state(Arc::new(schema), |row| log.load(row))?);
        let shared = Shared::new(state);
        let (queue, pending) = mpsc::channel();
        let publisher = shared.clone();
        let committer = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || log::run_committer(log, pending, publisher))
            .map_err(|e| StoreError::Backend(format!("starting the commit thread: {e}")))?;
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                queue: Mutex::new(Some(queue)),
                committer: Mutex::new(Some(committer)),
                shared_log: None,
            }),
        })
    }

    /// A store whose log several agents share (etcd): loads every row from
    /// `log`, then follows the changes any agent commits. Writes are
    /// compare-and-swap transactions on the cluster's index, retried on the
    /// newer state when another agent wrote first.
    pub fn with_shared_log(log: Arc<dyn SharedLog>, schema: Schema) -> Result<Store, StoreError> {
        let schema = Arc::new(schema);
        let state = Arc::new(load_state(schema.clone(), |row| log.load(row))?);
        let shared = Shared::new(state);
        log.follow(Applier::new(shared.clone(), schema));
        let writer = SharedWriter::new(log, shared.clone())?;
        Ok(Store {
            inner: Arc::new(Inner {
                shared,
                queue: Mutex::new(None),
                committer: Mutex::new(None),
                shared_log: Some(writer),
            }),
        })
    }

    /// The index of the last committed change.
    pub fn index(&self) -> u64 {
        self.inner.shared.published.load().index
    }

    /// Wakes whenever a write commits a change (any change: prefer
    /// [`Store::wait_for_change`] for one query's keys).
    pub fn subscribe(&self) -> index_watch::Receiver<u64> {
        self.inner.shared.index.subscribe()
    }

    /// A consistent view of the durable state.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            state: self.inner.shared.published.load_full(),
            recorded: None,
        })
    }

    /// A snapshot that records what is read through it, so a blocking
    /// query can wait on exactly that ([`Snapshot::watch_set`]).
    pub fn recording_snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.inner.shared.published.load_full(),
            recorded: Some(Mutex::new(Vec::new())),
        }
    }

    /// Waits until one of `keys` changes after index `since` or `deadline`
    /// passes; returns whether something changed. Only commits that touch
    /// one of `keys` wake it.
    pub async fn wait_for_change(
        &self,
        keys: &[WatchKey],
        since: u64,
        deadline: tokio::time::Instant,
    ) -> bool {
        let shared = &self.inner.shared;
        if keys.is_empty() {
            let mut changes = self.subscribe();
            if *changes.borrow_and_update() > since {
                return true;
            }
            return tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_ok();
        }
        let registration = shared.watches.register(keys);
        // Dropped before the registration, which then sees who else waits.
        let notifies: Vec<_> = registration
            .notifies
            .iter()
            .map(|(_, notify)| notify.clone())
            .collect();
        let mut waits: Vec<_> = notifies
            .iter()
            .map(|notify| Box::pin(notify.notified()))
            .collect();
        // Enabled before looking at the state: a commit between the look
        // and the wait still wakes us.
        for wait in &mut waits {
            wait.as_mut().enable();
        }
        let state = shared.published.load();
        if keys.iter().any(|key| state.key_index(key) > since) {
            return true;
        }
        drop(state);
        let woken = tokio::time::timeout_at(deadline, futures_util::future::select_all(waits))
            .await
            .is_ok();
        woken
    }

    /// Runs `f` in one write transaction against the newest state, then
    /// waits until the change is durable. If `f` fails, nothing it wrote is
    /// kept. `f` runs in memory and must not block.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut Txn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        if let Some(writer) = &self.inner.shared_log {
            return writer.write(f).await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let value = match self.apply(f, Ack::Async(tx))? {
            Applied::Unchanged(value) => return Ok(value),
            Applied::Queued(value) => value,
        };
        rx.await
            .map_err(|_| E::from(StoreError::Task("the commit thread stopped".into())))??;
        Ok(value)
    }

    /// The synchronous form of [`Store::write`], for start-up code and
    /// blocking threads (never on an async worker).
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnMut(&mut Txn) -> Result<T, E>,
        E: From<StoreError>,
    {
        if let Some(writer) = &self.inner.shared_log {
            return writer.write_blocking(&self.inner.shared, f);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let value = match self.apply(f, Ack::Blocking(tx))? {
            Applied::Unchanged(value) => return Ok(value),
            Applied::Queued(value) => value,
        };
        rx.recv()
            .map_err(|_| E::from(StoreError::Task("the commit thread stopped".into())))??;
        Ok(value)
    }

    /// Runs `f` on a copy of the head state; if it changed something, makes
    /// that the head and queues it for the committer (under the head lock,
    /// so the queue's order is the head's).
    fn apply<T, E, F>(&self, mut f: F, ack: Ack) -> Result<Applied<T>, E>
    where
        F: FnMut(&mut Txn) -> Result<T, E>,
        E: From<StoreError>,
    {
        let shared = &self.inner.shared;
        let mut head = shared.head.lock().unwrap_or_else(|e| e.into_inner());
        let (value, change) = run_txn(&head.state, &mut f)?;
        let Some(Change {
            state,
            ops,
            touched,
        }) = change
        else {
            // Nothing changed: the index stays and no reader is woken.
            return Ok(Applied::Unchanged(value));
        };
        head.state = state.clone();
        let pending = Pending {
            ops,
            touched,
            state,
            generation: head.generation,
            ack,
        };
        let queue = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue
            .as_ref()
            .ok_or_else(|| StoreError::Task("the store is closed".into()))?
            .send(pending)
            .map_err(|_| StoreError::Task("the commit thread stopped".into()))?;
        Ok(Applied::Queued(value))
    }
}

/// What one write transaction changed: the state after it, the log
/// records (with the index stamps), the watch keys it touched.
pub(crate) struct Change {
    pub(crate) state: Arc<MemState>,
    pub(crate) ops: Vec<Op>,
    pub(crate) touched: Vec<WatchKey>,
}

/// Runs `f` on a copy of `base` at the next index; `None` when it changed
/// nothing.
pub(crate) fn run_txn<T, E, F>(base: &MemState, f: &mut F) -> Result<(T, Option<Change>), E>
where
    F: FnMut(&mut Txn) -> Result<T, E>,
{
    let index = base.index + 1;
    let mut txn = Txn {
        state: base.clone(),
        index,
        ops: Vec::new(),
        touched: Vec::new(),
    };
    let value = f(&mut txn)?;
    if txn.ops.is_empty() {
        return Ok((value, None));
    }
    let Txn {
        mut state,
        mut ops,
        touched,
        ..
    } = txn;
    state.stamp(index, &touched);
    let stamp = encode_index(index);
    let mut tables: Vec<Table> = touched.iter().map(WatchKey::table).collect();
    tables.sort();
    tables.dedup();
    for table in tables {
        ops.push(Op::Put {
            table: Table::Meta,
            key: table_index_key(table).into(),
            bytes: stamp.clone(),
        });
    }
    ops.push(Op::Put {
        table: Table::Meta,
        key: GLOBAL_INDEX_KEY.into(),
        bytes: stamp,
    });
    Ok((
        value,
        Some(Change {
            state: Arc::new(state),
            ops,
            touched,
        }),
    ))
}

/// An index as the log stores it.
pub(crate) fn encode_index(index: u64) -> Vec<u8> {
    serde_json::to_vec(&index).expect("u64 serializes")
}

/// Builds the state from every row `feed` hands over: the rows, the
/// indexes the log recorded, and the schema's secondary indexes.
pub(crate) fn load_state(
    schema: Arc<Schema>,
    feed: impl FnOnce(&mut RowSink<'_>) -> Result<(), StoreError>,
) -> Result<MemState, StoreError> {
    let mut state = MemState::empty(schema);
    let mut index = 0;
    let mut table_index = [0; Table::ALL.len()];
    feed(&mut |table, key, bytes| {
        if table == Table::Meta && key == GLOBAL_INDEX_KEY {
            index = decode_index(key, bytes)?;
        } else if let Some(name) = key
            .strip_prefix(TABLE_INDEX_PREFIX)
            .filter(|_| table == Table::Meta)
        {
            if let Some(t) = Table::ALL.iter().find(|t| t.name() == name) {
                table_index[*t as usize] = decode_index(key, bytes)?;
            }
        } else {
            state.load_row(table, key, bytes)?;
        }
        Ok(())
    })?;
    state.finish_load(index, table_index);
    state.build_indexes()?;
    Ok(state)
}

enum Applied<T> {
    Unchanged(T),
    Queued(T),
}

fn decode_index(key: &str, bytes: &[u8]) -> Result<u64, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table: Table::Meta.name(),
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
