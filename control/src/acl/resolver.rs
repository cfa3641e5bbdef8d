//! Resolving a request's token secret into its [`Authorizer`]: the token
//! by its SecretID, its policies' rules and its identities' synthesized
//! rules merged under the agent's `default_policy`.
//!
//! Authorizers are cached per secret and valid for one revision of the ACL
//! tables (the index of their last change): a request with a known token
//! costs a snapshot and a map lookup, not a parse; any ACL write empties
//! the cache. Expiry is checked on every hit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use isthmus_api::acl::wire::{AclToken, ANONYMOUS_TOKEN_SECRET_ID, GLOBAL_MANAGEMENT_POLICY_ID};
use isthmus_api::acl::{Authorizer, Rules};
use time::OffsetDateTime;

use super::{parse_time, tables, AclError, AclSettings};
use crate::store::{Snapshot, Store};

/// Secrets cached at most; past it the cache starts over (it only ever
/// holds valid tokens, so this bounds memory, not correctness).
const MAX_CACHED: usize = 4096;

/// Turns a request's token secret into its authorizer.
pub struct AclResolver {
    settings: AclSettings,
    store: Store,
    cache: Mutex<Cache>,
    allow_all: OnceLock<Arc<Authorizer>>,
}

#[derive(Default)]
struct Cache {
    /// The ACL tables' index the entries were built at.
    acl_index: u64,
    entries: HashMap<String, Cached>,
}

struct Cached {
    authorizer: Arc<Authorizer>,
    expires: Option<OffsetDateTime>,
}

impl AclResolver {
    pub fn new(settings: AclSettings, store: Store) -> AclResolver {
        AclResolver {
            settings,
            store,
            cache: Mutex::new(Cache::default()),
            allow_all: OnceLock::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn settings(&self) -> &AclSettings {
        &self.settings
    }

    /// The authorizer of the token whose secret is `secret` (`None`: the
    /// anonymous token). With ACLs disabled: allow everything.
    pub fn resolve(&self, secret: Option<&str>) -> Result<Arc<Authorizer>, AclError> {
        if !self.settings.enabled {
            return Ok(self
                .allow_all
                .get_or_init(|| Arc::new(Authorizer::allow_all()))
                .clone());
        }
        let secret = secret.unwrap_or(ANONYMOUS_TOKEN_SECRET_ID);
        let snap = self.store.snapshot()?;
        let acl_index = tables::acl_index(&snap);
        let now = OffsetDateTime::now_utc();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.acl_index != acl_index {
                cache.entries.clear();
                cache.acl_index = acl_index;
            }
            if let Some(hit) = cache.entries.get(secret) {
                if hit.expires.is_some_and(|at| at <= now) {
                    return Err(AclError::TokenNotFound);
                }
                return Ok(hit.authorizer.clone());
            }
        }
        let (authorizer, expires) = self.build(&snap, secret, now)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // Built from this index's state: stale if the tables moved since.
        if cache.acl_index == acl_index {
            if cache.entries.len() >= MAX_CACHED {
                cache.entries.clear();
            }
            cache.entries.insert(
                secret.to_owned(),
                Cached {
                    authorizer: authorizer.clone(),
                    expires,
                },
            );
        }
        Ok(authorizer)
    }

    fn build(
        &self,
        snap: &Snapshot,
        secret: &str,
        now: OffsetDateTime,
    ) -> Result<(Arc<Authorizer>, Option<OffsetDateTime>), AclError> {
        let token = match tables::token_by_secret(snap, secret)? {
            Some(token) => token,
            // Not created yet (or removed from the store by hand): the
            // anonymous token with no policy.
            None if secret == ANONYMOUS_TOKEN_SECRET_ID => AclToken {
                accessor_id: isthmus_api::acl::wire::ANONYMOUS_TOKEN_ACCESSOR_ID.into(),
                ..AclToken::default()
            },
            None => return Err(AclError::TokenNotFound),
        };
        let expires = token.expiration_time.as_deref().and_then(parse_time);
        if expires.is_some_and(|at| at <= now) {
            return Err(AclError::TokenNotFound);
        }
        Ok((Arc::new(self.authorizer(snap, &token)?), expires))
    }

    /// The token's policies and identities merged into one authorizer.
    fn authorizer(&self, snap: &Snapshot, token: &AclToken) -> Result<Authorizer, AclError> {
        let accessor = &token.accessor_id;
        if token
            .policies
            .iter()
            .any(|l| l.id == GLOBAL_MANAGEMENT_POLICY_ID)
        {
            return Ok(Authorizer::management(accessor));
        }
        let mut rules = Vec::new();
        for link in &token.policies {
            // A deleted policy grants nothing (Consul skips the link).
            let Some(policy) = tables::policy(snap, &link.id)? else {
                continue;
            };
            match Rules::parse(&policy.rules) {
                Ok(parsed) => rules.push(parsed),
                // Checked when written; a policy written by a newer
                // version with rules this one cannot read grants nothing.
                Err(e) => {
                    tracing::warn!(policy = %policy.name, error = %e, "ACL policy rules do not parse; ignoring the policy")
                }
            }
        }
        for identity in &token.service_identities {
            rules.push(Rules::service_identity(&identity.service_name));
        }
        for identity in &token.node_identities {
            rules.push(Rules::node_identity(&identity.node_name));
        }
        Ok(Authorizer::new(
            accessor,
            self.settings.default_allow,
            &rules,
        ))
    }
}
