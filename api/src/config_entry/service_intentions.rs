//! The `service-intentions` config entry: who may call one destination service.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{validate_field_name, validate_meta, ConfigEntryError};
use crate::intentions::precedence;

const WILDCARD: &str = "*";
const DEFAULT_NAMESPACE: &str = "default";
/// Consul's limit on a source's description.
const MAX_DESCRIPTION_LENGTH: usize = 512;
/// The methods Consul accepts in `Methods`, spelled as it requires (upper case).
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceIntentions {
    /// The destination service, or `*` for every service.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default)]
    pub sources: Vec<SourceIntention>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SourceIntention {
    /// The calling service, or `*`.
    #[serde(default)]
    pub name: String,
    /// Set when the caller lives in a peered cluster; unset means local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Unset means `default`; `*` is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Set for an L4 intention; unset when `permissions` decide per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<IntentionAction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<IntentionPermission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Computed from the wildcards in source and destination; input is ignored.
    #[serde(default)]
    pub precedence: u32,
    #[serde(default, rename = "Type")]
    pub source_type: IntentionSourceType,
    /// What the legacy ID-based intention API keeps on the sources it wrote.
    #[serde(flatten)]
    pub legacy: LegacySourceFields,
}

/// The fields Consul keeps on a source written through the legacy, ID-based
/// intention API (`POST /v1/connect/intentions`, `/v1/connect/intentions/:id`),
/// so that the intention keeps its ID, metadata and timestamps. A write of the
/// config entry itself clears them ([`ServiceIntentions::clear_legacy_fields`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LegacySourceFields {
    #[serde(default, rename = "LegacyID", skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub legacy_meta: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_create_time: Option<String>,
    /// RFC 3339, UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_update_time: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentionAction {
    Allow,
    Deny,
}

impl IntentionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentionAction::Allow => "allow",
            IntentionAction::Deny => "deny",
        }
    }

    pub fn is_allow(self) -> bool {
        self == IntentionAction::Allow
    }
}

/// Where a source's identity comes from. Consul has only one kind, written `"consul"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentionSourceType {
    #[default]
    Consul,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionPermission {
    pub action: IntentionAction,
    #[serde(default, rename = "HTTP", skip_serializing_if = "Option::is_none")]
    pub http: Option<IntentionHttpPermission>,
}

/// Request conditions; all that are set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionHttpPermission {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Must match the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Upper-case HTTP methods; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<IntentionHttpHeaderPermission>,
}

/// One header condition: exactly one of the matchers, optionally inverted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IntentionHttpHeaderPermission {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub present: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Must match the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub invert: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl ServiceIntentions {
    pub fn has_wildcard_destination(&self) -> bool {
        self.name == WILDCARD
    }

    /// Sets every source's `precedence` from the wildcards it and the
    /// destination use, and orders the sources by it, highest first (stable,
    /// as Consul stores them).
    pub fn update_precedence(&mut self) {
        let destination_namespace = self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        for source in &mut self.sources {
            let source_namespace = source.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            source.precedence = precedence(
                destination_namespace,
                &self.name,
                source_namespace,
                &source.name,
            );
        }
        self.sources
            .sort_by_key(|source| std::cmp::Reverse(source.precedence));
    }

    /// Whether every source was written through the legacy ID-based API
    /// (vacuously true without sources); only then may that API edit the entry.
    pub fn all_sources_legacy(&self) -> bool {
        self.sources
            .iter()
            .all(|source| source.legacy.legacy_id.is_some())
    }

    /// What a write of the entry itself does to the legacy fields, as
    /// Consul's: `LegacyMeta` is refused (it would be lost), the ID and
    /// timestamps are dropped.
    pub fn clear_legacy_fields(&mut self) -> Result<(), ConfigEntryError> {
        for (index, source) in self.sources.iter_mut().enumerate() {
            if !source.legacy.legacy_meta.is_empty() {
                return Err(ConfigEntryError::Invalid(format!(
                    "Sources[{index}].LegacyMeta must be omitted"
                )));
            }
            source.legacy = LegacySourceFields::default();
        }
        Ok(())
    }

    /// Consul's checks, with its error texts.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        if self.name.is_empty() {
            return Err(ConfigEntryError::Invalid("Name is required".to_owned()));
        }
        validate_field_name("Name", &self.name)?;
        if let Some(namespace) = &self.namespace {
            validate_field_name("Namespace", namespace)?;
        }
        validate_meta(&self.meta)?;

        let mut seen = HashSet::new();
        for (index, source) in self.sources.iter().enumerate() {
            source.validate(index, self.has_wildcard_destination())?;
            let namespace = source.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
            if !seen.insert((source.peer.as_deref(), namespace, source.name.as_str())) {
                let message = match &source.peer {
                    Some(peer) => format!(
                        "Sources[{index}] defines peer({peer:?}) {:?} more than once",
                        source.name
                    ),
                    None => format!("Sources[{index}] defines {:?} more than once", source.name),
                };
                return Err(ConfigEntryError::Invalid(message));
            }
        }
        Ok(())
    }
}

