//! Two proxies, `web` (with an upstream to `backend`) and `backend`, each
//! with its own stub agent (one per node), talking mTLS on loopback; and
//! the real binary.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use isthmus_api::proxy::UpstreamView;
use isthmus_proxy::{Protocol, RunningProxy};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WEB: &str = "web";
const BACKEND: &str = "backend";

/// `web` → `backend`, both in `protocol`.
struct Pair {
    ca: Ca,
    web_stub: StubAgent,
    backend_stub: StubAgent,
    web: RunningProxy,
    backend: RunningProxy,
}

impl Pair {
    async fn start(protocol: Protocol, backend_app: SocketAddr) -> Pair {
        let ca = Ca::local();
        let entries = vec![l4(BACKEND, &[(WEB, "allow")])];
        let backend_stub = StubAgent::for_proxy(
            ca.leaf(BACKEND).leaf_cert(BACKEND),
            view(&ca, vec![], entries.clone()),
        )
        .await;
        let backend = start_ready(proxy_config(
            &backend_stub,
            BACKEND,
            backend_app,
            protocol,
            &[],
        ))
        .await;
        let web_stub =
            StubAgent::for_proxy(ca.leaf(WEB).leaf_cert(WEB), view(&ca, vec![], entries)).await;
        let index = web_stub.set_upstream(
            BACKEND,
            upstream_view(&ca, BACKEND, &[backend.inbound_addr()]),
        );
        // The web app itself is not called in these tests.
        let unused_app: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let web = start_ready(proxy_config(
            &web_stub,
            WEB,
            unused_app,
            protocol,
            &["backend:0"],
        ))
        .await;
        web_stub.upstream_in_effect(BACKEND, index).await;
        Pair {
            ca,
            web_stub,
            backend_stub,
            web,
            backend,
        }
    }

    fn upstream(&self) -> SocketAddr {
        self.web.upstream_addr(BACKEND).unwrap()
    }

    async fn set_upstream(&self, view: UpstreamView) {
        let index = self.web_stub.set_upstream(BACKEND, view);
        self.web_stub.upstream_in_effect(BACKEND, index).await;
    }
}

#[tokio::test]
async fn http1_and_h2c_from_the_app_reach_the_upstream_over_mtls() {
    let app = HttpApp::start(BACKEND).await;
    let pair = Pair::start(Protocol::Http, app.addr).await;
    for h2 in [false, true] {
        let mut conn = if h2 {
            HttpConn::plain_h2(pair.upstream()).await
        } else {
            HttpConn::plain_h1(pair.upstream()).await
        };
        for i in 0..3 {
            let reply = conn
                .call("GET", &format!("/items/{i}?q=1"), &[("x-trace", "t1")])
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{reply:?}");
            let seen = reply.json();
            assert_eq!(seen["app"], BACKEND);
            assert_eq!(seen["uri"], format!("/items/{i}?q=1"));
            assert_eq!(seen["headers"]["host"], "backend");
            assert_eq!(seen["headers"]["x-trace"], "t1");
            assert_eq!(
                seen["headers"]["x-forwarded-client-cert"],
                format!(
                    "By={};URI={}",
                    pair.ca.service_uri(BACKEND),
                    pair.ca.service_uri(WEB)
                )
            );
        }
        // Bodies stream both ways.
        let request = conn.request("POST", "/stream", &[], "a body that goes there and back");
        let reply = read(conn.send(request).await.unwrap()).await.unwrap();
        assert_eq!(reply.body, "a body that goes there and back");
    }
    let web = metrics(&pair.web).await;
    assert_eq!(web["request_total{direction=\"outbound\"}"], 8.0);
    assert_eq!(
        web["response_total{classification=\"success\",direction=\"outbound\",status_code=\"200\"}"],
        8.0
    );
    assert_eq!(
        web["tcp_open_total{direction=\"outbound\",tls=\"disabled\"}"],
        2.0
    );
    let backend = metrics(&pair.backend).await;
    assert_eq!(backend["request_total{direction=\"inbound\"}"], 8.0);
    assert!(
        backend["tcp_open_total{direction=\"inbound\",tls=\"true\"}"] <= 2.0,
        "requests share pooled connections"
    );
    let config = config_json(&pair.web).await;
    let upstream = &config["upstreams"][0];
    assert_eq!(upstream["upstream"], BACKEND);
    assert_eq!(
        upstream["endpoints"][0]["address"],
        pair.backend.inbound_addr().to_string()
    );
}

