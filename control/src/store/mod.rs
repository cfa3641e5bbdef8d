//! The control plane's state: keyed tables, transactions, a monotonic index
//! and a watch on it.
//!
//! Everything above this module sees only [`Store`], [`Snapshot`] and [`Txn`]:
//! typed reads and writes over named tables. The backend behind them is a
//! small trait ([`Backend`]) so that a distributed backend (etcd) can replace
//! the embedded one (redb) without touching callers.
//!
//! Every committed write transaction that changes something bumps the global
//! index by one and records it as the index of each table it touched; blocking
//! queries compare those indexes and wait on [`Store::subscribe`].

pub mod private;
mod redb_backend;

use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;

pub use redb_backend::RedbBackend;

/// The tables the control plane keeps. Keys are strings, values JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Meta,
        Table::Services,
        Table::Checks,
        Table::ConfigEntries,
        Table::Peerings,
        Table::Imported,
        Table::AuthGroups,
        Table::Nodes,
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
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
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
}

/// A consistent read view of the backend.
pub trait ReadTxn: Send {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
}

/// A read-write transaction; nothing is visible to others until `commit`.
pub trait WriteTxn: ReadTxn {
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError>;
    /// Makes the transaction durable; returns only once it is.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// What a storage engine must provide.
pub trait Backend: Send + Sync + 'static {
    fn begin_read(&self) -> Result<Box<dyn ReadTxn>, StoreError>;
    /// Write transactions are serialized by the backend.
    fn begin_write(&self) -> Result<Box<dyn WriteTxn>, StoreError>;
}

const GLOBAL_INDEX_KEY: &str = "index";

fn table_index_key(table: Table) -> String {
    format!("index/{}", table.name())
}

/// Handle to the state; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn Backend>,
    index: watch::Sender<u64>,
}

impl Store {
    /// Opens (creating if needed) a crash-safe store file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::with_backend(Box::new(RedbBackend::open(path)?))
    }

    /// A store that lives only in memory (for `--dev`).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::with_backend(Box::new(RedbBackend::in_memory()?))
    }

    pub fn with_backend(backend: Box<dyn Backend>) -> Result<Store, StoreError> {
        let current = read_index(backend.begin_read()?.as_ref(), GLOBAL_INDEX_KEY)?;
        let (index, _) = watch::channel(current);
        Ok(Store {
            inner: Arc::new(Inner { backend, index }),
        })
    }

    /// The index of the last committed change.
    pub fn index(&self) -> u64 {
        *self.inner.index.borrow()
    }

    /// Wakes whenever a write commits a change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.index.subscribe()
    }

    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            txn: self.inner.backend.begin_read()?,
        })
    }

    /// Runs `f` in one write transaction on a blocking thread (commits wait
    /// for the disk). If `f` fails, nothing it wrote is kept.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Txn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_blocking(f))
            .await
            .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// The synchronous form of [`Store::write`], for start-up code.
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Txn) -> Result<T, E>,
        E: From<StoreError>,
    {
        let raw = self.inner.backend.begin_write()?;
        let previous = read_index(raw.as_ref(), GLOBAL_INDEX_KEY)?;
        let mut txn = Txn {
            raw,
            index: previous + 1,
            touched: 0,
        };
        let value = f(&mut txn)?;
        if txn.touched == 0 {
            // Nothing changed: dropping the transaction aborts it and the
            // index stays where it is, so blocked readers are not woken.
            return Ok(value);
        }
        let new_index = txn.index;
        txn.stamp_indexes()?;
        txn.raw.commit()?;
        // Writers commit one at a time but may publish out of order; never
        // let the published index go backwards.
        self.inner.index.send_if_modified(|current| {
            let moved = new_index > *current;
            if moved {
                *current = new_index;
            }
            moved
        });
        Ok(value)
    }
}

fn read_index(txn: &dyn ReadTxn, key: &str) -> Result<u64, StoreError> {
    match txn.get(Table::Meta, key)? {
        Some(bytes) => decode(Table::Meta, key, &bytes),
        None => Ok(0),
    }
}

