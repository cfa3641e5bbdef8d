use serde_json::{json, Value};

use super::*;

mod defaults;
mod resolver;
mod validation;

/// The exported-services example from Consul's cluster peering guide.
const SEED_EXPORTED_SERVICES_HCL: &str = r#"
Kind = "exported-services"
Name = "default"
Services = [
{
## The name and namespace of the service to export.
Name = "service-name"
Namespace = "default"
## The list of peer clusters to export the service to.
Consumers = [
{
## The peer name to reference in config is the one set
## during the peering process.
PeerName = "cluster-02"
}
]
}
]
"#;

/// The service-intentions example from the same guide.
const SEED_SERVICE_INTENTIONS_HCL: &str = r#"
Kind = "service-intentions"
Name = "backend-service"
Sources = [
{
Name = "frontend-service"
Peer = "cluster-02"
Action = "allow"
}
]
"#;

fn decode(value: Value) -> Result<ConfigEntry, ConfigEntryError> {
    ConfigEntry::from_json(value)
}

fn error_text(value: Value) -> String {
    match decode(value) {
        Ok(entry) => panic!("expected an error, got {entry:?}"),
        Err(error) => error.to_string(),
    }
}

fn intentions(sources: Value) -> Value {
    json!({"Kind": "service-intentions", "Name": "api", "Sources": sources})
}

fn exported(services: Value) -> Value {
    json!({"Kind": "exported-services", "Name": "default", "Services": services})
}

fn round_trips(entry: &ConfigEntry) {
    let again = decode(entry.to_json()).expect("to_json output decodes");
    assert_eq!(&again, entry);
}

#[test]
fn seed_exported_services_parses_and_round_trips() {
    let value = parse_document(SEED_EXPORTED_SERVICES_HCL).expect("seed HCL parses");
    let entry = decode(value).expect("seed entry is valid");
    assert_eq!(entry.kind(), KIND_EXPORTED_SERVICES);
    assert_eq!(entry.name(), "default");
    let ConfigEntry::ExportedServices(exported) = &entry else {
        panic!("wrong kind: {entry:?}");
    };
    assert_eq!(exported.services.len(), 1);
    assert_eq!(exported.services[0].name, "service-name");
    assert_eq!(exported.services[0].namespace.as_deref(), Some("default"));
    assert_eq!(
        exported.services[0].consumers[0].peer.as_deref(),
        Some("cluster-02")
    );
    assert_eq!(
        entry.to_json(),
        json!({
            "Kind": "exported-services",
            "Name": "default",
            "Services": [{"Name": "service-name", "Namespace": "default", "Consumers": [{"Peer": "cluster-02"}]}],
            "CreateIndex": 0,
            "ModifyIndex": 0
        })
    );
    round_trips(&entry);
}

#[test]
fn seed_service_intentions_parses_and_round_trips() {
    let value = parse_document(SEED_SERVICE_INTENTIONS_HCL).expect("seed HCL parses");
    let mut entry = decode(value).expect("seed entry is valid");
    entry.set_indexes(5, 7);
    assert_eq!((entry.create_index(), entry.modify_index()), (5, 7));
    assert_eq!(entry.kind(), KIND_SERVICE_INTENTIONS);
    assert_eq!(entry.name(), "backend-service");
    assert_eq!(
        entry.to_json(),
        json!({
            "Kind": "service-intentions",
            "Name": "backend-service",
            "Sources": [{
                "Name": "frontend-service",
                "Peer": "cluster-02",
                "Action": "allow",
                "Precedence": 9,
                "Type": "consul"
            }],
            "CreateIndex": 5,
            "ModifyIndex": 7
        })
    );
    round_trips(&entry);
}

