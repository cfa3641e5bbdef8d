//! The intention API's reads and writes over the `service-intentions`
//! config entries.
//!
//! Intentions have no table of their own: as in Consul since 1.9, each is a
//! source of the entry named after its destination, so
//! `/v1/config/service-intentions/<dest>` and `/v1/connect/intentions` always
//! show the same thing. Writes by source and destination (`.../exact`) edit
//! one source and leave the entry as a config write would (legacy fields
//! cleared); the legacy ID-based writes keep an ID, metadata and timestamps
//! on the source and are refused on entries written any other way, as
//! Consul refuses them.

use isthmus_api::config_entry::{
    ConfigEntry, ConfigEntryError, LegacySourceFields, ServiceIntentions, KIND_SERVICE_INTENTIONS,
};
use isthmus_api::connect_intention::{
    sort_by_precedence, Intention, IntentionBody, IntentionTarget,
};
use serde_json::Value;

use crate::config_entries;
use crate::store::{Reads, StoreError, Txn};

#[derive(Debug, thiserror::Error)]
pub enum IntentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input; the text is Consul's.
    #[error("{0}")]
    Invalid(String),
    #[error("Intention not found")]
    NotFound,
    #[error("Cannot modify non-existent intention: '{0}'")]
    CannotModify(String),
    #[error("Cannot delete non-existent intention: '{0}'")]
    CannotDelete(String),
    #[error("cannot use legacy intention API to edit intentions with a destination of {0:?} after editing them via a service-intentions config entry")]
    NotLegacy(String),
}

impl From<ConfigEntryError> for IntentionError {
    fn from(e: ConfigEntryError) -> IntentionError {
        IntentionError::Invalid(e.to_string())
    }
}

/// Whether a match query looks intentions up by their source or their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBy {
    Source,
    Destination,
}

fn entry_of(r: &impl Reads, destination: &str) -> Result<Option<ServiceIntentions>, StoreError> {
    Ok(
        match config_entries::get(r, KIND_SERVICE_INTENTIONS, destination)? {
            Some(ConfigEntry::ServiceIntentions(entry)) => Some(entry),
            _ => None,
        },
    )
}

/// Every intention, highest precedence first.
pub fn list(r: &impl Reads) -> Result<Vec<Intention>, StoreError> {
    let entries = config_entries::service_intentions(r)?;
    let mut all: Vec<Intention> = entries.iter().flat_map(Intention::all_of).collect();
    sort_by_precedence(&mut all);
    Ok(all)
}

/// The intention from exactly `source` to exactly `destination`.
pub fn get_exact(
    r: &impl Reads,
    source: &IntentionTarget,
    destination: &IntentionTarget,
) -> Result<Intention, IntentionError> {
    let entry = entry_of(r, &destination.name)?.ok_or(IntentionError::NotFound)?;
    entry
        .sources
        .iter()
        .find(|s| is_source(s, source))
        .map(|s| Intention::from_source(&entry, s))
        .ok_or(IntentionError::NotFound)
}

/// The intention a legacy write gave `id`.
pub fn get_by_id(r: &impl Reads, id: &str) -> Result<Intention, IntentionError> {
    let (entry, position) = find_legacy(r, id)?.ok_or(IntentionError::NotFound)?;
    Ok(Intention::from_source(&entry, &entry.sources[position]))
}

/// For each name, the intentions that apply to it as a source or as a
/// destination (wildcards included), highest precedence first.
pub fn matches(
    r: &impl Reads,
    by: MatchBy,
    names: &[IntentionTarget],
) -> Result<Vec<Vec<Intention>>, StoreError> {
    let mut answers = Vec::with_capacity(names.len());
    match by {
        MatchBy::Destination => {
            for target in names {
                let mut found = Vec::new();
                let mut destinations = vec![target.name.as_str()];
                if target.name != "*" {
                    destinations.push("*");
                }
                for destination in destinations {
                    if let Some(entry) = entry_of(r, destination)? {
                        found.extend(Intention::all_of(&entry));
                    }
                }
                sort_by_precedence(&mut found);
                answers.push(found);
            }
        }
        MatchBy::Source => {
            // No index by source: one pass over the intentions entries,
            // not over the catalog.
            let entries = config_entries::service_intentions(r)?;
            for target in names {
                let mut found: Vec<Intention> = entries
                    .iter()
                    .flat_map(|entry| {
                        entry
                            .sources
                            .iter()
                            .filter(|s| {
                                s.peer.is_none() && (s.name == target.name || s.name == "*")
                            })
                            .map(|s| Intention::from_source(entry, s))
                    })
                    .collect();
                sort_by_precedence(&mut found);
                answers.push(found);
            }
        }
    }
    Ok(answers)
}

