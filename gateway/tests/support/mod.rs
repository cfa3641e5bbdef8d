//! Test support: a throwaway PKI (rcgen), a stub agent (axum) serving the
//! gateway view as a blocking query plus the internal endpoints the gateway
//! forwards to, a TLS + HTTP client that dials the gateway as a peer, and
//! a stub sidecar (TLS echo server) for service traffic passed through.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use isthmus_api::auth::{builtin_peering_permissions, Permission};
use isthmus_api::gateway::{GatewayPeer, GatewayView};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::sync::{mpsc, watch, Mutex};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

pub const LOCAL_CLUSTER: &str = "cluster-01";
pub const LOCAL_TD: &str = "aaaa.isthmus";

pub fn server_name() -> String {
    isthmus_api::peering::server_name(LOCAL_CLUSTER, LOCAL_TD)
}

/// A CA that can issue certificates.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A mesh gateway certificate: DNS SAN = the peering server name, URI
    /// SAN = the gateway's SPIFFE ID, server and client auth.
    pub fn gateway(&self, cluster: &str, trust_domain: &str) -> Leaf {
        self.leaf(
            &format!("gateway {cluster}"),
            vec![
                SanType::DnsName(
                    isthmus_api::peering::server_name(cluster, trust_domain)
                        .try_into()
                        .unwrap(),
                ),
                SanType::URI(
                    format!("spiffe://{trust_domain}/gateway/mesh/dc/{cluster}")
                        .try_into()
                        .unwrap(),
                ),
            ],
        )
    }

    /// A sidecar certificate: URI SAN = the service's SPIFFE ID, plus the
    /// given DNS SANs (so a plain webpki client can check a server name),
    /// server and client auth.
    pub fn service(
        &self,
        cluster: &str,
        trust_domain: &str,
        service: &str,
        dns_names: &[&str],
    ) -> Leaf {
        let id = isthmus_api::naming::SpiffeId::service(trust_domain, cluster, service);
        let mut sans = vec![SanType::URI(id.to_string().try_into().unwrap())];
        for name in dns_names {
            sans.push(SanType::DnsName((*name).to_owned().try_into().unwrap()));
        }
        self.leaf(&format!("service {service} in {cluster}"), sans)
    }

    fn leaf(&self, common_name: &str, subject_alt_names: Vec<SanType>) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = subject_alt_names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            fingerprint: isthmus_api::tls::fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A peer cluster: its CA and its gateway's (client) certificate.
pub struct PeerCluster {
    pub name: String,
    pub trust_domain: String,
    pub ca: Ca,
    pub gateway: Leaf,
}

impl PeerCluster {
    pub fn new(name: &str, trust_domain: &str) -> PeerCluster {
        let ca = Ca::new(name);
        let gateway = ca.gateway(name, trust_domain);
        PeerCluster {
            name: name.into(),
            trust_domain: trust_domain.into(),
            ca,
            gateway,
        }
    }

    /// The view entry for this cluster, with the built-in `peering` group.
    pub fn peer(&self, state: &str, exported: &[&str]) -> GatewayPeer {
        GatewayPeer {
            name: self.name.clone(),
            state: state.into(),
            trust_domain: self.trust_domain.clone(),
            root_pems: vec![self.ca.pem.clone()],
            identity: format!("tls/{}", self.name),
            groups: vec!["peering".into()],
            permissions: builtin_peering_permissions(),
            exported_services: exported.iter().map(|s| s.to_string()).collect(),
        }
    }
}

pub fn can_view(service: &str) -> Permission {
    Permission {
        entity_type: "service".into(),
        entity_name: Some(service.into()),
        entitlement: "can_view".into(),
    }
}

/// The local cluster: CA and gateway certificate, as the view carries them.
pub struct LocalCluster {
    pub ca: Ca,
    pub gateway: Leaf,
}

