//! The intention of Consul's `/v1/connect/intentions` API.
//!
//! Intentions are stored only as `service-intentions` config entries, one per
//! destination (as Consul has done since 1.9); the API shows each source of an
//! entry as one [`Intention`], a (source, destination) pair with Consul's
//! field names. This module holds that view, the request body the API's
//! writes take ([`IntentionBody`]), the `source`/`destination`/`name` query
//! parameters ([`IntentionTarget::parse`]), and Consul's ordering
//! ([`sort_by_precedence`]). No I/O: the agent applies them to its state.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config_entry::{ServiceIntentions, SourceIntention};
use crate::consul_json::{field, value, ConsulBody, Schema, Shape};

const DEFAULT_NAMESPACE: &str = "default";
/// Consul's limit on an intention's description and on a meta value.
const MAX_DESCRIPTION_LENGTH: usize = 512;
const MAX_META_PAIRS: usize = 64;
const MAX_META_KEY_LENGTH: usize = 128;
/// The longest `source`, `destination` or `name` query value looked at.
pub const MAX_TARGET_LENGTH: usize = 1024;

/// One intention as Consul's API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Intention {
    /// Set only for intentions created through the legacy ID-based API.
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_peer: String,
    #[serde(rename = "SourceNS")]
    pub source_ns: String,
    pub source_name: String,
    #[serde(rename = "DestinationNS")]
    pub destination_ns: String,
    pub destination_name: String,
    pub source_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<Value>,
    /// The entry's `Meta`, or the legacy intention's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<BTreeMap<String, String>>,
    pub precedence: u32,
    /// RFC 3339; Go's zero time for intentions not created by the legacy API.
    pub created_at: String,
    pub updated_at: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Go's zero `time.Time`, which Consul shows for timestamps it never set.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Intention {
    /// `source` of `entry` as an intention (Consul's `ToIntention`).
    pub fn from_source(entry: &ServiceIntentions, source: &SourceIntention) -> Intention {
        let legacy = &source.legacy;
        let meta = if legacy.legacy_id.is_some() {
            Some(legacy.legacy_meta.clone())
        } else if entry.meta.is_empty() {
            None
        } else {
            Some(entry.meta.clone())
        };
        Intention {
            id: legacy.legacy_id.clone().unwrap_or_default(),
            description: source.description.clone().unwrap_or_default(),
            source_peer: source.peer.clone().unwrap_or_default(),
            source_ns: source
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            source_name: source.name.clone(),
            destination_ns: entry
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            destination_name: entry.name.clone(),
            source_type: "consul".to_owned(),
            action: source
                .action
                .map(|action| action.as_str().to_owned())
                .unwrap_or_default(),
            permissions: source
                .permissions
                .iter()
                .filter_map(|permission| serde_json::to_value(permission).ok())
                .collect(),
            meta,
            precedence: source.precedence,
            created_at: legacy
                .legacy_create_time
                .clone()
                .unwrap_or_else(|| ZERO_TIME.to_owned()),
            updated_at: legacy
                .legacy_update_time
                .clone()
                .unwrap_or_else(|| ZERO_TIME.to_owned()),
            create_index: entry.create_index,
            modify_index: entry.modify_index,
        }
    }

    /// All of `entry`'s sources as intentions, in the entry's order.
    pub fn all_of(entry: &ServiceIntentions) -> impl Iterator<Item = Intention> + '_ {
        entry
            .sources
            .iter()
            .map(|source| Intention::from_source(entry, source))
    }
}

/// Consul's order: highest precedence first, ties broken by source
/// namespace, source name, destination namespace, destination name (and
/// then the source's peer, so the order is total).
pub fn sort_by_precedence(intentions: &mut [Intention]) {
    intentions.sort_by(|a, b| {
        b.precedence
            .cmp(&a.precedence)
            .then_with(|| a.source_ns.cmp(&b.source_ns))
            .then_with(|| a.source_name.cmp(&b.source_name))
            .then_with(|| a.destination_ns.cmp(&b.destination_ns))
            .then_with(|| a.destination_name.cmp(&b.destination_name))
            .then_with(|| a.source_peer.cmp(&b.source_peer))
            .then(Ordering::Equal)
    });
}

/// A `source`, `destination` or `name` query value: `name`, `namespace/name`,
/// `peer:<peer>/name` or `peer:<peer>/namespace/name` (or
/// `partition/namespace/name`), as Consul parses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentionTarget {
    pub peer: Option<String>,
    pub namespace: String,
    pub name: String,
}

