//! The admin listener (plain HTTP, off the data path): `/metrics`,
//! `/ready`, `/live`, `/config` and `POST /shutdown`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use isthmus_dataplane::readiness::Readiness;
use isthmus_runtime::listen::{ConnLimiter, Limits};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Protocol;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::upstream::Upstream;

/// Ready once the first leaf and view are in (so the inbound listener
/// serves) and the registration succeeded, until draining starts.
pub(crate) fn readiness() -> Readiness {
    Readiness::new(
        "draining: the proxy is shutting down",
        &[crate::identity::LEAF_LOADED, crate::identity::VIEW_LOADED],
    )
}

/// Fixed facts about this proxy, for `/config`.
#[derive(Debug)]
pub(crate) struct Facts {
    pub(crate) service: String,
    pub(crate) service_id: String,
    pub(crate) proxy_id: String,
    pub(crate) protocol: Protocol,
    pub(crate) inbound: SocketAddr,
    pub(crate) advertise: String,
    pub(crate) local_app: SocketAddr,
}

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
    pub(crate) identity: Identity,
    pub(crate) upstreams: Arc<[Arc<Upstream>]>,
    pub(crate) facts: Arc<Facts>,
}

pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/live", get(live))
        .route("/config", get(config))
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
    let encoded = tokio::task::spawn_blocking(move || metrics.encode())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
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

async fn config(State(state): State<AdminState>) -> Json<Value> {
    let facts = &state.facts;
    let snapshot = state.identity.current();
    let leaf = snapshot.as_ref().map(|s| {
        json!({
            "serial": s.leaf.cert.serial_number,
            "spiffe_id": s.leaf.uri,
            "valid_after": s.leaf.cert.valid_after,
            "valid_before": s.leaf.cert.valid_before,
        })
    });
    let intentions = snapshot.as_ref().map(|s| {
        json!({
            "index": s.view_index,
            "default_allow": s.view.default_allow,
            "entries": s.view.intentions.len(),
        })
    });
    let trust_domains = snapshot.as_ref().map(|s| {
        let peers: Vec<Value> = s
            .view
            .peers
            .iter()
            .map(|p| json!({ "peer": p.name, "trust_domain": p.trust_domain, "trusted": s.bundle.roots(&p.trust_domain).is_some() }))
            .collect();
        json!({ "local": s.view.trust_domain, "cluster": s.view.cluster, "peers": peers })
    });
    let upstreams: Vec<Value> = state.upstreams.iter().map(|u| u.describe()).collect();
    Json(json!({
        "service": facts.service,
        "service_id": facts.service_id,
        "proxy_id": facts.proxy_id,
        "protocol": facts.protocol.as_str(),
        "inbound": facts.inbound.to_string(),
        "advertise": facts.advertise,
        "local_app": facts.local_app.to_string(),
        "ready": state.readiness.check().is_ok(),
        "leaf": leaf,
        "intentions": intentions,
        "trust_domains": trust_domains,
        "upstreams": upstreams,
    }))
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
    fn readiness_needs_leaf_view_and_registration() {
        let r = readiness();
        assert!(r.check().unwrap_err().contains("leaf"));
        r.set_met(crate::identity::LEAF_LOADED);
        assert!(r.check().unwrap_err().contains("proxy view"));
        r.set_met(crate::identity::VIEW_LOADED);
        assert_eq!(r.check(), Err("not registered in the catalog yet"));
        r.set_registered(true);
        assert_eq!(r.check(), Ok(()));
        r.set_draining();
        assert!(r.check().unwrap_err().starts_with("draining"));
    }
}
