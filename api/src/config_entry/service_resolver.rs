//! The `service-resolver` config entry: which instances of a service a caller
//! reaches — subsets, a redirect elsewhere (possibly to a peer) and failover
//! targets tried in order — with Consul's validation and error texts.
//!
//! isthmus clusters are single-datacenter and have no namespaces or admin
//! partitions: `Datacenter(s)` is refused (a peer is the way to another
//! cluster), and `Namespace`/`Partition` accept only `default`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{check_scope, validate_field_name, validate_meta, ConfigEntryError};
use crate::filter::Filter;

/// The failover key that applies to every subset without its own entry.
pub const FAILOVER_ANY_SUBSET: &str = "*";

const MAX_SUBSETS: usize = 64;
const MAX_FAILOVERS: usize = 65;
const MAX_FAILOVER_TARGETS: usize = 32;
const MAX_SUBSET_NAME_LENGTH: usize = 63;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceResolver {
    /// The service this resolver applies to.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// How long a caller waits for a connection to one instance.
    #[serde(
        default,
        with = "crate::duration::serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_timeout: Option<Duration>,
    #[serde(
        default,
        with = "crate::duration::serde_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_timeout: Option<Duration>,
    /// The subset used when a caller names none; empty: every instance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_subset: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, ResolverSubset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<ResolverRedirect>,
    /// Keyed by subset name, or `*` for any subset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failover: BTreeMap<String, ResolverFailover>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A named portion of a service's instances.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolverSubset {
    /// A filter expression over a health-service entry (`Service.Tags contains "v2"`,
    /// `Service.Meta.version == "2"`); empty selects every instance.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Only instances whose checks all pass (otherwise warning ones count too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_passing: bool,
}

/// Resolve another service (or the same one at a peer) instead of this one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolverRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// Where to go when a subset has no healthy instance: `Targets` in order, or
/// Consul's older single-target form (`Service`/`ServiceSubset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResolverFailover {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Always empty once validated: kept so the refusal can name it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<FailoverTarget>,
}

/// One failover destination: a service (default: the resolver's own) in this
/// cluster or, with `Peer`, imported from that peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FailoverTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

impl ServiceResolver {
    /// The failover that applies to `subset` (`""`: the default subset): its
    /// own entry, else `*`.
    pub fn failover_for(&self, subset: &str) -> Option<&ResolverFailover> {
        let subset = if subset.is_empty() {
            self.default_subset.as_str()
        } else {
            subset
        };
        self.failover
            .get(subset)
            .or_else(|| self.failover.get(FAILOVER_ANY_SUBSET))
    }

    /// The failover targets for `subset`, in the order to try them, with the
    /// older single-target form turned into one target and an omitted
    /// `Service` filled with this resolver's name.
    pub fn failover_targets(&self, subset: &str) -> Vec<FailoverTarget> {
        let Some(failover) = self.failover_for(subset) else {
            return Vec::new();
        };
        let targets = if failover.targets.is_empty() {
            vec![FailoverTarget {
                service: failover.service.clone(),
                service_subset: failover.service_subset.clone(),
                namespace: failover.namespace.clone(),
                ..FailoverTarget::default()
            }]
        } else {
            failover.targets.clone()
        };
        targets
            .into_iter()
            .map(|mut target| {
                target.service.get_or_insert_with(|| self.name.clone());
                target
            })
            .collect()
    }

    /// The redirect's service (this resolver's when it names none) and peer.
    pub fn redirect_target(&self) -> Option<(&str, Option<&str>)> {
        self.redirect.as_ref().map(|redirect| {
            (
                redirect.service.as_deref().unwrap_or(&self.name),
                redirect.peer.as_deref(),
            )
        })
    }

    /// Other local services this resolver sends callers to (redirect and
    /// failover targets, not those at peers): writing it needs `service:read`
    /// on each, as in Consul.
    pub fn related_services(&self) -> Vec<&str> {
        let mut related: Vec<&str> = Vec::new();
        if let Some(redirect) = &self.redirect {
            if redirect.peer.is_none() {
                related.extend(redirect.service.as_deref());
            }
        }
        for failover in self.failover.values() {
            related.extend(failover.service.as_deref());
            related.extend(
                failover
                    .targets
                    .iter()
                    .filter(|target| target.peer.is_none())
                    .filter_map(|target| target.service.as_deref()),
            );
        }
        related.retain(|service| *service != self.name);
        related.sort_unstable();
        related.dedup();
        related
    }

