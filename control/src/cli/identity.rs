//! `isthmus auth identity list|show|group add|group remove`: the identities
//! linked clusters authenticate as, written `tls/<link-name>` as LXD does.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http::Method;
use isthmus_api::auth::Identity;
use isthmus_runtime::client::encode;
use serde::Serialize;
use serde_json::json;

use super::lxd::{format_yaml, send, ListArgs};
use super::output;
use super::ApiArgs;

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// List identities.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show an identity, written tls/<name>.
    Show(IdentityArgs),
    /// Add an identity to a group or remove it from one.
    #[command(subcommand)]
    Group(IdentityGroupCommand),
}

#[derive(Subcommand)]
pub enum IdentityGroupCommand {
    /// Add an identity (tls/<name>) to a group.
    Add(IdentityGroupArgs),
    /// Remove an identity (tls/<name>) from a group.
    #[command(visible_alias = "rm")]
    Remove(IdentityGroupArgs),
}

#[derive(Args)]
pub struct IdentityArgs {
    /// The identity, written <authentication-method>/<name>: tls/<cluster-link-name>.
    #[arg(value_name = "METHOD/NAME")]
    identity: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct IdentityGroupArgs {
    /// The identity, written <authentication-method>/<name>: tls/<cluster-link-name>.
    #[arg(value_name = "METHOD/NAME")]
    identity: String,
    /// The group.
    group: String,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::List(args) => identity_list(args).await,
        IdentityCommand::Show(args) => identity_show(args).await,
        IdentityCommand::Group(command) => identity_group(command).await,
    }
}

/// The name in `tls/<name>`, the only authentication method identities have.
pub fn parse_identity(identity: &str) -> anyhow::Result<&str> {
    match identity.split_once('/') {
        Some((method, name)) if !method.is_empty() && !name.is_empty() && !name.contains('/') => {
            if method != "tls" {
                bail!("unsupported authentication method {method:?} in {identity:?}: isthmus identities are tls/<name>");
            }
            Ok(name)
        }
        _ => bail!("identity must be written <authentication-method>/<name>, e.g. tls/cluster_b"),
    }
}

/// An identifier as LXD lists it: the first 12 characters.
pub fn short_identifier(identifier: &str) -> String {
    identifier.chars().take(12).collect()
}

fn identity_path(name: &str) -> String {
    format!("/v1/auth/identities/tls/{}", encode(name))
}

/// An identity as `list -f json|yaml` and `show` present it.
#[derive(Debug, Serialize)]
pub struct IdentityView {
    pub authentication_method: String,
    #[serde(rename = "type")]
    pub identity_type: String,
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
    pub trust_domain: String,
}

impl From<&Identity> for IdentityView {
    fn from(i: &Identity) -> IdentityView {
        IdentityView {
            authentication_method: i.authentication_method.clone(),
            identity_type: i.r#type.clone(),
            id: i.identifier.clone(),
            name: i.name.clone(),
            groups: i.groups.clone(),
            trust_domain: i.trust_domain.clone(),
        }
    }
}

pub const IDENTITY_HEADER: [&str; 5] = [
    "AUTHENTICATION METHOD",
    "TYPE",
    "NAME",
    "IDENTIFIER",
    "GROUPS",
];

pub fn identity_rows(identities: &[IdentityView]) -> Vec<Vec<String>> {
    identities
        .iter()
        .map(|i| {
            vec![
                i.authentication_method.clone(),
                i.identity_type.clone(),
                i.name.clone(),
                short_identifier(&i.id),
                i.groups.join("\n"),
            ]
        })
        .collect()
}

async fn identity_list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (mut identities, _): (Vec<Identity>, _) = args
        .api
        .client()?
        .get_json("/v1/auth/identities")
        .await
        .context("Error listing identities")?;
    identities.sort_by(|a, b| {
        (&a.authentication_method, &a.name).cmp(&(&b.authentication_method, &b.name))
    });
    let views: Vec<IdentityView> = identities.iter().map(IdentityView::from).collect();
    print!(
        "{}",
        output::render_list(
            args.format,
            &IDENTITY_HEADER,
            &identity_rows(&views),
            &views
        )?
    );
    Ok(ExitCode::SUCCESS)
}

async fn identity_show(args: IdentityArgs) -> anyhow::Result<ExitCode> {
    let name = parse_identity(&args.identity)?;
    let (identity, _): (Identity, _) = args
        .api
        .client()?
        .get_json(&identity_path(name))
        .await
        .with_context(|| format!("Error reading identity tls/{name}"))?;
    print!("{}", format_yaml(&IdentityView::from(&identity))?);
    Ok(ExitCode::SUCCESS)
}

async fn identity_group(command: IdentityGroupCommand) -> anyhow::Result<ExitCode> {
    let (args, add) = match command {
        IdentityGroupCommand::Add(args) => (args, true),
        IdentityGroupCommand::Remove(args) => (args, false),
    };
    let name = parse_identity(&args.identity)?;
    let group = &args.group;
    let client = args.api.client()?;
    let groups_path = format!("{}/groups", identity_path(name));
    if add {
        send(
            &client,
            Method::POST,
            &groups_path,
            &json!({ "Group": group }),
        )
        .await
        .with_context(|| format!("Error adding identity tls/{name} to group {group}"))?;
    } else {
        client
            .call(
                Method::DELETE,
                &format!("{groups_path}/{}", encode(group)),
                None,
            )
            .await
            .with_context(|| format!("Error removing identity tls/{name} from group {group}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_written_tls_slash_name() {
        assert_eq!(parse_identity("tls/cluster_b").unwrap(), "cluster_b");
        for bad in ["cluster_b", "tls/", "/x", "tls/a/b", ""] {
            assert_eq!(
                parse_identity(bad).unwrap_err().to_string(),
                "identity must be written <authentication-method>/<name>, e.g. tls/cluster_b",
                "{bad:?}"
            );
        }
        assert!(parse_identity("oidc/jane")
            .unwrap_err()
            .to_string()
            .contains("unsupported authentication method"));
    }

    #[test]
    fn identity_output() {
        let identity = Identity {
            authentication_method: "tls".into(),
            r#type: "Cluster link certificate".into(),
            name: "cluster_b".into(),
            identifier: "7ea5b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2".into(),
            groups: vec!["clusters".into(), "backup".into()],
            trust_domain: "b1c2.isthmus".into(),
        };
        let pending = Identity {
            authentication_method: "tls".into(),
            r#type: "Cluster link certificate (pending)".into(),
            name: "cluster_c".into(),
            ..Identity::default()
        };
        let views: Vec<IdentityView> = [identity, pending].iter().map(IdentityView::from).collect();
        assert_eq!(
            output::box_table(&IDENTITY_HEADER, &identity_rows(&views)),
            "\
+-----------------------+------------------------------------+-----------+--------------+----------+
| AUTHENTICATION METHOD |                TYPE                |   NAME    |  IDENTIFIER  |  GROUPS  |
+-----------------------+------------------------------------+-----------+--------------+----------+
| tls                   | Cluster link certificate           | cluster_b | 7ea5b1c0d9e8 | clusters |
|                       |                                    |           |              | backup   |
+-----------------------+------------------------------------+-----------+--------------+----------+
| tls                   | Cluster link certificate (pending) | cluster_c |              |          |
+-----------------------+------------------------------------+-----------+--------------+----------+
"
        );
        assert_eq!(
            format_yaml(&views[0]).unwrap(),
            "\
authentication_method: tls
type: Cluster link certificate
id: 7ea5b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2
name: cluster_b
groups:
- clusters
- backup
trust_domain: b1c2.isthmus
"
        );
    }
}
