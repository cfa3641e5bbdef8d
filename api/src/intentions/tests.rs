use http::{HeaderMap, HeaderValue, Method};
use serde_json::{json, Value};

use super::*;
use crate::config_entry::ConfigEntry;

/// Builds validated entries from Consul-shaped JSON, as the server would.
fn entries(documents: Value) -> Vec<ServiceIntentions> {
    let Value::Array(documents) = documents else {
        panic!("expected a list of entries")
    };
    documents
        .into_iter()
        .map(|mut document| {
            document["Kind"] = json!("service-intentions");
            match ConfigEntry::from_json(document) {
                Ok(ConfigEntry::ServiceIntentions(entry)) => entry,
                other => panic!("not a valid service-intentions entry: {other:?}"),
            }
        })
        .collect()
}

fn l4_allow(decision: Decision<'_>) -> Option<bool> {
    match decision {
        Decision::L4 { allow, .. } => Some(allow),
        Decision::L7(_) => None,
    }
}

#[test]
fn precedence_follows_consul() {
    assert_eq!(precedence("default", "api", "default", "web"), 9);
    assert_eq!(precedence("default", "api", "default", "*"), 8);
    assert_eq!(precedence("default", "api", "*", "*"), 7);
    assert_eq!(precedence("default", "*", "default", "web"), 6);
    assert_eq!(precedence("default", "*", "default", "*"), 5);
    assert_eq!(precedence("default", "*", "*", "*"), 4);
    assert_eq!(precedence("*", "*", "default", "web"), 3);
    assert_eq!(precedence("*", "*", "*", "*"), 1);
}

