//! Service traffic passed through the gateway by SNI, against the stub
//! agent and a stub sidecar: real TLS end to end, everything on loopback
//! with ephemeral ports.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use isthmus_api::gateway::{GatewayPeer, GatewayView};
use isthmus_api::naming::peered_sni;
use isthmus_gateway::{GatewayConfig, RunningGateway};
use support::*;
use tokio::io::AsyncReadExt;

/// Our cluster (the exporter) and the clusters importing from it.
struct Clusters {
    local: LocalCluster,
    /// ACTIVE, built-in `peering` group; `backend`, `web` (no endpoints)
    /// and `dead` (unreachable endpoints) exported.
    peer: PeerCluster,
    /// ACTIVE, may only view (not connect to) its exports.
    limited: PeerCluster,
    /// PENDING.
    pending: PeerCluster,
    /// `web` in cluster-02: the caller's own certificate.
    caller: Leaf,
    /// `backend`'s sidecar in this cluster.
    sidecar_cert: Leaf,
}

impl Clusters {
    fn new() -> Clusters {
        let local = LocalCluster::new();
        let peer = PeerCluster::new("cluster-02", "bbbb.isthmus");
        let caller = peer.ca.leaf("web");
        let sni = backend_sni();
        let sidecar_cert = local.ca.leaf_with_dns_names("backend", &[sni.as_str()]);
        Clusters {
            local,
            peer,
            limited: PeerCluster::new("cluster-04", "dddd.isthmus"),
            pending: PeerCluster::new("cluster-03", "cccc.isthmus"),
            caller,
            sidecar_cert,
        }
    }

    fn peers(&self) -> Vec<GatewayPeer> {
        let mut limited = self.limited.peer("ACTIVE", &["backend"]);
        limited.groups = vec!["viewers".into()];
        limited.permissions = vec![can_view("backend")];
        vec![
            self.peer.peer("ACTIVE", &["backend", "web", "dead"]),
            limited,
            self.pending.peer("PENDING", &["backend"]),
        ]
    }
}

/// What cluster-02's `web` dials to reach our `backend`.
fn backend_sni() -> String {
    peered_sni("backend", "cluster-02", LOCAL_TD)
}

struct Fixture {
    c: Clusters,
    sidecar: StubSidecar,
    /// Where nothing listens: listed before the sidecar for `backend`
    /// (so round robin has to skip it half the time) and alone for `dead`.
    closed: SocketAddr,
    stub: StubAgent,
    gateway: RunningGateway,
}

impl Fixture {
    async fn start(drain: Duration) -> Fixture {
        Fixture::start_with(drain, |_| {}).await
    }

    async fn start_with(drain: Duration, customize: impl FnOnce(&mut GatewayConfig)) -> Fixture {
        let c = Clusters::new();
        let sidecar = StubSidecar::start(&c.sidecar_cert, &c.peer.ca.pem).await;
        let closed = closed_addr().await;
        let mut view = c.local.view(c.peers());
        view.endpoints = [
            (
                "backend".to_owned(),
                vec![closed.to_string(), sidecar.addr.to_string()],
            ),
            ("dead".to_owned(), vec![closed.to_string()]),
        ]
        .into_iter()
        .collect();
        let stub = StubAgent::for_gateway(view).await;
        let mut config = GatewayConfig::loopback(stub.url());
        config.drain_timeout = drain;
        config.startup_timeout = WAIT;
        customize(&mut config);
        let gateway = isthmus_gateway::start(config).await.unwrap();
        Fixture {
            c,
            sidecar,
            closed,
            stub,
            gateway,
        }
    }

    /// Dials the gateway as cluster-02's `web`.
    async fn dial(
        &self,
        sni: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        service_connect(
            self.gateway.bind_addr(),
            sni,
            &self.c.local.ca.pem,
            &self.c.caller,
        )
        .await
    }

    fn view(&self, peers: Vec<GatewayPeer>) -> GatewayView {
        let mut view = self.c.local.view(peers);
        view.endpoints = self.stub_view_endpoints();
        view
    }

    fn stub_view_endpoints(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        [(
            "backend".to_owned(),
            vec![self.closed.to_string(), self.sidecar.addr.to_string()],
        )]
        .into_iter()
        .collect()
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        admin_metrics(self.gateway.admin_addr()).await
    }

    /// Polls `/metrics` until `series` has `value`.
    async fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(self.gateway.admin_addr(), series, value).await
    }
}

