//! Agent configuration: defaults, then an optional HCL or JSON file, then
//! command-line flags, later ones winning.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use isthmus_api::catalog::{CheckDefinition, ServiceRegistration};
use isthmus_api::peering_limits::DEFAULT_IMPORT_LIMITS;
use isthmus_runtime::listen::Limits;
use serde::Deserialize;

mod acl;
mod peering;
mod store;
mod ui;

pub use acl::{AclBlock, AclDefaultPolicy, AclFlags, AclTokensBlock};
pub use peering::PeeringBlock;
pub use ui::{
    ui_provider_name, validate_base_url, MetricsProvider, UiConfigBlock, UiFlags, UiSettings,
};

pub use store::{default_etcd_prefix, EtcdSettings, EtcdTls, StoreKind, DEFAULT_MEMBER_TTL};
use store::{validate_etcd, StoreLayer, MAX_MEMBER_TTL, MIN_MEMBER_TTL};

pub const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8500);
pub const DEFAULT_CLUSTER_NAME: &str = "dc1";
pub const DEFAULT_LEAF_CERT_TTL: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_GATEWAY_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The CA root lives ten years; no certificate it signs (gateway or leaf)
/// may outlive it.
pub const MAX_GATEWAY_CERT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const DEFAULT_PEERING_HEARTBEAT: Duration = Duration::from_secs(5);
pub const DEFAULT_PEERING_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Connections the HTTP API holds at once: well under a usual 1,024 file
/// limit raised to its hard limit, well over what sidecars, gateways and
/// operators use.
pub const DEFAULT_HTTP_MAX_CONNS: usize = 4096;
/// Connections from one client IP (Consul's `http_max_conns_per_client`).
pub const DEFAULT_HTTP_MAX_CONNS_PER_CLIENT: usize = 200;

