//! Agent configuration: defaults, then an optional HCL or JSON file, then
//! command-line flags, later ones winning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8500);
pub const DEFAULT_CLUSTER_NAME: &str = "dc1";
pub const DEFAULT_LEAF_CERT_TTL: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_PEERING_HEARTBEAT: Duration = Duration::from_secs(5);
pub const DEFAULT_PEERING_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IntentionPolicy {
    Allow,
    Deny,
}

/// The agent's settings once every source has been merged.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the store lives; `None` keeps state in memory (dev mode only).
    pub data_dir: Option<PathBuf>,
    pub cluster_name: String,
    pub node_name: String,
    /// The address this node is reachable at, shown in the catalog.
    pub advertise_addr: IpAddr,
    pub http_addr: SocketAddr,
    pub default_intention_policy: IntentionPolicy,
    pub leaf_cert_ttl: Duration,
    /// Heartbeat interval on peering streams; three missed ones mark a
    /// peering `FAILING`.
    pub peering_heartbeat: Duration,
    /// How long a generated peering token's secret stays valid.
    pub peering_token_ttl: Duration,
}

impl AgentConfig {
    /// The defaults: in memory, the API on 127.0.0.1:8500, default deny.
    pub fn dev() -> AgentConfig {
        AgentConfig {
            data_dir: None,
            cluster_name: DEFAULT_CLUSTER_NAME.into(),
            node_name: default_node_name(),
            advertise_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_addr: DEFAULT_HTTP_ADDR,
            default_intention_policy: IntentionPolicy::Deny,
            leaf_cert_ttl: DEFAULT_LEAF_CERT_TTL,
            peering_heartbeat: DEFAULT_PEERING_HEARTBEAT,
            peering_token_ttl: DEFAULT_PEERING_TOKEN_TTL,
        }
    }

    pub fn default_allow(&self) -> bool {
        self.default_intention_policy == IntentionPolicy::Allow
    }

    /// Checks values that every source could have got wrong.
    pub fn validate(&self) -> Result<(), String> {
        isthmus_api::naming::validate_dns_label("cluster name", &self.cluster_name)?;
        if self.node_name.is_empty() {
            return Err("node name cannot be empty".into());
        }
        if self.leaf_cert_ttl < Duration::from_secs(1) {
            return Err(format!(
                "leaf_cert_ttl {} is too short: it must be at least 1s",
                isthmus_api::duration::format(self.leaf_cert_ttl)
            ));
        }
        if self.peering_heartbeat < Duration::from_millis(50) {
            return Err("peering_heartbeat must be at least 50ms".into());
        }
        if self.peering_token_ttl < Duration::from_secs(1) {
            return Err("peering_token_ttl must be at least 1s".into());
        }
        Ok(())
    }
}

pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "isthmus-node".into())
}

/// The keys a config file may set; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    #[serde(alias = "datacenter")]
    pub cluster_name: Option<String>,
    pub node_name: Option<String>,
    pub advertise_addr: Option<IpAddr>,
    pub http_addr: Option<SocketAddr>,
    pub default_intention_policy: Option<IntentionPolicy>,
    /// Go duration, e.g. `"72h"`.
    pub leaf_cert_ttl: Option<String>,
    pub peering_heartbeat: Option<String>,
    pub peering_token_ttl: Option<String>,
}

impl FileConfig {
    /// Reads an `.hcl` or `.json` file (by extension; anything else is tried
    /// as HCL, which also accepts plain `key = value` lines).
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading config file {}: {e}", path.display()))?;
        let is_json = path.extension().is_some_and(|e| e == "json");
        let parsed = if is_json {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            hcl::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// Applies the file's values over `config`.
    pub fn apply(self, config: &mut AgentConfig) -> Result<(), String> {
        if let Some(v) = self.data_dir {
            config.data_dir = Some(v);
        }
        if let Some(v) = self.cluster_name {
            config.cluster_name = v;
        }
        if let Some(v) = self.node_name {
            config.node_name = v;
        }
        if let Some(v) = self.advertise_addr {
            config.advertise_addr = v;
        }
        if let Some(v) = self.http_addr {
            config.http_addr = v;
        }
        if let Some(v) = self.default_intention_policy {
            config.default_intention_policy = v;
        }
        if let Some(v) = self.leaf_cert_ttl {
            config.leaf_cert_ttl =
                isthmus_api::duration::parse(&v).map_err(|e| format!("leaf_cert_ttl: {e}"))?;
        }
        if let Some(v) = self.peering_heartbeat {
            config.peering_heartbeat =
                isthmus_api::duration::parse(&v).map_err(|e| format!("peering_heartbeat: {e}"))?;
        }
        if let Some(v) = self.peering_token_ttl {
            config.peering_token_ttl =
                isthmus_api::duration::parse(&v).map_err(|e| format!("peering_token_ttl: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hcl_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.hcl");
        std::fs::write(
            &path,
            "cluster_name = \"cluster-01\"\nhttp_addr = \"127.0.0.1:9500\"\ndefault_intention_policy = \"allow\"\nleaf_cert_ttl = \"1h\"\n",
        )
        .unwrap();
        let mut config = AgentConfig::dev();
        FileConfig::load(&path).unwrap().apply(&mut config).unwrap();
        assert_eq!(config.cluster_name, "cluster-01");
        assert_eq!(config.http_addr.port(), 9500);
        assert!(config.default_allow());
        assert_eq!(config.leaf_cert_ttl, Duration::from_secs(3600));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        std::fs::write(&path, r#"{"cluster_nme": "x"}"#).unwrap();
        let err = FileConfig::load(&path).unwrap_err();
        assert!(err.contains("cluster_nme"), "{err}");
    }
}
