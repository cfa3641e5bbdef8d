//! Proxy settings: defaults, then an optional HCL or JSON file, then
//! command-line flags (later sources win), and the advertise address rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use isthmus_api::naming::validate_dns_label;
use isthmus_dataplane::config::{file_duration, AdvertiseRule};
use isthmus_runtime::listen::Limits;
use serde::Deserialize;

pub use isthmus_dataplane::config::{Advertise, ConfigError};

pub const DEFAULT_CONTROL: &str = isthmus_runtime::client::DEFAULT_ADDR;
pub const DEFAULT_INBOUND_BIND: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 21000);
pub const DEFAULT_ADMIN_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 19000);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the local application speaks, and so what the proxy carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// Opaque bytes; intentions decide per connection.
    Tcp,
    /// HTTP/1.1 or HTTP/2 from callers (h2c prior knowledge detected),
    /// HTTP/1.1 towards the local application.
    #[default]
    Http,
    /// Like `Http`, but HTTP/2 (prior knowledge) towards the local application.
    Http2,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        self != Protocol::Tcp
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
        }
    }
}

impl Protocol {
    /// A protocol named by a config entry (`service-defaults`,
    /// `proxy-defaults`): as [`FromStr`], plus `grpc`, carried as HTTP/2.
    pub fn from_config_entry(text: &str) -> Option<Protocol> {
        match text {
            "grpc" => Some(Protocol::Http2),
            other => other.parse().ok(),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Protocol, ConfigError> {
        match text {
            "tcp" => Ok(Protocol::Tcp),
            "http" => Ok(Protocol::Http),
            "http2" => Ok(Protocol::Http2),
            other => Err(ConfigError(format!(
                "protocol {other:?}: expected tcp, http or http2"
            ))),
        }
    }
}

/// One upstream: a local listener on `<local_address>:<local_port>`
/// (127.0.0.1 unless a sidecar registration says otherwise) that leads to
/// `service` (in the peer `peer`, if set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub service: String,
    pub peer: Option<String>,
    /// 0 picks an ephemeral port.
    pub local_port: u16,
    pub local_address: IpAddr,
    /// What this upstream carries; `None` means the proxy's `--protocol`.
    pub protocol: Option<Protocol>,
}

impl UpstreamSpec {
    pub fn new(service: &str, peer: Option<&str>, local_port: u16) -> Result<Self, ConfigError> {
        let bad = |e: String| ConfigError(format!("upstream: {e}"));
        validate_dns_label("service name", service).map_err(bad)?;
        if let Some(peer) = peer {
            validate_dns_label("peer name", peer).map_err(bad)?;
        }
        Ok(UpstreamSpec {
            service: service.to_owned(),
            peer: peer.map(str::to_owned),
            local_port,
            local_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            protocol: None,
        })
    }

