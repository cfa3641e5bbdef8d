//! `GET /v1/internal/ui/peering-gateways`: each peering with what the
//! leader's probes of the peer's mesh gateways last found (see
//! [`crate::peering::gateway_probe`]), for `isthmus peering gateways` and
//! the web UI's Peers page.
//!
//! The probe results are live figures kept by the leader, not stored
//! state: the endpoint answers at once (no blocking query; readers poll
//! it), and an agent that does not lead asks the leader.

use axum::body::Body;
use axum::extract::{Query, State as Extract};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use isthmus_api::acl::{Access, Resource};
use isthmus_api::peering_gateways::PeerGateway;

use super::authz::Authz;
use super::error::ApiError;
use super::{json_response, Params, State};
use crate::peering;

pub async fn list(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Filtered like `/v1/peerings`: all of them with peering:read.
    authz.require(Resource::Peering, "", Access::Read)?;
    if let Some(leader) = super::relay::leader_elsewhere(&state, &headers)? {
        let path = uri
            .path_and_query()
            .map_or(uri.path(), |p| p.as_str())
            .to_owned();
        return super::relay::request_leader(
            &state,
            &leader,
            Method::GET,
            &path,
            headers,
            Body::empty(),
        )
        .await;
    }
    let snapshot = state.store.snapshot()?;
    let mut gateways = Vec::new();
    for record in peering::list(&snapshot)? {
        let status = state
            .peering
            .probes
            .status(&record.name)
            .unwrap_or_default();
        gateways.push(PeerGateway {
            services: peering::imported_names(&snapshot, &record.name)?.len(),
            state: record.state.clone(),
            alive: status.alive,
            latency_ms: status.latency.map(|d| d.as_secs_f64() * 1000.0),
            last_probe: status.last_probe_rfc3339(),
            last_error: status.last_error,
            addresses: if status.addresses.is_empty() {
                record.peer_server_addresses
            } else {
                status.addresses
            },
            peer: record.name,
        });
    }
    gateways.sort_by(|a, b| a.peer.cmp(&b.peer));
    Ok(json_response(&params, &gateways, None))
}
