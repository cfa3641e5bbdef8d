//! Endpoints only this cluster's mesh gateways call: the gateway's view,
//! and the peering exchange and stream forwarded from peers.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State as Extract};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::StreamExt;
use isthmus_api::gateway::{GatewayPeer, GatewayView};
use isthmus_api::peering::{self as api, ExchangeRequest, StreamMessage};
use tokio::sync::mpsc;

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json, json_response, Params, State};
use crate::metrics::{Direction, MessageType};
use crate::peering::stream::{LineReader, ReadError, SessionEnd};
use crate::peering::{self, secret_matches, Role};
use crate::store::{Reads, Snapshot, StoreError, Table};
use isthmus_api::peering_framing::{FrameError, MAX_OPEN_LINE_BYTES};

const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// An exchange is a few KiB (identity, CA roots, addresses).
const MAX_EXCHANGE_BODY_BYTES: usize = 64 * 1024;

fn view(state: &super::AgentState, snap: &Snapshot) -> Result<GatewayView, StoreError> {
    let gateway = state.ca.gateway_cert();
    let mut peers = Vec::new();
    let mut endpoints = std::collections::BTreeMap::new();
    for record in peering::list(snap)? {
        let established = record.established();
        peers.push(GatewayPeer {
            name: record.name.clone(),
            state: record.state.clone(),
            trust_domain: record.peer_trust_domain.clone(),
            root_pems: record.peer_ca_pems.clone(),
            identity: record.identity_name(),
            groups: record.groups.clone(),
            permissions: peering::permissions(snap, &record.groups)?,
            exported_services: if established {
                peering::exported_names(snap, &record)?
            } else {
                Vec::new()
            },
        });
    }
    for peer in &peers {
        for service in &peer.exported_services {
            if !endpoints.contains_key(service) {
                let addresses = crate::catalog::sidecar_endpoints(snap, &state.node, service)?;
                endpoints.insert(service.clone(), addresses);
            }
        }
    }
    Ok(GatewayView {
        cluster: state.cluster.name.clone(),
        trust_domain: state.cluster.trust_domain.clone(),
        server_name: api::server_name(&state.cluster.name, &state.cluster.trust_domain),
        certificate_pem: gateway.cert_pem.clone(),
        private_key_pem: gateway.key_pem.clone(),
        fingerprint: gateway.fingerprint.clone(),
        local_root_pems: state.ca.root_pems(),
        peers,
        endpoints,
    })
}

/// Only this cluster's mesh gateways may call these endpoints: the view
/// carries the gateway's certificate and key. A gateway's token is one
/// with the `mesh-gateway` service identity (write on that service).
fn require_gateway(authz: &Authz) -> Result<(), ApiError> {
    authz.require(
        Resource::Service,
        isthmus_api::gateway::SERVICE_NAME,
        Access::Write,
    )
}

pub async fn gateway_view(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    require_gateway(&authz)?;
    blocking_json(&state, &params, |snap| {
        let index = [
            Table::Peerings,
            Table::AuthGroups,
            Table::ConfigEntries,
            Table::Services,
            // Sidecar health decides the passthrough endpoints.
            Table::Checks,
            // The gateway certificate, renewed live.
            Table::Meta,
        ]
        .into_iter()
        .map(|t| snap.table_index(t))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(0)
        .max(state.ca.roots_index());
        Ok((view(&state, snap)?, index))
    })
    .await
}

pub async fn exchange(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_gateway(&authz)?;
    if let Some(leader) = super::relay::leader_elsewhere(&state, &headers)? {
        return super::relay::to_leader(&state, &leader, api::AGENT_PATH_EXCHANGE, headers, body)
            .await;
    }
    let fingerprint = headers
        .get(api::HEADER_CLIENT_FINGERPRINT)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "the exchange must come through a mesh gateway (no client certificate fingerprint)",
            )
        })?
        .to_owned();
    // The gateway already bounds the body (exchange_max_body_bytes); this
    // bound holds for any caller of the agent's own port too.
    let body = axum::body::to_bytes(body, MAX_EXCHANGE_BODY_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("peering exchange body: {e} (limit: {MAX_EXCHANGE_BODY_BYTES} bytes)"),
            )
        })?;
    let request: ExchangeRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Body decoding failed: {e}")))?;
    let response = peering::token::exchange(state.peering.clone(), fingerprint, request).await?;
    Ok(json_response(&params, &response, None))
}

