//! The gateway against a stub agent, driven by real TLS peers: everything
//! on loopback with ephemeral ports.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use isthmus_api::gateway::GatewayPeer;
use isthmus_gateway::{GatewayConfig, RunningGateway, StartError};
use serde_json::Value;
use support::*;

const NOT_PEERED: &str = "client certificate is not from a peered cluster";

/// The clusters of a test: ours and three peers.
struct Clusters {
    local: LocalCluster,
    /// ACTIVE, built-in `peering` group, `backend` and `web` exported.
    peer: PeerCluster,
    /// ACTIVE, may only view `web`; both exported.
    limited: PeerCluster,
    /// PENDING.
    pending: PeerCluster,
    /// Claims cluster-02's trust domain but is signed by an unknown CA.
    rogue: PeerCluster,
}

impl Clusters {
    fn new() -> Clusters {
        Clusters {
            local: LocalCluster::new(),
            peer: PeerCluster::new("cluster-02", "bbbb.isthmus"),
            limited: PeerCluster::new("cluster-04", "dddd.isthmus"),
            pending: PeerCluster::new("cluster-03", "cccc.isthmus"),
            rogue: PeerCluster::new("cluster-02", "bbbb.isthmus"),
        }
    }

    fn peers(&self) -> Vec<GatewayPeer> {
        let mut limited = self.limited.peer("ACTIVE", &["backend", "web"]);
        limited.groups = vec!["ops".into(), "web-viewers".into()];
        limited.permissions = vec![can_view("web")];
        vec![
            self.peer.peer("ACTIVE", &["backend", "web"]),
            limited,
            self.pending.peer("PENDING", &["backend"]),
        ]
    }
}

struct Fixture {
    c: Clusters,
    stub: StubAgent,
    gateway: RunningGateway,
}

impl Fixture {
    async fn start() -> Fixture {
        let c = Clusters::new();
        let stub = StubAgent::for_gateway(c.local.view(c.peers())).await;
        let mut config = GatewayConfig::loopback(stub.url());
        config.drain_timeout = Duration::from_secs(1);
        config.startup_timeout = WAIT;
        let gateway = isthmus_gateway::start(config).await.unwrap();
        Fixture { c, stub, gateway }
    }