#[test]
fn l4_decisions_follow_precedence_and_peers() {
    let set = IntentionSet::compile(
        &entries(json!([
            // 9 and 8 for api.
            {"Name": "api", "Sources": [
                {"Name": "web", "Action": "allow"},
                {"Name": "*", "Action": "deny"},
                {"Name": "web", "Peer": "east", "Action": "deny"},
                {"Name": "*", "Peer": "west", "Action": "allow"}
            ]},
            // 6 and 5 for every destination; "admin" is allowed everywhere but denied by api's 8.
            {"Name": "*", "Sources": [
                {"Name": "admin", "Action": "allow"},
                {"Name": "*", "Action": "deny"},
                {"Name": "ops", "Peer": "east", "Action": "allow"}
            ]},
            {"Name": "db", "Sources": [{"Name": "web", "Action": "allow"}]}
        ])),
        true,
    );
    let cases: &[(Source<'_>, &str, bool, &str)] = &[
        (
            Source::local("web"),
            "api",
            true,
            "Matched L4 intention: web => api (Action: allow, Precedence: 9)",
        ),
        (
            Source::local("other"),
            "api",
            false,
            "Matched L4 intention: * => api (Action: deny, Precedence: 8)",
        ),
        // The exact destination's `*` source (8) beats the wildcard destination's exact source (6).
        (
            Source::local("admin"),
            "api",
            false,
            "Matched L4 intention: * => api (Action: deny, Precedence: 8)",
        ),
        (
            Source::local("admin"),
            "cache",
            true,
            "Matched L4 intention: admin => * (Action: allow, Precedence: 6)",
        ),
        (
            Source::local("other"),
            "cache",
            false,
            "Matched L4 intention: * => * (Action: deny, Precedence: 5)",
        ),
        // A peer source matches only that peer's callers, and a local source no peer's.
        (
            Source::from_peer("east", "web"),
            "api",
            false,
            "Matched L4 intention: peer:east/web => api (Action: deny, Precedence: 9)",
        ),
        (
            Source::from_peer("north", "web"),
            "api",
            true,
            "Default intention policy",
        ),
        (
            Source::from_peer("north", "web"),
            "db",
            true,
            "Default intention policy",
        ),
        // `*` with a Peer matches any service from that peer.
        (
            Source::from_peer("west", "anything"),
            "api",
            true,
            "Matched L4 intention: peer:west/* => api (Action: allow, Precedence: 8)",
        ),
        (
            Source::from_peer("east", "ops"),
            "cache",
            true,
            "Matched L4 intention: peer:east/ops => * (Action: allow, Precedence: 6)",
        ),
        (
            Source::from_peer("west", "anything"),
            "cache",
            true,
            "Default intention policy",
        ),
        (
            Source::local("web"),
            "db",
            true,
            "Matched L4 intention: web => db (Action: allow, Precedence: 9)",
        ),
        (
            Source::local("other"),
            "db",
            false,
            "Matched L4 intention: * => * (Action: deny, Precedence: 5)",
        ),
    ];
    for (source, destination, allow, reason) in cases {
        let decision = set.decide(source, destination);
        assert_eq!(
            l4_allow(decision),
            Some(*allow),
            "{source:?} => {destination}"
        );
        assert_eq!(
            decision.allows_connection_without_http(),
            *allow,
            "{source:?} => {destination}"
        );
        assert_eq!(decision.reason(), *reason, "{source:?} => {destination}");
    }
}

#[test]
fn default_policy_decides_when_nothing_matches() {
    let intentions =
        entries(json!([{"Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]}]));
    for default_allow in [true, false] {
        let set = IntentionSet::compile(&intentions, default_allow);
        assert_eq!(set.default_allow(), default_allow);
        for (source, destination) in [
            (Source::local("other"), "api"),
            (Source::local("web"), "db"),
        ] {
            let decision = set.decide(&source, destination);
            assert!(matches!(decision, Decision::L4 { matched: None, .. }));
            assert_eq!(decision.allows_connection_without_http(), default_allow);
            assert_eq!(decision.reason(), "Default intention policy");
        }
    }
    let empty = IntentionSet::compile(&[], false);
    assert!(!empty
        .decide(&Source::local("web"), "api")
        .allows_connection_without_http());
}

#[test]
fn empty_caller_namespace_reads_as_default() {
    let set = IntentionSet::compile(
        &entries(json!([{"Name": "api", "Sources": [{"Name": "web", "Action": "deny"}]}])),
        true,
    );
    let source = Source {
        peer: None,
        namespace: "",
        name: "web",
    };
    assert_eq!(l4_allow(set.decide(&source, "api")), Some(false));
}

#[test]
fn deny_wins_a_precedence_tie() {
    // One destination may appear in two entries when entries are built in code.
    let set = IntentionSet::compile(
        &entries(json!([
            {"Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]},
            {"Name": "api", "Sources": [{"Name": "web", "Action": "deny"}]},
            {"Name": "db", "Sources": [{"Name": "web", "Action": "allow"}]},
            {"Name": "db", "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]}
        ])),
        true,
    );
    assert_eq!(
        l4_allow(set.decide(&Source::local("web"), "api")),
        Some(false)
    );
    // An L7 rule may deny, so it outranks an allow of equal precedence.
    assert!(matches!(
        set.decide(&Source::local("web"), "db"),
        Decision::L7(_)
    ));

    // The order itself, on rules built directly.
    let rule = |precedence, verdict| Rule {
        peer: None,
        namespace: "default".into(),
        name: "web".into(),
        precedence,
        verdict,
    };
    let intention = |action| MatchedIntention {
        source: "web".to_owned(),
        destination: "api".to_owned(),
        precedence: 9,
        action: Some(action),
    };
    let allow = rule(
        9,
        Verdict::L4 {
            allow: true,
            intention: intention(IntentionAction::Allow),
        },
    );
    let deny = rule(
        9,
        Verdict::L4 {
            allow: false,
            intention: intention(IntentionAction::Deny),
        },
    );
    let weaker_deny = rule(
        8,
        Verdict::L4 {
            allow: false,
            intention: intention(IntentionAction::Deny),
        },
    );
    assert_eq!(evaluation_order(&deny, &allow), Ordering::Less);
    assert_eq!(evaluation_order(&allow, &deny), Ordering::Greater);
    assert_eq!(evaluation_order(&allow, &weaker_deny), Ordering::Less);
}

#[test]
fn l7_intention_without_http_context_is_denied() {
    let set = IntentionSet::compile(
        &entries(json!([{"Name": "api", "Sources": [
            {"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]},
            {"Name": "web", "Peer": "east", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}
        ]}])),
        true,
    );
    let decision = set.decide(&Source::local("web"), "api");
    assert!(!decision.allows_connection_without_http());
    assert_eq!(
        decision.reason(),
        "Matched L7 intention: web => api (Precedence: 9), but the request has no HTTP context"
    );
    let Decision::L7(rules) = decision else {
        panic!("expected L7")
    };
    assert_eq!(rules.intention().action, None);
    assert_eq!(
        set.decide(&Source::from_peer("east", "web"), "api").reason(),
        "Matched L7 intention: peer:east/web => api (Precedence: 9), but the request has no HTTP context"
    );
}

/// A request header: name and value.
type Header = (&'static str, &'static str);

/// A set whose only intention is `web => api` with these permissions.
fn l7_set(permissions: Value, default_allow: bool) -> IntentionSet {
    IntentionSet::compile(
        &entries(
            json!([{"Name": "api", "Sources": [{"Name": "web", "Permissions": permissions}]}]),
        ),
        default_allow,
    )
}

fn authorize(set: &IntentionSet, method: Method, path: &str, headers: &[Header]) -> bool {
    let Decision::L7(rules) = set.decide(&Source::local("web"), "api") else {
        panic!("expected L7")
    };
    let mut header_map = HeaderMap::new();
    for (name, value) in headers {
        header_map.append(*name, HeaderValue::from_static(value));
    }
    let path = crate::http_path::normalize(path).unwrap();
    rules.authorize(&method, &path, &header_map)
}

#[test]
fn l7_paths_match_exactly_by_prefix_or_by_whole_regex() {
    let set = l7_set(
        json!([
            {"Action": "allow", "HTTP": {"PathExact": "/health"}},
            {"Action": "allow", "HTTP": {"PathPrefix": "/public/"}},
            {"Action": "allow", "HTTP": {"PathRegex": "/v[0-9]+/items"}}
        ]),
        false,
    );
    let cases = [
        ("/health", true),
        ("/health/", false),
        ("/healthz", false),
        ("/public/a/b", true),
        ("/public", false),
        ("/v1/items", true),
        ("/v12/items", true),
        // Anchored: neither a longer path nor a prefix before it matches.
        ("/v1/items/7", false),
        ("/x/v1/items", false),
        ("/other", false),
    ];
    for (path, allowed) in cases {
        assert_eq!(authorize(&set, Method::GET, path, &[]), allowed, "{path}");
    }
}

#[test]
fn l7_methods_restrict_and_first_match_decides() {
    let set = l7_set(
        json!([
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
            {"Action": "allow", "HTTP": {"PathPrefix": "/", "Methods": ["GET", "HEAD"]}},
            // Never reached for /admin: the deny above comes first.
            {"Action": "allow", "HTTP": {"PathPrefix": "/admin", "Methods": ["POST"]}}
        ]),
        false,
    );
    assert!(authorize(&set, Method::GET, "/items", &[]));
    assert!(authorize(&set, Method::HEAD, "/items", &[]));
    assert!(!authorize(&set, Method::POST, "/items", &[]));
    assert!(!authorize(&set, Method::GET, "/admin", &[]));
    assert!(!authorize(&set, Method::POST, "/admin/users", &[]));
}

#[test]
fn l7_unmatched_requests_fall_to_the_default_policy() {
    let permissions = json!([{"Action": "deny", "HTTP": {"PathPrefix": "/admin"}}]);
    assert!(authorize(
        &l7_set(permissions.clone(), true),
        Method::GET,
        "/items",
        &[]
    ));
    assert!(!authorize(
        &l7_set(permissions, false),
        Method::GET,
        "/items",
        &[]
    ));
}

#[test]
fn l7_header_matchers_and_invert() {
    let header_rule = |rule: Value| {
        l7_set(
            json!([{"Action": "allow", "HTTP": {"Header": [rule]}}]),
            false,
        )
    };
    let cases: &[(Value, &[Header], bool)] = &[
        (
            json!({"Name": "x-env", "Present": true}),
            &[("x-env", "")],
            true,
        ),
        (json!({"Name": "x-env", "Present": true}), &[], false),
        (
            json!({"Name": "x-env", "Present": true, "Invert": true}),
            &[],
            true,
        ),
        (
            json!({"Name": "x-env", "Present": true, "Invert": true}),
            &[("x-env", "prod")],
            false,
        ),
        (
            json!({"Name": "X-Env", "Exact": "prod"}),
            &[("x-env", "prod")],
            true,
        ),
        (
            json!({"Name": "x-env", "Exact": "prod"}),
            &[("x-env", "production")],
            false,
        ),
        (json!({"Name": "x-env", "Exact": "prod"}), &[], false),
        (
            json!({"Name": "x-env", "Exact": "prod", "Invert": true}),
            &[],
            true,
        ),
        (
            json!({"Name": "x-env", "Exact": "prod", "Invert": true}),
            &[("x-env", "prod")],
            false,
        ),
        (
            json!({"Name": "x-env", "Prefix": "pro"}),
            &[("x-env", "prod")],
            true,
        ),
        (
            json!({"Name": "x-env", "Prefix": "pro"}),
            &[("x-env", "staging")],
            false,
        ),
        (
            json!({"Name": "x-env", "Suffix": "od"}),
            &[("x-env", "prod")],
            true,
        ),
        (
            json!({"Name": "x-env", "Suffix": "od"}),
            &[("x-env", "prod1")],
            false,
        ),
        (
            json!({"Name": "x-env", "Regex": "pr[a-z]+"}),
            &[("x-env", "prod")],
            true,
        ),
        // Anchored: the regex must match the whole value.
        (
            json!({"Name": "x-env", "Regex": "pr[a-z]+"}),
            &[("x-env", "prod-1")],
            false,
        ),
        (
            json!({"Name": "x-env", "Regex": "pr[a-z]+", "Invert": true}),
            &[("x-env", "prod-1")],
            true,
        ),
        // A repeated header is matched on its joined values, so it cannot dodge a rule.
        (
            json!({"Name": "x-env", "Exact": "prod"}),
            &[("x-env", "prod"), ("x-env", "dev")],
            false,
        ),
        (
            json!({"Name": "x-env", "Exact": "prod,dev"}),
            &[("x-env", "prod"), ("x-env", "dev")],
            true,
        ),
    ];
    for (rule, headers, allowed) in cases {
        assert_eq!(
            authorize(&header_rule(rule.clone()), Method::GET, "/", headers),
            *allowed,
            "{rule} with {headers:?}"
        );
    }
}

#[test]
fn l7_every_condition_of_a_permission_must_hold() {
    let set = l7_set(
        json!([{"Action": "allow", "HTTP": {
            "PathPrefix": "/api",
            "Methods": ["PUT"],
            "Header": [{"Name": "x-a", "Present": true}, {"Name": "x-b", "Exact": "1"}]
        }}]),
        false,
    );
    assert!(authorize(
        &set,
        Method::PUT,
        "/api/x",
        &[("x-a", "z"), ("x-b", "1")]
    ));
    assert!(!authorize(&set, Method::PUT, "/api/x", &[("x-a", "z")]));
    assert!(!authorize(
        &set,
        Method::GET,
        "/api/x",
        &[("x-a", "z"), ("x-b", "1")]
    ));
    assert!(!authorize(
        &set,
        Method::PUT,
        "/x",
        &[("x-a", "z"), ("x-b", "1")]
    ));
}

#[test]
fn unvalidated_permissions_fail_closed() {
    use crate::config_entry::{IntentionHttpPermission, IntentionPermission, SourceIntention};
    let broken_regex = IntentionHttpPermission {
        path_regex: Some("(".to_owned()),
        ..Default::default()
    };
    let entry = ServiceIntentions {
        name: "api".to_owned(),
        sources: vec![SourceIntention {
            name: "web".to_owned(),
            permissions: vec![
                IntentionPermission {
                    action: IntentionAction::Allow,
                    http: Some(broken_regex.clone()),
                },
                IntentionPermission {
                    action: IntentionAction::Deny,
                    http: Some(broken_regex),
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let set = IntentionSet::compile(&[entry], true);
    assert!(!authorize(&set, Method::GET, "/", &[]));
}

#[test]
fn snapshots_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<IntentionSet>();
}

#[test]
fn l7_path_rules_judge_the_normalized_path() {
    // Each rule kind guards /admin; each spelling of /admin/secret is denied.
    for guard in [
        json!({"PathExact": "/admin/secret"}),
        json!({"PathPrefix": "/admin"}),
        json!({"PathRegex": "/admin/.*"}),
    ] {
        let set = l7_set(
            json!([
                {"Action": "deny", "HTTP": guard},
                {"Action": "allow", "HTTP": {"PathPrefix": "/"}}
            ]),
            false,
        );
        for spelling in [
            "/admin/secret",
            "/%61dmin/secret",
            "//admin/secret",
            "/./admin/secret",
            "/public/../admin/secret",
            "/public/%2e%2E/admin/secret",
            "/admin//secret",
        ] {
            assert!(
                !authorize(&set, Method::GET, spelling, &[]),
                "{spelling} passed {guard}"
            );
        }
        assert!(authorize(&set, Method::GET, "/public/./x", &[]), "{guard}");
    }
}
