//! `GET /v1/internal/ui/peering-gateways`: each peering with what the
//! leader's probes of the peer's mesh gateways last found (see
//! [`crate::peering::gateway_probe`]), for `isthmus peering gateways` and
//! the web UI's Peers page.
//!
//! The probe results are live figures, not stored state: the endpoint
//! answers at once (no blocking query); readers poll it.

use axum::extract::{Query, State as Extract};
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
) -> Result<Response, ApiError> {
    // Filtered like `/v1/peerings`: all of them with peering:read.
    authz.require(Resource::Peering, "", Access::Read)?;
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
