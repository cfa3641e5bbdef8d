//! `/v1/peering/*`, `/v1/peerings` and `/v1/exported-services` (Consul's surface).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::config_entry::{ConfigEntry, KIND_EXPORTED_SERVICES};
use isthmus_api::peering::{EstablishRequest, TokenRequest, TokenResponse};
use serde_json::json;

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json, json_response, ConsulJson, Params, State};
use crate::config_entries;
use crate::peering;
use crate::store::{Reads, Table};

pub async fn token(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(request): ConsulJson<TokenRequest>,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    let peering_token = peering::token::generate(state.peering.clone(), request).await?;
    Ok(json_response(
        &params,
        &TokenResponse { peering_token },
        None,
    ))
}

pub async fn establish(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    ConsulJson(request): ConsulJson<EstablishRequest>,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    peering::dial::establish(state.peering.clone(), request).await?;
    Ok(json_response(&params, &json!({}), None))
}

pub async fn list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let peerings = peering::list(snap)?
            .iter()
            .map(|record| peering::to_api(snap, record, state.peering.manager.status(&record.name)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((peerings, snap.table_index(Table::Peerings)?))
    })
    .await
}

pub async fn read(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let record = peering::get(snap, &name)?
            .ok_or_else(|| ApiError::not_found(format!("Peering not found for {name:?}")))?;
        let index = snap
            .table_index(Table::Peerings)?
            .max(snap.table_index(Table::Imported)?);
        Ok((
            peering::to_api(snap, &record, state.peering.manager.status(&name))?,
            index,
        ))
    })
    .await
}

/// Marks the peering `DELETING`, then (in a task that outlives this
/// request) tells the peer and removes the peering, what was imported from
/// the peer, and (with it) the peer's trust bundle; answers once that is
/// done. Idempotent, as in Consul: a repeated delete joins (or restarts)
/// an unfinished one.
pub async fn delete(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Peering, "", Access::Write)?;
    peering::delete::delete(&state.peering, &name).await?;
    Ok(Response::new(Body::empty()))
}

/// `[{"Service": "web", "Consumers": {"Peers": ["east"]}}]`.
pub async fn exported_services(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    authz.require(Resource::Mesh, "", Access::Read)?;
    blocking_json(&state, &params, |snap| {
        let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for record in peering::list(snap)? {
            if !record.established() {
                continue;
            }
            for service in peering::exported_names(snap, &record)? {
                by_service
                    .entry(service)
                    .or_default()
                    .push(record.name.clone());
            }
        }
        // Also list exports to peers not (yet) established, as Consul does.
        if let Some(ConfigEntry::ExportedServices(entry)) =
            config_entries::get(snap, KIND_EXPORTED_SERVICES, "default")?
        {
            for service in &entry.services {
                if service.name == "*" {
                    continue;
                }
                for consumer in &service.consumers {
                    if let Some(peer) = &consumer.peer {
                        let peers = by_service.entry(service.name.clone()).or_default();
                        if !peers.contains(peer) {
                            peers.push(peer.clone());
                        }
                    }
                }
            }
        }
        let answer: Vec<_> = by_service
            .into_iter()
            .map(|(service, mut peers)| {
                peers.sort();
                json!({"Service": service, "Consumers": {"Peers": peers}})
            })
            .collect();
        let index = snap
            .table_index(Table::ConfigEntries)?
            .max(snap.table_index(Table::Peerings)?)
            .max(snap.table_index(Table::Services)?);
        Ok((answer, index))
    })
    .await
}
