//! The store settings: where the cluster's state lives (embedded or etcd),
//! how to reach etcd, and how long a dead agent counts as alive; their
//! layering and their checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::AgentConfig;
pub use crate::store::etcd::{EtcdSettings, EtcdTls};

/// How long a dead agent counts as alive by default (Consul's failure
/// detection takes a few seconds; the bound is 15 s).
pub const DEFAULT_MEMBER_TTL: Duration = Duration::from_secs(10);
/// etcd refuses shorter leases than about this.
pub(super) const MIN_MEMBER_TTL: Duration = Duration::from_secs(2);
pub(super) const MAX_MEMBER_TTL: Duration = Duration::from_secs(60);

/// Where the cluster's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this agent's data dir (redb); one agent per cluster.
    Embedded,
    /// In etcd v3, shared by every agent of the cluster.
    Etcd,
}

/// Checks the etcd settings every source could have got wrong.
pub(super) fn validate_etcd(etcd: &EtcdSettings, node_name: &str) -> Result<(), String> {
    if etcd.endpoints.is_empty() {
        return Err(
            "--store etcd needs --etcd-endpoints (etcd_endpoints in the config file)".into(),
        );
    }
    for endpoint in &etcd.endpoints {
        let https = endpoint.starts_with("https://");
        if !https && !endpoint.starts_with("http://") {
            return Err(format!(
                "etcd endpoint {endpoint:?} must be a URL: http://host:port or https://host:port"
            ));
        }
        if https && etcd.tls.is_none() {
            return Err(format!(
                "etcd endpoint {endpoint:?} uses https: give --etcd-ca-file (and a client certificate if etcd asks for one)"
            ));
        }
    }
    if etcd
        .tls
        .as_ref()
        .is_some_and(|tls| tls.ca_file.as_os_str().is_empty())
    {
        return Err("an etcd client certificate needs --etcd-ca-file too".into());
    }
    let prefix = &etcd.prefix;
    // Empty: the default, /isthmus/<cluster name>.
    if !prefix.is_empty() && !prefix.starts_with('/')
        || prefix.ends_with('/')
        || prefix.len() > 200
        || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "etcd prefix {prefix:?} must start with '/', not end with one, and hold no spaces (at most 200 bytes)"
        ));
    }
    if node_name.contains('/')
        || node_name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "node name {node_name:?} cannot hold '/' or spaces with --store etcd (it names the node's keys)"
        ));
    }
    Ok(())
}

/// One layer's store settings.
pub(super) struct StoreLayer {
    pub(super) kind: Option<StoreKind>,
    pub(super) etcd_endpoints: Option<Vec<String>>,
    pub(super) etcd_prefix: Option<String>,
    pub(super) etcd_ca_file: Option<PathBuf>,
    pub(super) etcd_cert_file: Option<PathBuf>,
    pub(super) etcd_key_file: Option<PathBuf>,
}

impl StoreLayer {
    /// `--store etcd` turns etcd on with what this or an earlier layer
    /// gave; etcd details alone change an etcd store.
    pub(super) fn apply(self, config: &mut AgentConfig) {
        match self.kind {
            Some(StoreKind::Embedded) => config.etcd = None,
            Some(StoreKind::Etcd) if config.etcd.is_none() => {
                config.etcd = Some(EtcdSettings {
                    endpoints: Vec::new(),
                    prefix: String::new(),
                    tls: None,
                });
            }
            _ => {}
        }
        let Some(etcd) = config.etcd.as_mut() else {
            return;
        };
        if let Some(v) = self.etcd_endpoints {
            etcd.endpoints = v
                .into_iter()
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
        }
        if let Some(v) = self.etcd_prefix {
            etcd.prefix = v;
        }
        if let Some(ca_file) = self.etcd_ca_file {
            let tls = etcd.tls.get_or_insert(EtcdTls {
                ca_file: ca_file.clone(),
                cert_file: None,
                key_file: None,
            });
            tls.ca_file = ca_file;
        }
        if self.etcd_cert_file.is_some() || self.etcd_key_file.is_some() {
            // Without a CA file this fails validation, with the reason.
            let tls = etcd.tls.get_or_insert(EtcdTls {
                ca_file: PathBuf::new(),
                cert_file: None,
                key_file: None,
            });
            if let Some(v) = self.etcd_cert_file {
                tls.cert_file = Some(v);
            }
            if let Some(v) = self.etcd_key_file {
                tls.key_file = Some(v);
            }
        }
    }
}

/// The default etcd prefix for a cluster, when none was given.
pub fn default_etcd_prefix(cluster_name: &str) -> String {
    format!("/isthmus/{cluster_name}")
}
