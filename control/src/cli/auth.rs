//! `isthmus auth group ...` (and the `auth identity` tree from
//! `identity.rs`): LXD's fine-grained auth. A linked cluster authenticates
//! as the identity `tls/<link-name>`; its groups' permissions say what it
//! may do.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use http::Method;
use isthmus_api::auth::{Group, GroupCreate, Permission};
use isthmus_runtime::client::encode;
use serde::Serialize;

use super::identity::{self, IdentityCommand};
use super::lxd::{format_yaml, send, ListArgs};
use super::output;
use super::ApiArgs;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Manage auth groups: named sets of permissions given to identities.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage identities: the linked clusters that may call this one.
    #[command(subcommand)]
    Identity(IdentityCommand),
}

#[derive(Subcommand)]
pub enum GroupCommand {
    /// Create an auth group (with no permissions).
    Create(GroupCreateArgs),
    /// List auth groups.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show an auth group and its permissions.
    Show(GroupArgs),
    /// Delete an auth group.
    #[command(visible_alias = "rm")]
    Delete(GroupArgs),
    /// Add or remove a group's permissions.
    #[command(subcommand)]
    Permission(PermissionCommand),
}

const PERMISSION_ADD_USAGE: &str =
    "isthmus auth group permission add [OPTIONS] <GROUP> <ENTITY_TYPE> [ENTITY_NAME] <ENTITLEMENT>";
const PERMISSION_REMOVE_USAGE: &str =
    "isthmus auth group permission remove [OPTIONS] <GROUP> <ENTITY_TYPE> [ENTITY_NAME] <ENTITLEMENT>";
const PERMISSION_HELP: &str = "\
Entity types and entitlements:
  server <entitlement>
      admin, viewer, can_create_cluster_links, can_view_cluster_links,
      can_edit_cluster_links, can_delete_cluster_links, permission_manager
  service [<name>] <entitlement>   (without a name: every service)
      can_view, can_connect
  instance [<name>] <entitlement>
      LXD's instance entitlements (can_manage_backups, ...), accepted so
      LXD's commands work; a mesh has no instances, so they grant nothing

Examples:
  isthmus auth group permission add link server admin
  isthmus auth group permission add backup service web can_view";

#[derive(Subcommand)]
pub enum PermissionCommand {
    /// Give a group a permission: <entity-type> [<entity-name>] <entitlement>.
    #[command(override_usage = PERMISSION_ADD_USAGE, after_help = PERMISSION_HELP)]
    Add(PermissionArgs),
    /// Take a permission from a group: <entity-type> [<entity-name>] <entitlement>.
    #[command(visible_alias = "rm", override_usage = PERMISSION_REMOVE_USAGE, after_help = PERMISSION_HELP)]
    Remove(PermissionArgs),
}

#[derive(Args)]
pub struct GroupCreateArgs {
    /// The group's name.
    group: String,
    /// A description of the group.
    #[arg(long, value_name = "TEXT", default_value = "")]
    description: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct GroupArgs {
    /// The group's name.
    group: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub struct PermissionArgs {
    /// The group to change.
    group: String,
    /// The entity type: server, service or instance.
    entity_type: String,
    /// With three arguments the entity's name, else the entitlement.
    #[arg(value_name = "ENTITY_NAME|ENTITLEMENT")]
    second: String,
    /// The entitlement, when an entity name is given.
    #[arg(value_name = "ENTITLEMENT")]
    third: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn run(command: AuthCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuthCommand::Group(GroupCommand::Create(args)) => group_create(args).await,
        AuthCommand::Group(GroupCommand::List(args)) => group_list(args).await,
        AuthCommand::Group(GroupCommand::Show(args)) => group_show(args).await,
        AuthCommand::Group(GroupCommand::Delete(args)) => group_delete(args).await,
        AuthCommand::Group(GroupCommand::Permission(command)) => permission(command).await,
        AuthCommand::Identity(command) => identity::run(command).await,
    }
}

/// `<entity-type> <entitlement>` or `<entity-type> <entity-name> <entitlement>`.
pub fn parse_permission(entity_type: &str, second: &str, third: Option<&str>) -> Permission {
    let (entity_name, entitlement) = match third {
        Some(entitlement) => (Some(second.to_owned()), entitlement.to_owned()),
        None => (None, second.to_owned()),
    };
    Permission {
        entity_type: entity_type.to_owned(),
        entity_name,
        entitlement,
    }
}

fn group_path(group: &str) -> String {
    format!("/v1/auth/groups/{}", encode(group))
}

#[derive(Debug, Serialize)]
pub struct PermissionView {
    pub entity_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    pub entitlement: String,
}

/// A group as `list -f json|yaml` and `show` present it.
#[derive(Debug, Serialize)]
pub struct GroupView {
    pub name: String,
    pub description: String,
    pub permissions: Vec<PermissionView>,
    pub built_in: bool,
}

impl From<&Group> for GroupView {
    fn from(g: &Group) -> GroupView {
        GroupView {
            name: g.name.clone(),
            description: g.description.clone(),
            permissions: g
                .permissions
                .iter()
                .map(|p| PermissionView {
                    entity_type: p.entity_type.clone(),
                    entity_name: p.entity_name.clone(),
                    entitlement: p.entitlement.clone(),
                })
                .collect(),
            built_in: g.builtin,
        }
    }
}

pub const GROUP_HEADER: [&str; 4] = ["NAME", "DESCRIPTION", "PERMISSIONS", "BUILT-IN"];

pub fn group_rows(groups: &[GroupView]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.description.clone(),
                g.permissions.len().to_string(),
                if g.built_in { "YES" } else { "NO" }.into(),
            ]
        })
        .collect()
}

