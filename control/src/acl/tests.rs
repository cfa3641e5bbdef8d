use std::time::Duration;

use isthmus_api::acl::wire::{
    AclLink, AclPolicyWrite, AclTokenWrite, ServiceIdentity, ANONYMOUS_TOKEN_ACCESSOR_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
};
use isthmus_api::acl::{Access, Resource};
use time::OffsetDateTime;

use super::tokens::WriteContext;
use super::*;
use crate::store::{NoLog, Schema, Store};

fn store() -> Store {
    Store::with_log(Box::new(NoLog), tables::schema(Schema::new())).unwrap()
}

fn enabled(default_allow: bool) -> AclSettings {
    AclSettings {
        enabled: true,
        default_allow,
        ..AclSettings::default()
    }
}

fn ctx() -> WriteContext {
    WriteContext {
        now: OffsetDateTime::now_utc(),
        min_expiration_ttl: DEFAULT_MIN_EXPIRATION_TTL,
    }
}

fn policy(store: &Store, name: &str, rules: &str) -> Result<String, AclError> {
    let request = AclPolicyWrite {
        name: name.into(),
        rules: rules.into(),
        ..AclPolicyWrite::default()
    };
    policies::validate(&request)?;
    store
        .write_blocking(|txn| policies::upsert(txn, &request))
        .map(|p| p.id)
}

fn token(store: &Store, request: AclTokenWrite, ctx: WriteContext) -> Result<String, AclError> {
    tokens::validate(&request)?;
    store
        .write_blocking(|txn| tokens::create(txn, &request, ctx))
        .map(|t| t.secret_id)
}

fn with_policy(name: &str) -> AclTokenWrite {
    AclTokenWrite {
        policies: vec![AclLink {
            name: name.into(),
            ..AclLink::default()
        }],
        ..AclTokenWrite::default()
    }
}

#[test]
fn builtins_and_initial_management_are_created_once_and_stand_for_bootstrap() {
    let store = store();
    let settings = AclSettings {
        initial_management: Some("root".into()),
        ..enabled(false)
    };
    bootstrap::initialize(&store, &settings).unwrap();
    let index = store.index();
    bootstrap::initialize(&store, &settings).unwrap();
    assert_eq!(store.index(), index, "a second start writes nothing");
    let snap = store.snapshot().unwrap();
    assert!(tables::policy(&snap, GLOBAL_MANAGEMENT_POLICY_ID)
        .unwrap()
        .is_some());
    assert!(tables::token(&snap, ANONYMOUS_TOKEN_ACCESSOR_ID)
        .unwrap()
        .is_some());
    assert!(tables::token_by_secret(&snap, "root").unwrap().is_some());
    let err = store
        .write_blocking(|txn| bootstrap::bootstrap(txn, OffsetDateTime::now_utc()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("ACL bootstrap no longer allowed (reset index: {index})")
    );
}

#[test]
fn bootstrap_once_only() {
    let store = store();
    bootstrap::initialize(&store, &enabled(false)).unwrap();
    let token = store
        .write_blocking(|txn| bootstrap::bootstrap(txn, OffsetDateTime::now_utc()))
        .unwrap();
    assert_eq!(token.policies[0].id, GLOBAL_MANAGEMENT_POLICY_ID);
    let err = store
        .write_blocking(|txn| bootstrap::bootstrap(txn, OffsetDateTime::now_utc()))
        .unwrap_err();
    assert!(
        matches!(err, AclError::BootstrapNotAllowed { reset_index } if reset_index == token.create_index)
    );
    let resolver = AclResolver::new(enabled(false), store);
    let authz = resolver.resolve(Some(&token.secret_id)).unwrap();
    assert!(authz.allows(Resource::Acl, "", Access::Write));
}

#[test]
fn token_writes_check_links_ids_identities_and_expiry() {
    let store = store();
    bootstrap::initialize(&store, &enabled(false)).unwrap();
    let err = token(&store, with_policy("missing"), ctx()).unwrap_err();
    assert_eq!(err.to_string(), "No such ACL policy with name \"missing\"");
    let bad_identity = AclTokenWrite {
        service_identities: vec![ServiceIdentity {
            service_name: "Web".into(),
            datacenters: vec![],
        }],
        ..AclTokenWrite::default()
    };
    assert!(token(&store, bad_identity, ctx())
        .unwrap_err()
        .to_string()
        .contains("has an invalid name"));
    let reserved = AclTokenWrite {
        accessor_id: "00000000-0000-0000-0000-000000000077".into(),
        ..AclTokenWrite::default()
    };
    assert!(token(&store, reserved, ctx())
        .unwrap_err()
        .to_string()
        .contains("are reserved"));
    let short = AclTokenWrite {
        expiration_ttl: Some(Duration::from_secs(5)),
        ..AclTokenWrite::default()
    };
    assert!(token(&store, short, ctx())
        .unwrap_err()
        .to_string()
        .starts_with("ExpirationTime cannot be less than 1m"));
    let err = store
        .write_blocking(|txn| tokens::delete(txn, ANONYMOUS_TOKEN_ACCESSOR_ID, None))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Delete operation not permitted on the anonymous token"
    );
}