    /// `service` or `service@peer`: how metrics, logs and the ready line name it.
    pub fn label(&self) -> String {
        match &self.peer {
            Some(peer) => format!("{}@{peer}", self.service),
            None => self.service.clone(),
        }
    }
}

/// `<service>[@<peer>]:<local-port>`.
impl FromStr for UpstreamSpec {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<UpstreamSpec, ConfigError> {
        let (target, port) = text.rsplit_once(':').ok_or_else(|| {
            ConfigError(format!(
                "upstream {text:?}: expected <service>[@<peer>]:<local-port>"
            ))
        })?;
        let port = port
            .parse()
            .map_err(|_| ConfigError(format!("upstream {text:?}: invalid port {port:?}")))?;
        let (service, peer) = match target.split_once('@') {
            Some((service, peer)) => (service, Some(peer)),
            None => (target, None),
        };
        UpstreamSpec::new(service, peer, port)
    }
}

/// Everything a proxy needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The local service this proxy fronts.
    pub service: String,
    /// The local service's instance ID; `None` means the service name.
    pub service_id: Option<String>,
    /// The agent's HTTP API, `http://host:port` or `https://host:port`.
    pub control: String,
    /// The inbound (mTLS) listener.
    pub inbound_bind: SocketAddr,
    /// `host:port` (or `host`) registered in the catalog. `None` means the
    /// bound inbound address, which must not be a wildcard.
    pub advertise: Option<String>,
    /// Where the local application listens (plaintext).
    pub local_app: SocketAddr,
    pub upstreams: Vec<UpstreamSpec>,
    /// The plain-HTTP admin listener.
    pub admin_bind: SocketAddr,
    pub protocol: Protocol,
    /// Async runtime worker threads (used by the binary); `None` means one per core.
    pub workers: Option<usize>,
    /// How long in-flight requests may run on after shutdown begins.
    pub drain_timeout: Duration,
    /// Log as JSON lines (used by the binary).
    pub log_json: bool,
    /// Connection cap, header-read and idle timeouts of the inbound
    /// listener and of each upstream's listener.
    pub limits: Limits,
    /// Connections the admin listener holds at once (same timeouts).
    pub admin_max_conns: usize,
    /// With `--sidecar-for`: the agent's `connect-proxy` registration this
    /// proxy serves. The proxy then does not register (or deregister)
    /// itself: the registration is the operator's.
    pub registered: Option<Registered>,
    /// The ACL token and TLS files for the agent's API (flags and
    /// environment only, like the CLI's; never in the config file).
    pub agent_credentials: isthmus_runtime::client::Credentials,
}

/// The registration a `--sidecar-for` proxy read its settings from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub proxy_id: String,
    /// Its `X-Consul-Index` when read: changes are watched from there.
    pub index: u64,
    /// What of it the proxy uses (port, address, `Proxy`), as JSON: a
    /// change of anything else is no reason to warn.
    pub fingerprint: String,
}

/// Connections each listener (the inbound, each upstream's) holds at once.
pub const DEFAULT_MAX_CONNS: usize = 10_000;
/// A connection with no request in flight is closed after this long. Long,
/// because the callers are other sidecars' pooled HTTP/2 connections, which
/// ping every 30s and are cheap to keep (Envoy's HTTP idle timeout default
/// is also 1h); the header-read timeout and the cap are what stop a flood.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The listeners' default limits.
pub const fn default_limits() -> Limits {
    Limits {
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        ..Limits::with_max_conns(DEFAULT_MAX_CONNS)
    }
}

impl ProxyConfig {
    /// Defaults for everything but the service and the local application.
    pub fn new(service: impl Into<String>, local_app: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            service: service.into(),
            service_id: None,
            control: DEFAULT_CONTROL.to_owned(),
            inbound_bind: DEFAULT_INBOUND_BIND,
            advertise: None,
            local_app,
            upstreams: Vec::new(),
            admin_bind: DEFAULT_ADMIN_BIND,
            protocol: Protocol::default(),
            workers: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            log_json: false,
            limits: default_limits(),
            admin_max_conns: isthmus_runtime::listen::DEFAULT_ADMIN_MAX_CONNS,
            agent_credentials: Default::default(),
            registered: None,
        }
    }

    /// Every listener on an ephemeral loopback port, talking to `control`:
    /// what tests and in-process clusters want.
    pub fn loopback(
        control: impl Into<String>,
        service: impl Into<String>,
        local_app: SocketAddr,
    ) -> ProxyConfig {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        ProxyConfig {
            control: control.into(),
            inbound_bind: SocketAddr::new(localhost, 0),
            admin_bind: SocketAddr::new(localhost, 0),
            ..ProxyConfig::new(service, local_app)
        }
    }

    /// The admin listener's limits: its own cap, the same timeouts.
    pub fn admin_limits(&self) -> Limits {
        Limits {
            max_conns: self.admin_max_conns,
            max_conns_per_client: 0,
            ..self.limits
        }
    }

    /// The local service's instance ID.
    pub fn service_id(&self) -> &str {
        self.service_id.as_deref().unwrap_or(&self.service)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_dns_label("service name", &self.service)
            .map_err(|e| ConfigError(format!("--service: {e}")))?;
        let id = self.service_id();
        if id.is_empty() || id.chars().any(|c| c == '/' || c.is_whitespace()) {
            return Err(ConfigError(format!(
                "--service-id {id:?}: must be non-empty, without '/' or spaces"
            )));
        }
        if self.local_app.port() == 0 {
            return Err(ConfigError("--local-app needs a port".into()));
        }
        self.limits
            .validate("--max-conns/--header-read-timeout/--idle-timeout")
            .map_err(ConfigError)?;
        if self.admin_max_conns == 0 {
            return Err(ConfigError("--admin-max-conns must be at least 1".into()));
        }
        if self.workers == Some(0) {
            return Err(ConfigError("--workers must be at least 1".into()));
        }
        for (i, upstream) in self.upstreams.iter().enumerate() {
            for other in &self.upstreams[..i] {
                if other.service == upstream.service && other.peer == upstream.peer {
                    return Err(ConfigError(format!(
                        "upstream {} is listed twice",
                        upstream.label()
                    )));
                }
                if upstream.local_port != 0
                    && other.local_port == upstream.local_port
                    && other.local_address == upstream.local_address
                {
                    return Err(ConfigError(format!(
                        "upstreams {} and {} both want local port {}",
                        other.label(),
                        upstream.label(),
                        upstream.local_port
                    )));
                }
            }
        }
        Ok(())
    }
}