#[tokio::test]
async fn tcp_mode_end_to_end() {
    let echo = TcpEcho::start().await;
    let pair = Pair::start(Protocol::Tcp, echo.addr).await;
    for round in 0..2 {
        let mut local = tokio::net::TcpStream::connect(pair.upstream())
            .await
            .unwrap();
        let message = format!("round {round}: bytes through two proxies");
        local.write_all(message.as_bytes()).await.unwrap();
        local.shutdown().await.unwrap();
        let mut back = String::new();
        tokio::time::timeout(WAIT, local.read_to_string(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, message);
    }
}

#[tokio::test]
async fn upgrades_pass_through_both_proxies() {
    let app = HttpApp::start(BACKEND).await;
    let pair = Pair::start(Protocol::Http, app.addr).await;
    let mut conn = HttpConn::plain_h1(pair.upstream()).await;
    let request = conn.request(
        "GET",
        "/ws",
        &[("connection", "upgrade"), ("upgrade", "websocket")],
        "",
    );
    let response = conn.send(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(response))
        .await
        .unwrap()
        .unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    for chunk in [&b"first"[..], b"\x00\x01\x02binary", b"last"] {
        io.write_all(chunk).await.unwrap();
        let mut echoed = vec![0u8; chunk.len()];
        tokio::time::timeout(WAIT, io.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoed, chunk);
    }
}

#[tokio::test]
async fn failures_are_explicit() {
    let app = HttpApp::start(BACKEND).await;
    let pair = Pair::start(Protocol::Http, app.addr).await;
    let mut conn = HttpConn::plain_h1(pair.upstream()).await;
    assert_eq!(conn.get("/").await.status, 200);

    // No endpoints: 503, the header, and the agent's reason.
    let mut none = upstream_view(&pair.ca, BACKEND, &[]);
    none.reason = "no healthy instance of backend in cluster-01".into();
    pair.set_upstream(none).await;
    let reply = conn.get("/").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("x-isthmus-error"), Some("no healthy endpoint"));
    assert!(
        reply.body.contains("no healthy instance of backend"),
        "{}",
        reply.body
    );

    // A server with the wrong identity: the handshake fails, nothing is sent.
    let mut impostor = upstream_view(&pair.ca, BACKEND, &[pair.backend.inbound_addr()]);
    impostor.spiffe_id = pair.ca.service_uri("payments");
    pair.set_upstream(impostor).await;
    let reply = conn.get("/").await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.header("x-isthmus-error"), Some("upstream tls failed"));
    assert!(reply.body.contains("payments"), "{}", reply.body);

    // Nobody listening: 503 after trying.
    let closed = closed_addr().await;
    pair.set_upstream(upstream_view(&pair.ca, BACKEND, &[closed]))
        .await;
    let reply = conn.get("/").await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.header("x-isthmus-error"),
        Some("upstream connect failed")
    );

    // ...but a dead endpoint next to a live one costs nothing: the connect
    // failure is retried on the other.
    pair.set_upstream(upstream_view(
        &pair.ca,
        BACKEND,
        &[closed, pair.backend.inbound_addr()],
    ))
    .await;
    for _ in 0..10 {
        assert_eq!(conn.get("/").await.status, 200);
    }

    // The upstream's intentions deny us: the call fails, explicitly.
    pair.set_upstream(upstream_view(
        &pair.ca,
        BACKEND,
        &[pair.backend.inbound_addr()],
    ))
    .await;
    let index = pair.backend_stub.set_proxy_view(view(
        &pair.ca,
        vec![],
        vec![l4(BACKEND, &[(WEB, "deny")])],
    ));
    pair.backend_stub.proxy_view_in_effect(index).await;
    let mut fresh = HttpConn::plain_h2(pair.upstream()).await;
    let reply = fresh.get("/").await;
    assert_eq!(
        reply.status, 403,
        "requests on pooled connections are checked one by one"
    );
    // With a new leaf, web dials new connections, which backend refuses at L4.
    let index = pair.web_stub.set_leaf(pair.ca.leaf(WEB).leaf_cert(WEB));
    pair.web_stub.leaf_in_effect(index).await;
    let mut same = upstream_view(&pair.ca, BACKEND, &[pair.backend.inbound_addr()]);
    same.reason = "rebuilt after the new leaf".into();
    pair.set_upstream(same).await;
    let reply = fresh.get("/").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert_eq!(
        reply.header("x-isthmus-error"),
        Some("upstream request failed")
    );

    let m = metrics(&pair.web).await;
    let errors =
        |kind: &str| m[&format!("outbound_errors_total{{kind=\"{kind}\",upstream=\"backend\"}}")];
    assert_eq!(errors("no_endpoint"), 1.0);
    assert_eq!(errors("tls"), 1.0);
    assert!(errors("connect") >= 1.0);
    assert_eq!(
        m["response_total{classification=\"failure\",direction=\"outbound\",status_code=\"503\"}"],
        2.0
    );
}

