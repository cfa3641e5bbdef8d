use super::*;
use crate::acl::wire::ANONYMOUS_TOKEN_ACCESSOR_ID;

fn authz(default_allow: bool, policies: &[&str]) -> Authorizer {
    let rules: Vec<Rules> = policies.iter().map(|p| Rules::parse(p).unwrap()).collect();
    Authorizer::new("acc-1", default_allow, &rules)
}

use Access::{Read, Write};
use Resource::*;

#[test]
fn allow_all_and_management_allow_everything() {
    for a in [Authorizer::allow_all(), Authorizer::management("m")] {
        assert!(a.is_unrestricted());
        for resource in [
            Acl, Agent, Intention, Mesh, Node, Operator, Peering, Service,
        ] {
            assert!(a.allows(resource, "x", Write));
        }
        assert!(a.allows_all(Service, Write));
    }
    assert_eq!(Authorizer::management("m").accessor_id(), "m");
}

#[test]
fn no_rule_falls_to_the_default_policy_but_acl_needs_a_rule() {
    let deny = authz(false, &[]);
    let allow = authz(true, &[]);
    for resource in [Agent, Intention, Mesh, Node, Operator, Peering, Service] {
        assert!(!deny.allows(resource, "x", Read), "{resource:?}");
        assert!(allow.allows(resource, "x", Write), "{resource:?}");
    }
    assert!(!allow.allows(Acl, "", Read));
    assert!(!deny.allows(Acl, "", Read));
    assert!(authz(true, &["acl = \"read\""]).allows(Acl, "", Read));
}

#[test]
fn read_grants_read_and_write_grants_both_and_deny_refuses() {
    for (resource, family) in [(Service, "service"), (Node, "node"), (Agent, "agent")] {
        let a = authz(
            true,
            &[&format!(
                "{family} \"r\" {{ policy = \"read\" }}\n{family} \"w\" {{ policy = \"write\" }}\n{family} \"d\" {{ policy = \"deny\" }}"
            )],
        );
        assert!(a.allows(resource, "r", Read));
        assert!(!a.allows(resource, "r", Write));
        assert!(a.allows(resource, "w", Read));
        assert!(a.allows(resource, "w", Write));
        assert!(!a.allows(resource, "d", Read));
        assert!(a.allows(resource, "other", Write), "default allow");
    }
}

