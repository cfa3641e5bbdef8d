//! A role's admin listener (plain HTTP, off the data path): `GET /metrics`,
//! `/ready` and `/live`, `POST /shutdown`, plus whatever routes the role
//! adds (the proxy's `/config`).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use isthmus_runtime::listen::{ConnLimiter, Limits, ListenerCounters};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::readiness::Readiness;

/// Renders the role's metrics in the Prometheus text format.
pub type EncodeMetrics = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// What the common admin routes need.
#[derive(Clone)]
pub struct Admin {
    pub encode_metrics: EncodeMetrics,
    pub readiness: Arc<Readiness>,
    /// Set by `POST /shutdown`.
    pub shutdown: Arc<watch::Sender<bool>>,
    /// The admin listener's own connection counters.
    pub counters: ListenerCounters,
}

fn router(admin: Admin) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/live", get(live))
        .route("/shutdown", post(shutdown))
        .with_state(admin)
}

/// Serves the admin API, with the role's `extra_routes`, until `stop`
/// completes, under `limits` (connection cap, header-read and idle timeouts).
pub async fn serve(
    listener: TcpListener,
    admin: Admin,
    extra_routes: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let counters = admin.counters.clone();
    let limiter = ConnLimiter::new("admin", &limits, counters.clone());
    let router = router(admin).merge(extra_routes);
    let make_service = move |_remote| {
        let router = router.clone();
        hyper::service::service_fn(move |request| {
            tower::ServiceExt::oneshot(router.clone(), request)
        })
    };
    isthmus_runtime::listen::serve(listener, limiter, limits, counters, make_service, stop).await;
}

async fn metrics(State(admin): State<Admin>) -> Response {
    // Gathering reads /proc: keep it off the async worker threads.
    let encode = admin.encode_metrics.clone();
    let encoded = tokio::task::spawn_blocking(move || encode())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    match encoded {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn ready(State(admin): State<Admin>) -> Response {
    match admin.readiness.check() {
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

async fn shutdown(State(admin): State<Admin>) -> Response {
    tracing::info!("shutdown requested on the admin listener");
    admin.shutdown.send_replace(true);
    (StatusCode::ACCEPTED, "shutting down\n").into_response()
}
