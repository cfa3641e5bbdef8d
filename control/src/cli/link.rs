//! `isthmus cluster link create|list|show|delete`: LXD's cluster links, on
//! top of peerings (a link is a peering; its identity is `tls/<name>`).

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use isthmus_api::peering::{EstablishRequest, Peering, TokenRequest, STATE_PENDING};
use serde::Serialize;

use super::lxd::{format_yaml, ListArgs};
use super::output;
use super::peering_api::{self, list_peerings, read_peering};
use super::ApiArgs;

/// The Meta key that holds a link's description.
pub const DESCRIPTION_META: &str = "description";

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Manage cluster links: mutual trust between this cluster and another.
    #[command(subcommand)]
    Link(LinkCommand),
}

#[derive(Subcommand)]
pub enum LinkCommand {
    /// Create a cluster link: without --token, issue a trust token for the other cluster;
    /// with --token, complete the link the other cluster started.
    #[command(long_about = "Create a cluster link.\n\n\
        On the first cluster, `isthmus cluster link create <name-of-link-to-b> --auth-group <g>` \
        creates a pending link and prints a trust token. On the second cluster, \
        `isthmus cluster link create <name-of-link-to-a> --token <token> --auth-group <g>` \
        completes it; both clusters then trust each other. The other cluster's identity \
        (tls/<name>) gets the permissions of the --auth-group groups (default: the built-in \
        `peering` group, which may read and reach what is exported to it).")]
    Create(CreateArgs),
    /// List cluster links.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a cluster link.
    Show(NameArgs),
    /// Delete a cluster link; the other cluster is told and stops trusting this one.
    #[command(visible_alias = "rm")]
    Delete(NameArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The name of the link, and of the other cluster's identity (tls/<name>).
    name: String,
    /// An auth group for the other cluster's identity; may be given several times.
    /// Groups must exist (see `isthmus auth group create`).
    #[arg(long = "auth-group", value_name = "GROUP")]
    auth_groups: Vec<String>,
    /// The trust token from the other cluster: complete a link it created.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// A description of the link.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Print only the trust token (nothing when completing a link with --token).
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    api: CreateApiArgs,
}

/// [`ApiArgs`] without `-token`, which here is the trust token: the ACL
/// token comes from -token-file or the environment.
#[derive(Args)]
pub struct CreateApiArgs {
    /// Address of the agent's HTTP API, http://host:port or https://host:port
    /// [env: ISTHMUS_HTTP_ADDR, CONSUL_HTTP_ADDR] [default: http://127.0.0.1:8500].
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<String>,
    /// A file holding the ACL token [env: ISTHMUS_HTTP_TOKEN_FILE, CONSUL_HTTP_TOKEN_FILE;
    /// or the token in ISTHMUS_HTTP_TOKEN, CONSUL_HTTP_TOKEN].
    #[arg(long, value_name = "FILE")]
    token_file: Option<std::path::PathBuf>,
    /// The CA certificate (PEM) to verify an https agent with [env: CONSUL_CACERT].
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM), with -client-key [env: CONSUL_CLIENT_CERT].
    #[arg(long, value_name = "FILE")]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM) [env: CONSUL_CLIENT_KEY].
    #[arg(long, value_name = "FILE")]
    client_key: Option<std::path::PathBuf>,
    /// The name to verify an https agent's certificate against [env: CONSUL_TLS_SERVER_NAME].
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
}

impl CreateApiArgs {
    fn client(&self) -> anyhow::Result<isthmus_runtime::client::Client> {
        let flags = isthmus_runtime::client::ClientFlags {
            token: None,
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            tls_server_name: self.tls_server_name.clone(),
        };
        ApiArgs::from_parts(self.http_addr.clone(), flags).client()
    }
}

#[derive(Args)]
pub struct NameArgs {
    /// The name of the link.
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// A link as `list` and `show` present it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkView {
    pub name: String,
    pub description: String,
    pub addresses: Vec<String>,
    pub identity_status: String,
    pub state: String,
    pub peer_id: String,
    #[serde(rename = "type")]
    pub link_type: String,
}