#[tokio::test]
async fn peer_upstreams_use_the_peers_roots_and_identity() {
    // backend lives in the peer cluster (its CA, its trust domain); the
    // endpoint stands in for the peer's mesh gateway, which passes TLS through.
    let ours = Ca::local();
    let theirs = Ca::peer();
    let app = HttpApp::start(BACKEND).await;
    let backend_stub = StubAgent::for_proxy(
        theirs.leaf(BACKEND).leaf_cert(BACKEND),
        view(
            &theirs,
            vec![ours.as_peer("cluster-01")],
            vec![intentions(json!({
                "Kind": "service-intentions",
                "Name": BACKEND,
                "Sources": [{"Name": WEB, "Peer": "cluster-01", "Action": "allow"}]
            }))],
        ),
    )
    .await;
    let backend = start_ready(proxy_config(
        &backend_stub,
        BACKEND,
        app.addr,
        Protocol::Http,
        &[],
    ))
    .await;
    let web_stub = StubAgent::for_proxy(
        ours.leaf(WEB).leaf_cert(WEB),
        view(&ours, vec![theirs.as_peer(PEER)], vec![]),
    )
    .await;
    let mut upstream = upstream_view(&theirs, BACKEND, &[backend.inbound_addr()]);
    upstream.peer = Some(PEER.into());
    upstream.sni = isthmus_api::naming::peered_sni(BACKEND, "cluster-01", PEER_TD);
    let index = web_stub.set_upstream("backend@cluster-02", upstream);
    let unused_app: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let web = start_ready(proxy_config(
        &web_stub,
        WEB,
        unused_app,
        Protocol::Http,
        &["backend@cluster-02:0"],
    ))
    .await;
    web_stub
        .upstream_in_effect("backend@cluster-02", index)
        .await;
    let mut conn = HttpConn::plain_h1(web.upstream_addr("backend@cluster-02").unwrap()).await;
    let reply = conn.get("/across");
    let reply = reply.await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json()["headers"]["x-forwarded-client-cert"],
        format!(
            "By={};URI={}",
            theirs.service_uri(BACKEND),
            ours.service_uri(WEB)
        )
    );
    // Without the peering, the peer's identities are not trusted.
    let index = web_stub.set_proxy_view(view(&ours, vec![], vec![]));
    web_stub.proxy_view_in_effect(index).await;
    let reply = conn.get("/across").await;
    assert_eq!(reply.status, 502);
    assert!(reply.body.contains("not trusted"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaf_rotation_under_load_drops_nothing() {
    let app = HttpApp::start(BACKEND).await;
    let pair = Arc::new(Pair::start(Protocol::Http, app.addr).await);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for client in 0..4 {
        let (pair, stop, done) = (pair.clone(), stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut conn = HttpConn::plain_h1(pair.upstream()).await;
            while !stop.load(Ordering::Relaxed) {
                // Half on a kept-alive connection, half on fresh ones.
                if client % 2 == 0 {
                    conn = HttpConn::plain_h1(pair.upstream()).await;
                }
                match conn.call("GET", "/", &[]).await {
                    Ok(reply) if reply.status == 200 => {}
                    other => failures.push(format!("{other:?}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let mut serials = Vec::new();
    for _ in 0..3 {
        let before = done.load(Ordering::Relaxed);
        let backend_leaf = pair.ca.leaf(BACKEND);
        let index = pair.backend_stub.set_leaf(backend_leaf.leaf_cert(BACKEND));
        pair.backend_stub.leaf_in_effect(index).await;
        let web_leaf = pair.ca.leaf(WEB);
        let index = pair.web_stub.set_leaf(web_leaf.leaf_cert(WEB));
        pair.web_stub.leaf_in_effect(index).await;
        // New handshakes present the new certificate.
        let tls = mtls(
            pair.backend.inbound_addr(),
            tls_config(&web_leaf, &pair.ca, BACKEND, &[]),
        )
        .await
        .unwrap();
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let expected = isthmus_api::tls::certs_from_pem(&backend_leaf.cert_pem).unwrap()[0].clone();
        assert_eq!(
            presented, expected,
            "the new leaf is used for new handshakes"
        );
        serials.push(backend_leaf.serial);
        // Traffic keeps flowing between rotations.
        let progressed = async {
            while done.load(Ordering::Relaxed) < before + 20 {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(WAIT, progressed)
            .await
            .expect("traffic stalled");
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(tokio::time::timeout(WAIT, client).await.unwrap().unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(done.load(Ordering::Relaxed) >= 60);
    let config = config_json(&pair.backend).await;
    assert_eq!(config["leaf"]["serial"], *serials.last().unwrap());
}

#[tokio::test]
async fn the_binary_starts_serves_and_stops_on_sigterm() {
    let ca = Ca::local();
    let stub = StubAgent::for_proxy(
        ca.leaf(BACKEND).leaf_cert(BACKEND),
        view(&ca, vec![], vec![l4(BACKEND, &[(WEB, "allow")])]),
    )
    .await;
    stub.set_upstream("db", upstream_view(&ca, "db", &[]));
    let app = HttpApp::start(BACKEND).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_isthmus-proxy"))
        .args([
            "-service",
            BACKEND,
            "-control",
            &stub.url(),
            "-inbound-bind=127.0.0.1:0",
            "-local-app",
            &app.addr.to_string(),
            "--upstream",
            "db:0",
            "-admin-bind",
            "127.0.0.1:0",
            "-workers",
            "1",
            "-drain-timeout",
            "1s",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (line, mut lines) = ready_line(&mut child).await;
    let fields: std::collections::HashMap<&str, &str> = line
        .strip_prefix("isthmus-proxy running: ")
        .unwrap_or_else(|| panic!("{line}"))
        .split(' ')
        .filter_map(|f| f.split_once('='))
        .collect();
    assert_eq!(fields["service"], BACKEND);
    let inbound: SocketAddr = fields["inbound"].parse().unwrap();
    let admin: SocketAddr = fields["admin"]
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    let db: SocketAddr = fields["upstreams"]
        .strip_prefix("db=")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(admin_get(admin, "/ready").await.0, 200);
    let config = tls_config(&ca.leaf(WEB), &ca, BACKEND, &[b"http/1.1"]);
    assert_eq!(try_get(inbound, config, "/").await.unwrap().status, 200);
    let reply = HttpConn::plain_h1(db).await.get("/").await;
    assert_eq!(reply.status, 503);
    let registration = stub.next_registration().await;
    assert_eq!(registration["ID"], "backend-sidecar-proxy");

    let status = sigterm_and_wait(&mut child).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(stub.next_deregistration().await, "backend-sidecar-proxy");
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "exactly one stdout line"
    );
}

#[tokio::test]
async fn the_resolvers_connect_timeout_bounds_the_handshake() {
    let app = HttpApp::start(BACKEND).await;
    let pair = Pair::start(Protocol::Http, app.addr).await;
    // Accepts TCP (the kernel's backlog) but never answers the TLS hello.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut view = upstream_view(&pair.ca, BACKEND, &[silent.local_addr().unwrap()]);
    view.connect_timeout_ms = Some(200);
    pair.set_upstream(view).await;
    let mut conn = HttpConn::plain_h1(pair.upstream()).await;
    let started = std::time::Instant::now();
    let reply = conn.get("/").await;
    let took = started.elapsed();
    assert!(reply.status >= 500, "{reply:?}");
    assert!(reply.body.contains("within 200ms"), "{}", reply.body);
    assert!(
        took < std::time::Duration::from_secs(3),
        "the default is 5s; took {took:?}"
    );
    let config = config_json(&pair.web).await;
    assert_eq!(
        config["upstreams"][0]["view"]["connect_timeout_ms"], 200,
        "{config}"
    );
}
