//! `isthmus services register|deregister`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http::Method;
use isthmus_api::catalog::ServiceRegistration;
use isthmus_api::consul_json;
use isthmus_runtime::client::encode;
use serde_json::Value;

use super::ApiArgs;

#[derive(Subcommand)]
pub enum ServicesCommand {
    /// Register the services defined in an HCL or JSON file.
    Register(RegisterArgs),
    /// Deregister a service by ID, or the services defined in a file.
    Deregister(DeregisterArgs),
}

#[derive(Args)]
pub struct RegisterArgs {
    /// A file with `service { ... }` blocks (HCL) or `{"service": {...}}` (JSON).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct DeregisterArgs {
    /// The ID of the service to deregister.
    #[arg(long, conflicts_with = "file")]
    id: Option<String>,
    /// Deregister the services defined in this file instead.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(command: ServicesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ServicesCommand::Register(args) => register(args).await,
        ServicesCommand::Deregister(args) => deregister(args).await,
    }
}

/// Reads the registrations in a definition file: `service` (one block or
/// several), `services` (a list), or a bare registration object.
fn load_definitions(path: &PathBuf) -> anyhow::Result<Vec<ServiceRegistration>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let document: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as JSON", path.display()))?
    } else {
        hcl::from_str(&text).with_context(|| format!("parsing {} as HCL", path.display()))?
    };
    // The top-level key is spelled like any other (`service`, `Service`, `services`).
    let top = |name: &str| {
        document.as_object().and_then(|object| {
            object
                .iter()
                .find(|(key, _)| consul_json::key_match(name, &[], key).is_some())
                .map(|(_, value)| value)
        })
    };
    let items: Vec<Value> = match (top("Service"), top("Services")) {
        (Some(Value::Array(list)), _) | (None, Some(Value::Array(list))) => list.clone(),
        (Some(single @ Value::Object(_)), _) => vec![single.clone()],
        (None, None) => vec![document.clone()],
        _ => bail!(
            "{}: `service` must be a block or a list of blocks",
            path.display()
        ),
    };
    if items.is_empty() {
        bail!("{}: no service definitions found", path.display());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            consul_json::from_value(item)
                .with_context(|| format!("{}: service definition {i} is invalid", path.display()))
        })
        .collect()
}

async fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    for service in load_definitions(&args.file)? {
        let _: Value = client
            .send_json(Method::PUT, "/v1/agent/service/register", &service)
            .await
            .with_context(|| format!("Error registering service {:?}", service.name))?;
        println!("Registered service: {}", service.name);
    }
    Ok(ExitCode::SUCCESS)
}

async fn deregister(args: DeregisterArgs) -> anyhow::Result<ExitCode> {
    let ids: Vec<String> = match (&args.id, &args.file) {
        (Some(id), _) if !id.is_empty() => vec![id.clone()],
        (_, Some(file)) => load_definitions(file)?
            .into_iter()
            .map(|s| s.id.unwrap_or(s.name))
            .collect(),
        _ => bail!("Must specify the -id flag or a service definition file"),
    };
    let client = args.api.client()?;
    for id in ids {
        client
            .call(
                Method::PUT,
                &format!("/v1/agent/service/deregister/{}", encode(&id)),
                None,
            )
            .await
            .with_context(|| format!("Error deregistering service {id:?}"))?;
        println!("Deregistered service: {id}");
    }
    Ok(ExitCode::SUCCESS)
}