#[test]
fn exact_beats_prefix_and_the_longest_prefix_wins() {
    let a = authz(
        false,
        &[r#"
service_prefix "" { policy = "read" }
service_prefix "api" { policy = "write" }
service_prefix "api-internal" { policy = "deny" }
service "api-internal-ok" { policy = "read" }
service "api" { policy = "deny" }
"#],
    );
    assert!(a.allows(Service, "web", Read));
    assert!(!a.allows(Service, "web", Write));
    assert!(a.allows(Service, "api-v2", Write));
    assert!(
        !a.allows(Service, "api", Read),
        "exact deny beats prefix write"
    );
    assert!(!a.allows(Service, "api-internal-x", Read));
    assert!(a.allows(Service, "api-internal-ok", Read));
    assert!(!a.allows(Service, "api-internal-ok", Write));
}

#[test]
fn merged_policies_deny_beats_write_beats_read() {
    let a = authz(
        false,
        &[
            "service \"s\" { policy = \"read\" }\nnode \"n\" { policy = \"write\" }\noperator = \"read\"",
            "service \"s\" { policy = \"write\" }\nnode \"n\" { policy = \"deny\" }\noperator = \"write\"",
        ],
    );
    assert!(a.allows(Service, "s", Write));
    assert!(!a.allows(Node, "n", Read));
    assert!(a.allows(Operator, "", Write));
    // Same within one policy.
    let a = authz(true, &["mesh = \"write\"", "mesh = \"deny\""]);
    assert!(!a.allows(Mesh, "", Read));
    // A prefix and an exact rule for the same name are separate rules.
    let a = authz(
        false,
        &[
            "service_prefix \"s\" { policy = \"deny\" }",
            "service \"s\" { policy = \"read\" }",
        ],
    );
    assert!(a.allows(Service, "s", Read));
    assert!(!a.allows(Service, "s2", Read));
}

#[test]
fn intentions_default_to_read_under_a_read_or_write_service_rule() {
    let a = authz(
        true,
        &[r#"
service "w" { policy = "write" }
service "r" { policy = "read" }
service "d" { policy = "deny" }
service "i" {
  policy = "read"
  intentions = "write"
}
service_prefix "p" {
  policy = "write"
  intentions = "deny"
}
"#],
    );
    assert!(a.allows(Intention, "w", Read));
    assert!(!a.allows(Intention, "w", Write));
    assert!(a.allows(Intention, "r", Read));
    assert!(!a.allows(Intention, "d", Read));
    assert!(a.allows(Intention, "i", Write));
    assert!(!a.allows(Intention, "p1", Read));
    assert!(a.allows(Service, "p1", Write));
    assert!(a.allows(Intention, "unnamed", Write), "default allow");
}

#[test]
fn intentions_merge_separately_and_unset_loses() {
    let a = authz(
        false,
        &[
            "service \"s\" { policy = \"write\" }",
            "service \"s\" { policy = \"read\" intentions = \"write\" }",
        ],
    );
    assert!(a.allows(Service, "s", Write));
    assert!(a.allows(Intention, "s", Write));
    // A merged deny with no intentions given defaults intentions to deny.
    let a = authz(
        true,
        &[
            "service \"s\" { policy = \"write\" }",
            "service \"s\" { policy = \"deny\" }",
        ],
    );
    assert!(!a.allows(Intention, "s", Read));
}

#[test]
fn wildcard_intentions_need_any_for_read_and_all_for_write() {
    let a = authz(false, &["service \"a\" { policy = \"read\" }"]);
    assert!(a.allows(Intention, "*", Read));
    assert!(!a.allows(Intention, "*", Write));
    let a = authz(
        false,
        &["service_prefix \"\" { policy = \"write\" intentions = \"write\" }\nservice \"b\" { policy = \"write\" intentions = \"write\" }"],
    );
    assert!(a.allows(Intention, "*", Write));
    let a = authz(
        false,
        &["service_prefix \"\" { policy = \"write\" intentions = \"write\" }\nservice \"b\" { policy = \"read\" }"],
    );
    assert!(!a.allows(Intention, "*", Write), "one rule refuses write");
    let a = authz(false, &["service_prefix \"\" { policy = \"deny\" }"]);
    assert!(
        !authz(true, &["service_prefix \"\" { policy = \"deny\" }"]).allows(Intention, "*", Read)
    );
    assert!(!a.allows(Intention, "*", Read));
    assert!(
        authz(true, &[]).allows(Intention, "*", Write),
        "default allow"
    );
}

#[test]
fn all_and_any_scans() {
    let identity = Authorizer::new("x", false, &[Rules::service_identity("web")]);
    assert!(identity.allows_all(Service, Read));
    assert!(identity.allows_all(Node, Read));
    assert!(!identity.allows_all(Service, Write));
    assert!(identity.allows_any(Service, Write));
    assert!(!identity.allows_any(Node, Write));
    let partial = authz(true, &["node \"secret\" { policy = \"deny\" }"]);
    assert!(!partial.allows_all(Node, Read));
    assert!(
        partial.allows_all(Service, Read),
        "default allow, no rule refuses"
    );
    assert!(authz(false, &["operator = \"read\""]).allows_all(Operator, Read));
}

#[test]
fn mesh_and_peering_fall_back_to_operator() {
    let a = authz(false, &["operator = \"write\""]);
    assert!(a.allows(Mesh, "", Write));
    assert!(a.allows(Peering, "", Write));
    let a = authz(
        false,
        &["operator = \"write\"\nmesh = \"read\"\npeering = \"deny\""],
    );
    assert!(a.allows(Mesh, "", Read));
    assert!(!a.allows(Mesh, "", Write));
    assert!(!a.allows(Peering, "", Read));
    // Peering does not fall back to mesh (Consul's PeeringRead goes to operator).
    let a = authz(false, &["mesh = \"write\""]);
    assert!(!a.allows(Peering, "", Read));
    assert!(!a.allows(Operator, "", Read));
}

#[test]
fn service_identity_grants_its_own_service_and_sidecar_only() {
    let a = Authorizer::new("x", false, &[Rules::service_identity("web")]);
    assert!(a.allows(Service, "web", Write));
    assert!(a.allows(Service, "web-sidecar-proxy", Write));
    assert!(!a.allows(Service, "backend", Write));
    assert!(a.allows(Service, "backend", Read));
    assert!(a.allows(Node, "any-node", Read));
    assert!(!a.allows(Node, "any-node", Write));
    assert!(a.allows(Intention, "web", Read));
    assert!(!a.allows(Intention, "web", Write));
    assert!(!a.allows(Acl, "", Read));
    assert!(!a.allows(Peering, "", Read));
}

#[test]
fn denial_texts_are_consuls() {
    let a = authz(false, &[]);
    assert_eq!(
        a.check(Service, "backend", Write).unwrap_err().to_string(),
        "Permission denied: token with AccessorID 'acc-1' lacks permission 'service:write' on \"backend\""
    );
    assert_eq!(
        a.check(Acl, "", Read).unwrap_err().to_string(),
        "Permission denied: token with AccessorID 'acc-1' lacks permission 'acl:read'"
    );
    let anonymous = Authorizer::new(ANONYMOUS_TOKEN_ACCESSOR_ID, false, &[]);
    assert_eq!(
        anonymous.check(Node, "fenn", Write).unwrap_err().to_string(),
        "Permission denied: anonymous token lacks permission 'node:write' on \"fenn\". The anonymous token is used implicitly when a request does not specify a token."
    );
    assert_eq!(
        anonymous.check(Acl, "", Read).unwrap_err().to_string(),
        "Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token."
    );
    assert_eq!(
        Authorizer::new("", false, &[])
            .check(Intention, "web", Write)
            .unwrap_err()
            .to_string(),
        "Permission denied: provided token lacks permission 'intention:write' on \"web\""
    );
}

#[test]
fn lookups_stay_cheap_with_ten_thousand_rules() {
    let mut text = String::new();
    let mut policies = Vec::new();
    for i in 0..10_000 {
        text.push_str(&format!(
            "service_prefix \"svc-{i:05}-\" {{ policy = \"write\" }}\n"
        ));
        text.push_str(&format!("service \"exact-{i}\" {{ policy = \"read\" }}\n"));
        if text.len() > 30_000 {
            policies.push(Rules::parse(&text).unwrap());
            text.clear();
        }
    }
    policies.push(Rules::parse(&text).unwrap());
    let a = Authorizer::new("x", false, &policies);
    let started = std::time::Instant::now();
    let mut allowed = 0;
    for i in 0..100_000 {
        let name = format!("svc-{:05}-instance", i % 10_000);
        allowed += usize::from(a.allows(Service, &name, Write));
        allowed += usize::from(a.allows(Service, &format!("exact-{}", i % 10_000), Read));
        allowed += usize::from(a.allows(Service, "unmatched", Read));
    }
    assert_eq!(allowed, 200_000);
    // 300k checks; a scan of 20k rules per check would take minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
