use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::auth::{GroupCreate, Permission};
use crate::catalog::{
    AuthorizeRequest, CheckDefinition, ConnectDefinition, ProxyConfig, ServiceAddress,
    ServiceRegistration, Upstream, Weights,
};
use crate::peering::{EstablishRequest, TokenRequest};

fn registration(value: Value) -> Result<ServiceRegistration, DecodeError> {
    from_value(value)
}

#[test]
fn lowercase_and_snake_case_keys_decode_like_canonical_ones() {
    let canonical = registration(json!({
        "ID": "web-1", "Name": "web", "Port": 80, "Tags": ["v1"],
        "EnableTagOverride": true,
        "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
        "Meta": {"team": "a"},
        "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "1m", "CheckID": "c1"},
        "Checks": [{"HTTP": "http://127.0.0.1/", "Interval": "5s",
                    "Header": {"x-Token": ["t"]}, "ServiceID": "web-1"}],
        "Weights": {"Passing": 3, "Warning": 1},
        "Proxy": {"DestinationServiceName": "api", "Config": {"protocol": "http"},
                  "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9000}]},
    }))
    .unwrap();
    let sent = registration(json!({
        "id": "web-1", "name": "web", "port": 80, "TAGS": ["v1"],
        "enable_tag_override": true,
        "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
        "meta": {"team": "a"},
        "check": {"ttl": "10s", "deregister_critical_service_after": "1m", "check_id": "c1"},
        "checks": [{"http": "http://127.0.0.1/", "interval": "5s",
                    "header": {"x-Token": ["t"]}, "service_id": "web-1"}],
        "weights": {"passing": 3, "warning": 1},
        "proxy": {"destination_service_name": "api", "config": {"protocol": "http"},
                  "upstreams": [{"destination_name": "db", "local_bind_port": 9000}]},
    }))
    .unwrap();
    assert_eq!(sent, canonical);
    assert_eq!(sent.id.as_deref(), Some("web-1"));
    assert_eq!(sent.check.as_ref().unwrap().check_id.as_deref(), Some("c1"));
}

#[test]
fn user_maps_keep_their_keys() {
    let value = normalize(
        json!({"Name": "web", "meta": {"Odd_Key": "1", "name": "2", "ID": "3"},
               "TaggedAddresses": {"LAN_ipv4": {"address": "a", "port": 1}},
               "Check": {"Header": {"x_custom": ["v"]}},
               "Proxy": {"config": {"Local_Connect_Timeout_MS": 5}}}),
        ServiceRegistration::SCHEMA,
    )
    .unwrap();
    assert_eq!(
        value,
        json!({"Name": "web", "Meta": {"Odd_Key": "1", "name": "2", "ID": "3"},
               "TaggedAddresses": {"LAN_ipv4": {"Address": "a", "Port": 1}},
               "Check": {"Header": {"x_custom": ["v"]}},
               "Proxy": {"Config": {"Local_Connect_Timeout_MS": 5}}})
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let error = registration(json!({"Name": "web", "Prot": 80})).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("unknown field `Prot`, expected one of `ID`, `Name`"),
        "{error}"
    );
    let error = registration(json!({"name": "web", "checks": [{"ttl": "1s"}, {"tttl": "1s"}]}))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("unknown field `Checks[1].tttl`"),
        "{error}"
    );
    let error =
        registration(json!({"proxy": {"upstreams": [{"destination_nam": "x"}]}})).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("unknown field `Proxy.Upstreams[0].destination_nam`"),
        "{error}"
    );
    let error = registration(json!({"tagged_addresses": {"lan": {"addr": "x"}}})).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("unknown field `TaggedAddresses.lan.addr`"),
        "{error}"
    );
}

#[test]
fn wrong_container_types_name_the_field() {
    let error = registration(json!({"Name": "web", "check": "ttl"})).unwrap_err();
    assert_eq!(error.to_string(), "Check must be an object");
    let error = registration(json!({"Name": "web", "Checks": {"TTL": "1s"}})).unwrap_err();
    assert_eq!(error.to_string(), "Checks must be a list of objects");
    let error = registration(json!({"Name": "web", "Meta": ["a"]})).unwrap_err();
    assert_eq!(error.to_string(), "Meta must be an object");
    let error = registration(json!(["web"])).unwrap_err();
    assert_eq!(error.to_string(), "the body must be an object");
    let error = registration(json!({"Name": "web", "port": "eighty"})).unwrap_err();
    assert!(matches!(error, DecodeError::Invalid(_)), "{error}");
    assert!(
        error.to_string().starts_with("Port: invalid type"),
        "{error}"
    );
    let error =
        registration(json!({"name": "web", "checks": [{"ttl": "1s"}, {"ttl": 10}]})).unwrap_err();
    assert!(
        error.to_string().starts_with("Checks[1].TTL: invalid type"),
        "{error}"
    );
}

