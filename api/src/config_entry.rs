//! Config entries: the kinds isthmus supports (`exported-services`,
//! `service-intentions`, `service-resolver`, `service-defaults`,
//! `proxy-defaults`, `mesh`), in Consul's JSON shape, with Consul's validation
//! and error texts.
//!
//! Input goes through [`parse_document`] (HCL or JSON text, as `consul config
//! write` takes it) and [`ConfigEntry::from_json`] (key normalization, typed
//! decoding, validation). Output is [`ConfigEntry::to_json`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

mod exported_services;
mod keys;
mod mesh;
mod proxy_defaults;
mod service_defaults;
mod service_intentions;
mod service_resolver;
#[cfg(test)]
mod tests;

pub use exported_services::{ExportedService, ExportedServices, ServiceConsumer};
pub use service_intentions::{
    IntentionAction, IntentionHttpHeaderPermission, IntentionHttpPermission, IntentionPermission,
    IntentionSourceType, LegacySourceFields, ServiceIntentions, SourceIntention,
};

pub use mesh::{Mesh, PeeringMesh, TransparentProxyMesh, MESH_ENTRY_NAME};
pub use proxy_defaults::{ProxyDefaults, PROXY_DEFAULTS_GLOBAL};
pub use service_defaults::{
    MeshGatewayConfig, ServiceDefaults, UpstreamConfig, UpstreamConfiguration, PROTOCOLS,
};
pub use service_resolver::{
    FailoverTarget, ResolverFailover, ResolverRedirect, ResolverSubset, ServiceResolver,
    FAILOVER_ANY_SUBSET,
};

pub const KIND_EXPORTED_SERVICES: &str = "exported-services";
pub const KIND_SERVICE_INTENTIONS: &str = "service-intentions";
pub const KIND_SERVICE_RESOLVER: &str = "service-resolver";
pub const KIND_SERVICE_DEFAULTS: &str = "service-defaults";
pub const KIND_PROXY_DEFAULTS: &str = "proxy-defaults";
pub const KIND_MESH: &str = "mesh";

/// Every supported kind, in the order error texts list them.
pub const KINDS: &[&str] = &[
    KIND_EXPORTED_SERVICES,
    KIND_SERVICE_INTENTIONS,
    KIND_SERVICE_RESOLVER,
    KIND_SERVICE_DEFAULTS,
    KIND_PROXY_DEFAULTS,
    KIND_MESH,
];

/// Longest name accepted, as for a DNS name.
const MAX_NAME_LENGTH: usize = 253;

/// Why a config entry was refused. `Display` is the exact text the HTTP API
/// returns with status 400 and the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigEntryError {
    #[error("Payload does not contain a kind/Kind key at the top level")]
    MissingKind,
    /// The text is neither valid JSON nor valid HCL.
    #[error("failed to decode config entry input: {0}")]
    Decode(String),
    #[error("unsupported config entry kind {0:?}: isthmus supports {kinds}", kinds = KINDS.join(", "))]
    UnsupportedKind(String),
    /// `path` locates the object holding the key; empty at the top level.
    #[error("{}unknown field {:?}", location_prefix(.path), .key)]
    UnknownField { path: String, key: String },
    /// Two spellings of one field in the same object, such as `Peer` and `PeerName`.
    #[error("{}duplicate field {:?} (already given as {:?})", location_prefix(.path), .key, .first)]
    DuplicateField {
        path: String,
        key: String,
        first: String,
    },
    #[error("{path} must be {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    #[error("invalid name {name:?}: {problem}")]
    InvalidName { name: String, problem: &'static str },
    /// A semantic problem; the text follows Consul's wording.
    #[error("{0}")]
    Invalid(String),
}

fn location_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Checks a config entry kind and returns its canonical spelling.
pub fn validate_kind(kind: &str) -> Result<&'static str, ConfigEntryError> {
    KINDS
        .iter()
        .find(|known| **known == kind)
        .copied()
        .ok_or_else(|| ConfigEntryError::UnsupportedKind(kind.to_owned()))
}