impl SourceIntention {
    fn validate(&self, index: usize, wildcard_destination: bool) -> Result<(), ConfigEntryError> {
        let invalid = |problem: String| {
            Err(ConfigEntryError::Invalid(format!(
                "Sources[{index}]{problem}"
            )))
        };
        if self.name.is_empty() {
            return invalid(".Name is required".to_owned());
        }
        validate_field_name(&format!("Sources[{index}].Name"), &self.name)?;
        if let Some(namespace) = &self.namespace {
            validate_field_name(&format!("Sources[{index}].Namespace"), namespace)?;
            if namespace == WILDCARD && self.name != WILDCARD {
                return invalid(".Name must be '*' when Namespace is '*'".to_owned());
            }
        }
        if let Some(peer) = &self.peer {
            if peer == WILDCARD {
                return invalid(".Peer: cannot use wildcard '*' in peer".to_owned());
            }
            if self.partition.is_some() {
                return invalid(": cannot set both Peer and Partition".to_owned());
            }
        }
        if self
            .description
            .as_ref()
            .is_some_and(|text| text.len() > MAX_DESCRIPTION_LENGTH)
        {
            return invalid(format!(
                ".Description exceeds maximum length {MAX_DESCRIPTION_LENGTH}"
            ));
        }
        match (&self.action, self.permissions.is_empty()) {
            (Some(_), false) => {
                return invalid(".Action must be omitted if Permissions are specified".to_owned())
            }
            (None, true) => return invalid(".Action must be set to 'allow' or 'deny'".to_owned()),
            _ => {}
        }
        if wildcard_destination && !self.permissions.is_empty() {
            return invalid(
                ".Permissions cannot be specified on intentions with wildcarded destinations"
                    .to_owned(),
            );
        }
        for (permission_index, permission) in self.permissions.iter().enumerate() {
            permission.validate(&format!("Sources[{index}].Permissions[{permission_index}]"))?;
        }
        Ok(())
    }
}

impl IntentionPermission {
    fn validate(&self, path: &str) -> Result<(), ConfigEntryError> {
        let http_path = format!("{path}.HTTP");
        let invalid =
            |problem: String| Err(ConfigEntryError::Invalid(format!("{http_path}{problem}")));
        let Some(http) = self.http.as_ref().filter(|http| !http.is_empty()) else {
            return invalid(" should not be empty".to_owned());
        };

        let path_matchers = [&http.path_exact, &http.path_prefix, &http.path_regex];
        if path_matchers
            .iter()
            .filter(|matcher| matcher.is_some())
            .count()
            > 1
        {
            return invalid(
                ": at most one of PathExact, PathPrefix, or PathRegex may be configured".to_owned(),
            );
        }
        for (field, value) in [
            ("PathExact", &http.path_exact),
            ("PathPrefix", &http.path_prefix),
        ] {
            if let Some(value) = value.as_deref().filter(|value| !value.starts_with('/')) {
                return invalid(format!(".{field} doesn't start with '/': {value:?}"));
            }
        }
        if let Some(pattern) = &http.path_regex {
            check_regex(&format!("{http_path}.PathRegex"), pattern)?;
        }

        let mut seen_methods = HashSet::new();
        for method in &http.methods {
            if !HTTP_METHODS.contains(&method.as_str()) {
                return invalid(format!(".Methods contains an invalid method {method:?}"));
            }
            if !seen_methods.insert(method.as_str()) {
                return invalid(format!(".Methods contains {method:?} more than once"));
            }
        }

        for (header_index, header) in http.header.iter().enumerate() {
            header.validate(&format!("{http_path}.Header[{header_index}]"))?;
        }
        Ok(())
    }
}

impl IntentionHttpPermission {
    /// No condition at all, which Consul refuses rather than read as "every request".
    pub fn is_empty(&self) -> bool {
        self.path_exact.is_none()
            && self.path_prefix.is_none()
            && self.path_regex.is_none()
            && self.methods.is_empty()
            && self.header.is_empty()
    }
}

impl IntentionHttpHeaderPermission {
    /// How many matchers are set; a valid rule has exactly one.
    pub(crate) fn matcher_count(&self) -> usize {
        usize::from(self.present)
            + [&self.exact, &self.prefix, &self.suffix, &self.regex]
                .into_iter()
                .filter(|matcher| matcher.is_some())
                .count()
    }

    fn validate(&self, path: &str) -> Result<(), ConfigEntryError> {
        let invalid = |problem: String| Err(ConfigEntryError::Invalid(format!("{path}{problem}")));
        if self.name.is_empty() {
            return invalid(" missing required Name field".to_owned());
        }
        if http::HeaderName::from_bytes(self.name.as_bytes()).is_err() {
            return invalid(format!(
                ".Name is not a valid HTTP header name: {:?}",
                self.name
            ));
        }
        match self.matcher_count() {
            0 => {
                return invalid(
                    " must set one of Present, Exact, Prefix, Suffix, or Regex".to_owned(),
                )
            }
            1 => {}
            _ => {
                return invalid(
                    " should only contain one of Present, Exact, Prefix, Suffix, or Regex"
                        .to_owned(),
                )
            }
        }
        if let Some(pattern) = &self.regex {
            check_regex(&format!("{path}.Regex"), pattern)?;
        }
        Ok(())
    }
}

fn check_regex(path: &str, pattern: &str) -> Result<(), ConfigEntryError> {
    regex::Regex::new(pattern)
        .map(drop)
        .map_err(|error| ConfigEntryError::Invalid(format!("{path}: invalid regex: {error}")))
}
