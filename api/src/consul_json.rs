//! Request bodies decoded the way Consul decodes them.
//!
//! Consul reads request bodies with Go's `encoding/json`, which matches field
//! names case-insensitively (an exact match wins), and it also accepts the
//! snake_case spellings its `TranslateKeys` lists (`tagged_addresses`,
//! `deregister_critical_service_after`, `service_id`, ...). Client libraries
//! rely on both. [`normalize`] rewrites every key of a JSON value onto its
//! canonical CamelCase name from a [`Schema`], refusing unknown keys with
//! their path; serde then decodes the result as usual ([`from_slice`]).
//!
//! The matching rule ([`key_match`]) is shared with config entries
//! (`config_entry::keys`): a key names a field when it is spelled exactly
//! like it, or equal to it ignoring ASCII/Unicode case and underscores, or
//! equal to one of the field's aliases the same way. Free-form maps (`Meta`,
//! `NodeMeta`, `Header`, `Proxy.Config`, the names in `TaggedAddresses`) are
//! user data: their keys are kept exactly as sent.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The fields one JSON object may carry.
pub struct Schema {
    pub fields: &'static [Field],
    /// Whether keys naming no field are kept as sent (for serde to ignore)
    /// instead of refused.
    pub open: bool,
}

impl Schema {
    /// A schema refusing unknown keys.
    pub const fn closed(fields: &'static [Field]) -> Schema {
        Schema {
            fields,
            open: false,
        }
    }

    /// A schema keeping unknown keys, for bodies whose type ignores them.
    pub const fn open(fields: &'static [Field]) -> Schema {
        Schema { fields, open: true }
    }
}

pub struct Field {
    /// The canonical spelling, as serde expects it.
    pub name: &'static str,
    /// Other names meaning the same field (matched like the name itself).
    pub aliases: &'static [&'static str],
    pub shape: Shape,
}

/// What a field's value holds, as far as key normalization cares.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A scalar or a list of scalars: serde checks it.
    Value,
    /// An object with these fields.
    Object(&'static Schema),
    /// A list of objects with these fields.
    ListOf(&'static Schema),
    /// A free-form map (`Meta`, `Header`, `Config`): kept verbatim.
    Map,
    /// A map whose keys are user data and whose values are objects with these
    /// fields (`TaggedAddresses`).
    MapOf(&'static Schema),
}

pub const fn field(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        aliases: &[],
        shape,
    }
}

/// A scalar field (string, number, flag, list of strings).
pub const fn value(name: &'static str) -> Field {
    field(name, Shape::Value)
}

pub const fn with_aliases(
    name: &'static str,
    aliases: &'static [&'static str],
    shape: Shape,
) -> Field {
    Field {
        name,
        aliases,
        shape,
    }
}

/// A request body type with its schema.
pub trait ConsulBody: DeserializeOwned {
    const SCHEMA: &'static Schema;
}

/// Why a body was refused. `Display` is the text after the API's
/// `Body decoding failed: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("{0}")]
    Syntax(String),
    /// `path` is the key's location with canonical parent names and the key
    /// as sent (`Checks[1].Prot`); `expected` lists the accepted names.
    #[error("unknown field `{path}`, expected one of {expected}")]
    UnknownField { path: String, expected: String },
    #[error("{path} must be {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    /// serde's own complaint after normalization (a wrong scalar type, a
    /// missing required field), after the field's path (`Check.TTL: ...`).
    #[error("{0}")]
    Invalid(String),
}

/// How a key matched a field; an exact spelling beats any other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact,
    Folded,
}

/// `peer_name`, `PeerName` and `PEERNAME` all become `peername`.
pub fn comparable_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether `key` names the field `name` (with `aliases`), and how.
pub fn key_match(name: &str, aliases: &[&str], key: &str) -> Option<Match> {
    if key == name {
        return Some(Match::Exact);
    }
    let comparable = comparable_key(key);
    let folded = comparable == comparable_key(name)
        || aliases
            .iter()
            .any(|alias| comparable_key(alias) == comparable);
    folded.then_some(Match::Folded)
}

