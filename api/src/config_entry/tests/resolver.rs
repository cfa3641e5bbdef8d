//! `service-resolver`: decoding (HCL and JSON), Consul's validation texts, and
//! the helpers the upstream chain uses.

use std::time::Duration;

use serde_json::{json, Value};

use super::{decode, error_text, round_trips};
use crate::config_entry::*;

/// Failover to two peers in order, as in Consul's cluster peering failover guide.
const FAILOVER_HCL: &str = r#"
Kind = "service-resolver"
Name = "backend"
ConnectTimeout = "15s"
Failover = {
  "*" = {
    Targets = [
      { Peer = "cluster-01" },
      { Service = "backend-v2", Peer = "cluster-03" }
    ]
  }
}
"#;

fn resolver(value: Value) -> ServiceResolver {
    match decode(value).expect("valid resolver") {
        ConfigEntry::ServiceResolver(resolver) => *resolver,
        other => panic!("wrong kind: {other:?}"),
    }
}

fn with(fields: Value) -> Value {
    let mut object = json!({"Kind": "service-resolver", "Name": "backend"});
    object
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    object
}

#[test]
fn failover_to_peers_decodes_from_hcl_and_round_trips() {
    let entry = decode(parse_document(FAILOVER_HCL).unwrap()).expect("valid");
    round_trips(&entry);
    let ConfigEntry::ServiceResolver(resolver) = &entry else {
        panic!("wrong kind: {entry:?}");
    };
    assert_eq!(resolver.connect_timeout, Some(Duration::from_secs(15)));
    let targets = resolver.failover_targets("");
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].service.as_deref(), Some("backend"));
    assert_eq!(targets[0].peer.as_deref(), Some("cluster-01"));
    assert_eq!(targets[1].service.as_deref(), Some("backend-v2"));
    assert_eq!(targets[1].peer.as_deref(), Some("cluster-03"));
    assert_eq!(entry.to_json()["ConnectTimeout"], "15s");
    assert!(
        resolver.related_services().is_empty(),
        "peer targets are not local services"
    );
}

#[test]
fn snake_case_keys_and_the_older_failover_form_are_accepted() {
    let resolver = resolver(with(json!({
        "connect_timeout": 2_000_000_000u64,
        "default_subset": "v1",
        "subsets": {
            "v1": {"filter": "Service.Meta.version == \"1\"", "only_passing": true},
            "v2": {"Filter": "Service.Tags contains \"v2\""}
        },
        "failover": {"v1": {"service": "backend-legacy"}}
    })));
    assert_eq!(resolver.connect_timeout, Some(Duration::from_secs(2)));
    assert!(resolver.subsets["v1"].only_passing);
    let targets = resolver.failover_targets("");
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].service.as_deref(), Some("backend-legacy"));
    assert!(resolver.failover_targets("v2").is_empty());
    assert_eq!(resolver.related_services(), vec!["backend-legacy"]);
}

#[test]
fn redirect_to_a_peer() {
    let resolver = resolver(with(json!({
        "Redirect": {"Service": "backend", "Peer": "cluster-02"}
    })));
    assert_eq!(
        resolver.redirect_target(),
        Some(("backend", Some("cluster-02")))
    );
}

