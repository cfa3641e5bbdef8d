//! `isthmus upstream explain`: where a sidecar's calls to an upstream go
//! now, after the service's resolved chain, and why each target was chosen
//! or skipped. Reads the view sidecars watch.

use std::process::ExitCode;

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use isthmus_api::catalog::{AgentService, Upstream, KIND_CONNECT_PROXY};
use isthmus_api::proxy::{agent_path_upstream, target_label, UpstreamView};

use super::ApiArgs;

#[derive(Subcommand)]
pub enum UpstreamCommand {
    /// Print an upstream's resolved chain: the chosen target and why each
    /// target (redirect, local instances, failover targets) was chosen or skipped.
    Explain(ExplainArgs),
}

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The upstream service, as a sidecar names it.
    service: String,
    /// The upstream is this peer's service (a fixed `service@peer` upstream).
    #[arg(long, conflicts_with = "sidecar_for")]
    peer: Option<String>,
    /// Explain the upstream as the sidecar proxy of this service ID has it
    /// registered (its `DestinationPeer` included), as `isthmus-proxy
    /// --sidecar-for` would run it.
    #[arg(long, value_name = "SERVICE_ID")]
    sidecar_for: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Pretty,
    Json,
}

pub async fn run(command: UpstreamCommand) -> anyhow::Result<ExitCode> {
    match command {
        UpstreamCommand::Explain(args) => explain(args).await,
    }
}

async fn explain(mut args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    if let Some(service_id) = &args.sidecar_for {
        let (services, _): (BTreeMap<String, AgentService>, _) = client
            .get_json("/v1/agent/services")
            .await
            .context("Error listing the agent's services")?;
        let upstream = registered_upstream(services.values(), service_id, &args.service)?;
        args.peer = upstream.destination_peer.clone().filter(|p| !p.is_empty());
    }
    let path = agent_path_upstream(&args.service, args.peer.as_deref());
    let (view, _): (UpstreamView, _) = client
        .get_json(&path)
        .await
        .with_context(|| format!("Error reading the upstream view of {}", args.service))?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Format::Pretty => {
            let upstream = target_label(&args.service, args.peer.as_deref());
            print!("{}", pretty(&upstream, &view));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The upstream `service` of the one sidecar proxy registered for
/// `service_id` (Consul's rule: the connect-proxy whose
/// `Proxy.DestinationServiceID` is `service_id`, ignoring case).
fn registered_upstream<'a>(
    services: impl IntoIterator<Item = &'a AgentService>,
    service_id: &str,
    service: &str,
) -> anyhow::Result<&'a Upstream> {
    let sidecars: Vec<&AgentService> = services
        .into_iter()
        .filter(|s| s.kind.as_deref() == Some(KIND_CONNECT_PROXY))
        .filter(|s| {
            s.proxy
                .as_deref()
                .is_some_and(|p| p.destination_service_id.eq_ignore_ascii_case(service_id))
        })
        .collect();
    let sidecar = match sidecars.as_slice() {
        [] => bail!("No sidecar proxy registered for service ID {service_id:?}"),
        [one] => *one,
        several => bail!(
            "More than one sidecar proxy registered for service ID {service_id:?}: {}",
            several
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let upstreams = sidecar.proxy.as_deref().map_or(&[][..], |p| &p.upstreams);
    upstreams
        .iter()
        .find(|u| u.destination_name == service)
        .ok_or_else(|| {
            anyhow!(
                "The sidecar proxy {} has no upstream {service:?} (it has: {})",
                sidecar.id,
                upstreams
                    .iter()
                    .map(|u| target_label(&u.destination_name, u.destination_peer.as_deref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The human-readable explanation of the upstream `upstream` (`service` or
/// `service@peer`, as the sidecar names it).
fn pretty(upstream: &str, view: &UpstreamView) -> String {
    let mut out = String::new();
    let chosen = view.chain.iter().any(|step| step.chosen);
    out.push_str(&format!("Upstream:  {upstream}\n"));
    if chosen {
        out.push_str(&format!("Target:    {}\n", view.target_label()));
        out.push_str(&format!("SNI:       {}\n", view.sni));
        out.push_str(&format!("Endpoints: {}\n", view.endpoints.join(", ")));
    } else {
        out.push_str("Target:    none\n");
        out.push_str(&format!("Reason:    {}\n", view.reason));
    }
    out.push_str("Chain:\n");
    let width = view
        .chain
        .iter()
        .map(|step| step.target.len())
        .max()
        .unwrap_or(0);
    for (position, step) in view.chain.iter().enumerate() {
        let verdict = if step.chosen { "chosen" } else { "skipped" };
        out.push_str(&format!(
            "  {}. {:width$}  {verdict:7}  {}\n",
            position + 1,
            step.target,
            step.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::proxy::ChainStep;

    #[test]
    fn pretty_shows_the_chosen_target_and_each_step() {
        let view = UpstreamView {
            service: "backend".into(),
            sni: "backend.default.default.cluster-02.external.td".into(),
            endpoints: vec!["127.0.0.1:8443".into()],
            target: "backend@cluster-02".into(),
            chain: vec![
                ChainStep {
                    target: "backend".into(),
                    chosen: false,
                    reason: "no healthy sidecar proxy".into(),
                },
                ChainStep {
                    target: "backend@cluster-02".into(),
                    chosen: true,
                    reason: "failover target 1".into(),
                },
            ],
            ..UpstreamView::default()
        };
        let text = pretty("backend", &view);
        assert!(text.starts_with("Upstream:  backend\n"), "{text}");
        assert!(text.contains("Target:    backend@cluster-02\n"), "{text}");
        assert!(
            text.contains("  1. backend             skipped  no healthy sidecar proxy\n"),
            "{text}"
        );
        assert!(
            text.contains("  2. backend@cluster-02  chosen   failover target 1\n"),
            "{text}"
        );
    }
}
