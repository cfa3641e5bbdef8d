//! Attacks on intentions at the inbound side, made the way a caller would
//! make them: odd spellings of a denied path (HTTP/1.1 and HTTP/2 over
//! mutual TLS), a peer's caller whose peering may view a service but not
//! connect to it, and upgraded (WebSocket) connections that outlive the
//! intention or the peering that allowed them.

mod support;

use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use isthmus_api::proxy::ProxyView;
use isthmus_proxy::{Protocol, RunningProxy};
use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const BACKEND: &str = "backend";

struct Fixture {
    ca: Ca,
    stub: StubAgent,
    _app: HttpApp,
    proxy: RunningProxy,
}

impl Fixture {
    async fn start(view: impl FnOnce(&Ca) -> ProxyView) -> Fixture {
        let ca = Ca::local();
        let stub = StubAgent::for_proxy(ca.leaf(BACKEND).leaf_cert(BACKEND), view(&ca)).await;
        let app = HttpApp::start(BACKEND).await;
        let proxy = start_ready(proxy_config(&stub, BACKEND, app.addr, Protocol::Http, &[])).await;
        Fixture {
            ca,
            stub,
            _app: app,
            proxy,
        }
    }

    async fn conn(&self, leaf: &Leaf, h2: bool) -> HttpConn {
        inbound_conn(self.proxy.inbound_addr(), leaf, &self.ca, BACKEND, h2).await
    }

    async fn set_view(&self, view: ProxyView) {
        let index = self.stub.set_proxy_view(view);
        self.stub.proxy_view_in_effect(index).await;
    }

