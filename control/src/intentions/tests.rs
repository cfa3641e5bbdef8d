use isthmus_api::config_entry::ConfigEntry;
use serde_json::json;

use super::*;
use crate::store::Store;

fn target(name: &str) -> IntentionTarget {
    IntentionTarget::parse(name, true).unwrap()
}

fn body(action: &str) -> IntentionBody {
    IntentionBody {
        action: action.into(),
        ..Default::default()
    }
}

fn legacy_body(source: &str, destination: &str, action: &str) -> IntentionBody {
    IntentionBody {
        source_name: source.into(),
        destination_name: destination.into(),
        ..body(action)
    }
}

fn stored(store: &Store, destination: &str) -> Option<ServiceIntentions> {
    entry_of(&store.snapshot().unwrap(), destination).unwrap()
}

#[test]
fn exact_writes_edit_one_source_of_the_destinations_entry() {
    let store = Store::in_memory().unwrap();
    for (source, action) in [("web", "allow"), ("*", "deny"), ("web", "deny")] {
        store
            .write_blocking(|txn| upsert_exact(txn, &target(source), &target("db"), &body(action)))
            .unwrap();
    }
    let entry = stored(&store, "db").unwrap();
    let sources: Vec<(&str, u32)> = entry
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.precedence))
        .collect();
    assert_eq!(sources, [("web", 9), ("*", 8)]);
    let intention = get_exact(&store.snapshot().unwrap(), &target("web"), &target("db")).unwrap();
    assert_eq!(intention.action, "deny");

    for source in ["web", "*"] {
        store
            .write_blocking(|txn| delete_exact(txn, &target(source), &target("db")))
            .unwrap();
    }
    assert!(
        stored(&store, "db").is_none(),
        "the last source takes the entry with it"
    );
    store
        .write_blocking(|txn| delete_exact(txn, &target("web"), &target("db")))
        .unwrap();
}

#[test]
fn exact_writes_refuse_what_consul_refuses() {
    let store = Store::in_memory().unwrap();
    let mut with_id = body("allow");
    with_id.id = "x".into();
    let refused = store
        .write_blocking(|txn| upsert_exact(txn, &target("web"), &target("db"), &with_id))
        .unwrap_err();
    assert_eq!(refused.to_string(), "ID must not be specified");
    let refused = store
        .write_blocking(|txn| upsert_exact(txn, &target("web"), &target("db"), &body("maybe")))
        .unwrap_err();
    assert!(refused.to_string().contains("Action"), "{refused}");
    assert!(stored(&store, "db").is_none(), "nothing half-written");
}

#[test]
fn legacy_intentions_keep_their_id_and_refuse_config_written_entries() {
    let store = Store::in_memory().unwrap();
    let id = store
        .write_blocking(|txn| {
            legacy_create(
                txn,
                &legacy_body("web", "db", "allow"),
                "11111111-2222-3333-4444-555555555555".into(),
                "2026-01-01T00:00:00Z",
            )
        })
        .unwrap();
    let read = get_by_id(&store.snapshot().unwrap(), &id).unwrap();
    assert_eq!(
        (read.source_name.as_str(), read.action.as_str()),
        ("web", "allow")
    );
    assert_eq!(read.created_at, "2026-01-01T00:00:00Z");

    store
        .write_blocking(|txn| {
            legacy_update(
                txn,
                &id,
                &legacy_body("web", "db", "deny"),
                "2026-01-02T00:00:00Z",
            )
        })
        .unwrap();
    let read = get_by_id(&store.snapshot().unwrap(), &id).unwrap();
    assert_eq!(read.action, "deny");
    assert_eq!(read.created_at, "2026-01-01T00:00:00Z");
    assert_eq!(read.updated_at, "2026-01-02T00:00:00Z");

    let moved = store
        .write_blocking(|txn| legacy_update(txn, &id, &legacy_body("web", "other", "deny"), "t"))
        .unwrap_err();
    assert!(
        moved.to_string().starts_with("Cannot modify Destination"),
        "{moved}"
    );

    // A non-legacy write to the same destination ends the legacy API's say over it.
    store
        .write_blocking(|txn| upsert_exact(txn, &target("api"), &target("db"), &body("allow")))
        .unwrap();
    assert!(matches!(
        get_by_id(&store.snapshot().unwrap(), &id),
        Err(IntentionError::NotFound)
    ));
    let refused = store
        .write_blocking(|txn| {
            legacy_create(txn, &legacy_body("x", "db", "allow"), "id-2".into(), "t")
        })
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "cannot use legacy intention API to edit intentions with a destination of \"db\" after editing them via a service-intentions config entry"
    );
    let missing = store
        .write_blocking(|txn| legacy_delete(txn, "nope"))
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "Cannot delete non-existent intention: 'nope'"
    );
}

#[test]
fn matches_apply_wildcards_and_precedence() {
    let store = Store::in_memory().unwrap();
    for entry in [
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"},
            {"Name": "web", "Peer": "east", "Action": "allow"}]}),
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [
            {"Name": "web", "Action": "deny"}]}),
    ] {
        let entry = ConfigEntry::from_json(entry).unwrap();
        store
            .write_blocking(|txn| config_entries::set(txn, entry.clone(), None))
            .unwrap();
    }
    let snap = store.snapshot().unwrap();
    let by_destination = matches(&snap, MatchBy::Destination, &[target("db")]).unwrap();
    let found: Vec<(String, String, u32)> = by_destination[0]
        .iter()
        .map(|i| {
            (
                i.source_name.clone(),
                i.destination_name.clone(),
                i.precedence,
            )
        })
        .collect();
    assert_eq!(found.len(), 4);
    assert_eq!(found[0].2, 9);
    assert_eq!(found.last().unwrap().2, 6);

    let by_source = matches(&snap, MatchBy::Source, &[target("web")]).unwrap();
    let found: Vec<(&str, u32)> = by_source[0]
        .iter()
        .map(|i| (i.destination_name.as_str(), i.precedence))
        .collect();
    assert_eq!(found, [("db", 9), ("db", 8), ("*", 6)]);
    assert_eq!(list(&snap).unwrap().len(), 4);
}