fn is_source(
    source: &isthmus_api::config_entry::SourceIntention,
    target: &IntentionTarget,
) -> bool {
    source.name == target.name
        && source.peer == target.peer
        && source.namespace.as_deref().unwrap_or("default") == target.namespace
}

fn find_legacy(r: &impl Reads, id: &str) -> Result<Option<(ServiceIntentions, usize)>, StoreError> {
    for entry in config_entries::service_intentions(r)? {
        if let Some(position) = entry
            .sources
            .iter()
            .position(|s| s.legacy.legacy_id.as_deref() == Some(id))
        {
            return Ok(Some((entry, position)));
        }
    }
    Ok(None)
}

/// Validates `entry_json` as a whole entry (Consul's texts) and returns it typed.
fn validated(entry_json: Value) -> Result<ServiceIntentions, IntentionError> {
    match ConfigEntry::from_json(entry_json)? {
        ConfigEntry::ServiceIntentions(entry) => Ok(entry),
        _ => unreachable!("a service-intentions document decodes as one"),
    }
}

/// `entry` (or a new one for `destination`) as JSON with `sources` in place of its own.
fn entry_json(destination: &str, entry: Option<&ServiceIntentions>, sources: Vec<Value>) -> Value {
    let mut object = match entry.map(|e| ConfigEntry::ServiceIntentions(e.clone()).to_json()) {
        Some(Value::Object(object)) => object,
        _ => {
            let mut object = serde_json::Map::new();
            object.insert("Kind".into(), KIND_SERVICE_INTENTIONS.into());
            object.insert("Name".into(), destination.into());
            object
        }
    };
    object.insert("Sources".into(), Value::Array(sources));
    Value::Object(object)
}

fn sources_json(entry: Option<&ServiceIntentions>) -> Vec<Value> {
    entry
        .map(|e| {
            e.sources
                .iter()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .collect()
        })
        .unwrap_or_default()
}

fn write(txn: &mut Txn, entry: ServiceIntentions) -> Result<(), IntentionError> {
    config_entries::set(txn, ConfigEntry::ServiceIntentions(entry), None)?;
    Ok(())
}

/// `PUT /v1/connect/intentions/exact`: creates or replaces the intention
/// from `source` to `destination`.
pub fn upsert_exact(
    txn: &mut Txn,
    source: &IntentionTarget,
    destination: &IntentionTarget,
    body: &IntentionBody,
) -> Result<(), IntentionError> {
    if !body.id.is_empty() {
        return Err(IntentionError::Invalid("ID must not be specified".into()));
    }
    if !body.source_peer.is_empty() {
        return Err(IntentionError::Invalid(
            "SourcePeer field is not supported on this endpoint. Use config entries instead".into(),
        ));
    }
    let previous = entry_of(txn, &destination.name)?;
    if !body.meta.is_empty() {
        match &previous {
            None => return Err(IntentionError::Invalid("Meta must not be specified".into())),
            Some(entry) if entry.meta != body.meta => {
                return Err(IntentionError::Invalid(
                    "Meta must not be specified, or should be unchanged during an update.".into(),
                ))
            }
            Some(_) => {}
        }
    }
    let mut sources = sources_json(previous.as_ref());
    let replacement = body.to_source_json(source);
    match previous
        .as_ref()
        .and_then(|e| e.sources.iter().position(|s| is_source(s, source)))
    {
        Some(position) => sources[position] = replacement,
        None => sources.push(replacement),
    }
    let mut entry = validated(entry_json(&destination.name, previous.as_ref(), sources))?;
    entry.clear_legacy_fields()?;
    write(txn, entry)
}

/// `DELETE /v1/connect/intentions/exact`: removes the intention if there is
/// one (deleting a missing one succeeds, as in Consul), and the entry with
/// its last source.
pub fn delete_exact(
    txn: &mut Txn,
    source: &IntentionTarget,
    destination: &IntentionTarget,
) -> Result<(), IntentionError> {
    let Some(mut entry) = entry_of(txn, &destination.name)? else {
        return Ok(());
    };
    let Some(position) = entry.sources.iter().position(|s| is_source(s, source)) else {
        return Ok(());
    };
    entry.sources.remove(position);
    if entry.sources.is_empty() {
        config_entries::delete(txn, KIND_SERVICE_INTENTIONS, &destination.name, None)?;
        return Ok(());
    }
    entry.clear_legacy_fields()?;
    write(txn, entry)
}

