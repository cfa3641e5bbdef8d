//! The materialized state every read is answered from: each table a
//! persistent ordered map (structural sharing, so a snapshot is one pointer
//! copy and a write copies only the path it changes), secondary indexes
//! kept beside it, and the index at which each watched key last changed.
//!
//! Values are kept decoded: a write hands over the typed value it stored, a
//! value loaded at start-up is decoded on its first typed read (or at once
//! when its table has a schema), and either way never re-parsed per read.

use std::borrow::Cow;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use imbl::{HashMap, OrdMap, OrdSet};

use super::schema::{Decoded, Schema, Stored, TableSchema};
use super::watch::WatchKey;
use super::{StoreError, Table};

/// One stored value: decoded once, shared by every snapshot that holds it.
pub(crate) struct Cell {
    /// The bytes it was loaded from (start-up), until they are decoded.
    raw: Option<Box<[u8]>>,
    typed: OnceLock<Decoded>,
    /// The index of the write that stored it (0: loaded at start-up).
    changed: u64,
}

impl Cell {
    pub(crate) fn typed(value: Decoded, changed: u64) -> Arc<Cell> {
        let typed = OnceLock::new();
        let _ = typed.set(value);
        Arc::new(Cell {
            raw: None,
            typed,
            changed,
        })
    }

    pub(crate) fn loaded(bytes: Vec<u8>, changed: u64) -> Arc<Cell> {
        Arc::new(Cell {
            raw: Some(bytes.into_boxed_slice()),
            typed: OnceLock::new(),
            changed,
        })
    }

    /// The value as a `T`: a clone of the decoded value, or decoded from
    /// the JSON the first time (or when read as another type than stored).
    pub(crate) fn value<T: Stored>(
        &self,
        table: Table,
        key: &str,
        schema: Option<&TableSchema>,
    ) -> Result<T, StoreError> {
        let typed = self.typed.get();
        if let Some(value) = typed.and_then(|d| d.downcast_ref::<T>()) {
            return Ok(value.clone());
        }
        let wrong_type = || StoreError::WrongType {
            table: table.name(),
            key: key.to_owned(),
            wanted: std::any::type_name::<T>(),
        };
        let bytes: Cow<'_, [u8]> = match (&self.raw, typed, schema) {
            (Some(raw), _, _) => Cow::Borrowed(raw),
            (None, Some(decoded), Some(schema)) => {
                Cow::Owned((schema.encode)(decoded.as_ref()).ok_or_else(wrong_type)?)
            }
            _ => return Err(wrong_type()),
        };
        let value: T = serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
            table: table.name(),
            key: key.to_owned(),
            source,
        })?;
        if typed.is_none() {
            let _ = self.typed.set(Arc::new(value.clone()));
        }
        Ok(value)
    }

    /// The decoded value, decoding the loaded bytes with `decode` if needed.
    pub(crate) fn decoded_with(
        &self,
        decode: fn(&[u8]) -> Result<Decoded, serde_json::Error>,
        table: Table,
        key: &str,
    ) -> Result<&Decoded, StoreError> {
        if let Some(decoded) = self.typed.get() {
            return Ok(decoded);
        }
        let raw = self.raw.as_deref().unwrap_or_default();
        let decoded = decode(raw).map_err(|source| StoreError::Corrupt {
            table: table.name(),
            key: key.to_owned(),
            source,
        })?;
        let _ = self.typed.set(decoded);
        Ok(self.typed.get().expect("set just above"))
    }
}

/// Secondary-index entries are `<value>\0<primary key>`, so the rows of one
/// value are one contiguous range.
const INDEX_SEPARATOR: char = '\0';

fn index_entry(value: &str, key: &str) -> Arc<str> {
    let mut entry = String::with_capacity(value.len() + 1 + key.len());
    entry.push_str(value);
    entry.push(INDEX_SEPARATOR);
    entry.push_str(key);
    entry.into()
}

#[derive(Clone, Copy, Default)]
struct ValueState {
    rows: usize,
    changed: u64,
}