/// Checks a service or entry name, such as one taken from a URL: non-empty, at
/// most 253 characters of `[A-Za-z0-9._-]`, or exactly `*`.
pub fn validate_name(name: &str) -> Result<(), ConfigEntryError> {
    let problem = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_NAME_LENGTH {
        "is longer than 253 characters"
    } else if name == "*" {
        return Ok(());
    } else if name.contains('*') {
        "the wildcard '*' must be the whole name"
    } else if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        "only letters, digits, '.', '_' and '-' are allowed"
    } else {
        return Ok(());
    };
    Err(ConfigEntryError::InvalidName {
        name: name.to_owned(),
        problem,
    })
}

/// [`validate_name`] for a field inside an entry: the message starts with the field's path.
fn validate_field_name(path: &str, name: &str) -> Result<(), ConfigEntryError> {
    validate_name(name).map_err(|error| ConfigEntryError::Invalid(format!("{path}: {error}")))
}

/// isthmus has one namespace and one partition, both `default`.
fn check_scope(path: &str, value: Option<&str>) -> Result<(), ConfigEntryError> {
    match value {
        Some(value) if value != "default" => Err(ConfigEntryError::Invalid(format!(
            "{path} must be \"default\", not {value:?}: isthmus has no namespaces or admin partitions"
        ))),
        _ => Ok(()),
    }
}

/// Parses a user's document, HCL or JSON (JSON when the first non-space
/// character is `{`), into a JSON value that has a top-level `Kind` or `kind` key.
pub fn parse_document(text: &str) -> Result<Value, ConfigEntryError> {
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|error| ConfigEntryError::Decode(error.to_string()))?
    } else {
        // hcl-rs starts its messages with a space before the location arrow.
        hcl::from_str(text)
            .map_err(|error| ConfigEntryError::Decode(error.to_string().trim_start().to_owned()))?
    };
    // Consul looks for exactly these two spellings here; from_json is more lenient.
    let has_kind = value
        .as_object()
        .is_some_and(|object| object.contains_key("Kind") || object.contains_key("kind"));
    if has_kind {
        Ok(value)
    } else {
        Err(ConfigEntryError::MissingKind)
    }
}

/// A config entry of one of the supported kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigEntry {
    ExportedServices(ExportedServices),
    ServiceIntentions(ServiceIntentions),
    /// Boxed: far larger than the other kinds.
    ServiceResolver(Box<ServiceResolver>),
    ServiceDefaults(Box<ServiceDefaults>),
    ProxyDefaults(Box<ProxyDefaults>),
    Mesh(Box<Mesh>),
}

