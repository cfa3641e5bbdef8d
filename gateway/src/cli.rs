//! The `isthmus-gateway` command line. Go-style single-dash long flags
//! (`-bind x`, `-bind=x`) are accepted alongside `--bind x`, as in the
//! `isthmus` CLI.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use isthmus_dataplane::config::flag_duration as parse_duration;

use crate::config::{ConfigError, FileConfig, GatewayConfig, Layer};

#[derive(Debug, Parser)]
#[command(
    name = "isthmus-gateway",
    version,
    about = "isthmus mesh gateway: terminates peering connections from other clusters and passes \
        their service traffic through by SNI",
    long_about = "isthmus mesh gateway: terminates peering connections from other clusters, \
        authenticates them by client certificate and forwards what the peering allows to the \
        local isthmus agent; passes peers' service traffic for exported services through to the \
        services' sidecars by SNI, without terminating its TLS. Flags may be written Consul-style (-bind x) or GNU-style (--bind x); \
        flags win over the config file."
)]
pub struct Cli {
    /// The isthmus agent's HTTP API, http://host:port or https://host:port (see --ca-file). [default: http://127.0.0.1:8500]
    #[arg(long, value_name = "URL")]
    pub control: Option<String>,
    /// Address of the TLS listener (peering and service traffic); port 0 picks one. [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// host:port peers dial, put into peering tokens. Defaults to the bound
    /// address; required when --bind is a wildcard.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Address of the admin listener (/metrics, /ready, /live). [default: 127.0.0.1:19100]
    #[arg(long, value_name = "ADDR")]
    pub admin_bind: Option<SocketAddr>,
    /// An HCL or JSON file with the keys control, bind, advertise, admin_bind, drain_timeout,
    /// exchange_max_body_bytes, exchange_body_timeout, exchange_max_per_connection,
    /// exchange_max_concurrent, max_conns, header_read_timeout, idle_timeout,
    /// passthrough_idle_timeout, admin_max_conns.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// How long in-flight requests may finish after SIGTERM (Go duration). [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<std::time::Duration>,
    /// Largest peering exchange body accepted, in bytes (413 beyond). [default: 16384]
    #[arg(long, value_name = "BYTES")]
    pub exchange_max_body_bytes: Option<usize>,
    /// How long a peering exchange's body may take to arrive (Go duration; 408 after). [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub exchange_body_timeout: Option<std::time::Duration>,
    /// Concurrent peering exchanges per TLS connection (429 beyond). [default: 4]
    #[arg(long, value_name = "N")]
    pub exchange_max_per_connection: Option<usize>,
    /// Concurrent peering exchanges at this gateway (503 beyond). [default: 64]
    #[arg(long, value_name = "N")]
    pub exchange_max_concurrent: Option<usize>,
    /// Connections the TLS listener holds at once; more are closed at accept. [default: 8192]
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Closes a peering connection that has not sent a request's headers this long after its TLS handshake. [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: Option<std::time::Duration>,
    /// Closes a peering connection with no request or HTTP/2 stream open for this long. [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,
    /// Closes a passed-through service connection with no bytes either way for this long. [default: 10m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub passthrough_idle_timeout: Option<std::time::Duration>,
    /// Connections the admin listener holds at once. [default: 64]
    #[arg(long, value_name = "N")]
    pub admin_max_conns: Option<usize>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// The ACL token, its file and the TLS files for the agent's API
    /// (-token, -token-file, -ca-file, -client-cert, -client-key; or
    /// ISTHMUS_HTTP_TOKEN/CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, ...).
    #[command(flatten)]
    pub agent: isthmus_runtime::client::ClientFlags,
}

impl Cli {
    /// Parses the process arguments, Go-style flags included.
    pub fn parse_args() -> Cli {
        Cli::parse_from(normalize_go_flags(std::env::args_os()))
    }