/// `POST /v1/connect/intentions`: a legacy intention with a new ID, which it returns.
pub fn legacy_create(
    txn: &mut Txn,
    body: &IntentionBody,
    id: String,
    now: &str,
) -> Result<String, IntentionError> {
    if !body.id.is_empty() {
        return Err(IntentionError::Invalid(
            "ID must be empty when creating a new intention".into(),
        ));
    }
    check_legacy_body(body)?;
    let destination = &body.destination_name;
    let previous = entry_of(txn, destination)?;
    if let Some(entry) = &previous {
        if !entry.all_sources_legacy() {
            return Err(IntentionError::NotLegacy(destination.clone()));
        }
    }
    let mut sources = sources_json(previous.as_ref());
    sources.push(body.to_source_json(&legacy_source(body)));
    let mut entry = validated(entry_json(destination, previous.as_ref(), sources))?;
    // Every other source has an ID (the entry is all legacy): the one
    // without is the new one.
    let created = unidentified(&mut entry)?;
    created.legacy = LegacySourceFields {
        legacy_id: Some(id.clone()),
        legacy_meta: body.meta.clone(),
        legacy_create_time: Some(now.to_owned()),
        legacy_update_time: Some(now.to_owned()),
    };
    write(txn, entry)?;
    Ok(id)
}

/// `PUT /v1/connect/intentions/:id`: replaces a legacy intention, keeping
/// its ID and creation time.
pub fn legacy_update(
    txn: &mut Txn,
    id: &str,
    body: &IntentionBody,
    now: &str,
) -> Result<(), IntentionError> {
    let (previous, position) =
        find_legacy(txn, id)?.ok_or_else(|| IntentionError::CannotModify(id.to_owned()))?;
    if body.destination_name != previous.name {
        return Err(IntentionError::Invalid(
            "Cannot modify Destination partition/namespace/name for an intention once it exists."
                .into(),
        ));
    }
    check_legacy_body(body)?;
    if !previous.all_sources_legacy() {
        return Err(IntentionError::NotLegacy(previous.name.clone()));
    }
    let kept = previous.sources[position].legacy.clone();
    let mut sources = sources_json(Some(&previous));
    sources[position] = body.to_source_json(&legacy_source(body));
    let mut entry = validated(entry_json(&previous.name, Some(&previous), sources))?;
    let updated = unidentified(&mut entry)?;
    updated.legacy = LegacySourceFields {
        legacy_id: Some(id.to_owned()),
        legacy_meta: body.meta.clone(),
        legacy_create_time: kept.legacy_create_time,
        legacy_update_time: Some(now.to_owned()),
    };
    write(txn, entry)
}

/// `DELETE /v1/connect/intentions/:id`.
pub fn legacy_delete(txn: &mut Txn, id: &str) -> Result<(), IntentionError> {
    let (mut entry, position) =
        find_legacy(txn, id)?.ok_or_else(|| IntentionError::CannotDelete(id.to_owned()))?;
    if !entry.all_sources_legacy() {
        return Err(IntentionError::NotLegacy(entry.name.clone()));
    }
    entry.sources.remove(position);
    if entry.sources.is_empty() {
        config_entries::delete(txn, KIND_SERVICE_INTENTIONS, &entry.name, None)?;
        return Ok(());
    }
    write(txn, entry)
}

/// The source a legacy write just put into an all-legacy entry: the only
/// one without an ID.
fn unidentified(
    entry: &mut ServiceIntentions,
) -> Result<&mut isthmus_api::config_entry::SourceIntention, IntentionError> {
    entry
        .sources
        .iter_mut()
        .find(|s| s.legacy.legacy_id.is_none())
        .ok_or_else(|| {
            IntentionError::Invalid("the written intention is missing from its entry".into())
        })
}

fn legacy_source(body: &IntentionBody) -> IntentionTarget {
    IntentionTarget {
        peer: None,
        namespace: if body.source_ns.is_empty() {
            "default".to_owned()
        } else {
            body.source_ns.clone()
        },
        name: body.source_name.clone(),
    }
}

fn check_legacy_body(body: &IntentionBody) -> Result<(), IntentionError> {
    if !body.source_peer.is_empty() {
        return Err(IntentionError::Invalid(
            "SourcePeer field is not supported on this endpoint. Use config entries instead".into(),
        ));
    }
    for (field, partition) in [
        ("destination", &body.destination_partition),
        ("source", &body.source_partition),
    ] {
        if !partition.is_empty() && partition != "default" {
            return Err(IntentionError::Invalid(format!(
                "Cannot specify a {field} partition with this endpoint"
            )));
        }
    }
    body.validate_legacy().map_err(IntentionError::Invalid)
}

#[cfg(test)]
mod tests;
