//! The demo's toy workloads: tiny HTTP apps, run inside the demo process,
//! that say who they are and which caller the mesh told them about.

use std::net::SocketAddr;

use anyhow::Context;
use axum::extract::Request;
use axum::routing::get;
use tokio::sync::watch;

/// Starts the app `name` of cluster `cluster` on an ephemeral loopback
/// port. `/health` answers `ok` (the catalog's HTTP check); everything
/// else answers with a line naming the app and the caller's SPIFFE ID from
/// `x-forwarded-client-cert`, which the inbound sidecar sets.
pub async fn start(
    name: &'static str,
    cluster: &'static str,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .with_context(|| format!("binding the {name} app"))?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .fallback(move |request: Request| async move {
            let caller = request
                .headers()
                .get("x-forwarded-client-cert")
                .and_then(|v| v.to_str().ok())
                .and_then(caller_uri)
                .unwrap_or("unknown (no client certificate)")
                .to_owned();
            format!(
                "hello from {name} in {cluster}: {} {} from {caller}\n",
                request.method(),
                request.uri().path()
            )
        });
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(app = name, error = %e, "toy app stopped");
        }
    });
    Ok(addr)
}

/// The caller's `URI=` element of an XFCC header value.
fn caller_uri(xfcc: &str) -> Option<&str> {
    xfcc.split([';', ','])
        .find_map(|part| part.trim().strip_prefix("URI="))
}

#[cfg(test)]
mod tests {
    use super::caller_uri;

    #[test]
    fn the_caller_is_the_uri_element() {
        assert_eq!(
            caller_uri("By=spiffe://td/x;Hash=ab;URI=spiffe://td/ns/default/dc/c2/svc/frontend"),
            Some("spiffe://td/ns/default/dc/c2/svc/frontend")
        );
        assert_eq!(caller_uri("Hash=ab"), None);
    }
}
