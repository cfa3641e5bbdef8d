//! Callers: a sidecar-like mTLS client for a proxy's inbound listener, and
//! HTTP/1.1 and HTTP/2 connections over any stream.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use isthmus_api::naming::SpiffeId;
use isthmus_api::tls::{certified_key, root_store};
use isthmus_dataplane::mtls::{outbound_client_config, SpiffeServerVerifier};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{Ca, Leaf, WAIT};

/// A client config presenting `leaf`, accepting only `server` under `server_ca`.
pub fn tls_config(
    leaf: &Leaf,
    server_ca: &Ca,
    server: &str,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let key = certified_key(&leaf.cert_pem, &leaf.key_pem).unwrap();
    let roots = Arc::new(root_store([&server_ca.pem]).unwrap());
    let expected = SpiffeId::service(&server_ca.trust_domain, &server_ca.cluster, server);
    Arc::new(outbound_client_config(key, roots, &expected, alpn).unwrap())
}

/// A client config with no client certificate at all.
pub fn anonymous_tls_config(
    server_ca: &Ca,
    server: &str,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let roots = Arc::new(root_store([&server_ca.pem]).unwrap());
    let expected = SpiffeId::service(&server_ca.trust_domain, &server_ca.cluster, server);
    let mut config = rustls::ClientConfig::builder_with_provider(isthmus_api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(SpiffeServerVerifier::new(roots, &expected))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS to a proxy's inbound listener.
pub async fn mtls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name =
        rustls_pki_types::ServerName::try_from("backend.default.cluster-01.internal.aaaa.isthmus")
            .unwrap();
    tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake hung")
}

/// An answer, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One HTTP connection.
pub enum HttpConn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl HttpConn {
    pub async fn h1<I>(io: I) -> Result<HttpConn, hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(connection.with_upgrades());
        Ok(HttpConn::H1(send))
    }

    pub async fn h2<I>(io: I) -> Result<HttpConn, hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
        tokio::spawn(connection);
        Ok(HttpConn::H2(send))
    }

    /// Plain HTTP/1.1 to a local listener.
    pub async fn plain_h1(addr: SocketAddr) -> HttpConn {
        HttpConn::h1(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap()
    }

    /// h2c (prior knowledge) to a local listener.
    pub async fn plain_h2(addr: SocketAddr) -> HttpConn {
        HttpConn::h2(TcpStream::connect(addr).await.unwrap())
            .await
            .unwrap()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let uri = match self {
            HttpConn::H1(_) => path.to_owned(),
            HttpConn::H2(_) => format!("http://backend{path}"),
        };
        let mut builder = Request::builder().method(method).uri(uri);
        if let HttpConn::H1(_) = self {
            builder = builder.header("host", "backend");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap()
    }

    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper::Error> {
        let sent = async {
            match self {
                HttpConn::H1(send) => {
                    send.ready().await?;
                    send.send_request(request).await
                }
                HttpConn::H2(send) => send.send_request(request).await,
            }
        };
        tokio::time::timeout(WAIT, sent).await.expect("no response")
    }

    /// Sends a request and reads the whole answer.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, hyper::Error> {
        let request = self.request(method, path, headers, "");
        let response = self.send(request).await?;
        read(response).await
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.call("GET", path, &[]).await.unwrap()
    }
}

pub async fn read(response: http::Response<hyper::body::Incoming>) -> Result<Reply, hyper::Error> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body hung")?
        .to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// An HTTP connection to a proxy's inbound listener as `leaf`, over
/// HTTP/2 (ALPN h2) or HTTP/1.1.
pub async fn inbound_conn(
    addr: SocketAddr,
    leaf: &Leaf,
    server_ca: &Ca,
    server: &str,
    h2: bool,
) -> HttpConn {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let tls = mtls(addr, tls_config(leaf, server_ca, server, alpn))
        .await
        .unwrap();
    if h2 {
        HttpConn::h2(tls).await.unwrap()
    } else {
        HttpConn::h1(tls).await.unwrap()
    }
}

/// Tries one GET to a proxy's inbound listener with `config`; an error
/// when the connection is refused at any stage.
pub async fn try_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<Reply, String> {
    let tls = mtls(addr, config)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut conn = HttpConn::h1(tls).await.map_err(|e| format!("http: {e}"))?;
    conn.call("GET", path, &[])
        .await
        .map_err(|e| format!("request: {e}"))
}