    /// One raw HTTP/1.1 request over mutual TLS, bytes as given: the status.
    async fn raw_h1(&self, leaf: &Leaf, target: &str) -> u16 {
        let config = tls_config(leaf, &self.ca, BACKEND, &[b"http/1.1"]);
        let mut tls = mtls(self.proxy.inbound_addr(), config).await.unwrap();
        let request =
            format!("GET {target} HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        tokio::time::timeout(WAIT, BufReader::new(tls).read_line(&mut line))
            .await
            .expect("no answer")
            .unwrap();
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {line:?}"))
    }
}

fn deny_admin_allow_rest(ca: &Ca) -> ProxyView {
    view(
        ca,
        vec![],
        vec![intentions(json!({
            "Kind": "service-intentions",
            "Name": BACKEND,
            "Sources": [{
                "Name": "web",
                "Permissions": [
                    {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                    {"Action": "allow", "HTTP": {"PathPrefix": "/"}}
                ]
            }]
        }))],
    )
}

/// Spellings of `/admin/secret` that matched `/` rather than `/admin`.
const DENIED_SPELLINGS: [&str; 9] = [
    "/admin/secret",
    "/%61dmin/secret",
    "//admin/secret",
    "/./admin/secret",
    "/public/../admin/secret",
    "/public/%2e%2E/admin/secret",
    "/%2e/admin/secret",
    "/admin//secret?x=1",
    "/%41dmin/../%61dmin/secret",
];

/// Refused whatever the rules: the app would see another path than judged.
const INVALID: [&str; 6] = [
    "/%2fadmin/secret",
    "/%2Fadmin/secret",
    "/public%5cadmin",
    "/public%5C..%5Cadmin",
    "/admin%00/secret",
    "/a%zzb",
];

#[tokio::test]
async fn odd_spellings_of_a_denied_path_are_denied_over_http1_and_http2() {
    let f = Fixture::start(deny_admin_allow_rest).await;
    let web = f.ca.leaf("web");
    for h2 in [false, true] {
        let mut conn = f.conn(&web, h2).await;
        for path in DENIED_SPELLINGS {
            let reply = conn.call("GET", path, &[]).await.unwrap();
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (403, "RBAC: access denied"),
                "{path} (h2={h2})"
            );
        }
        for path in INVALID {
            let reply = conn.call("GET", path, &[]).await.unwrap();
            assert_eq!(reply.status, 400, "{path} (h2={h2}): {reply:?}");
        }
        // What is allowed reaches the app normalized, query untouched.
        let cases = [
            ("/public/./x", "/public/x"),
            ("//public", "/public"),
            ("/public/a/../b/", "/public/b/"),
            (
                "/%7Euser/x%2a?q=%2e%2E/../&r=//",
                "/~user/x%2A?q=%2e%2E/../&r=//",
            ),
            ("/public/x?y=1", "/public/x?y=1"),
        ];
        for (sent, seen) in cases {
            let reply = conn.call("GET", sent, &[]).await.unwrap();
            assert_eq!(reply.status, 200, "{sent} (h2={h2}): {reply:?}");
            assert_eq!(reply.json()["uri"], seen, "{sent} (h2={h2})");
        }
        // The connection survives all of it.
        assert_eq!(conn.get("/after").await.status, 200);
    }
    // A literal backslash, as raw bytes on the wire.
    assert_eq!(f.raw_h1(&web, "/public\\..\\admin\\secret").await, 400);
    assert_eq!(f.raw_h1(&web, "/public/..%2Fadmin/secret").await, 400);
    assert_eq!(f.raw_h1(&web, "/.%2e/admin/secret").await, 403);

    let m = metrics(&f.proxy).await;
    let refused = |kind: &str| {
        m.get(&format!("inbound_request_errors_total{{kind=\"{kind}\"}}"))
            .copied()
            .unwrap_or(0.0)
    };
    assert_eq!(refused("path_encoded_slash"), 2.0 * 4.0 + 1.0);
    assert_eq!(refused("path_encoded_nul"), 2.0);
    assert_eq!(refused("path_invalid_escape"), 2.0);
    assert_eq!(
        m["response_total{classification=\"success\",direction=\"inbound\",status_code=\"400\"}"],
        2.0 * 6.0 + 2.0
    );
}

#[tokio::test]
async fn requests_are_normalized_under_l4_intentions_too() {
    let f = Fixture::start(|ca| view(ca, vec![], vec![l4(BACKEND, &[("web", "allow")])])).await;
    let web = f.ca.leaf("web");
    for h2 in [false, true] {
        let mut conn = f.conn(&web, h2).await;
        let reply = conn.get("/a//b/./c/../d?k=v").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["uri"], "/a/b/d?k=v", "h2={h2}");
        assert_eq!(conn.get("/a%2Fb").await.status, 400, "h2={h2}");
        assert_eq!(conn.get("/plain").await.json()["uri"], "/plain");
    }
}

/// `backend` exported to the peer, and the peer's `web` allowed by intentions.
fn peer_view(ca: &Ca, peer: isthmus_api::proxy::PeerTrust) -> ProxyView {
    view(
        ca,
        vec![peer],
        vec![intentions(json!({
            "Kind": "service-intentions",
            "Name": BACKEND,
            "Sources": [{"Name": "web", "Peer": PEER, "Action": "allow"}]
        }))],
    )
}

#[tokio::test]
async fn a_peer_that_may_view_but_not_connect_is_refused_over_http() {
    let peer_ca = Ca::peer();
    let f = Fixture::start(|ca| peer_view(ca, peer_ca.as_peer_viewing(PEER, &[BACKEND]))).await;
    let peer_web = peer_ca.leaf("web");
    // Whatever peer it named in its SNI, its certificate says cluster-02,
    // which may not connect: refused at L4 whatever the intentions say.
    let refused = f
        .raw_get(&peer_web, "/")
        .await
        .expect_err("a peer without can_connect got through");
    assert!(!refused.is_empty());

    // Granted: it gets in; an open connection is refused per request
    // again once the grant is withdrawn.
    f.set_view(peer_view(
        &f.ca,
        peer_ca.as_peer_exporting(PEER, &[BACKEND]),
    ))
    .await;
    let mut conn = f.conn(&peer_web, true).await;
    assert_eq!(conn.get("/granted").await.status, 200);
    f.set_view(peer_view(&f.ca, peer_ca.as_peer_viewing(PEER, &[BACKEND])))
        .await;
    assert_eq!(conn.get("/withdrawn").await.status, 403);
    assert!(f.raw_get(&peer_web, "/").await.is_err());

    let m = metrics(&f.proxy).await;
    assert_eq!(
        m["inbound_authorization_total{decision=\"deny\",layer=\"l4\",peer=\"cluster-02\",src_service=\"web\"}"],
        3.0
    );
}