#[test]
fn consul_validation_texts() {
    let cases = [
        (json!({"Kind": "service-resolver"}), "Name is required"),
        (
            with(json!({"ConnectTimeout": "-5s"})),
            "Bad ConnectTimeout '-5s', must be >= 0",
        ),
        (
            with(json!({"RequestTimeout": -1})),
            "Bad RequestTimeout '-1ns', must be >= 0",
        ),
        (
            with(json!({"Subsets": {"V1": {}}})),
            "Subset \"V1\" is invalid: must be 63 characters or fewer, begin or end with lower case alphanumeric characters, and contain lower case alphanumeric characters or '-' in between",
        ),
        (
            with(json!({"DefaultSubset": "v9"})),
            "DefaultSubset \"v9\" is not a valid subset",
        ),
        (
            with(json!({"Redirect": {"Service": "a"}, "Failover": {"*": {"Service": "b"}}})),
            "Redirect and Failover cannot both be set",
        ),
        (
            with(json!({"Redirect": {"Peer": "cluster-02"}})),
            "Redirect.Peer defined without Redirect.Service",
        ),
        (
            with(json!({"Redirect": {"Service": "a", "Peer": "p", "ServiceSubset": "v1"}})),
            "Redirect.Peer cannot be set with Redirect.ServiceSubset",
        ),
        (
            with(json!({"Failover": {"v1": {"Service": "b"}}})),
            "Bad Failover[\"v1\"]: not a valid subset subset",
        ),
        (
            with(json!({"Failover": {"*": {}}})),
            "Bad Failover[\"*\"]: one of Service, ServiceSubset, Namespace, Targets, or Datacenters is required",
        ),
        (
            with(json!({"Failover": {"*": {"Service": "b", "Targets": [{"Peer": "p"}]}}})),
            "Bad Failover[\"*\"]: Targets cannot be set with Service",
        ),
        (
            with(json!({"Failover": {"*": {"Datacenters": ["dc2"], "Targets": [{"Peer": "p"}]}}})),
            "Bad Failover[\"*\"]: Targets cannot be set with Datacenters",
        ),
        (
            with(json!({"Failover": {"*": {"Targets": [{"Peer": "p", "Datacenter": "dc2"}]}}})),
            "Bad Failover[\"*\"].Targets[0]: Peer cannot be set with Datacenter",
        ),
        (
            with(json!({"Failover": {"*": {"Targets": [{"Peer": "p", "Partition": "x"}]}}})),
            "Bad Failover[\"*\"].Targets[0]: Partition cannot be set with Peer",
        ),
        (
            with(json!({"Failover": {"*": {"Datacenters": ["dc2"]}}})),
            "Bad Failover[\"*\"]: Datacenters is not supported: isthmus reaches other clusters through peerings; use Targets with Peer",
        ),
        (
            with(json!({"Subsets": {"v1": {"Filter": "Service.Tags contains"}}})),
            "",
        ),
        (
            with(json!({"ConnectTimeout": "soon"})),
            "",
        ),
        (
            with(json!({"Failover": {"*": {"Targets": [{"Peer": "p", "Bogus": 1}]}}})),
            "Failover[\"*\"].Targets[0]: unknown field \"Bogus\"",
        ),
    ];
    for (value, expected) in cases {
        let text = error_text(value.clone());
        if expected.is_empty() {
            // Only the start is pinned: the rest is the parser's own message.
            assert!(
                text.starts_with("Filter for subset \"v1\" is not a valid expression: ")
                    || text.starts_with("ConnectTimeout: invalid duration \"soon\""),
                "{value}: {text}"
            );
        } else {
            assert_eq!(text, expected, "{value}");
        }
    }
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};

    use super::super::{decode, round_trips};

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("*".to_owned()),
            "[a-z][a-z0-9-]{0,8}",
            "[A-Za-z0-9_.*-]{0,12}",
            ".{0,20}",
        ]
    }

    fn optional_field(name: &'static str) -> impl Strategy<Value = Option<(String, Value)>> {
        proptest::option::of(word().prop_map(move |w| (name.to_owned(), Value::String(w))))
    }

    fn target() -> impl Strategy<Value = Value> {
        (
            optional_field("Service"),
            optional_field("ServiceSubset"),
            optional_field("Peer"),
            optional_field("Datacenter"),
            optional_field("Partition"),
        )
            .prop_map(|(a, b, c, d, e)| {
                Value::Object([a, b, c, d, e].into_iter().flatten().collect::<Map<_, _>>())
            })
    }

    proptest! {
        /// Any mix of subsets, failovers and redirects decodes to a valid
        /// entry that round-trips, or is refused with a message; never a panic.
        #[test]
        fn resolvers_decode_or_are_refused(
            subsets in proptest::collection::vec(word(), 0..4),
            failover_keys in proptest::collection::vec(word(), 0..3),
            targets in proptest::collection::vec(target(), 0..4),
            redirect in proptest::option::of(target()),
            default_subset in word(),
            timeout in prop_oneof![Just(json!("5s")), Just(json!(-3)), word().prop_map(Value::String)],
        ) {
            let subsets: Map<String, Value> =
                subsets.into_iter().map(|name| (name, json!({"OnlyPassing": true}))).collect();
            let failover: Map<String, Value> = failover_keys
                .into_iter()
                .map(|key| (key, json!({"Targets": targets.clone()})))
                .collect();
            let mut entry = json!({
                "Kind": "service-resolver",
                "Name": "backend",
                "ConnectTimeout": timeout,
                "DefaultSubset": default_subset,
                "Subsets": subsets,
                "Failover": failover,
            });
            if let Some(redirect) = redirect {
                entry["Redirect"] = redirect;
            }
            match decode(entry) {
                Ok(entry) => round_trips(&entry),
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }
    }
}
