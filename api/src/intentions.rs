//! Intention evaluation: may this caller reach that service?
//!
//! [`IntentionSet::compile`] turns the `service-intentions` entries into an
//! immutable snapshot: rules indexed by destination and pre-sorted by
//! precedence, regexes compiled. [`IntentionSet::decide`] is then a hash
//! lookup and a linear scan that neither allocates nor locks, so a sidecar can
//! call it for every connection; callers swap snapshots (say, in an `Arc`) when
//! the entries change.
//!
//! Semantics follow Consul: the matching source with the highest precedence
//! decides, a deny wins a tie, and no match means the default policy. A source
//! with a `Peer` matches only callers from that peer; a source without one
//! matches only local callers. Destinations are in the `default` namespace.

use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;
use std::fmt;

use crate::config_entry::{IntentionAction, ServiceIntentions, SourceIntention};

mod l7;
#[cfg(test)]
mod tests;

pub use l7::L7Rules;

const WILDCARD: &str = "*";
const DEFAULT_NAMESPACE: &str = "default";
const DEFAULT_PARTITION: &str = "default";

/// Consul's intention precedence (`UpdatePrecedence`), 9 (exact to exact)
/// down to 1: the destination's exactness outranks the source's.
pub(crate) fn precedence(
    destination_namespace: &str,
    destination_name: &str,
    source_namespace: &str,
    source_name: &str,
) -> u32 {
    let highest_for_destination = match exactness(destination_namespace, destination_name) {
        2 => 9,
        1 => 6,
        _ => 3,
    };
    highest_for_destination - (2 - exactness(source_namespace, source_name))
}

/// 2 when namespace and name are exact, 1 when only the name is `*`, 0 when the namespace is `*`.
fn exactness(namespace: &str, name: &str) -> u32 {
    if namespace == WILDCARD {
        0
    } else if name == WILDCARD {
        1
    } else {
        2
    }
}

/// The caller of a connection, as its certificate identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source<'a> {
    /// The peer the caller comes from; `None` for a local caller.
    pub peer: Option<&'a str>,
    /// `"default"` for now; an empty string is read as `"default"`.
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Source<'a> {
    pub fn local(name: &'a str) -> Self {
        Source {
            peer: None,
            namespace: DEFAULT_NAMESPACE,
            name,
        }
    }

    pub fn from_peer(peer: &'a str, name: &'a str) -> Self {
        Source {
            peer: Some(peer),
            namespace: DEFAULT_NAMESPACE,
            name,
        }
    }
}

/// The intention that decided, for reasons and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedIntention {
    /// `name` for a local source, `peer:<peer>/name` for a peer's.
    pub source: String,
    /// The entry's destination name, possibly `*`.
    pub destination: String,
    pub precedence: u32,
    /// `None` for an L7 intention, whose action depends on the request.
    pub action: Option<IntentionAction>,
}

impl MatchedIntention {
    fn describe(source: &SourceIntention, destination: &str, precedence: u32) -> MatchedIntention {
        let source_description = match &source.peer {
            Some(peer) => format!("peer:{peer}/{}", source.name),
            None => source.name.clone(),
        };
        MatchedIntention {
            source: source_description,
            destination: destination.to_owned(),
            precedence,
            action: if source.permissions.is_empty() {
                source.action
            } else {
                None
            },
        }
    }
}

/// What the intentions say about one connection.
#[derive(Debug, Clone, Copy)]
pub enum Decision<'a> {
    /// Decided at L4: allow or deny the connection outright. `matched` is
    /// `None` when no intention matched and the default policy decided.
    L4 {
        allow: bool,
        matched: Option<&'a MatchedIntention>,
    },
    /// An L7 intention matched: every HTTP request must be checked with [`L7Rules::authorize`].
    L7(&'a L7Rules),
}

impl Decision<'_> {
    /// Whether a connection that carries no HTTP (raw TCP, or a check without
    /// request context) is allowed. L7 intentions deny it, as in Consul.
    pub fn allows_connection_without_http(&self) -> bool {
        match self {
            Decision::L4 { allow, .. } => *allow,
            Decision::L7(_) => false,
        }
    }

    /// Consul's reason text, as the authorize endpoint reports it.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// Writes [`Decision::reason`]'s text, for logging without an intermediate `String`.
impl fmt::Display for Decision<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::L4 { matched: None, .. } => out.write_str("Default intention policy"),
            Decision::L4 {
                allow,
                matched: Some(intention),
            } => {
                let action = if *allow { "allow" } else { "deny" };
                write!(
                    out,
                    "Matched L4 intention: {} => {} (Action: {action}, Precedence: {})",
                    intention.source, intention.destination, intention.precedence
                )
            }
            Decision::L7(rules) => {
                let intention = rules.intention();
                write!(
                    out,
                    "Matched L7 intention: {} => {} (Precedence: {}), but the request has no HTTP context",
                    intention.source, intention.destination, intention.precedence
                )
            }
        }
    }
}

/// An immutable, compiled snapshot of all intentions.
#[derive(Debug)]
pub struct IntentionSet {
    rules: Vec<Rule>,
    /// Per exact destination name: indexes into `rules` of its own rules and
    /// the wildcard-destination rules, merged in evaluation order.
    by_destination: HashMap<Box<str>, Box<[usize]>>,
    /// Rules of `*` destinations alone, for destinations without an entry.
    wildcard_destination: Box<[usize]>,
    default_allow: bool,
}