/// How the proxy words advertise errors: other sidecars dial the inbound
/// listener at the address registered in the catalog.
pub const ADVERTISE: AdvertiseRule = AdvertiseRule {
    bind_flag: "--inbound-bind",
    dialers: "other sidecars",
    destination: "the address to register",
};

/// The keys a config file may set; they mirror the flags.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub sidecar_for: Option<String>,
    pub service: Option<String>,
    pub service_id: Option<String>,
    pub control: Option<String>,
    pub inbound_bind: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub local_app: Option<SocketAddr>,
    pub upstreams: Option<Vec<FileUpstream>>,
    pub admin_bind: Option<SocketAddr>,
    pub protocol: Option<String>,
    pub workers: Option<usize>,
    /// Go duration, e.g. `"10s"`.
    pub drain_timeout: Option<String>,
    pub log_json: Option<bool>,
    pub max_conns: Option<usize>,
    /// Go duration.
    pub header_read_timeout: Option<String>,
    /// Go duration.
    pub idle_timeout: Option<String>,
    pub admin_max_conns: Option<usize>,
}

/// `{ service = "x", peer = "p", local_port = 9191 }`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub service: String,
    pub peer: Option<String>,
    pub local_port: u16,
}

isthmus_dataplane::settings_layer! {
    /// Settings from one source (the file or the flags), each possibly unset.
    pub struct Layer {
        /// A service ID on the agent whose sidecar registration configures the proxy.
        pub sidecar_for: String,
        pub service: String,
        pub service_id: String,
        pub control: String,
        pub inbound_bind: SocketAddr,
        pub advertise: String,
        pub local_app: SocketAddr,
        /// Replaces (not extends) a lower layer's list.
        pub upstreams: Vec<UpstreamSpec>,
        pub admin_bind: SocketAddr,
        pub protocol: Protocol,
        pub workers: usize,
        pub drain_timeout: Duration,
        pub log_json: bool,
        pub max_conns: usize,
        pub header_read_timeout: Duration,
        pub idle_timeout: Duration,
        pub admin_max_conns: usize,
    }
}