#[test]
fn an_exact_spelling_wins_otherwise_the_last_one() {
    let value = normalize(
        json!({"name": "a", "Name": "b", "NAME": "c"}),
        ServiceRegistration::SCHEMA,
    )
    .unwrap();
    assert_eq!(value, json!({"Name": "b"}));
    let value = normalize(
        json!({"name": "a", "NAME": "c"}),
        ServiceRegistration::SCHEMA,
    )
    .unwrap();
    assert_eq!(value, json!({"Name": "c"}));
    // ID and CheckID are two fields; `check_id` names the second.
    let value = normalize(json!({"id": "a", "check_id": "b"}), CheckDefinition::SCHEMA).unwrap();
    assert_eq!(value, json!({"ID": "a", "CheckID": "b"}));
}

#[test]
fn null_leaves_a_field_unset() {
    let decoded = registration(json!({"Name": "web", "Meta": null, "Check": null})).unwrap();
    assert!(decoded.meta.is_empty());
    assert!(decoded.check.is_none());
}

#[test]
fn open_schemas_keep_unknown_keys_for_serde_to_ignore() {
    let request: AuthorizeRequest =
        from_value(json!({"target": "db", "clientcerturi": "spiffe://x", "Extra": 1})).unwrap();
    assert_eq!(request.target, "db");
    assert_eq!(request.client_cert_uri, "spiffe://x");
    let permission: Permission =
        from_value(json!({"entity_type": "service", "entitlement": "can_view"})).unwrap();
    assert_eq!(permission.entity_type, "service");
}

#[test]
fn other_bodies_decode_case_insensitively() {
    let token: TokenRequest = from_value(
        json!({"peer_name": "b", "meta": {"Env": "x"}, "server_external_addresses": ["a:1"]}),
    )
    .unwrap();
    assert_eq!(token.peer_name, "b");
    assert_eq!(token.meta.get("Env").map(String::as_str), Some("x"));
    assert_eq!(token.server_external_addresses, ["a:1"]);
    let establish: EstablishRequest =
        from_value(json!({"peername": "b", "peering_token": "t"})).unwrap();
    assert_eq!(establish.peering_token, "t");
    let group: GroupCreate = from_value(json!({"name": "ops", "DESCRIPTION": "d"})).unwrap();
    assert_eq!(group.description, "d");
    assert!(from_value::<GroupCreate>(json!({"name": "ops", "owner": "x"})).is_err());
}

#[test]
fn syntax_errors_are_reported() {
    let error = from_slice::<ServiceRegistration>(b"{\"Name\":").unwrap_err();
    assert!(matches!(error, DecodeError::Syntax(_)), "{error}");
}

/// A fully populated registration, serialized, uses only schema names: the
/// schema and the type agree.
#[test]
fn the_schema_covers_every_field_of_the_type() {
    let check = CheckDefinition {
        check_id: Some("c".into()),
        id: Some("i".into()),
        name: Some("n".into()),
        notes: Some("n".into()),
        status: Some("passing".into()),
        ttl: Some("1s".into()),
        http: Some("http://x/".into()),
        method: Some("GET".into()),
        header: [("X".to_owned(), vec!["v".to_owned()])].into(),
        tcp: Some("x:1".into()),
        alias_service: Some("s".into()),
        interval: Some("1s".into()),
        timeout: Some("1s".into()),
        deregister_critical_service_after: Some("1m".into()),
        service_id: Some("s".into()),
    };
    let full = ServiceRegistration {
        id: Some("web-1".into()),
        name: "web".into(),
        kind: Some("connect-proxy".into()),
        tags: vec!["t".into()],
        address: Some("a".into()),
        port: Some(1),
        tagged_addresses: [(
            "lan".to_owned(),
            ServiceAddress {
                address: "a".into(),
                port: 1,
            },
        )]
        .into(),
        meta: [("k".to_owned(), "v".to_owned())].into(),
        enable_tag_override: true,
        weights: Some(Weights::default()),
        proxy: Some(Box::new(ProxyConfig {
            destination_service_name: "d".into(),
            destination_service_id: "d".into(),
            local_service_address: "a".into(),
            local_service_port: 1,
            mode: Some("transparent".into()),
            upstreams: vec![Upstream {
                destination_type: Some("service".into()),
                destination_name: "u".into(),
                destination_namespace: Some("default".into()),
                destination_peer: Some("p".into()),
                local_bind_address: Some("a".into()),
                local_bind_port: 2,
                config: [("protocol".to_owned(), json!("http2"))]
                    .into_iter()
                    .collect(),
            }],
            config: [("k".to_owned(), json!(1))].into_iter().collect(),
        })),
        check: Some(check.clone()),
        checks: vec![check],
        connect: Some(ConnectDefinition {
            native: true,
            sidecar_service: Some(Box::new(ServiceRegistration {
                name: "side".into(),
                port: Some(21000),
                ..ServiceRegistration::default()
            })),
        }),
        namespace: Some("default".into()),
        partition: Some("default".into()),
    };
    let value = serde_json::to_value(&full).unwrap();
    assert_eq!(
        normalize(value.clone(), ServiceRegistration::SCHEMA).unwrap(),
        value
    );
    assert_eq!(registration(value).unwrap(), full);
}