impl Fixture {
    async fn raw_get(&self, leaf: &Leaf, path: &str) -> Result<Reply, String> {
        let config = tls_config(leaf, &self.ca, BACKEND, &[b"http/1.1"]);
        try_get(self.proxy.inbound_addr(), config, path).await
    }
}

#[tokio::test]
async fn a_peer_that_may_view_but_not_connect_is_refused_over_tcp() {
    let ca = Ca::local();
    let peer_ca = Ca::peer();
    let stub = StubAgent::for_proxy(
        ca.leaf(BACKEND).leaf_cert(BACKEND),
        peer_view(&ca, peer_ca.as_peer_viewing(PEER, &[BACKEND])),
    )
    .await;
    let echo = TcpEcho::start().await;
    let proxy = start_ready(proxy_config(&stub, BACKEND, echo.addr, Protocol::Tcp, &[])).await;
    let config = tls_config(&peer_ca.leaf("web"), &ca, BACKEND, &[]);

    let mut refused = mtls(proxy.inbound_addr(), config.clone()).await.unwrap();
    let _ = refused.write_all(b"hello").await;
    wait_closed(&mut refused).await;

    let index = stub.set_proxy_view(peer_view(&ca, peer_ca.as_peer_exporting(PEER, &[BACKEND])));
    stub.proxy_view_in_effect(index).await;
    let mut allowed = mtls(proxy.inbound_addr(), config).await.unwrap();
    echo_through(&mut allowed, b"hello").await;

    // can_connect withdrawn: the open connection is closed.
    let index = stub.set_proxy_view(peer_view(&ca, peer_ca.as_peer_viewing(PEER, &[BACKEND])));
    stub.proxy_view_in_effect(index).await;
    wait_closed(&mut allowed).await;
}

#[tokio::test]
async fn a_view_without_connectable_services_lets_no_peer_in() {
    // What an older agent sends: exports, but no ConnectableServices.
    let peer_ca = Ca::peer();
    let mut old = serde_json::to_value(peer_ca.as_peer_exporting(PEER, &[BACKEND])).unwrap();
    old.as_object_mut().unwrap().remove("ConnectableServices");
    let peer: isthmus_api::proxy::PeerTrust = serde_json::from_value(old).unwrap();
    let f = Fixture::start(|ca| peer_view(ca, peer)).await;
    assert!(f.raw_get(&peer_ca.leaf("web"), "/").await.is_err());
}

/// Bytes go through an upgraded connection and come back.
async fn echo_through<S>(io: &mut S, bytes: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    io.write_all(bytes).await.unwrap();
    let mut echoed = vec![0u8; bytes.len()];
    tokio::time::timeout(WAIT, io.read_exact(&mut echoed))
        .await
        .expect("no echo")
        .unwrap();
    assert_eq!(echoed, bytes);
}

/// A WebSocket-style upgrade to the app's `/ws` echo.
async fn upgrade(conn: &mut HttpConn, path: &str) -> TokioIo<Upgraded> {
    let request = conn.request(
        "GET",
        path,
        &[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ],
        "",
    );
    let response = conn.send(request).await.unwrap();
    assert_eq!(response.status(), 101);
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(response))
        .await
        .unwrap()
        .unwrap();
    TokioIo::new(upgraded)
}