impl Layer {
    /// Defaults for the rest; `service` and `local_app` are required.
    pub fn finish(self) -> Result<ProxyConfig, ConfigError> {
        let service = self
            .service
            .ok_or_else(|| ConfigError("--service is required".into()))?;
        let local_app = self.local_app.ok_or_else(|| {
            ConfigError("--local-app is required (the local application's host:port)".into())
        })?;
        let defaults = ProxyConfig::new(service, local_app);
        let config = ProxyConfig {
            service_id: self.service_id,
            control: self.control.unwrap_or(defaults.control.clone()),
            inbound_bind: self.inbound_bind.unwrap_or(defaults.inbound_bind),
            advertise: self.advertise,
            upstreams: self.upstreams.unwrap_or_default(),
            admin_bind: self.admin_bind.unwrap_or(defaults.admin_bind),
            protocol: self.protocol.unwrap_or(defaults.protocol),
            workers: self.workers,
            drain_timeout: self.drain_timeout.unwrap_or(defaults.drain_timeout),
            log_json: self.log_json.unwrap_or(false),
            limits: Limits {
                max_conns: self.max_conns.unwrap_or(defaults.limits.max_conns),
                header_read_timeout: self
                    .header_read_timeout
                    .unwrap_or(defaults.limits.header_read_timeout),
                idle_timeout: self.idle_timeout.unwrap_or(defaults.limits.idle_timeout),
                max_conns_per_client: 0,
            },
            admin_max_conns: self.admin_max_conns.unwrap_or(defaults.admin_max_conns),
            ..defaults
        };
        config.validate()?;
        Ok(config)
    }
}

