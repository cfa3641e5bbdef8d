//! `isthmus config write|read|list|delete`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http::Method;
use isthmus_api::config_entry;
use isthmus_runtime::client::encode;

use super::ApiArgs;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Write a config entry from an HCL or JSON file ("-" reads standard input).
    Write(WriteArgs),
    /// Print a config entry as JSON.
    Read(EntryArgs),
    /// List the names of the config entries of a kind.
    List(ListArgs),
    /// Delete a config entry.
    Delete(EntryArgs),
}

#[derive(Args)]
pub struct WriteArgs {
    /// The file to read, or "-" for standard input.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Only write if the entry's ModifyIndex equals -modify-index (0: only if it does not exist).
    #[arg(long)]
    cas: bool,
    #[arg(long, value_name = "INDEX", requires = "cas")]
    modify_index: Option<u64>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct EntryArgs {
    /// The entry's kind, such as service-resolver or exported-services.
    #[arg(long)]
    kind: Option<String>,
    /// The entry's name.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct ListArgs {
    /// The kind of entries to list.
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Write(args) => write(args).await,
        ConfigCommand::Read(args) => read(args).await,
        ConfigCommand::List(args) => list(args).await,
        ConfigCommand::Delete(args) => delete(args).await,
    }
}

fn required<'a>(value: &'a Option<String>, flag: &str) -> anyhow::Result<&'a str> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => bail!("Must specify the -{flag} flag"),
    }
}

fn string_key<'a>(doc: &'a serde_json::Value, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| doc.get(*k).and_then(|v| v.as_str()))
        .unwrap_or_default()
}

/// An entry's name; kinds with a fixed name (mesh, proxy-defaults) may be
/// written without one, and mesh's JSON carries none.
fn entry_name(document: serde_json::Value) -> String {
    let given = string_key(&document, &["Name", "name"]).to_owned();
    match config_entry::ConfigEntry::from_json(document) {
        Ok(entry) => entry.name().to_owned(),
        Err(_) => given,
    }
}

async fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("Failed to read file {}", args.file.display()))?
    };
    let document = config_entry::parse_document(&text)?;
    let kind = string_key(&document, &["Kind", "kind"]).to_owned();
    let name = entry_name(document.clone());
    let path = match (args.cas, args.modify_index) {
        (true, Some(index)) => format!("/v1/config?cas={index}"),
        (true, None) => "/v1/config?cas=0".to_owned(),
        _ => "/v1/config".to_owned(),
    };
    let written: bool = args
        .api
        .client()?
        .send_json(Method::PUT, &path, &document)
        .await
        .with_context(|| format!("Error writing config entry {kind}/{name}"))?;
    if !written {
        eprintln!("Config entry not updated: {kind}/{name}");
        return Ok(ExitCode::FAILURE);
    }
    println!("Config entry written: {kind}/{name}");
    Ok(ExitCode::SUCCESS)
}

async fn read(args: EntryArgs) -> anyhow::Result<ExitCode> {
    let kind = required(&args.kind, "kind")?;
    let name = required(&args.name, "name")?;
    let (entry, _): (serde_json::Value, _) = args
        .api
        .client()?
        .get_json(&format!("/v1/config/{}/{}", encode(kind), encode(name)))
        .await
        .with_context(|| format!("Error reading config entry {kind}/{name}"))?;
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let kind = required(&args.kind, "kind")?;
    let (entries, _): (Vec<serde_json::Value>, _) = args
        .api
        .client()?
        .get_json(&format!("/v1/config/{}", encode(kind)))
        .await
        .with_context(|| format!("Error listing config entries for kind {kind}"))?;
    for entry in entries {
        println!("{}", entry_name(entry));
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: EntryArgs) -> anyhow::Result<ExitCode> {
    let kind = required(&args.kind, "kind")?;
    let name = required(&args.name, "name")?;
    args.api
        .client()?
        .call(
            Method::DELETE,
            &format!("/v1/config/{}/{}", encode(kind), encode(name)),
            None,
        )
        .await
        .with_context(|| format!("Error deleting config entry {kind}/{name}"))?;
    println!("Config entry deleted: {kind}/{name}");
    Ok(ExitCode::SUCCESS)
}
