//! Read-only commands: `catalog services`, `members`, `info`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::ApiArgs;

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// List the services in the catalog.
    Services(CatalogServicesArgs),
}

#[derive(Args)]
pub struct CatalogServicesArgs {
    /// Show each service's tags too.
    #[arg(long)]
    tags: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct MembersArgs {
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn catalog(command: CatalogCommand) -> anyhow::Result<ExitCode> {
    let CatalogCommand::Services(args) = command;
    let (services, _): (BTreeMap<String, Vec<String>>, _) = args
        .api
        .client()?
        .get_json("/v1/catalog/services")
        .await
        .context("Error listing services")?;
    let width = services.keys().map(String::len).max().unwrap_or(0);
    for (name, tags) in &services {
        if args.tags {
            println!("{name:<width$}  {}", tags.join(","));
        } else {
            println!("{name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub async fn members(args: MembersArgs) -> anyhow::Result<ExitCode> {
    let (members, _): (Vec<Value>, _) = args
        .api
        .client()?
        .get_json("/v1/agent/members")
        .await
        .context("Error retrieving members")?;
    let rows: Vec<[String; 6]> = members
        .iter()
        .map(|m| {
            [
                text(m, "/Name"),
                format!("{}:{}", text(m, "/Addr"), text(m, "/Port")),
                // Serf's member states, as Consul prints them.
                match m.get("Status").and_then(Value::as_u64) {
                    Some(1) => "alive",
                    Some(2) => "leaving",
                    Some(3) => "left",
                    Some(4) => "failed",
                    _ => "none",
                }
                .to_owned(),
                text(m, "/Tags/role"),
                text(m, "/Tags/build"),
                text(m, "/Tags/dc"),
            ]
        })
        .collect();
    print_table(&["Node", "Address", "Status", "Type", "Build", "DC"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub async fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let (me, _): (Value, _) = args
        .api
        .client()?
        .get_json("/v1/agent/self")
        .await
        .context("Error querying agent")?;
    println!("agent:");
    for (key, pointer) in [
        ("cluster", "/Isthmus/ClusterName"),
        ("cluster_id", "/Isthmus/ClusterID"),
        ("trust_domain", "/Isthmus/TrustDomain"),
        ("node", "/Config/NodeName"),
        ("node_id", "/Config/NodeID"),
        ("version", "/Config/Version"),
        ("http_addr", "/Isthmus/HTTPAddr"),
        (
            "default_intention_policy",
            "/Isthmus/DefaultIntentionPolicy",
        ),
    ] {
        println!("\t{key} = {}", text(&me, pointer));
    }
    println!("store:");
    println!("\tindex = {}", text(&me, "/Isthmus/Index"));
    let data_dir = text(&me, "/Isthmus/DataDir");
    println!(
        "\tdata_dir = {}",
        if data_dir.is_empty() {
            "(in memory)".to_owned()
        } else {
            data_dir
        }
    );
    Ok(ExitCode::SUCCESS)
}
