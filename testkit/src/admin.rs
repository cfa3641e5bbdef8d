//! Requests to a data-plane admin listener (`/ready`, `/live`, `/metrics`,
//! `/config`) through the same HTTP client the binaries use.

use std::net::SocketAddr;

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
