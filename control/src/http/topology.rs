//! `GET /v1/internal/ui/topology`: the mesh as the web UI's `#/topology`
//! page draws it (see `isthmus_api::topology`). Nodes and edges come from
//! the store; with `ui_config`'s metrics provider, each edge gets its live
//! figures from the agent's fixed Prometheus queries (`ui_metrics`).
//! Without one, or when Prometheus fails, edges have `Metrics: null` and
//! `MetricsStatus` says why. Nodes and edges are filtered by `service:read`
//! (an edge needs both ends readable).
//!
//! A blocking query (`?index=&wait=`) waits for the stored part (services,
//! imports, intentions, peerings) to change; the metrics are read afresh
//! for every answer.

use axum::extract::{Query, State as Extract};
use axum::response::Response;
use isthmus_api::topology::{METRICS_OK, NO_PROVIDER};

use super::authz::Authz;
use super::error::ApiError;
use super::{blocking_json, json_response, Params, State};
use crate::acl_filter::service_readable;
use crate::config::ui_provider_name;
use crate::store::{Reads, Snapshot, StoreError, Table};

pub async fn topology(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: Authz,
) -> Result<Response, ApiError> {
    // Waits (when asked to) until what the graph is built from changes.
    let waited = blocking_json(&state, &params, |snapshot| {
        crate::topology::collect(snapshot)?;
        Ok(((), stored_index(snapshot)?))
    })
    .await?;
    let index = waited
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut builder = {
        let snapshot = state.store.snapshot()?;
        crate::topology::collect(&snapshot)?
    };
    let status = match state.ui_metrics() {
        None => NO_PROVIDER.to_owned(),
        Some(Err(problem)) => problem,
        Some(Ok(source)) => match source.edge_metrics().await {
            Ok(edges) => {
                for ((from, to), metrics) in edges {
                    builder.metrics(from, to, metrics);
                }
                METRICS_OK.to_owned()
            }
            Err(e) => {
                tracing::debug!(error = %e, "topology metrics unavailable");
                e.to_string()
            }
        },
    };
    if !authz.authorizer().is_unrestricted() {
        builder.retain(|name| service_readable(authz.authorizer(), name));
    }
    let topology = builder.build(
        &state.config.cluster_name,
        ui_provider_name(&state.config.ui),
        &status,
    );
    Ok(json_response(&params, &topology, index))
}

/// Where the tables the graph is built from last changed.
fn stored_index(snapshot: &Snapshot) -> Result<u64, StoreError> {
    let mut index = 0;
    for table in [
        Table::Services,
        Table::RemoteServices,
        Table::Nodes,
        Table::Imported,
        Table::Peerings,
        Table::ConfigEntries,
    ] {
        index = index.max(snapshot.table_index(table)?);
    }
    Ok(index)
}
