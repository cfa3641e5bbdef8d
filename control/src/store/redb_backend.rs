//! The embedded backend: one redb database, one redb table per [`Table`].

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Backend, ReadTxn, StoreError, Table, WriteTxn};

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

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

    /// Creates every table up front so read transactions never meet a
    /// missing one.
    fn init(db: Database) -> Result<RedbBackend, StoreError> {
        let txn = db.begin_write().map_err(backend_err)?;
        for table in Table::ALL {
            txn.open_table(definition(table)).map_err(backend_err)?;
        }
        txn.commit().map_err(backend_err)?;
        Ok(RedbBackend { db })
    }
}

impl Backend for RedbBackend {
    fn begin_read(&self) -> Result<Box<dyn ReadTxn>, StoreError> {
        Ok(Box::new(RedbRead(
            self.db.begin_read().map_err(backend_err)?,
        )))
    }

    fn begin_write(&self) -> Result<Box<dyn WriteTxn>, StoreError> {
        let txn = self.db.begin_write().map_err(backend_err)?;
        Ok(Box::new(RedbWrite(txn)))
    }
}

struct RedbRead(redb::ReadTransaction);

fn get_from(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(table
        .get(key)
        .map_err(backend_err)?
        .map(|v| v.value().to_vec()))
}

fn scan_from(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    for item in table.range(prefix..).map_err(backend_err)? {
        let (key, value) = item.map_err(backend_err)?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        out.push((key.to_owned(), value.value().to_vec()));
    }
    Ok(out)
}

impl ReadTxn for RedbRead {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        get_from(
            &self.0.open_table(definition(table)).map_err(backend_err)?,
            key,
        )
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        scan_from(
            &self.0.open_table(definition(table)).map_err(backend_err)?,
            prefix,
        )
    }
}

struct RedbWrite(redb::WriteTransaction);

impl ReadTxn for RedbWrite {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        get_from(
            &self.0.open_table(definition(table)).map_err(backend_err)?,
            key,
        )
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        scan_from(
            &self.0.open_table(definition(table)).map_err(backend_err)?,
            prefix,
        )
    }
}

impl WriteTxn for RedbWrite {
    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut t = self.0.open_table(definition(table)).map_err(backend_err)?;
        t.insert(key, value).map_err(backend_err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<bool, StoreError> {
        let mut t = self.0.open_table(definition(table)).map_err(backend_err)?;
        let existed = t.remove(key).map_err(backend_err)?.is_some();
        Ok(existed)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        // redb's default durability is immediate: commit returns after fsync.
        self.0.commit().map_err(backend_err)
    }
}
