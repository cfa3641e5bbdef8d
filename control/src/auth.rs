//! Auth groups and identities in the store. Identities are the peerings'
//! `tls/<name>` identities, so their groups live on the peering record.

use isthmus_api::auth::{self, Group, Identity, Permission};

use crate::peering;
use crate::store::{Reads, StoreError, Table, Txn};

fn builtin_group() -> Group {
    Group {
        name: auth::BUILTIN_PEERING_GROUP.into(),
        description: "Built in: a peer may see and reach exactly what is exported to it".into(),
        permissions: auth::builtin_peering_permissions(),
        builtin: true,
        create_index: 0,
        modify_index: 0,
    }
}

/// Why a change to auth groups or identities failed, with the texts the
/// CLI shows.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    InvalidGroupName(String),
    #[error("{0}")]
    InvalidPermission(String),
    #[error("group {name:?} is built in and cannot be changed or deleted")]
    BuiltinGroup { name: String },
    #[error("Group {name:?} already exists")]
    GroupExists { name: String },
    #[error("Group {name:?} not found")]
    GroupNotFound { name: String },
    #[error("Group {group:?} already has permission \"{permission}\"")]
    PermissionPresent {
        group: String,
        permission: Permission,
    },
    #[error("Group {group:?} does not have permission \"{permission}\"")]
    PermissionAbsent {
        group: String,
        permission: Permission,
    },
    /// Adding an identity to a group that does not exist.
    #[error("One or more groups were not found")]
    UnknownGroups,
    #[error("Identity \"tls/{name}\" not found")]
    IdentityNotFound { name: String },
    #[error("Identity \"tls/{name}\" is not in group {group:?}")]
    NotInGroup { name: String, group: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn not_found(name: &str) -> AuthError {
    AuthError::GroupNotFound {
        name: name.to_owned(),
    }
}

fn refuse_builtin(name: &str) -> Result<(), AuthError> {
    if name == auth::BUILTIN_PEERING_GROUP {
        return Err(AuthError::BuiltinGroup {
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub fn list_groups(r: &impl Reads) -> Result<Vec<Group>, StoreError> {
    let mut groups = vec![builtin_group()];
    groups.extend(r.scan::<Group>(Table::AuthGroups, "")?);
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

pub fn get_group(r: &impl Reads, name: &str) -> Result<Option<Group>, StoreError> {
    if name == auth::BUILTIN_PEERING_GROUP {
        return Ok(Some(builtin_group()));
    }
    r.get(Table::AuthGroups, name)
}

pub fn create_group(txn: &mut Txn, name: &str, description: &str) -> Result<Group, AuthError> {
    auth::validate_group_name(name).map_err(AuthError::InvalidGroupName)?;
    if get_group(txn, name)?.is_some() {
        return Err(AuthError::GroupExists {
            name: name.to_owned(),
        });
    }
    let index = txn.index();
    let group = Group {
        name: name.to_owned(),
        description: description.to_owned(),
        permissions: Vec::new(),
        builtin: false,
        create_index: index,
        modify_index: index,
    };
    txn.put(Table::AuthGroups, name, &group)?;
    Ok(group)
}

/// Deletes a group and takes it off every identity that had it.
pub fn delete_group(txn: &mut Txn, name: &str) -> Result<(), AuthError> {
    refuse_builtin(name)?;
    if !txn.delete(Table::AuthGroups, name)? {
        return Err(not_found(name));
    }
    for mut record in peering::list(txn)? {
        if record.groups.iter().any(|g| g == name) {
            record.groups.retain(|g| g != name);
            peering::put(txn, record)?;
        }
    }
    Ok(())
}

pub fn change_permission(
    txn: &mut Txn,
    group: &str,
    permission: Permission,
    add: bool,
) -> Result<(), AuthError> {
    refuse_builtin(group)?;
    permission
        .validate()
        .map_err(AuthError::InvalidPermission)?;
    let mut stored: Group = txn
        .get(Table::AuthGroups, group)?
        .ok_or_else(|| not_found(group))?;
    let present = stored.permissions.contains(&permission);
    match (add, present) {
        (true, true) => {
            return Err(AuthError::PermissionPresent {
                group: group.to_owned(),
                permission,
            })
        }
        (false, false) => {
            return Err(AuthError::PermissionAbsent {
                group: group.to_owned(),
                permission,
            })
        }
        (true, false) => stored.permissions.push(permission),
        (false, true) => stored.permissions.retain(|p| *p != permission),
    }
    stored.modify_index = txn.index();
    txn.put(Table::AuthGroups, group, &stored)?;
    Ok(())
}

pub fn identities(r: &impl Reads) -> Result<Vec<Identity>, StoreError> {
    Ok(peering::list(r)?.iter().map(|p| p.identity()).collect())
}

pub fn identity(r: &impl Reads, name: &str) -> Result<Identity, AuthError> {
    peering::get(r, name)?
        .map(|p| p.identity())
        .ok_or_else(|| AuthError::IdentityNotFound {
            name: name.to_owned(),
        })
}

/// Adds or removes one group on identity `tls/<name>`.
pub fn change_identity_group(
    txn: &mut Txn,
    name: &str,
    group: &str,
    add: bool,
) -> Result<(), AuthError> {
    let mut record = peering::get(txn, name)?.ok_or_else(|| AuthError::IdentityNotFound {
        name: name.to_owned(),
    })?;
    if add {
        if get_group(txn, group)?.is_none() {
            return Err(AuthError::UnknownGroups);
        }
        if record.groups.iter().any(|g| g == group) {
            return Ok(());
        }
        record.groups.push(group.to_owned());
    } else {
        if !record.groups.iter().any(|g| g == group) {
            return Err(AuthError::NotInGroup {
                name: name.to_owned(),
                group: group.to_owned(),
            });
        }
        record.groups.retain(|g| g != group);
    }
    peering::put(txn, record)?;
    Ok(())
}
