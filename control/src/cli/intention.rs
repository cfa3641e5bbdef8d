//! `isthmus intention create|get|delete|list|check`, as Consul's commands
//! of the same names: same arguments (`SRC DST` or a legacy `ID`), same
//! output and exit codes.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use isthmus_runtime::client::{encode, Client, ClientError};
use serde_json::{json, Value};
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::output::columns;
use super::ApiArgs;

#[derive(Subcommand)]
pub enum IntentionCommand {
    /// Create an intention from SRC to DST (allow unless -deny).
    Create(CreateArgs),
    /// Show an intention, by SRC DST or by its ID.
    Get(TargetArgs),
    /// Delete an intention, by SRC DST or by its ID.
    Delete(TargetArgs),
    /// List every intention, highest precedence first.
    List(ListArgs),
    /// Show the intentions that apply to a destination (or, with -source, a
    /// source), in the order they are evaluated.
    Match(MatchArgs),
    /// Whether SOURCE may connect to DESTINATION: prints Allowed (exit 0) or Denied (exit 2).
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The calling service (`*` for any).
    source: String,
    /// The called service (`*` for any).
    destination: String,
    /// Create an intention that allows when matched (the default).
    #[arg(long)]
    allow: bool,
    /// Create an intention that denies when matched.
    #[arg(long)]
    deny: bool,
    /// Replace an existing intention with the same source and destination.
    #[arg(long)]
    replace: bool,
    /// Metadata to set on the intention, `key=value`; may be repeated.
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct TargetArgs {
    /// `SRC DST`, or the ID of an intention created with `intention create`.
    #[arg(num_args = 1..=2, value_name = "SRC DST | ID")]
    targets: Vec<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct MatchArgs {
    /// The service to match.
    name: String,
    /// Match intentions with the given source.
    #[arg(long)]
    source: bool,
    /// Match intentions with the given destination (the default).
    #[arg(long)]
    destination: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The calling service.
    source: String,
    /// The called service.
    destination: String,
    /// The peer the calling service is imported from (default: this cluster).
    #[arg(long, value_name = "PEER")]
    source_peer: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Exit code for "the check ran and said no", and for an empty list, as Consul uses.
const NO: u8 = 2;
/// Go's `time.RFC850`, which Consul prints `Created At` in.
const RFC850: &[FormatItem<'static>] = format_description!(
    "[weekday], [day]-[month repr:short]-[year repr:last_two] [hour]:[minute]:[second] UTC"
);

pub async fn run(command: IntentionCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntentionCommand::Create(args) => create(args).await,
        IntentionCommand::Get(args) => get(args).await,
        IntentionCommand::Delete(args) => delete(args).await,
        IntentionCommand::List(args) => list(args).await,
        IntentionCommand::Match(args) => matches(args).await,
        IntentionCommand::Check(args) => check(args).await,
    }
}

/// `web => db (allow)`, as Consul prints an intention.
fn describe(source: &str, destination: &str, action: &str) -> String {
    format!("{source} => {destination} ({action})")
}

/// [`describe`] for an intention from the API: an L7 one shows its
/// permission count instead of an action.
fn describe_json(intention: &Value) -> String {
    let field = |name: &str| intention[name].as_str().unwrap_or_default();
    let detail = match intention["Permissions"].as_array().map_or(0, Vec::len) {
        0 => field("Action").to_owned(),
        1 => "1 permission".to_owned(),
        n => format!("{n} permissions"),
    };
    describe(field("SourceName"), field("DestinationName"), &detail)
}

async fn matches(args: MatchArgs) -> anyhow::Result<ExitCode> {
    if args.source && args.destination {
        return Err(anyhow!(
            "Error: only one of -source or -destination may be specified"
        ));
    }
    let by = if args.source { "source" } else { "destination" };
    let path = format!(
        "/v1/connect/intentions/match?by={by}&name={}",
        encode(&args.name)
    );
    let (found, _): (BTreeMap<String, Vec<Value>>, _) = args
        .api
        .client()?
        .get_json(&path)
        .await
        .context("Error matching the connection")?;
    for intention in found.get(&args.name).into_iter().flatten() {
        println!("{}", describe_json(intention));
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    if args.allow && args.deny {
        return Err(anyhow!("Only one of -allow or -deny may be specified"));
    }
    let action = if args.deny { "deny" } else { "allow" };
    let mut meta = BTreeMap::new();
    for pair in &args.meta {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("Error parsing -meta {pair:?}: must be key=value"))?;
        meta.insert(key.to_owned(), value.to_owned());
    }
    let client = args.api.client()?;
    let description = describe(&args.source, &args.destination, action);
    let body = json!({
        "SourceName": args.source,
        "DestinationName": args.destination,
        "SourceType": "consul",
        "Action": action,
        "Meta": meta,
    });
    if args.replace {
        if let Some(existing) = exact(&client, &args.source, &args.destination)
            .await
            .with_context(|| {
                format!(
                    "Error looking up intention for replacement with source {:?} and destination {:?}",
                    args.source, args.destination
                )
            })?
        {
            let id = existing["ID"].as_str().unwrap_or_default();
            let _: Value = client
                .send_json(
                    Method::PUT,
                    &format!("/v1/connect/intentions/{}", encode(id)),
                    &body,
                )
                .await
                .with_context(|| {
                    format!(
                        "Error replacing intention with source {:?} and destination {:?}",
                        args.source, args.destination
                    )
                })?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _: Value = client
        .send_json(Method::POST, "/v1/connect/intentions", &body)
        .await
        .with_context(|| format!("Error creating intention {description:?}"))?;
    println!("Created: {description}");
    Ok(ExitCode::SUCCESS)
}

/// The intention from `source` to `destination`, or `None` if there is none.
async fn exact(
    client: &Client,
    source: &str,
    destination: &str,
) -> Result<Option<Value>, ClientError> {
    let path = format!(
        "/v1/connect/intentions/exact?source={}&destination={}",
        encode(source),
        encode(destination)
    );
    found(client.get_json::<Value>(&path).await)
}

fn found(answer: Result<(Value, Option<u64>), ClientError>) -> Result<Option<Value>, ClientError> {
    match answer {
        Ok((value, _)) => Ok(Some(value)),
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn get(args: TargetArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let intention = match args.targets.as_slice() {
        [id] => found(
            client
                .get_json(&format!("/v1/connect/intentions/{}", encode(id)))
                .await,
        )
        .context("Error reading the intention")?
        .ok_or_else(|| anyhow!("Intention not found with ID {id:?}"))?,
        [source, destination] => exact(&client, source, destination)
            .await
            .context("Error reading the intention")?
            .ok_or_else(|| {
                anyhow!(
                    "Intention not found with source {source:?} and destination {destination:?}"
                )
            })?,
        _ => return Err(anyhow!("command requires exactly 1 or 2 arguments")),
    };
    print!("{}", show(&intention));
    Ok(ExitCode::SUCCESS)
}

/// Consul's `intention get` layout: label/value lines, then the permissions.
fn show(intention: &Value) -> String {
    let field = |name: &str| intention[name].as_str().unwrap_or_default().to_owned();
    let mut rows = vec![
        vec!["Source:".to_owned(), field("SourceName")],
        vec!["Destination:".to_owned(), field("DestinationName")],
    ];
    for (label, name) in [
        ("Action:", "Action"),
        ("ID:", "ID"),
        ("Description:", "Description"),
    ] {
        let value = field(name);
        if !value.is_empty() {
            rows.push(vec![label.to_owned(), value]);
        }
    }
    if let Some(meta) = intention["Meta"].as_object() {
        let sorted: BTreeMap<&String, &Value> = meta.iter().collect();
        for (key, value) in sorted {
            rows.push(vec![
                format!("Meta[{key}]:"),
                value.as_str().unwrap_or_default().to_owned(),
            ]);
        }
    }
    rows.push(vec!["Created At:".to_owned(), rfc850(&field("CreatedAt"))]);
    let (header, rest) = rows.split_first().expect("at least the source row");
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = columns(&header, rest);
    if let Some(permissions) = intention["Permissions"].as_array() {
        if !permissions.is_empty() {
            let pretty = serde_json::to_string_pretty(permissions).unwrap_or_default();
            out.push_str(&format!("Permissions:\n{pretty}\n"));
        }
    }
    out
}

/// An RFC 3339 time as Go's RFC 850 layout (in UTC); Go's zero time when unset.
fn rfc850(rfc3339: &str) -> String {
    let parsed = OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or(time::macros::datetime!(0001-01-01 00:00:00 UTC));
    parsed
        .to_offset(time::UtcOffset::UTC)
        .format(RFC850)
        .unwrap_or_default()
}

async fn delete(args: TargetArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let path = match args.targets.as_slice() {
        [id] => format!("/v1/connect/intentions/{}", encode(id)),
        [source, destination] => format!(
            "/v1/connect/intentions/exact?source={}&destination={}",
            encode(source),
            encode(destination)
        ),
        _ => return Err(anyhow!("command requires exactly 1 or 2 arguments")),
    };
    client
        .call(Method::DELETE, &path, None)
        .await
        .context("Error deleting the intention")?;
    println!("Intention deleted.");
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (intentions, _): (Vec<Value>, _) = args
        .api
        .client()?
        .get_json("/v1/connect/intentions")
        .await
        .context("Failed to retrieve the intentions list")?;
    if intentions.is_empty() {
        eprintln!("There are no intentions.");
        return Ok(ExitCode::from(NO));
    }
    let rows: Vec<Vec<String>> = intentions
        .iter()
        .map(|i| {
            let field = |name: &str| i[name].as_str().unwrap_or_default().to_owned();
            vec![
                field("ID"),
                field("SourceName"),
                field("Action"),
                field("DestinationName"),
                i["Precedence"].to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        columns(
            &["ID", "Source", "Action", "Destination", "Precedence"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!(
        "/v1/connect/intentions/check?source={}&destination={}",
        encode(&args.source),
        encode(&args.destination)
    );
    if let Some(peer) = &args.source_peer {
        path.push_str(&format!("&source-peer={}", encode(peer)));
    }
    let (answer, _): (Value, _) = args
        .api
        .client()?
        .get_json(&path)
        .await
        .context("Error checking the intention")?;
    if answer.get("Allowed").and_then(Value::as_bool) == Some(true) {
        println!("Allowed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Denied");
        Ok(ExitCode::from(NO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_gos_rfc850_layout() {
        assert_eq!(
            rfc850("2026-12-01T07:39:22Z"),
            "Tuesday, 01-Dec-26 07:39:22 UTC"
        );
        assert_eq!(rfc850(""), "Monday, 01-Jan-01 00:00:00 UTC");
    }

    #[test]
    fn get_shows_consuls_labels() {
        let shown = show(&json!({
            "ID": "", "SourceName": "web", "DestinationName": "db", "Action": "allow",
            "Meta": {"b": "2", "a": "1"}, "CreatedAt": "0001-01-01T00:00:00Z"
        }));
        assert_eq!(
            shown,
            "Source:       web\nDestination:  db\nAction:       allow\nMeta[a]:      1\nMeta[b]:      2\nCreated At:   Monday, 01-Jan-01 00:00:00 UTC\n"
        );
    }
}