/// Every spelling of a key differing only in ASCII case and underscores
/// between words.
fn respell(name: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = name.chars().collect();
    (
        proptest::collection::vec(any::<bool>(), chars.len()),
        proptest::collection::vec(any::<bool>(), chars.len()),
    )
        .prop_map(move |(upper, underscore)| {
            let mut key = String::new();
            for (index, c) in chars.iter().enumerate() {
                if index > 0 && underscore[index] {
                    key.push('_');
                }
                key.push(if upper[index] {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                });
            }
            key
        })
}

const TOP: &[&str] = &["ID", "Name", "Port", "EnableTagOverride", "Tags"];
const CHECK_KEYS: &[&str] = &["TTL", "DeregisterCriticalServiceAfter", "CheckID", "Notes"];

fn top_value(name: &str) -> Value {
    match name {
        "Port" => json!(8080),
        "EnableTagOverride" => json!(true),
        "Tags" => json!(["a", "b"]),
        other => json!(format!("{other}-value")),
    }
}

fn spelled(names: &'static [&'static str]) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    names
        .iter()
        .map(|name| respell(name).prop_map(move |key| (*name, key)))
        .collect::<Vec<_>>()
}

proptest! {
    #[test]
    fn any_case_variation_normalizes_to_canonical(
        top in spelled(TOP),
        check in spelled(CHECK_KEYS),
        meta_key_spelling in respell("Meta"),
        check_key_spelling in respell("Check"),
        meta in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_.-]{0,12}", "[a-z]{0,5}", 0..5),
    ) {
        let mut sent = serde_json::Map::new();
        let mut canonical = serde_json::Map::new();
        for (name, key) in &top {
            sent.insert(key.clone(), top_value(name));
            canonical.insert((*name).to_owned(), top_value(name));
        }
        let mut sent_check = serde_json::Map::new();
        let mut canonical_check = serde_json::Map::new();
        for (name, key) in &check {
            sent_check.insert(key.clone(), json!(format!("{name}-v")));
            canonical_check.insert((*name).to_owned(), json!(format!("{name}-v")));
        }
        sent.insert(check_key_spelling, Value::Object(sent_check));
        canonical.insert("Check".to_owned(), Value::Object(canonical_check));
        let meta_value = serde_json::to_value(&meta).unwrap();
        sent.insert(meta_key_spelling, meta_value.clone());
        canonical.insert("Meta".to_owned(), meta_value);

        let normalized = normalize(Value::Object(sent), ServiceRegistration::SCHEMA).unwrap();
        prop_assert_eq!(&normalized, &Value::Object(canonical));
        let decoded: ServiceRegistration = serde_json::from_value(normalized).unwrap();
        prop_assert_eq!(decoded.meta, meta);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path(
        key in "[a-z][a-z_]{0,15}",
        nested in any::<bool>(),
    ) {
        let known = |fields: &[Field]| {
            fields.iter().any(|field| key_match(field.name, field.aliases, &key).is_some())
        };
        let (body, path) = if nested {
            prop_assume!(!known(CheckDefinition::SCHEMA.fields));
            (json!({"name": "web", "checks": [{"ttl": "1s", key.clone(): "x"}]}),
             format!("Checks[0].{key}"))
        } else {
            prop_assume!(!known(ServiceRegistration::SCHEMA.fields));
            (json!({"name": "web", key.clone(): "x"}), key.clone())
        };
        match normalize(body, ServiceRegistration::SCHEMA) {
            Err(DecodeError::UnknownField { path: reported, .. }) => prop_assert_eq!(reported, path),
            other => prop_assert!(false, "expected an unknown field error, got {:?}", other),
        }
    }
}
