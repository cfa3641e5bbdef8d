//! Writing ACL policies: create, update, delete, with Consul's checks and
//! texts (names, uniqueness, rules that parse, the built-in
//! global-management policy's limits).

use base64::Engine;
use isthmus_api::acl::wire::{
    is_valid_policy_name, AclPolicy, AclPolicyWrite, GLOBAL_MANAGEMENT_POLICY_ID,
};
use isthmus_api::acl::Rules;
use sha2::{Digest, Sha256};

use super::{is_uuid, new_uuid, tables, AclError};
use crate::store::{Table, Txn};

/// Longest policy description accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// Longest policy rules text accepted.
pub const MAX_RULES_BYTES: usize = 256 * 1024;
/// Most datacenters one policy may name.
pub const MAX_DATACENTERS: usize = 64;

/// Checks what needs no state: name, sizes, and that the rules parse.
pub fn validate(request: &AclPolicyWrite) -> Result<(), AclError> {
    if request.name.is_empty() {
        return Err(AclError::invalid("Invalid Policy: no Name is set"));
    }
    if !is_valid_policy_name(&request.name) {
        return Err(AclError::invalid(
            "Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed",
        ));
    }
    if request.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(AclError::invalid(format!(
            "Invalid Policy: Description is longer than {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    if request.rules.len() > MAX_RULES_BYTES {
        return Err(AclError::invalid(format!(
            "Invalid Policy: Rules are longer than {MAX_RULES_BYTES} bytes"
        )));
    }
    if request.datacenters.len() > MAX_DATACENTERS {
        return Err(AclError::invalid(format!(
            "Invalid Policy: more than {MAX_DATACENTERS} Datacenters"
        )));
    }
    Rules::parse(&request.rules).map_err(|e| AclError::Invalid(e.to_string()))?;
    Ok(())
}

/// Creates (`id` empty) or updates policy `id` in `txn`.
pub fn upsert(txn: &mut Txn, request: &AclPolicyWrite) -> Result<AclPolicy, AclError> {
    let name_match = tables::policy_by_name(txn, &request.name)?;
    let (id, create_index) = if request.id.is_empty() {
        if name_match.is_some() {
            return Err(AclError::invalid(format!(
                "Invalid Policy: A Policy with Name {:?} already exists",
                request.name
            )));
        }
        (new_uuid(), txn.index())
    } else {
        if !is_uuid(&request.id) {
            return Err(AclError::invalid("Policy ID invalid UUID"));
        }
        let Some(existing) = tables::policy(txn, &request.id)? else {
            return Err(AclError::invalid(format!(
                "cannot find policy {}",
                request.id
            )));
        };
        if name_match.is_some_and(|p| p.id != existing.id) {
            return Err(AclError::invalid(format!(
                "Invalid Policy: A policy with name {:?} already exists",
                request.name
            )));
        }
        if existing.id == GLOBAL_MANAGEMENT_POLICY_ID {
            if !request.datacenters.is_empty() {
                return Err(AclError::invalid(
                    "Changing the Datacenters of the builtin global-management policy is not permitted",
                ));
            }
            if request.rules != existing.rules {
                return Err(AclError::invalid(
                    "Changing the Rules for the builtin global-management policy is not permitted",
                ));
            }
        }
        (existing.id, existing.create_index)
    };
    let mut policy = AclPolicy {
        id,
        name: request.name.clone(),
        description: request.description.clone(),
        rules: request.rules.clone(),
        datacenters: (!request.datacenters.is_empty()).then(|| request.datacenters.clone()),
        hash: String::new(),
        create_index,
        modify_index: txn.index(),
    };
    policy.hash = hash(&policy);
    txn.put(Table::AclPolicies, &policy.id, &policy)?;
    Ok(policy)
}

/// Deletes policy `id`; tokens linking it keep the link, which reads and
/// resolution skip (as in Consul).
pub fn delete(txn: &mut Txn, id: &str) -> Result<(), AclError> {
    if id == GLOBAL_MANAGEMENT_POLICY_ID {
        return Err(AclError::invalid(
            "Delete operation not permitted on the builtin global-management policy",
        ));
    }
    if !txn.delete(Table::AclPolicies, id)? {
        return Err(AclError::NotFound("Cannot find policy to delete".into()));
    }
    Ok(())
}

/// A digest of what the user set, base64 as Go writes `[]byte`.
pub fn hash(policy: &AclPolicy) -> String {
    let mut digest = Sha256::new();
    for part in [&policy.name, &policy.description, &policy.rules] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    for dc in policy.datacenters.iter().flatten() {
        digest.update(dc.as_bytes());
        digest.update([0]);
    }
    base64::engine::general_purpose::STANDARD.encode(digest.finalize())
}
