//! Config entries in the store, keyed `<kind>/<name>`, and the reads other
//! modules make of them.

use isthmus_api::config_entry::{
    ConfigEntry, ServiceIntentions, ServiceResolver, KIND_PROXY_DEFAULTS, KIND_SERVICE_DEFAULTS,
    KIND_SERVICE_INTENTIONS, KIND_SERVICE_RESOLVER, PROXY_DEFAULTS_GLOBAL,
};

use crate::store::{Reads, StoreError, Table, Txn};

fn key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

pub fn get(r: &impl Reads, kind: &str, name: &str) -> Result<Option<ConfigEntry>, StoreError> {
    r.get(Table::ConfigEntries, &key(kind, name))
}

pub fn list(r: &impl Reads, kind: &str) -> Result<Vec<ConfigEntry>, StoreError> {
    r.scan(Table::ConfigEntries, &format!("{kind}/"))
}

pub fn service_intentions(r: &impl Reads) -> Result<Vec<ServiceIntentions>, StoreError> {
    Ok(list(r, KIND_SERVICE_INTENTIONS)?
        .into_iter()
        .filter_map(|e| match e {
            ConfigEntry::ServiceIntentions(i) => Some(i),
            _ => None,
        })
        .collect())
}

/// The service-intentions entries that can apply to calls to `service`:
/// its own and the `*` entry. Two row reads, so a watcher wakes only when
/// one of them changes.
pub fn intentions_for(r: &impl Reads, service: &str) -> Result<Vec<ServiceIntentions>, StoreError> {
    let mut found = Vec::new();
    for name in [service, "*"] {
        if let Some(ConfigEntry::ServiceIntentions(entry)) = get(r, KIND_SERVICE_INTENTIONS, name)?
        {
            found.push(entry);
        }
    }
    Ok(found)
}

/// The `service-resolver` entry for `service`, if any: one row read, so a
/// blocking query wakes only when that entry changes.
pub fn service_resolver(
    r: &impl Reads,
    service: &str,
) -> Result<Option<ServiceResolver>, StoreError> {
    Ok(match get(r, KIND_SERVICE_RESOLVER, service)? {
        Some(ConfigEntry::ServiceResolver(resolver)) => Some(*resolver),
        _ => None,
    })
}

/// The protocol a caller speaks to `service`: its `service-defaults`
/// `Protocol`, else the `proxy-defaults` `global` `Config.protocol`, else
/// `None` (the sidecar's own flag decides). Two row reads, so a blocking
/// query wakes only when one of those entries changes.
pub fn upstream_protocol(r: &impl Reads, service: &str) -> Result<Option<String>, StoreError> {
    if let Some(ConfigEntry::ServiceDefaults(defaults)) = get(r, KIND_SERVICE_DEFAULTS, service)? {
        if let Some(protocol) = defaults.protocol() {
            return Ok(Some(protocol.to_owned()));
        }
    }
    Ok(match get(r, KIND_PROXY_DEFAULTS, PROXY_DEFAULTS_GLOBAL)? {
        Some(ConfigEntry::ProxyDefaults(defaults)) => defaults.protocol(),
        _ => None,
    })
}

/// Writes `entry`. With `cas`, only if the stored entry's ModifyIndex equals
/// it (0: only if absent); returns whether it was written.
pub fn set(txn: &mut Txn, mut entry: ConfigEntry, cas: Option<u64>) -> Result<bool, StoreError> {
    let key = key(entry.kind(), entry.name());
    let existing: Option<ConfigEntry> = txn.get(Table::ConfigEntries, &key)?;
    let current = existing.as_ref().map_or(0, ConfigEntry::modify_index);
    if cas.is_some_and(|cas| cas != current) {
        return Ok(false);
    }
    let index = txn.index();
    let create_index = existing.map_or(index, |e| e.create_index());
    entry.set_indexes(create_index, index);
    txn.put(Table::ConfigEntries, &key, &entry)?;
    Ok(true)
}

/// Deletes an entry; deleting a missing one succeeds (Consul does the same).
/// With `cas`, only if the stored ModifyIndex equals it.
pub fn delete(txn: &mut Txn, kind: &str, name: &str, cas: Option<u64>) -> Result<bool, StoreError> {
    let key = key(kind, name);
    if let Some(cas) = cas {
        let existing: Option<ConfigEntry> = txn.get(Table::ConfigEntries, &key)?;
        if existing.map_or(0, |e| e.modify_index()) != cas {
            return Ok(false);
        }
    }
    txn.delete(Table::ConfigEntries, &key)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Store;

    fn write(store: &Store, entry: serde_json::Value) {
        let entry = ConfigEntry::from_json(entry).unwrap();
        store
            .write_blocking(|txn| set(txn, entry.clone(), None))
            .unwrap();
    }

    fn protocol_of(store: &Store, service: &str) -> Option<String> {
        upstream_protocol(&store.snapshot().unwrap(), service).unwrap()
    }

    #[test]
    fn upstream_protocol_prefers_service_defaults_then_proxy_defaults() {
        let store = Store::in_memory().unwrap();
        assert_eq!(
            protocol_of(&store, "web"),
            None,
            "nothing set: the flag decides"
        );
        write(
            &store,
            json!({"Kind": "proxy-defaults", "Config": {"protocol": "tcp"}}),
        );
        assert_eq!(protocol_of(&store, "web").as_deref(), Some("tcp"));
        write(
            &store,
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "GRPC"}),
        );
        assert_eq!(protocol_of(&store, "web").as_deref(), Some("grpc"));
        assert_eq!(protocol_of(&store, "db").as_deref(), Some("tcp"));
        // A service-defaults without a protocol leaves the global default.
        write(
            &store,
            json!({"Kind": "service-defaults", "Name": "db", "Mode": "direct"}),
        );
        assert_eq!(protocol_of(&store, "db").as_deref(), Some("tcp"));
    }

    #[test]
    fn service_resolver_reads_one_entry() {
        let store = Store::in_memory().unwrap();
        write(
            &store,
            json!({"Kind": "service-resolver", "Name": "web",
                   "Failover": {"*": {"Targets": [{"Peer": "cluster-01"}]}}}),
        );
        let snap = store.snapshot().unwrap();
        let resolver = service_resolver(&snap, "web").unwrap().unwrap();
        assert_eq!(
            resolver.failover_targets("")[0].peer.as_deref(),
            Some("cluster-01")
        );
        assert!(service_resolver(&snap, "db").unwrap().is_none());
    }
}
