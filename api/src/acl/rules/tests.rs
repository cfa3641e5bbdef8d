use super::*;

fn named(family: Family, prefix: bool, name: &str, policy: Level) -> NamedRule {
    NamedRule {
        family,
        prefix,
        name: name.to_owned(),
        policy,
        intentions: None,
    }
}

fn error(text: &str) -> String {
    Rules::parse(text).unwrap_err().to_string()
}

#[test]
fn every_family_parses_from_hcl() {
    let text = r#"
acl = "write"
keyring = "read"
mesh = "write"
operator = "read"
peering = "deny"
agent "a1" { policy = "read" }
agent_prefix "" { policy = "write" }
event "e" { policy = "write" }
event_prefix "" { policy = "read" }
key "k/1" { policy = "list" }
key_prefix "k/" { policy = "write" }
node "n1" { policy = "write" }
node_prefix "" { policy = "read" }
query "q" { policy = "write" }
query_prefix "" { policy = "read" }
service "web" {
  policy = "write"
  intentions = "write"
}
service_prefix "" { policy = "read" }
session "s" { policy = "deny" }
session_prefix "" { policy = "read" }
"#;
    let rules = Rules::parse(text).unwrap();
    assert_eq!(rules.acl, Some(Level::Write));
    assert_eq!(rules.keyring, Some(Level::Read));
    assert_eq!(rules.mesh, Some(Level::Write));
    assert_eq!(rules.operator, Some(Level::Read));
    assert_eq!(rules.peering, Some(Level::Deny));
    assert_eq!(rules.named.len(), 14);
    assert_eq!(
        rules.named[0],
        named(Family::Agent, false, "a1", Level::Read)
    );
    assert_eq!(
        rules.named[4],
        named(Family::Key, false, "k/1", Level::List)
    );
    assert_eq!(
        rules.named[10],
        NamedRule {
            intentions: Some(Level::Write),
            ..named(Family::Service, false, "web", Level::Write)
        }
    );
    assert_eq!(
        rules.named[11],
        named(Family::Service, true, "", Level::Read)
    );
}

#[test]
fn json_form_reads_the_same_as_hcl() {
    let hcl = r#"
operator = "read"
service "web" { policy = "write" }
service_prefix "" {
  policy = "read"
  intentions = "deny"
}
node_prefix "" { policy = "read" }
"#;
    let json = r#"{
  "operator": "read",
  "service": {"web": {"policy": "write"}},
  "service_prefix": {"": {"policy": "read", "intentions": "deny"}},
  "node_prefix": [{"": {"policy": "read"}}]
}"#;
    assert_eq!(Rules::parse(hcl).unwrap(), Rules::parse(json).unwrap());
}