#[test]
fn l7_intentions_round_trip() {
    let entry = decode(intentions(json!([{
        "Name": "web",
        "Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin", "Header": [{"Name": "x-debug", "Present": true, "Invert": true}]}},
            {"Action": "allow", "HTTP": {"PathRegex": "/v[0-9]+/.*", "Methods": ["GET", "HEAD"]}}
        ],
        "Description": "web reads the API"
    }])))
    .expect("valid L7 entry");
    round_trips(&entry);
    let json = entry.to_json();
    assert_eq!(
        json["Sources"][0]["Permissions"][0]["HTTP"]["Header"][0],
        json!({"Name": "x-debug", "Present": true, "Invert": true})
    );
    assert!(json["Sources"][0].get("Action").is_none());
}

#[test]
fn json_documents_are_detected_by_their_first_character() {
    let value = parse_document("  \n{\"kind\": \"service-intentions\", \"name\": \"api\"}")
        .expect("JSON parses");
    assert_eq!(value["kind"], "service-intentions");
    let error = parse_document("{\"Kind\": ").expect_err("truncated JSON");
    assert!(
        error
            .to_string()
            .starts_with("failed to decode config entry input: "),
        "{error}"
    );
}

#[test]
fn documents_without_a_top_level_kind_are_refused() {
    let expected = "Payload does not contain a kind/Kind key at the top level";
    for document in [
        r#"Name = "x""#,
        r#"{"Name": "x"}"#,
        "{}",
        r#"{"Services": {"Kind": "x"}}"#,
    ] {
        assert_eq!(
            parse_document(document).expect_err(document).to_string(),
            expected
        );
    }
    assert_eq!(error_text(json!({"Name": "x"})), expected);
    assert_eq!(error_text(json!("exported-services")), expected);
}

#[test]
fn hcl_syntax_errors_are_reported_with_the_decode_prefix() {
    let error = parse_document("Kind = = \"x\"").expect_err("bad HCL");
    assert!(
        error
            .to_string()
            .starts_with("failed to decode config entry input: --> HCL parse error"),
        "{error}"
    );
}

#[test]
fn hcl_blocks_stand_for_lists_and_objects() {
    let document = r#"
Kind = "service-intentions"
Name = "api"
Sources {
  Name = "web"
  Permissions {
    Action = "allow"
    HTTP {
      PathPrefix = "/"
    }
  }
}
Sources {
  Name = "db"
  Action = "deny"
}
"#;
    let entry = decode(parse_document(document).expect("HCL parses")).expect("blocks decode");
    let ConfigEntry::ServiceIntentions(intentions) = entry else {
        panic!("wrong kind")
    };
    assert_eq!(intentions.sources.len(), 2);
    let http = intentions.sources[0].permissions[0]
        .http
        .as_ref()
        .expect("HTTP block");
    assert_eq!(http.path_prefix.as_deref(), Some("/"));
    assert_eq!(intentions.sources[1].action, Some(IntentionAction::Deny));
}

#[test]
fn keys_may_be_snake_case_or_any_case() {
    let entry = decode(json!({
        "kind": "exported-services",
        "NAME": "default",
        "services": [{"name": "web", "consumers": [{"peer_name": "east"}, {"sameness_group": "all"}]}],
        "create_index": 3,
    }))
    .expect("snake and lower case keys");
    let ConfigEntry::ExportedServices(exported) = &entry else {
        panic!("wrong kind")
    };
    assert_eq!(exported.create_index, 3);
    assert_eq!(
        exported.services[0].consumers[0].peer.as_deref(),
        Some("east")
    );
    assert_eq!(
        exported.services[0].consumers[1].sameness_group.as_deref(),
        Some("all")
    );

    let entry = decode(json!({
        "Kind": "service-intentions",
        "name": "api",
        "sources": [{
            "name": "web",
            "permissions": [{"action": "allow", "http": {"path_exact": "/health", "methods": ["GET"],
                "header": [{"name": "x-env", "exact": "prod", "invert": false}]}}]
        }]
    }))
    .expect("snake case intentions");
    let ConfigEntry::ServiceIntentions(intentions) = &entry else {
        panic!("wrong kind")
    };
    let http = intentions.sources[0].permissions[0]
        .http
        .as_ref()
        .expect("http");
    assert_eq!(http.path_exact.as_deref(), Some("/health"));
    assert_eq!(http.header[0].exact.as_deref(), Some("prod"));
}

