//! A write transaction: a private copy of the newest state, changed in
//! place, plus the log records of what changed.

use serde::Serialize;

use super::log::Op;
use super::state::{Cell, MemState};
use super::{Reads, StoreError, Table, WatchKey};

/// A write transaction: a private copy of the newest state plus the log
/// records of what changed.
pub struct Txn {
    pub(super) state: MemState,
    pub(super) index: u64,
    pub(super) ops: Vec<Op>,
    pub(super) touched: Vec<WatchKey>,
}

impl Reads for Txn {
    fn state(&self) -> &MemState {
        &self.state
    }
}

impl Txn {
    /// The index this transaction commits at; stamp it on records as their
    /// `ModifyIndex` (and `CreateIndex` when new).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn put<T: Serialize + ?Sized>(
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
        // Typed tables keep the value decoded as their type (which also
        // checks that it is one); others keep the JSON, decoded on read.
        let cell = match self.state.schema(table) {
            Some(schema) => Cell::typed(
                (schema.decode)(&bytes).map_err(|source| StoreError::Encode {
                    table: table.name(),
                    key: key.to_owned(),
                    source,
                })?,
                self.index,
            ),
            None => Cell::loaded(bytes.clone(), self.index),
        };
        self.state
            .put(table, key, cell, self.index, &mut self.touched)?;
        self.ops.push(Op::Put {
            table,
            key: key.into(),
            bytes,
        });
        Ok(())
    }

    /// Deletes `key`; returns whether it existed.
    pub fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        let existed = self
            .state
            .delete(table, key, self.index, &mut self.touched)?;
        if existed {
            self.ops.push(Op::Delete {
                table,
                key: key.into(),
            });
        }
        Ok(existed)
    }
}
