//! Gateway settings: defaults, then an optional HCL or JSON file, then
//! command-line flags (later sources win), and the advertise address rule.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use isthmus_dataplane::config::{file_duration, AdvertiseRule};
use isthmus_runtime::listen::Limits;
use serde::Deserialize;

pub use isthmus_dataplane::config::{Advertise, ConfigError};

pub use crate::exchange::ExchangeLimits;

pub const DEFAULT_CONTROL: &str = isthmus_runtime::client::DEFAULT_ADDR;
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443);
pub const DEFAULT_ADMIN_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 19100);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`crate::start`] waits for the agent's first gateway view.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections the TLS listener holds at once (peering and passed-through
/// service traffic together); more are closed at accept.
pub const DEFAULT_MAX_CONNS: usize = 8192;
/// A passed-through connection with no byte either way for this long is
/// closed. Long enough for any pooled or keep-alive connection that pings
/// (the sidecars' pooled HTTP/2 connections ping every 30s) and for quiet
/// application protocols between bursts; short enough that idle
/// connections nobody uses give their file descriptors back within
/// minutes, not hours (Envoy's TCP proxy default is 1h).
pub const DEFAULT_PASSTHROUGH_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Unauthenticated peering exchanges (see `exchange`): the body limit,
/// how long the body may take, and how many may run at once per TLS
/// connection and in all.
pub const DEFAULT_EXCHANGE_MAX_BODY_BYTES: usize = 16 * 1024;
pub const DEFAULT_EXCHANGE_BODY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_EXCHANGE_MAX_PER_CONNECTION: usize = 4;
pub const DEFAULT_EXCHANGE_MAX_CONCURRENT: usize = 64;

/// Everything a gateway needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The agent's HTTP API, `http://host:port` or `https://host:port`.
    pub control: String,
    /// The peering listener (TLS). Port 0 picks an ephemeral port.
    pub bind: SocketAddr,
    /// `host:port` (or just `host`, meaning the bound port) put into peering
    /// tokens. `None` means the bound address, which must not be a wildcard.
    pub advertise: Option<String>,
    /// The plain-HTTP admin listener (`/metrics`, `/ready`, `/live`).
    pub admin_bind: SocketAddr,
    /// How long in-flight requests may run on after shutdown begins.
    pub drain_timeout: Duration,
    /// How long `start` waits for the agent's first gateway view.
    pub startup_timeout: Duration,
    /// Bounds on unauthenticated peering exchanges.
    pub exchange: ExchangeLimits,
    /// The peering server's limits (header-read timeout from the end of the
    /// TLS handshake, idle = no open request or stream) and the TLS
    /// listener's connection cap.
    pub limits: Limits,
    /// No bytes either way on a passed-through connection for this long closes it.
    pub passthrough_idle_timeout: Duration,
    /// Connections the admin listener holds at once.
    pub admin_max_conns: usize,
    /// The ACL token and TLS files for the agent's API (flags and
    /// environment only, like the CLI's; never in the config file).
    pub agent_credentials: isthmus_runtime::client::Credentials,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            control: DEFAULT_CONTROL.to_owned(),
            bind: DEFAULT_BIND,
            advertise: None,
            admin_bind: DEFAULT_ADMIN_BIND,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            exchange: ExchangeLimits {
                max_body_bytes: DEFAULT_EXCHANGE_MAX_BODY_BYTES,
                body_timeout: DEFAULT_EXCHANGE_BODY_TIMEOUT,
                max_per_connection: DEFAULT_EXCHANGE_MAX_PER_CONNECTION,
                max_concurrent: DEFAULT_EXCHANGE_MAX_CONCURRENT,
            },
            limits: Limits::with_max_conns(DEFAULT_MAX_CONNS),
            passthrough_idle_timeout: DEFAULT_PASSTHROUGH_IDLE_TIMEOUT,
            admin_max_conns: isthmus_runtime::listen::DEFAULT_ADMIN_MAX_CONNS,
            agent_credentials: Default::default(),
        }
    }
}

impl GatewayConfig {
    /// Both listeners on ephemeral loopback ports, talking to `control`:
    /// what an in-process (`isthmus agent --dev`) or test gateway wants.
    pub fn loopback(control: impl Into<String>) -> GatewayConfig {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        GatewayConfig {
            control: control.into(),
            bind: SocketAddr::new(localhost, 0),
            admin_bind: SocketAddr::new(localhost, 0),
            ..GatewayConfig::default()
        }
    }
}