fn invalid_stream(reason: &str) -> ApiError {
    ApiError::new(
        http::StatusCode::FORBIDDEN,
        format!("invalid peering stream secret: {reason}"),
    )
}

/// The acceptor's end of a replication stream: checks the dialer's `Open`,
/// then answers with a streaming body while a session runs.
pub async fn stream(
    Extract(state): Extract<State>,
    authz: Authz,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_gateway(&authz)?;
    if let Some(leader) = super::relay::leader_elsewhere(&state, &headers)? {
        return super::relay::to_leader(&state, &leader, api::AGENT_PATH_STREAM, headers, body)
            .await;
    }
    let gateway_peer = headers
        .get(api::HEADER_PEER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::bad_request("the stream must come through a mesh gateway (no peer identity)")
        })?;
    let incoming = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| e.to_string()));
    // The Open line is read before the secret is checked: a small limit.
    let mut reader = LineReader::new(Box::pin(incoming), MAX_OPEN_LINE_BYTES);
    let first = tokio::time::timeout(OPEN_TIMEOUT, reader.next_message())
        .await
        .map_err(|_| ApiError::bad_request("no Open message on the peering stream"))?
        .map_err(|e| {
            tracing::info!(peer = %gateway_peer, error = %e, "refused a peering stream: unreadable Open");
            match e {
                ReadError::Protocol(FrameError::TooLong(_)) => {
                    ApiError::new(http::StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
                }
                e => ApiError::bad_request(e.to_string()),
            }
        })?;
    let Some(StreamMessage::Open {
        peer_id,
        stream_secret,
    }) = first
    else {
        return Err(ApiError::bad_request(
            "the first message on a peering stream must be Open",
        ));
    };
    let record = peering::find_by_id(&state.store.snapshot()?, &peer_id)?
        .filter(|r| r.role == Role::Acceptor)
        .ok_or_else(|| invalid_stream("peering not found"))?;
    if record.name != gateway_peer {
        return Err(invalid_stream(
            "the client certificate belongs to another peer",
        ));
    }
    if matches!(
        record.state.as_str(),
        api::STATE_TERMINATED | api::STATE_DELETING | api::STATE_PENDING
    ) {
        return Err(invalid_stream(&format!("peering is {}", record.state)));
    }
    if !record
        .stream_secret
        .as_deref()
        .is_some_and(|stored| secret_matches(&stream_secret, stored))
    {
        return Err(invalid_stream("secret does not match"));
    }
    state
        .metrics
        .peers
        .peer(&record.name)
        .count(Direction::Received, MessageType::Open);
    reader.set_max_line(state.config.peering_max_message_bytes);
    let (outgoing, receiver) = mpsc::channel::<bytes::Bytes>(64);
    let session_state = state.clone();
    let name = record.name.clone();
    tokio::spawn(async move {
        let end =
            peering::stream::run_session(session_state.peering.clone(), name, reader, outgoing)
                .await;
        if end == SessionEnd::PeerTerminated {
            tracing::info!("peer deleted the peering; it is TERMINATED here");
        }
    });
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, std::io::Error>(bytes), receiver))
    });
    Ok(Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(frames))
        .expect("valid response"))
}

/// `/v1/health/service/<name>?peer=<peer>`: imported instances.
pub fn imported_entries(
    snap: &Snapshot,
    peer: &str,
    service: &str,
    passing_only: bool,
) -> Result<(Vec<isthmus_api::catalog::ServiceEntry>, u64), StoreError> {
    let mut entries = peering::imported_service(snap, peer, service)?;
    if passing_only {
        entries.retain(|e| e.aggregate_status() == isthmus_api::catalog::STATUS_PASSING);
    }
    Ok((entries, snap.table_index(Table::Imported)?))
}
