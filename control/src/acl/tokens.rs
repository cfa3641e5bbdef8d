//! Writing ACL tokens: create, update, delete, with Consul's checks and
//! texts (IDs, links to policies that exist, service identity names,
//! expiration, the anonymous token's protection).

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use isthmus_api::acl::wire::{
    is_valid_service_identity_name, AclLink, AclToken, AclTokenWrite, NodeIdentity,
    ServiceIdentity, ANONYMOUS_TOKEN_ACCESSOR_ID,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{format_time, is_uuid, new_uuid, parse_time, tables, AclError};
use crate::store::{Table, Txn};

/// IDs Consul keeps for its built-in objects.
pub const RESERVED_ID_PREFIX: &str = "00000000-0000-0000-0000-0000000000";
/// Longest token description accepted.
pub const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;
/// Most policy links, service and node identities one token may carry.
pub const MAX_LINKS: usize = 256;

/// What a token write needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct WriteContext {
    pub now: OffsetDateTime,
    pub min_expiration_ttl: Duration,
}

/// Checks what needs no state: sizes and identity names.
pub fn validate(request: &AclTokenWrite) -> Result<(), AclError> {
    if request.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(AclError::invalid(format!(
            "Invalid Token: Description is longer than {MAX_DESCRIPTION_BYTES} bytes"
        )));
    }
    let links = request.policies.len()
        + request.roles.len()
        + request.service_identities.len()
        + request.node_identities.len();
    if links > MAX_LINKS {
        return Err(AclError::invalid(format!(
            "Invalid Token: more than {MAX_LINKS} policies, roles and identities"
        )));
    }
    Ok(())
}

/// Creates a token (`PUT /v1/acl/token`).
pub fn create(
    txn: &mut Txn,
    request: &AclTokenWrite,
    ctx: WriteContext,
) -> Result<AclToken, AclError> {
    let accessor_id = if request.accessor_id.is_empty() {
        new_uuid()
    } else {
        check_new_id(txn, "AccessorID", &request.accessor_id)?;
        request.accessor_id.clone()
    };
    let secret_id = if request.secret_id.is_empty() {
        new_uuid()
    } else {
        check_new_id(txn, "SecretID", &request.secret_id)?;
        request.secret_id.clone()
    };
    let expiration = expiration(request, ctx)?;
    let token = AclToken {
        accessor_id,
        secret_id,
        description: request.description.clone(),
        local: request.local,
        expiration_time: expiration.map(format_time),
        create_time: format_time(ctx.now),
        create_index: txn.index(),
        ..AclToken::default()
    };
    write(txn, token, request)
}

/// Creates a token holding only the service identity `service`, for a
/// component the agent itself runs (the `--dev` in-process gateway).
pub fn create_for_service(
    txn: &mut Txn,
    service: &str,
    description: &str,
    ctx: WriteContext,
) -> Result<AclToken, AclError> {
    let request = AclTokenWrite {
        description: description.to_owned(),
        service_identities: vec![isthmus_api::acl::wire::ServiceIdentity {
            service_name: service.to_owned(),
            datacenters: Vec::new(),
        }],
        local: true,
        ..AclTokenWrite::default()
    };
    create(txn, &request, ctx)
}

/// Updates token `request.accessor_id` (`PUT /v1/acl/token/:id`).
pub fn update(
    txn: &mut Txn,
    request: &AclTokenWrite,
    ctx: WriteContext,
) -> Result<AclToken, AclError> {
    let accessor_id = &request.accessor_id;
    if !is_uuid(accessor_id) {
        return Err(AclError::invalid("AccessorID is not a valid UUID"));
    }
    let existing = tables::token(txn, accessor_id)?
        .filter(|t| !is_expired(t, ctx.now))
        .ok_or_else(|| AclError::invalid(format!("Cannot find token {accessor_id:?}")))?;
    if !request.secret_id.is_empty() && request.secret_id != existing.secret_id {
        return Err(AclError::invalid(
            "Changing a token's SecretID is not permitted",
        ));
    }
    if request.local != existing.local {
        return Err(AclError::invalid(format!(
            "Cannot toggle local mode of {accessor_id}"
        )));
    }
    if request.expiration_ttl.is_some_and(|ttl| !ttl.is_zero()) {
        return Err(AclError::invalid(format!(
            "Cannot change expiration time of {accessor_id}"
        )));
    }
    if let Some(time) = request.expiration_time.as_deref().filter(|t| !t.is_empty()) {
        let same = match (parse_time(time), existing.expiration_time.as_deref()) {
            (Some(given), Some(stored)) => parse_time(stored) == Some(given),
            _ => false,
        };
        if !same {
            return Err(AclError::invalid(format!(
                "Cannot change expiration time of {accessor_id}"
            )));
        }
    }
    let token = AclToken {
        accessor_id: existing.accessor_id,
        secret_id: existing.secret_id,
        description: request.description.clone(),
        local: existing.local,
        expiration_time: existing.expiration_time,
        create_time: existing.create_time,
        create_index: existing.create_index,
        ..AclToken::default()
    };
    write(txn, token, request)
}