impl From<&Peering> for LinkView {
    fn from(p: &Peering) -> LinkView {
        LinkView {
            name: p.name.clone(),
            description: p.meta.get(DESCRIPTION_META).cloned().unwrap_or_default(),
            addresses: p.peer_server_addresses.clone(),
            identity_status: if p.state == STATE_PENDING {
                "PENDING"
            } else {
                "ACTIVE"
            }
            .into(),
            state: p.state.clone(),
            peer_id: p.peer_id.clone(),
            link_type: "user".into(),
        }
    }
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Link(command) = command;
    match command {
        LinkCommand::Create(args) => create(args).await,
        LinkCommand::List(args) => list(args).await,
        LinkCommand::Show(args) => show(args).await,
        LinkCommand::Delete(args) => delete(args).await,
    }
}

/// What `create` sends: `/v1/peering/token` without a token, else
/// `/v1/peering/establish`.
#[derive(Debug, PartialEq)]
pub enum CreateRequest {
    Token(TokenRequest),
    Establish(EstablishRequest),
}

pub fn create_request(args: &CreateArgs) -> CreateRequest {
    let meta = args
        .description
        .iter()
        .map(|d| (DESCRIPTION_META.to_owned(), d.clone()))
        .collect();
    match &args.token {
        None => CreateRequest::Token(TokenRequest {
            peer_name: args.name.clone(),
            meta,
            auth_groups: args.auth_groups.clone(),
            ..TokenRequest::default()
        }),
        Some(token) => CreateRequest::Establish(EstablishRequest {
            peer_name: args.name.clone(),
            peering_token: token.clone(),
            meta,
            auth_groups: args.auth_groups.clone(),
            ..EstablishRequest::default()
        }),
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let client = args.api.client()?;
    let name = &args.name;
    let context = || format!("Error creating cluster link {name}");
    match create_request(&args) {
        CreateRequest::Token(request) => {
            let response = peering_api::generate_token(&client, &request)
                .await
                .with_context(context)?;
            if !args.quiet {
                println!("Cluster link {name} created (pending)");
            }
            println!("{}", response.peering_token);
        }
        CreateRequest::Establish(request) => {
            peering_api::establish(&client, &request)
                .await
                .with_context(context)?;
            if !args.quiet {
                println!("Cluster link {name} created");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub const LIST_HEADER: [&str; 6] = [
    "NAME",
    "ADDRESSES",
    "DESCRIPTION",
    "IDENTITY STATUS",
    "STATE",
    "TYPE",
];

pub fn list_rows(links: &[LinkView]) -> Vec<Vec<String>> {
    links
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.addresses.join("\n"),
                l.description.clone(),
                l.identity_status.clone(),
                l.state.clone(),
                l.link_type.clone(),
            ]
        })
        .collect()
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (_, peerings) = list_peerings(&args.api.client()?)
        .await
        .context("Error listing cluster links")?;
    let links: Vec<LinkView> = peerings.iter().map(LinkView::from).collect();
    print!(
        "{}",
        output::render_list(args.format, &LIST_HEADER, &list_rows(&links), &links)?
    );
    Ok(ExitCode::SUCCESS)
}

pub fn format_show(link: &LinkView) -> anyhow::Result<String> {
    format_yaml(link)
}

async fn show(args: NameArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    let Some(raw) = read_peering(&args.api.client()?, name)
        .await
        .with_context(|| format!("Error reading cluster link {name}"))?
    else {
        bail!("Cluster link {name} not found");
    };
    let peering: Peering = serde_json::from_value(raw).context("decoding the agent's peering")?;
    print!("{}", format_show(&LinkView::from(&peering))?);
    Ok(ExitCode::SUCCESS)
}

async fn delete(args: NameArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    peering_api::delete_peering(&args.api.client()?, name)
        .await
        .with_context(|| format!("Error deleting cluster link {name}"))?;
    println!("Cluster link {name} deleted");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::super::output::ListFormat;
    use super::super::{normalize_go_flags, Cli, Command};
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> LinkCommand {
        let cli = Cli::try_parse_from(normalize_go_flags(args.iter().map(OsString::from)))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        match cli.command {
            Command::Cluster(ClusterCommand::Link(command)) => command,
            _ => panic!("not a cluster link command"),
        }
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        let mut full = vec!["isthmus", "cluster", "link", "create"];
        full.extend_from_slice(args);
        match parse(&full) {
            LinkCommand::Create(args) => args,
            _ => panic!("not create"),
        }
    }

    #[test]
    fn create_without_a_token_asks_for_one() {
        let args = create_args(&[
            "cluster_b",
            "--auth-group",
            "clusters",
            "--auth-group=link",
            "--description",
            "the B side",
        ]);
        let CreateRequest::Token(request) = create_request(&args) else {
            panic!("expected a token request")
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "PeerName": "cluster_b",
                "Meta": {"description": "the B side"},
                "AuthGroups": ["clusters", "link"]
            })
        );
        assert!(!args.quiet);
        assert!(create_args(&["x", "-q"]).quiet);
        assert!(create_args(&["x", "--quiet"]).quiet);
    }

    #[test]
    fn create_with_a_token_establishes() {
        let args = create_args(&[
            "cluster_a",
            "--token",
            "dG9rZW4=",
            "-auth-group",
            "clusters",
        ]);
        let CreateRequest::Establish(request) = create_request(&args) else {
            panic!("expected an establish request")
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "PeerName": "cluster_a",
                "PeeringToken": "dG9rZW4=",
                "AuthGroups": ["clusters"]
            })
        );
    }

    #[test]
    fn other_subcommands_parse() {
        let LinkCommand::List(args) = parse(&["isthmus", "cluster", "link", "ls", "-f", "yaml"])
        else {
            panic!("not list")
        };
        assert_eq!(args.format, ListFormat::Yaml);
        assert!(matches!(
            parse(&["isthmus", "cluster", "link", "show", "cluster_b", "-http-addr", "h:1"]),
            LinkCommand::Show(NameArgs { ref name, .. }) if name == "cluster_b"
        ));
        assert!(matches!(
            parse(&["isthmus", "cluster", "link", "delete", "cluster_b"]),
            LinkCommand::Delete(_)
        ));
    }

    fn sample() -> Vec<LinkView> {
        let mut active = Peering {
            name: "cluster_b".into(),
            state: "ACTIVE".into(),
            peer_id: "e83a315c".into(),
            peer_server_addresses: vec!["10.0.0.1:8443".into(), "10.0.0.2:8443".into()],
            ..Peering::default()
        };
        active.meta.insert("description".into(), "backups".into());
        let pending = Peering {
            name: "cluster_c".into(),
            state: "PENDING".into(),
            ..Peering::default()
        };
        let failing = Peering {
            name: "cluster_d".into(),
            state: "FAILING".into(),
            ..Peering::default()
        };
        [active, pending, failing]
            .iter()
            .map(LinkView::from)
            .collect()
    }

    #[test]
    fn list_is_an_lxd_table() {
        let links = sample();
        let table =
            output::render_list(ListFormat::Table, &LIST_HEADER, &list_rows(&links), &links)
                .unwrap();
        assert_eq!(
            table,
            "\
+-----------+---------------+-------------+-----------------+---------+------+
|   NAME    |   ADDRESSES   | DESCRIPTION | IDENTITY STATUS |  STATE  | TYPE |
+-----------+---------------+-------------+-----------------+---------+------+
| cluster_b | 10.0.0.1:8443 | backups     | ACTIVE          | ACTIVE  | user |
|           | 10.0.0.2:8443 |             |                 |         |      |
+-----------+---------------+-------------+-----------------+---------+------+
| cluster_c |               |             | PENDING         | PENDING | user |
+-----------+---------------+-------------+-----------------+---------+------+
| cluster_d |               |             | ACTIVE          | FAILING | user |
+-----------+---------------+-------------+-----------------+---------+------+
"
        );
        let json = output::render_list(ListFormat::Json, &LIST_HEADER, &[], &links).unwrap();
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed[0]["identity_status"], "ACTIVE");
        assert_eq!(parsed[1]["type"], "user");
    }

    #[test]
    fn show_is_yaml() {
        assert_eq!(
            format_show(&sample()[0]).unwrap(),
            "\
name: cluster_b
description: backups
addresses:
- 10.0.0.1:8443
- 10.0.0.2:8443
identity_status: ACTIVE
state: ACTIVE
peer_id: e83a315c
type: user
"
        );
        assert_eq!(
            format_show(&sample()[1]).unwrap(),
            "\
name: cluster_c
description: \"\"
addresses: []
identity_status: PENDING
state: PENDING
peer_id: \"\"
type: user
"
        );
    }
}