impl FileConfig {
    /// Reads an `.hcl` or `.json` file (by extension; anything else is read as HCL).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        isthmus_dataplane::config::load_file(path)
    }

    /// The file's values, parsed.
    pub fn into_layer(self) -> Result<Layer, ConfigError> {
        let upstreams = self
            .upstreams
            .map(|list| {
                list.iter()
                    .map(|u| UpstreamSpec::new(&u.service, u.peer.as_deref(), u.local_port))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let drain_timeout = file_duration("drain_timeout", self.drain_timeout)?;
        Ok(Layer {
            max_conns: self.max_conns,
            header_read_timeout: file_duration("header_read_timeout", self.header_read_timeout)?,
            idle_timeout: file_duration("idle_timeout", self.idle_timeout)?,
            admin_max_conns: self.admin_max_conns,
            sidecar_for: self.sidecar_for,
            service: self.service,
            service_id: self.service_id,
            control: self.control,
            inbound_bind: self.inbound_bind,
            advertise: self.advertise,
            local_app: self.local_app,
            upstreams,
            admin_bind: self.admin_bind,
            protocol: self.protocol.as_deref().map(str::parse).transpose()?,
            workers: self.workers,
            drain_timeout,
            log_json: self.log_json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn config_entry_protocols_map_onto_what_the_proxy_speaks() {
        assert_eq!(Protocol::from_config_entry("tcp"), Some(Protocol::Tcp));
        assert_eq!(Protocol::from_config_entry("http"), Some(Protocol::Http));
        assert_eq!(Protocol::from_config_entry("http2"), Some(Protocol::Http2));
        assert_eq!(Protocol::from_config_entry("grpc"), Some(Protocol::Http2));
        assert_eq!(Protocol::from_config_entry("udp"), None);
    }

    #[test]
    fn upstream_specs() {
        let spec: UpstreamSpec = "backend:9191".parse().unwrap();
        assert_eq!(spec, UpstreamSpec::new("backend", None, 9191).unwrap());
        assert_eq!(spec.label(), "backend");
        let spec: UpstreamSpec = "backend@cluster-02:0".parse().unwrap();
        assert_eq!(spec.peer.as_deref(), Some("cluster-02"));
        assert_eq!(spec.label(), "backend@cluster-02");
        for bad in [
            "backend",
            "backend:x",
            ":1",
            "a/b:1",
            "backend@:1",
            "backend@a.b:1",
            "backend:70000",
        ] {
            assert!(bad.parse::<UpstreamSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn validation() {
        let mut config = ProxyConfig::new("web", addr("127.0.0.1:8080"));
        assert!(config.validate().is_ok());
        assert_eq!(config.service_id(), "web");
        config.upstreams = vec![
            "backend:9191".parse().unwrap(),
            "backend@peer:9192".parse().unwrap(),
        ];
        assert!(config.validate().is_ok());
        config.upstreams.push("db:9191".parse().unwrap());
        assert!(config.validate().unwrap_err().0.contains("9191"));
        config.upstreams.pop();
        config.upstreams.push("backend:0".parse().unwrap());
        assert!(config.validate().unwrap_err().0.contains("twice"));
        config.upstreams.pop();
        config.workers = Some(0);
        assert!(config.validate().is_err());
        config.workers = Some(1);
        config.service_id = Some("web/1".into());
        assert!(config.validate().is_err());
        config.service_id = None;
        config.local_app = addr("127.0.0.1:0");
        assert!(config.validate().is_err());
    }

    #[test]
    fn advertise_rules() {
        let a = ADVERTISE.resolve(None, addr("127.0.0.1:4321")).unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:4321");
        let err = ADVERTISE.resolve(None, addr("0.0.0.0:21000")).unwrap_err();
        assert!(
            err.0.contains("wildcard") && err.0.contains("--advertise"),
            "{err}"
        );
        let bound = addr("0.0.0.0:21000");
        let cases = [
            ("10.0.0.1:21001", "10.0.0.1:21001"),
            ("10.0.0.1", "10.0.0.1:21000"),
            ("[fd00::1]:1", "[fd00::1]:1"),
            ("fd00::1", "[fd00::1]:21000"),
            ("node-1.example:443", "node-1.example:443"),
        ];
        for (given, want) in cases {
            let got = ADVERTISE.resolve(Some(given), bound).unwrap();
            assert_eq!(got.to_string(), want, "{given}");
        }
        for bad in ["0.0.0.0:1", "[::]:1", "host:x", ":1", "a b:1", "[::1:5"] {
            assert!(ADVERTISE.resolve(Some(bad), bound).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_hcl_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let hcl_path = dir.path().join("proxy.hcl");
        std::fs::write(
            &hcl_path,
            r#"
service = "web"
service_id = "web-1"
control = "http://127.0.0.1:9500"
inbound_bind = "127.0.0.1:0"
local_app = "127.0.0.1:8080"
admin_bind = "127.0.0.1:0"
protocol = "http2"
workers = 2
drain_timeout = "3s"
upstreams = [
  { service = "backend", local_port = 9191 },
  { service = "backend", peer = "cluster-02", local_port = 9192 },
]
"#,
        )
        .unwrap();
        let config = FileConfig::load(&hcl_path)
            .unwrap()
            .into_layer()
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(config.service_id(), "web-1");
        assert_eq!(config.protocol, Protocol::Http2);
        assert_eq!(config.workers, Some(2));
        assert_eq!(config.drain_timeout, Duration::from_secs(3));
        assert_eq!(config.upstreams.len(), 2);
        assert_eq!(config.upstreams[1].label(), "backend@cluster-02");

        let json_path = dir.path().join("proxy.json");
        std::fs::write(&json_path, r#"{"service": "web", "servcie_id": "x"}"#).unwrap();
        let err = FileConfig::load(&json_path).unwrap_err();
        assert!(err.0.contains("servcie_id"), "{err}");
        std::fs::write(
            &hcl_path,
            "upstreams = [{ service = \"b\", local_port = 1, prot = \"tcp\" }]\n",
        )
        .unwrap();
        let err = FileConfig::load(&hcl_path).unwrap_err();
        assert!(err.0.contains("prot"), "{err}");
        std::fs::write(&hcl_path, "protocol = \"udp\"\n").unwrap();
        let err = FileConfig::load(&hcl_path)
            .unwrap()
            .into_layer()
            .unwrap_err();
        assert!(err.0.contains("udp"), "{err}");
    }

    #[test]
    fn required_settings() {
        let err = Layer::default().finish().unwrap_err();
        assert!(err.0.contains("--service"), "{err}");
        let layer = Layer {
            service: Some("web".into()),
            ..Layer::default()
        };
        assert!(layer.finish().unwrap_err().0.contains("--local-app"));
    }
}
