//! Toy workloads for the mesh tests (the test kit's HTTP app and TCP echo,
//! left running), and plaintext requests to the listeners in front of them.

use std::net::SocketAddr;

pub use isthmus_testkit::apps::{HttpApp, TcpEcho};
use serde_json::Value;

/// An app answering every request with JSON describing it (method, path,
/// the `x-forwarded-client-cert` header as `xfcc`, its name as `app`, ...),
/// running for the rest of the test process.
pub async fn http_app(name: &'static str) -> SocketAddr {
    HttpApp::start(name).await.detach()
}

/// Echoes every byte back, for the rest of the test process.
pub async fn tcp_echo() -> SocketAddr {
    TcpEcho::start().await.detach()
}

/// A JSON answer from an app behind the mesh, or the status and body.
pub fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A plaintext request to `addr` (an upstream listener), over HTTP/1.1 or
/// HTTP/2 prior knowledge; returns status, body, and the error header.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    h2: bool,
) -> Result<(u16, String, Option<String>), String> {
    request_with(addr, method, path, &[], h2).await
}

/// [`request`] with extra request headers.
pub async fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    h2: bool,
) -> Result<(u16, String, Option<String>), String> {
    use http_body_util::BodyExt;
    let mut builder =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    if h2 {
        builder.http2_only(true);
    }
    let client = builder.build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(super::WAIT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let error = response
        .headers()
        .get("x-isthmus-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned(), error))
}

/// GET over HTTP/1.1.
pub async fn get(addr: &str, path: &str) -> Result<(u16, String, Option<String>), String> {
    request(addr, "GET", path, false).await
}
