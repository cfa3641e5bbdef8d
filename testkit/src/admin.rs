//! Requests to a data-plane admin listener (`/ready`, `/live`, `/metrics`,
//! `/config`) through the same HTTP client the binaries use, and bounded
//! waits on its metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::metrics::parse_prometheus;
use crate::WAIT;

/// GET on an admin listener: status and body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let client = isthmus_runtime::client::Client::new(&admin.to_string()).unwrap();
    let response = tokio::time::timeout(WAIT, client.send(http::Method::GET, path, None))
        .await
        .expect("admin hung")
        .unwrap();
    (
        response.status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

/// The admin listener's `/metrics` (which must answer 200), parsed.
pub async fn admin_metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    parse_prometheus(&text)
}

/// Polls the admin listener's `/metrics` until `series` has `value`,
/// failing with the last value seen after [`WAIT`].
pub async fn wait_for_metric(admin: SocketAddr, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let current = admin_metrics(admin).await.get(series).copied();
        if current == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {current:?}, not {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