#[derive(Clone, Default)]
struct TableState {
    rows: OrdMap<Arc<str>, Arc<Cell>>,
    /// One ordered set per index the table's schema names, in schema order.
    indexes: Vec<OrdSet<Arc<str>>>,
    /// Per index: each value it holds, how many rows it files there, and
    /// the index at which that value's rows last changed (0: not since
    /// start-up).
    counts: Vec<OrdMap<Arc<str>, ValueState>>,
}

/// Everything the store holds at one index. Cloning is cheap (a few
/// reference counts); a clone is a consistent snapshot.
#[derive(Clone)]
pub struct MemState {
    tables: Vec<TableState>,
    schema: Arc<Schema>,
    /// The index of the last committed change.
    pub(crate) index: u64,
    table_index: [u64; Table::ALL.len()],
    /// Where keys and index values that no longer exist (tombstones) and
    /// the sets of index values last changed. Live rows and values carry
    /// their own; before start-up, the table's index then stands in, which
    /// is never lower.
    changed: HashMap<WatchKey, u64>,
    loaded_table_index: [u64; Table::ALL.len()],
}

impl MemState {
    pub(crate) fn empty(schema: Arc<Schema>) -> MemState {
        MemState {
            tables: vec![TableState::default(); Table::ALL.len()],
            schema,
            index: 0,
            table_index: [0; Table::ALL.len()],
            changed: HashMap::new(),
            loaded_table_index: [0; Table::ALL.len()],
        }
    }

    /// Marks the loaded rows as the state at `index`, with the table indexes
    /// read from the log.
    pub(crate) fn finish_load(&mut self, index: u64, table_index: [u64; Table::ALL.len()]) {
        self.index = index;
        self.table_index = table_index;
        self.loaded_table_index = table_index;
    }

    pub(crate) fn table_index(&self, table: Table) -> u64 {
        self.table_index[table as usize]
    }

    /// The index at which the result behind `key` last changed.
    pub(crate) fn key_index(&self, key: &WatchKey) -> u64 {
        let live = match key {
            WatchKey::Table(table) => return self.table_index(*table),
            WatchKey::Key(table, row) => self.cell(*table, row).map(|cell| cell.changed),
            WatchKey::Index(table, index, value) => self
                .schema
                .index_position(*table, index)
                .and_then(|position| self.tables[*table as usize].counts.get(position))
                .and_then(|counts| counts.get(&**value))
                .map(|state| state.changed),
            WatchKey::Values(_, _) => None,
        };
        let loaded = self.loaded_table_index[key.table() as usize];
        match live {
            Some(0) => loaded,
            Some(changed) => changed,
            None => self.changed.get(key).copied().unwrap_or(loaded),
        }
    }

    pub(crate) fn schema(&self, table: Table) -> Option<&TableSchema> {
        self.schema.table_schema(table)
    }

    pub(crate) fn cell(&self, table: Table, key: &str) -> Option<&Arc<Cell>> {
        self.tables[table as usize].rows.get(key)
    }

