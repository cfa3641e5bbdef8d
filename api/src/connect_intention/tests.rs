use proptest::prelude::*;

use super::*;
use crate::config_entry::ConfigEntry;

fn entry(json: Value) -> ServiceIntentions {
    match ConfigEntry::from_json(json).unwrap() {
        ConfigEntry::ServiceIntentions(entry) => entry,
        other => panic!("not intentions: {other:?}"),
    }
}

#[test]
fn targets_parse_like_consul() {
    assert_eq!(
        IntentionTarget::parse("web", false).unwrap(),
        IntentionTarget {
            peer: None,
            namespace: "default".into(),
            name: "web".into()
        }
    );
    assert_eq!(
        IntentionTarget::parse("peer:east/web", true).unwrap().peer,
        Some("east".into())
    );
    assert_eq!(
        IntentionTarget::parse("peer:east/web", false).unwrap_err(),
        "cannot specify a peer here"
    );
    assert_eq!(
        IntentionTarget::parse("peer:east", true).unwrap_err(),
        "need to specify the service name as well"
    );
    assert_eq!(
        IntentionTarget::parse("a/b/c/d", false).unwrap_err(),
        "input can contain at most two '/'"
    );
    assert_eq!(
        IntentionTarget::parse("ns/web", false).unwrap().namespace,
        "ns"
    );
}

#[test]
fn a_source_becomes_an_intention_with_consuls_fields() {
    let entry = entry(serde_json::json!({
        "Kind": "service-intentions", "Name": "db",
        "Sources": [{"Name": "web", "Action": "allow", "Description": "d"}]
    }));
    let intention = Intention::from_source(&entry, &entry.sources[0]);
    let json = serde_json::to_value(&intention).unwrap();
    assert_eq!(json["ID"], "");
    assert_eq!(json["SourceName"], "web");
    assert_eq!(json["SourceNS"], "default");
    assert_eq!(json["DestinationName"], "db");
    assert_eq!(json["SourceType"], "consul");
    assert_eq!(json["Action"], "allow");
    assert_eq!(json["Precedence"], 9);
    assert_eq!(json["CreatedAt"], "0001-01-01T00:00:00Z");
    assert!(json.get("SourcePeer").is_none());
    assert!(json.get("Permissions").is_none());
}

#[test]
fn legacy_validation_lists_every_problem() {
    let body = IntentionBody::default();
    assert_eq!(
        body.validate_legacy().unwrap_err(),
        "3 errors occurred:\n\t* SourceName must be set\n\t* DestinationName must be set\n\t* Action must be set to 'allow' or 'deny'\n\n"
    );
    let body = IntentionBody {
        source_name: "web".into(),
        destination_name: "db".into(),
        action: "allow".into(),
        ..Default::default()
    };
    assert_eq!(body.validate_legacy(), Ok(()));
}

#[test]
fn ordering_is_by_precedence_then_names() {
    let entry = entry(serde_json::json!({
        "Kind": "service-intentions", "Name": "db",
        "Sources": [
            {"Name": "*", "Action": "deny"},
            {"Name": "b", "Action": "allow"},
            {"Name": "a", "Action": "allow"}
        ]
    }));
    let mut all: Vec<Intention> = Intention::all_of(&entry).collect();
    sort_by_precedence(&mut all);
    let names: Vec<&str> = all.iter().map(|i| i.source_name.as_str()).collect();
    assert_eq!(names, ["a", "b", "*"]);
}

proptest! {
    /// Any query value parses or is refused with a message; never a panic,
    /// and a parsed name never contains the separator.
    #[test]
    fn any_target_parses_or_is_refused(input in ".{0,80}", allow_peer in any::<bool>()) {
        if let Ok(target) = IntentionTarget::parse(&input, allow_peer) {
            prop_assert!(!target.name.contains('/'));
            prop_assert!(allow_peer || target.peer.is_none());
        }
    }

    #[test]
    fn sorting_is_by_descending_precedence(precedences in prop::collection::vec(1u32..10, 0..20)) {
        let entry = entry(serde_json::json!({
            "Kind": "service-intentions", "Name": "db",
            "Sources": [{"Name": "web", "Action": "allow"}]
        }));
        let template = Intention::from_source(&entry, &entry.sources[0]);
        let mut all: Vec<Intention> = precedences
            .iter()
            .map(|&precedence| Intention { precedence, ..template.clone() })
            .collect();
        sort_by_precedence(&mut all);
        prop_assert!(all.windows(2).all(|pair| pair[0].precedence >= pair[1].precedence));
    }
}
