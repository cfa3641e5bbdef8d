//! The `service-defaults` config entry (a service's protocol, proxy mode, mesh
//! gateway mode and its upstreams' defaults), and the pieces it shares with
//! `proxy-defaults`: protocols, proxy modes, mesh gateway modes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_scope, validate_field_name, validate_meta, ConfigEntryError};

/// The protocols a sidecar can speak to an upstream. `grpc` is carried as HTTP/2.
pub const PROTOCOLS: &[&str] = &["tcp", "http", "http2", "grpc"];

/// At most this many `UpstreamConfig.Overrides`.
const MAX_UPSTREAM_OVERRIDES: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceDefaults {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Lower-cased, as Consul stores it; empty: not set here.
    #[serde(default)]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "MeshGatewayConfig::is_empty")]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_config: Option<UpstreamConfiguration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// How a proxy reaches a peer's services: `none`, `local`, `remote`, or
/// empty (the default). isthmus sidecars always dial the peer's mesh
/// gateways, so the mode is kept for Consul tools but changes no route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MeshGatewayConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

impl MeshGatewayConfig {
    pub fn is_empty(&self) -> bool {
        self.mode.is_empty()
    }
}

/// Settings for the upstreams of the service the entry names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpstreamConfiguration {
    /// Per upstream; each names its service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<UpstreamConfig>,
    /// For every upstream; names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<UpstreamConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpstreamConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "MeshGatewayConfig::is_empty")]
    pub mesh_gateway: MeshGatewayConfig,
}

impl ServiceDefaults {
    /// Consul lower-cases protocols before validating.
    pub(super) fn normalize(&mut self) {
        self.protocol = self.protocol.to_ascii_lowercase();
        if let Some(upstreams) = &mut self.upstream_config {
            for upstream in upstreams
                .overrides
                .iter_mut()
                .chain(upstreams.defaults.as_mut())
            {
                upstream.protocol = upstream.protocol.to_ascii_lowercase();
            }
        }
    }

    /// The protocol this entry sets for its service, if any.
    pub fn protocol(&self) -> Option<&str> {
        Some(self.protocol.as_str()).filter(|protocol| !protocol.is_empty())
    }

    /// Consul's checks and texts, then what isthmus cannot honour.
    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        let invalid = |text: String| Err(ConfigEntryError::Invalid(text));
        if self.name.is_empty() {
            return invalid("Name is required".to_owned());
        }
        if self.name == "*" {
            return invalid(
                "service-defaults name must be the name of a service, and not a wildcard"
                    .to_owned(),
            );
        }
        validate_field_name("Name", &self.name)?;
        check_scope("Namespace", self.namespace.as_deref())?;
        check_scope("Partition", self.partition.as_deref())?;
        validate_meta(&self.meta)?;
        check_protocol("Protocol", &self.protocol)?;
        check_proxy_mode(&self.mode)?;
        check_mesh_gateway_mode(&self.mesh_gateway)?;
        if let Some(upstreams) = &self.upstream_config {
            if upstreams.overrides.len() > MAX_UPSTREAM_OVERRIDES {
                return invalid(format!(
                    "UpstreamConfig.Overrides exceeds maximum element count {MAX_UPSTREAM_OVERRIDES}"
                ));
            }
            for upstream in &upstreams.overrides {
                upstream.validate_named().map_err(|error| {
                    ConfigEntryError::Invalid(format!(
                        "error in upstream override for {}: {error}",
                        upstream.peered_name()
                    ))
                })?;
            }
            if let Some(defaults) = &upstreams.defaults {
                defaults.validate_unnamed().map_err(|error| {
                    ConfigEntryError::Invalid(format!("error in upstream defaults: {error}"))
                })?;
            }
        }
        Ok(())
    }
}

impl UpstreamConfig {
    /// `peer/name` or `name`, as Consul names an override in its messages.
    fn peered_name(&self) -> String {
        match &self.peer {
            Some(peer) => format!("{peer}/{}", self.name),
            None => self.name.clone(),
        }
    }

    fn validate_named(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("Name is required".to_owned());
        }
        if self.name == "*" {
            return Err("Wildcard name is not supported".to_owned());
        }
        if self.namespace.as_deref() == Some("*") {
            return Err("Wildcard namespace is not supported".to_owned());
        }
        validate_field_name("Name", &self.name).map_err(|error| error.to_string())?;
        self.validate_settings()
    }

    fn validate_unnamed(&self) -> Result<(), String> {
        if !self.name.is_empty() {
            return Err("Name must be empty".to_owned());
        }
        if self.namespace.is_some() {
            return Err("Namespace must be empty".to_owned());
        }
        if self.partition.is_some() {
            return Err("Partition must be empty".to_owned());
        }
        self.validate_settings()
    }

    fn validate_settings(&self) -> Result<(), String> {
        check_scope("Namespace", self.namespace.as_deref()).map_err(|e| e.to_string())?;
        check_scope("Partition", self.partition.as_deref()).map_err(|e| e.to_string())?;
        check_protocol("Protocol", &self.protocol).map_err(|e| e.to_string())?;
        check_mesh_gateway_mode(&self.mesh_gateway).map_err(|e| e.to_string())
    }
}

/// A protocol isthmus sidecars speak (empty: not set).
pub(super) fn check_protocol(path: &str, protocol: &str) -> Result<(), ConfigEntryError> {
    if protocol.is_empty() || PROTOCOLS.contains(&protocol) {
        Ok(())
    } else {
        Err(ConfigEntryError::Invalid(format!(
            "{path} {protocol:?} is not supported: use one of {}",
            PROTOCOLS.join(", ")
        )))
    }
}

/// Consul's proxy modes; isthmus sidecars are always dialed directly.
pub(super) fn check_proxy_mode(mode: &str) -> Result<(), ConfigEntryError> {
    match mode {
        "" | "direct" => Ok(()),
        "transparent" => Err(ConfigEntryError::Invalid(
            "Mode \"transparent\" is not supported: isthmus sidecars are dialed directly (\"direct\")"
                .to_owned(),
        )),
        _ => Err(ConfigEntryError::Invalid(format!(
            "Invalid Proxy Mode: {mode:?}"
        ))),
    }
}

pub(super) fn check_mesh_gateway_mode(config: &MeshGatewayConfig) -> Result<(), ConfigEntryError> {
    match config.mode.as_str() {
        "" | "none" | "local" | "remote" => Ok(()),
        mode => Err(ConfigEntryError::Invalid(format!(
            "Invalid Mesh Gateway Mode: {mode:?}"
        ))),
    }
}