    /// Rows whose key starts with `prefix`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Arc<Cell>)> + 'a {
        self.tables[table as usize]
            .rows
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }

    /// Where the schema keeps `table`'s index `index`.
    fn position(&self, table: Table, index: &str) -> Result<usize, StoreError> {
        self.schema
            .index_position(table, index)
            .ok_or_else(|| StoreError::UnknownIndex {
                table: table.name(),
                index: index.to_owned(),
            })
    }

    /// Primary keys of the rows whose index `index` holds `value`.
    pub(crate) fn lookup<'a>(
        &'a self,
        table: Table,
        index: &str,
        value: &str,
    ) -> Result<impl Iterator<Item = &'a str> + 'a, StoreError> {
        let position = self.position(table, index)?;
        let prefix: Arc<str> = index_entry(value, "");
        let start = prefix.len();
        // Built for every table with a schema at open.
        let set = &self.tables[table as usize].indexes[position];
        Ok(set
            .range::<_, str>((Bound::Included(&*prefix), Bound::Unbounded))
            .take_while(move |entry| entry.starts_with(&*prefix))
            .map(move |entry| &entry[start..]))
    }

    /// The values index `index` holds, in order; costs what it returns.
    pub(crate) fn index_values(
        &self,
        table: Table,
        index: &str,
    ) -> Result<impl Iterator<Item = &Arc<str>> + '_, StoreError> {
        let position = self.position(table, index)?;
        Ok(self.tables[table as usize]
            .counts
            .get(position)
            .into_iter()
            .flat_map(|counts| counts.keys()))
    }

    /// Index values `cell` files under for each of `table`'s indexes.
    fn values_of(
        &self,
        table: Table,
        key: &str,
        cell: &Cell,
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let Some(table_schema) = self.schema.table_schema(table) else {
            return Ok(Vec::new());
        };
        let decoded = cell.decoded_with(table_schema.decode, table, key)?;
        Ok(table_schema
            .indexes
            .iter()
            .map(|index| (index.extract)(decoded.as_ref()))
            .collect())
    }

    /// Inserts or replaces a row, keeping the indexes; returns the watch
    /// keys the change touches.
    pub(crate) fn put(
        &mut self,
        table: Table,
        key: &str,
        cell: Arc<Cell>,
        index: u64,
        touched: &mut Vec<WatchKey>,
    ) -> Result<(), StoreError> {
        let new_values = self.values_of(table, key, &cell)?;
        let key: Arc<str> = key.into();
        let old = self.tables[table as usize].rows.insert(key.clone(), cell);
        let old_values = match &old {
            Some(old) => self.values_of(table, &key, old)?,
            None => Vec::new(),
        };
        self.reindex(table, &key, &old_values, &new_values, index, touched);
        let watch = WatchKey::Key(table, key);
        if old.is_none() {
            self.forget_tombstone(&watch);
        }
        touched.push(watch);
        Ok(())
    }

    fn forget_tombstone(&mut self, key: &WatchKey) {
        if self.changed.contains_key(key) {
            self.changed.remove(key);
        }
    }

    /// Removes a row; returns whether it existed.
    pub(crate) fn delete(
        &mut self,
        table: Table,
        key: &str,
        index: u64,
        touched: &mut Vec<WatchKey>,
    ) -> Result<bool, StoreError> {
        let Some((key, old)) = self.tables[table as usize].rows.remove_with_key(key) else {
            return Ok(false);
        };
        let old_values = self.values_of(table, &key, &old)?;
        self.reindex(table, &key, &old_values, &[], index, touched);
        let watch = WatchKey::Key(table, key);
        self.changed.insert(watch.clone(), index);
        touched.push(watch);
        Ok(true)
    }

    fn reindex(
        &mut self,
        table: Table,
        key: &Arc<str>,
        old_values: &[Vec<String>],
        new_values: &[Vec<String>],
        index: u64,
        touched: &mut Vec<WatchKey>,
    ) {
        let Some(table_schema) = self.schema.table_schema(table) else {
            return;
        };
        let mut tombstones = Vec::new();
        let mut revived = Vec::new();
        let names: Vec<&'static str> = table_schema.indexes.iter().map(|i| i.name).collect();
        let state = &mut self.tables[table as usize];
        if state.indexes.len() < names.len() {
            state.indexes.resize(names.len(), OrdSet::new());
            state.counts.resize(names.len(), OrdMap::new());
        }
        let none: Vec<String> = Vec::new();
        for (position, name) in names.into_iter().enumerate() {
            let old = old_values.get(position).unwrap_or(&none);
            let new = new_values.get(position).unwrap_or(&none);
            let set = &mut state.indexes[position];
            let counts = &mut state.counts[position];
            let mut values_changed = false;
            for value in old {
                if !new.contains(value) {
                    set.remove(&*index_entry(value, key));
                }
            }
            for value in new {
                if !old.contains(value) {
                    set.insert(index_entry(value, key));
                }
            }
            // The old and new values' results both change (a row moved
            // from one to the other, or changed within one).
            for value in old.iter().chain(new.iter().filter(|v| !old.contains(v))) {
                let mut state = counts.get(value.as_str()).copied().unwrap_or_default();
                let was_empty = state.rows == 0;
                if !old.contains(value) {
                    state.rows += 1;
                } else if !new.contains(value) {
                    state.rows = state.rows.saturating_sub(1);
                }
                state.changed = index;
                let watch = WatchKey::Index(table, name, value.as_str().into());
                if state.rows == 0 {
                    counts.remove(value.as_str());
                    values_changed = true;
                    tombstones.push(watch.clone());
                } else {
                    if was_empty {
                        values_changed = true;
                        revived.push(watch.clone());
                    }
                    counts.insert(value.as_str().into(), state);
                }
                touched.push(watch);
            }
            if values_changed {
                touched.push(WatchKey::Values(table, name));
            }
        }
        for watch in tombstones {
            self.changed.insert(watch, index);
        }
        for watch in revived {
            self.forget_tombstone(&watch);
        }
    }

    /// Builds every index of the schema from the rows (start-up).
    pub(crate) fn build_indexes(&mut self) -> Result<(), StoreError> {
        for table in Table::ALL {
            let Some(table_schema) = self.schema.table_schema(table) else {
                continue;
            };
            let mut sets = vec![OrdSet::new(); table_schema.indexes.len()];
            let mut counts: Vec<OrdMap<Arc<str>, ValueState>> =
                vec![OrdMap::new(); table_schema.indexes.len()];
            for (key, cell) in self.tables[table as usize].rows.iter() {
                let decoded = cell.decoded_with(table_schema.decode, table, key)?;
                for (position, index) in table_schema.indexes.iter().enumerate() {
                    for value in (index.extract)(decoded.as_ref()) {
                        sets[position].insert(index_entry(&value, key));
                        counts[position]
                            .entry(value.as_str().into())
                            .or_default()
                            .rows += 1;
                    }
                }
            }
            self.tables[table as usize].indexes = sets;
            self.tables[table as usize].counts = counts;
        }
        Ok(())
    }

    /// Records that the keys in `touched` (and their tables) changed at
    /// `index`.
    pub(crate) fn stamp(&mut self, index: u64, touched: &[WatchKey]) {
        for key in touched {
            match key {
                WatchKey::Table(table) => self.table_index[*table as usize] = index,
                // Rows and index values carry their own index.
                WatchKey::Key(table, _) | WatchKey::Index(table, _, _) => {
                    self.table_index[*table as usize] = index;
                }
                WatchKey::Values(table, _) => {
                    self.table_index[*table as usize] = index;
                    self.changed.insert(key.clone(), index);
                }
            }
        }
        self.index = index;
    }

    /// Inserts a row loaded from the log (indexes are built afterwards):
    /// decoded at once when its table has a schema, kept as JSON otherwise.
    pub(crate) fn load_row(
        &mut self,
        table: Table,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let cell = self.cell_from_bytes(table, key, bytes, 0)?;
        self.tables[table as usize].rows.insert(key.into(), cell);
        Ok(())
    }

    /// A stored row's cell, decoded at once when its table has a schema.
    pub(crate) fn cell_from_bytes(
        &self,
        table: Table,
        key: &str,
        bytes: &[u8],
        changed: u64,
    ) -> Result<Arc<Cell>, StoreError> {
        Ok(match self.schema.table_schema(table) {
            Some(schema) => Cell::typed(
                (schema.decode)(bytes).map_err(|source| StoreError::Corrupt {
                    table: table.name(),
                    key: key.to_owned(),
                    source,
                })?,
                changed,
            ),
            None => Cell::loaded(bytes.to_vec(), changed),
        })
    }

    pub(crate) fn len(&self, table: Table) -> usize {
        self.tables[table as usize].rows.len()
    }
}