/// Deletes token `accessor_id`; `requester` is the secret the request
/// presented (a token cannot delete itself). A missing token is no error.
pub fn delete(txn: &mut Txn, accessor_id: &str, requester: Option<&str>) -> Result<(), AclError> {
    if !is_uuid(accessor_id) {
        return Err(AclError::invalid(
            "Accessor ID is missing or an invalid UUID",
        ));
    }
    if accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID {
        return Err(AclError::invalid(
            "Delete operation not permitted on the anonymous token",
        ));
    }
    let Some(token) = tables::token(txn, accessor_id)? else {
        return Ok(());
    };
    if requester == Some(token.secret_id.as_str()) {
        return Err(AclError::invalid(
            "Deletion of the request's authorization token is not permitted",
        ));
    }
    txn.delete(Table::AclTokens, accessor_id)?;
    Ok(())
}

/// Whether `token` expired at `now`.
pub fn is_expired(token: &AclToken, now: OffsetDateTime) -> bool {
    token
        .expiration_time
        .as_deref()
        .and_then(parse_time)
        .is_some_and(|at| at <= now)
}

/// A new token's expiration from `ExpirationTTL` or `ExpirationTime`.
fn expiration(
    request: &AclTokenWrite,
    ctx: WriteContext,
) -> Result<Option<OffsetDateTime>, AclError> {
    let ttl = request.expiration_ttl.filter(|ttl| !ttl.is_zero());
    let time = request.expiration_time.as_deref().filter(|t| !t.is_empty());
    let at = match (ttl, time) {
        (Some(_), Some(_)) => {
            return Err(AclError::invalid(
                "Token Expiration TTL and Expiration Time cannot both be set",
            ))
        }
        (Some(ttl), None) => ctx.now + ttl,
        (None, Some(text)) => parse_time(text).ok_or_else(|| {
            AclError::invalid(format!(
                "ExpirationTime {text:?} is not an RFC 3339 time (2006-01-02T15:04:05Z)"
            ))
        })?,
        (None, None) => return Ok(None),
    };
    if at < ctx.now {
        return Err(AclError::invalid(
            "ExpirationTime cannot be before CreateTime",
        ));
    }
    let expires_in: Duration = (at - ctx.now).try_into().unwrap_or_default();
    if expires_in < ctx.min_expiration_ttl {
        return Err(AclError::invalid(format!(
            "ExpirationTime cannot be less than {} in the future (was {})",
            isthmus_api::duration::format(ctx.min_expiration_ttl),
            isthmus_api::duration::format(expires_in)
        )));
    }
    Ok(Some(at))
}

/// A caller-chosen AccessorID or SecretID: a UUID, not reserved, unused.
fn check_new_id(txn: &Txn, field: &str, id: &str) -> Result<(), AclError> {
    if id.starts_with(RESERVED_ID_PREFIX) {
        return Err(AclError::invalid(format!(
            "Invalid Token: {field} - UUIDs with the prefix {RESERVED_ID_PREFIX:?} are reserved"
        )));
    }
    if !is_uuid(id) {
        return Err(AclError::invalid(format!(
            "Invalid Token: {field} - not a valid UUID"
        )));
    }
    if tables::token(txn, id)?.is_some() || tables::token_by_secret(txn, id)?.is_some() {
        return Err(AclError::invalid(format!(
            "Invalid Token: {field} is already in use"
        )));
    }
    Ok(())
}