/// The field `key` names in `fields`; an exact spelling wins.
fn find_field<'a>(fields: &'a [Field], key: &str) -> Option<(&'a Field, Match)> {
    if let Some(field) = fields.iter().find(|field| field.name == key) {
        return Some((field, Match::Exact));
    }
    fields
        .iter()
        .find_map(|field| key_match(field.name, field.aliases, key).map(|matched| (field, matched)))
}

/// Rewrites the keys of `value`, an object described by `schema`, to their
/// canonical names. `null` values are dropped (to Go, `null` leaves a field
/// unset). When one object names a field twice, an exact spelling wins, and
/// otherwise the last one does, as with Go.
pub fn normalize(value: Value, schema: &'static Schema) -> Result<Value, DecodeError> {
    normalize_value(value, Shape::Object(schema), "")
}

fn normalize_object(
    object: Map<String, Value>,
    schema: &Schema,
    path: &str,
) -> Result<Map<String, Value>, DecodeError> {
    let mut normalized = Map::with_capacity(object.len());
    // Canonical names given with their exact spelling, which later spellings do not replace.
    let mut exact: Vec<&'static str> = Vec::new();
    for (key, inner) in object {
        let Some((field, matched)) = find_field(schema.fields, &key) else {
            if schema.open {
                normalized.insert(key, inner);
                continue;
            }
            return Err(DecodeError::UnknownField {
                path: child_path(path, &key),
                expected: expected_names(schema.fields),
            });
        };
        if exact.contains(&field.name) {
            continue;
        }
        if matched == Match::Exact {
            exact.push(field.name);
        }
        if inner.is_null() {
            normalized.remove(field.name);
            continue;
        }
        let inner = normalize_value(inner, field.shape, &child_path(path, field.name))?;
        normalized.insert(field.name.to_owned(), inner);
    }
    Ok(normalized)
}

fn normalize_value(value: Value, shape: Shape, path: &str) -> Result<Value, DecodeError> {
    let wrong_type = |expected: &'static str| DecodeError::WrongType {
        path: if path.is_empty() {
            "the body".to_owned()
        } else {
            path.to_owned()
        },
        expected,
    };
    match shape {
        Shape::Value => Ok(value),
        Shape::Map => match value {
            Value::Object(_) => Ok(value),
            _ => Err(wrong_type("an object")),
        },
        Shape::Object(schema) => match value {
            Value::Object(object) => Ok(Value::Object(normalize_object(object, schema, path)?)),
            _ => Err(wrong_type("an object")),
        },
        Shape::ListOf(schema) => {
            let Value::Array(items) = value else {
                return Err(wrong_type("a list of objects"));
            };
            let mut normalized = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let item_path = format!("{path}[{index}]");
                normalized.push(normalize_value(item, Shape::Object(schema), &item_path)?);
            }
            Ok(Value::Array(normalized))
        }
        Shape::MapOf(schema) => {
            let Value::Object(entries) = value else {
                return Err(wrong_type("an object"));
            };
            let mut normalized = Map::with_capacity(entries.len());
            for (key, item) in entries {
                let item_path = child_path(path, &key);
                let item = normalize_value(item, Shape::Object(schema), &item_path)?;
                normalized.insert(key, item);
            }
            Ok(Value::Object(normalized))
        }
    }
}

fn expected_names(fields: &[Field]) -> String {
    let names: Vec<String> = fields.iter().map(|f| format!("`{}`", f.name)).collect();
    names.join(", ")
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Normalizes `value` with `T`'s schema, then decodes it.
pub fn from_value<T: ConsulBody>(value: Value) -> Result<T, DecodeError> {
    let normalized = normalize(value, T::SCHEMA)?;
    serde_path_to_error::deserialize(normalized).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        if path == "." {
            DecodeError::Invalid(error.to_string())
        } else {
            DecodeError::Invalid(format!("{path}: {error}"))
        }
    })
}

/// Parses a request body and decodes it like Consul would.
pub fn from_slice<T: ConsulBody>(bytes: &[u8]) -> Result<T, DecodeError> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    from_value(value)
}

#[cfg(test)]
mod tests;
