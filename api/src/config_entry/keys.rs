//! Key normalization: Consul accepts `PeerName`, `peer_name` and `peername`
//! alike (the matching rule is [`crate::consul_json::key_match`], shared with
//! every request body). Before typed decoding, every object key is mapped onto its canonical
//! CamelCase name from the schema below, values are type-checked, and unknown
//! keys are refused with the path where they appear. `Meta` keys are user data
//! and are kept verbatim.

use serde_json::{Map, Value};

use super::ConfigEntryError;
use crate::consul_json::key_match;

/// What a field's value must look like.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Text,
    Flag,
    Count,
    TextList,
    /// Free-form string map; its keys are never normalized.
    Meta,
    /// `"allow"` or `"deny"`, checked here because the typed enum cannot hold a bad value.
    Action,
    /// `"consul"`, the only source type; accepted so `config read` output can be written back.
    SourceType,
    Object(&'static [Field]),
    ListOf(&'static [Field]),
    /// A map from user-chosen names (kept verbatim) to objects of these fields,
    /// such as a resolver's `Subsets` or `Failover`.
    MapOf(&'static [Field]),
    /// A Go duration: a string such as `"5s"` or an integer number of
    /// nanoseconds, as Consul's JSON carries both. Negative values are kept
    /// for the kind's own check, which has Consul's text.
    Duration,
    /// An opaque object (proxy `Config`): keys kept verbatim, values any JSON.
    Opaque,
}

pub(super) struct Field {
    name: &'static str,
    /// Other spellings meaning the same field (compared after normalization).
    aliases: &'static [&'static str],
    shape: Shape,
    /// Absence is an error, for fields the typed structs cannot default.
    required: bool,
}

const fn field(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        aliases: &[],
        shape,
        required: false,
    }
}

const fn field_with_aliases(
    name: &'static str,
    aliases: &'static [&'static str],
    shape: Shape,
) -> Field {
    Field {
        name,
        aliases,
        shape,
        required: false,
    }
}

const fn required(field: Field) -> Field {
    Field {
        required: true,
        ..field
    }
}

const HEADER_FIELDS: &[Field] = &[
    field("Name", Shape::Text),
    field("Present", Shape::Flag),
    field("Exact", Shape::Text),
    field("Prefix", Shape::Text),
    field("Suffix", Shape::Text),
    field("Regex", Shape::Text),
    field("Invert", Shape::Flag),
];

const HTTP_FIELDS: &[Field] = &[
    field("PathExact", Shape::Text),
    field("PathPrefix", Shape::Text),
    field("PathRegex", Shape::Text),
    field("Methods", Shape::TextList),
    field("Header", Shape::ListOf(HEADER_FIELDS)),
];

const PERMISSION_FIELDS: &[Field] = &[
    required(field("Action", Shape::Action)),
    field("HTTP", Shape::Object(HTTP_FIELDS)),
];