#[tokio::test]
async fn an_upgraded_connection_is_cut_when_intentions_deny_the_caller() {
    let f = Fixture::start(|ca| view(ca, vec![], vec![l4(BACKEND, &[("web", "allow")])])).await;
    let mut conn = f.conn(&f.ca.leaf("web"), false).await;
    let mut ws = upgrade(&mut conn, "/ws").await;
    echo_through(&mut ws, b"\x81\x05hello").await;

    // A change that still allows the caller keeps the connection.
    f.set_view(view(
        &f.ca,
        vec![],
        vec![l4(BACKEND, &[("web", "allow"), ("api", "deny")])],
    ))
    .await;
    echo_through(&mut ws, b"still here").await;

    f.set_view(view(&f.ca, vec![], vec![l4(BACKEND, &[("web", "deny")])]))
        .await;
    let started = tokio::time::Instant::now();
    wait_closed(&mut ws).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let m = metrics(&f.proxy).await;
    assert_eq!(
        m["inbound_authorization_total{decision=\"deny\",layer=\"l4\",peer=\"\",src_service=\"web\"}"],
        1.0
    );
}

#[tokio::test]
async fn an_upgraded_connection_is_cut_when_an_l7_rule_no_longer_allows_it() {
    let rules = |ca: &Ca, ws_action: &str| {
        view(
            ca,
            vec![],
            vec![intentions(json!({
                "Kind": "service-intentions",
                "Name": BACKEND,
                "Sources": [{
                    "Name": "web",
                    "Permissions": [
                        {"Action": ws_action, "HTTP": {"PathPrefix": "/ws", "Header": [{"Name": "upgrade", "Exact": "websocket"}]}},
                        {"Action": "allow", "HTTP": {"PathPrefix": "/"}}
                    ]
                }]
            }))],
        )
    };
    let f = Fixture::start(|ca| rules(ca, "allow")).await;
    let mut conn = f.conn(&f.ca.leaf("web"), false).await;
    // Judged on the normalized path: `//ws` is `/ws`.
    let mut ws = upgrade(&mut conn, "//ws").await;
    echo_through(&mut ws, b"frame").await;
    f.set_view(rules(&f.ca, "deny")).await;
    wait_closed(&mut ws).await;
    let m = metrics(&f.proxy).await;
    assert_eq!(
        m["inbound_authorization_total{decision=\"deny\",layer=\"l7\",peer=\"\",src_service=\"web\"}"],
        1.0
    );
}

#[tokio::test]
async fn an_upgraded_connection_is_cut_when_the_peering_goes() {
    let peer_ca = Ca::peer();
    let f = Fixture::start(|ca| peer_view(ca, peer_ca.as_peer(PEER))).await;
    let peer_web = peer_ca.leaf("web");
    let mut first = f.conn(&peer_web, false).await;
    let mut ws_first = upgrade(&mut first, "/ws").await;
    let mut second = f.conn(&peer_web, false).await;
    let mut ws_second = upgrade(&mut second, "/ws").await;
    echo_through(&mut ws_first, b"one").await;
    echo_through(&mut ws_second, b"two").await;

    // can_connect withdrawn from the peering: cut.
    f.set_view(peer_view(&f.ca, peer_ca.as_peer_viewing(PEER, &[BACKEND])))
        .await;
    wait_closed(&mut ws_first).await;
    wait_closed(&mut ws_second).await;

    // The peering removed from the view altogether: cut as well.
    f.set_view(peer_view(&f.ca, peer_ca.as_peer(PEER))).await;
    let mut third = f.conn(&peer_web, false).await;
    let mut ws_third = upgrade(&mut third, "/ws").await;
    echo_through(&mut ws_third, b"three").await;
    f.set_view(view(&f.ca, vec![], vec![])).await;
    wait_closed(&mut ws_third).await;
}
