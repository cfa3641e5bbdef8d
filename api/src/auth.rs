//! Auth groups, permissions and identities (LXD's fine-grained auth,
//! mapped onto a mesh).
//!
//! A request from a peered cluster is authenticated by its client
//! certificate → its identity `tls/<link-name>` → the identity's groups →
//! their permissions. An identity with no group may do nothing.

use serde::{Deserialize, Serialize};

/// Given to peerings created without `--auth-group` (the Consul flow): a
/// peer may read and reach exactly what is exported to it.
pub const BUILTIN_PEERING_GROUP: &str = "peering";

pub const ENTITY_SERVER: &str = "server";
pub const ENTITY_SERVICE: &str = "service";
pub const ENTITY_INSTANCE: &str = "instance";

/// Entitlements on the `server` entity (no entity name).
pub const SERVER_ENTITLEMENTS: &[&str] = &[
    "admin",
    "viewer",
    "can_create_cluster_links",
    "can_view_cluster_links",
    "can_edit_cluster_links",
    "can_delete_cluster_links",
    "permission_manager",
];
/// Entitlements on `service [<name>]` (no name: every service).
pub const SERVICE_ENTITLEMENTS: &[&str] = &["can_view", "can_connect"];
/// LXD's instance entitlements, accepted so LXD's documented commands work;
/// a mesh has no instances to manage, so they grant nothing here.
pub const INSTANCE_ENTITLEMENTS: &[&str] = &[
    "can_view",
    "can_edit",
    "can_delete",
    "can_manage_backups",
    "can_manage_snapshots",
    "can_exec",
    "can_access_console",
    "can_access_files",
    "can_connect_sftp",
    "can_update_state",
    "user",
    "operator",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Permission {
    pub entity_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    pub entitlement: String,
}

impl Permission {
    /// Checks the entity type, name and entitlement go together.
    pub fn validate(&self) -> Result<(), String> {
        let allowed = match self.entity_type.as_str() {
            ENTITY_SERVER => {
                if self.entity_name.is_some() {
                    return Err("the server entity takes no name".into());
                }
                SERVER_ENTITLEMENTS
            }
            ENTITY_SERVICE => SERVICE_ENTITLEMENTS,
            ENTITY_INSTANCE => INSTANCE_ENTITLEMENTS,
            other => {
                return Err(format!(
                    "unknown entity type {other:?}: expected server, service or instance"
                ))
            }
        };
        if !allowed.contains(&self.entitlement.as_str()) {
            return Err(format!(
                "entitlement {:?} is not valid for entity type {:?}; valid: {}",
                self.entitlement,
                self.entity_type,
                allowed.join(", ")
            ));
        }
        Ok(())
    }

    fn grants_service(&self, service: &str, entitlement: &str) -> bool {
        match self.entity_type.as_str() {
            ENTITY_SERVER => {
                self.entitlement == "admin"
                    || (self.entitlement == "viewer" && entitlement == "can_view")
            }
            ENTITY_SERVICE => {
                self.entitlement == entitlement
                    && self.entity_name.as_deref().is_none_or(|n| n == service)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.entity_name {
            Some(name) => write!(f, "{} {} {}", self.entity_type, name, self.entitlement),
            None => write!(f, "{} {}", self.entity_type, self.entitlement),
        }
    }
}

/// The permissions of the built-in `peering` group.
pub fn builtin_peering_permissions() -> Vec<Permission> {
    SERVICE_ENTITLEMENTS
        .iter()
        .map(|e| Permission {
            entity_type: ENTITY_SERVICE.into(),
            entity_name: None,
            entitlement: (*e).into(),
        })
        .collect()
}

/// Whether `permissions` let a peer read `service`'s health.
pub fn can_view_service(permissions: &[Permission], service: &str) -> bool {
    permissions
        .iter()
        .any(|p| p.grants_service(service, "can_view"))
}

/// Whether `permissions` let a peer's workloads connect to `service`.
pub fn can_connect_service(permissions: &[Permission], service: &str) -> bool {
    permissions
        .iter()
        .any(|p| p.grants_service(service, "can_connect"))
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Built-in groups cannot be changed or deleted.
    #[serde(default)]
    pub builtin: bool,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A group name: like a DNS label, `_` allowed.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid group name {name:?}: use 1 to 63 letters, digits, '-' or '_'"
        ))
    }
}

/// An identity, as `auth identity list|show` present it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Identity {
    /// `tls`.
    pub authentication_method: String,
    /// `Cluster link certificate` or `Cluster link certificate (pending)`.
    pub r#type: String,
    /// The link (peering) name.
    pub name: String,
    /// SHA-256 of the peer's pinned certificate (empty while pending).
    pub identifier: String,
    pub groups: Vec<String>,
    /// The peer's CA trust domain once known.
    #[serde(default)]
    pub trust_domain: String,
}

/// Body of `POST`/`DELETE /v1/auth/groups/<name>/permissions`.
pub type PermissionChange = Permission;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct GroupCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

mod schemas {
    //! The request bodies' key schemas (see [`crate::consul_json`]).
    use crate::consul_json::{value, ConsulBody, Schema};

    use super::{GroupCreate, Permission};

    const GROUP_CREATE: Schema = Schema::closed(&[value("Name"), value("Description")]);

    /// Open: the type ignores unknown fields.
    const PERMISSION: Schema = Schema::open(&[
        value("EntityType"),
        value("EntityName"),
        value("Entitlement"),
    ]);

    impl ConsulBody for GroupCreate {
        const SCHEMA: &'static Schema = &GROUP_CREATE;
    }

    impl ConsulBody for Permission {
        const SCHEMA: &'static Schema = &PERMISSION;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: &str, n: Option<&str>, e: &str) -> Permission {
        Permission {
            entity_type: t.into(),
            entity_name: n.map(Into::into),
            entitlement: e.into(),
        }
    }

    #[test]
    fn entitlements_grant_what_they_say() {
        assert!(can_view_service(&[perm("server", None, "admin")], "web"));
        assert!(can_view_service(&[perm("server", None, "viewer")], "web"));
        assert!(!can_connect_service(
            &[perm("server", None, "viewer")],
            "web"
        ));
        assert!(can_view_service(
            &[perm("service", Some("web"), "can_view")],
            "web"
        ));
        assert!(!can_view_service(
            &[perm("service", Some("web"), "can_view")],
            "db"
        ));
        assert!(can_view_service(&builtin_peering_permissions(), "anything"));
        assert!(!can_view_service(
            &[perm("instance", None, "can_manage_backups")],
            "web"
        ));
        assert!(!can_view_service(&[], "web"));
    }

    #[test]
    fn permissions_are_validated() {
        assert!(perm("server", None, "admin").validate().is_ok());
        assert!(perm("instance", None, "can_manage_backups")
            .validate()
            .is_ok());
        assert!(perm("server", Some("x"), "admin").validate().is_err());
        assert!(perm("service", None, "admin").validate().is_err());
        assert!(perm("cluster", None, "admin").validate().is_err());
    }
}