#[test]
fn policy_writes_check_names_rules_and_the_builtin() {
    let store = store();
    bootstrap::initialize(&store, &enabled(false)).unwrap();
    assert!(policy(&store, "bad name", "")
        .unwrap_err()
        .to_string()
        .contains("invalid Name"));
    let err = policy(&store, "p", "service \"web\" { policy = \"shout\" }").unwrap_err();
    assert!(matches!(err, AclError::Invalid(_)), "{err}");
    policy(&store, "p", "acl = \"read\"").unwrap();
    assert!(policy(&store, "p", "")
        .unwrap_err()
        .to_string()
        .contains("already exists"));
    let change_builtin = AclPolicyWrite {
        id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
        name: "global-management".into(),
        rules: "acl = \"read\"".into(),
        ..AclPolicyWrite::default()
    };
    assert!(store
        .write_blocking(|txn| policies::upsert(txn, &change_builtin))
        .unwrap_err()
        .to_string()
        .contains("not permitted"));
    assert!(store
        .write_blocking(|txn| policies::delete(txn, GLOBAL_MANAGEMENT_POLICY_ID))
        .unwrap_err()
        .to_string()
        .contains("not permitted"));
}

#[test]
fn resolution_follows_policies_is_cached_per_revision_and_refuses_unknown_and_expired() {
    let store = store();
    bootstrap::initialize(&store, &enabled(false)).unwrap();
    let policy_id = policy(&store, "acl-read", "acl = \"read\"").unwrap();
    let secret = token(&store, with_policy("acl-read"), ctx()).unwrap();
    let resolver = AclResolver::new(enabled(false), store.clone());

    let authz = resolver.resolve(Some(&secret)).unwrap();
    assert!(authz.allows(Resource::Acl, "", Access::Read));
    assert!(!authz.allows(Resource::Acl, "", Access::Write));
    let again = resolver.resolve(Some(&secret)).unwrap();
    assert!(std::sync::Arc::ptr_eq(&authz, &again), "cached");

    // A policy change takes effect on the next request.
    let update = AclPolicyWrite {
        id: policy_id,
        name: "acl-read".into(),
        rules: "acl = \"write\"".into(),
        ..AclPolicyWrite::default()
    };
    store
        .write_blocking(|txn| policies::upsert(txn, &update))
        .unwrap();
    assert!(resolver
        .resolve(Some(&secret))
        .unwrap()
        .allows(Resource::Acl, "", Access::Write));

    assert!(matches!(
        resolver.resolve(Some("no-such-secret")),
        Err(AclError::TokenNotFound)
    ));
    // No token: the anonymous token, which has no policy.
    let anonymous = resolver.resolve(None).unwrap();
    assert!(!anonymous.allows(Resource::Service, "web", Access::Read));

    // Created two minutes ago with a 61 s lifetime: expired.
    let past = WriteContext {
        now: OffsetDateTime::now_utc() - Duration::from_secs(120),
        ..ctx()
    };
    let expired = AclTokenWrite {
        expiration_ttl: Some(Duration::from_secs(61)),
        ..with_policy("acl-read")
    };
    let expired = token(&store, expired, past).unwrap();
    assert!(matches!(
        resolver.resolve(Some(&expired)),
        Err(AclError::TokenNotFound)
    ));
}

#[test]
fn service_identity_tokens_get_their_service() {
    let store = store();
    bootstrap::initialize(&store, &enabled(false)).unwrap();
    let request = AclTokenWrite {
        service_identities: vec![ServiceIdentity {
            service_name: "web".into(),
            datacenters: vec![],
        }],
        ..AclTokenWrite::default()
    };
    let secret = token(&store, request, ctx()).unwrap();
    let authz = AclResolver::new(enabled(false), store)
        .resolve(Some(&secret))
        .unwrap();
    assert!(authz.allows(Resource::Service, "web", Access::Write));
    assert!(!authz.allows(Resource::Service, "backend", Access::Write));
    assert!(authz.allows(Resource::Service, "backend", Access::Read));
}
