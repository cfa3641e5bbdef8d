//! Attacks on the sidecar's listeners: callers that complete the mTLS
//! handshake and then send nothing or a partial request, a connection
//! flood over the cap, idle keep-alive connections, and the admin
//! listener. Real TLS, loopback, ephemeral ports.

mod support;

use std::time::{Duration, Instant};

use isthmus_proxy::{Protocol, RunningProxy};
use support::*;
use tokio::io::AsyncWriteExt;

const BACKEND: &str = "backend";
const HEADER_READ: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_millis(800);

struct Fixture {
    ca: Ca,
    _stub: StubAgent,
    _app: HttpApp,
    proxy: RunningProxy,
}

impl Fixture {
    async fn start(customize: impl FnOnce(&mut isthmus_proxy::ProxyConfig)) -> Fixture {
        let ca = Ca::local();
        let view = view(&ca, vec![], vec![l4(BACKEND, &[("web", "allow")])]);
        let stub = StubAgent::for_proxy(ca.leaf(BACKEND).leaf_cert(BACKEND), view).await;
        let app = HttpApp::start(BACKEND).await;
        let mut config = proxy_config(&stub, BACKEND, app.addr, Protocol::Http, &[]);
        config.limits.header_read_timeout = HEADER_READ;
        config.limits.idle_timeout = IDLE;
        customize(&mut config);
        let proxy = start_ready(config).await;
        Fixture {
            ca,
            _stub: stub,
            _app: app,
            proxy,
        }
    }

    async fn handshaken(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let config = tls_config(&self.ca.leaf("web"), &self.ca, BACKEND, &[b"http/1.1"]);
        mtls(self.proxy.inbound_addr(), config).await.unwrap()
    }

    async fn wait_for_metric(&self, series: &str, value: f64) {
        wait_for_metric(self.proxy.admin_addr(), series, value).await
    }
}

fn series(kind: &str, listener: &str, label: &str, value: &str) -> String {
    format!("connections_{kind}_total{{listener=\"{listener}\",{label}=\"{value}\"}}")
}

#[tokio::test]
async fn partial_requests_after_the_handshake_are_closed_and_others_served() {
    let f = Fixture::start(|_| {}).await;
    let mut attackers = Vec::new();
    for i in 0..6 {
        let mut tls = f.handshaken().await;
        if i % 2 == 0 {
            tls.write_all(b"GET /secret HTTP/1.1\r\nhost: backe")
                .await
                .unwrap();
            tls.flush().await.unwrap();
        }
        attackers.push(tls);
    }
    // A caller that does send its request is answered meanwhile.
    let config = tls_config(&f.ca.leaf("web"), &f.ca, BACKEND, &[b"http/1.1"]);
    let reply = try_get(f.proxy.inbound_addr(), config, "/").await.unwrap();
    assert_eq!(reply.status, 200);
    for tls in &mut attackers {
        let took = wait_closed(tls).await;
        assert!(took < WAIT / 2, "{took:?}");
    }
    f.wait_for_metric(
        &series("timed_out", "inbound", "timeout", "header_read"),
        6.0,
    )
    .await;
}

#[tokio::test]
async fn an_http2_connection_without_requests_in_flight_is_closed_at_the_idle_timeout() {
    let f = Fixture::start(|_| {}).await;
    let config = tls_config(&f.ca.leaf("web"), &f.ca, BACKEND, &[b"h2"]);
    let tls = mtls(f.proxy.inbound_addr(), config).await.unwrap();
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::builder()
        .uri("http://backend/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(WAIT, send.send_request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read(response).await.unwrap().status, 200);
    let idle_since = Instant::now();
    tokio::time::timeout(WAIT, connection)
        .await
        .expect("the idle connection is closed")
        .unwrap()
        .ok();
    assert!(
        idle_since.elapsed() >= IDLE / 2,
        "{:?}",
        idle_since.elapsed()
    );
    f.wait_for_metric(&series("timed_out", "inbound", "timeout", "idle"), 1.0)
        .await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_accept() {
    let f = Fixture::start(|c| {
        c.limits.max_conns = 3;
        c.limits.header_read_timeout = WAIT * 2;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(f.handshaken().await);
    }
    let mut over = tokio::net::TcpStream::connect(f.proxy.inbound_addr())
        .await
        .unwrap();
    let took = wait_closed(&mut over).await;
    assert!(took < WAIT / 2, "{took:?}");
    f.wait_for_metric(&series("refused", "inbound", "reason", "max_conns"), 1.0)
        .await;
    // The proxy stays healthy: its admin listener answers, and places come
    // back when connections close.
    assert_eq!(admin_get(f.proxy.admin_addr(), "/ready").await.0, 200);
    drop(held);
    eventually("a place to come back", || async {
        let config = tls_config(&f.ca.leaf("web"), &f.ca, BACKEND, &[b"http/1.1"]);
        try_get(f.proxy.inbound_addr(), config, "/")
            .await
            .ok()
            .map(drop)
    })
    .await;
}

#[tokio::test]
async fn the_admin_listener_closes_partial_requests_and_caps_connections() {
    let f = Fixture::start(|c| c.admin_max_conns = 3).await;
    let admin = f.proxy.admin_addr();
    let mut partial = Vec::new();
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tcp.write_all(b"GET /rea").await.unwrap();
        partial.push(tcp);
    }
    let mut over = tokio::net::TcpStream::connect(admin).await.unwrap();
    let took = wait_closed(&mut over).await;
    assert!(took < HEADER_READ, "{took:?}");
    for tcp in &mut partial {
        wait_closed(tcp).await;
    }
    f.wait_for_metric(&series("timed_out", "admin", "timeout", "header_read"), 3.0)
        .await;
    let m = metrics(&f.proxy).await;
    assert!(m[&series("refused", "admin", "reason", "max_conns")] >= 1.0);
}