impl LocalCluster {
    pub fn new() -> LocalCluster {
        let ca = Ca::new(LOCAL_CLUSTER);
        let gateway = ca.gateway(LOCAL_CLUSTER, LOCAL_TD);
        LocalCluster { ca, gateway }
    }

    pub fn view(&self, peers: Vec<GatewayPeer>) -> GatewayView {
        GatewayView {
            cluster: LOCAL_CLUSTER.into(),
            trust_domain: LOCAL_TD.into(),
            server_name: server_name(),
            certificate_pem: self.gateway.cert_pem.clone(),
            private_key_pem: self.gateway.key_pem.clone(),
            fingerprint: self.gateway.fingerprint.clone(),
            local_root_pems: vec![self.ca.pem.clone()],
            peers,
            endpoints: BTreeMap::new(),
        }
    }
}

// ---------------------------------------------------------------- stub agent

#[derive(Clone)]
struct StubState {
    view: Arc<watch::Sender<(u64, GatewayView)>>,
    /// The highest `index` a blocking query has asked with.
    queried: Arc<watch::Sender<u64>>,
    registrations: mpsc::UnboundedSender<Value>,
    deregistrations: mpsc::UnboundedSender<String>,
    /// The services registered now, by ID, with an index bumped on every change.
    catalog: Arc<watch::Sender<(u64, HashMap<String, Value>)>>,
}

