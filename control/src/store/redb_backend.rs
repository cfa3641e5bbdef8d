//! The embedded log: one redb database, one redb table per [`Table`].
//! Each group of writes is one redb transaction, made durable (fsync)
//! before it returns.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::log::{Log, Op, RowSink};
use super::{StoreError, Table};

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

/// redb's page cache. Reads are answered from the in-memory state, so redb
/// reads only at start-up and to find the pages a commit rewrites: a small
/// cache serves that, where redb's default (1 GiB) would grow the agent by
/// the size of the whole file.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

fn backend_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub struct RedbBackend {
    db: Database,
}

impl RedbBackend {
    /// Opens (or creates) the database file, readable by its owner only.
    pub fn open(path: &Path) -> Result<RedbBackend, StoreError> {
        let file = super::private::open_private_file(path).map_err(backend_err)?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_file(file)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        Self::init(db)
    }

    pub fn in_memory() -> Result<RedbBackend, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(backend_err)?;
        Self::init(db)
    }

    /// Creates every table up front so loading never meets a missing one.
    fn init(db: Database) -> Result<RedbBackend, StoreError> {
        let txn = db.begin_write().map_err(backend_err)?;
        for table in Table::ALL {
            txn.open_table(definition(table)).map_err(backend_err)?;
        }
        txn.commit().map_err(backend_err)?;
        Ok(RedbBackend { db })
    }
}

impl Log for RedbBackend {
    fn load(&mut self, row: &mut RowSink<'_>) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        for table in Table::ALL {
            let t = txn.open_table(definition(table)).map_err(backend_err)?;
            for item in t.iter().map_err(backend_err)? {
                let (key, value) = item.map_err(backend_err)?;
                row(table, key.value(), value.value())?;
            }
        }
        Ok(())
    }

    fn append(&mut self, ops: &[&Op]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(backend_err)?;
        {
            let mut tables: Vec<_> = Table::ALL
                .iter()
                .map(|t| txn.open_table(definition(*t)).map_err(backend_err))
                .collect::<Result<_, _>>()?;
            for op in ops {
                match op {
                    Op::Put { table, key, bytes } => {
                        tables[*table as usize]
                            .insert(&**key, bytes.as_slice())
                            .map_err(backend_err)?;
                    }
                    Op::Delete { table, key } => {
                        tables[*table as usize]
                            .remove(&**key)
                            .map_err(backend_err)?;
                    }
                }
            }
        }
        // redb's default durability is immediate: commit returns after fsync.
        txn.commit().map_err(backend_err)
    }
}
