//! The admin listener (plain HTTP, separate from the data path):
//! `/metrics`, `/ready`, `/live`, and `POST /shutdown`.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use isthmus_dataplane::readiness::{Prerequisite, Readiness};
use isthmus_runtime::listen::{ConnLimiter, Limits};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// The gateway is ready once the first view is loaded, the listener is up
/// and the registration succeeded, until draining starts.
pub(crate) const VIEW_LOADED: Prerequisite =
    Prerequisite::new(0, "waiting for the gateway view from the agent");
pub(crate) const LISTENING: Prerequisite =
    Prerequisite::new(1, "the peering listener is not accepting yet");

pub(crate) fn readiness() -> Readiness {
    Readiness::new(
        "draining: the gateway is shutting down",
        &[VIEW_LOADED, LISTENING],
    )
}

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
}

pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/live", get(live))
        .route("/shutdown", post(shutdown))
        .with_state(state)
}

/// Serves the admin API until `stop` completes, under `limits`
/// (connection cap, header-read and idle timeouts).
pub(crate) async fn serve(
    listener: TcpListener,
    state: AdminState,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let counters = state.metrics.admin_listener.clone();
    let limiter = ConnLimiter::new("admin", &limits, counters.clone());
    let router = router(state);
    let make_service = move |_remote| {
        let router = router.clone();
        hyper::service::service_fn(move |request| {
            tower::ServiceExt::oneshot(router.clone(), request)
        })
    };
    isthmus_runtime::listen::serve(listener, limiter, limits, counters, make_service, stop).await;
}

async fn metrics(State(state): State<AdminState>) -> Response {
    // Gathering reads /proc: keep it off the async worker threads.
    let metrics = state.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.readiness.check() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn live() -> &'static str {
    "live\n"
}

async fn shutdown(State(state): State<AdminState>) -> Response {
    tracing::info!("shutdown requested on the admin listener");
    state.shutdown.send_replace(true);
    (StatusCode::ACCEPTED, "shutting down\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_step() {
        let r = readiness();
        assert!(r.check().is_err());
        r.set_met(VIEW_LOADED);
        r.set_met(LISTENING);
        assert_eq!(r.check(), Err("not registered in the catalog yet"));
        r.set_registered(true);
        assert_eq!(r.check(), Ok(()));
        r.set_draining();
        assert!(r.check().unwrap_err().starts_with("draining"));
    }
}