/// Normalizes the links and identities of `request` onto `token` and
/// stores it.
fn write(
    txn: &mut Txn,
    mut token: AclToken,
    request: &AclTokenWrite,
) -> Result<AclToken, AclError> {
    // isthmus has no roles: every role link names a missing role.
    if let Some(role) = request.roles.first() {
        return Err(AclError::invalid(if role.id.is_empty() {
            format!("No such ACL role with name {:?}", role.name)
        } else {
            format!("No such ACL role with ID {:?}", role.id)
        }));
    }
    token.policies = policy_links(txn, &request.policies)?;
    token.service_identities = service_identities(&request.service_identities, token.local)?;
    token.node_identities = node_identities(&request.node_identities)?;
    token.modify_index = txn.index();
    token.hash = hash(&token);
    txn.put(Table::AclTokens, &token.accessor_id, &token)?;
    Ok(token)
}

fn policy_links(txn: &Txn, links: &[AclLink]) -> Result<Vec<AclLink>, AclError> {
    let mut seen = HashSet::new();
    let mut normalized = Vec::new();
    for link in links {
        let policy = if link.id.is_empty() {
            tables::policy_by_name(txn, &link.name)?.ok_or_else(|| {
                AclError::invalid(format!("No such ACL policy with name {:?}", link.name))
            })?
        } else {
            tables::policy(txn, &link.id)?.ok_or_else(|| {
                AclError::invalid(format!("No such ACL policy with ID {:?}", link.id))
            })?
        };
        if seen.insert(policy.id.clone()) {
            normalized.push(AclLink {
                id: policy.id,
                name: policy.name,
            });
        }
    }
    Ok(normalized)
}

fn service_identities(
    identities: &[ServiceIdentity],
    local: bool,
) -> Result<Vec<ServiceIdentity>, AclError> {
    let mut normalized: Vec<ServiceIdentity> = Vec::new();
    for identity in identities {
        let name = &identity.service_name;
        if name.is_empty() {
            return Err(AclError::invalid(
                "Service identity is missing the service name field on this token",
            ));
        }
        if local && !identity.datacenters.is_empty() {
            return Err(AclError::invalid(format!(
                "Service identity {name:?} cannot specify a list of datacenters on a local token"
            )));
        }
        if !is_valid_service_identity_name(name) {
            return Err(AclError::invalid(format!(
                "Service identity {name:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed"
            )));
        }
        // Duplicates merge their datacenters (an empty list means all).
        match normalized.iter_mut().find(|i| &i.service_name == name) {
            Some(existing)
                if existing.datacenters.is_empty() || identity.datacenters.is_empty() =>
            {
                existing.datacenters.clear();
            }
            Some(existing) => {
                for dc in &identity.datacenters {
                    if !existing.datacenters.contains(dc) {
                        existing.datacenters.push(dc.clone());
                    }
                }
            }
            None => normalized.push(identity.clone()),
        }
    }
    Ok(normalized)
}

fn node_identities(identities: &[NodeIdentity]) -> Result<Vec<NodeIdentity>, AclError> {
    let mut normalized: Vec<NodeIdentity> = Vec::new();
    for identity in identities {
        if identity.node_name.is_empty() {
            return Err(AclError::invalid(
                "Node identity is missing the node name field on this token",
            ));
        }
        if identity.datacenter.is_empty() {
            return Err(AclError::invalid(
                "Node identity is missing the datacenter field on this token",
            ));
        }
        if !is_valid_service_identity_name(&identity.node_name) {
            return Err(AclError::invalid(
                "Node identity has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed",
            ));
        }
        if !normalized.contains(identity) {
            normalized.push(identity.clone());
        }
    }
    Ok(normalized)
}

/// A digest of what the user set, base64 as Go writes `[]byte`.
pub fn hash(token: &AclToken) -> String {
    let mut digest = Sha256::new();
    let mut part = |s: &str| {
        digest.update(s.as_bytes());
        digest.update([0]);
    };
    part(&token.description);
    part(if token.local { "local" } else { "global" });
    for link in &token.policies {
        part(&link.id);
    }
    for identity in &token.service_identities {
        part(&identity.service_name);
        for dc in &identity.datacenters {
            part(dc);
        }
    }
    for identity in &token.node_identities {
        part(&identity.node_name);
        part(&identity.datacenter);
    }
    base64::engine::general_purpose::STANDARD.encode(digest.finalize())
}
