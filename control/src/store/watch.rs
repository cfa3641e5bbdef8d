//! Fine-grained watches, like Consul's watch sets: a blocking query records
//! what it read (a table, a row, or one value of a secondary index) and
//! waits only on those; a commit wakes only the queries that read
//! something it changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Table;

/// Something a read depended on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKey {
    /// The whole table (scans, table indexes).
    Table(Table),
    /// One row, by primary key.
    Key(Table, Arc<str>),
    /// The rows filed under one value of a secondary index.
    Index(Table, &'static str, Arc<str>),
    /// Which values a secondary index holds (changes only when a value
    /// gets its first row or loses its last).
    Values(Table, &'static str),
}

impl WatchKey {
    pub fn table(&self) -> Table {
        match self {
            WatchKey::Table(t)
            | WatchKey::Key(t, _)
            | WatchKey::Index(t, _, _)
            | WatchKey::Values(t, _) => *t,
        }
    }
}

/// The parked queries, by what they wait on. A slot lives while someone
/// waits on it.
#[derive(Default)]
pub(crate) struct Watches {
    slots: Mutex<HashMap<WatchKey, Arc<Notify>>>,
}

impl Watches {
    /// Wakes everyone waiting on one of `keys` or on a table they belong to.
    pub(crate) fn notify(&self, keys: &[WatchKey]) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.is_empty() {
            return;
        }
        let mut tables = [false; Table::ALL.len()];
        for key in keys {
            tables[key.table() as usize] = true;
            if let Some(slot) = slots.get(key) {
                slot.notify_waiters();
            }
        }
        for table in Table::ALL {
            if tables[table as usize] {
                if let Some(slot) = slots.get(&WatchKey::Table(table)) {
                    slot.notify_waiters();
                }
            }
        }
    }

    /// Wakes every parked query (the whole state was replaced).
    pub(crate) fn notify_all(&self) {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.values() {
            slot.notify_waiters();
        }
    }

    /// One slot per key (shared with other waiters on the same key).
    pub(crate) fn register(self: &Arc<Self>, keys: &[WatchKey]) -> Registration {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let notifies = keys
            .iter()
            .map(|key| (key.clone(), slots.entry(key.clone()).or_default().clone()))
            .collect();
        Registration {
            watches: self.clone(),
            notifies,
        }
    }

    #[cfg(test)]
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

pub(crate) struct Registration {
    watches: Arc<Watches>,
    pub(crate) notifies: Vec<(WatchKey, Arc<Notify>)>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut slots = self.watches.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (key, notify) in self.notifies.drain(..) {
            // The map's reference and ours: nobody else waits here.
            if Arc::strong_count(&notify) == 2 {
                slots.remove(&key);
            }
        }
    }
}
