//! The `isthmus-proxy` command line. Go-style single-dash long flags
//! (`-service web`, `-service=web`) are accepted alongside `--service web`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use isthmus_dataplane::config::flag_duration as parse_duration;

use crate::config::{ConfigError, FileConfig, Layer, Protocol, ProxyConfig, UpstreamSpec};
use crate::sidecar_for::{FromRegistration, Lookup};

/// What the command line asks for.
#[derive(Debug)]
pub enum Launch {
    /// Every setting is known.
    Config(ProxyConfig),
    /// The settings come from a registration on the agent (`--sidecar-for`, `--proxy-id`).
    FromRegistration(FromRegistration),
}

impl Launch {
    /// Whether to log as JSON lines, known before the agent is asked.
    pub fn log_json(&self) -> bool {
        match self {
            Launch::Config(config) => config.log_json,
            Launch::FromRegistration(from) => from.given.log_json.unwrap_or(false),
        }
    }

    /// The async runtime's worker threads, known before the agent is asked.
    pub fn workers(&self) -> Option<usize> {
        match self {
            Launch::Config(config) => config.workers,
            Launch::FromRegistration(from) => from.given.workers,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "isthmus-proxy",
    version,
    about = "isthmus sidecar proxy: mutual TLS between workloads, intentions enforced at L4 and L7",
    long_about = "isthmus sidecar proxy. Inbound, it terminates mutual TLS, identifies the caller \
        by its SPIFFE ID, enforces the service's intentions and forwards to the local application. \
        Outbound, it listens on 127.0.0.1 for each upstream, balances across the upstream's \
        endpoints and originates mutual TLS. Flags may be written Consul-style (-service web) or \
        GNU-style (--service web); flags win over the config file."
)]
pub struct Cli {
    /// The ID of a service instance on the agent whose sidecar this proxy
    /// becomes: its settings (service, inbound port, local application,
    /// upstreams) come from the one connect-proxy registered with
    /// Proxy.DestinationServiceID set to it, and the proxy does not register
    /// itself. Read once at start.
    #[arg(long, value_name = "SERVICE-ID", env = "CONNECT_SIDECAR_FOR")]
    pub sidecar_for: Option<String>,
    /// Like --sidecar-for, but names the connect-proxy registration's own ID.
    #[arg(
        long,
        value_name = "ID",
        env = "CONNECT_PROXY_ID",
        conflicts_with = "sidecar_for"
    )]
    pub proxy_id: Option<String>,
    /// The local service this proxy fronts (required, here or in the config
    /// file, unless --sidecar-for is given).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// The local service's instance ID. [default: the service name]
    #[arg(long, value_name = "ID")]
    pub service_id: Option<String>,
    /// The isthmus agent's HTTP API, http://host:port or https://host:port (see --ca-file). [default: http://127.0.0.1:8500]
    #[arg(long, value_name = "URL")]
    pub control: Option<String>,
    /// Address of the inbound (mTLS) listener; port 0 picks one. [default: 0.0.0.0:21000]
    #[arg(long, value_name = "ADDR")]
    pub inbound_bind: Option<SocketAddr>,
    /// host:port registered in the catalog. Defaults to the bound inbound
    /// address; required when --inbound-bind is a wildcard.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// The local application's address, e.g. 127.0.0.1:8080 (required).
    #[arg(long, value_name = "ADDR")]
    pub local_app: Option<SocketAddr>,
    /// An upstream: a listener on 127.0.0.1:PORT leading to the
    /// service (in the peer, if given). Repeatable; replaces the file's list.
    #[arg(long = "upstream", value_name = "SERVICE[@PEER]:PORT")]
    pub upstreams: Vec<UpstreamSpec>,
    /// Address of the admin listener (/metrics, /ready, /live, /config, /shutdown). [default: 127.0.0.1:19000]
    #[arg(long, value_name = "ADDR")]
    pub admin_bind: Option<SocketAddr>,
    /// tcp, http (HTTP/1.1 and h2c from callers, HTTP/1.1 to the app) or
    /// http2 (HTTP/2 to the app). [default: http]
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_protocol)]
    pub protocol: Option<Protocol>,
    /// Worker threads of the async runtime. [default: one per core]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How long in-flight requests may finish after SIGTERM (Go duration). [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Connections the inbound listener (and each upstream's) holds at once; more are closed at accept. [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Closes a connection whose request headers are not complete this long after it opened (inbound: after the TLS handshake). [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: Option<Duration>,
    /// Closes a connection with no request in flight for this long. [default: 1h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Connections the admin listener holds at once. [default: 64]
    #[arg(long, value_name = "N")]
    pub admin_max_conns: Option<usize>,
    /// An HCL or JSON file whose keys mirror the flags (snake_case), with
    /// `upstreams = [{ service = "x", peer = "p", local_port = 9191 }]`.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// The ACL token, its file and the TLS files for the agent's API
    /// (-token, -token-file, -ca-file, -client-cert, -client-key; or
    /// ISTHMUS_HTTP_TOKEN/CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, ...).
    #[command(flatten)]
    pub agent: isthmus_runtime::client::ClientFlags,
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    text.parse().map_err(|e: ConfigError| e.0)
}

