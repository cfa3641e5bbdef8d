//! Endpoints sidecar proxies watch: trust and policy, and where upstreams are.

use axum::extract::{Path, Query, State as Extract};
use axum::response::Response;
use std::ops::Not;

use isthmus_api::naming;
use isthmus_api::proxy::{ChainStep, PeerTrust, ProxyView};

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json, Params, State};
use crate::peering;
use crate::store::Reads;
use crate::upstream_chain;

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

/// An upstream's view: for a local service, after its resolved chain
/// (redirect, failover); with `?peer=`, that peer's service.
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
            None => {
                let local = upstream_chain::Local {
                    cluster: &state.cluster,
                    node: &state.node,
                };
                let may_read = |name: &str| authz.allows(Resource::Service, name, Access::Read);
                upstream_chain::resolve(snap, &local, &service, &may_read)?
            }
            Some(peer) => {
                let mut view =
                    upstream_chain::peer_view(snap, &service, peer)?.ok_or_else(|| {
                        ApiError::not_found(format!("Peering not found for {peer:?}"))
                    })?;
                let step = ChainStep {
                    target: view.target.clone(),
                    chosen: view.endpoints.is_empty().not(),
                    reason: if view.endpoints.is_empty() {
                        view.reason.clone()
                    } else {
                        "the upstream names this peer".to_owned()
                    },
                };
                view.chain = vec![step];
                view
            }
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
