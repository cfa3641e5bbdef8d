//! The `isthmus` command line.
//!
//! Commands copied from Consul's documentation work unchanged: single-dash
//! long flags (`-name x`, `-kind=y`) are accepted alongside `--name`.

mod acl;
mod acl_format;
mod agent;
mod auth;
mod config;
pub mod dev_gateway;
mod identity;
mod intention;
mod link;
mod lxd;
mod output;
mod peering;
mod peering_api;
mod peering_gateways;
mod query;
mod services;
mod upstream;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use dev_gateway::DevGatewayStarter;
use isthmus_runtime::client::{Client, ClientFlags};

#[derive(Parser)]
#[command(
    name = "isthmus",
    version,
    about = "isthmus: a service mesh for services that live in more than one cluster",
    long_about = "isthmus: a service mesh for services that live in more than one cluster.\n\n\
        `isthmus agent` runs a cluster's control plane; the other commands talk to an agent's \
        HTTP API (-http-addr, ISTHMUS_HTTP_ADDR or CONSUL_HTTP_ADDR, default http://127.0.0.1:8500; \
        https://... with -ca-file or CONSUL_CACERT) with an ACL token (-token, -token-file, \
        ISTHMUS_HTTP_TOKEN, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE). \
        Flags may be written Consul-style (-name x) or GNU-style (--name x)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up; the agent's many flags make its variant large.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the control plane: catalog, health checks, CA, config entries, HTTP API.
    Agent(Box<agent::AgentArgs>),
    /// Run two peered clusters on loopback and walk through peering them,
    /// exporting a service, intentions and a call across the peering.
    Demo(crate::demo::DemoArgs),
    /// Write, read, list and delete config entries (exported-services, service-intentions).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Register and deregister services on the agent.
    #[command(subcommand)]
    Services(services::ServicesCommand),
    /// Query the catalog.
    #[command(subcommand)]
    Catalog(query::CatalogCommand),
    /// Create, read, list and delete intentions; check what they allow.
    #[command(subcommand)]
    Intention(intention::IntentionCommand),
    /// List the members of the cluster.
    Members(query::MembersArgs),
    /// Show the agent's cluster name, trust domain, index and settings.
    Info(query::InfoArgs),
    /// Peer with other clusters, Consul-style: generate-token, establish, list, read, delete.
    #[command(subcommand, alias = "peerings")]
    Peering(peering::PeeringCommand),
    /// Link with other clusters, LXD-style (`cluster link create|list|show|delete`).
    #[command(subcommand)]
    Cluster(link::ClusterCommand),
    /// Manage who linked clusters are and what they may do: auth groups and identities.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Access control, as Consul's: bootstrap, tokens and policies.
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Explain where a sidecar's calls to an upstream go: its resolved chain.
    #[command(subcommand)]
    Upstream(upstream::UpstreamCommand),
}

/// How client commands reach the agent: its address, the ACL token and
/// the TLS files (flags, then Consul's environment variables).
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Address of the agent's HTTP API, http://host:port or https://host:port
    /// [env: ISTHMUS_HTTP_ADDR, CONSUL_HTTP_ADDR] [default: http://127.0.0.1:8500].
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    #[command(flatten)]
    client: ClientFlags,
}

impl ApiArgs {
    /// The agent's address, the flag over the environment.
    pub fn addr(&self) -> String {
        isthmus_runtime::client::settings::http_addr(self.http_addr.as_deref(), &|name| {
            std::env::var(name).ok()
        })
    }

    /// A client of the agent with these settings: every request carries the
    /// token. The ACL commands build theirs here too.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::with_credentials(
            &self.addr(),
            &self.client.credentials()?,
        )?)
    }

    /// Settings put together by a command that cannot flatten these (its
    /// own `-token` means something else).
    fn from_parts(http_addr: Option<String>, client: ClientFlags) -> ApiArgs {
        ApiArgs { http_addr, client }
    }
}

/// Rewrites Consul-style `-name` flags of this CLI into `--name`.
pub fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    isthmus_runtime::process::normalize_go_flags(&Cli::command(), args)
}

/// The `isthmus` command. `start_gateway` runs the in-process mesh gateway
/// of `agent --dev`; `None` runs dev agents without one.
pub fn main(start_gateway: Option<DevGatewayStarter>) -> ExitCode {
    let cli = Cli::parse_from(normalize_go_flags(std::env::args_os()));
    match cli.command {
        Command::Agent(args) => agent::run(*args, start_gateway),
        Command::Demo(args) => crate::demo::run(args),
        other => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("Error: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async move {
                match other {
                    Command::Config(c) => config::run(c).await,
                    Command::Services(c) => services::run(c).await,
                    Command::Catalog(c) => query::catalog(c).await,
                    Command::Intention(c) => intention::run(c).await,
                    Command::Members(a) => query::members(a).await,
                    Command::Info(a) => query::info(a).await,
                    Command::Peering(c) => peering::run(c).await,
                    Command::Cluster(c) => link::run(c).await,
                    Command::Auth(c) => auth::run(c).await,
                    Command::Acl(c) => acl::run(c).await,
                    Command::Upstream(c) => upstream::run(c).await,
                    Command::Agent(_) | Command::Demo(_) => unreachable!("handled above"),
                }
            });
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_go_flags(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(
            norm(&["isthmus", "config", "read", "-kind", "x", "-name=y"]),
            ["isthmus", "config", "read", "--kind", "x", "--name=y"]
        );
    }

    #[test]
    fn values_and_unknown_dashes_are_left_alone() {
        assert_eq!(
            norm(&["isthmus", "config", "write", "-"]),
            ["isthmus", "config", "write", "-"]
        );
        assert_eq!(norm(&["isthmus", "x", "-zzz"]), ["isthmus", "x", "-zzz"]);
        assert_eq!(
            norm(&["isthmus", "--", "-kind"]),
            ["isthmus", "--", "-kind"]
        );
    }

    #[test]
    fn go_style_peering_flags_become_long_flags() {
        assert_eq!(
            norm(&[
                "isthmus",
                "peering",
                "generate-token",
                "-name",
                "cluster-02"
            ]),
            [
                "isthmus",
                "peering",
                "generate-token",
                "--name",
                "cluster-02"
            ]
        );
        assert_eq!(
            norm(&[
                "isthmus",
                "peering",
                "establish",
                "-name",
                "cluster-01",
                "-peering-token",
                "token-from-generate",
                "-meta=env=prod",
            ]),
            [
                "isthmus",
                "peering",
                "establish",
                "--name",
                "cluster-01",
                "--peering-token",
                "token-from-generate",
                "--meta=env=prod",
            ]
        );
        assert_eq!(
            norm(&[
                "isthmus",
                "cluster",
                "link",
                "create",
                "b",
                "-auth-group",
                "g",
                "-q"
            ]),
            [
                "isthmus",
                "cluster",
                "link",
                "create",
                "b",
                "--auth-group",
                "g",
                "-q"
            ]
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        let command = Cli::command();
        command.clone().debug_assert();
        // Every command and every argument explains itself in --help.
        fn check(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            assert!(command.get_about().is_some(), "{path} has no help text");
            for arg in command.get_arguments() {
                assert!(
                    arg.get_help().is_some() || arg.is_hide_set(),
                    "{path} --{} has no help text",
                    arg.get_id()
                );
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    check(sub, &path);
                }
            }
        }
        for sub in command.get_subcommands() {
            if ["peering", "cluster", "auth", "acl", "upstream"].contains(&sub.get_name()) {
                check(sub, "isthmus");
            }
        }
    }
}