/// How the gateway words advertise errors: peers dial the TLS listener
/// at the address peering tokens carry.
pub const ADVERTISE: AdvertiseRule = AdvertiseRule {
    bind_flag: "--bind",
    dialers: "peers",
    destination: "the address peering tokens should carry",
};

/// The keys a config file may set; they mirror the flags.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub control: Option<String>,
    pub bind: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub admin_bind: Option<SocketAddr>,
    /// Go duration, e.g. `"10s"`.
    pub drain_timeout: Option<String>,
    pub exchange_max_body_bytes: Option<usize>,
    /// Go duration, e.g. `"5s"`.
    pub exchange_body_timeout: Option<String>,
    pub exchange_max_per_connection: Option<usize>,
    pub exchange_max_concurrent: Option<usize>,
    pub max_conns: Option<usize>,
    /// Go duration.
    pub header_read_timeout: Option<String>,
    /// Go duration.
    pub idle_timeout: Option<String>,
    /// Go duration.
    pub passthrough_idle_timeout: Option<String>,
    pub admin_max_conns: Option<usize>,
}

isthmus_dataplane::settings_layer! {
    /// Settings from one source (the file or the flags), each possibly unset.
    pub struct Layer {
        pub control: String,
        pub bind: SocketAddr,
        pub advertise: String,
        pub admin_bind: SocketAddr,
        pub drain_timeout: Duration,
        pub exchange_max_body_bytes: usize,
        pub exchange_body_timeout: Duration,
        pub exchange_max_per_connection: usize,
        pub exchange_max_concurrent: usize,
        pub max_conns: usize,
        pub header_read_timeout: Duration,
        pub idle_timeout: Duration,
        pub passthrough_idle_timeout: Duration,
        pub admin_max_conns: usize,
    }
}

impl Layer {
    /// Defaults for the rest, then validation.
    pub fn finish(self) -> Result<GatewayConfig, ConfigError> {
        let defaults = GatewayConfig::default();
        let config = GatewayConfig {
            control: self.control.unwrap_or(defaults.control),
            bind: self.bind.unwrap_or(defaults.bind),
            advertise: self.advertise,
            admin_bind: self.admin_bind.unwrap_or(defaults.admin_bind),
            drain_timeout: self.drain_timeout.unwrap_or(defaults.drain_timeout),
            startup_timeout: defaults.startup_timeout,
            exchange: ExchangeLimits {
                max_body_bytes: self
                    .exchange_max_body_bytes
                    .unwrap_or(defaults.exchange.max_body_bytes),
                body_timeout: self
                    .exchange_body_timeout
                    .unwrap_or(defaults.exchange.body_timeout),
                max_per_connection: self
                    .exchange_max_per_connection
                    .unwrap_or(defaults.exchange.max_per_connection),
                max_concurrent: self
                    .exchange_max_concurrent
                    .unwrap_or(defaults.exchange.max_concurrent),
            },
            limits: Limits {
                max_conns: self.max_conns.unwrap_or(defaults.limits.max_conns),
                header_read_timeout: self
                    .header_read_timeout
                    .unwrap_or(defaults.limits.header_read_timeout),
                idle_timeout: self.idle_timeout.unwrap_or(defaults.limits.idle_timeout),
                ..defaults.limits
            },
            passthrough_idle_timeout: self
                .passthrough_idle_timeout
                .unwrap_or(defaults.passthrough_idle_timeout),
            admin_max_conns: self.admin_max_conns.unwrap_or(defaults.admin_max_conns),
            agent_credentials: defaults.agent_credentials,
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
        Ok(Layer {
            control: self.control,
            bind: self.bind,
            advertise: self.advertise,
            admin_bind: self.admin_bind,
            drain_timeout: file_duration("drain_timeout", self.drain_timeout)?,
            exchange_max_body_bytes: self.exchange_max_body_bytes,
            exchange_body_timeout: file_duration(
                "exchange_body_timeout",
                self.exchange_body_timeout,
            )?,
            exchange_max_per_connection: self.exchange_max_per_connection,
            exchange_max_concurrent: self.exchange_max_concurrent,
            max_conns: self.max_conns,
            header_read_timeout: file_duration("header_read_timeout", self.header_read_timeout)?,
            idle_timeout: file_duration("idle_timeout", self.idle_timeout)?,
            passthrough_idle_timeout: file_duration(
                "passthrough_idle_timeout",
                self.passthrough_idle_timeout,
            )?,
            admin_max_conns: self.admin_max_conns,
        })
    }
}

impl GatewayConfig {
    /// Checks the limits an operator could have got wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits
            .validate("max_conns/header_read_timeout/idle_timeout")
            .map_err(ConfigError)?;
        if self.passthrough_idle_timeout < Duration::from_millis(10) {
            return Err(ConfigError(
                "passthrough_idle_timeout must be at least 10ms".into(),
            ));
        }
        if self.admin_max_conns == 0 {
            return Err(ConfigError("admin_max_conns must be at least 1".into()));
        }
        Ok(())
    }