/// One source of one entry.
#[derive(Debug)]
struct Rule {
    peer: Option<Box<str>>,
    /// `*` matches any namespace.
    namespace: Box<str>,
    /// `*` matches any name.
    name: Box<str>,
    precedence: u32,
    verdict: Verdict,
}

#[derive(Debug)]
enum Verdict {
    L4 {
        allow: bool,
        intention: MatchedIntention,
    },
    L7(L7Rules),
}

impl Verdict {
    /// Among rules of equal precedence, the more restrictive is tried first:
    /// a deny wins a tie, and an L7 rule (which may deny) beats an allow.
    fn restrictiveness_rank(&self) -> u8 {
        match self {
            Verdict::L4 { allow: false, .. } => 0,
            Verdict::L7(_) => 1,
            Verdict::L4 { allow: true, .. } => 2,
        }
    }

    fn intention(&self) -> &MatchedIntention {
        match self {
            Verdict::L4 { intention, .. } => intention,
            Verdict::L7(rules) => rules.intention(),
        }
    }
}

impl Rule {
    fn matches(&self, source: &Source<'_>) -> bool {
        let source_namespace = if source.namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            source.namespace
        };
        self.peer.as_deref() == source.peer
            && (&*self.namespace == WILDCARD || &*self.namespace == source_namespace)
            && (&*self.name == WILDCARD || &*self.name == source.name)
    }
}

/// Evaluation order: higher precedence first, then the more restrictive
/// verdict, then the source's description so the order is stable.
fn evaluation_order(first: &Rule, second: &Rule) -> Ordering {
    let key = |rule: &Rule| {
        (
            Reverse(rule.precedence),
            rule.verdict.restrictiveness_rank(),
        )
    };
    key(first).cmp(&key(second)).then_with(|| {
        first
            .verdict
            .intention()
            .source
            .cmp(&second.verdict.intention().source)
    })
}

impl IntentionSet {
    /// Compiles the entries. They are expected to be valid (as
    /// [`crate::config_entry::ConfigEntry::from_json`] ensures); should one
    /// slip through, it fails closed: a source with neither action nor
    /// permissions is ignored, and an L7 permission that cannot be compiled
    /// never matches if it allows and always matches if it denies.
    ///
    /// Sources in another admin partition and entries for another namespace
    /// are skipped: every workload here is in the `default` partition and namespace.
    pub fn compile(entries: &[ServiceIntentions], default_allow: bool) -> IntentionSet {
        let mut rules = Vec::new();
        let mut by_destination: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut wildcard_destination = Vec::new();

        for entry in entries {
            let destination_namespace = entry.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            if destination_namespace != DEFAULT_NAMESPACE && destination_namespace != WILDCARD {
                continue;
            }
            for source in &entry.sources {
                if source
                    .partition
                    .as_deref()
                    .is_some_and(|partition| partition != DEFAULT_PARTITION)
                {
                    continue;
                }
                let source_namespace = source.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                // Recomputed rather than trusted: entries built in code may not carry it.
                let precedence = precedence(
                    destination_namespace,
                    &entry.name,
                    source_namespace,
                    &source.name,
                );
                let intention = MatchedIntention::describe(source, &entry.name, precedence);
                let verdict = if !source.permissions.is_empty() {
                    Verdict::L7(L7Rules::compile(
                        intention,
                        &source.permissions,
                        default_allow,
                    ))
                } else if let Some(action) = source.action {
                    Verdict::L4 {
                        allow: action.is_allow(),
                        intention,
                    }
                } else {
                    continue;
                };
                let index = rules.len();
                rules.push(Rule {
                    peer: source.peer.as_deref().map(Box::from),
                    namespace: source_namespace.into(),
                    name: source.name.as_str().into(),
                    precedence,
                    verdict,
                });
                if entry.name == WILDCARD {
                    wildcard_destination.push(index);
                } else {
                    by_destination
                        .entry(entry.name.as_str().into())
                        .or_default()
                        .push(index);
                }
            }
        }

        let in_evaluation_order = |indexes: &mut Vec<usize>| {
            indexes.sort_by(|first, second| evaluation_order(&rules[*first], &rules[*second]));
        };
        in_evaluation_order(&mut wildcard_destination);
        let by_destination = by_destination
            .into_iter()
            .map(|(destination, mut indexes)| {
                indexes.extend_from_slice(&wildcard_destination);
                in_evaluation_order(&mut indexes);
                (destination, indexes.into_boxed_slice())
            })
            .collect();

        IntentionSet {
            rules,
            by_destination,
            wildcard_destination: wildcard_destination.into_boxed_slice(),
            default_allow,
        }
    }

    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The decision for a connection from `source` to service `destination`.
    pub fn decide<'a>(&'a self, source: &Source<'_>, destination: &str) -> Decision<'a> {
        let candidates = self
            .by_destination
            .get(destination)
            .unwrap_or(&self.wildcard_destination);
        let matching_rule = candidates
            .iter()
            .map(|index| &self.rules[*index])
            .find(|rule| rule.matches(source));
        match matching_rule.map(|rule| &rule.verdict) {
            Some(Verdict::L4 { allow, intention }) => Decision::L4 {
                allow: *allow,
                matched: Some(intention),
            },
            Some(Verdict::L7(rules)) => Decision::L7(rules),
            None => Decision::L4 {
                allow: self.default_allow,
                matched: None,
            },
        }
    }
}