fn decode<T: DeserializeOwned>(table: Table, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        table: table.name(),
        key: key.to_owned(),
        source,
    })
}

/// Typed reads, shared by snapshots and write transactions.
pub trait Reads {
    fn raw(&self) -> &dyn ReadTxn;

    fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError> {
        match self.raw().get(table, key)? {
            Some(bytes) => decode(table, key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(&self, table: Table, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.raw()
            .scan(table, prefix)?
            .into_iter()
            .map(|(key, bytes)| decode(table, &key, &bytes))
            .collect()
    }

    /// The index of the last change to `table` (0 if never written).
    fn table_index(&self, table: Table) -> Result<u64, StoreError> {
        read_index(self.raw(), &table_index_key(table))
    }
}

pub struct Snapshot {
    txn: Box<dyn ReadTxn>,
}

impl Reads for Snapshot {
    fn raw(&self) -> &dyn ReadTxn {
        self.txn.as_ref()
    }
}

pub struct Txn {
    raw: Box<dyn WriteTxn>,
    index: u64,
    touched: u32,
}

impl Reads for Txn {
    fn raw(&self) -> &dyn ReadTxn {
        self.raw.as_ref()
    }
}

impl Txn {
    /// The index this transaction commits at; stamp it on records as their
    /// `ModifyIndex` (and `CreateIndex` when new).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn put<T: Serialize>(
        &mut self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Encode {
            table: table.name(),
            key: key.to_owned(),
            source,
        })?;
        self.raw.put(table, key, &bytes)?;
        self.touched |= table.bit();
        Ok(())
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        let existed = self.raw.delete(table, key)?;
        if existed {
            self.touched |= table.bit();
        }
        Ok(existed)
    }

    fn stamp_indexes(&mut self) -> Result<(), StoreError> {
        let index = serde_json::to_vec(&self.index).expect("u64 serializes");
        for table in Table::ALL {
            if self.touched & table.bit() != 0 {
                self.raw.put(Table::Meta, &table_index_key(table), &index)?;
            }
        }
        self.raw.put(Table::Meta, GLOBAL_INDEX_KEY, &index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_bump_the_index_and_only_touched_tables() {
        let store = Store::in_memory().unwrap();
        assert_eq!(store.index(), 0);
        store
            .write_blocking(|txn| txn.put(Table::Services, "web", &"v1"))
            .unwrap();
        assert_eq!(store.index(), 1);
        store
            .write_blocking(|txn| txn.put(Table::Checks, "c", &"v"))
            .unwrap();
        let snap = store.snapshot().unwrap();
        assert_eq!(snap.table_index(Table::Services).unwrap(), 1);
        assert_eq!(snap.table_index(Table::Checks).unwrap(), 2);
        assert_eq!(
            snap.get::<String>(Table::Services, "web").unwrap().unwrap(),
            "v1"
        );
    }

    #[test]
    fn failed_or_empty_transactions_change_nothing() {
        let store = Store::in_memory().unwrap();
        let result: Result<(), StoreError> = store.write_blocking(|txn| {
            txn.put(Table::Services, "web", &"v1")?;
            Err(StoreError::Backend("boom".into()))
        });
        assert!(result.is_err());
        store
            .write_blocking::<_, StoreError, _>(|_| Ok(()))
            .unwrap();
        assert_eq!(store.index(), 0);
        let snap = store.snapshot().unwrap();
        assert!(snap
            .get::<String>(Table::Services, "web")
            .unwrap()
            .is_none());
    }

    #[test]
    fn scan_honours_prefixes_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let store = Store::open(&path).unwrap();
            store
                .write_blocking(|txn| {
                    txn.put(Table::ConfigEntries, "a/1", &1)?;
                    txn.put(Table::ConfigEntries, "a/2", &2)?;
                    txn.put(Table::ConfigEntries, "b/1", &3)
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.index(), 1);
        let got: Vec<u32> = store
            .snapshot()
            .unwrap()
            .scan(Table::ConfigEntries, "a/")
            .unwrap();
        assert_eq!(got, vec![1, 2]);
    }
}
