//! Typed reads over a state (snapshots and write transactions share them),
//! and the snapshot: one consistent view of the durable state that can
//! record what it read, for blocking queries.

use std::sync::{Arc, Mutex};

use super::state::MemState;
use super::{StoreError, Stored, Table, WatchKey};

/// Typed reads, shared by snapshots and write transactions.
pub trait Reads {
    #[doc(hidden)]
    fn state(&self) -> &MemState;

    /// Notes that the reader depends on `key` (recording snapshots only).
    #[doc(hidden)]
    fn record(&self, _key: impl FnOnce() -> WatchKey) {}

    fn get<T: Stored>(&self, table: Table, key: &str) -> Result<Option<T>, StoreError> {
        self.record(|| WatchKey::Key(table, key.into()));
        let state = self.state();
        match state.cell(table, key) {
            Some(cell) => cell.value(table, key, state.schema(table)).map(Some),
            None => Ok(None),
        }
    }

    /// Every row whose key starts with `prefix`, in key order.
    fn scan<T: Stored>(&self, table: Table, prefix: &str) -> Result<Vec<T>, StoreError> {
        self.record(|| WatchKey::Table(table));
        let state = self.state();
        let schema = state.schema(table);
        state
            .range(table, prefix)
            .map(|(key, cell)| cell.value(table, key, schema))
            .collect()
    }

    /// The keys of the rows whose key starts with `prefix`, in order.
    fn keys(&self, table: Table, prefix: &str) -> Vec<String> {
        self.record(|| WatchKey::Table(table));
        self.state()
            .range(table, prefix)
            .map(|(key, _)| key.to_string())
            .collect()
    }

    /// The rows filed under `value` in the table's index `index`, in key
    /// order; costs what it returns.
    fn lookup<T: Stored>(
        &self,
        table: Table,
        index: &'static str,
        value: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.record(|| WatchKey::Index(table, index, value.into()));
        let state = self.state();
        let schema = state.schema(table);
        state
            .lookup(table, index, value)?
            .map(|key| match state.cell(table, key) {
                Some(cell) => cell.value(table, key, schema),
                None => Err(StoreError::Backend(format!(
                    "index {index} of {} names missing row {key}",
                    table.name()
                ))),
            })
            .collect()
    }

    /// Like [`Reads::lookup`], with each row's primary key.
    fn lookup_keyed<T: Stored>(
        &self,
        table: Table,
        index: &'static str,
        value: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.record(|| WatchKey::Index(table, index, value.into()));
        let state = self.state();
        let schema = state.schema(table);
        state
            .lookup(table, index, value)?
            .map(|key| match state.cell(table, key) {
                Some(cell) => Ok((key.to_owned(), cell.value(table, key, schema)?)),
                None => Err(StoreError::Backend(format!(
                    "index {index} of {} names missing row {key}",
                    table.name()
                ))),
            })
            .collect()
    }

    /// Every row whose key starts with `prefix`, with its key, in key order.
    fn scan_keyed<T: Stored>(
        &self,
        table: Table,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.record(|| WatchKey::Table(table));
        let state = self.state();
        let schema = state.schema(table);
        state
            .range(table, prefix)
            .map(|(key, cell)| Ok((key.to_string(), cell.value(table, key, schema)?)))
            .collect()
    }

    /// The values the table's index `index` holds, in order (for an index
    /// by name: the distinct names).
    fn index_values(&self, table: Table, index: &'static str) -> Result<Vec<String>, StoreError> {
        self.record(|| WatchKey::Values(table, index));
        Ok(self
            .state()
            .index_values(table, index)?
            .map(|v| v.to_string())
            .collect())
    }

    /// The index of the last change to `table` (0 if never written).
    fn table_index(&self, table: Table) -> Result<u64, StoreError> {
        self.record(|| WatchKey::Table(table));
        Ok(self.state().table_index(table))
    }

    /// The index at which `key` last changed (not recorded: for callers
    /// that track changes themselves).
    fn changed_at(&self, key: &WatchKey) -> u64 {
        self.state().key_index(key)
    }

    /// How many rows `table` holds.
    fn count(&self, table: Table) -> usize {
        self.state().len(table)
    }
}

/// A consistent read view: the durable state at one index.
pub struct Snapshot {
    pub(super) state: Arc<MemState>,
    pub(super) recorded: Option<Mutex<Vec<WatchKey>>>,
}

impl Snapshot {
    /// The index of the state this snapshot shows.
    pub fn state_index(&self) -> u64 {
        self.state.index
    }

    /// What was read through this snapshot (recording snapshots only).
    pub fn watch_set(&self) -> Vec<WatchKey> {
        let Some(recorded) = &self.recorded else {
            return Vec::new();
        };
        let mut keys = recorded.lock().unwrap_or_else(|e| e.into_inner()).clone();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The index at which what was read through this snapshot last
    /// changed: the `X-Consul-Index` of a query that read only that.
    pub fn watch_index(&self) -> u64 {
        self.watch_set()
            .iter()
            .map(|key| self.state.key_index(key))
            .max()
            .unwrap_or(self.state.index)
    }
}

impl Reads for Snapshot {
    fn state(&self) -> &MemState {
        &self.state
    }

    fn record(&self, key: impl FnOnce() -> WatchKey) {
        if let Some(recorded) = &self.recorded {
            recorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(key());
        }
    }
}