const BACKEND_LABELS: &str = "{peer=\"cluster-02\",service=\"backend\"}";

fn refused(metrics: &HashMap<String, f64>, reason: &str) -> f64 {
    metrics[&format!("gateway_passthrough_refused_total{{reason=\"{reason}\"}}")]
}

#[tokio::test]
async fn service_traffic_reaches_the_sidecar_with_end_to_end_mtls() {
    let f = Fixture::start(Duration::from_secs(1)).await;
    // Twice: round robin starts once on the closed endpoint, once on the sidecar.
    for round in 0..2 {
        let mut tls = f.dial(&backend_sni()).await.unwrap();
        // The handshake was with the sidecar: its certificate, not the gateway's.
        let presented = &tls.get_ref().1.peer_certificates().unwrap()[0];
        let presented = isthmus_api::tls::fingerprint(presented);
        assert_eq!(presented, f.c.sidecar_cert.fingerprint);
        assert_ne!(presented, f.c.local.gateway.fingerprint);
        // And the sidecar saw the caller's own certificate.
        assert_eq!(f.sidecar.next_handshake().await, f.c.caller.fingerprint);

        let payload = format!("hello from web, round {round}");
        assert_eq!(echo(&mut tls, payload.as_bytes()).await, payload.as_bytes());
        let big = vec![0x5a_u8; 256 * 1024];
        assert_eq!(echo(&mut tls, &big).await, big);

        let metrics = f.metrics().await;
        assert_eq!(metrics["gateway_passthrough_open_connections"], 1.0);
        assert_eq!(metrics["gateway_tcp_open_connections"], 1.0);
        drop(tls);
        f.wait_for_metric("gateway_passthrough_open_connections", 0.0)
            .await;
    }
    assert_eq!(f.sidecar.accepted(), 2);

    let metrics = f.metrics().await;
    assert_eq!(
        metrics["gateway_tcp_open_total{sni_kind=\"passthrough\"}"],
        2.0
    );
    assert_eq!(metrics["gateway_tcp_open_total{sni_kind=\"refused\"}"], 0.0);
    assert_eq!(
        metrics[&format!("gateway_passthrough_connections_total{BACKEND_LABELS}")],
        2.0
    );
    // Both directions carried the handshakes and 2 x 256 KiB of echo.
    let read = metrics[&format!("gateway_tcp_read_bytes_total{BACKEND_LABELS}")];
    let written = metrics[&format!("gateway_tcp_write_bytes_total{BACKEND_LABELS}")];
    for bytes in [read, written] {
        assert!(
            bytes > 2.0 * 256.0 * 1024.0,
            "{read} read, {written} written"
        );
        assert!(
            bytes < 2.0 * 256.0 * 1024.0 + 64.0 * 1024.0,
            "{read} read, {written} written"
        );
    }
    assert_eq!(metrics["gateway_tcp_open_connections"], 0.0);
}

#[tokio::test]
async fn refused_service_connections_close_without_a_handshake() {
    let f = Fixture::start(Duration::from_secs(1)).await;
    let cases = [
        (
            peered_sni("backend", "cluster-02", "bbbb.isthmus"),
            "trust_domain",
        ),
        (peered_sni("backend", "cluster-09", LOCAL_TD), "peer"),
        (peered_sni("backend", "cluster-03", LOCAL_TD), "peer"),
        (peered_sni("db", "cluster-02", LOCAL_TD), "not_exported"),
        (
            "backend.other.default.cluster-02.external.aaaa.isthmus".to_owned(),
            "not_exported",
        ),
        (
            peered_sni("backend", "cluster-04", LOCAL_TD),
            "not_permitted",
        ),
        (peered_sni("web", "cluster-02", LOCAL_TD), "no_endpoint"),
        (peered_sni("dead", "cluster-02", LOCAL_TD), "connect_failed"),
    ];
    let mut expected: HashMap<&str, f64> = HashMap::new();
    for (sni, reason) in &cases {
        let err = f.dial(sni).await.unwrap_err();
        // Closed before any ServerHello, so not a certificate problem.
        assert_ne!(err.kind(), std::io::ErrorKind::InvalidData, "{sni}: {err}");
        *expected.entry(reason).or_default() += 1.0;
        let metrics = f.metrics().await;
        for (reason, count) in &expected {
            assert_eq!(refused(&metrics, reason), *count, "{reason} after {sni}");
        }
    }
    let metrics = f.metrics().await;
    for reason in [
        "trust_domain",
        "peer",
        "not_exported",
        "not_permitted",
        "no_endpoint",
        "connect_failed",
    ] {
        assert_eq!(refused(&metrics, reason), expected[reason], "{reason}");
    }
    assert_eq!(
        metrics["gateway_tcp_open_total{sni_kind=\"refused\"}"],
        cases.len() as f64
    );
    assert_eq!(
        metrics["gateway_tcp_open_total{sni_kind=\"passthrough\"}"],
        0.0
    );
    assert!(!metrics
        .keys()
        .any(|k| k.starts_with("gateway_passthrough_connections_total")));
    assert_eq!(
        f.sidecar.accepted(),
        0,
        "a refused connection reached the sidecar"
    );
}