/// An in-process stand-in for the agent's HTTP API (HTTP/1 and h2c).
pub struct StubAgent {
    pub addr: SocketAddr,
    state: StubState,
    registrations: Mutex<mpsc::UnboundedReceiver<Value>>,
    deregistrations: Mutex<mpsc::UnboundedReceiver<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubAgent {
    pub async fn start(view: GatewayView) -> StubAgent {
        let (registrations_tx, registrations) = mpsc::unbounded_channel();
        let (deregistrations_tx, deregistrations) = mpsc::unbounded_channel();
        let state = StubState {
            view: Arc::new(watch::channel((10, view)).0),
            queried: Arc::new(watch::channel(0).0),
            registrations: registrations_tx,
            deregistrations: deregistrations_tx,
            catalog: Arc::new(watch::channel((1, HashMap::new())).0),
        };
        let router = Router::new()
            .route("/v1/internal/gateway/view", get(view_handler))
            .route("/v1/agent/service/{id}", get(service))
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/internal/peering/exchange", post(exchange))
            .route("/v1/internal/peering/stream", post(stream))
            .route("/v1/health/service/{name}", get(health))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        StubAgent {
            addr,
            state,
            registrations: Mutex::new(registrations),
            deregistrations: Mutex::new(deregistrations),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves a new view (to the pending blocking query) and returns its index.
    pub fn set_view(&self, view: GatewayView) -> u64 {
        let mut index = 0;
        self.state.view.send_modify(|(i, v)| {
            *i += 1;
            index = *i;
            *v = view;
        });
        index
    }

    /// Waits until the gateway sends a blocking query with at least
    /// `index`: it publishes a view before asking for the next one, so by
    /// then the view of `index` is in effect.
    pub async fn wait_for_query(&self, index: u64) {
        let mut rx = self.state.queried.subscribe();
        tokio::time::timeout(WAIT, rx.wait_for(|q| *q >= index))
            .await
            .expect("the gateway did not pick up the new view")
            .unwrap();
    }

    pub async fn next_registration(&self) -> Value {
        let mut rx = self.registrations.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no registration")
            .unwrap()
    }

    pub async fn next_deregistration(&self) -> String {
        let mut rx = self.deregistrations.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no deregistration")
            .unwrap()
    }
}

async fn view_handler(
    State(state): State<StubState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let index: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    state.queried.send_modify(|q| *q = (*q).max(index));
    let mut rx = state.view.subscribe();
    if index > 0 {
        let wait = query
            .get("wait")
            .and_then(|w| isthmus_api::duration::parse(w).ok())
            .unwrap_or(Duration::from_secs(300));
        let _ = tokio::time::timeout(wait, rx.wait_for(|(i, _)| *i > index)).await;
    }
    let (current, view) = rx.borrow().clone();
    ([("x-consul-index", current.to_string())], Json(view)).into_response()
}

async fn register(State(state): State<StubState>, Json(body): Json<Value>) -> StatusCode {
    let id = body["ID"].as_str().unwrap_or_default().to_owned();
    state.catalog.send_modify(|(index, services)| {
        services.insert(id, body.clone());
        *index += 1;
    });
    state.registrations.send(body).unwrap();
    StatusCode::OK
}

async fn deregister(State(state): State<StubState>, Path(id): Path<String>) -> StatusCode {
    state.catalog.send_modify(|(index, services)| {
        services.remove(&id);
        *index += 1;
    });
    state.deregistrations.send(id).unwrap();
    StatusCode::OK
}

/// `/v1/agent/service/<id>`, blocking on the catalog's index: the
/// registration, or 404.
async fn service(
    State(state): State<StubState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let index: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let mut rx = state.catalog.subscribe();
    if index > 0 {
        let wait = query
            .get("wait")
            .and_then(|w| isthmus_api::duration::parse(w).ok())
            .unwrap_or(Duration::from_secs(300));
        let _ = tokio::time::timeout(wait, rx.wait_for(|(i, _)| *i > index)).await;
    }
    let (current, services) = rx.borrow().clone();
    match services.get(&id) {
        Some(body) => (
            [("x-consul-index", current.to_string())],
            Json(body.clone()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown service ID: {id}")).into_response(),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Value {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |v| Value::String(v.to_owned()))
}

async fn exchange(headers: HeaderMap, body: Bytes) -> Json<Value> {
    Json(serde_json::json!({
        "fingerprint": header(&headers, "x-isthmus-client-fingerprint"),
        "peer": header(&headers, "x-isthmus-peer"),
        "body": String::from_utf8_lossy(&body),
    }))
}

/// Says who it is talking to, then echoes the request body as it arrives.
async fn stream(headers: HeaderMap, body: Body) -> Body {
    let peer = headers
        .get("x-isthmus-peer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let hello = futures_util::stream::once(async move {
        Ok::<_, axum::Error>(Bytes::from(format!("peer={peer}\n")))
    });
    Body::from_stream(hello.chain(body.into_data_stream()))
}

async fn health(
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    Json(serde_json::json!({
        "service": name,
        "peer": header(&headers, "x-isthmus-peer"),
        "query": query,
    }))
}

// ---------------------------------------------------------------- peer client

/// A request body the test can keep open and feed.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

pub type ReqBody = Either<Full<Bytes>, ChannelBody>;

pub fn full(body: impl Into<Bytes>) -> ReqBody {
    Either::Left(Full::new(body.into()))
}

pub fn channel() -> (mpsc::Sender<Bytes>, ReqBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, Either::Right(ChannelBody(rx)))
}

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
    send: hyper::client::conn::http2::SendRequest<ReqBody>,
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
    pub fn sender(&self) -> hyper::client::conn::http2::SendRequest<ReqBody> {
        self.send.clone()
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: ReqBody,
    ) -> http::Response<Incoming> {
        self.request_with(method, path, &[], body).await
    }

    pub async fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: ReqBody,
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

pub async fn read_all(response: http::Response<Incoming>) -> (u16, String) {
    let status = response.status().as_u16();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body hung")
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
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

// ---------------------------------------------------------------- service traffic

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

/// An address nothing listens on (any more).
pub async fn closed_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
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

// ---------------------------------------------------------------- admin

/// GET on the admin listener: status and body.
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

/// Parses Prometheus text exposition into `series -> value`, failing on
/// any line that is not a comment or `name{labels} value`.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            !metric.is_empty()
                && metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = name.strip_prefix(metric) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line:?}"
            );
        }
        series.insert(name.to_owned(), value);
    }
    series
}
