//! Dials the gateway as a peer cluster's gateway does: mutual TLS with
//! SNI = the peering server name, HTTP/2 on top, and reading the answers
//! whole or line by line.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;

use super::{full, read_all, server_name, Leaf, LocalCluster, RequestBody, WAIT};

fn client_config(
    local: &LocalCluster,
    client: &Leaf,
    alpn: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let roots = isthmus_api::tls::root_store([&local.ca.pem]).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(isthmus_api::tls::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            isthmus_api::tls::certs_from_pem(&client.cert_pem).unwrap(),
            isthmus_api::tls::key_from_pem(&client.key_pem).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// TLS to the gateway as `client`, with the given SNI.
pub async fn tls_connect(
    gateway: SocketAddr,
    sni: &str,
    local: &LocalCluster,
    client: &Leaf,
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    tls_connect_versions(gateway, sni, local, client, alpn, &versions).await
}

/// [`tls_connect`] offering only the given TLS versions.
pub async fn tls_connect_versions(
    gateway: SocketAddr,
    sni: &str,
    local: &LocalCluster,
    client: &Leaf,
    alpn: &[u8],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(gateway).await?;
    let connector = tokio_rustls::TlsConnector::from(client_config(local, client, alpn, versions));
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake hung")
}

/// An HTTP/2 connection to the gateway as a peer.
pub struct PeerConnection {
    send: hyper::client::conn::http2::SendRequest<RequestBody>,
}

impl PeerConnection {
    pub async fn connect(
        gateway: SocketAddr,
        local: &LocalCluster,
        client: &Leaf,
    ) -> PeerConnection {
        let tls = tls_connect(gateway, &server_name(), local, client, b"h2")
            .await
            .unwrap();
        PeerConnection::over(tls).await
    }

    pub async fn over(
        tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ) -> PeerConnection {
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        PeerConnection { send }
    }

    /// A handle for sending requests concurrently on this connection.
    pub fn sender(&self) -> hyper::client::conn::http2::SendRequest<RequestBody> {
        self.send.clone()
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: RequestBody,
    ) -> http::Response<Incoming> {
        self.request_with(method, path, &[], body).await
    }

    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: RequestBody,
    ) -> http::Response<Incoming> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", server_name()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body).unwrap();
        tokio::time::timeout(WAIT, self.send.send_request(request))
            .await
            .expect("no response")
            .unwrap()
    }

    /// Status and body text of a simple request.
    pub async fn call(&mut self, method: &str, path: &str) -> (u16, String) {
        let response = self.request(method, path, full("")).await;
        read_all(response).await
    }
}

/// Reads a response body line by line.
pub struct Lines {
    body: Incoming,
    buffer: Vec<u8>,
}

impl Lines {
    pub fn new(body: Incoming) -> Lines {
        Lines {
            body,
            buffer: Vec::new(),
        }
    }

    /// The next line without its newline; `None` at the end of the body.
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                return Some(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("no line arrived")?;
            if let Ok(data) = frame.unwrap().into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }

    /// Like [`Lines::next`], but an error (a reset stream) also ends it.
    pub async fn next_or_error(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Err(_) => return None,
            }
        }
    }
}
