//! `isthmus upstream explain`: where a sidecar's calls to an upstream go
//! now, after the service's resolved chain, and why each target was chosen
//! or skipped. Reads the view sidecars watch.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
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
    #[arg(long)]
    peer: Option<String>,
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

async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let path = agent_path_upstream(&args.service, args.peer.as_deref());
    let (view, _): (UpstreamView, _) = args
        .api
        .client()?
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
