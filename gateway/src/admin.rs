//! The gateway's admin listener (`isthmus_dataplane::admin`: `/metrics`,
//! `/ready`, `/live`, `POST /shutdown`, no extra routes) and what its
//! `/ready` waits for.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use isthmus_dataplane::admin::Admin;
use isthmus_dataplane::readiness::{Prerequisite, Readiness};
use isthmus_runtime::listen::Limits;
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

/// Serves the admin API until `stop` completes, under `limits`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: Arc<watch::Sender<bool>>,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let admin = Admin {
        counters: metrics.admin_listener.clone(),
        encode_metrics: Arc::new(move || metrics.encode().map_err(|e| e.to_string())),
        readiness,
        shutdown,
    };
    isthmus_dataplane::admin::serve(listener, admin, Router::new(), limits, stop).await;
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
