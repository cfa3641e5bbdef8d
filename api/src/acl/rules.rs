//! A policy's rules in Consul's rule language: parsing (HCL, or the same
//! structure as JSON), validation with Consul's error texts, the rules Consul
//! synthesizes for service and node identities, and rendering back to HCL.
//!
//! The families are Consul's: `agent`, `event`, `key`, `node`, `query`,
//! `service`, `session` (each also as `<family>_prefix`), with a `policy` and,
//! for services, `intentions`; and the single-valued `acl`, `keyring`,
//! `mesh`, `operator`, `peering`. Everything is accepted and validated so real
//! Consul policies load; the authorizer uses the families this mesh enforces.
//!
//! Outside input is bounded: [`MAX_RULES_BYTES`], [`MAX_NESTING`],
//! [`MAX_RULE_COUNT`] and [`MAX_NAME_BYTES`].

mod decode;
mod syntax;
#[cfg(test)]
mod tests;

use std::fmt;

pub use decode::MAX_RULES_BYTES;
pub use syntax::MAX_NESTING;

/// The most named rules (`service "x" {...}` and the like) one policy may hold.
pub const MAX_RULE_COUNT: usize = 1000;
/// The longest name or prefix a rule may carry, in bytes.
pub const MAX_NAME_BYTES: usize = 512;

/// A policy value as written in rules. `list` exists only for `key` and
/// `key_prefix` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Deny,
    Read,
    List,
    Write,
}

impl Level {
    /// Consul accepts the values in any letter case.
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "deny" => Some(Level::Deny),
            "read" => Some(Level::Read),
            "list" => Some(Level::List),
            "write" => Some(Level::Write),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Deny => "deny",
            Level::Read => "read",
            Level::List => "list",
            Level::Write => "write",
        }
    }

    /// Consul's merge order when several policies name the same thing: an
    /// explicit deny wins, then write, then list, then read.
    pub(crate) fn merge_rank(self) -> u8 {
        match self {
            Level::Read => 1,
            Level::List => 2,
            Level::Write => 3,
            Level::Deny => 4,
        }
    }
}

/// A family of named rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Agent,
    Event,
    Key,
    Node,
    Query,
    Service,
    Session,
}

impl Family {
    /// In the order Consul validates them (which decides which error a
    /// policy with several mistakes reports).
    pub const ALL: [Family; 7] = [
        Family::Agent,
        Family::Key,
        Family::Node,
        Family::Service,
        Family::Session,
        Family::Event,
        Family::Query,
    ];

    /// The rule's keyword: `service`, or `service_prefix` for a prefix rule.
    pub fn keyword(self, prefix: bool) -> &'static str {
        match (self, prefix) {
            (Family::Agent, false) => "agent",
            (Family::Agent, true) => "agent_prefix",
            (Family::Event, false) => "event",
            (Family::Event, true) => "event_prefix",
            (Family::Key, false) => "key",
            (Family::Key, true) => "key_prefix",
            (Family::Node, false) => "node",
            (Family::Node, true) => "node_prefix",
            (Family::Query, false) => "query",
            (Family::Query, true) => "query_prefix",
            (Family::Service, false) => "service",
            (Family::Service, true) => "service_prefix",
            (Family::Session, false) => "session",
            (Family::Session, true) => "session_prefix",
        }
    }

    /// The family and whether it is the prefix form, from a keyword.
    pub fn from_keyword(keyword: &str) -> Option<(Family, bool)> {
        Family::ALL.into_iter().find_map(|family| {
            [false, true]
                .into_iter()
                .find(|&prefix| family.keyword(prefix) == keyword)
                .map(|prefix| (family, prefix))
        })
    }

    fn allows_list(self) -> bool {
        self == Family::Key
    }

    /// How Consul prints the offending rule in its `Invalid ... policy: %#v`
    /// errors: the Go type and the name of its key field.
    fn go_shape(self) -> (&'static str, &'static str, bool) {
        match self {
            Family::Agent => ("AgentRule", "Node", false),
            Family::Event => ("EventRule", "Event", false),
            Family::Key => ("KeyRule", "Prefix", true),
            Family::Node => ("NodeRule", "Name", true),
            Family::Query => ("PreparedQueryRule", "Prefix", false),
            Family::Service => ("ServiceRule", "Name", true),
            Family::Session => ("SessionRule", "Node", false),
        }
    }
}