#[test]
fn meta_keys_are_kept_verbatim() {
    let entry = decode(json!({
        "Kind": "service-intentions",
        "Name": "api",
        "meta": {"Peer_Name": "x", "owner": "team-a", "UPPER": "y"},
        "Sources": [{"Name": "web", "Action": "allow"}]
    }))
    .expect("meta");
    assert_eq!(
        entry.to_json()["Meta"],
        json!({"Peer_Name": "x", "owner": "team-a", "UPPER": "y"})
    );
    assert_eq!(
        error_text(json!({"Kind": "exported-services", "Name": "default", "Meta": {"n": 1}})),
        r#"Meta["n"] must be a string"#
    );
}

#[test]
fn peer_and_local_sources_with_one_name_are_distinct() {
    let entry = decode(intentions(json!([
        {"Name": "web", "Action": "allow"},
        {"Name": "web", "Peer": "east", "Action": "deny"},
        {"Name": "web", "Peer": "west", "Action": "deny"}
    ])));
    assert!(entry.is_ok(), "{entry:?}");
}

#[test]
fn empty_strings_and_nulls_mean_unset() {
    let entry = decode(intentions(
        json!([{"Name": "web", "Peer": "", "Namespace": null, "Action": "deny"}]),
    ))
    .expect("valid");
    let ConfigEntry::ServiceIntentions(intentions) = entry else {
        panic!("wrong kind")
    };
    assert_eq!(intentions.sources[0].peer, None);
    assert_eq!(intentions.sources[0].namespace, None);
}

#[test]
fn precedence_is_computed_and_input_precedence_ignored() {
    let entry = decode(json!({
        "Kind": "service-intentions",
        "Name": "*",
        "Sources": [
            {"Name": "web", "Action": "allow", "Precedence": 1},
            {"Name": "*", "Action": "deny"}
        ]
    }))
    .expect("valid");
    let json = entry.to_json();
    assert_eq!(json["Sources"][0]["Precedence"], 6);
    assert_eq!(json["Sources"][1]["Precedence"], 5);
}

#[test]
fn exported_services_helpers_answer_per_peer() {
    let entry = decode(exported(json!([
        {"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west"}]},
        {"Name": "api", "Consumers": [{"PeerName": "east"}]},
        {"Name": "*", "Consumers": [{"Peer": "north"}]},
        {"Name": "db", "Consumers": [{"Partition": "east"}]}
    ])))
    .expect("valid");
    let ConfigEntry::ExportedServices(exported) = entry else {
        panic!("wrong kind")
    };
    assert_eq!(
        exported.services_for_peer("east").collect::<Vec<_>>(),
        ["web", "api"]
    );
    assert_eq!(
        exported.services_for_peer("north").collect::<Vec<_>>(),
        ["*"]
    );
    assert_eq!(exported.services_for_peer("south").count(), 0);
    assert!(exported.is_exported_to("web", "west"));
    assert!(!exported.is_exported_to("api", "west"));
    assert!(exported.is_exported_to("anything", "north"));
    assert!(!exported.is_exported_to("db", "east"));
}

#[test]
fn config_entry_serde_goes_through_from_json() {
    let entry =
        decode(parse_document(SEED_SERVICE_INTENTIONS_HCL).expect("parses")).expect("valid");
    let text = serde_json::to_string(&entry).expect("serializes");
    let back: ConfigEntry = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(back, entry);
    let error = serde_json::from_str::<ConfigEntry>(r#"{"Kind": "service-intentions"}"#)
        .expect_err("invalid");
    assert!(error.to_string().contains("Name is required"), "{error}");
}
