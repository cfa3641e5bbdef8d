//! Service traffic through the gateway: a stub sidecar terminating mTLS
//! and echoing, the client a peer's sidecar would be, and an echo round trip.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::sync::{mpsc, Mutex};

use super::{Leaf, WAIT};

/// A stand-in for a service's sidecar: terminates mTLS (client
/// certificates must chain to `client_root`), reports each handshake's
/// client certificate, then echoes.
pub struct StubSidecar {
    pub addr: SocketAddr,
    /// Fingerprints of the client certificates of completed handshakes.
    handshakes: Mutex<mpsc::UnboundedReceiver<String>>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubSidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubSidecar {
    pub async fn start(cert: &Leaf, client_root: &str) -> StubSidecar {
        let provider = isthmus_api::tls::provider();
        let roots = Arc::new(isthmus_api::tls::root_store([&client_root.to_owned()]).unwrap());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                isthmus_api::tls::certs_from_pem(&cert.cert_pem).unwrap(),
                isthmus_api::tls::key_from_pem(&cert.key_pem).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, handshakes) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            // Dropped (aborting every connection) when the task is aborted.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                    let _ = tx.send(isthmus_api::tls::fingerprint(&client));
                    let (mut read, mut write) = tokio::io::split(tls);
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut write).await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        StubSidecar {
            addr,
            handshakes: Mutex::new(handshakes),
            accepted,
            task,
        }
    }

    /// The fingerprint of the next client certificate a handshake completed with.
    pub async fn next_handshake(&self) -> String {
        let mut rx = self.handshakes.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no handshake at the sidecar")
            .unwrap()
    }

    /// How many TCP connections reached the sidecar.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// mTLS through the gateway as a service of a peer cluster, as its sidecar
/// would dial: SNI `sni`, server certificate checked against `roots`, no ALPN.
pub async fn service_connect(
    gateway: SocketAddr,
    sni: &str,
    roots: &str,
    client: &Leaf,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = rustls::ClientConfig::builder_with_provider(isthmus_api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(isthmus_api::tls::root_store([&roots.to_owned()]).unwrap())
        .with_client_auth_cert(
            isthmus_api::tls::certs_from_pem(&client.cert_pem).unwrap(),
            isthmus_api::tls::key_from_pem(&client.key_pem).unwrap(),
        )
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(gateway).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake hung")
}

/// Writes `data` and reads the same number of bytes back.
pub async fn echo<S>(stream: &mut S, data: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(WAIT, async {
        stream.write_all(data).await?;
        stream.flush().await?;
        let mut back = vec![0u8; data.len()];
        stream.read_exact(&mut back).await?;
        Ok::<_, std::io::Error>(back)
    })
    .await
    .expect("echo hung")
    .unwrap()
}
