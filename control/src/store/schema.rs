//! What the store knows of a table's values: their Rust type (so rows are
//! decoded once, at load or write) and the secondary indexes kept on them.
//!
//! The domain modules that own a table describe it (`catalog::schema`); the
//! store stays ignorant of their types.

use std::any::Any;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Table;

pub(crate) type Decoded = Arc<dyn Any + Send + Sync>;

/// A value a table can hold.
pub trait Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Stored for T {}

/// An index: its name, and the values a row is filed under.
pub type IndexFn<T> = (&'static str, fn(&T) -> Vec<String>);

type Extract = Box<dyn Fn(&(dyn Any + Send + Sync)) -> Vec<String> + Send + Sync>;

pub(crate) struct IndexDef {
    pub(crate) name: &'static str,
    pub(crate) extract: Extract,
}

pub(crate) struct TableSchema {
    pub(crate) decode: fn(&[u8]) -> Result<Decoded, serde_json::Error>,
    pub(crate) encode: fn(&(dyn Any + Send + Sync)) -> Option<Vec<u8>>,
    pub(crate) indexes: Vec<IndexDef>,
}

/// The typed tables and their indexes. Tables it does not name hold JSON
/// decoded on first read, with no secondary index.
#[derive(Default)]
pub struct Schema {
    tables: Vec<Option<TableSchema>>,
}

fn decode_as<T: Stored>(bytes: &[u8]) -> Result<Decoded, serde_json::Error> {
    Ok(Arc::new(serde_json::from_slice::<T>(bytes)?))
}

fn encode_as<T: Stored>(value: &(dyn Any + Send + Sync)) -> Option<Vec<u8>> {
    value
        .downcast_ref::<T>()
        .and_then(|v| serde_json::to_vec(v).ok())
}

impl Schema {
    pub fn new() -> Schema {
        Schema {
            tables: (0..Table::ALL.len()).map(|_| None).collect(),
        }
    }

    /// `table` holds `T`s, indexed by each `(name, values)`: a row is found
    /// under every value `values` returns for it.
    pub fn table<T: Stored>(mut self, table: Table, indexes: Vec<IndexFn<T>>) -> Schema {
        let indexes = indexes
            .into_iter()
            .map(|(name, values)| IndexDef {
                name,
                extract: Box::new(move |value: &(dyn Any + Send + Sync)| {
                    value.downcast_ref::<T>().map(values).unwrap_or_default()
                }),
            })
            .collect();
        if self.tables.len() < Table::ALL.len() {
            self.tables = (0..Table::ALL.len()).map(|_| None).collect();
        }
        self.tables[table as usize] = Some(TableSchema {
            decode: decode_as::<T>,
            encode: encode_as::<T>,
            indexes,
        });
        self
    }

    pub(crate) fn table_schema(&self, table: Table) -> Option<&TableSchema> {
        self.tables.get(table as usize).and_then(Option::as_ref)
    }

    pub(crate) fn index_position(&self, table: Table, index: &str) -> Option<usize> {
        self.table_schema(table)?
            .indexes
            .iter()
            .position(|i| i.name == index)
    }
}
