//! The ACL objects every cluster has (the global-management policy, the
//! anonymous token), the configured initial management token, and the
//! one-time `PUT /v1/acl/bootstrap`.
//!
//! Creation is conditional inside one store transaction (it looks before
//! it writes), so agents starting together on one etcd cluster do not
//! clash: the one whose write commits second re-runs on the newer state
//! and finds everything there.

use isthmus_api::acl::wire::{
    AclLink, AclPolicy, AclToken, ANONYMOUS_TOKEN_ACCESSOR_ID, ANONYMOUS_TOKEN_DESCRIPTION,
    ANONYMOUS_TOKEN_SECRET_ID, BOOTSTRAP_TOKEN_DESCRIPTION, GLOBAL_MANAGEMENT_POLICY_DESCRIPTION,
    GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_MANAGEMENT_POLICY_NAME, GLOBAL_MANAGEMENT_POLICY_RULES,
    INITIAL_MANAGEMENT_TOKEN_DESCRIPTION,
};
use time::OffsetDateTime;

use super::tables::{self, BootstrapRecord};
use super::{format_time, new_uuid, policies, tokens, AclError, AclSettings};
use crate::store::{Store, Table, Txn};

/// Creates what is missing of the built-in objects and the initial
/// management token; run at start when ACLs are enabled.
pub fn initialize(store: &Store, settings: &AclSettings) -> Result<(), AclError> {
    let initial = settings.initial_management.clone();
    if initial
        .as_deref()
        .is_some_and(|secret| !super::is_uuid(secret))
    {
        // Consul accepts it too, with the same advice.
        tracing::warn!(
            "the initial management token is not a UUID; a random UUID is harder to guess"
        );
    }
    store.write_blocking(move |txn| {
        let now = OffsetDateTime::now_utc();
        ensure_builtins(txn, now)?;
        if let Some(secret) = &initial {
            if tables::token_by_secret(txn, secret)?.is_none() {
                management_token(
                    txn,
                    secret.clone(),
                    INITIAL_MANAGEMENT_TOKEN_DESCRIPTION,
                    now,
                )?;
            }
            // A configured management token stands for the bootstrap.
            if tables::bootstrap_record(txn)?.is_none() {
                tables::put_bootstrap_record(txn, BootstrapRecord { index: txn.index() })?;
            }
        }
        Ok(())
    })
}

/// `PUT /v1/acl/bootstrap`: a new management token, once per cluster.
pub fn bootstrap(txn: &mut Txn, now: OffsetDateTime) -> Result<AclToken, AclError> {
    if let Some(record) = tables::bootstrap_record(txn)? {
        return Err(AclError::BootstrapNotAllowed {
            reset_index: record.index,
        });
    }
    ensure_builtins(txn, now)?;
    let token = management_token(txn, new_uuid(), BOOTSTRAP_TOKEN_DESCRIPTION, now)?;
    tables::put_bootstrap_record(txn, BootstrapRecord { index: txn.index() })?;
    Ok(token)
}

/// The global-management policy and the anonymous token, when missing.
fn ensure_builtins(txn: &mut Txn, now: OffsetDateTime) -> Result<(), AclError> {
    if tables::policy(txn, GLOBAL_MANAGEMENT_POLICY_ID)?.is_none() {
        let mut policy = AclPolicy {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: GLOBAL_MANAGEMENT_POLICY_NAME.into(),
            description: GLOBAL_MANAGEMENT_POLICY_DESCRIPTION.into(),
            rules: GLOBAL_MANAGEMENT_POLICY_RULES.into(),
            datacenters: None,
            hash: String::new(),
            create_index: txn.index(),
            modify_index: txn.index(),
        };
        policy.hash = policies::hash(&policy);
        txn.put(Table::AclPolicies, &policy.id, &policy)?;
    }
    if tables::token(txn, ANONYMOUS_TOKEN_ACCESSOR_ID)?.is_none() {
        let mut token = AclToken {
            accessor_id: ANONYMOUS_TOKEN_ACCESSOR_ID.into(),
            secret_id: ANONYMOUS_TOKEN_SECRET_ID.into(),
            description: ANONYMOUS_TOKEN_DESCRIPTION.into(),
            create_time: format_time(now),
            create_index: txn.index(),
            modify_index: txn.index(),
            ..AclToken::default()
        };
        token.hash = tokens::hash(&token);
        txn.put(Table::AclTokens, &token.accessor_id, &token)?;
    }
    Ok(())
}

fn management_token(
    txn: &mut Txn,
    secret_id: String,
    description: &str,
    now: OffsetDateTime,
) -> Result<AclToken, AclError> {
    let mut token = AclToken {
        accessor_id: new_uuid(),
        secret_id,
        description: description.into(),
        policies: vec![AclLink {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: GLOBAL_MANAGEMENT_POLICY_NAME.into(),
        }],
        create_time: format_time(now),
        create_index: txn.index(),
        modify_index: txn.index(),
        ..AclToken::default()
    };
    token.hash = tokens::hash(&token);
    txn.put(Table::AclTokens, &token.accessor_id, &token)?;
    Ok(token)
}