impl IntentionTarget {
    /// Consul's texts for malformed values; `allow_peer` is false where a
    /// peer makes no sense (destinations, matches, writes).
    pub fn parse(input: &str, allow_peer: bool) -> Result<IntentionTarget, String> {
        if input.len() > MAX_TARGET_LENGTH {
            return Err(format!("longer than {MAX_TARGET_LENGTH} bytes"));
        }
        if input.starts_with("peer:") && !allow_peer {
            return Err("cannot specify a peer here".to_owned());
        }
        let parts: Vec<&str> = input.split('/').collect();
        let local = |namespace: &str, name: &str| IntentionTarget {
            peer: None,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let peered = |peer: &str, namespace: &str, name: &str| IntentionTarget {
            peer: Some(peer.to_owned()),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        match parts.as_slice() {
            [name] if name.starts_with("peer:") => {
                Err("need to specify the service name as well".to_owned())
            }
            [name] => Ok(local(DEFAULT_NAMESPACE, name)),
            [first, name] => match first.strip_prefix("peer:") {
                Some(peer) => Ok(peered(peer, DEFAULT_NAMESPACE, name)),
                None => Ok(local(first, name)),
            },
            [first, namespace, name] => match first.strip_prefix("peer:") {
                Some(peer) => Ok(peered(peer, namespace, name)),
                // The partition: isthmus, like Consul's community edition, has only `default`.
                None => Ok(local(namespace, name)),
            },
            _ => Err("input can contain at most two '/'".to_owned()),
        }
    }
}

/// The body of `POST /v1/connect/intentions`, `PUT /v1/connect/intentions/:id`
/// and `PUT /v1/connect/intentions/exact`. Like Consul, fields it does not
/// use (`Precedence`, `CreatedAt`, `CreateIndex`, ...) are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionBody {
    #[serde(default, rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub source_peer: String,
    #[serde(default, rename = "SourceNS")]
    pub source_ns: String,
    #[serde(default)]
    pub source_name: String,
    #[serde(default, rename = "DestinationNS")]
    pub destination_ns: String,
    #[serde(default)]
    pub destination_name: String,
    #[serde(default)]
    pub source_partition: String,
    #[serde(default)]
    pub destination_partition: String,
    #[serde(default)]
    pub source_type: String,
    #[serde(default)]
    pub action: String,
    /// Checked as a config entry source's `Permissions` when the entry is validated.
    #[serde(default)]
    pub permissions: Vec<Value>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// Open, as Go's decoder is for this body.
const INTENTION_BODY: Schema = Schema::open(&[
    value("ID"),
    value("Description"),
    value("SourcePeer"),
    value("SourceNS"),
    value("SourceName"),
    value("DestinationNS"),
    value("DestinationName"),
    value("SourcePartition"),
    value("DestinationPartition"),
    value("SourceType"),
    value("Action"),
    // Kept as sent: the config entry's rules normalize and check them.
    value("Permissions"),
    field("Meta", Shape::Map),
]);

impl ConsulBody for IntentionBody {
    const SCHEMA: &'static Schema = &INTENTION_BODY;
}

impl IntentionBody {
    /// Consul's `Intention.Validate` for the legacy API, with its
    /// multi-error text ("1 error occurred:\n\t* ...\n\n").
    pub fn validate_legacy(&self) -> Result<(), String> {
        let mut problems: Vec<String> = Vec::new();
        if self.source_name.is_empty() {
            problems.push("SourceName must be set".to_owned());
        }
        if self.destination_name.is_empty() {
            problems.push("DestinationName must be set".to_owned());
        }
        for (field, name) in [
            ("SourceName", &self.source_name),
            ("DestinationName", &self.destination_name),
        ] {
            if name != "*" && name.contains('*') {
                problems.push(format!(
                    "{field}: wildcard character '*' cannot be used with partial values"
                ));
            }
        }
        if self.description.len() > MAX_DESCRIPTION_LENGTH {
            problems.push(format!(
                "Description exceeds maximum length {MAX_DESCRIPTION_LENGTH}"
            ));
        }
        if self.meta.len() > MAX_META_PAIRS {
            problems.push(format!(
                "Meta exceeds maximum element count {MAX_META_PAIRS}"
            ));
        }
        for (key, value) in &self.meta {
            if key.len() > MAX_META_KEY_LENGTH {
                problems.push(format!(
                    "Meta key {key:?} exceeds maximum length {MAX_META_KEY_LENGTH}"
                ));
            }
            if value.len() > MAX_DESCRIPTION_LENGTH {
                problems.push(format!(
                    "Meta value for key {key:?} exceeds maximum length {MAX_DESCRIPTION_LENGTH}"
                ));
            }
        }
        if !matches!(self.action.as_str(), "allow" | "deny") {
            problems.push("Action must be set to 'allow' or 'deny'".to_owned());
        }
        if !matches!(self.source_type.as_str(), "" | "consul") {
            problems.push("SourceType must be set to 'consul'".to_owned());
        }
        if problems.is_empty() {
            return Ok(());
        }
        let count = problems.len();
        let mut text = if count == 1 {
            "1 error occurred:\n".to_owned()
        } else {
            format!("{count} errors occurred:\n")
        };
        for problem in problems {
            text.push_str(&format!("\t* {problem}\n"));
        }
        text.push('\n');
        Err(text)
    }

    /// This intention as a config entry source (JSON, to be validated with
    /// its entry): named `source`, with the body's action, permissions,
    /// description and type.
    pub fn to_source_json(&self, source: &IntentionTarget) -> Value {
        let mut object = Map::new();
        object.insert("Name".to_owned(), Value::String(source.name.clone()));
        if let Some(peer) = &source.peer {
            object.insert("Peer".to_owned(), Value::String(peer.clone()));
        }
        if source.namespace != DEFAULT_NAMESPACE {
            object.insert(
                "Namespace".to_owned(),
                Value::String(source.namespace.clone()),
            );
        }
        if !self.action.is_empty() {
            object.insert("Action".to_owned(), Value::String(self.action.clone()));
        }
        if !self.permissions.is_empty() {
            object.insert(
                "Permissions".to_owned(),
                Value::Array(self.permissions.clone()),
            );
        }
        if !self.description.is_empty() {
            object.insert(
                "Description".to_owned(),
                Value::String(self.description.clone()),
            );
        }
        if !self.source_type.is_empty() {
            object.insert("Type".to_owned(), Value::String(self.source_type.clone()));
        }
        Value::Object(object)
    }
}

#[cfg(test)]
mod tests;