    /// Defaults, then the config file, then the flags.
    pub fn into_config(self) -> Result<GatewayConfig, ConfigError> {
        let agent_credentials = self
            .agent
            .credentials()
            .map_err(|e| ConfigError(e.to_string()))?;
        let file = match &self.config_file {
            Some(path) => FileConfig::load(path)?.into_layer()?,
            None => Layer::default(),
        };
        let flags = Layer {
            control: self.control,
            bind: self.bind,
            advertise: self.advertise,
            admin_bind: self.admin_bind,
            drain_timeout: self.drain_timeout,
            exchange_max_body_bytes: self.exchange_max_body_bytes,
            exchange_body_timeout: self.exchange_body_timeout,
            exchange_max_per_connection: self.exchange_max_per_connection,
            exchange_max_concurrent: self.exchange_max_concurrent,
            max_conns: self.max_conns,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            passthrough_idle_timeout: self.passthrough_idle_timeout,
            admin_max_conns: self.admin_max_conns,
        };
        let mut config = flags.over(file).finish()?;
        config.agent_credentials = agent_credentials;
        Ok(config)
    }
}

/// Rewrites `-name` / `-name=value` into `--name` forms, only for names
/// that really are long flags of this command, so values such as `-` or a
/// negative number are left alone.
pub fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    isthmus_runtime::process::normalize_go_flags(&Cli::command(), args)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let args = std::iter::once("isthmus-gateway")
            .chain(args.iter().copied())
            .map(OsString::from);
        Cli::try_parse_from(normalize_go_flags(args)).unwrap()
    }

    #[test]
    fn go_style_and_gnu_style_flags() {
        let cli = parse(&[
            "-control",
            "http://127.0.0.1:9500",
            "-bind=127.0.0.1:0",
            "--advertise",
            "gw:8443",
            "-admin-bind",
            "127.0.0.1:0",
            "-drain-timeout",
            "2s",
            "-log-json",
        ]);
        assert_eq!(cli.control.as_deref(), Some("http://127.0.0.1:9500"));
        assert_eq!(cli.bind, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(cli.drain_timeout, Some(Duration::from_secs(2)));
        assert!(cli.log_json);
        let config = cli.into_config().unwrap();
        assert_eq!(config.advertise.as_deref(), Some("gw:8443"));
        assert_eq!(config.drain_timeout, Duration::from_secs(2));
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.json");
        std::fs::write(
            &path,
            r#"{"bind": "127.0.0.1:1111", "admin_bind": "127.0.0.1:2222", "drain_timeout": "7s"}"#,
        )
        .unwrap();
        let config = parse(&[
            "-config-file",
            path.to_str().unwrap(),
            "-bind",
            "127.0.0.1:3333",
        ])
        .into_config()
        .unwrap();
        assert_eq!(config.bind.port(), 3333);
        assert_eq!(config.admin_bind.port(), 2222);
        assert_eq!(config.drain_timeout, Duration::from_secs(7));
        assert_eq!(config.control, crate::config::DEFAULT_CONTROL);
    }

    #[test]
    fn exchange_limits_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.hcl");
        std::fs::write(
            &path,
            "exchange_max_body_bytes = 4096\nexchange_body_timeout = \"2s\"\nexchange_max_per_connection = 2\nexchange_max_concurrent = 8\n",
        )
        .unwrap();
        let config = parse(&["-config-file", path.to_str().unwrap()])
            .into_config()
            .unwrap();
        assert_eq!(config.exchange.max_body_bytes, 4096);
        assert_eq!(config.exchange.body_timeout, Duration::from_secs(2));
        assert_eq!(config.exchange.max_per_connection, 2);
        assert_eq!(config.exchange.max_concurrent, 8);
        let config = parse(&[
            "-config-file",
            path.to_str().unwrap(),
            "-exchange-max-body-bytes",
            "1000",
            "--exchange-body-timeout=500ms",
            "-exchange-max-per-connection=1",
            "--exchange-max-concurrent",
            "3",
        ])
        .into_config()
        .unwrap();
        assert_eq!(config.exchange.max_body_bytes, 1000);
        assert_eq!(config.exchange.body_timeout, Duration::from_millis(500));
        assert_eq!(config.exchange.max_per_connection, 1);
        assert_eq!(config.exchange.max_concurrent, 3);
        let defaults = GatewayConfig::default().exchange;
        assert_eq!(
            (
                defaults.max_body_bytes,
                defaults.body_timeout,
                defaults.max_per_connection,
                defaults.max_concurrent
            ),
            (16384, Duration::from_secs(5), 4, 64)
        );
    }

    #[test]
    fn unknown_single_dash_words_are_left_alone() {
        let args = ["isthmus-gateway", "-x", "-bindx", "--", "-bind"].map(OsString::from);
        let out = normalize_go_flags(args.clone());
        assert_eq!(out, args.to_vec());
    }
}