/// The HTTP API's default limits.
pub const fn default_http_limits() -> Limits {
    Limits {
        max_conns_per_client: DEFAULT_HTTP_MAX_CONNS_PER_CLIENT,
        ..Limits::with_max_conns(DEFAULT_HTTP_MAX_CONNS)
    }
}

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
    /// Lifetime of the mesh gateway certificate, renewed live at two thirds.
    pub gateway_cert_ttl: Duration,
    /// Heartbeat interval on peering streams; three missed ones mark a
    /// peering `FAILING`.
    pub peering_heartbeat: Duration,
    /// How long a generated peering token's secret stays valid.
    pub peering_token_ttl: Duration,
    /// How often the leader probes each established peer's mesh gateways.
    pub peering_gateway_probe_interval: Duration,
    /// The longest replication stream message (one line) accepted from a peer.
    pub peering_max_message_bytes: usize,
    /// Services one peer may export to us (a longer export list is dropped).
    pub peering_max_imported_services: usize,
    /// Instances of one imported service (a larger service message is dropped).
    pub peering_max_service_instances: usize,
    /// Connection caps and timeouts of the HTTP API.
    pub http_limits: Limits,
    /// Host names (besides IP literals and `localhost`) the API answers to
    /// in `Host`; anything else is refused (DNS rebinding).
    pub http_allowed_hosts: Vec<String>,
    /// The cluster's state in etcd, shared with the cluster's other agents
    /// (`--store etcd`); `None` keeps it in this agent (embedded store).
    pub etcd: Option<EtcdSettings>,
    /// With etcd: how long a dead agent still counts as alive (its
    /// lease's TTL); its node turns critical and its leadership passes on
    /// after this.
    pub member_ttl: Duration,
    /// The DNS interface (UDP and TCP on the HTTP API's address).
    pub dns: crate::dns::DnsConfig,
    /// Services the config file defines (Consul's `service`/`services`),
    /// registered at start and again on every reload.
    pub services: Vec<ServiceRegistration>,
    /// Checks the config file defines (Consul's `check`/`checks`).
    pub checks: Vec<CheckDefinition>,
    /// Access control (`acl { ... }`); disabled by default.
    pub acl: crate::acl::AclSettings,
    /// The HTTPS API listener (`https_addr`, `cert_file`, ...); off by default.
    pub https: crate::https::HttpsConfig,
    /// The web UI and where its metrics come from (`ui_config { ... }`).
    pub ui: UiSettings,
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
            gateway_cert_ttl: DEFAULT_GATEWAY_CERT_TTL,
            peering_heartbeat: DEFAULT_PEERING_HEARTBEAT,
            peering_token_ttl: DEFAULT_PEERING_TOKEN_TTL,
            peering_gateway_probe_interval: crate::peering::gateway_probe::DEFAULT_INTERVAL,
            peering_max_message_bytes: isthmus_api::peering_framing::DEFAULT_MAX_MESSAGE_BYTES,
            peering_max_imported_services: DEFAULT_IMPORT_LIMITS.max_services,
            peering_max_service_instances: DEFAULT_IMPORT_LIMITS.max_instances,
            http_limits: default_http_limits(),
            http_allowed_hosts: Vec::new(),
            etcd: None,
            member_ttl: DEFAULT_MEMBER_TTL,
            dns: crate::dns::DnsConfig::default(),
            services: Vec::new(),
            checks: Vec::new(),
            acl: crate::acl::AclSettings::default(),
            https: crate::https::HttpsConfig::default(),
            ui: UiSettings::default(),
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
        if let Some(etcd) = &self.etcd {
            validate_etcd(etcd, &self.node_name)?;
        }
        if !(MIN_MEMBER_TTL..=MAX_MEMBER_TTL).contains(&self.member_ttl) {
            return Err(format!(
                "member_ttl {} must be between {} and {}",
                isthmus_api::duration::format(self.member_ttl),
                isthmus_api::duration::format(MIN_MEMBER_TTL),
                isthmus_api::duration::format(MAX_MEMBER_TTL)
            ));
        }
        if self.leaf_cert_ttl < Duration::from_secs(1) {
            return Err(format!(
                "leaf_cert_ttl {} is too short: it must be at least 1s",
                isthmus_api::duration::format(self.leaf_cert_ttl)
            ));
        }
        if self.leaf_cert_ttl > MAX_GATEWAY_CERT_TTL {
            return Err(format!(
                "leaf_cert_ttl {} is too long: it must be at most {} (the CA root's lifetime)",
                isthmus_api::duration::format(self.leaf_cert_ttl),
                isthmus_api::duration::format(MAX_GATEWAY_CERT_TTL)
            ));
        }
        if self.gateway_cert_ttl < Duration::from_secs(1) {
            return Err(format!(
                "gateway_cert_ttl {} is too short: it must be at least 1s",
                isthmus_api::duration::format(self.gateway_cert_ttl)
            ));
        }
        if self.gateway_cert_ttl > MAX_GATEWAY_CERT_TTL {
            return Err(format!(
                "gateway_cert_ttl {} is too long: it must be at most {} (the CA root's lifetime)",
                isthmus_api::duration::format(self.gateway_cert_ttl),
                isthmus_api::duration::format(MAX_GATEWAY_CERT_TTL)
            ));
        }
        if self.peering_heartbeat < Duration::from_millis(50) {
            return Err("peering_heartbeat must be at least 50ms".into());
        }
        if self.peering_token_ttl < Duration::from_secs(1) {
            return Err("peering_token_ttl must be at least 1s".into());
        }
        if self.peering_max_message_bytes < 64 * 1024 {
            return Err("peering_max_message_bytes must be at least 65536".into());
        }
        if self.peering_max_imported_services == 0 || self.peering_max_service_instances == 0 {
            return Err(
                "peering_max_imported_services and peering_max_service_instances must be at least 1"
                    .into(),
            );
        }
        self.http_limits.validate("limits")?;
        self.https.validate()?;
        self.dns.validate()?;
        for host in &self.http_allowed_hosts {
            if host.is_empty() || host.contains(['/', ' ', '@']) {
                return Err(format!(
                    "http_allowed_hosts: {host:?} is not a host name (give a name like api.example.com)"
                ));
            }
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

/// One layer of agent settings, every one optional: a config file's keys
/// (snake_case) and the agent's command-line flags are the same struct, so a
/// setting is added in one place. Layers apply over the defaults in order:
/// the file, then the flags.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory for the agent's durable state (required without --dev).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// This cluster's name, used in SPIFFE IDs and peerings [default: dc1].
    #[serde(alias = "datacenter")]
    #[arg(long, alias = "datacenter", value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// Name of this node in the catalog [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Address other nodes reach this one at, shown in the catalog [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<IpAddr>,
    /// Where the HTTP API listens [default: 127.0.0.1:8500].
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Where the HTTPS API listens (same API as --http-addr, over TLS); no
    /// default: off unless given.
    #[arg(long, value_name = "ADDR")]
    pub https_addr: Option<SocketAddr>,
    /// The HTTPS API's certificate (PEM), with --key-file, instead of one
    /// issued (and renewed) by the cluster CA.
    #[arg(long, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM) of --cert-file.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// With --verify-incoming: the CA certificates (PEM) client certificates
    /// must be signed by [default: the cluster CA].
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The HTTPS API requires a client certificate signed by the cluster CA
    /// (or --ca-file) [default: false].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub verify_incoming: Option<bool>,
    /// What intentions decide for callers that match no intention [default: deny].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub default_intention_policy: Option<IntentionPolicy>,
    /// Lifetime of service leaf certificates, as a Go duration [default: 72h].
    #[arg(long, value_name = "DURATION")]
    pub leaf_cert_ttl: Option<String>,
    /// Lifetime of the mesh gateway certificate, as a Go duration; it is
    /// renewed live at two thirds of its life [default: 8760h].
    #[arg(long, value_name = "DURATION")]
    pub gateway_cert_ttl: Option<String>,
    /// Heartbeat interval on peering streams; a peer silent for three is FAILING [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub peering_heartbeat: Option<String>,
    /// How long a generated peering token can be used [default: 24h].
    #[arg(long, value_name = "DURATION")]
    pub peering_token_ttl: Option<String>,
    /// How often the leader probes each established peer's mesh gateways
    /// over the peering's mTLS, as a Go duration (100ms to 5m); a peer
    /// whose gateway does not answer shows ALIVE false (the file's
    /// `peering { gateway_probe_interval = "5s" }`) [default: 5s].
    #[arg(long, value_name = "DURATION")]
    #[serde(skip)]
    pub peering_gateway_probe_interval: Option<String>,
    /// The file's `peering { ... }` block; not a flag.
    #[arg(skip)]
    #[serde(default)]
    pub peering: Option<PeeringBlock>,
    /// Longest replication stream message (one line, in bytes) accepted from a peer [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub peering_max_message_bytes: Option<usize>,
    /// Services one peer may export to us; a longer export list is dropped [default: 1024].
    #[arg(long, value_name = "N")]
    pub peering_max_imported_services: Option<usize>,
    /// Instances of one service imported from a peer; a larger service is dropped [default: 4096].
    #[arg(long, value_name = "N")]
    pub peering_max_service_instances: Option<usize>,
    /// The HTTP API's connection caps and timeouts (the file's `limits` block).
    #[command(flatten)]
    #[serde(default)]
    pub limits: LimitSettings,
    /// A host name the HTTP API answers to besides IP addresses and
    /// localhost (repeatable; other Host headers get 403, against DNS rebinding).
    #[arg(long = "http-allowed-host", value_name = "NAME")]
    pub http_allowed_hosts: Option<Vec<String>>,
    /// Where the cluster's state lives: `embedded` (this agent's data dir)
    /// or `etcd` (shared by every agent of the cluster) [default: embedded].
    #[arg(long, value_enum, value_name = "KIND")]
    pub store: Option<StoreKind>,
    /// etcd's client URLs, comma-separated (with --store etcd).
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub etcd_endpoints: Option<Vec<String>>,
    /// Every etcd key of this cluster starts with this [default: /isthmus/<cluster name>].
    #[arg(long, value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// The CA certificate (PEM) that signed etcd's server certificates (https endpoints).
    #[arg(long, value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for etcd, with --etcd-key-file.
    #[arg(long, value_name = "FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// With --store etcd: how long a dead agent still counts as alive, as a
    /// Go duration (2s to 60s); its node then turns critical and another
    /// agent takes over the leadership [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub member_ttl: Option<String>,
    /// Port of the DNS interface (UDP and TCP) on the HTTP API's address;
    /// 0 takes a free port, -1 turns DNS off [default: 8600].
    #[arg(long, value_name = "PORT", allow_negative_numbers = true)]
    pub dns_port: Option<i64>,
    /// The domain the DNS interface answers [default: consul].
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// The file's `ports { dns = 8600 }` block (Consul's spelling).
    #[arg(skip)]
    #[serde(default)]
    pub ports: crate::dns::config::PortSettings,
    /// The file's `dns_config { ... }` block: only_passing, node_ttl,
    /// service_ttl, a_record_limit, udp_answer_limit, enable_truncate.
    #[arg(skip)]
    #[serde(default)]
    pub dns_config: crate::dns::config::DnsSettings,
    /// Services to register (the file's `service { ... }` blocks or
    /// `services = [...]`, in Consul's shape); not a flag.
    #[arg(skip)]
    #[serde(
        default,
        alias = "service",
        deserialize_with = "crate::config_definitions::one_or_many"
    )]
    pub services: Option<Vec<serde_json::Value>>,
    /// Checks to register (`check { ... }` blocks or `checks = [...]`); not a flag.
    #[arg(skip)]
    #[serde(
        default,
        alias = "check",
        deserialize_with = "crate::config_definitions::one_or_many"
    )]
    pub checks: Option<Vec<serde_json::Value>>,
    /// Access control: the file's `acl { ... }` block (Consul's keys).
    #[arg(skip)]
    #[serde(default)]
    pub acl: Option<AclBlock>,
    /// The `--acl-*` flags (the file has the `acl` block instead).
    #[command(flatten)]
    #[serde(skip)]
    pub acl_flags: AclFlags,
    /// The web UI: the file's `ui_config { ... }` block (Consul's keys).
    #[arg(skip)]
    #[serde(default)]
    pub ui_config: Option<UiConfigBlock>,
    /// The `--ui*` flags (the file has the `ui_config` block instead).
    #[command(flatten)]
    #[serde(skip)]
    pub ui_flags: UiFlags,
}