async fn group_create(args: GroupCreateArgs) -> anyhow::Result<ExitCode> {
    let group = &args.group;
    let body = GroupCreate {
        name: group.clone(),
        description: args.description.clone(),
    };
    send(&args.api.client()?, Method::POST, "/v1/auth/groups", &body)
        .await
        .with_context(|| format!("Error creating group {group}"))?;
    println!("Group {group} created");
    Ok(ExitCode::SUCCESS)
}

async fn group_list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (mut groups, _): (Vec<Group>, _) = args
        .api
        .client()?
        .get_json("/v1/auth/groups")
        .await
        .context("Error listing groups")?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    let views: Vec<GroupView> = groups.iter().map(GroupView::from).collect();
    print!(
        "{}",
        output::render_list(args.format, &GROUP_HEADER, &group_rows(&views), &views)?
    );
    Ok(ExitCode::SUCCESS)
}

async fn group_show(args: GroupArgs) -> anyhow::Result<ExitCode> {
    let group = &args.group;
    let (found, _): (Group, _) = args
        .api
        .client()?
        .get_json(&group_path(group))
        .await
        .with_context(|| format!("Error reading group {group}"))?;
    print!("{}", format_yaml(&GroupView::from(&found))?);
    Ok(ExitCode::SUCCESS)
}

async fn group_delete(args: GroupArgs) -> anyhow::Result<ExitCode> {
    let group = &args.group;
    args.api
        .client()?
        .call(Method::DELETE, &group_path(group), None)
        .await
        .with_context(|| format!("Error deleting group {group}"))?;
    println!("Group {group} deleted");
    Ok(ExitCode::SUCCESS)
}