#[test]
fn hcl1_object_form_and_case_are_accepted() {
    let rules = Rules::parse(r#"service = { "web" = { Policy = "WRITE" } }"#).unwrap();
    assert_eq!(
        rules.named,
        vec![named(Family::Service, false, "web", Level::Write)]
    );
    let rules = Rules::parse("node web { policy = \"Read\" }").unwrap();
    assert_eq!(
        rules.named,
        vec![named(Family::Node, false, "web", Level::Read)]
    );
}

#[test]
fn empty_text_is_an_empty_policy() {
    assert_eq!(Rules::parse("").unwrap(), Rules::default());
    assert_eq!(Rules::parse("  \n# nothing\n").unwrap(), Rules::default());
    assert_eq!(Rules::parse("{}").unwrap(), Rules::default());
}

#[test]
fn bad_values_get_consuls_texts() {
    assert_eq!(
        error(r#"service "foo" { policy = "nope" }"#),
        r#"Invalid service policy: &acl.ServiceRule{Name:"foo", Policy:"nope", Intentions:"", EnterpriseRule:acl.EnterpriseRule{}}"#
    );
    assert_eq!(
        error(r#"service_prefix "" { policy = "write" intentions = "allow" }"#),
        r#"Invalid service_prefix intentions policy: &acl.ServiceRule{Name:"", Policy:"write", Intentions:"allow", EnterpriseRule:acl.EnterpriseRule{}}"#
    );
    assert_eq!(
        error(r#"agent "a" { policy = "list" }"#),
        r#"Invalid agent policy: &acl.AgentRule{Node:"a", Policy:"list"}"#
    );
    assert_eq!(
        error(r#"node_prefix "n" {}"#),
        r#"Invalid node_prefix policy: &acl.NodeRule{Name:"n", Policy:"", EnterpriseRule:acl.EnterpriseRule{}}"#
    );
    assert_eq!(
        error(r#"query "q" { policy = "x" }"#),
        r#"Invalid query policy: &acl.PreparedQueryRule{Prefix:"q", Policy:"x"}"#
    );
    assert_eq!(error(r#"acl = "list""#), r#"Invalid acl policy: "list""#);
    assert_eq!(error(r#"mesh = "all""#), r#"Invalid mesh policy: "all""#);
    assert_eq!(
        error(r#"peering = "yes""#),
        r#"Invalid peering policy: "yes""#
    );
    assert_eq!(
        error(r#"operator = "no""#),
        r#"Invalid operator policy: "no""#
    );
    assert_eq!(
        error(r#"keyring = "no""#),
        r#"Invalid keyring policy: "no""#
    );
}

#[test]
fn errors_come_in_consuls_validation_order() {
    // acl is checked first, the other single values after the named rules.
    let text = "operator = \"x\"\nacl = \"y\"\nservice \"s\" { policy = \"z\" }";
    assert_eq!(error(text), r#"Invalid acl policy: "y""#);
    let text = "operator = \"x\"\nservice \"s\" { policy = \"z\" }";
    assert!(error(text).starts_with("Invalid service policy"));
}

#[test]
fn unknown_and_malformed_input_is_refused() {
    assert!(error(r#"servce "web" { policy = "read" }"#).contains(r#"unknown rule "servce""#));
    assert!(error(r#"namespace "x" { policy = "read" }"#).contains("unknown rule"));
    assert!(error(r#"node "n" { policy = "read" intentions = "read" }"#)
        .contains(r#"unknown key "intentions""#));
    assert!(error(r#"service "web" { policy = "read" color = "red" }"#).contains("unknown key"));
    assert!(error(r#"service "a" "b" { policy = "read" }"#).contains("exactly one name"));
    assert!(error(r#"service { policy = "read" }"#).contains(r#"service "policy" must be a block"#));
    assert!(error(r#"service = "web""#).contains("takes a name and a block"));
    assert!(error(r#"acl { policy = "read" }"#).contains("not a block"));
    assert!(error("acl = read").contains("must be a string"));
    assert!(error(r#"service "x" { policy = 1 }"#).contains("must be a string"));
    assert!(error(r#"service "x" { inner "y" {} }"#).contains("only policy and intentions"));
    assert!(error(r#"{"service": "web"}"#).contains("must be an object"));
    assert!(error(r#"["service"]"#).starts_with("Failed to parse ACL rules"));
    assert!(error("service \"x\" {").starts_with("Failed to parse ACL rules: "));
    assert!(error(r#"{"acl": "read""#).starts_with("Failed to parse ACL rules: "));
}

#[test]
fn duplicate_arguments_are_refused_like_consul() {
    let text = r#"service "x" { policy = "read" policy = "write" }"#;
    assert_eq!(
        error(text),
        r#"Failed to parse ACL rules: The argument "policy" was already set. Each argument can only be defined once"#
    );
    assert!(error("acl = \"read\"\nacl = \"write\"").contains("already set"));
    // Repeating a rule for the same name is allowed; the merge decides.
    let rules = Rules::parse("node \"n\" { policy = \"read\" }\nnode \"n\" { policy = \"deny\" }");
    assert_eq!(rules.unwrap().named.len(), 2);
}

#[test]
fn bounds_are_enforced() {
    let long = format!("# {}\n", "x".repeat(MAX_RULES_BYTES));
    assert!(error(&long).contains("too long"));

    let deep = format!(
        "acl = {}{}",
        "[".repeat(MAX_NESTING + 1),
        "]".repeat(MAX_NESTING + 1)
    );
    assert!(error(&deep).contains("nested too deeply"));
    // Brackets inside strings do not count.
    let braces = format!("service \"{}\" {{ policy = \"read\" }}", "{".repeat(100));
    Rules::parse(&braces).unwrap();

    let name = "n".repeat(MAX_NAME_BYTES + 1);
    assert!(error(&format!("node \"{name}\" {{ policy = \"read\" }}")).contains("name is too long"));
    let ok = "n".repeat(MAX_NAME_BYTES);
    Rules::parse(&format!("node \"{ok}\" {{ policy = \"read\" }}")).unwrap();

    let many: String = (0..=MAX_RULE_COUNT)
        .map(|i| format!("node \"{i}\" {{ policy = \"read\" }}\n"))
        .collect();
    assert!(error(&many).contains("too many rules"));
}

#[test]
fn service_identity_is_what_consul_synthesizes() {
    let expected = Rules::parse(
        r#"
service "web" { policy = "write" }
service "web-sidecar-proxy" { policy = "write" }
service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
"#,
    )
    .unwrap();
    assert_eq!(Rules::service_identity("web"), expected);
}

#[test]
fn node_identity_is_what_consul_synthesizes() {
    let expected = Rules::parse(
        "node \"n1\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"read\" }",
    )
    .unwrap();
    assert_eq!(Rules::node_identity("n1"), expected);
}

#[test]
fn rendering_reads_back_the_same() {
    let rules = Rules::parse(
        r#"
acl = "read"
peering = "write"
service "we\"b${x}%{y}\\\u00e9\n" {
  policy = "write"
  intentions = "deny"
}
key_prefix "a/b" { policy = "list" }
"#,
    )
    .unwrap();
    assert_eq!(rules.named[0].name, "we\"b${x}%{y}\\\u{e9}\n");
    assert_eq!(Rules::parse(&rules.to_hcl()).unwrap(), rules);
}

#[test]
fn hcl1_layouts_consul_accepts() {
    let text = "service_prefix \"\" { policy = \"write\" intentions = \"write\" }, node \"n\" { policy = \"read\", }\n/* c */ // c\nacl = \"read\"";
    let rules = Rules::parse(text).unwrap();
    assert_eq!(rules.named.len(), 2);
    assert_eq!(rules.named[0].intentions, Some(Level::Write));
    assert_eq!(rules.acl, Some(Level::Read));
    assert!(error("service \"x\" { policy = \"read }").contains("At 1:"));
    assert!(error("/* open").contains("comment not terminated"));
}