const SOURCE_FIELDS: &[Field] = &[
    field("Name", Shape::Text),
    // PeerName is how exported-services consumers spell it; accepting it here too
    // spares users a confusing "unknown field" for the same concept.
    field_with_aliases("Peer", &["peername"], Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field("Action", Shape::Action),
    field("Permissions", Shape::ListOf(PERMISSION_FIELDS)),
    field("Description", Shape::Text),
    field("Precedence", Shape::Count),
    field("Type", Shape::SourceType),
    // Kept by the legacy ID-based intention API; a config write drops them again.
    field("LegacyID", Shape::Text),
    field("LegacyMeta", Shape::Meta),
    field("LegacyCreateTime", Shape::Text),
    field("LegacyUpdateTime", Shape::Text),
];

pub(super) const SERVICE_INTENTIONS_FIELDS: &[Field] = &[
    field("Kind", Shape::Text),
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Sources", Shape::ListOf(SOURCE_FIELDS)),
    field("Meta", Shape::Meta),
    field("CreateIndex", Shape::Count),
    field("ModifyIndex", Shape::Count),
];

const CONSUMER_FIELDS: &[Field] = &[
    field_with_aliases("Peer", &["peername"], Shape::Text),
    field("Partition", Shape::Text),
    field("SamenessGroup", Shape::Text),
];

const EXPORTED_SERVICE_FIELDS: &[Field] = &[
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Consumers", Shape::ListOf(CONSUMER_FIELDS)),
];

pub(super) const EXPORTED_SERVICES_FIELDS: &[Field] = &[
    field("Kind", Shape::Text),
    field("Name", Shape::Text),
    field("Partition", Shape::Text),
    field("Services", Shape::ListOf(EXPORTED_SERVICE_FIELDS)),
    field("Meta", Shape::Meta),
    field("CreateIndex", Shape::Count),
    field("ModifyIndex", Shape::Count),
];

const SUBSET_FIELDS: &[Field] = &[
    field("Filter", Shape::Text),
    field("OnlyPassing", Shape::Flag),
];

const REDIRECT_FIELDS: &[Field] = &[
    field("Service", Shape::Text),
    field("ServiceSubset", Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field("Datacenter", Shape::Text),
    field_with_aliases("Peer", &["peername"], Shape::Text),
];

const FAILOVER_TARGET_FIELDS: &[Field] = &[
    field("Service", Shape::Text),
    field("ServiceSubset", Shape::Text),
    field("Partition", Shape::Text),
    field("Namespace", Shape::Text),
    field("Datacenter", Shape::Text),
    field_with_aliases("Peer", &["peername"], Shape::Text),
];

const FAILOVER_FIELDS: &[Field] = &[
    field("Service", Shape::Text),
    field("ServiceSubset", Shape::Text),
    field("Namespace", Shape::Text),
    field("Datacenters", Shape::TextList),
    field("Targets", Shape::ListOf(FAILOVER_TARGET_FIELDS)),
];

pub(super) const SERVICE_RESOLVER_FIELDS: &[Field] = &[
    field("Kind", Shape::Text),
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field("ConnectTimeout", Shape::Duration),
    field("RequestTimeout", Shape::Duration),
    field("DefaultSubset", Shape::Text),
    field("Subsets", Shape::MapOf(SUBSET_FIELDS)),
    field("Redirect", Shape::Object(REDIRECT_FIELDS)),
    field("Failover", Shape::MapOf(FAILOVER_FIELDS)),
    field("Meta", Shape::Meta),
    field("CreateIndex", Shape::Count),
    field("ModifyIndex", Shape::Count),
];

const MESH_GATEWAY_FIELDS: &[Field] = &[field("Mode", Shape::Text)];

const UPSTREAM_CONFIG_FIELDS: &[Field] = &[
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field_with_aliases("Peer", &["peername"], Shape::Text),
    field("Protocol", Shape::Text),
    field("ConnectTimeoutMs", Shape::Count),
    field("MeshGateway", Shape::Object(MESH_GATEWAY_FIELDS)),
];

const UPSTREAM_CONFIGURATION_FIELDS: &[Field] = &[
    field("Defaults", Shape::Object(UPSTREAM_CONFIG_FIELDS)),
    field("Overrides", Shape::ListOf(UPSTREAM_CONFIG_FIELDS)),
];

pub(super) const SERVICE_DEFAULTS_FIELDS: &[Field] = &[
    field("Kind", Shape::Text),
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field("Protocol", Shape::Text),
    field("Mode", Shape::Text),
    field("MeshGateway", Shape::Object(MESH_GATEWAY_FIELDS)),
    field(
        "UpstreamConfig",
        Shape::Object(UPSTREAM_CONFIGURATION_FIELDS),
    ),
    field("Meta", Shape::Meta),
    field("CreateIndex", Shape::Count),
    field("ModifyIndex", Shape::Count),
];

pub(super) const PROXY_DEFAULTS_FIELDS: &[Field] = &[
    field("Kind", Shape::Text),
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field("Config", Shape::Opaque),
    field("Mode", Shape::Text),
    field("MeshGateway", Shape::Object(MESH_GATEWAY_FIELDS)),
    field("Meta", Shape::Meta),
    field("CreateIndex", Shape::Count),
    field("ModifyIndex", Shape::Count),
];

const TRANSPARENT_PROXY_MESH_FIELDS: &[Field] = &[field("MeshDestinationsOnly", Shape::Flag)];

const PEERING_MESH_FIELDS: &[Field] = &[field("PeerThroughMeshGateways", Shape::Flag)];

pub(super) const MESH_FIELDS: &[Field] = &[
    field("Kind", Shape::Text),
    field("Name", Shape::Text),
    field("Namespace", Shape::Text),
    field("Partition", Shape::Text),
    field(
        "TransparentProxy",
        Shape::Object(TRANSPARENT_PROXY_MESH_FIELDS),
    ),
    field("AllowEnablingPermissiveMutualTLS", Shape::Flag),
    field("Peering", Shape::Object(PEERING_MESH_FIELDS)),
    field("Meta", Shape::Meta),
    field("CreateIndex", Shape::Count),
    field("ModifyIndex", Shape::Count),
];

/// The key matching rule is the one of every request body ([`crate::consul_json`]).
pub(super) use crate::consul_json::comparable_key;

/// Rewrites `object`'s keys to their canonical names and checks every value's
/// type. `path` locates the object in messages (`""` at the top level).
///
/// `null` values and empty strings are dropped: like Consul (Go zero values),
/// an empty string means "not set".
pub(super) fn normalize_object(
    object: Map<String, Value>,
    fields: &'static [Field],
    path: &str,
) -> Result<Map<String, Value>, ConfigEntryError> {
    let mut normalized = Map::new();
    // Which spelling each canonical name came from, to report duplicates.
    let mut spellings: Vec<(&'static str, String)> = Vec::new();
    for (key, value) in object {
        let Some(field) = fields
            .iter()
            .find(|field| key_match(field.name, field.aliases, &key).is_some())
        else {
            return Err(ConfigEntryError::UnknownField {
                path: path.to_owned(),
                key,
            });
        };
        if let Some((_, first)) = spellings.iter().find(|(name, _)| *name == field.name) {
            return Err(ConfigEntryError::DuplicateField {
                path: path.to_owned(),
                key,
                first: first.clone(),
            });
        }
        spellings.push((field.name, key));
        if is_unset(&value) {
            continue;
        }
        let field_path = child_path(path, field.name);
        normalized.insert(
            field.name.to_owned(),
            normalize_value(value, field.shape, &field_path)?,
        );
    }
    if let Some(missing) = fields
        .iter()
        .find(|field| field.required && !normalized.contains_key(field.name))
    {
        return Err(missing_field_error(
            &child_path(path, missing.name),
            missing.shape,
        ));
    }
    Ok(normalized)
}

fn missing_field_error(path: &str, shape: Shape) -> ConfigEntryError {
    match shape {
        Shape::Action => action_error(path),
        _ => ConfigEntryError::Invalid(format!("{path} is required")),
    }
}

fn action_error(path: &str) -> ConfigEntryError {
    ConfigEntryError::Invalid(format!("{path} must be set to 'allow' or 'deny'"))
}

fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        _ => false,
    }
}

fn normalize_value(value: Value, shape: Shape, path: &str) -> Result<Value, ConfigEntryError> {
    let wrong_type = |expected: &'static str| ConfigEntryError::WrongType {
        path: path.to_owned(),
        expected,
    };
    match shape {
        Shape::Text => match value {
            Value::String(_) => Ok(value),
            _ => Err(wrong_type("a string")),
        },
        Shape::Flag => match value {
            Value::Bool(_) => Ok(value),
            _ => Err(wrong_type("true or false")),
        },
        Shape::Count => match value.as_u64() {
            Some(_) => Ok(value),
            None => Err(wrong_type("a non-negative integer")),
        },
        Shape::TextList => match &value {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(value),
            _ => Err(wrong_type("a list of strings")),
        },
        Shape::Meta => normalize_meta(value, path),
        Shape::Action => match value.as_str() {
            Some("allow" | "deny") => Ok(value),
            _ => Err(action_error(path)),
        },
        Shape::SourceType => match value.as_str() {
            Some("consul") => Ok(value),
            _ => Err(ConfigEntryError::Invalid(format!(
                "{path} must be set to 'consul'"
            ))),
        },
        Shape::Duration => match &value {
            // A negative value is left for the kind's check, which has Consul's text.
            Value::String(text) => match crate::duration::parse(text) {
                Ok(_) | Err(crate::duration::DurationError::Negative(_)) => Ok(value),
                Err(error) => Err(ConfigEntryError::Invalid(format!("{path}: {error}"))),
            },
            Value::Number(number) if number.is_i64() => Ok(value),
            _ => Err(wrong_type("a duration such as \"5s\"")),
        },
        Shape::Opaque => match single_object(value) {
            Some(object) => Ok(Value::Object(object)),
            None => Err(wrong_type("an object")),
        },
        Shape::MapOf(fields) => {
            let Some(entries) = single_object(value) else {
                return Err(wrong_type("a map of objects"));
            };
            let mut normalized = Map::with_capacity(entries.len());
            for (key, item) in entries {
                let item_path = format!("{path}[{key:?}]");
                let Some(object) = single_object(item) else {
                    return Err(ConfigEntryError::WrongType {
                        path: item_path,
                        expected: "an object",
                    });
                };
                let item = normalize_object(object, fields, &item_path)?;
                normalized.insert(key, Value::Object(item));
            }
            Ok(Value::Object(normalized))
        }
        Shape::Object(fields) => match single_object(value) {
            Some(object) => Ok(Value::Object(normalize_object(object, fields, path)?)),
            None => Err(wrong_type("an object")),
        },
        Shape::ListOf(fields) => {
            let items = match value {
                Value::Array(items) => items,
                // A single HCL block arrives as an object; it stands for a one-element list.
                Value::Object(object) => vec![Value::Object(object)],
                _ => return Err(wrong_type("a list of objects")),
            };
            let mut normalized = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let item_path = format!("{path}[{index}]");
                let Value::Object(object) = item else {
                    return Err(ConfigEntryError::WrongType {
                        path: item_path,
                        expected: "an object",
                    });
                };
                normalized.push(Value::Object(normalize_object(object, fields, &item_path)?));
            }
            Ok(Value::Array(normalized))
        }
    }
}

/// An object, or a one-element list holding one (how some HCL writers render a block).
fn single_object(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(object) => Some(object),
        Value::Array(mut items) if items.len() == 1 => match items.pop() {
            Some(Value::Object(object)) => Some(object),
            _ => None,
        },
        _ => None,
    }
}

fn normalize_meta(value: Value, path: &str) -> Result<Value, ConfigEntryError> {
    let Value::Object(entries) = value else {
        return Err(ConfigEntryError::WrongType {
            path: path.to_owned(),
            expected: "a map of strings",
        });
    };
    if let Some((key, _)) = entries.iter().find(|(_, value)| !value.is_string()) {
        return Err(ConfigEntryError::WrongType {
            path: format!("{path}[{key:?}]"),
            expected: "a string",
        });
    }
    Ok(Value::Object(entries))
}

pub(super) fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}
