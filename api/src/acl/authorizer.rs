//! The answer to "may this token do X on Y": a token's policies and
//! identities merged as Consul merges them, compiled into per-family lookup
//! tables, and the `Permission denied` text of a refusal.
//!
//! Precedence (Consul's): when several policies name the same thing an
//! explicit `deny` wins, then `write`, then `read`; an exact name beats the
//! longest matching prefix; what no rule covers falls to the agent's
//! `default_policy`, except `acl`, which only a rule (or management) grants.
//! `mesh` and `peering` fall back to `operator` when unset; a service rule's
//! `intentions` defaults to `read` when its policy is `read` or `write`.

mod table;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use super::rules::{Family, Level, Rules};
use super::wire::ANONYMOUS_TOKEN_ACCESSOR_ID;
use table::{enforce, Decision, NameTable};

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
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let anonymous = self.accessor_id == ANONYMOUS_TOKEN_ACCESSOR_ID;
        f.write_str("Permission denied: ")?;
        if anonymous {
            f.write_str("anonymous token")?;
        } else if self.accessor_id.is_empty() {
            f.write_str("provided token")?;
        } else {
            write!(f, "token with AccessorID '{}'", self.accessor_id)?;
        }
        write!(
            f,
            " lacks permission '{}:{}'",
            self.resource.as_str(),
            self.access.as_str()
        )?;
        if let Some(segment) = &self.segment {
            write!(f, " on \"{segment}\"")?;
        }
        if anonymous {
            f.write_str(
                ". The anonymous token is used implicitly when a request does not specify a token.",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Denied {}

/// The answer to "may this token do X on Y", compiled once per token and
/// policy revision and shared (`Arc`) by the requests that present it.
#[derive(Debug, Clone)]
pub struct Authorizer {
    accessor_id: String,
    grants: Grants,
}

#[derive(Debug, Clone)]
enum Grants {
    /// ACLs disabled, or a management token.
    Everything,
    Policy(Box<Compiled>),
}

/// Merged rules, compiled per resource.
#[derive(Debug, Clone)]
struct Compiled {
    default_allow: bool,
    acl: Option<Access>,
    operator: Option<Access>,
    mesh: Option<Access>,
    peering: Option<Access>,
    agent: NameTable,
    node: NameTable,
    service: NameTable,
    intention: NameTable,
}

impl Authorizer {
    /// ACLs disabled: everything is allowed.
    pub fn allow_all() -> Authorizer {
        Authorizer {
            accessor_id: String::new(),
            grants: Grants::Everything,
        }
    }

    /// A token linked to the global-management policy: everything allowed.
    pub fn management(accessor_id: &str) -> Authorizer {
        Authorizer {
            accessor_id: accessor_id.to_owned(),
            grants: Grants::Everything,
        }
    }

    /// A token's policies' rules and its service identities' synthesized
    /// rules (see [`Rules::service_identity`]) merged; what no rule covers
    /// falls to `default_allow`.
    pub fn new(accessor_id: &str, default_allow: bool, rules: &[Rules]) -> Authorizer {
        Authorizer {
            accessor_id: accessor_id.to_owned(),
            grants: Grants::Policy(Box::new(Compiled::new(default_allow, rules))),
        }
    }

    pub fn accessor_id(&self) -> &str {
        &self.accessor_id
    }

    /// Whether this authorizer allows everything (ACLs off, or management).
    pub fn is_unrestricted(&self) -> bool {
        matches!(self.grants, Grants::Everything)
    }

    /// Whether `access` on `resource` (named `segment` where the resource
    /// has names) is allowed. For [`Resource::Intention`] the segment `*`
    /// (an intention on every destination) asks, as Consul does, whether any
    /// rule allows reading, or whether every rule allows writing.
    pub fn allows(&self, resource: Resource, segment: &str, access: Access) -> bool {
        match &self.grants {
            Grants::Everything => true,
            Grants::Policy(compiled) => compiled
                .decide(resource, segment, access)
                .unwrap_or_else(|| compiled.default_for(resource)),
        }
    }

    /// Whether `access` is allowed on every name of a named resource
    /// (Consul's "read all services/nodes"): no rule refuses it and a
    /// catch-all `""` prefix (or the default policy) allows it.
    pub fn allows_all(&self, resource: Resource, access: Access) -> bool {
        self.scan(resource, access, NameTable::decide_all)
    }

    /// Whether `access` is allowed on at least one name of a named resource
    /// (Consul's "write any service").
    pub fn allows_any(&self, resource: Resource, access: Access) -> bool {
        self.scan(resource, access, NameTable::decide_any)
    }

    fn scan(
        &self,
        resource: Resource,
        access: Access,
        how: fn(&NameTable, Access) -> Decision,
    ) -> bool {
        match &self.grants {
            Grants::Everything => true,
            Grants::Policy(compiled) => match compiled.table(resource) {
                Some(table) => how(table, access),
                None => compiled.decide(resource, "", access),
            }
            .unwrap_or_else(|| compiled.default_for(resource)),
        }
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

/// One named family's merged rules, exact and prefix, by name.
#[derive(Default)]
struct Merged {
    exact: HashMap<String, Level>,
    prefixes: HashMap<String, Level>,
}

impl Merged {
    fn add(&mut self, prefix: bool, name: &str, level: Level) {
        let map = if prefix {
            &mut self.prefixes
        } else {
            &mut self.exact
        };
        merge_into(map, name, level);
    }

    fn compile(self) -> NameTable {
        let access = |map: HashMap<String, Level>| {
            map.into_iter()
                .map(|(name, level)| (name, level_access(level)))
                .collect()
        };
        NameTable::new(access(self.exact), access(self.prefixes))
    }
}

fn merge_into(map: &mut HashMap<String, Level>, name: &str, level: Level) {
    match map.get_mut(name) {
        Some(existing) if level.merge_rank() > existing.merge_rank() => *existing = level,
        Some(_) => {}
        None => {
            map.insert(name.to_owned(), level);
        }
    }
}

fn merge_global(slot: &mut Option<Level>, level: Option<Level>) {
    if let Some(level) = level {
        if slot.is_none_or(|existing| level.merge_rank() > existing.merge_rank()) {
            *slot = Some(level);
        }
    }
}

/// `list` (key rules only) grants reading; this mesh asks nothing finer.
fn level_access(level: Level) -> Access {
    match level {
        Level::Deny => Access::Deny,
        Level::Read | Level::List => Access::Read,
        Level::Write => Access::Write,
    }
}

/// The service rules' policy and intentions, merged separately as Consul
/// does (an unset `intentions` loses to any value), by (prefix, name).
type ServiceMerge = HashMap<(bool, String), (Level, Option<Level>)>;

impl Compiled {
    fn new(default_allow: bool, rules: &[Rules]) -> Compiled {
        let (mut acl, mut operator, mut mesh, mut peering) = (None, None, None, None);
        let mut agent = Merged::default();
        let mut node = Merged::default();
        let mut services: ServiceMerge = HashMap::new();
        for policy in rules {
            merge_global(&mut acl, policy.acl);
            merge_global(&mut operator, policy.operator);
            merge_global(&mut mesh, policy.mesh);
            merge_global(&mut peering, policy.peering);
            for rule in &policy.named {
                match rule.family {
                    Family::Agent => agent.add(rule.prefix, &rule.name, rule.policy),
                    Family::Node => node.add(rule.prefix, &rule.name, rule.policy),
                    Family::Service => {
                        let key = (rule.prefix, rule.name.clone());
                        let entry = services.entry(key).or_insert((rule.policy, None));
                        if rule.policy.merge_rank() > entry.0.merge_rank() {
                            entry.0 = rule.policy;
                        }
                        merge_global(&mut entry.1, rule.intentions);
                    }
                    // Families this mesh has no endpoints for.
                    Family::Event | Family::Key | Family::Query | Family::Session => {}
                }
            }
        }
        let mut service = Merged::default();
        let mut intention = Merged::default();
        for ((prefix, name), (policy, intentions)) in services {
            let intentions = intentions.unwrap_or(match policy {
                Level::Read | Level::Write => Level::Read,
                Level::Deny | Level::List => Level::Deny,
            });
            service.add(prefix, &name, policy);
            intention.add(prefix, &name, intentions);
        }
        Compiled {
            default_allow,
            acl: acl.map(level_access),
            operator: operator.map(level_access),
            mesh: mesh.map(level_access),
            peering: peering.map(level_access),
            agent: agent.compile(),
            node: node.compile(),
            service: service.compile(),
            intention: intention.compile(),
        }
    }

    fn table(&self, resource: Resource) -> Option<&NameTable> {
        match resource {
            Resource::Agent => Some(&self.agent),
            Resource::Intention => Some(&self.intention),
            Resource::Node => Some(&self.node),
            Resource::Service => Some(&self.service),
            Resource::Acl | Resource::Mesh | Resource::Operator | Resource::Peering => None,
        }
    }

    /// What the rules say, `None` when none speaks.
    fn decide(&self, resource: Resource, segment: &str, access: Access) -> Decision {
        let single = |rule: Option<Access>| rule.map(|rule| enforce(rule, access));
        match resource {
            Resource::Acl => single(self.acl),
            Resource::Operator => single(self.operator),
            Resource::Mesh => single(self.mesh.or(self.operator)),
            Resource::Peering => single(self.peering.or(self.operator)),
            Resource::Intention if segment == "*" => match access {
                Access::Write => self.intention.decide_all(access),
                Access::Read | Access::Deny => self.intention.decide_any(access),
            },
            Resource::Agent | Resource::Intention | Resource::Node | Resource::Service => self
                .table(resource)
                .and_then(|table| table.decide(segment, access)),
        }
    }

    /// Consul's default authorizer: `default_policy` for everything except
    /// the ACL system itself, which default `allow` does not open.
    fn default_for(&self, resource: Resource) -> bool {
        resource != Resource::Acl && self.default_allow
    }
}