    /// The admin listener's limits: its own cap, the same timeouts.
    pub fn admin_limits(&self) -> Limits {
        Limits {
            max_conns: self.admin_max_conns,
            max_conns_per_client: 0,
            ..self.limits
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn advertise_defaults_to_the_bound_address() {
        let a = ADVERTISE.resolve(None, addr("127.0.0.1:4321")).unwrap();
        assert_eq!(a.to_string(), "127.0.0.1:4321");
        let a = ADVERTISE.resolve(None, addr("[::1]:4321")).unwrap();
        assert_eq!(a.to_string(), "[::1]:4321");
    }

    #[test]
    fn a_wildcard_bind_needs_an_advertise_address() {
        for bound in ["0.0.0.0:8443", "[::]:8443"] {
            let err = ADVERTISE.resolve(None, addr(bound)).unwrap_err();
            assert!(
                err.0.contains("wildcard") && err.0.contains("--advertise"),
                "{err}"
            );
        }
        let a = ADVERTISE
            .resolve(Some("gw.example.com:443"), addr("0.0.0.0:8443"))
            .unwrap();
        assert_eq!((a.host.as_str(), a.port), ("gw.example.com", 443));
    }

    #[test]
    fn advertise_forms() {
        let bound = addr("0.0.0.0:9000");
        let cases = [
            ("10.0.0.1:8443", "10.0.0.1:8443"),
            ("10.0.0.1", "10.0.0.1:9000"),
            ("10.0.0.1:0", "10.0.0.1:9000"),
            ("[fd00::1]:8443", "[fd00::1]:8443"),
            ("[fd00::1]", "[fd00::1]:9000"),
            ("fd00::1", "[fd00::1]:9000"),
        ];
        for (given, want) in cases {
            assert_eq!(
                ADVERTISE.resolve(Some(given), bound).unwrap().to_string(),
                want,
                "{given}"
            );
        }
        for bad in ["0.0.0.0:1", "[::]:1", "host:x", ":8443", "a b:1", "[::1:5"] {
            assert!(ADVERTISE.resolve(Some(bad), bound).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_config_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/gateway.hcl");
        let config = FileConfig::load(&path)
            .unwrap()
            .into_layer()
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(config.exchange, GatewayConfig::default().exchange);
    }

    #[test]
    fn file_values_apply_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let hcl_path = dir.path().join("gw.hcl");
        std::fs::write(
            &hcl_path,
            "control = \"http://127.0.0.1:9500\"\nbind = \"127.0.0.1:0\"\nadvertise = \"gw:1\"\nadmin_bind = \"127.0.0.1:0\"\ndrain_timeout = \"3s\"\n",
        )
        .unwrap();
        let config = FileConfig::load(&hcl_path)
            .unwrap()
            .into_layer()
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(config.control, "http://127.0.0.1:9500");
        assert_eq!(config.bind, addr("127.0.0.1:0"));
        assert_eq!(config.advertise.as_deref(), Some("gw:1"));
        assert_eq!(config.drain_timeout, Duration::from_secs(3));
        assert_eq!(config.limits.max_conns, DEFAULT_MAX_CONNS);

        std::fs::write(
            &hcl_path,
            "max_conns = 10\nheader_read_timeout = \"2s\"\nidle_timeout = \"1m\"\npassthrough_idle_timeout = \"5m\"\nadmin_max_conns = 4\n",
        )
        .unwrap();
        let config = FileConfig::load(&hcl_path)
            .unwrap()
            .into_layer()
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(config.limits.max_conns, 10);
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.passthrough_idle_timeout, Duration::from_secs(300));
        assert_eq!(config.admin_max_conns, 4);
        config.validate().unwrap();

        let json_path = dir.path().join("gw.json");
        std::fs::write(&json_path, r#"{"bind": "127.0.0.1:1", "bnid": "x"}"#).unwrap();
        let err = FileConfig::load(&json_path).unwrap_err();
        assert!(err.0.contains("bnid"), "{err}");
        std::fs::write(&hcl_path, "admin_bnd = \"127.0.0.1:1\"\n").unwrap();
        let err = FileConfig::load(&hcl_path).unwrap_err();
        assert!(err.0.contains("admin_bnd"), "{err}");
    }
}