impl ConfigEntry {
    /// Decodes a JSON document (as sent to `PUT /v1/config` or converted from
    /// HCL): normalizes keys, checks types, validates, and computes derived
    /// fields such as intention precedence.
    pub fn from_json(value: Value) -> Result<ConfigEntry, ConfigEntryError> {
        let Value::Object(object) = value else {
            return Err(ConfigEntryError::MissingKind);
        };
        let kind = object
            .iter()
            .find(|(key, _)| keys::comparable_key(key) == "kind")
            .map(|(_, kind)| kind)
            .ok_or(ConfigEntryError::MissingKind)?;
        let kind = kind.as_str().ok_or(ConfigEntryError::WrongType {
            path: "Kind".to_owned(),
            expected: "a string",
        })?;
        let kind = validate_kind(kind)?;

        let entry = match kind {
            KIND_EXPORTED_SERVICES => {
                let fields = normalize_fields(object, keys::EXPORTED_SERVICES_FIELDS)?;
                let entry: ExportedServices = decode_typed(fields)?;
                entry.validate()?;
                ConfigEntry::ExportedServices(entry)
            }
            KIND_SERVICE_INTENTIONS => {
                let fields = normalize_fields(object, keys::SERVICE_INTENTIONS_FIELDS)?;
                let mut entry: ServiceIntentions = decode_typed(fields)?;
                entry.validate()?;
                entry.update_precedence();
                ConfigEntry::ServiceIntentions(entry)
            }
            KIND_SERVICE_RESOLVER => {
                let fields = normalize_fields(object, keys::SERVICE_RESOLVER_FIELDS)?;
                service_resolver::check_timeouts(&fields)?;
                let entry: ServiceResolver = decode_typed(fields)?;
                entry.validate()?;
                ConfigEntry::ServiceResolver(Box::new(entry))
            }
            KIND_SERVICE_DEFAULTS => {
                let fields = normalize_fields(object, keys::SERVICE_DEFAULTS_FIELDS)?;
                let mut entry: ServiceDefaults = decode_typed(fields)?;
                entry.normalize();
                entry.validate()?;
                ConfigEntry::ServiceDefaults(Box::new(entry))
            }
            KIND_PROXY_DEFAULTS => {
                let fields = normalize_fields(object, keys::PROXY_DEFAULTS_FIELDS)?;
                let mut entry: ProxyDefaults = decode_typed(fields)?;
                entry.normalize();
                entry.validate()?;
                ConfigEntry::ProxyDefaults(Box::new(entry))
            }
            _ => {
                let fields = normalize_fields(object, keys::MESH_FIELDS)?;
                let mut entry: Mesh = decode_typed(fields)?;
                entry.normalize();
                entry.validate()?;
                ConfigEntry::Mesh(Box::new(entry))
            }
        };
        Ok(entry)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ConfigEntry::ExportedServices(_) => KIND_EXPORTED_SERVICES,
            ConfigEntry::ServiceIntentions(_) => KIND_SERVICE_INTENTIONS,
            ConfigEntry::ServiceResolver(_) => KIND_SERVICE_RESOLVER,
            ConfigEntry::ServiceDefaults(_) => KIND_SERVICE_DEFAULTS,
            ConfigEntry::ProxyDefaults(_) => KIND_PROXY_DEFAULTS,
            ConfigEntry::Mesh(_) => KIND_MESH,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ConfigEntry::ExportedServices(entry) => &entry.name,
            ConfigEntry::ServiceIntentions(entry) => &entry.name,
            ConfigEntry::ServiceResolver(entry) => &entry.name,
            ConfigEntry::ServiceDefaults(entry) => &entry.name,
            ConfigEntry::ProxyDefaults(entry) => &entry.name,
            ConfigEntry::Mesh(entry) => &entry.name,
        }
    }

    /// Checks the entry as [`ConfigEntry::from_json`] does, for entries built in code.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        match self {
            ConfigEntry::ExportedServices(entry) => entry.validate(),
            ConfigEntry::ServiceIntentions(entry) => entry.validate(),
            ConfigEntry::ServiceResolver(entry) => entry.validate(),
            ConfigEntry::ServiceDefaults(entry) => entry.validate(),
            ConfigEntry::ProxyDefaults(entry) => entry.validate(),
            ConfigEntry::Mesh(entry) => entry.validate(),
        }
    }

    /// Consul's JSON shape: `Kind`, `Name`, the kind's fields, `CreateIndex`, `ModifyIndex`.
    pub fn to_json(&self) -> Value {
        let fields = match self {
            ConfigEntry::ExportedServices(entry) => serde_json::to_value(entry),
            ConfigEntry::ServiceIntentions(entry) => serde_json::to_value(entry),
            ConfigEntry::ServiceResolver(entry) => serde_json::to_value(entry),
            ConfigEntry::ServiceDefaults(entry) => serde_json::to_value(entry),
            ConfigEntry::ProxyDefaults(entry) => serde_json::to_value(entry),
            ConfigEntry::Mesh(entry) => serde_json::to_value(entry),
        };
        let kind = self.kind();
        // These types hold only strings, numbers, lists and string-keyed maps,
        // which always serialize to a JSON object.
        let Ok(Value::Object(fields)) = fields else {
            unreachable!("config entry types always serialize to a JSON object");
        };
        let mut object = serde_json::Map::with_capacity(fields.len() + 1);
        object.insert("Kind".to_owned(), Value::String(kind.to_owned()));
        object.extend(fields);
        Value::Object(object)
    }

    pub fn set_indexes(&mut self, create_index: u64, modify_index: u64) {
        let (create, modify) = match self {
            ConfigEntry::ExportedServices(entry) => {
                (&mut entry.create_index, &mut entry.modify_index)
            }
            ConfigEntry::ServiceIntentions(entry) => {
                (&mut entry.create_index, &mut entry.modify_index)
            }
            ConfigEntry::ServiceResolver(entry) => {
                (&mut entry.create_index, &mut entry.modify_index)
            }
            ConfigEntry::ServiceDefaults(entry) => {
                (&mut entry.create_index, &mut entry.modify_index)
            }
            ConfigEntry::ProxyDefaults(entry) => (&mut entry.create_index, &mut entry.modify_index),
            ConfigEntry::Mesh(entry) => (&mut entry.create_index, &mut entry.modify_index),
        };
        *create = create_index;
        *modify = modify_index;
    }

    /// `(CreateIndex, ModifyIndex)`.
    fn indexes(&self) -> (u64, u64) {
        match self {
            ConfigEntry::ExportedServices(entry) => (entry.create_index, entry.modify_index),
            ConfigEntry::ServiceIntentions(entry) => (entry.create_index, entry.modify_index),
            ConfigEntry::ServiceResolver(entry) => (entry.create_index, entry.modify_index),
            ConfigEntry::ServiceDefaults(entry) => (entry.create_index, entry.modify_index),
            ConfigEntry::ProxyDefaults(entry) => (entry.create_index, entry.modify_index),
            ConfigEntry::Mesh(entry) => (entry.create_index, entry.modify_index),
        }
    }

    pub fn create_index(&self) -> u64 {
        self.indexes().0
    }

    pub fn modify_index(&self) -> u64 {
        self.indexes().1
    }
}

