//! Auth groups and identities in the store. Identities are the peerings'
//! `tls/<name>` identities, so their groups live on the peering record.

use isthmus_api::auth::{self, Group, Identity, Permission};

use crate::error::ApiError;
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

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Group {name:?} not found"))
}

fn refuse_builtin(name: &str) -> Result<(), ApiError> {
    if name == auth::BUILTIN_PEERING_GROUP {
        return Err(ApiError::bad_request(format!(
            "group {name:?} is built in and cannot be changed or deleted"
        )));
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

pub fn create_group(txn: &mut Txn, name: &str, description: &str) -> Result<Group, ApiError> {
    auth::validate_group_name(name).map_err(ApiError::bad_request)?;
    if get_group(txn, name)?.is_some() {
        return Err(ApiError::new(
            http::StatusCode::CONFLICT,
            format!("Group {name:?} already exists"),
        ));
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
pub fn delete_group(txn: &mut Txn, name: &str) -> Result<(), ApiError> {
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
) -> Result<(), ApiError> {
    refuse_builtin(group)?;
    permission.validate().map_err(ApiError::bad_request)?;
    let mut stored: Group = txn
        .get(Table::AuthGroups, group)?
        .ok_or_else(|| not_found(group))?;
    let present = stored.permissions.contains(&permission);
    match (add, present) {
        (true, true) => {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("Group {group:?} already has permission \"{permission}\""),
            ))
        }
        (false, false) => {
            return Err(ApiError::not_found(format!(
                "Group {group:?} does not have permission \"{permission}\""
            )))
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

pub fn identity(r: &impl Reads, name: &str) -> Result<Identity, ApiError> {
    peering::get(r, name)?
        .map(|p| p.identity())
        .ok_or_else(|| ApiError::not_found(format!("Identity \"tls/{name}\" not found")))
}

/// Adds or removes one group on identity `tls/<name>`.
pub fn change_identity_group(
    txn: &mut Txn,
    name: &str,
    group: &str,
    add: bool,
) -> Result<(), ApiError> {
    let mut record = peering::get(txn, name)?
        .ok_or_else(|| ApiError::not_found(format!("Identity \"tls/{name}\" not found")))?;
    if add {
        if get_group(txn, group)?.is_none() {
            return Err(ApiError::bad_request("One or more groups were not found"));
        }
        if record.groups.iter().any(|g| g == group) {
            return Ok(());
        }
        record.groups.push(group.to_owned());
    } else {
        if !record.groups.iter().any(|g| g == group) {
            return Err(ApiError::not_found(format!(
                "Identity \"tls/{name}\" is not in group {group:?}"
            )));
        }
        record.groups.retain(|g| g != group);
    }
    peering::put(txn, record)?;
    Ok(())
}
