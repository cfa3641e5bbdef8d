//! `isthmus peering gateways`: each peer's mesh gateway as this cluster's
//! leader last probed it, Linkerd-style (`PEER  ALIVE  SERVICES  LATENCY`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use isthmus_api::peering_gateways::{PeerGateway, PATH};
use serde_json::Value;

use super::output;
use super::peering::Format;
use super::ApiArgs;

#[derive(Args)]
pub struct GatewaysArgs {
    /// Output format (json: the agent's answer, with the last probe's time,
    /// error and the addresses probed).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(args: GatewaysArgs) -> anyhow::Result<ExitCode> {
    let (raw, _): (Vec<Value>, _) = args
        .api
        .client()?
        .get_json(PATH)
        .await
        .context("Error reading the peer gateway probes")?;
    match args.format {
        Format::Json => print!("{}", output::json(&raw)?),
        Format::Pretty => {
            let gateways = raw
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<Vec<PeerGateway>, _>>()
                .context("decoding the agent's peer gateways")?;
            print!("{}", format_gateways(&gateways));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The table: one row per peering, sorted by name; `-` for what is not
/// known (never probed, or no answer to give a latency).
pub fn format_gateways(gateways: &[PeerGateway]) -> String {
    if gateways.is_empty() {
        return "There are no peering connections.\n".into();
    }
    let mut sorted: Vec<&PeerGateway> = gateways.iter().collect();
    sorted.sort_by(|a, b| a.peer.cmp(&b.peer));
    let rows: Vec<Vec<String>> = sorted
        .iter()
        .map(|g| {
            vec![
                g.peer.clone(),
                g.alive_text().to_owned(),
                g.services.to_string(),
                g.latency_text(),
            ]
        })
        .collect();
    output::columns(&["PEER", "ALIVE", "SERVICES", "LATENCY"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_peer_with_dashes_for_the_unknown() {
        let gateways = vec![
            PeerGateway {
                peer: "cluster-03".into(),
                ..PeerGateway::default()
            },
            PeerGateway {
                peer: "cluster-01".into(),
                alive: Some(true),
                services: 2,
                latency_ms: Some(12.2),
                ..PeerGateway::default()
            },
            PeerGateway {
                peer: "cluster-02".into(),
                alive: Some(false),
                latency_ms: Some(3.0),
                ..PeerGateway::default()
            },
        ];
        let text = format_gateways(&gateways);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            vec![
                vec!["PEER", "ALIVE", "SERVICES", "LATENCY"],
                vec!["cluster-01", "true", "2", "12ms"],
                vec!["cluster-02", "false", "0", "-"],
                vec!["cluster-03", "-", "0", "-"],
            ]
        );
        assert_eq!(format_gateways(&[]), "There are no peering connections.\n");
    }
}