/// The file's `limits { ... }` block, Consul's spelling; flags of the same names.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Connections the HTTP API holds open at once; more are closed at accept [default: 4096].
    #[arg(long, value_name = "N")]
    pub http_max_conns: Option<usize>,
    /// Connections the HTTP API holds open from one client IP; 0 for no cap [default: 200].
    #[arg(long, value_name = "N")]
    pub http_max_conns_per_client: Option<usize>,
    /// Closes an HTTP API connection whose request headers are not complete in this time [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub http_header_read_timeout: Option<String>,
    /// Closes an HTTP API connection with no request in flight for this long [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub http_idle_timeout: Option<String>,
    /// Closes an HTTPS API connection whose TLS handshake is not complete in this time [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub https_handshake_timeout: Option<String>,
}

/// How a layer's keys are named in error messages.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    File,
    Flags,
}

impl Source {
    fn key(self, key: &str) -> String {
        match self {
            Source::File => key.to_owned(),
            Source::Flags => format!("--{}", key.replace('_', "-")),
        }
    }
}

impl Settings {
    /// Reads an `.hcl` or `.json` file (by extension; anything else is tried
    /// as HCL, which also accepts plain `key = value` lines).
    pub fn load(path: &Path) -> Result<Settings, String> {
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

    /// Applies this layer's values over `config`.
    pub fn apply(self, config: &mut AgentConfig, source: Source) -> Result<(), String> {
        let duration = |key: &str, value: &str| {
            isthmus_api::duration::parse(value).map_err(|e| format!("{}: {e}", source.key(key)))
        };
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
        if let Some(v) = self.https_addr {
            config.https.addr = Some(v);
        }
        if let Some(v) = self.cert_file {
            config.https.cert_file = Some(v);
        }
        if let Some(v) = self.key_file {
            config.https.key_file = Some(v);
        }
        if let Some(v) = self.ca_file {
            config.https.ca_file = Some(v);
        }
        if let Some(v) = self.verify_incoming {
            config.https.verify_incoming = v;
        }
        if let Some(v) = self.default_intention_policy {
            config.default_intention_policy = v;
        }
        if let Some(v) = self.leaf_cert_ttl {
            config.leaf_cert_ttl = duration("leaf_cert_ttl", &v)?;
        }
        if let Some(v) = self.gateway_cert_ttl {
            config.gateway_cert_ttl = duration("gateway_cert_ttl", &v)?;
        }
        if let Some(v) = self.peering_heartbeat {
            config.peering_heartbeat = duration("peering_heartbeat", &v)?;
        }
        if let Some(v) = self.peering_token_ttl {
            config.peering_token_ttl = duration("peering_token_ttl", &v)?;
        }
        let probe_interval = match (self.peering, self.peering_gateway_probe_interval) {
            (_, Some(v)) => Some(("peering_gateway_probe_interval", v)),
            (
                Some(PeeringBlock {
                    gateway_probe_interval: Some(v),
                }),
                None,
            ) => Some(("peering.gateway_probe_interval", v)),
            _ => None,
        };
        if let Some((key, v)) = probe_interval {
            let interval = duration(key, &v)?;
            crate::peering::gateway_probe::validate_interval(&source.key(key), interval)?;
            config.peering_gateway_probe_interval = interval;
        }
        if let Some(v) = self.peering_max_message_bytes {
            config.peering_max_message_bytes = v;
        }
        if let Some(v) = self.peering_max_imported_services {
            config.peering_max_imported_services = v;
        }
        if let Some(v) = self.peering_max_service_instances {
            config.peering_max_service_instances = v;
        }
        if let Some(v) = &self.member_ttl {
            config.member_ttl = duration("member_ttl", v)?;
        }
        let store = StoreLayer {
            kind: self.store,
            etcd_endpoints: self.etcd_endpoints,
            etcd_prefix: self.etcd_prefix,
            etcd_ca_file: self.etcd_ca_file,
            etcd_cert_file: self.etcd_cert_file,
            etcd_key_file: self.etcd_key_file,
        };
        let limits = self.limits;
        if let Some(v) = limits.http_max_conns {
            config.http_limits.max_conns = v;
        }
        if let Some(v) = limits.http_max_conns_per_client {
            config.http_limits.max_conns_per_client = v;
        }
        if let Some(v) = limits.http_header_read_timeout {
            config.http_limits.header_read_timeout = duration("http_header_read_timeout", &v)?;
        }
        if let Some(v) = limits.http_idle_timeout {
            config.http_limits.idle_timeout = duration("http_idle_timeout", &v)?;
        }
        if let Some(v) = limits.https_handshake_timeout {
            config.https.handshake_timeout = duration("https_handshake_timeout", &v)?;
        }
        if let Some(v) = self.http_allowed_hosts {
            config.http_allowed_hosts = v;
        }
        if let Some(v) = self.ports.dns {
            config.dns.port = crate::dns::config::port_setting(&source.key("ports.dns"), v)?;
        }
        if let Some(v) = self.dns_port {
            config.dns.port = crate::dns::config::port_setting(&source.key("dns_port"), v)?;
        }
        if let Some(v) = self.domain {
            config.dns.domain = v;
        }
        self.dns_config
            .apply(&mut config.dns, |key| source.key(key))?;
        store.apply(config);
        acl::apply(self.acl, self.acl_flags, &mut config.acl, source)?;
        ui::apply(self.ui_config, self.ui_flags, &mut config.ui, source)?;
        if let Some(v) = self.services {
            config.services = crate::config_definitions::decode("services", v)?;
        }
        if let Some(v) = self.checks {
            config.checks = crate::config_definitions::decode("checks", v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
