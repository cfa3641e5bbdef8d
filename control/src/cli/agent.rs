//! `isthmus agent`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::agent::config::{AgentConfig, FileConfig, IntentionPolicy};

#[derive(Args)]
pub struct AgentArgs {
    /// Development mode: state in memory (unless --data-dir is given), sensible defaults.
    #[arg(long)]
    dev: bool,
    /// HCL or JSON file with agent settings; flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Directory for the agent's durable state (required without --dev).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// This cluster's name, used in SPIFFE IDs and peerings [default: dc1].
    #[arg(long, alias = "datacenter", value_name = "NAME")]
    cluster_name: Option<String>,
    /// Name of this node in the catalog [default: the host name].
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// Address other nodes reach this one at, shown in the catalog [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    advertise_addr: Option<IpAddr>,
    /// Where the HTTP API listens [default: 127.0.0.1:8500].
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<SocketAddr>,
    /// What intentions decide for callers that match no intention [default: deny].
    #[arg(long, value_enum, value_name = "POLICY")]
    default_intention_policy: Option<IntentionPolicy>,
    /// Lifetime of service leaf certificates, as a Go duration [default: 72h].
    #[arg(long, value_name = "DURATION")]
    leaf_cert_ttl: Option<String>,
    /// Heartbeat interval on peering streams; a peer silent for three is FAILING [default: 5s].
    #[arg(long, value_name = "DURATION")]
    peering_heartbeat: Option<String>,
    /// How long a generated peering token can be used [default: 24h].
    #[arg(long, value_name = "DURATION")]
    peering_token_ttl: Option<String>,
    /// With --dev: where the in-process mesh gateway listens for peers (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    gateway_bind: SocketAddr,
    /// With --dev: the address peers reach the in-process gateway at (put into
    /// peering tokens); required when --gateway-bind is a wildcard address.
    #[arg(long, value_name = "HOST:PORT")]
    gateway_advertise: Option<String>,
    /// With --dev: the in-process gateway's admin listener (/metrics, /ready).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:19100")]
    gateway_admin_bind: SocketAddr,
    /// With --dev: do not run a mesh gateway in-process.
    #[arg(long)]
    no_gateway: bool,
    /// Log as JSON lines instead of text (level from RUST_LOG, default info).
    #[arg(long)]
    log_json: bool,
}

impl AgentArgs {
    fn into_config(self) -> Result<AgentConfig, String> {
        let mut config = AgentConfig::dev();
        if let Some(path) = &self.config_file {
            FileConfig::load(path)?.apply(&mut config)?;
        }
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
                isthmus_api::duration::parse(&v).map_err(|e| format!("--leaf-cert-ttl: {e}"))?;
        }
        if let Some(v) = self.peering_heartbeat {
            config.peering_heartbeat = isthmus_api::duration::parse(&v)
                .map_err(|e| format!("--peering-heartbeat: {e}"))?;
        }
        if let Some(v) = self.peering_token_ttl {
            config.peering_token_ttl = isthmus_api::duration::parse(&v)
                .map_err(|e| format!("--peering-token-ttl: {e}"))?;
        }
        if !self.dev && config.data_dir.is_none() {
            return Err(
                "--data-dir (or data_dir in the config file) is required unless --dev is given"
                    .into(),
            );
        }
        Ok(config)
    }
}

pub fn run(args: AgentArgs) -> ExitCode {
    let json = args.log_json;
    // Under --dev the agent also runs a mesh gateway, so one command gives
    // a cluster that can peer.
    let dev_gateway = (args.dev && !args.no_gateway).then(|| {
        (
            args.gateway_bind,
            args.gateway_admin_bind,
            args.gateway_advertise.clone(),
        )
    });
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    isthmus_api::process::init_logging(json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut agent = match crate::agent::start(config).await {
            Ok(agent) => agent,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let gateway = match dev_gateway {
            Some((bind, admin_bind, advertise)) => {
                let config = isthmus_gateway::GatewayConfig {
                    bind,
                    admin_bind,
                    advertise,
                    ..isthmus_gateway::GatewayConfig::loopback(format!("http://{}", agent.http_addr()))
                };
                match isthmus_gateway::start(config).await {
                    Ok(gateway) => Some(gateway),
                    Err(e) => {
                        eprintln!("Error: starting the in-process mesh gateway: {e} (see --gateway-bind, --gateway-advertise, or --no-gateway)");
                        let _ = agent.shutdown().await;
                        return ExitCode::FAILURE;
                    }
                }
            }
            None => None,
        };
        // Printed for people and scripts alike: the line says where to talk to us.
        println!(
            "isthmus agent running: cluster={} trust_domain={} http=http://{}{}",
            agent.state.cluster.name,
            agent.state.cluster.trust_domain,
            agent.http_addr(),
            gateway
                .as_ref()
                .map(|g| format!(" gateway={} gateway_admin=http://{}", g.advertise_addr(), g.admin_addr()))
                .unwrap_or_default()
        );
        let code = run_until_stopped(&mut agent).await;
        // Peering streams pass through the in-process gateway: end them
        // first so its drain does not wait them out.
        agent.state.peering.stop_all();
        if let Some(gateway) = gateway {
            if let Err(e) = gateway.shutdown().await {
                tracing::warn!(error = %e, "gateway shutdown");
            }
        }
        if code == ExitCode::SUCCESS {
            match agent.shutdown().await {
                Ok(()) => tracing::info!("agent stopped"),
                Err(e) => {
                    tracing::error!(error = %e, "shutdown failed");
                    return ExitCode::FAILURE;
                }
            }
        }
        code
    })
}

/// Waits for a signal (then the caller shuts down) or a fatal server error.
async fn run_until_stopped(agent: &mut crate::agent::RunningAgent) -> ExitCode {
    tokio::select! {
        // The server only ends by itself on a fatal error; there is
        // nothing left to shut down gracefully then.
        result = agent.wait() => {
            match result {
                Err(e) => tracing::error!(error = %e, "HTTP server failed"),
                Ok(()) => tracing::error!("HTTP server stopped unexpectedly"),
            }
            ExitCode::FAILURE
        }
        signal = isthmus_api::process::shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            ExitCode::SUCCESS
        }
    }
}