    /// Consul's checks, in Consul's order and with its texts, then what
    /// isthmus cannot honour.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        let invalid = |text: String| Err(ConfigEntryError::Invalid(text));
        if self.name.is_empty() {
            return invalid("Name is required".to_owned());
        }
        validate_field_name("Name", &self.name)?;
        if self.name == "*" {
            return invalid("service-resolver Name cannot be a wildcard \"*\"".to_owned());
        }
        check_scope("Namespace", self.namespace.as_deref())?;
        check_scope("Partition", self.partition.as_deref())?;
        validate_meta(&self.meta)?;
        if self.subsets.len() > MAX_SUBSETS {
            return invalid(format!(
                "Subsets exceeds maximum element count {MAX_SUBSETS}"
            ));
        }
        if self.failover.len() > MAX_FAILOVERS {
            return invalid(format!(
                "Failover exceeds maximum element count {MAX_FAILOVERS}"
            ));
        }
        for (name, subset) in &self.subsets {
            if name.is_empty() {
                return invalid("Subset defined with empty name".to_owned());
            }
            if let Some(problem) = subset_name_problem(name) {
                return invalid(format!("Subset {name:?} is invalid: {problem}"));
            }
            if !subset.filter.is_empty() {
                if let Err(error) = Filter::parse(&subset.filter) {
                    return invalid(format!(
                        "Filter for subset {name:?} is not a valid expression: {error}"
                    ));
                }
            }
        }
        let is_subset = |subset: &str| self.subsets.contains_key(subset);
        if !self.default_subset.is_empty() && !is_subset(&self.default_subset) {
            return invalid(format!(
                "DefaultSubset {:?} is not a valid subset",
                self.default_subset
            ));
        }
        if let Some(redirect) = &self.redirect {
            self.validate_redirect(redirect)?;
        }
        for (subset, failover) in &self.failover {
            self.validate_failover(subset, failover)?;
        }
        Ok(())
    }

    fn validate_redirect(&self, redirect: &ResolverRedirect) -> Result<(), ConfigEntryError> {
        let invalid = |text: &str| Err(ConfigEntryError::Invalid(text.to_owned()));
        if !self.failover.is_empty() {
            return invalid("Redirect and Failover cannot both be set");
        }
        let set = |field: &Option<String>| field.is_some();
        if !(set(&redirect.service)
            || set(&redirect.service_subset)
            || set(&redirect.namespace)
            || set(&redirect.partition)
            || set(&redirect.datacenter)
            || set(&redirect.peer))
        {
            return invalid("Redirect is empty");
        }
        if set(&redirect.peer) && set(&redirect.service_subset) {
            return invalid("Redirect.Peer cannot be set with Redirect.ServiceSubset");
        }
        if set(&redirect.peer) && set(&redirect.partition) {
            return invalid("Redirect.Partition cannot be set with Redirect.Peer");
        }
        if set(&redirect.peer) && set(&redirect.datacenter) {
            return invalid("Redirect.Peer cannot be set with Redirect.Datacenter");
        }
        if !set(&redirect.service) {
            for (field, value) in [
                ("ServiceSubset", &redirect.service_subset),
                ("Namespace", &redirect.namespace),
                ("Partition", &redirect.partition),
                ("Peer", &redirect.peer),
            ] {
                if value.is_some() {
                    return invalid(&format!(
                        "Redirect.{field} defined without Redirect.Service"
                    ));
                }
            }
        }
        if let Some(subset) = &redirect.service_subset {
            let own = redirect.service.as_deref().is_none_or(|s| s == self.name);
            if own && !self.subsets.contains_key(subset) {
                return invalid(&format!(
                    "Redirect.ServiceSubset {subset:?} is not a valid subset of {:?}",
                    self.name
                ));
            }
        }
        if redirect.datacenter.is_some() {
            return invalid(
                "Redirect.Datacenter is not supported: isthmus reaches other clusters through peerings; use Redirect.Peer",
            );
        }
        if let Some(service) = &redirect.service {
            validate_field_name("Redirect.Service", service)?;
        }
        if let Some(peer) = &redirect.peer {
            validate_field_name("Redirect.Peer", peer)?;
        }
        check_scope("Redirect.Namespace", redirect.namespace.as_deref())?;
        check_scope("Redirect.Partition", redirect.partition.as_deref())?;
        Ok(())
    }

    fn validate_failover(
        &self,
        subset: &str,
        failover: &ResolverFailover,
    ) -> Result<(), ConfigEntryError> {
        let prefix = format!("Bad Failover[{subset:?}]: ");
        let invalid = |text: String| Err(ConfigEntryError::Invalid(text));
        let is_subset = |name: &str| self.subsets.contains_key(name);
        if subset != FAILOVER_ANY_SUBSET && !is_subset(subset) {
            // Consul's text, with its doubled word.
            return invalid(format!("{prefix}not a valid subset subset"));
        }
        let empty = failover.service.is_none()
            && failover.service_subset.is_none()
            && failover.namespace.is_none()
            && failover.datacenters.is_empty()
            && failover.targets.is_empty();
        if empty {
            return invalid(format!(
                "{prefix}one of Service, ServiceSubset, Namespace, Targets, or Datacenters is required"
            ));
        }
        if let Some(service_subset) = &failover.service_subset {
            let own = failover.service.as_deref().is_none_or(|s| s == self.name);
            if own && !is_subset(service_subset) {
                return invalid(format!(
                    "{prefix}ServiceSubset {service_subset:?} is not a valid subset of {:?}",
                    failover.service.as_deref().unwrap_or_default()
                ));
            }
        }
        if !failover.datacenters.is_empty() && !failover.targets.is_empty() {
            return invalid(format!("{prefix}Targets cannot be set with Datacenters"));
        }
        if failover.service_subset.is_some() && !failover.targets.is_empty() {
            return invalid(format!("{prefix}Targets cannot be set with ServiceSubset"));
        }
        if failover.service.is_some() && !failover.targets.is_empty() {
            return invalid(format!("{prefix}Targets cannot be set with Service"));
        }
        if failover.targets.len() > MAX_FAILOVER_TARGETS {
            return invalid(format!(
                "{prefix}Targets exceeds maximum element count {MAX_FAILOVER_TARGETS}"
            ));
        }
        for (index, target) in failover.targets.iter().enumerate() {
            self.validate_target(subset, index, target)?;
        }
        if failover.datacenters.iter().any(String::is_empty) {
            return invalid(format!(
                "Bad Failover[{subset:?}].Datacenters: found empty datacenter"
            ));
        }
        if !failover.datacenters.is_empty() {
            return invalid(format!(
                "{prefix}Datacenters is not supported: isthmus reaches other clusters through peerings; use Targets with Peer"
            ));
        }
        if let Some(service) = &failover.service {
            validate_field_name(&format!("Failover[{subset:?}].Service"), service)?;
        }
        check_scope(
            &format!("Failover[{subset:?}].Namespace"),
            failover.namespace.as_deref(),
        )?;
        Ok(())
    }

    fn validate_target(
        &self,
        subset: &str,
        index: usize,
        target: &FailoverTarget,
    ) -> Result<(), ConfigEntryError> {
        let prefix = format!("Bad Failover[{subset:?}].Targets[{index}]: ");
        let invalid = |text: &str| Err(ConfigEntryError::Invalid(format!("{prefix}{text}")));
        let (peer, partition, datacenter) = (
            target.peer.is_some(),
            target.partition.is_some(),
            target.datacenter.is_some(),
        );
        if peer && target.service_subset.is_some() {
            return invalid("Peer cannot be set with ServiceSubset");
        }
        if peer && partition {
            return invalid("Partition cannot be set with Peer");
        }
        if peer && datacenter {
            return invalid("Peer cannot be set with Datacenter");
        }
        if partition && datacenter {
            return invalid("Partition cannot be set with Datacenter");
        }
        if let Some(service_subset) = &target.service_subset {
            let own = target.service.as_deref().is_none_or(|s| s == self.name);
            if own && !self.subsets.contains_key(service_subset) {
                return invalid(&format!(
                    "ServiceSubset {service_subset:?} is not a valid subset of {:?}",
                    self.name
                ));
            }
        }
        if datacenter {
            return invalid(
                "Datacenter is not supported: isthmus reaches other clusters through peerings; use Peer",
            );
        }
        let path = format!("Failover[{subset:?}].Targets[{index}]");
        if let Some(service) = &target.service {
            validate_field_name(&format!("{path}.Service"), service)?;
        }
        if let Some(peer) = &target.peer {
            validate_field_name(&format!("{path}.Peer"), peer)?;
        }
        check_scope(&format!("{path}.Namespace"), target.namespace.as_deref())?;
        check_scope(&format!("{path}.Partition"), target.partition.as_deref())?;
        Ok(())
    }
}

