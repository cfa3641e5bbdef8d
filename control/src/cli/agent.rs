//! `isthmus agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::dev_gateway::{DevGatewaySettings, DevGatewayStarter};
use crate::config::{AgentConfig, Settings, Source};

#[derive(Args)]
pub struct AgentArgs {
    /// Development mode: state in memory (unless --data-dir is given), sensible defaults.
    #[arg(long)]
    dev: bool,
    /// HCL or JSON file with agent settings; flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    config_file: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
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

/// Where the agent's configuration comes from, kept so that
/// `PUT /v1/agent/reload` can build it again the same way.
#[derive(Clone)]
struct ConfigSources {
    dev: bool,
    config_file: Option<PathBuf>,
    flags: Settings,
}

impl ConfigSources {
    /// The defaults, then the file, then the flags.
    fn load(&self) -> Result<AgentConfig, String> {
        let mut config = AgentConfig::dev();
        if let Some(path) = &self.config_file {
            Settings::load(path)?.apply(&mut config, Source::File)?;
        }
        self.flags.clone().apply(&mut config, Source::Flags)?;
        if !self.dev && config.data_dir.is_none() && config.etcd.is_none() {
            return Err(
                "--data-dir (or data_dir in the config file) is required unless --dev or --store etcd is given"
                    .into(),
            );
        }
        Ok(config)
    }
}

impl AgentArgs {
    fn sources(&self) -> ConfigSources {
        ConfigSources {
            dev: self.dev,
            config_file: self.config_file.clone(),
            flags: self.settings.clone(),
        }
    }
}

pub fn run(args: AgentArgs, start_gateway: Option<DevGatewayStarter>) -> ExitCode {
    let json = args.log_json;
    // Under --dev the agent also runs a mesh gateway (when the binary was
    // composed with one), so one command gives a cluster that can peer.
    let dev_gateway = (args.dev && !args.no_gateway)
        .then_some(())
        .and(start_gateway)
        .map(|start| {
            (
                args.gateway_bind,
                args.gateway_admin_bind,
                args.gateway_advertise.clone(),
                start,
            )
        });
    let sources = args.sources();
    let config = match sources.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    isthmus_runtime::process::init_logging(json);
    isthmus_runtime::process::raise_fd_limit();
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
        // Listen for SIGTERM/SIGINT from the start: polled once here, the
        // future has installed its handlers, so a signal that arrives
        // before we wait for it (say, right after the line below) is kept
        // for run_until_stopped instead of killing the process outright.
        let signal = isthmus_runtime::process::shutdown_signal();
        tokio::pin!(signal);
        tokio::select! {
            biased;
            early = &mut signal => {
                tracing::info!(signal = early, "stopped before starting");
                return ExitCode::SUCCESS;
            }
            _ = std::future::ready(()) => {}
        }
        let mut agent = match crate::agent::start(config).await {
            Ok(agent) => agent,
            Err(e) => {
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
        };
        agent
            .state
            .lifecycle
            .set_loader(std::sync::Arc::new(move || sources.load()));
        let gateway = match dev_gateway {
            Some((bind, admin_bind, advertise, start)) => {
                let token = match gateway_token(&agent.state).await {
                    Ok(token) => token,
                    Err(e) => {
                        eprintln!("Error: minting the in-process gateway's ACL token: {e}");
                        let _ = agent.shutdown().await;
                        return ExitCode::FAILURE;
                    }
                };
                let settings = DevGatewaySettings {
                    bind,
                    admin_bind,
                    advertise,
                    agent_url: format!("http://{}", agent.http_addr()),
                    token,
                };
                match start(settings).await {
                    Ok(gateway) => {
                        agent.state.set_in_process_gateway(gateway.service_id());
                        Some(gateway)
                    }
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
            "isthmus agent running: cluster={} trust_domain={} http=http://{}{}{}{}",
            agent.state.cluster.name,
            agent.state.cluster.trust_domain,
            agent.http_addr(),
            agent
                .https_addr()
                .map(|addr| format!(" https=https://{addr}"))
                .unwrap_or_default(),
            agent
                .dns_addr()
                .map(|addr| format!(" dns={addr}"))
                .unwrap_or_default(),
            gateway
                .as_ref()
                .map(|g| format!(" gateway={} gateway_admin=http://{}", g.advertise_addr(), g.admin_addr()))
                .unwrap_or_default()
        );
        let code = run_until_stopped(&mut agent, signal).await;
        // Peering streams pass through the in-process gateway: end them
        // first so its drain does not wait them out.
        agent.state.peering.manager.stop_all();
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
async fn run_until_stopped(
    agent: &mut crate::agent::RunningAgent,
    signal: std::pin::Pin<&mut impl std::future::Future<Output = &'static str>>,
) -> ExitCode {
    let state = agent.state.clone();
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
        signal = signal => {
            tracing::info!(signal, "shutting down");
            ExitCode::SUCCESS
        }
        () = state.lifecycle.left() => {
            tracing::info!("left the cluster (PUT /v1/agent/leave); shutting down");
            ExitCode::SUCCESS
        }
    }
}

/// With ACLs on, `--dev`'s in-process gateway gets a token of its own: the
/// `mesh-gateway` service identity, as an operator would give a separate
/// gateway (its endpoints refuse anyone else).
async fn gateway_token(state: &crate::http::AgentState) -> Result<Option<String>, String> {
    if !state.acl.enabled() {
        return Ok(None);
    }
    let ctx = crate::acl::tokens::WriteContext {
        now: time::OffsetDateTime::now_utc(),
        min_expiration_ttl: state.acl.settings().min_expiration_ttl,
    };
    let token = state
        .store
        .write(move |txn| {
            crate::acl::tokens::create_for_service(
                txn,
                isthmus_api::gateway::SERVICE_NAME,
                "in-process mesh gateway of agent --dev",
                ctx,
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some(token.secret_id))
}