/// Serializes as [`ConfigEntry::to_json`].
impl Serialize for ConfigEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Deserializes through [`ConfigEntry::from_json`], so stored or received
/// entries get the same normalization and validation as user input.
impl<'de> Deserialize<'de> for ConfigEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        ConfigEntry::from_json(value).map_err(serde::de::Error::custom)
    }
}

/// Normalizes the top-level keys against a kind's schema; `Kind` is not a typed field.
fn normalize_fields(
    object: serde_json::Map<String, Value>,
    fields: &'static [keys::Field],
) -> Result<serde_json::Map<String, Value>, ConfigEntryError> {
    let mut fields = keys::normalize_object(object, fields, "")?;
    fields.remove("Kind");
    Ok(fields)
}

/// The typed decode after normalization; type mismatches were already reported
/// with their paths, so a failure here is unexpected but still reported.
fn decode_typed<T: serde::de::DeserializeOwned>(
    fields: serde_json::Map<String, Value>,
) -> Result<T, ConfigEntryError> {
    serde_json::from_value(Value::Object(fields))
        .map_err(|error| ConfigEntryError::Decode(error.to_string()))
}

/// Consul's limits on `Meta`, shared by both kinds.
fn validate_meta(
    meta: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigEntryError> {
    const MAX_PAIRS: usize = 64;
    const MAX_KEY_LENGTH: usize = 128;
    const MAX_VALUE_LENGTH: usize = 512;
    if meta.len() > MAX_PAIRS {
        return Err(ConfigEntryError::Invalid(format!(
            "Meta exceeds maximum element count {MAX_PAIRS}"
        )));
    }
    for (key, value) in meta {
        if key.len() > MAX_KEY_LENGTH {
            return Err(ConfigEntryError::Invalid(format!(
                "Meta key {key:?} exceeds maximum length {MAX_KEY_LENGTH}"
            )));
        }
        if value.len() > MAX_VALUE_LENGTH {
            return Err(ConfigEntryError::Invalid(format!(
                "Meta value for key {key:?} exceeds maximum length {MAX_VALUE_LENGTH}"
            )));
        }
    }
    Ok(())
}