/// Consul's rule for subset names: they appear in SNI, so a DNS label.
fn subset_name_problem(name: &str) -> Option<&'static str> {
    if name.len() > MAX_SUBSET_NAME_LENGTH {
        return Some("must be non-empty and 63 characters or fewer");
    }
    let bytes = name.as_bytes();
    let inner_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let ends_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if inner_ok && ends_ok(bytes.first()) && ends_ok(bytes.last()) {
        None
    } else {
        Some("must be 63 characters or fewer, begin or end with lower case alphanumeric characters, and contain lower case alphanumeric characters or '-' in between")
    }
}

/// Consul's text for a negative timeout, checked on the normalized fields
/// before typed decoding (which cannot hold a negative duration).
pub(super) fn check_timeouts(fields: &Map<String, Value>) -> Result<(), ConfigEntryError> {
    for name in ["ConnectTimeout", "RequestTimeout"] {
        let negative = match fields.get(name) {
            Some(Value::String(text)) => text.starts_with('-').then(|| text.clone()),
            Some(Value::Number(number)) => number
                .as_i64()
                .filter(|nanos| *nanos < 0)
                .map(|nanos| format!("{nanos}ns")),
            _ => None,
        };
        if let Some(shown) = negative {
            // "-0s" and the like are zero, which Consul accepts.
            if crate::duration::parse(shown.trim_start_matches('-')) != Ok(Duration::ZERO) {
                return Err(ConfigEntryError::Invalid(format!(
                    "Bad {name} '{shown}', must be >= 0"
                )));
            }
        }
    }
    Ok(())
}