/// One named rule: `service "web" { policy = "write" intentions = "read" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRule {
    pub family: Family,
    /// `service_prefix` rather than `service`.
    pub prefix: bool,
    pub name: String,
    pub policy: Level,
    /// Only on service rules; unset means Consul's default (read when the
    /// service policy is read or write, otherwise deny).
    pub intentions: Option<Level>,
}

/// A single-valued family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Global {
    Acl,
    Keyring,
    Mesh,
    Operator,
    Peering,
}

impl Global {
    /// In Consul's validation order.
    pub const ALL: [Global; 5] = [
        Global::Acl,
        Global::Keyring,
        Global::Operator,
        Global::Mesh,
        Global::Peering,
    ];

    pub fn keyword(self) -> &'static str {
        match self {
            Global::Acl => "acl",
            Global::Keyring => "keyring",
            Global::Mesh => "mesh",
            Global::Operator => "operator",
            Global::Peering => "peering",
        }
    }

    pub fn from_keyword(keyword: &str) -> Option<Global> {
        Global::ALL.into_iter().find(|g| g.keyword() == keyword)
    }
}

/// A parsed, validated policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// The named rules in the order written.
    pub named: Vec<NamedRule>,
    pub acl: Option<Level>,
    pub keyring: Option<Level>,
    pub mesh: Option<Level>,
    pub operator: Option<Level>,
    pub peering: Option<Level>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

impl Rules {
    /// Parses Consul's rule language (HCL, or the same as JSON when the text
    /// starts with `{`). Empty text is an empty policy.
    pub fn parse(text: &str) -> Result<Rules, RulesError> {
        let raw = decode::decode(text)?;
        raw.validate()
    }

    /// What Consul grants a service identity `name`: `service "name"` and
    /// `service "name-sidecar-proxy"` write, `service_prefix ""` and
    /// `node_prefix ""` read.
    pub fn service_identity(name: &str) -> Rules {
        let rule = |family, prefix, name: &str, policy| NamedRule {
            family,
            prefix,
            name: name.to_owned(),
            policy,
            intentions: None,
        };
        Rules {
            named: vec![
                rule(Family::Service, false, name, Level::Write),
                rule(
                    Family::Service,
                    false,
                    &format!("{name}-sidecar-proxy"),
                    Level::Write,
                ),
                rule(Family::Service, true, "", Level::Read),
                rule(Family::Node, true, "", Level::Read),
            ],
            ..Rules::default()
        }
    }

    /// What Consul grants a node identity `name`: `node "name"` write and
    /// `service_prefix ""` read.
    pub fn node_identity(name: &str) -> Rules {
        Rules {
            named: vec![
                NamedRule {
                    family: Family::Node,
                    prefix: false,
                    name: name.to_owned(),
                    policy: Level::Write,
                    intentions: None,
                },
                NamedRule {
                    family: Family::Service,
                    prefix: true,
                    name: String::new(),
                    policy: Level::Read,
                    intentions: None,
                },
            ],
            ..Rules::default()
        }
    }

    /// The value of a single-valued family.
    pub fn global(&self, global: Global) -> Option<Level> {
        match global {
            Global::Acl => self.acl,
            Global::Keyring => self.keyring,
            Global::Mesh => self.mesh,
            Global::Operator => self.operator,
            Global::Peering => self.peering,
        }
    }

    fn global_mut(&mut self, global: Global) -> &mut Option<Level> {
        match global {
            Global::Acl => &mut self.acl,
            Global::Keyring => &mut self.keyring,
            Global::Mesh => &mut self.mesh,
            Global::Operator => &mut self.operator,
            Global::Peering => &mut self.peering,
        }
    }

