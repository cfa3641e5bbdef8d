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

use super::error::ApiError;
use super::{json_response, Params, State};
use crate::metrics::{self, scrape::Figures, summary};

enum Format {
    Prometheus,
    Json,
}

/// `/v1/agent/metrics[?format=prometheus]`.
pub async fn agent_metrics(
    Extract(state): Extract<State>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
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
pub async fn prometheus(Extract(state): Extract<State>) -> Result<Response, ApiError> {
    prometheus_response(&gather(state).await?)
}

/// Reads the store snapshot and /proc (the process collector) on a
/// blocking thread, off the async workers.
async fn gather(state: State) -> Result<Vec<prometheus::proto::MetricFamily>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let figures = Figures::compute(&state)?;
        state
            .metrics
            .gather(&figures)
            .map_err(|e| ApiError::internal(format!("gathering metrics: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("gathering metrics: {e}")))?
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
