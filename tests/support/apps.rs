//! Toy workloads for the mesh tests: an HTTP app that echoes what it saw,
//! and a TCP echo server.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::Json;
use serde_json::{json, Value};

/// Answers every request with JSON describing it: method, path, the
/// `x-forwarded-client-cert` header, and the app's name.
pub async fn http_app(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |request: Request| async move {
        let xfcc = request
            .headers()
            .get("x-forwarded-client-cert")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Json(json!({
            "app": name,
            "method": request.method().as_str(),
            "path": request.uri().path(),
            "xfcc": xfcc,
            "version": format!("{:?}", request.version()),
        }))
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// Echoes every byte back.
pub async fn tcp_echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
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
