//! `GET /v1/agent/metrics` (Consul's path) and `GET /metrics`, and the
//! middleware that counts the API's requests.
//!
//! `/v1/agent/metrics?format=prometheus` and `/metrics` answer in the
//! Prometheus text format 0.0.4; `/v1/agent/metrics` without `format`
//! answers a JSON summary in Consul's shape; any other `format` is a 400.

use axum::extract::{Query, Request, State as Extract};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use time::OffsetDateTime;

use super::error::ApiError;
use super::{json_response, AgentState, Params, State};
use crate::catalog;
use crate::metrics::scrape::{healthy, Figures, PeerFigures, CHECK_STATUSES};
use crate::metrics::{self, summary};
use crate::peering;
use crate::store::{Reads, StoreError, Table};

enum Format {
    Prometheus,
    Json,
}

/// `/v1/agent/metrics[?format=prometheus]`.
pub async fn agent_metrics(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
    authz: super::authz::Authz,
) -> Result<Response, ApiError> {
    authz.require(
        isthmus_api::acl::Resource::Agent,
        &state.node.name,
        isthmus_api::acl::Access::Read,
    )?;
    let format = match params.get("format").map(String::as_str) {
        None | Some("") => Format::Json,
        Some("prometheus") => Format::Prometheus,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported metrics format {other:?}: use format=prometheus, or no format for the JSON summary"
            )))
        }
    };
    let families = gather(state).await?;
    Ok(match format {
        Format::Prometheus => prometheus_response(&families)?,
        Format::Json => json_response(
            &params,
            &summary::summarize(&families, time::OffsetDateTime::now_utc()),
            None,
        ),
    })
}

/// `/metrics`: always the Prometheus text format.
/// Needs `agent:read` like Consul's metrics endpoint; Prometheus sends the
/// token with `authorization { credentials_file = ... }`.
pub async fn prometheus(
    Extract(state): Extract<State>,
    authz: super::authz::Authz,
) -> Result<Response, ApiError> {
    authz.require(
        isthmus_api::acl::Resource::Agent,
        &state.node.name,
        isthmus_api::acl::Access::Read,
    )?;
    prometheus_response(&gather(state).await?)
}

/// Reads the store snapshot and /proc (the process collector) on a
/// blocking thread, off the async workers.
async fn gather(state: State) -> Result<Vec<prometheus::proto::MetricFamily>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let figures = figures(&state)?;
        state
            .metrics
            .gather(&figures)
            .map_err(|e| ApiError::internal(format!("gathering metrics: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("gathering metrics: {e}")))?
}

/// The scrape-time figures: one snapshot of the store and the live
/// peering status.
fn figures(state: &AgentState) -> Result<Figures, StoreError> {
    let snapshot = state.store.snapshot()?;
    let now = OffsetDateTime::now_utc();
    let live = &state.peering.manager;
    let mut peers = Vec::new();
    for record in peering::list(&snapshot)? {
        let last_heartbeat = live.last_heartbeat(&record.name);
        peers.push(PeerFigures {
            healthy: healthy(&record.state, last_heartbeat, now, live.heartbeat),
            imported_services: peering::imported_names(&snapshot, &record.name)?.len(),
            // As the peering API shows it: nothing until established.
            exported_services: if record.established() {
                peering::exported_names(&snapshot, &record)?.len()
            } else {
                0
            },
            last_heartbeat: last_heartbeat.map(|t| t.unix_timestamp_nanos() as f64 / 1e9),
            state: record.state,
            name: record.name,
        });
    }
    let mut checks = [0; 3];
    for check in catalog::all_checks(&snapshot)? {
        if let Some(i) = CHECK_STATUSES.iter().position(|s| *s == check.state.status) {
            checks[i] += 1;
        }
    }
    Ok(Figures {
        peers,
        catalog_services: catalog::service_names(&snapshot)?.len(),
        catalog_service_instances: snapshot.count(Table::Services),
        checks,
    })
}

fn prometheus_response(families: &[prometheus::proto::MetricFamily]) -> Result<Response, ApiError> {
    let text = metrics::encode_text(families)
        .map_err(|e| ApiError::internal(format!("encoding metrics: {e}")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, metrics::TEXT_CONTENT_TYPE)],
        text,
    )
        .into_response())
}

/// Counts every request by method and status once its response head is
/// ready (a blocking query counts when it answers).
pub async fn count_requests(
    Extract(state): Extract<State>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.http_request(&method, response.status());
    response
}
