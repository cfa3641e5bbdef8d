//! `/v1/peering/*`, `/v1/peerings` and `/v1/exported-services` (Consul's surface).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::config_entry::{ConfigEntry, KIND_EXPORTED_SERVICES};
use isthmus_api::peering::{self as api, EstablishRequest, TokenRequest, TokenResponse};
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use super::{blocking_json, json_response, read_json, Params, State};
use crate::config_entries;
use crate::error::ApiError;
use crate::peering::{self, Role};
use crate::store::{Reads, Table};

pub async fn token(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    body: Body,
) -> Result<Response, ApiError> {
    let request: TokenRequest = read_json(body).await?;
    let peering_token = peering::token::generate(state, request).await?;
    Ok(json_response(
        &params,
        &TokenResponse { peering_token },
        None,
    ))
}

pub async fn establish(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    body: Body,
) -> Result<Response, ApiError> {
    let request: EstablishRequest = read_json(body).await?;
    peering::dial::establish(state, request).await?;
    Ok(json_response(&params, &json!({}), None))
}

pub async fn list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    blocking_json(&state, &params, |snap| {
        let peerings = peering::list(snap)?
            .iter()
            .map(|record| peering::to_api(snap, record, state.peering.status(&record.name)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((peerings, snap.table_index(Table::Peerings)?))
    })
    .await
}

pub async fn read(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    blocking_json(&state, &params, |snap| {
        let record = peering::get(snap, &name)?
            .ok_or_else(|| ApiError::not_found(format!("Peering not found for {name:?}")))?;
        let index = snap
            .table_index(Table::Peerings)?
            .max(snap.table_index(Table::Imported)?);
        Ok((
            peering::to_api(snap, &record, state.peering.status(&name))?,
            index,
        ))
    })
    .await
}

/// Marks the peering `DELETING`, tells the peer, then removes the peering,
/// what was imported from the peer, and (with it) the peer's trust bundle.
/// Idempotent, as in Consul.
pub async fn delete(
    Extract(state): Extract<State>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let deleted_at = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("timestamps format");
    let target = name.clone();
    let record = state
        .store
        .write(move |txn| -> Result<_, ApiError> {
            let Some(mut record) = peering::get(txn, &target)? else {
                return Ok(None);
            };
            if record.state == api::STATE_DELETING {
                return Ok(None);
            }
            record.state = api::STATE_DELETING.into();
            record.deleted_at = Some(deleted_at);
            Ok(Some(peering::put(txn, record)?))
        })
        .await?;
    let Some(record) = record else {
        return Ok(Response::new(Body::empty()));
    };
    // Tell the peer over the live session first: on the dialer the session
    // runs inside the dial task, so that task is stopped only afterwards.
    let told = state
        .peering
        .terminate_session(
            &name,
            peering::stream::TERMINATE_DRAIN + Duration::from_secs(1),
        )
        .await;
    state.peering.stop_dialer(&name);
    if !told && record.role == Role::Dialer && !record.peer_trust_domain.is_empty() {
        if let Err(e) = peering::dial::send_terminate(&state, &record).await {
            tracing::warn!(peer = %name, error = %e, "could not tell the peer about the deletion; it will find out when it next connects");
        }
    }
    let target = name.clone();
    state
        .store
        .write(move |txn| -> Result<(), ApiError> {
            peering::drop_imported(txn, &target)?;
            txn.delete(Table::Peerings, &target)?;
            Ok(())
        })
        .await?;
    state.peering.forget(&name);
    state.metrics.forget_peer(&name);
    tracing::info!(peer = %name, "peering deleted");
    Ok(Response::new(Body::empty()))
}

/// `[{"Service": "web", "Consumers": {"Peers": ["east"]}}]`.
pub async fn exported_services(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
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
