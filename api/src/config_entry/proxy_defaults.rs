//! The `proxy-defaults` config entry (always named `global`): defaults for
//! every sidecar, of which isthmus uses `Config.protocol` for upstreams that
//! have no `service-defaults` protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::service_defaults::{
    check_mesh_gateway_mode, check_protocol, check_proxy_mode, MeshGatewayConfig,
};
use super::{check_scope, validate_meta, ConfigEntryError};

/// The only name a proxy-defaults entry may have.
pub const PROXY_DEFAULTS_GLOBAL: &str = "global";

/// Bounds on the opaque `Config`: it is stored and served back whole.
const MAX_CONFIG_KEYS: usize = 64;
const MAX_CONFIG_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyDefaults {
    /// `global`; an entry written without a name gets it, as in Consul.
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Opaque proxy settings; keys kept as written. isthmus reads `protocol`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "MeshGatewayConfig::is_empty")]
    pub mesh_gateway: MeshGatewayConfig,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl ProxyDefaults {
    pub(super) fn normalize(&mut self) {
        if self.name.is_empty() {
            self.name = PROXY_DEFAULTS_GLOBAL.to_owned();
        }
    }

    /// `Config.protocol`, lower-cased (Consul reads it case-insensitively,
    /// key and value); `None` when unset or empty.
    pub fn protocol(&self) -> Option<String> {
        self.config
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("protocol"))
            .and_then(|(_, value)| value.as_str())
            .filter(|protocol| !protocol.is_empty())
            .map(str::to_ascii_lowercase)
    }

    pub fn validate(&self) -> Result<(), ConfigEntryError> {
        if self.name != PROXY_DEFAULTS_GLOBAL {
            return Err(ConfigEntryError::Invalid(format!(
                "invalid name ({:?}), only {PROXY_DEFAULTS_GLOBAL:?} is supported",
                self.name
            )));
        }
        check_scope("Namespace", self.namespace.as_deref())?;
        check_scope("Partition", self.partition.as_deref())?;
        validate_meta(&self.meta)?;
        if self.config.len() > MAX_CONFIG_KEYS {
            return Err(ConfigEntryError::Invalid(format!(
                "Config exceeds maximum element count {MAX_CONFIG_KEYS}"
            )));
        }
        if Value::Object(self.config.clone()).to_string().len() > MAX_CONFIG_BYTES {
            return Err(ConfigEntryError::Invalid(format!(
                "Config exceeds maximum size of {MAX_CONFIG_BYTES} bytes"
            )));
        }
        if let Some((_, value)) = self
            .config
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("protocol"))
        {
            let Some(protocol) = value.as_str() else {
                return Err(ConfigEntryError::WrongType {
                    path: "Config.protocol".to_owned(),
                    expected: "a string",
                });
            };
            check_protocol("Config: protocol", &protocol.to_ascii_lowercase())?;
        }
        check_proxy_mode(&self.mode)?;
        check_mesh_gateway_mode(&self.mesh_gateway)
    }
}
