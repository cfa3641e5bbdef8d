//! The `exported-services` config entry: which local services each peer may import.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{validate_field_name, validate_meta, ConfigEntryError};

/// The name a non-partitioned cluster's exported-services entry must have.
const DEFAULT_ENTRY_NAME: &str = "default";
const WILDCARD: &str = "*";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportedServices {
    /// Always `default`: isthmus has no admin partitions.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default)]
    pub services: Vec<ExportedService>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportedService {
    /// A service name, or `*` for every service in the namespace.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub consumers: Vec<ServiceConsumer>,
}

/// Who may import a service: exactly one of a peer, a partition or a sameness group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceConsumer {
    /// Input may spell it `PeerName` (the key normalization maps it here); output is `Peer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sameness_group: Option<String>,
}

impl ExportedServices {
    /// Names of the services exported to `peer`, in entry order. A `"*"` among
    /// them means every service (of that entry's namespace); expanding it
    /// against the catalog is the caller's job.
    pub fn services_for_peer<'a>(&'a self, peer: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.services
            .iter()
            .filter(move |service| service.is_consumed_by_peer(peer))
            .map(|service| service.name.as_str())
    }

    /// Whether `service` is exported to `peer`, by name or by a `*` entry.
    pub fn is_exported_to(&self, service: &str, peer: &str) -> bool {
        self.services.iter().any(|exported| {
            (exported.name == service || exported.name == WILDCARD)
                && exported.is_consumed_by_peer(peer)
        })
    }

    /// Consul's checks, with its error texts.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        if self.name.is_empty() {
            return Err(ConfigEntryError::Invalid("Name is required".to_owned()));
        }
        if self.name != DEFAULT_ENTRY_NAME {
            return Err(ConfigEntryError::Invalid(format!(
                "exported-services Name must be \"default\", not {:?}: isthmus has no admin partitions",
                self.name
            )));
        }
        if let Some(partition) = self
            .partition
            .as_deref()
            .filter(|partition| *partition != DEFAULT_ENTRY_NAME)
        {
            return Err(ConfigEntryError::Invalid(format!(
                "Partition must be \"default\", not {partition:?}: isthmus has no admin partitions"
            )));
        }
        validate_meta(&self.meta)?;

        let mut seen = HashSet::new();
        for (index, service) in self.services.iter().enumerate() {
            service.validate(index)?;
            let namespace = service.namespace.as_deref().unwrap_or(DEFAULT_ENTRY_NAME);
            if !seen.insert((namespace, service.name.as_str())) {
                return Err(ConfigEntryError::Invalid(format!(
                    "Services[{index}]: service {:?} is listed more than once; merge its consumers into one entry",
                    service.name
                )));
            }
        }
        Ok(())
    }
}

impl ExportedService {
    fn is_consumed_by_peer(&self, peer: &str) -> bool {
        self.consumers
            .iter()
            .any(|consumer| consumer.peer.as_deref() == Some(peer))
    }

    fn validate(&self, index: usize) -> Result<(), ConfigEntryError> {
        let invalid = |problem: &str| {
            Err(ConfigEntryError::Invalid(format!(
                "Services[{index}]: {problem}"
            )))
        };
        if self.name.is_empty() {
            return invalid("service name cannot be empty");
        }
        validate_field_name(&format!("Services[{index}].Name"), &self.name)?;
        if let Some(namespace) = &self.namespace {
            validate_field_name(&format!("Services[{index}].Namespace"), namespace)?;
            if namespace == WILDCARD && self.name != WILDCARD {
                return invalid("service name must be wildcard if namespace is wildcard");
            }
        }
        if self.consumers.is_empty() {
            return invalid("must have at least one consumer");
        }
        for (consumer_index, consumer) in self.consumers.iter().enumerate() {
            consumer.validate(&format!("Services[{index}].Consumers[{consumer_index}]"))?;
        }
        Ok(())
    }
}

impl ServiceConsumer {
    fn validate(&self, path: &str) -> Result<(), ConfigEntryError> {
        let invalid = |problem: &str| Err(ConfigEntryError::Invalid(format!("{path}{problem}")));
        let defined = [&self.peer, &self.partition, &self.sameness_group]
            .into_iter()
            .filter(|target| target.is_some())
            .count();
        match defined {
            0 => return invalid(": must define one of Peer, Partition, or SamenessGroup"),
            1 => {}
            _ => return invalid(": must define at most one of Peer, Partition, or SamenessGroup"),
        }
        if self.peer.as_deref() == Some(WILDCARD) {
            return invalid(".Peer: exporting to all peers (wildcard) is not supported");
        }
        if self.partition.as_deref() == Some(WILDCARD) {
            return invalid(".Partition: exporting to all partitions (wildcard) is not supported");
        }
        if self.sameness_group.as_deref() == Some(WILDCARD) {
            return invalid(
                ".SamenessGroup: exporting to all sameness groups (wildcard) is not supported",
            );
        }
        Ok(())
    }
}
