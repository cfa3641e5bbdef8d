//! Calls a cluster's mesh gateway the way a peer does: mutual TLS with a
//! gateway certificate, HTTP/2, SNI = the peering server name.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use isthmus_api::gateway::GatewayView;
use isthmus_api::tls;
use isthmus_testkit::body::{full, RequestBody};
use rustls_pki_types::ServerName;

use super::cluster::Cluster;

/// The gateway view (certificate and key included) a cluster's gateways use.
pub async fn gateway_view(cluster: &Cluster) -> GatewayView {
    cluster
        .client
        .get_json::<GatewayView>(isthmus_api::gateway::AGENT_PATH_VIEW)
        .await
        .expect("gateway view")
        .0
}

/// `GET path` on `target`'s gateway, presenting `cert_pem`/`key_pem`.
/// Returns the status and body, or the connection error.
pub async fn get_via_gateway(
    target: &Cluster,
    cert_pem: &str,
    key_pem: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let (server_name, mut sender) = h2_via_gateway(target, cert_pem, key_pem).await?;
    let request = http::Request::get(format!("https://{server_name}{path}"))
        .body(full(""))
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// An HTTP/2 connection to `target`'s gateway as a peer's gateway would
/// open it (SNI = the peering server name), presenting `cert_pem`/`key_pem`:
/// what a hostile peer holding its own gateway key can do.
pub async fn h2_via_gateway(
    target: &Cluster,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(String, hyper::client::conn::http2::SendRequest<RequestBody>), String> {
    let target_view = gateway_view(target).await;
    let identity = tls::certified_key(cert_pem, key_pem).map_err(|e| e.to_string())?;
    let config = tls::peer_client_config(&target_view.local_root_pems, identity)
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&target.gateway.bind)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(target_view.server_name.clone()).map_err(|e| e.to_string())?;
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok((target_view.server_name, sender))
}
