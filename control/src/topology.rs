//! What the store says about the mesh's shape, for the topology page:
//! every service instance here and imported from each peer (nodes), the
//! intentions (edges with their action, sources from peers included) and
//! the upstreams sidecars registered (edges to the named service and peer).
//! Live figures come from `ui_metrics`; assembly is
//! `isthmus_api::topology`'s.

use isthmus_api::catalog::AgentService;
use isthmus_api::topology::{Endpoint, TopologyBuilder};

use crate::store::{Reads, StoreError};
use crate::{catalog, catalog_nodes, catalog_remote, config_entries, peering};

/// Sidecars' kind in the catalog.
const KIND_CONNECT_PROXY: &str = "connect-proxy";

/// Nodes and edges from the store (no metrics yet).
pub fn collect(r: &impl Reads) -> Result<TopologyBuilder, StoreError> {
    let mut builder = TopologyBuilder::default();
    let mut local = catalog::all_services(r)?;
    local.extend(catalog_remote::all_services(r)?);
    local.extend(catalog_nodes::all(r)?.into_iter().flat_map(|n| n.services));
    for service in &local {
        add_instance(&mut builder, service, "");
        add_upstreams(&mut builder, service);
    }
    for record in peering::list(r)? {
        for name in peering::imported_names(r, &record.name)? {
            for entry in peering::imported_service(r, &record.name, &name)? {
                add_instance(&mut builder, &entry.service, &record.name);
            }
        }
    }
    for entry in config_entries::service_intentions(r)? {
        if entry.name == "*" {
            continue;
        }
        for source in entry.sources.iter().filter(|s| s.name != "*") {
            let action = if !source.permissions.is_empty() {
                "l7"
            } else {
                source.action.map_or("allow", |a| a.as_str())
            };
            builder.intention(
                Endpoint::new(&source.name, source.peer.as_deref().unwrap_or("")),
                Endpoint::new(&entry.name, ""),
                action,
            );
        }
    }
    Ok(builder)
}

fn add_instance(builder: &mut TopologyBuilder, service: &AgentService, peer: &str) {
    let kind = service.kind.as_deref().unwrap_or("");
    let proxy_for = service
        .proxy
        .as_ref()
        .map(|p| p.destination_service_name.as_str());
    builder.instance(&service.service, peer, kind, proxy_for);
}

/// A sidecar's upstreams: edges from the service it fronts.
fn add_upstreams(builder: &mut TopologyBuilder, service: &AgentService) {
    if service.kind.as_deref() != Some(KIND_CONNECT_PROXY) {
        return;
    }
    let Some(proxy) = &service.proxy else {
        return;
    };
    if proxy.destination_service_name.is_empty() {
        return;
    }
    for upstream in &proxy.upstreams {
        // Prepared queries name no service.
        if upstream.destination_type.as_deref() == Some("prepared_query") {
            continue;
        }
        builder.upstream(
            Endpoint::new(&proxy.destination_service_name, ""),
            Endpoint::new(
                &upstream.destination_name,
                upstream.destination_peer.as_deref().unwrap_or(""),
            ),
        );
    }
}
