//! Inbound TCP: after the L4 decision, bytes are copied both ways between
//! the caller and the local application. A later intention change that
//! denies the caller closes the connection.

use std::time::Duration;

use tokio::net::TcpStream;

use super::{Caller, Inbound, Tls, Verdict};
use crate::metrics::InboundError;
use isthmus_dataplane::drain::Drain;
use isthmus_dataplane::io::{splice, Spliced};

const APP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(inbound: &Inbound, mut tls: Tls, caller: Caller, drain: Drain) {
    let app_addr = inbound.app_addr;
    let mut app = match tokio::time::timeout(APP_CONNECT_TIMEOUT, TcpStream::connect(app_addr))
        .await
    {
        Ok(Ok(app)) => app,
        Ok(Err(e)) => {
            tracing::debug!(app = %app_addr, error = %e, "cannot connect to the local application");
            inbound.metrics.inbound_error(InboundError::LocalApp);
            return;
        }
        Err(_) => {
            tracing::debug!(app = %app_addr, "connecting to the local application timed out");
            inbound.metrics.inbound_error(InboundError::LocalApp);
            return;
        }
    };
    let _ = app.set_nodelay(true);
    let mut changes = inbound.identity.changes();
    // Checked once more now, in case intentions changed since the
    // connection was admitted, then at every change.
    let revoked = async {
        loop {
            if let Verdict::Deny { layer, reason } = inbound.verdict(&caller) {
                inbound.denied(&caller, layer, &reason);
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    let stop = async {
        tokio::select! {
            _ = drain.aborted() => {}
            _ = revoked => {}
        }
    };
    match splice(&mut tls, &mut app, stop).await {
        Spliced::Done(received, sent) => {
            tracing::debug!(source = %caller.name, received, sent, "inbound TCP connection finished");
        }
        Spliced::Failed(e) => {
            tracing::debug!(source = %caller.name, error = %e, "inbound TCP connection failed")
        }
        Spliced::Stopped => tracing::debug!(source = %caller.name, "inbound TCP connection closed"),
    }
}