    /// The policy as HCL that [`Rules::parse`] reads back to the same rules.
    pub fn to_hcl(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for global in Global::ALL {
            if let Some(level) = self.global(global) {
                writeln!(f, "{} = \"{}\"", global.keyword(), level.as_str())?;
            }
        }
        for rule in &self.named {
            writeln!(
                f,
                "{} {} {{",
                rule.family.keyword(rule.prefix),
                syntax::quoted(&rule.name)
            )?;
            writeln!(f, "  policy = \"{}\"", rule.policy.as_str())?;
            if let Some(intentions) = rule.intentions {
                writeln!(f, "  intentions = \"{}\"", intentions.as_str())?;
            }
            writeln!(f, "}}")?;
        }
        Ok(())
    }
}

/// A rule as decoded, before its values are checked.
#[derive(Debug, Clone)]
pub(crate) struct RawNamed {
    pub family: Family,
    pub prefix: bool,
    pub name: String,
    pub policy: String,
    pub intentions: Option<String>,
}

impl RawNamed {
    /// Consul's `%#v` of the rule, as its validation errors print it.
    fn go_debug(&self) -> String {
        let (type_name, key_field, enterprise) = self.family.go_shape();
        let mut out = format!(
            "&acl.{type_name}{{{key_field}:{:?}, Policy:{:?}",
            self.name, self.policy
        );
        if self.family == Family::Service {
            out.push_str(&format!(
                ", Intentions:{:?}",
                self.intentions.as_deref().unwrap_or("")
            ));
        }
        if enterprise {
            out.push_str(", EnterpriseRule:acl.EnterpriseRule{}");
        }
        out.push('}');
        out
    }
}

/// A policy as decoded: named rules in order and the single values.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawRules {
    pub named: Vec<RawNamed>,
    pub globals: Vec<(Global, String)>,
}

impl RawRules {
    /// Checks the values in Consul's order with Consul's texts.
    fn validate(self) -> Result<Rules, RulesError> {
        let mut rules = Rules::default();
        let global_value = |global: Global| {
            self.globals
                .iter()
                .find(|(g, _)| *g == global)
                .map(|(_, v)| v.as_str())
        };
        let check_global = |global: Global| -> Result<Option<Level>, RulesError> {
            match global_value(global) {
                None | Some("") => Ok(None),
                Some(value) => match Level::parse(value) {
                    Some(level) if level != Level::List => Ok(Some(level)),
                    _ => Err(RulesError(format!(
                        "Invalid {} policy: {value:?}",
                        global.keyword()
                    ))),
                },
            }
        };
        // Consul checks acl first and the other single values last.
        rules.acl = check_global(Global::Acl)?;
        let mut checked: Vec<Option<NamedRule>> = vec![None; self.named.len()];
        for family in Family::ALL {
            for prefix in [false, true] {
                let of_kind = self
                    .named
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.family == family && r.prefix == prefix);
                for (at, raw) in of_kind {
                    checked[at] = Some(validate_named(raw)?);
                }
            }
        }
        for global in [
            Global::Keyring,
            Global::Operator,
            Global::Mesh,
            Global::Peering,
        ] {
            *rules.global_mut(global) = check_global(global)?;
        }
        rules.named = checked.into_iter().flatten().collect();
        Ok(rules)
    }
}

fn validate_named(raw: &RawNamed) -> Result<NamedRule, RulesError> {
    let keyword = raw.family.keyword(raw.prefix);
    let policy = Level::parse(&raw.policy)
        .filter(|level| *level != Level::List || raw.family.allows_list())
        .ok_or_else(|| RulesError(format!("Invalid {keyword} policy: {}", raw.go_debug())))?;
    let intentions = match raw.intentions.as_deref() {
        None | Some("") => None,
        Some(value) => Some(
            Level::parse(value)
                .filter(|level| *level != Level::List)
                .ok_or_else(|| {
                    RulesError(format!(
                        "Invalid {keyword} intentions policy: {}",
                        raw.go_debug()
                    ))
                })?,
        ),
    };
    Ok(NamedRule {
        family: raw.family,
        prefix: raw.prefix,
        name: raw.name.clone(),
        policy,
        intentions,
    })
}
