//! The rules of one named family compiled for lookups: exact names in a
//! hash map, prefixes in a hash map probed once per distinct prefix length
//! (longest first), so a check costs a handful of hash lookups however many
//! rules a token holds.

use std::collections::{BTreeSet, HashMap};

use super::Access;

/// A decision before the default policy: `None` when no rule speaks.
pub(super) type Decision = Option<bool>;

#[derive(Debug, Clone, Default)]
pub(super) struct NameTable {
    exact: HashMap<String, Access>,
    prefixes: HashMap<String, Access>,
    /// The distinct lengths of `prefixes`' keys, longest first.
    prefix_lengths: Vec<usize>,
}

impl NameTable {
    pub fn new(exact: HashMap<String, Access>, prefixes: HashMap<String, Access>) -> NameTable {
        let lengths: BTreeSet<usize> = prefixes.keys().map(String::len).collect();
        NameTable {
            exact,
            prefixes,
            prefix_lengths: lengths.into_iter().rev().collect(),
        }
    }

    /// The rule that governs `segment`: its exact rule, else the rule of the
    /// longest prefix of it.
    pub fn lookup(&self, segment: &str) -> Option<Access> {
        if let Some(access) = self.exact.get(segment) {
            return Some(*access);
        }
        self.prefix_lengths
            .iter()
            .filter(|&&len| len <= segment.len() && segment.is_char_boundary(len))
            .find_map(|&len| self.prefixes.get(&segment[..len]).copied())
    }

    pub fn decide(&self, segment: &str, required: Access) -> Decision {
        self.lookup(segment).map(|rule| enforce(rule, required))
    }

    /// Consul's "any" check (e.g. intentions read on `*`): allowed when any
    /// rule allows; a catch-all `""` prefix that refuses makes the answer a
    /// refusal rather than the default.
    pub fn decide_any(&self, required: Access) -> Decision {
        let catch_all = self.prefixes.get("").map(|rule| enforce(*rule, required));
        if catch_all == Some(true) {
            return Some(true);
        }
        let any = self
            .names()
            .any(|name| self.leaf_decision(name, required, LeafMode::Any) == Some(true));
        if any {
            Some(true)
        } else {
            catch_all
        }
    }

    /// Consul's "all" check (e.g. intentions write on `*`, reading every
    /// service): refused when any rule refuses; allowed only when a catch-all
    /// `""` prefix allows, else the default decides.
    pub fn decide_all(&self, required: Access) -> Decision {
        let catch_all = self.prefixes.get("").map(|rule| enforce(*rule, required));
        if catch_all == Some(false) {
            return Some(false);
        }
        let refused = self
            .names()
            .any(|name| self.leaf_decision(name, required, LeafMode::All) == Some(false));
        if refused {
            Some(false)
        } else {
            catch_all
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.exact
            .keys()
            .chain(self.prefixes.keys())
            .map(String::as_str)
    }

    /// What the rules written for exactly `name` (its exact and its prefix
    /// rule) say, combined as Consul combines them for any/all checks.
    fn leaf_decision(&self, name: &str, required: Access, mode: LeafMode) -> Decision {
        let prefix = self.prefixes.get(name).map(|rule| enforce(*rule, required));
        let exact = self.exact.get(name).map(|rule| enforce(*rule, required));
        match mode {
            LeafMode::Any if prefix == Some(true) => prefix,
            LeafMode::All if prefix == Some(false) => prefix,
            _ => exact.or(prefix),
        }
    }
}

#[derive(Clone, Copy)]
enum LeafMode {
    Any,
    All,
}

/// Whether a rule's level grants the required access: write grants all,
/// read grants read, deny grants nothing.
pub(super) fn enforce(rule: Access, required: Access) -> bool {
    match rule {
        Access::Write => true,
        Access::Read => required == Access::Read,
        Access::Deny => false,
    }
}