impl Cli {
    /// Parses the process arguments, Go-style flags included.
    pub fn parse_args() -> Cli {
        Cli::parse_from(normalize_go_flags(std::env::args_os()))
    }

    /// Defaults, then the config file, then the flags; without
    /// `--sidecar-for`/`--proxy-id` (see [`Cli::into_launch`]).
    pub fn into_config(self) -> Result<ProxyConfig, ConfigError> {
        match self.into_launch()? {
            Launch::Config(config) => Ok(config),
            Launch::FromRegistration(_) => Err(ConfigError(
                "--sidecar-for and --proxy-id read the agent: use into_launch".into(),
            )),
        }
    }

    /// Defaults, then the config file, then the flags; with
    /// `--sidecar-for`/`--proxy-id`, the registration still to be read.
    pub fn into_launch(self) -> Result<Launch, ConfigError> {
        let agent_credentials = self
            .agent
            .credentials()
            .map_err(|e| ConfigError(e.to_string()))?;
        let file = match &self.config_file {
            Some(path) => FileConfig::load(path)?.into_layer()?,
            None => Layer::default(),
        };
        let flags = Layer {
            sidecar_for: self.sidecar_for,
            service: self.service,
            service_id: self.service_id,
            control: self.control,
            inbound_bind: self.inbound_bind,
            advertise: self.advertise,
            local_app: self.local_app,
            upstreams: (!self.upstreams.is_empty()).then_some(self.upstreams),
            admin_bind: self.admin_bind,
            protocol: self.protocol,
            workers: self.workers,
            drain_timeout: self.drain_timeout,
            log_json: self.log_json.then_some(true),
            max_conns: self.max_conns,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            admin_max_conns: self.admin_max_conns,
        };
        let layer = flags.over(file);
        let lookup = match (self.proxy_id, layer.sidecar_for.clone()) {
            (Some(id), _) => Some(Lookup::ProxyId(id)),
            (None, Some(id)) => Some(Lookup::SidecarFor(id)),
            (None, None) => None,
        };
        if let Some(lookup) = lookup {
            for (name, value) in [
                ("--sidecar-for", layer.sidecar_for.as_deref()),
                (
                    "--proxy-id",
                    match &lookup {
                        Lookup::ProxyId(id) => Some(id.as_str()),
                        Lookup::SidecarFor(_) => None,
                    },
                ),
            ] {
                if value.is_some_and(|v| v.trim().is_empty()) {
                    return Err(ConfigError(format!("{name} needs a non-empty ID")));
                }
            }
            return FromRegistration::new(lookup, layer, agent_credentials)
                .map(Launch::FromRegistration);
        }
        let mut config = layer.finish()?;
        config.agent_credentials = agent_credentials;
        Ok(Launch::Config(config))
    }
}

