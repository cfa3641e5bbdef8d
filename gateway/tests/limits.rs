//! Attacks on the gateway's listeners: peering connections that complete
//! their TLS handshake and then send nothing (or a partial request), HTTP/2
//! connections that keep no stream open, a connection flood over the cap,
//! and the admin listener. Real TLS, loopback, ephemeral ports.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use isthmus_gateway::{GatewayConfig, RunningGateway};
use support::*;
use tokio::io::AsyncWriteExt;

const HEADER_READ: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_millis(800);

struct Fixture {
    local: LocalCluster,
    peer: PeerCluster,
    _stub: StubAgent,
    gateway: RunningGateway,
}

impl Fixture {
    async fn start(customize: impl FnOnce(&mut GatewayConfig)) -> Fixture {
        let local = LocalCluster::new();
        let peer = PeerCluster::new("cluster-02", "bbbb.isthmus");
        let stub =
            StubAgent::for_gateway(local.view(vec![peer.peer("ACTIVE", &["backend"])])).await;
        let mut config = GatewayConfig::loopback(stub.url());
        config.drain_timeout = Duration::from_secs(1);
        config.startup_timeout = WAIT;
        config.limits.header_read_timeout = HEADER_READ;
        config.limits.idle_timeout = IDLE;
        customize(&mut config);
        let gateway = isthmus_gateway::start(config).await.unwrap();
        Fixture {
            local,
            peer,
            _stub: stub,
            gateway,
        }
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        admin_metrics(self.gateway.admin_addr()).await
    }

    async fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(self.gateway.admin_addr(), series, value).await
    }
}

fn timed_out(which: &str, listener: &str) -> String {
    format!("gateway_connections_timed_out_total{{listener=\"{listener}\",timeout=\"{which}\"}}")
}

#[tokio::test]
async fn a_handshaken_connection_that_sends_nothing_or_too_little_is_closed() {
    let f = Fixture::start(|_| {}).await;
    let addr = f.gateway.bind_addr();
    let client = &f.peer.gateway;
    // HTTP/2 negotiated, then silence (not even the preface).
    let mut silent = tls_connect(addr, &server_name(), &f.local, client, b"h2")
        .await
        .unwrap();
    // HTTP/1.1 negotiated, then half a request line.
    let mut partial = tls_connect(addr, &server_name(), &f.local, client, b"http/1.1")
        .await
        .unwrap();
    partial
        .write_all(b"GET /v1/health/service/backend HT")
        .await
        .unwrap();
    partial.flush().await.unwrap();
    // HTTP/2 preface and settings, but never a request.
    let mut preface = tls_connect(addr, &server_name(), &f.local, client, b"h2")
        .await
        .unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    preface.flush().await.unwrap();
    for stream in [&mut silent, &mut partial, &mut preface] {
        let took = wait_closed(stream).await;
        assert!(took < WAIT / 2, "{took:?}");
    }
    f.wait_for_metric(&timed_out("header_read", "peering"), 3.0)
        .await;
    // A peer that does send requests is still served.
    let mut conn = PeerConnection::connect(addr, &f.local, client).await;
    let (status, _) = conn.call("GET", "/v1/health/service/backend").await;
    assert_ne!(status, 0);
}

#[tokio::test]
async fn http2_without_an_open_stream_is_closed_a_long_stream_is_not() {
    let f = Fixture::start(|_| {}).await;
    let addr = f.gateway.bind_addr();
    // A replication stream open for several idle timeouts stays up.
    let tls = tls_connect(addr, &server_name(), &f.local, &f.peer.gateway, b"h2")
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(conn);
    let (tx, body) = channel();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("https://{}/v1/peering/stream", server_name()))
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(WAIT, send.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut lines = Lines::new(response.into_body());
    assert_eq!(lines.next().await.as_deref(), Some("peer=cluster-02"));
    let quiet = Instant::now();
    // Quiet (no bytes at all on the stream) for three idle timeouts.
    tokio::time::sleep(IDLE * 3).await;
    assert!(
        !connection.is_finished(),
        "the stream's connection was cut after {:?}",
        quiet.elapsed()
    );
    tx.send(Bytes::from_static(b"{\"Type\":\"Heartbeat\"}\n"))
        .await
        .unwrap();
    assert_eq!(
        lines.next().await.as_deref(),
        Some("{\"Type\":\"Heartbeat\"}")
    );
    // The stream ends: now no stream is open, and the connection goes.
    drop(tx);
    assert_eq!(lines.next().await, None);
    let ended = Instant::now();
    tokio::time::timeout(WAIT, connection)
        .await
        .expect("an HTTP/2 connection without streams is closed")
        .unwrap()
        .ok();
    assert!(ended.elapsed() >= IDLE / 2, "{:?}", ended.elapsed());
    f.wait_for_metric(&timed_out("idle", "peering"), 1.0).await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_accept() {
    let f = Fixture::start(|c| {
        c.limits.max_conns = 3;
        c.limits.header_read_timeout = WAIT * 2;
    })
    .await;
    let addr = f.gateway.bind_addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            tls_connect(addr, &server_name(), &f.local, &f.peer.gateway, b"h2")
                .await
                .unwrap(),
        );
    }
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let took = wait_closed(&mut over).await;
    assert!(took < WAIT / 2, "{took:?}");
    f.wait_for_metric(
        "gateway_connections_refused_total{listener=\"tls\",reason=\"max_conns\"}",
        1.0,
    )
    .await;
    drop(held);
    // Places come back once connections close.
    eventually("a place to come back", || async {
        let tls = tls_connect(addr, &server_name(), &f.local, &f.peer.gateway, b"h2").await;
        tls.ok().map(drop)
    })
    .await;
}

#[tokio::test]
async fn the_admin_listener_closes_partial_requests_and_caps_connections() {
    let f = Fixture::start(|c| c.admin_max_conns = 4).await;
    let admin = f.gateway.admin_addr();
    let mut partial = Vec::new();
    for _ in 0..4 {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tcp.write_all(b"GET /metr").await.unwrap();
        partial.push(tcp);
    }
    // Over the cap: closed at once.
    let mut over = tokio::net::TcpStream::connect(admin).await.unwrap();
    let took = wait_closed(&mut over).await;
    assert!(took < HEADER_READ, "{took:?}");
    // The partial ones: closed at the header-read timeout.
    for tcp in &mut partial {
        wait_closed(tcp).await;
    }
    let metrics = f.metrics().await;
    assert_eq!(metrics[&timed_out("header_read", "admin")], 4.0);
    assert!(
        metrics["gateway_connections_refused_total{listener=\"admin\",reason=\"max_conns\"}"]
            >= 1.0
    );
}
