//! The proxy's admin listener: the common routes of
//! `isthmus_dataplane::admin` (`/metrics`, `/ready`, `/live`,
//! `POST /shutdown`) plus `/config`, and what its `/ready` waits for.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use isthmus_dataplane::admin::Admin;
use isthmus_dataplane::readiness::Readiness;
use isthmus_runtime::listen::Limits;
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

/// What `/config` shows.
#[derive(Clone)]
pub(crate) struct ConfigState {
    pub(crate) readiness: Arc<Readiness>,
    pub(crate) identity: Identity,
    pub(crate) upstreams: Arc<[Arc<Upstream>]>,
    pub(crate) facts: Arc<Facts>,
}

/// Serves the admin API (`isthmus_dataplane::admin`) with the proxy's
/// `/config` until `stop` completes, under `limits`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: Arc<watch::Sender<bool>>,
    state: ConfigState,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let identity = state.identity.clone();
    let service = state.facts.service.clone();
    let admin = Admin {
        counters: metrics.admin_listener.clone(),
        encode_metrics: Arc::new(move || {
            // Named at scrape time, from the leaf in force then.
            if let Some(snapshot) = identity.current() {
                metrics.identify(&service, &snapshot.leaf.datacenter);
            }
            metrics.encode().map_err(|e| e.to_string())
        }),
        readiness: state.readiness.clone(),
        shutdown,
    };
    let config_route = Router::new()
        .route("/config", get(config))
        .with_state(state);
    isthmus_dataplane::admin::serve(listener, admin, config_route, limits, stop).await;
}

async fn config(State(state): State<ConfigState>) -> Json<Value> {
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
