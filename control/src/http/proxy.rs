//! Endpoints sidecar proxies watch: trust and policy, and where upstreams are.

use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use isthmus_api::naming::{self, SpiffeId};
use isthmus_api::peering as api;
use isthmus_api::proxy::{PeerTrust, ProxyView, UpstreamView};

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::AgentState;
use super::{blocking_json, Params, State};
use crate::peering;
use crate::store::{Reads, Snapshot};

/// A sidecar reads the intentions of its own service (its token's service
/// identity grants `intentions = "read"` through service write); without
/// `?service=`, every intention is read, which needs read on all of them.
pub async fn view(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    let service = params.get("service").filter(|s| !s.is_empty());
    authz.require(
        Resource::Intention,
        service.map_or("*", String::as_str),
        Access::Read,
    )?;
    blocking_json(&state, &params, |snap| {
        let mut peers = Vec::new();
        for record in peering::list(snap)? {
            if !record.established() || record.peer_ca_pems.is_empty() {
                continue;
            }
            let exported_services = peering::exported_names(snap, &record)?;
            let connectable_services =
                peering::connectable_names(snap, &record, &exported_services)?;
            peers.push(PeerTrust {
                name: record.name,
                trust_domain: record.peer_trust_domain,
                datacenter: record.remote.datacenter,
                root_pems: record.peer_ca_pems,
                exported_services,
                connectable_services,
            });
        }
        // With `?service=`, only the entries that concern the sidecar's own
        // service (its entry and `*`): smaller, and it sleeps through
        // changes to others' intentions. Without it, every entry.
        let intentions = match params.get("service").filter(|s| !s.is_empty()) {
            Some(service) => crate::config_entries::intentions_for(snap, service)?,
            None => crate::config_entries::service_intentions(snap)?,
        };
        // Read so that a reload changing the default policy wakes this query.
        let _: Option<String> = snap.get(
            crate::store::Table::Meta,
            crate::agent_lifecycle::POLICY_RELOADED_KEY,
        )?;
        let view = ProxyView {
            cluster: state.cluster.name.clone(),
            trust_domain: state.cluster.trust_domain.clone(),
            default_allow: state.default_allow(),
            local_root_pems: state.ca.root_pems(),
            peers,
            intentions,
        };
        // Where what the view was read from last changed: registrations of
        // more instances of known services do not move it.
        let index = snap.watch_index().max(state.ca.roots_index());
        Ok((view, index))
    })
    .await
}

pub async fn upstream(
    Extract(state): Extract<State>,
    Path(service): Path<String>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    naming::validate_dns_label("service name", &service).map_err(ApiError::bad_request)?;
    authz.require(Resource::Service, &service, Access::Read)?;
    let peer = params.get("peer").filter(|p| !p.is_empty()).cloned();
    blocking_json(&state, &params, |snap| {
        let mut view = match &peer {
            None => local_upstream(&state, snap, &service)?,
            Some(peer) => peer_upstream(snap, &service, peer)?,
        };
        // A peer's service-defaults are not imported: the protocol of a
        // peer's service comes from this cluster's entries for that name.
        view.protocol = crate::config_entries::upstream_protocol(snap, &service)?;
        // Only what this upstream's view was built from: a sidecar's
        // upstream watch sleeps through changes to other services.
        Ok((view, snap.watch_index()))
    })
    .await
}

fn local_upstream(
    state: &AgentState,
    snap: &Snapshot,
    service: &str,
) -> Result<UpstreamView, ApiError> {
    let endpoints = crate::catalog::sidecar_endpoints(snap, &state.node, service)?;
    let reason = if endpoints.is_empty() {
        format!(
            "no healthy sidecar proxy for service {service} in cluster {}",
            state.cluster.name
        )
    } else {
        String::new()
    };
    Ok(UpstreamView {
        service: service.to_owned(),
        peer: None,
        trust_domain: state.cluster.trust_domain.clone(),
        sni: naming::local_sni(service, &state.cluster.name, &state.cluster.trust_domain),
        spiffe_id: SpiffeId::service(&state.cluster.trust_domain, &state.cluster.name, service)
            .to_string(),
        endpoints,
        reason,
        protocol: None,
    })
}

/// A peer's service is reached through the peer's mesh gateways, with the
/// SNI the peer routes on and the identity its sidecar must present.
fn peer_upstream(snap: &Snapshot, service: &str, peer: &str) -> Result<UpstreamView, ApiError> {
    let record = peering::get(snap, peer)?
        .ok_or_else(|| ApiError::not_found(format!("Peering not found for {peer:?}")))?;
    let healthy = peering::imported_service(snap, peer, service)?
        .iter()
        .any(|e| e.aggregate_status() == isthmus_api::catalog::STATUS_PASSING);
    let reason = if !record.established()
        || record.state == api::STATE_FAILING && record.peer_server_addresses.is_empty()
    {
        format!("peering {peer} is {}", record.state)
    } else if record.name_at_peer.is_empty() {
        format!("peering {peer} was established by an agent too old to route service traffic; re-establish it")
    } else if !healthy {
        format!("no healthy instance of {service} is imported from peer {peer}")
    } else {
        String::new()
    };
    Ok(UpstreamView {
        service: service.to_owned(),
        peer: Some(peer.to_owned()),
        trust_domain: record.peer_trust_domain.clone(),
        sni: naming::peered_sni(service, &record.name_at_peer, &record.peer_trust_domain),
        spiffe_id: SpiffeId::service(
            &record.peer_trust_domain,
            &record.remote.datacenter,
            service,
        )
        .to_string(),
        endpoints: if reason.is_empty() {
            record.peer_server_addresses.clone()
        } else {
            Vec::new()
        },
        reason,
        protocol: None,
    })
}