    async fn connect(&self, client: &Leaf) -> PeerConnection {
        PeerConnection::connect(self.gateway.bind_addr(), &self.c.local, client).await
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        admin_metrics(self.gateway.admin_addr()).await
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn requests(metrics: &HashMap<String, f64>, peer: &str, endpoint: &str, outcome: &str) -> f64 {
    let key = format!("gateway_peering_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\",peer=\"{peer}\"}}");
    metrics.get(&key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn registers_and_reports_ready() {
    let f = Fixture::start().await;
    let registration = f.stub.next_registration().await;
    let port = f.gateway.bind_addr().port();
    assert_eq!(registration["Name"], "mesh-gateway");
    assert_eq!(registration["Kind"], "mesh-gateway");
    assert_eq!(registration["ID"], format!("mesh-gateway-127.0.0.1-{port}"));
    assert_eq!(registration["Address"], "127.0.0.1");
    assert_eq!(registration["Port"], port);
    assert_eq!(registration["Check"]["TCP"], format!("127.0.0.1:{port}"));
    assert_eq!(registration["Check"]["Interval"], "10s");
    assert_eq!(registration["Check"]["Status"], "passing");
    assert_eq!(
        registration["Check"]["DeregisterCriticalServiceAfter"],
        "1m"
    );
    assert_eq!(f.gateway.advertise_addr(), format!("127.0.0.1:{port}"));
    assert_eq!(
        f.gateway.service_id(),
        format!("mesh-gateway-127.0.0.1-{port}")
    );

    assert_eq!(
        admin_get(f.gateway.admin_addr(), "/ready").await,
        (200, "ready\n".into())
    );
    assert_eq!(admin_get(f.gateway.admin_addr(), "/live").await.0, 200);
    let metrics = f.metrics().await;
    assert_eq!(
        metrics[&format!(
            "isthmus_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )],
        1.0
    );
    assert!(
        metrics.keys().any(|k| k.starts_with("process_")),
        "no process metrics"
    );
    assert_eq!(metrics["gateway_tcp_open_connections"], 0.0);
}

#[tokio::test]
async fn exchange_is_forwarded_with_the_client_fingerprint() {
    let f = Fixture::start().await;
    // No identity check: during establishment the peer's roots are unknown.
    let mut conn = f.connect(&f.c.rogue.gateway).await;
    let response = conn
        .request_with(
            "POST",
            "/v1/peering/exchange",
            &[
                ("x-isthmus-client-fingerprint", "forged"),
                ("x-isthmus-peer", "forged"),
            ],
            full(r#"{"PeerID":"p1"}"#),
        )
        .await;
    let (status, body) = read_all(response).await;
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["fingerprint"], f.c.rogue.gateway.fingerprint.as_str());
    assert_eq!(body["peer"], Value::Null);
    assert_eq!(body["body"], r#"{"PeerID":"p1"}"#);
    let metrics = f.metrics().await;
    assert_eq!(requests(&metrics, "unknown", "exchange", "allowed"), 1.0);
}

#[tokio::test]
async fn health_queries_need_permission_and_an_export() {
    let f = Fixture::start().await;
    let mut conn = f.connect(&f.c.peer.gateway).await;
    let response = conn
        .request_with(
            "GET",
            "/v1/health/service/backend?peer=cluster-01&index=3",
            &[("x-isthmus-peer", "cluster-04")],
            full(""),
        )
        .await;
    let (status, body) = read_all(response).await;
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["service"], "backend");
    assert_eq!(
        body["peer"], "cluster-02",
        "the forged header must be replaced"
    );
    assert_eq!(body["query"]["index"], "3");
    assert_eq!(
        body["query"]["peer"],
        serde_json::Value::Null,
        "?peer= is never relayed: it would read another peer's imports"
    );

    assert_eq!(
        conn.call("GET", "/v1/health/service/db").await,
        (403, "service db is not exported to peer cluster-02".into())
    );

    let mut limited = f.connect(&f.c.limited.gateway).await;
    assert_eq!(
        limited.call("GET", "/v1/health/service/backend").await,
        (
            403,
            "identity tls/cluster-04 (groups: ops,web-viewers) may not view service backend".into()
        )
    );
    assert_eq!(limited.call("GET", "/v1/health/service/web").await.0, 200);

    let metrics = f.metrics().await;
    assert_eq!(requests(&metrics, "cluster-02", "health", "allowed"), 1.0);
    assert_eq!(requests(&metrics, "cluster-02", "health", "denied"), 1.0);
    assert_eq!(requests(&metrics, "cluster-04", "health", "denied"), 1.0);
    assert_eq!(requests(&metrics, "cluster-04", "health", "allowed"), 1.0);
    assert_eq!(metrics["gateway_tcp_open_total{sni_kind=\"peering\"}"], 2.0);
    assert_eq!(metrics["gateway_tcp_open_connections"], 2.0);
}

#[tokio::test]
async fn strangers_pending_peers_and_other_paths_are_refused() {
    let f = Fixture::start().await;
    let mut rogue = f.connect(&f.c.rogue.gateway).await;
    assert_eq!(
        rogue.call("POST", "/v1/peering/stream").await,
        (403, NOT_PEERED.into())
    );
    assert_eq!(
        rogue.call("GET", "/v1/health/service/backend").await,
        (403, NOT_PEERED.into())
    );

    let mut pending = f.connect(&f.c.pending.gateway).await;
    assert_eq!(
        pending.call("POST", "/v1/peering/stream").await,
        (403, "peering cluster-03 is PENDING".into())
    );

    let mut peer = f.connect(&f.c.peer.gateway).await;
    let other =
        "may not call GET /v1/agent/self: peering connections serve only /v1/peering/exchange, \
                 /v1/peering/stream, /v1/peering/probe and /v1/health/service/<name>";
    assert_eq!(
        peer.call("GET", "/v1/agent/self").await,
        (403, format!("peer cluster-02 {other}"))
    );
    let (status, body) = peer.call("POST", "/v1/health/service/backend").await;
    assert_eq!(status, 403);
    assert!(
        body.starts_with("peer cluster-02 may not call POST /v1/health/service/backend"),
        "{body}"
    );

    let metrics = f.metrics().await;
    assert_eq!(requests(&metrics, "unknown", "stream", "denied"), 1.0);
    assert_eq!(requests(&metrics, "unknown", "health", "denied"), 1.0);
    assert_eq!(requests(&metrics, "cluster-03", "stream", "denied"), 1.0);
    assert_eq!(requests(&metrics, "cluster-02", "other", "denied"), 2.0);
}

/// A peer's leader probes the gateway with its mesh gateway certificate:
/// the gateway answers itself; strangers and pending peers are refused.
#[tokio::test]
async fn peers_gateway_probes_are_answered_by_the_gateway() {
    let f = Fixture::start().await;
    let mut peer = f.connect(&f.c.peer.gateway).await;
    assert_eq!(
        peer.call("GET", "/v1/peering/probe").await,
        (200, "ok".into())
    );
    let mut rogue = f.connect(&f.c.rogue.gateway).await;
    assert_eq!(
        rogue.call("GET", "/v1/peering/probe").await,
        (403, NOT_PEERED.into())
    );
    let mut pending = f.connect(&f.c.pending.gateway).await;
    assert_eq!(
        pending.call("GET", "/v1/peering/probe").await,
        (403, "peering cluster-03 is PENDING".into())
    );
    let metrics = f.metrics().await;
    assert_eq!(requests(&metrics, "cluster-02", "probe", "allowed"), 1.0);
    assert_eq!(requests(&metrics, "unknown", "probe", "denied"), 1.0);
    assert_eq!(requests(&metrics, "cluster-03", "probe", "denied"), 1.0);
}

#[tokio::test]
async fn the_replication_stream_is_full_duplex() {
    let f = Fixture::start().await;
    let mut conn = f.connect(&f.c.peer.gateway).await;
    let (tx, body) = channel();
    let response = conn.request("POST", "/v1/peering/stream", body).await;
    assert_eq!(response.status(), 200);
    let mut lines = Lines::new(response.into_body());
    assert_eq!(lines.next().await.as_deref(), Some("peer=cluster-02"));
    // Each line comes back while the request body is still open.
    for i in 0..3 {
        let line = format!("{{\"Type\":\"Heartbeat\",\"N\":{i}}}");
        tx.send(Bytes::from(format!("{line}\n"))).await.unwrap();
        assert_eq!(lines.next().await, Some(line));
    }
    drop(tx);
    assert_eq!(lines.next().await, None);
    let metrics = f.metrics().await;
    assert_eq!(requests(&metrics, "cluster-02", "stream", "allowed"), 1.0);
}

#[tokio::test]
async fn http1_peers_are_served_too() {
    let f = Fixture::start().await;
    let tls = tls_connect(
        f.gateway.bind_addr(),
        &server_name(),
        &f.c.local,
        &f.c.peer.gateway,
        b"http/1.1",
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = http::Request::get("/v1/health/service/web")
        .header("host", server_name())
        .body(full(""))
        .unwrap();
    let response = tokio::time::timeout(WAIT, send.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let (status, body) = read_all(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["peer"], "cluster-02");
}

#[tokio::test]
async fn tls12_peers_are_authenticated_too() {
    let f = Fixture::start().await;
    let tls12 = [&rustls::version::TLS12];
    let (addr, local) = (f.gateway.bind_addr(), &f.c.local);
    for (client, expected) in [
        (&f.c.peer.gateway, (200, None)),
        (&f.c.rogue.gateway, (403, Some(NOT_PEERED))),
    ] {
        let tls = tls_connect_versions(addr, &server_name(), local, client, b"h2", &tls12)
            .await
            .unwrap();
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        let mut conn = PeerConnection::over(tls).await;
        let (status, body) = conn.call("GET", "/v1/health/service/backend").await;
        assert_eq!(status, expected.0, "{body}");
        if let Some(text) = expected.1 {
            assert_eq!(body, text);
        }
    }
}

#[tokio::test]
async fn other_server_names_are_refused_without_a_handshake() {
    let f = Fixture::start().await;
    let addr = f.gateway.bind_addr();
    // Neither the peering name nor a peered service (an in-cluster service
    // name, say); peered service names are covered in tests/passthrough.rs.
    for sni in [
        "backend.default.cluster-01.internal.aaaa.isthmus",
        "example.com",
    ] {
        let err = tls_connect(addr, sni, &f.c.local, &f.c.peer.gateway, b"h2")
            .await
            .unwrap_err();
        // Closed before any ServerHello, so not a certificate problem.
        assert_ne!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    }
    // No SNI at all (rustls sends none for an IP address).
    let err = tls_connect(addr, "127.0.0.1", &f.c.local, &f.c.peer.gateway, b"h2")
        .await
        .unwrap_err();
    assert_ne!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    // Not TLS at all.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut buf),
    )
    .await
    .expect("connection left open");
    assert!(read.is_err() || buf.is_empty(), "got an answer: {buf:?}");

    let metrics = f.metrics().await;
    assert_eq!(metrics["gateway_tcp_open_total{sni_kind=\"refused\"}"], 4.0);
    assert_eq!(metrics["gateway_tcp_open_total{sni_kind=\"peering\"}"], 0.0);
    assert_eq!(
        metrics["gateway_tcp_open_total{sni_kind=\"passthrough\"}"],
        0.0
    );
    for (series, value) in &metrics {
        if series.starts_with("gateway_passthrough_refused_total") {
            assert_eq!(*value, 0.0, "{series}");
        }
    }
}

#[tokio::test]
async fn view_changes_apply_without_a_restart() {
    let f = Fixture::start().await;
    let mut conn = f.connect(&f.c.peer.gateway).await;
    assert_eq!(conn.call("GET", "/v1/health/service/backend").await.0, 200);

    // cluster-02 now exports only `web`.
    let mut peers = f.c.peers();
    peers[0].exported_services = vec!["web".into()];
    let index = f.stub.set_gateway_view(f.c.local.view(peers.clone()));
    f.stub.gateway_view_in_effect(index).await;
    assert_eq!(
        conn.call("GET", "/v1/health/service/backend").await,
        (
            403,
            "service backend is not exported to peer cluster-02".into()
        )
    );
    assert_eq!(conn.call("GET", "/v1/health/service/web").await.0, 200);

    // The peering is deleted: the same connection, and new ones, are strangers.
    peers.remove(0);
    let index = f.stub.set_gateway_view(f.c.local.view(peers));
    f.stub.gateway_view_in_effect(index).await;
    assert_eq!(
        conn.call("GET", "/v1/health/service/web").await,
        (403, NOT_PEERED.into())
    );
    let mut fresh = f.connect(&f.c.peer.gateway).await;
    assert_eq!(
        fresh.call("POST", "/v1/peering/stream").await,
        (403, NOT_PEERED.into())
    );
}

#[tokio::test]
async fn a_new_certificate_is_served_to_new_connections() {
    let f = Fixture::start().await;
    let old = f.connect(&f.c.peer.gateway).await;
    drop(old);
    let rotated = f.c.local.ca.gateway_leaf();
    let mut view = f.c.local.view(f.c.peers());
    view.certificate_pem = rotated.cert_pem.clone();
    view.private_key_pem = rotated.key_pem.clone();
    view.fingerprint = rotated.fingerprint.clone();
    let index = f.stub.set_gateway_view(view);
    f.stub.gateway_view_in_effect(index).await;
    let tls = tls_connect(
        f.gateway.bind_addr(),
        &server_name(),
        &f.c.local,
        &f.c.peer.gateway,
        b"h2",
    )
    .await
    .unwrap();
    let presented = &tls.get_ref().1.peer_certificates().unwrap()[0];
    assert_eq!(
        isthmus_api::tls::fingerprint(presented),
        rotated.fingerprint
    );
}

#[tokio::test]
async fn shutdown_deregisters_and_is_bounded_by_the_drain_timeout() {
    let f = Fixture::start().await;
    let mut conn = f.connect(&f.c.peer.gateway).await;
    let (tx, body) = channel();
    let response = conn.request("POST", "/v1/peering/stream", body).await;
    let mut lines = Lines::new(response.into_body());
    assert_eq!(lines.next().await.as_deref(), Some("peer=cluster-02"));

    let Fixture {
        c: _c,
        stub,
        gateway,
    } = f;
    let id = gateway.service_id().to_owned();
    let addr = gateway.bind_addr();
    let started = Instant::now();
    // The stream stays open, so only the drain timeout (1 s) ends it.
    tokio::time::timeout(WAIT, gateway.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(stub.next_deregistration().await, id);
    // The in-flight stream was ended and nothing accepts any more.
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(_line) = lines.next_or_error().await {}
    });
    ended.await.expect("stream still open after shutdown");
    drop(tx);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn start_fails_clearly_without_an_agent() {
    let control = format!("http://{}", closed_addr().await);
    let mut config = GatewayConfig::loopback(control.clone());
    config.startup_timeout = Duration::from_millis(500);
    let err = match isthmus_gateway::start(config).await {
        Err(e) => e,
        Ok(_) => panic!("started without an agent"),
    };
    assert!(matches!(err, StartError::NoView { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&control) && text.contains("cannot reach"),
        "{text}"
    );
}

#[tokio::test]
async fn a_wildcard_bind_needs_an_advertise_address() {
    let mut config = GatewayConfig::loopback("http://127.0.0.1:1");
    config.bind = "0.0.0.0:0".parse().unwrap();
    let err = match isthmus_gateway::start(config.clone()).await {
        Err(e) => e,
        Ok(_) => panic!("started with a wildcard advertise address"),
    };
    assert!(matches!(err, StartError::Config(_)), "{err}");
    assert!(err.to_string().contains("--advertise"), "{err}");
}

// ---------------------------------------------------------------- the binary

fn gateway_binary() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_isthmus-gateway"));
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// `bind=<addr> advertise=<addr> admin=http://<addr>` from the ready line.
fn parse_ready_line(line: &str) -> HashMap<String, String> {
    let rest = line
        .strip_prefix("isthmus-gateway running: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    rest.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_binary_prints_its_addresses_and_stops_cleanly_on_sigterm() {
    let c = Clusters::new();
    let stub = StubAgent::for_gateway(c.local.view(c.peers())).await;
    let mut child = gateway_binary()
        .args([
            "-control",
            &stub.url(),
            "-bind=127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
        ])
        .args(["-drain-timeout", "1s", "-log-json"])
        .spawn()
        .unwrap();
    let (line, mut lines) = ready_line(&mut child).await;
    let fields = parse_ready_line(&line);
    let bind: std::net::SocketAddr = fields["bind"].parse().unwrap();
    assert_eq!(fields["advertise"], bind.to_string());
    let admin: std::net::SocketAddr = fields["admin"]
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(bind.port(), 0);

    let registration = stub.next_registration().await;
    assert_eq!(registration["Port"], bind.port());
    assert_eq!(admin_get(admin, "/ready").await.0, 200);
    let mut conn = PeerConnection::connect(bind, &c.local, &c.peer.gateway).await;
    assert_eq!(conn.call("GET", "/v1/health/service/backend").await.0, 200);

    let status = sigterm_and_wait(&mut child).await;
    assert!(status.success(), "{status}");
    assert_eq!(
        stub.next_deregistration().await,
        registration["ID"].as_str().unwrap()
    );
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "exactly one line on stdout"
    );
}

#[tokio::test]
async fn the_binary_refuses_a_wildcard_bind_without_advertise() {
    let output = gateway_binary()
        .args([
            "-bind",
            "0.0.0.0:0",
            "-admin-bind",
            "127.0.0.1:0",
            "-control",
            "http://127.0.0.1:1",
        ])
        .output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wildcard") && stderr.contains("--advertise"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn the_binary_names_unknown_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.hcl");
    std::fs::write(&path, "bind = \"127.0.0.1:0\"\nadvertize = \"x:1\"\n").unwrap();
    let output = gateway_binary()
        .args(["-config-file", path.to_str().unwrap()])
        .output();
    let output = tokio::time::timeout(WAIT, output).await.unwrap().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("advertize"), "{stderr}");
}
