//! Every refusal, with its exact text.

use serde_json::{json, Value};

use super::{error_text, exported, intentions};
use crate::config_entry::*;

#[test]
fn unknown_and_duplicate_keys_are_refused_where_they_are() {
    let cases = [
        (
            json!({"Kind": "service-intentions", "Name": "api", "Foo": 1}),
            r#"unknown field "Foo""#,
        ),
        (
            intentions(json!([{"Name": "web", "Acton": "allow"}])),
            r#"Sources[0]: unknown field "Acton""#,
        ),
        (
            intentions(
                json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"Path": "/"}}]}]),
            ),
            r#"Sources[0].Permissions[0].HTTP: unknown field "Path""#,
        ),
        (
            exported(json!([{"Name": "web", "Consumers": [{"Peer": "a", "PeerName": "b"}]}])),
            r#"Services[0].Consumers[0]: duplicate field "PeerName" (already given as "Peer")"#,
        ),
        (
            json!({"Kind": "service-intentions", "Name": "api", "name": "web"}),
            r#"duplicate field "name" (already given as "Name")"#,
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(error_text(value), expected);
    }
}

#[test]
fn type_mismatches_name_the_field() {
    let cases = [
        (json!({"Kind": 5, "Name": "x"}), "Kind must be a string"),
        (
            json!({"Kind": "service-intentions", "Name": ["api"]}),
            "Name must be a string",
        ),
        (
            intentions(json!({"Name": 1})),
            "Sources[0].Name must be a string",
        ),
        (
            intentions(json!("web")),
            "Sources must be a list of objects",
        ),
        (intentions(json!(["web"])), "Sources[0] must be an object"),
        (
            intentions(
                json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"Methods": "GET"}}]}]),
            ),
            "Sources[0].Permissions[0].HTTP.Methods must be a list of strings",
        ),
        (
            intentions(
                json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"Header": [{"Name": "a", "Present": "yes"}]}}]}]),
            ),
            "Sources[0].Permissions[0].HTTP.Header[0].Present must be true or false",
        ),
        (
            json!({"Kind": "exported-services", "Name": "default", "CreateIndex": -1}),
            "CreateIndex must be a non-negative integer",
        ),
        (
            json!({"Kind": "exported-services", "Name": "default", "Meta": []}),
            "Meta must be a map of strings",
        ),
        (
            intentions(json!([{"Name": "web", "Action": "allow", "Type": "other"}])),
            "Sources[0].Type must be set to 'consul'",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(error_text(value), expected);
    }
}

#[test]
fn unsupported_kinds_are_refused() {
    let expected = r#"unsupported config entry kind "service-splitter": isthmus supports exported-services, service-intentions, service-resolver, service-defaults, proxy-defaults, mesh"#;
    assert_eq!(
        validate_kind("service-splitter")
            .expect_err("kind")
            .to_string(),
        expected
    );
    assert_eq!(
        error_text(json!({"Kind": "service-splitter", "Name": "web"})),
        expected
    );
    assert_eq!(
        validate_kind("exported-services"),
        Ok(KIND_EXPORTED_SERVICES)
    );
    assert_eq!(
        validate_kind("service-intentions"),
        Ok(KIND_SERVICE_INTENTIONS)
    );
}

#[test]
fn names_are_checked() {
    for good in ["web", "*", "a.b_c-D9", &"x".repeat(253)] {
        assert_eq!(validate_name(good), Ok(()), "{good}");
    }
    let cases = [
        ("", r#"invalid name "": must not be empty"#),
        (
            "a b",
            r#"invalid name "a b": only letters, digits, '.', '_' and '-' are allowed"#,
        ),
        (
            "a/b",
            r#"invalid name "a/b": only letters, digits, '.', '_' and '-' are allowed"#,
        ),
        (
            "web*",
            r#"invalid name "web*": the wildcard '*' must be the whole name"#,
        ),
    ];
    for (name, expected) in cases {
        assert_eq!(validate_name(name).expect_err(name).to_string(), expected);
    }
    let long = "x".repeat(254);
    assert!(validate_name(&long)
        .expect_err("long")
        .to_string()
        .ends_with("is longer than 253 characters"));
    assert_eq!(
        error_text(intentions(json!([{"Name": "we b", "Action": "allow"}]))),
        r#"Sources[0].Name: invalid name "we b": only letters, digits, '.', '_' and '-' are allowed"#
    );
}

#[test]
fn exported_services_validation_errors() {
    let cases = [
        (json!({"Kind": "exported-services", "Services": []}), "Name is required"),
        (
            json!({"Kind": "exported-services", "Name": "prod"}),
            r#"exported-services Name must be "default", not "prod": isthmus has no admin partitions"#,
        ),
        (exported(json!([{"Consumers": [{"Peer": "east"}]}])), "Services[0]: service name cannot be empty"),
        (exported(json!([{"Name": "web", "Consumers": []}])), "Services[0]: must have at least one consumer"),
        (exported(json!([{"Name": "web"}])), "Services[0]: must have at least one consumer"),
        (
            exported(json!([{"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west", "Partition": "p"}]}])),
            "Services[0].Consumers[1]: must define at most one of Peer, Partition, or SamenessGroup",
        ),
        (
            exported(json!([{"Name": "web", "Consumers": [{}]}])),
            "Services[0].Consumers[0]: must define one of Peer, Partition, or SamenessGroup",
        ),
        (
            exported(json!([{"Name": "web", "Consumers": [{"Peer": "*"}]}])),
            "Services[0].Consumers[0].Peer: exporting to all peers (wildcard) is not supported",
        ),
        (
            exported(json!([{"Name": "web", "Consumers": [{"Peer": "a"}]}, {"Name": "web", "Consumers": [{"Peer": "b"}]}])),
            r#"Services[1]: service "web" is listed more than once; merge its consumers into one entry"#,
        ),
        (
            exported(json!([{"Name": "web", "Namespace": "*", "Consumers": [{"Peer": "a"}]}])),
            "Services[0]: service name must be wildcard if namespace is wildcard",
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(error_text(value), expected);
    }
}