async fn permission(command: PermissionCommand) -> anyhow::Result<ExitCode> {
    let (args, method, doing) = match command {
        PermissionCommand::Add(args) => (args, Method::POST, "adding a permission to"),
        PermissionCommand::Remove(args) => (args, Method::DELETE, "removing a permission from"),
    };
    let permission = parse_permission(&args.entity_type, &args.second, args.third.as_deref());
    let group = &args.group;
    send(
        &args.api.client()?,
        method,
        &format!("{}/permissions", group_path(group)),
        &permission,
    )
    .await
    .with_context(|| format!("Error {doing} group {group} ({permission})"))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::super::identity::IdentityGroupCommand;
    use super::super::output::ListFormat;
    use super::super::{normalize_go_flags, Cli, Command};
    use super::*;
    use clap::Parser;
    use serde_json::json;
    use std::ffi::OsString;

    fn try_parse(args: &[&str]) -> Result<AuthCommand, clap::Error> {
        let cli = Cli::try_parse_from(normalize_go_flags(args.iter().map(OsString::from)))?;
        match cli.command {
            Command::Auth(command) => Ok(command),
            _ => panic!("not an auth command"),
        }
    }

    fn parse(args: &[&str]) -> AuthCommand {
        try_parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn permission_of(args: &[&str]) -> (String, Permission) {
        let mut full = vec!["isthmus", "auth", "group", "permission", "add"];
        full.extend_from_slice(args);
        match parse(&full) {
            AuthCommand::Group(GroupCommand::Permission(PermissionCommand::Add(a))) => (
                a.group.clone(),
                parse_permission(&a.entity_type, &a.second, a.third.as_deref()),
            ),
            _ => panic!("not permission add"),
        }
    }

    #[test]
    fn permission_positionals() {
        let (group, p) = permission_of(&["link", "server", "admin"]);
        assert_eq!(group, "link");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"EntityType": "server", "Entitlement": "admin"})
        );
        let (group, p) = permission_of(&["backup", "instance", "can_manage_backups"]);
        assert_eq!(group, "backup");
        assert_eq!((p.entity_type.as_str(), p.entity_name), ("instance", None));
        let (_, p) = permission_of(&["g", "service", "web", "can_view"]);
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"EntityType": "service", "EntityName": "web", "Entitlement": "can_view"})
        );
        let base = [
            "isthmus",
            "auth",
            "group",
            "permission",
            "add",
            "g",
            "server",
        ];
        assert!(try_parse(&base).is_err());
        assert!(try_parse(&[&base[..], &["a", "b", "c"]].concat()).is_err());
        assert!(matches!(
            parse(&[
                "isthmus",
                "auth",
                "group",
                "permission",
                "remove",
                "g",
                "server",
                "admin"
            ]),
            AuthCommand::Group(GroupCommand::Permission(PermissionCommand::Remove(_)))
        ));
    }

    #[test]
    fn lxd_commands_parse() {
        assert!(matches!(
            parse(&["isthmus", "auth", "group", "create", "link", "-description", "links"]),
            AuthCommand::Group(GroupCommand::Create(GroupCreateArgs { ref description, .. })) if description == "links"
        ));
        assert!(matches!(
            parse(&[
                "isthmus",
                "auth",
                "identity",
                "group",
                "add",
                "tls/cluster_b",
                "backup"
            ]),
            AuthCommand::Identity(IdentityCommand::Group(IdentityGroupCommand::Add(_)))
        ));
        assert!(matches!(
            parse(&[
                "isthmus",
                "auth",
                "identity",
                "show",
                "tls/cluster_b",
                "--http-addr",
                "h:1"
            ]),
            AuthCommand::Identity(IdentityCommand::Show(_))
        ));
        assert!(matches!(
            parse(&["isthmus", "auth", "group", "ls", "-f", "json"]),
            AuthCommand::Group(GroupCommand::List(ListArgs {
                format: ListFormat::Json,
                ..
            }))
        ));
    }

    fn perm(t: &str, n: Option<&str>, e: &str) -> Permission {
        parse_permission(t, n.unwrap_or(e), n.map(|_| e))
    }

    #[test]
    fn group_output() {
        let groups = [
            Group {
                name: "link".into(),
                description: "cluster links".into(),
                permissions: vec![
                    perm("server", None, "admin"),
                    perm("service", Some("web"), "can_view"),
                ],
                ..Group::default()
            },
            Group {
                name: "peering".into(),
                permissions: vec![perm("service", None, "can_view")],
                builtin: true,
                ..Group::default()
            },
        ];
        let views: Vec<GroupView> = groups.iter().map(GroupView::from).collect();
        assert_eq!(
            output::box_table(&GROUP_HEADER, &group_rows(&views)),
            "\
+---------+---------------+-------------+----------+
|  NAME   |  DESCRIPTION  | PERMISSIONS | BUILT-IN |
+---------+---------------+-------------+----------+
| link    | cluster links | 2           | NO       |
+---------+---------------+-------------+----------+
| peering |               | 1           | YES      |
+---------+---------------+-------------+----------+
"
        );
        assert_eq!(
            format_yaml(&views[0]).unwrap(),
            "\
name: link
description: cluster links
permissions:
- entity_type: server
  entitlement: admin
- entity_type: service
  entity_name: web
  entitlement: can_view
built_in: false
"
        );
    }
}
