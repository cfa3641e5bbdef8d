//! `isthmus acl bootstrap|token|policy`, as Consul's commands of the same
//! names: same flags (`-description`, `-policy-name`, `-service-identity`,
//! `-rules @file`, `-format json`, ...), same output (see [`super::acl_format`])
//! and error texts.

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use http::Method;
use isthmus_runtime::client::{encode, Client};
use serde_json::{json, Map, Value};

use super::acl_format::{self, AclFormat};
use super::ApiArgs;

#[derive(Subcommand)]
pub enum AclCommand {
    /// Create the first management token (once per cluster) and print it.
    Bootstrap(BootstrapArgs),
    /// Create, read, list and delete tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Create, read, list and delete policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token with policies and service identities.
    Create(TokenCreateArgs),
    /// Show a token, by accessor ID or (-self) the one in use.
    Read(TokenReadArgs),
    /// List every token.
    List(ShowArgs),
    /// Delete a token by accessor ID.
    Delete(TokenDeleteArgs),
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Create a policy from rules in Consul's rule language.
    Create(PolicyCreateArgs),
    /// Show a policy, by ID or name.
    Read(PolicyTargetArgs),
    /// List every policy.
    List(ShowArgs),
    /// Delete a policy, by ID or name.
    Delete(PolicyTargetArgs),
}