#[test]
fn service_intentions_validation_errors() {
    let http = |http: Value| {
        intentions(json!([{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": http}]}]))
    };
    let header = |header: Value| http(json!({"Header": [header]}));
    let cases = [
        (json!({"Kind": "service-intentions", "Sources": []}), "Name is required".to_owned()),
        (intentions(json!([{"Action": "allow"}])), "Sources[0].Name is required".to_owned()),
        (
            intentions(json!([{"Name": "web", "Peer": "*", "Action": "allow"}])),
            "Sources[0].Peer: cannot use wildcard '*' in peer".to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Peer": "p", "Action": "allow"}, {"Name": "web", "Peer": "p", "Action": "deny"}])),
            r#"Sources[1] defines peer("p") "web" more than once"#.to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Action": "allow"}, {"Name": "web", "Namespace": "default", "Action": "deny"}])),
            r#"Sources[1] defines "web" more than once"#.to_owned(),
        ),
        (intentions(json!([{"Name": "web"}])), "Sources[0].Action must be set to 'allow' or 'deny'".to_owned()),
        (intentions(json!([{"Name": "web", "Action": "permit"}])), "Sources[0].Action must be set to 'allow' or 'deny'".to_owned()),
        (
            intentions(json!([{"Name": "web", "Action": "allow", "Permissions": [{"Action": "allow", "HTTP": {"PathExact": "/"}}]}])),
            "Sources[0].Action must be omitted if Permissions are specified".to_owned(),
        ),
        (
            json!({"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathExact": "/"}}]}]}),
            "Sources[0].Permissions cannot be specified on intentions with wildcarded destinations".to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Permissions": [{"Action": "maybe", "HTTP": {"PathExact": "/"}}]}])),
            "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'".to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Permissions": [{"HTTP": {"PathExact": "/"}}]}])),
            "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'".to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Permissions": [{"Action": "", "HTTP": {"PathExact": "/"}}]}])),
            "Sources[0].Permissions[0].Action must be set to 'allow' or 'deny'".to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Permissions": [{"Action": "allow"}]}])),
            "Sources[0].Permissions[0].HTTP should not be empty".to_owned(),
        ),
        (http(json!({})), "Sources[0].Permissions[0].HTTP should not be empty".to_owned()),
        (
            http(json!({"PathExact": "/a", "PathPrefix": "/b"})),
            "Sources[0].Permissions[0].HTTP: at most one of PathExact, PathPrefix, or PathRegex may be configured".to_owned(),
        ),
        (http(json!({"PathExact": "x"})), r#"Sources[0].Permissions[0].HTTP.PathExact doesn't start with '/': "x""#.to_owned()),
        (http(json!({"PathPrefix": "api"})), r#"Sources[0].Permissions[0].HTTP.PathPrefix doesn't start with '/': "api""#.to_owned()),
        (
            http(json!({"Methods": ["GET", "get"]})),
            r#"Sources[0].Permissions[0].HTTP.Methods contains an invalid method "get""#.to_owned(),
        ),
        (
            http(json!({"Methods": ["GET", "GET"]})),
            r#"Sources[0].Permissions[0].HTTP.Methods contains "GET" more than once"#.to_owned(),
        ),
        (header(json!({"Exact": "x"})), "Sources[0].Permissions[0].HTTP.Header[0] missing required Name field".to_owned()),
        (
            header(json!({"Name": "x-a", "Exact": "x", "Prefix": "y"})),
            "Sources[0].Permissions[0].HTTP.Header[0] should only contain one of Present, Exact, Prefix, Suffix, or Regex".to_owned(),
        ),
        (
            header(json!({"Name": "x-a"})),
            "Sources[0].Permissions[0].HTTP.Header[0] must set one of Present, Exact, Prefix, Suffix, or Regex".to_owned(),
        ),
        (
            header(json!({"Name": "bad name", "Present": true})),
            r#"Sources[0].Permissions[0].HTTP.Header[0].Name is not a valid HTTP header name: "bad name""#.to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Namespace": "*", "Action": "allow"}])),
            "Sources[0].Name must be '*' when Namespace is '*'".to_owned(),
        ),
        (
            intentions(json!([{"Name": "web", "Peer": "p", "Partition": "default", "Action": "allow"}])),
            "Sources[0]: cannot set both Peer and Partition".to_owned(),
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(error_text(value), expected);
    }

    let path_regex = error_text(http(json!({"PathRegex": "(unclosed"})));
    assert!(
        path_regex.starts_with("Sources[0].Permissions[0].HTTP.PathRegex: invalid regex: "),
        "{path_regex}"
    );
    let header_regex = error_text(header(json!({"Name": "x-a", "Regex": "[z-a]"})));
    assert!(
        header_regex.starts_with("Sources[0].Permissions[0].HTTP.Header[0].Regex: invalid regex: "),
        "{header_regex}"
    );
}
