//! SKELETON (helper B replaces and extends it): ACL state in the store,
//! bootstrap, the initial management token, and resolving a request's
//! token into an [`Authorizer`].

use std::sync::Arc;

use isthmus_api::acl::Authorizer;

use crate::store::{Store, StoreError};

/// The agent's `acl { ... }` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclSettings {
    pub enabled: bool,
    /// `default_policy = "allow"`; Consul's default is allow, isthmus's
    /// documented production setting is deny.
    pub default_allow: bool,
    /// `tokens { initial_management = "..." }`: a management token with
    /// this secret, created at start when missing.
    pub initial_management: Option<String>,
    /// `tokens { agent = "..." }`: the token the agent's own requests use.
    pub agent_token: Option<String>,
}

/// Why a token could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// A secret that matches no token (Consul: 403 `ACL not found`).
    #[error("ACL not found")]
    TokenNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Turns a request's token secret into its authorizer.
pub struct AclResolver {
    settings: AclSettings,
    #[allow(dead_code)]
    store: Store,
}

impl AclResolver {
    pub fn new(settings: AclSettings, store: Store) -> AclResolver {
        AclResolver { settings, store }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The authorizer of the token whose secret is `secret` (`None`: the
    /// anonymous token). With ACLs disabled: allow everything.
    pub fn resolve(&self, secret: Option<&str>) -> Result<Arc<Authorizer>, AclError> {
        if !self.settings.enabled {
            return Ok(Arc::new(Authorizer::allow_all()));
        }
        let _ = secret;
        todo!("helper B")
    }
}
