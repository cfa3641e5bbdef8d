//! Consul's ACL system on the control plane: tokens and policies kept in
//! the cluster's state, the built-in objects and the one-time bootstrap,
//! and resolving a request's token into an [`Authorizer`].
//!
//! - [`tables`]: the ACL tables' schema, indexes and typed reads.
//! - [`tokens`] / [`policies`]: validated writes (create, update, delete)
//!   with Consul's rules and texts.
//! - [`bootstrap`]: the global-management policy and anonymous token, the
//!   configured initial management token, `PUT /v1/acl/bootstrap`.
//! - [`resolver`]: secret → token → policies → cached authorizer.

pub mod bootstrap;
pub mod policies;
pub mod resolver;
pub mod tables;
pub mod tokens;

use std::time::Duration;

pub use resolver::AclResolver;

use crate::store::StoreError;

/// Consul's shortest token lifetime (`ExpirationTTL`/`ExpirationTime`).
pub const DEFAULT_MIN_EXPIRATION_TTL: Duration = Duration::from_secs(60);

/// The agent's `acl { ... }` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclSettings {
    pub enabled: bool,
    /// `default_policy = "allow"`: Consul's default is allow; isthmus's
    /// documented production setting is deny.
    pub default_allow: bool,
    /// `tokens { initial_management = "..." }`: a management token with
    /// this secret, created at start when missing.
    pub initial_management: Option<String>,
    /// `tokens { agent = "..." }`: the token the agent's own requests use.
    pub agent_token: Option<String>,
    /// The shortest lifetime a token may be given (Consul: one minute).
    pub min_expiration_ttl: Duration,
}

impl Default for AclSettings {
    fn default() -> AclSettings {
        AclSettings {
            enabled: false,
            default_allow: true,
            initial_management: None,
            agent_token: None,
            min_expiration_ttl: DEFAULT_MIN_EXPIRATION_TTL,
        }
    }
}

/// Why a token could not be resolved or an ACL object not written.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// A secret that matches no token, or an expired one (Consul: 403
    /// `ACL not found`).
    #[error("ACL not found")]
    TokenNotFound,
    /// A request Consul refuses as invalid (its text).
    #[error("{0}")]
    Invalid(String),
    /// The object named by the request does not exist (404, its text).
    #[error("{0}")]
    NotFound(String),
    /// `PUT /v1/acl/bootstrap` after the cluster was bootstrapped.
    #[error("ACL bootstrap no longer allowed (reset index: {reset_index})")]
    BootstrapNotAllowed { reset_index: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AclError {
    pub(crate) fn invalid(message: impl Into<String>) -> AclError {
        AclError::Invalid(message.into())
    }
}

/// Now, as Go writes times in JSON (RFC 3339 with nanoseconds).
pub(crate) fn format_time(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// Consul's IDs are UUIDs in their canonical hyphenated form.
pub(crate) fn is_uuid(id: &str) -> bool {
    id.len() == 36 && uuid::Uuid::try_parse(id).is_ok()
}

/// A fresh random UUID.
pub(crate) fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests;
