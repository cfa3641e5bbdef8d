//! The ACL tables as the store keeps them: tokens by AccessorID (indexed by
//! SecretID and by linked policy), policies by ID (indexed by name), the
//! bootstrap record; and the typed reads over them.

use isthmus_api::acl::wire::{AclPolicy, AclToken};
use serde::{Deserialize, Serialize};

use crate::store::{Reads, Schema, StoreError, Table, WatchKey};

/// Index of `acl_tokens` by SecretID.
pub const BY_SECRET: &str = "secret";
/// Index of `acl_tokens` by the IDs of the policies they link.
pub const BY_POLICY: &str = "policy";
/// Index of `acl_tokens` by the services of their service identities.
pub const BY_SERVICE_IDENTITY: &str = "service-identity";
/// Index of `acl_policies` by name.
pub const BY_NAME: &str = "name";

/// The `meta` row recording that the cluster was bootstrapped.
const BOOTSTRAP_KEY: &str = "acl_bootstrap";

/// When the cluster was bootstrapped: Consul's "reset index".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    pub index: u64,
}

/// Adds the ACL tables to `schema`.
pub fn schema(schema: Schema) -> Schema {
    fn secret(t: &AclToken) -> Vec<String> {
        vec![t.secret_id.clone()]
    }
    fn policies(t: &AclToken) -> Vec<String> {
        let mut ids: Vec<String> = t.policies.iter().map(|l| l.id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
    fn services(t: &AclToken) -> Vec<String> {
        let mut names: Vec<String> = t
            .service_identities
            .iter()
            .map(|i| i.service_name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }
    fn name(p: &AclPolicy) -> Vec<String> {
        vec![p.name.clone()]
    }
    schema
        .table::<AclToken>(
            Table::AclTokens,
            vec![
                (BY_SECRET, secret as fn(&AclToken) -> Vec<String>),
                (BY_POLICY, policies),
                (BY_SERVICE_IDENTITY, services),
            ],
        )
        .table::<AclPolicy>(
            Table::AclPolicies,
            vec![(BY_NAME, name as fn(&AclPolicy) -> Vec<String>)],
        )
}

pub fn token(r: &impl Reads, accessor_id: &str) -> Result<Option<AclToken>, StoreError> {
    r.get(Table::AclTokens, accessor_id)
}

pub fn token_by_secret(r: &impl Reads, secret: &str) -> Result<Option<AclToken>, StoreError> {
    Ok(r.lookup(Table::AclTokens, BY_SECRET, secret)?
        .into_iter()
        .next())
}

pub fn policy(r: &impl Reads, id: &str) -> Result<Option<AclPolicy>, StoreError> {
    r.get(Table::AclPolicies, id)
}

pub fn policy_by_name(r: &impl Reads, name: &str) -> Result<Option<AclPolicy>, StoreError> {
    Ok(r.lookup(Table::AclPolicies, BY_NAME, name)?
        .into_iter()
        .next())
}

pub fn tokens(r: &impl Reads) -> Result<Vec<AclToken>, StoreError> {
    r.scan(Table::AclTokens, "")
}

/// The tokens linking policy `policy_id` (from the index).
pub fn tokens_with_policy(r: &impl Reads, policy_id: &str) -> Result<Vec<AclToken>, StoreError> {
    r.lookup(Table::AclTokens, BY_POLICY, policy_id)
}

/// The tokens with a service identity for `service` (from the index).
pub fn tokens_with_service(r: &impl Reads, service: &str) -> Result<Vec<AclToken>, StoreError> {
    r.lookup(Table::AclTokens, BY_SERVICE_IDENTITY, service)
}

pub fn policies(r: &impl Reads) -> Result<Vec<AclPolicy>, StoreError> {
    r.scan(Table::AclPolicies, "")
}

/// The index of the last change to any ACL table: what cached
/// authorizers are valid for.
pub fn acl_index(r: &impl Reads) -> u64 {
    r.changed_at(&WatchKey::Table(Table::AclTokens))
        .max(r.changed_at(&WatchKey::Table(Table::AclPolicies)))
}

pub fn bootstrap_record(r: &impl Reads) -> Result<Option<BootstrapRecord>, StoreError> {
    r.get(Table::Meta, BOOTSTRAP_KEY)
}

pub fn put_bootstrap_record(
    txn: &mut crate::store::Txn,
    record: BootstrapRecord,
) -> Result<(), StoreError> {
    txn.put(Table::Meta, BOOTSTRAP_KEY, &record)
}

/// A token as the API shows it: policy links carry their policy's current
/// name, and links to deleted policies are dropped (as Consul does).
pub fn with_current_links(r: &impl Reads, mut token: AclToken) -> Result<AclToken, StoreError> {
    let mut links = Vec::with_capacity(token.policies.len());
    for mut link in token.policies {
        if let Some(policy) = policy(r, &link.id)? {
            link.name = policy.name;
            links.push(link);
        }
    }
    token.policies = links;
    Ok(token)
}