#[tokio::test]
async fn view_changes_apply_to_new_connections() {
    let f = Fixture::start(Duration::from_secs(1)).await;
    let mut established = f.dial(&backend_sni()).await.unwrap();
    assert_eq!(echo(&mut established, b"before").await, b"before");

    // cluster-02 no longer imports `backend`.
    let mut peers = f.c.peers();
    peers[0].exported_services = vec!["web".into()];
    let index = f.stub.set_gateway_view(f.view(peers));
    f.stub.gateway_view_in_effect(index).await;
    let err = f.dial(&backend_sni()).await.unwrap_err();
    assert_ne!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
    assert_eq!(refused(&f.metrics().await, "not_exported"), 1.0);
    // A connection already passed through is left alone.
    assert_eq!(echo(&mut established, b"after").await, b"after");

    // Exported again, but with no healthy sidecar left.
    let mut view = f.view(f.c.peers());
    view.endpoints.clear();
    let index = f.stub.set_gateway_view(view);
    f.stub.gateway_view_in_effect(index).await;
    assert!(f.dial(&backend_sni()).await.is_err());
    assert_eq!(refused(&f.metrics().await, "no_endpoint"), 1.0);

    // And back.
    let index = f.stub.set_gateway_view(f.view(f.c.peers()));
    f.stub.gateway_view_in_effect(index).await;
    let mut fresh = f.dial(&backend_sni()).await.unwrap();
    assert_eq!(echo(&mut fresh, b"again").await, b"again");
    assert_eq!(f.sidecar.accepted(), 2);
}

#[tokio::test]
async fn shutdown_drains_passthrough_connections_then_closes_them() {
    let drain = Duration::from_secs(2);
    let f = Fixture::start(drain).await;
    let mut tls = f.dial(&backend_sni()).await.unwrap();
    assert_eq!(echo(&mut tls, b"before").await, b"before");

    let Fixture {
        c: _c,
        sidecar: _sidecar,
        stub,
        gateway,
        ..
    } = f;
    let addr = gateway.bind_addr();
    let started = Instant::now();
    let shutdown = tokio::spawn(gateway.shutdown());
    // Once nothing accepts any more, the gateway is draining...
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and the passed-through connection still works.
    assert!(started.elapsed() < drain, "too slow to test the drain");
    assert_eq!(echo(&mut tls, b"draining").await, b"draining");

    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown hung")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= drain && took < drain + Duration::from_secs(3),
        "took {took:?}"
    );
    stub.next_deregistration().await;
    // The drain timeout closed it.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .expect("connection still open after shutdown");
    assert!(read.is_err() || rest.is_empty(), "{read:?} {rest:?}");
}

#[tokio::test]
async fn an_idle_passed_through_connection_is_closed_a_busy_one_is_not() {
    let idle = Duration::from_millis(600);
    let f = Fixture::start_with(Duration::from_secs(1), |c| {
        c.passthrough_idle_timeout = idle
    })
    .await;
    let mut tls = f.dial(&backend_sni()).await.unwrap();
    // Busy for three idle timeouts: bytes keep it open.
    let started = Instant::now();
    while started.elapsed() < idle * 3 {
        assert_eq!(echo(&mut tls, b"ping").await, b"ping");
        tokio::time::sleep(idle / 6).await;
    }
    // Then silent: closed by the gateway.
    let silent = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, tls.read(&mut buf))
        .await
        .expect("the gateway closes an idle connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(silent.elapsed() >= idle / 2, "{:?}", silent.elapsed());
    f.wait_for_metric(
        "gateway_connections_timed_out_total{listener=\"passthrough\",timeout=\"idle\"}",
        1.0,
    )
    .await;
    f.wait_for_metric("gateway_passthrough_open_connections", 0.0)
        .await;
}