/// How a command prints what it got.
#[derive(Args)]
pub struct ShowArgs {
    /// Output format: pretty or json.
    #[arg(long, value_enum, default_value_t = AclFormat::Pretty)]
    format: AclFormat,
    /// Also show the hash and the raft indexes.
    #[arg(long)]
    meta: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct BootstrapArgs {
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
pub struct TokenCreateArgs {
    /// A description of the token.
    #[arg(long, default_value = "")]
    description: String,
    /// The ID of a policy to link; may be repeated.
    #[arg(long, value_name = "ID")]
    policy_id: Vec<String>,
    /// The name of a policy to link; may be repeated.
    #[arg(long, value_name = "NAME")]
    policy_name: Vec<String>,
    /// A service identity, `NAME` or `NAME:DC1,DC2`; may be repeated.
    #[arg(long, value_name = "NAME[:DATACENTERS]")]
    service_identity: Vec<String>,
    /// A node identity, `NODE:DATACENTER`; may be repeated.
    #[arg(long, value_name = "NODE:DATACENTER")]
    node_identity: Vec<String>,
    /// Create a token local to this datacenter.
    #[arg(long)]
    local: bool,
    /// How long the token lives (a Go duration such as `1h`); it never expires by default.
    #[arg(long, value_name = "DURATION")]
    expires_ttl: Option<String>,
    /// The token's secret ID (generated when not given).
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// The token's accessor ID (generated when not given).
    #[arg(long, value_name = "ID")]
    accessor: Option<String>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
pub struct TokenReadArgs {
    /// The accessor ID of the token.
    #[arg(long, alias = "accessor-id", value_name = "ID")]
    id: Option<String>,
    /// Read the token the command itself uses.
    #[arg(long = "self")]
    read_self: bool,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
pub struct TokenDeleteArgs {
    /// The accessor ID of the token.
    #[arg(long, alias = "accessor-id", value_name = "ID")]
    id: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct PolicyCreateArgs {
    /// The policy's name.
    #[arg(long, default_value = "")]
    name: String,
    /// A description of the policy.
    #[arg(long, default_value = "")]
    description: String,
    /// The rules: the text itself, `@FILE` to read a file, or `-` for stdin.
    #[arg(long, default_value = "")]
    rules: String,
    /// A datacenter the policy is valid in; may be repeated (all when absent).
    #[arg(long, value_name = "DC")]
    valid_datacenter: Vec<String>,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
pub struct PolicyTargetArgs {
    /// The ID of the policy.
    #[arg(long)]
    id: Option<String>,
    /// The name of the policy.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    show: ShowArgs,
}

pub async fn run(command: AclCommand) -> anyhow::Result<ExitCode> {
    match command {
        AclCommand::Bootstrap(args) => bootstrap(args).await,
        AclCommand::Token(TokenCommand::Create(args)) => token_create(args).await,
        AclCommand::Token(TokenCommand::Read(args)) => token_read(args).await,
        AclCommand::Token(TokenCommand::List(args)) => token_list(args).await,
        AclCommand::Token(TokenCommand::Delete(args)) => token_delete(args).await,
        AclCommand::Policy(PolicyCommand::Create(args)) => policy_create(args).await,
        AclCommand::Policy(PolicyCommand::Read(args)) => policy_read(args).await,
        AclCommand::Policy(PolicyCommand::List(args)) => policy_list(args).await,
        AclCommand::Policy(PolicyCommand::Delete(args)) => policy_delete(args).await,
    }
}

async fn get(client: &Client, path: &str) -> anyhow::Result<Value> {
    Ok(client.get_json(path).await?.0)
}

async fn send(client: &Client, method: Method, path: &str, body: &Value) -> anyhow::Result<Value> {
    Ok(client.send_json(method, path, body).await?)
}

/// Prints one token or policy as `-format` asks.
fn print_one(
    show: &ShowArgs,
    value: &Value,
    pretty: fn(&Value, bool) -> String,
) -> anyhow::Result<ExitCode> {
    match show.format {
        AclFormat::Pretty => print!("{}", pretty(value, show.meta)),
        AclFormat::Json => print!("{}", acl_format::json(value)?),
    }
    Ok(ExitCode::SUCCESS)
}

async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<ExitCode> {
    let client = args.show.api.client()?;
    let token = send(&client, Method::PUT, "/v1/acl/bootstrap", &Value::Null)
        .await
        .context("Failed ACL bootstrapping")?;
    print_one(&args.show, &token, acl_format::token)
}

/// The body of `PUT /v1/acl/token` from `acl token create`'s flags.
fn token_body(args: &TokenCreateArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("Description".into(), json!(args.description));
    let policies: Vec<Value> = args
        .policy_id
        .iter()
        .map(|id| json!({ "ID": id }))
        .chain(args.policy_name.iter().map(|name| json!({ "Name": name })))
        .collect();
    if !policies.is_empty() {
        body.insert("Policies".into(), Value::Array(policies));
    }
    let services: Vec<Value> = args
        .service_identity
        .iter()
        .map(|spec| {
            let (name, datacenters) = spec.split_once(':').unwrap_or((spec, ""));
            let datacenters: Vec<&str> =
                datacenters.split(',').filter(|dc| !dc.is_empty()).collect();
            if name.is_empty() {
                return Err(anyhow!("Malformed -service-identity argument: {spec:?}"));
            }
            let mut identity = json!({ "ServiceName": name });
            if !datacenters.is_empty() {
                identity["Datacenters"] = json!(datacenters);
            }
            Ok(identity)
        })
        .collect::<anyhow::Result<_>>()?;
    if !services.is_empty() {
        body.insert("ServiceIdentities".into(), Value::Array(services));
    }
    let nodes: Vec<Value> = args
        .node_identity
        .iter()
        .map(|spec| match spec.split_once(':') {
            Some((node, dc)) if !node.is_empty() && !dc.is_empty() => {
                Ok(json!({ "NodeName": node, "Datacenter": dc }))
            }
            _ => Err(anyhow!(
                "Malformed -node-identity argument: {spec:?}: expected NODENAME:DATACENTER"
            )),
        })
        .collect::<anyhow::Result<_>>()?;
    if !nodes.is_empty() {
        body.insert("NodeIdentities".into(), Value::Array(nodes));
    }
    body.insert("Local".into(), json!(args.local));
    if let Some(ttl) = &args.expires_ttl {
        let ttl = isthmus_api::duration::parse(ttl)
            .map_err(|e| anyhow!("invalid value {ttl:?} for flag -expires-ttl: {e}"))?;
        // Consul's client sends the Go duration as nanoseconds.
        body.insert("ExpirationTTL".into(), json!(ttl.as_nanos() as u64));
    }
    if let Some(secret) = &args.secret {
        body.insert("SecretID".into(), json!(secret));
    }
    if let Some(accessor) = &args.accessor {
        body.insert("AccessorID".into(), json!(accessor));
    }
    Ok(Value::Object(body))
}

async fn token_create(args: TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let body = token_body(&args)?;
    let client = args.show.api.client()?;
    let token = send(&client, Method::PUT, "/v1/acl/token", &body)
        .await
        .context("Failed to create new token")?;
    print_one(&args.show, &token, acl_format::token)
}

async fn token_read(args: TokenReadArgs) -> anyhow::Result<ExitCode> {
    let client = args.show.api.client()?;
    let token = match (&args.id, args.read_self) {
        (Some(_), true) => {
            return Err(anyhow!(
                "Cannot specify both -id and -self. Please choose one or the other."
            ))
        }
        (None, false) => return Err(anyhow!("Must specify the -id parameter")),
        (None, true) => get(&client, "/v1/acl/token/self")
            .await
            .context("Error reading token")?,
        (Some(id), false) => get(&client, &format!("/v1/acl/token/{}", encode(id)))
            .await
            .with_context(|| format!("Error reading token {id:?}"))?,
    };
    print_one(&args.show, &token, acl_format::token)
}

async fn token_list(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let tokens = get(&client, "/v1/acl/tokens")
        .await
        .context("Failed to retrieve the token list")?;
    let tokens = tokens.as_array().map_or(&[][..], Vec::as_slice);
    match args.format {
        AclFormat::Pretty => print!("{}", acl_format::token_list(tokens, args.meta)),
        AclFormat::Json => print!("{}", acl_format::json(tokens)?),
    }
    Ok(ExitCode::SUCCESS)
}

async fn token_delete(args: TokenDeleteArgs) -> anyhow::Result<ExitCode> {
    let Some(id) = args.id else {
        return Err(anyhow!("Must specify the -id parameter"));
    };
    let client = args.api.client()?;
    send(
        &client,
        Method::DELETE,
        &format!("/v1/acl/token/{}", encode(&id)),
        &Value::Null,
    )
    .await
    .with_context(|| format!("Error deleting token {id:?}"))?;
    println!("Token {id:?} deleted successfully");
    Ok(ExitCode::SUCCESS)
}

/// Consul's data sources: `@FILE` reads the file, `-` reads stdin, anything
/// else is the text itself.
fn load_rules(source: &str) -> anyhow::Result<String> {
    if let Some(path) = source.strip_prefix('@') {
        std::fs::read_to_string(path)
            .with_context(|| format!("Error loading rules: reading {path}"))
    } else if source == "-" {
        std::io::read_to_string(std::io::stdin()).context("Error loading rules: reading stdin")
    } else {
        Ok(source.to_owned())
    }
}

async fn policy_create(args: PolicyCreateArgs) -> anyhow::Result<ExitCode> {
    if args.name.is_empty() {
        return Err(anyhow!("Missing require '-name' flag"));
    }
    let rules = load_rules(&args.rules)?;
    let mut body = json!({
        "Name": args.name,
        "Description": args.description,
        "Rules": rules,
    });
    if !args.valid_datacenter.is_empty() {
        body["Datacenters"] = json!(args.valid_datacenter);
    }
    let client = args.show.api.client()?;
    let policy = send(&client, Method::PUT, "/v1/acl/policy", &body)
        .await
        .context("Failed to create new policy")?;
    print_one(&args.show, &policy, acl_format::policy)
}

/// The policy `-id` or `-name` points at.
async fn find_policy(client: &Client, args: &PolicyTargetArgs) -> anyhow::Result<Value> {
    match (&args.id, &args.name) {
        (Some(id), _) => get(client, &format!("/v1/acl/policy/{}", encode(id)))
            .await
            .with_context(|| format!("Error reading policy {id:?}")),
        (None, Some(name)) => get(client, &format!("/v1/acl/policy/name/{}", encode(name)))
            .await
            .with_context(|| format!("Error reading policy {name:?}")),
        (None, None) => Err(anyhow!("Must specify either the -id or -name parameters")),
    }
}

async fn policy_read(args: PolicyTargetArgs) -> anyhow::Result<ExitCode> {
    let client = args.show.api.client()?;
    let policy = find_policy(&client, &args).await?;
    print_one(&args.show, &policy, acl_format::policy)
}

async fn policy_list(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let policies = get(&client, "/v1/acl/policies")
        .await
        .context("Failed to retrieve the policy list")?;
    let policies = policies.as_array().map_or(&[][..], Vec::as_slice);
    match args.format {
        AclFormat::Pretty => print!("{}", acl_format::policy_list(policies, args.meta)),
        AclFormat::Json => print!("{}", acl_format::json(policies)?),
    }
    Ok(ExitCode::SUCCESS)
}

async fn policy_delete(args: PolicyTargetArgs) -> anyhow::Result<ExitCode> {
    let client = args.show.api.client()?;
    let id = match (&args.id, &args.name) {
        (Some(id), _) => id.clone(),
        (None, Some(_)) => {
            let policy = find_policy(&client, &args)
                .await
                .context("Error determining policy ID")?;
            policy["ID"].as_str().unwrap_or_default().to_owned()
        }
        (None, None) => return Err(anyhow!("Must specify either the -id or -name parameters")),
    };
    send(
        &client,
        Method::DELETE,
        &format!("/v1/acl/policy/{}", encode(&id)),
        &Value::Null,
    )
    .await
    .with_context(|| format!("Error deleting policy {id:?}"))?;
    println!("Policy {id:?} deleted successfully");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        acl: AclCommand,
    }

    fn parse(args: &[&str]) -> AclCommand {
        let args = std::iter::once("acl")
            .chain(args.iter().copied())
            .map(std::ffi::OsString::from);
        let args = isthmus_runtime::process::normalize_go_flags(
            &<Cli as clap::CommandFactory>::command(),
            args,
        );
        Cli::try_parse_from(args).unwrap().acl
    }

    #[test]
    fn token_create_flags_make_consuls_body() {
        let AclCommand::Token(TokenCommand::Create(args)) = parse(&[
            "token",
            "create",
            "-description",
            "web token",
            "-policy-name",
            "p1",
            "-policy-id",
            "id-2",
            "-service-identity",
            "web",
            "-service-identity=db:dc1,dc2",
            "-node-identity",
            "n1:dc1",
            "-local",
            "-expires-ttl",
            "1h",
        ]) else {
            panic!("not token create");
        };
        assert_eq!(
            token_body(&args).unwrap(),
            json!({
                "Description": "web token",
                "Policies": [{"ID": "id-2"}, {"Name": "p1"}],
                "ServiceIdentities": [{"ServiceName": "web"}, {"ServiceName": "db", "Datacenters": ["dc1", "dc2"]}],
                "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
                "Local": true,
                "ExpirationTTL": 3_600_000_000_000u64,
            })
        );
    }

    #[test]
    fn bad_identities_and_ttls_are_refused() {
        for bad in [
            &["token", "create", "-service-identity", ":dc1"][..],
            &["token", "create", "-node-identity", "n1"],
            &["token", "create", "-expires-ttl", "soon"],
        ] {
            let AclCommand::Token(TokenCommand::Create(args)) = parse(bad) else {
                panic!("not token create");
            };
            assert!(token_body(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_and_format_flags_parse() {
        let AclCommand::Token(TokenCommand::Read(args)) = parse(&[
            "token",
            "read",
            "-accessor-id",
            "abc",
            "-format",
            "json",
            "-meta",
        ]) else {
            panic!("not token read");
        };
        assert_eq!(args.id.as_deref(), Some("abc"));
        assert_eq!(args.show.format, AclFormat::Json);
        assert!(args.show.meta);
        let AclCommand::Policy(PolicyCommand::Read(args)) =
            parse(&["policy", "read", "-name", "p"])
        else {
            panic!("not policy read");
        };
        assert_eq!(args.name.as_deref(), Some("p"));
    }

    #[test]
    fn rules_come_from_text_or_a_file() {
        assert_eq!(load_rules("acl = \"read\"").unwrap(), "acl = \"read\"");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "operator = \"read\"").unwrap();
        let source = format!("@{}", file.path().display());
        assert_eq!(load_rules(&source).unwrap(), "operator = \"read\"");
        assert!(load_rules("@/nonexistent/rules.hcl").is_err());
    }
}
