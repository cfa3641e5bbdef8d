//! SKELETON (helper A replaces the bodies; signatures are the contract the
//! control plane codes against).

use super::rules::Rules;

/// An access level, ordered: `Deny < Read < Write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Deny,
    Read,
    Write,
}

impl Access {
    /// Consul's spelling in rules and denial texts: `deny`, `read`, `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// What a rule governs, spelled as in Consul's denial texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Acl,
    Agent,
    /// The intentions whose destination is a service (`intentions` inside
    /// a `service`/`service_prefix` rule).
    Intention,
    Mesh,
    Node,
    Operator,
    Peering,
    Service,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Acl => "acl",
            Resource::Agent => "agent",
            Resource::Intention => "intention",
            Resource::Mesh => "mesh",
            Resource::Node => "node",
            Resource::Operator => "operator",
            Resource::Peering => "peering",
            Resource::Service => "service",
        }
    }
}

/// A refused request: Display is Consul's `Permission denied: ...` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub accessor_id: String,
    pub resource: Resource,
    pub access: Access,
    /// The resource's name (`None` for acl, mesh, operator, peering).
    pub segment: Option<String>,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, _f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!("helper A")
    }
}

impl std::error::Error for Denied {}

/// The answer to "may this token do X on Y", compiled once per token and
/// policy revision and shared (`Arc`) by the requests that present it.
#[derive(Debug, Clone)]
pub struct Authorizer {
    accessor_id: String,
}

impl Authorizer {
    /// ACLs disabled: everything is allowed.
    pub fn allow_all() -> Authorizer {
        todo!("helper A")
    }

    /// A token linked to the global-management policy: everything allowed.
    pub fn management(accessor_id: &str) -> Authorizer {
        let _ = accessor_id;
        todo!("helper A")
    }

    /// A token's policies' rules and its service identities' synthesized
    /// rules (see [`Rules::service_identity`]) merged; what no rule covers
    /// falls to `default_allow`.
    pub fn new(accessor_id: &str, default_allow: bool, rules: &[Rules]) -> Authorizer {
        let _ = (accessor_id, default_allow, rules);
        todo!("helper A")
    }

    pub fn accessor_id(&self) -> &str {
        &self.accessor_id
    }

    /// Whether `access` on `resource` (named `segment` where the resource
    /// has names) is allowed.
    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        let _ = (resource, segment, access);
        todo!("helper A")
    }

    /// [`Authorizer::allows`] as a `Result` carrying the denial text.
    pub fn check(&self, resource: Resource, segment: &str, access: Access) -> Result<(), Denied> {
        if self.allows(resource, segment, access) {
            Ok(())
        } else {
            Err(Denied {
                accessor_id: self.accessor_id.clone(),
                resource,
                access,
                segment: (!segment.is_empty()).then(|| segment.to_owned()),
            })
        }
    }
}