/// Rewrites `-name` / `-name=value` into `--name` forms, only for names
/// that really are long flags of this command.
pub fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    isthmus_runtime::process::normalize_go_flags(&Cli::command(), args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args = std::iter::once("isthmus-proxy")
            .chain(args.iter().copied())
            .map(OsString::from);
        Cli::try_parse_from(normalize_go_flags(args))
    }

    #[test]
    fn go_style_and_gnu_style_flags() {
        let config = parse(&[
            "-service",
            "web",
            "-service-id=web-1",
            "--control",
            "http://127.0.0.1:9500",
            "-inbound-bind",
            "127.0.0.1:0",
            "-local-app",
            "127.0.0.1:8080",
            "-upstream",
            "backend:9191",
            "--upstream=backend@cluster-02:9192",
            "-admin-bind",
            "127.0.0.1:0",
            "-protocol",
            "tcp",
            "-workers",
            "1",
            "-drain-timeout",
            "2s",
            "-log-json",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(config.service, "web");
        assert_eq!(config.service_id(), "web-1");
        assert_eq!(config.control, "http://127.0.0.1:9500");
        assert_eq!(config.upstreams.len(), 2);
        assert_eq!(config.upstreams[1].peer.as_deref(), Some("cluster-02"));
        assert_eq!(config.protocol, Protocol::Tcp);
        assert_eq!(config.workers, Some(1));
        assert_eq!(config.drain_timeout, Duration::from_secs(2));
        assert!(config.log_json);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["-protocol", "udp"]).is_err());
        assert!(parse(&["-upstream", "backend"]).is_err());
        assert!(parse(&["-drain-timeout", "soon"]).is_err());
        let err = parse(&["-service", "web"])
            .unwrap()
            .into_config()
            .unwrap_err();
        assert!(err.0.contains("--local-app"), "{err}");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.json");
        std::fs::write(
            &path,
            r#"{"service": "web", "local_app": "127.0.0.1:8080", "admin_bind": "127.0.0.1:2222",
                "upstreams": [{"service": "db", "local_port": 5432}], "drain_timeout": "7s"}"#,
        )
        .unwrap();
        let config = parse(&[
            "-config-file",
            path.to_str().unwrap(),
            "-admin-bind",
            "127.0.0.1:3333",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(config.admin_bind.port(), 3333);
        assert_eq!(config.drain_timeout, Duration::from_secs(7));
        assert_eq!(config.upstreams[0].label(), "db");
        let config = parse(&[
            "-config-file",
            path.to_str().unwrap(),
            "-upstream",
            "cache:6379",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(config.upstreams.len(), 1);
        assert_eq!(config.upstreams[0].label(), "cache");
    }

    #[test]
    fn sidecar_for_defers_to_the_registration() {
        let launch = parse(&["-sidecar-for", "web-1", "-local-app", "127.0.0.1:9000"])
            .unwrap()
            .into_launch()
            .unwrap();
        let Launch::FromRegistration(from) = launch else {
            panic!("expected a lookup");
        };
        assert_eq!(from.lookup, Lookup::SidecarFor("web-1".into()));
        assert_eq!(
            from.given.local_app,
            Some("127.0.0.1:9000".parse().unwrap())
        );
        let launch = parse(&["-proxy-id", "web-proxy"])
            .unwrap()
            .into_launch()
            .unwrap();
        assert!(matches!(
            launch,
            Launch::FromRegistration(FromRegistration { lookup: Lookup::ProxyId(ref id), .. }) if id == "web-proxy"
        ));
        // Both lookups at once are refused by the parser.
        assert!(parse(&["-proxy-id", "a", "-sidecar-for", "b"]).is_err());
        let err = parse(&["-sidecar-for", " "])
            .unwrap()
            .into_launch()
            .unwrap_err();
        assert!(err.0.contains("non-empty"), "{err}");
        let err = parse(&["-sidecar-for", "web", "-service-id", "web-1"])
            .unwrap()
            .into_launch()
            .unwrap_err();
        assert!(err.0.starts_with("--service-id and --sidecar-for"), "{err}");

        // The config file may name it too; a service there conflicts.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.hcl");
        std::fs::write(
            &path,
            "sidecar_for = \"web\"\nworkers = 2\nlog_json = true\n",
        )
        .unwrap();
        let launch = parse(&["-config-file", path.to_str().unwrap()])
            .unwrap()
            .into_launch()
            .unwrap();
        assert_eq!((launch.workers(), launch.log_json()), (Some(2), true));
        assert!(matches!(launch, Launch::FromRegistration(_)));
        std::fs::write(&path, "sidecar_for = \"web\"\nservice = \"web\"\n").unwrap();
        let err = parse(&["-config-file", path.to_str().unwrap()])
            .unwrap()
            .into_launch()
            .unwrap_err();
        assert!(err.0.starts_with("--service and --sidecar-for"), "{err}");
    }

    #[test]
    fn limits_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.hcl");
        std::fs::write(
            &path,
            "service = \"web\"\nlocal_app = \"127.0.0.1:8080\"\nmax_conns = 50\nheader_read_timeout = \"5s\"\nadmin_max_conns = 8\n",
        )
        .unwrap();
        let config = parse(&[
            "-config-file",
            path.to_str().unwrap(),
            "-idle-timeout",
            "2m",
        ])
        .unwrap()
        .into_config()
        .unwrap();
        assert_eq!(config.limits.max_conns, 50);
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(config.admin_max_conns, 8);
        assert_eq!(config.admin_limits().max_conns, 8);
        let bad = parse(&[
            "-service",
            "web",
            "-local-app",
            "127.0.0.1:1",
            "-max-conns",
            "0",
        ])
        .unwrap()
        .into_config()
        .unwrap_err();
        assert!(bad.0.contains("connection cap"), "{bad}");
    }
}
