//! The inbound side against a stub agent, called by test clients that
//! present leaves from test CAs: everything on loopback, ephemeral ports.

mod support;

use isthmus_api::proxy::ProxyView;
use isthmus_proxy::{Protocol, RunningProxy};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BACKEND: &str = "backend";

/// Method, path, headers, expected status.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    u16,
);

/// `backend`'s proxy in front of an HTTP app, with `entries` as intentions.
struct Fixture {
    ca: Ca,
    stub: StubAgent,
    app: HttpApp,
    proxy: RunningProxy,
}

impl Fixture {
    async fn start(protocol: Protocol, view: impl FnOnce(&Ca) -> ProxyView) -> Fixture {
        let ca = Ca::local();
        let stub = StubAgent::for_proxy(ca.leaf(BACKEND).leaf_cert(BACKEND), view(&ca)).await;
        let app = HttpApp::start(BACKEND).await;
        let proxy = start_ready(proxy_config(&stub, BACKEND, app.addr, protocol, &[])).await;
        Fixture {
            ca,
            stub,
            app,
            proxy,
        }
    }

    async fn conn(&self, leaf: &Leaf, h2: bool) -> HttpConn {
        inbound_conn(self.proxy.inbound_addr(), leaf, &self.ca, BACKEND, h2).await
    }

    /// One GET as `leaf` on a new connection; `Err` when refused.
    async fn get_as(&self, leaf: &Leaf, path: &str) -> Result<Reply, String> {
        let config = tls_config(leaf, &self.ca, BACKEND, &[b"http/1.1"]);
        try_get(self.proxy.inbound_addr(), config, path).await
    }
}

fn web_allowed_api_denied(ca: &Ca) -> ProxyView {
    view(
        ca,
        vec![],
        vec![l4(BACKEND, &[("web", "allow"), ("api", "deny")])],
    )
}

#[tokio::test]
async fn l4_intentions_allow_and_deny_over_http1_and_http2() {
    let f = Fixture::start(Protocol::Http, web_allowed_api_denied).await;
    let web = f.ca.leaf("web");
    for h2 in [false, true] {
        let mut conn = f.conn(&web, h2).await;
        let reply = conn
            .call(
                "GET",
                "/hello?x=1",
                &[("x-forwarded-client-cert", "By=forged")],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        let seen = reply.json();
        assert_eq!(seen["app"], BACKEND);
        assert_eq!(seen["uri"], "/hello?x=1");
        assert_eq!(
            seen["version"], "HTTP/1.1",
            "the app is spoken to in HTTP/1.1"
        );
        assert_eq!(seen["headers"]["host"], "backend");
        assert_eq!(
            seen["headers"]["x-forwarded-client-cert"],
            format!("By={};URI={}", f.ca.service_uri(BACKEND), web.uri),
            "XFCC names us and the caller, replacing what the caller sent"
        );
        // The connection stays usable.
        assert_eq!(conn.get("/again").await.status, 200);
    }
    for denied in ["api", "stranger"] {
        let refused = f.get_as(&f.ca.leaf(denied), "/").await;
        assert!(refused.is_err(), "{denied} got through: {refused:?}");
    }
    let m = metrics(&f.proxy).await;
    let authz = |decision: &str, src: &str| {
        m.get(&format!(
            "inbound_authorization_total{{decision=\"{decision}\",layer=\"l4\",peer=\"\",src_service=\"{src}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
    };
    assert_eq!(authz("allow", "web"), 2.0);
    assert_eq!(authz("deny", "api"), 1.0);
    assert_eq!(
        authz("deny", "other"),
        1.0,
        "unknown sources are not labels"
    );
}

#[tokio::test]
async fn l7_permissions_decide_per_request_and_the_connection_survives_a_403() {
    let f = Fixture::start(Protocol::Http, |ca| {
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
                        {"Action": "allow", "HTTP": {"PathExact": "/write", "Methods": ["POST"],
                            "Header": [{"Name": "x-team", "Exact": "blue"}]}},
                        {"Action": "allow", "HTTP": {"PathPrefix": "/", "Methods": ["GET"]}}
                    ]
                }]
            }))],
        )
    })
    .await;
    let web = f.ca.leaf("web");
    for h2 in [false, true] {
        let mut conn = f.conn(&web, h2).await;
        let cases: [Case; 6] = [
            ("GET", "/admin/users", &[], 403),
            ("GET", "/public?admin=1", &[], 200),
            ("GET", "/admin?ok=1", &[], 403),
            ("POST", "/write", &[], 403),
            ("POST", "/write", &[("x-team", "blue")], 200),
            ("DELETE", "/public", &[], 403),
        ];
        for (method, path, headers, want) in cases {
            let reply = conn.call(method, path, headers).await.unwrap();
            assert_eq!(reply.status, want, "{method} {path} {headers:?} (h2={h2})");
            if want == 403 {
                assert_eq!(reply.body, "RBAC: access denied");
            }
        }
        assert_eq!(conn.get("/after-denials").await.status, 200);
    }
    let m = metrics(&f.proxy).await;
    let l7 = |decision: &str| {
        m[&format!(
            "inbound_authorization_total{{decision=\"{decision}\",layer=\"l7\",peer=\"\",src_service=\"web\"}}"
        )]
    };
    assert_eq!(l7("deny"), 8.0);
    assert_eq!(l7("allow"), 6.0);
    // A caller with L7 rules cannot use plain TCP, but this is HTTP: no L4 counts.
    assert!(!m
        .keys()
        .any(|k| k.contains("layer=\"l4\"") && k.contains("web")));
}

#[tokio::test]
async fn callers_without_a_trusted_current_service_identity_are_refused() {
    let f = Fixture::start(Protocol::Http, |ca| {
        let mut v = view(ca, vec![], vec![]);
        v.default_allow = true;
        v
    })
    .await;
    assert_eq!(f.get_as(&f.ca.leaf("web"), "/").await.unwrap().status, 200);

    let impostor_ca = Ca::local();
    let unknown = f.get_as(&impostor_ca.leaf("web"), "/").await;
    assert!(unknown.is_err(), "a leaf from an unknown CA got through");
    let expired = f.get_as(&f.ca.expired_leaf("web"), "/").await;
    assert!(expired.is_err(), "an expired leaf got through");
    let other_domain = Ca::new("cccc.isthmus", "cluster-03");
    let untrusted = f.get_as(&other_domain.leaf("web"), "/").await;
    assert!(
        untrusted.is_err(),
        "a leaf from an unpeered trust domain got through"
    );
    let anonymous = anonymous_tls_config(&f.ca, BACKEND, &[b"http/1.1"]);
    let no_cert = try_get(f.proxy.inbound_addr(), anonymous, "/").await;
    assert!(
        no_cert.is_err(),
        "a caller without a certificate got through"
    );
    let gateway =
        f.ca.leaf_for_uri(&format!("spiffe://{TD}/gateway/mesh/dc/{CLUSTER}"), false);
    let not_a_service = f.get_as(&gateway, "/").await;
    assert!(not_a_service.is_err(), "a gateway identity got through");

    let m = metrics(&f.proxy).await;
    assert_eq!(
        m["inbound_connection_errors_total{kind=\"handshake\"}"],
        4.0
    );
    assert_eq!(m["inbound_connection_errors_total{kind=\"identity\"}"], 1.0);
}

#[tokio::test]
async fn peer_callers_are_known_by_their_peering() {
    let peer_ca = Ca::peer();
    let f = Fixture::start(Protocol::Http, |ca| {
        view(
            ca,
            vec![peer_ca.as_peer(PEER)],
            vec![intentions(json!({
                "Kind": "service-intentions",
                "Name": BACKEND,
                "Sources": [{"Name": "web", "Peer": PEER, "Action": "allow"}]
            }))],
        )
    })
    .await;
    let peer_web = peer_ca.leaf("web");
    let reply = f.get_as(&peer_web, "/from-peer").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["headers"]["x-forwarded-client-cert"],
        format!("By={};URI={}", f.ca.service_uri(BACKEND), peer_web.uri)
    );
    // The same name locally is another source, which nothing allows.
    assert!(f.get_as(&f.ca.leaf("web"), "/").await.is_err());
    // Our CA cannot vouch for the peer's trust domain.
    let forged = f.ca.leaf_for_uri(
        &format!("spiffe://{PEER_TD}/ns/default/dc/{PEER}/svc/web"),
        false,
    );
    assert!(f.get_as(&forged, "/").await.is_err());

    // A peer reaches only what is exported to it, whatever the intentions
    // say: the gateway routed by the peer name the caller claimed.
    let index = f.stub.set_proxy_view(view(
        &f.ca,
        vec![peer_ca.as_peer_exporting(PEER, &["other"])],
        vec![intentions(json!({
            "Kind": "service-intentions",
            "Name": BACKEND,
            "Sources": [{"Name": "web", "Peer": PEER, "Action": "allow"}]
        }))],
    ));
    f.stub.proxy_view_in_effect(index).await;
    assert!(
        f.get_as(&peer_web, "/").await.is_err(),
        "not exported to the caller's peering"
    );
    let m = metrics(&f.proxy).await;
    assert_eq!(
        m["inbound_authorization_total{decision=\"allow\",layer=\"l4\",peer=\"cluster-02\",src_service=\"web\"}"],
        1.0
    );
}

#[tokio::test]
async fn intention_changes_apply_to_new_and_open_connections_without_restart() {
    let f = Fixture::start(Protocol::Http, web_allowed_api_denied).await;
    let web = f.ca.leaf("web");
    let mut h1 = f.conn(&web, false).await;
    let mut h2 = f.conn(&web, true).await;
    assert_eq!(h1.get("/").await.status, 200);
    assert_eq!(h2.get("/").await.status, 200);

    let index = f
        .stub
        .set_proxy_view(view(&f.ca, vec![], vec![l4(BACKEND, &[("web", "deny")])]));
    f.stub.proxy_view_in_effect(index).await;
    let denied = h1.get("/").await;
    assert_eq!(
        (denied.status, denied.body.as_str()),
        (403, "RBAC: access denied")
    );
    assert_eq!(denied.header("connection"), Some("close"));
    assert_eq!(h2.get("/").await.status, 403);
    assert!(
        f.get_as(&web, "/").await.is_err(),
        "new connections are refused"
    );

    let index = f.stub.set_proxy_view(view(
        &f.ca,
        vec![],
        vec![intentions(json!({
            "Kind": "service-intentions",
            "Name": BACKEND,
            "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/ok"}}]}]
        }))],
    ));
    f.stub.proxy_view_in_effect(index).await;
    assert_eq!(h2.get("/ok").await.status, 200);
    assert_eq!(h2.get("/nope").await.status, 403);
    assert_eq!(f.get_as(&web, "/ok/fresh").await.unwrap().status, 200);
    let config = config_json(&f.proxy).await;
    assert_eq!(config["intentions"]["index"], index);
}

#[tokio::test]
async fn tcp_mode_copies_bytes_and_closes_when_denied() {
    let ca = Ca::local();
    let stub = StubAgent::for_proxy(
        ca.leaf(BACKEND).leaf_cert(BACKEND),
        web_allowed_api_denied(&ca),
    )
    .await;
    let echo = TcpEcho::start().await;
    let proxy = start_ready(proxy_config(&stub, BACKEND, echo.addr, Protocol::Tcp, &[])).await;
    let web = ca.leaf("web");
    let mut tls = mtls(proxy.inbound_addr(), tls_config(&web, &ca, BACKEND, &[]))
        .await
        .unwrap();
    tls.write_all(b"hello over tcp").await.unwrap();
    let mut buf = [0u8; 14];
    tokio::time::timeout(WAIT, tls.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hello over tcp");

    let mut api = mtls(
        proxy.inbound_addr(),
        tls_config(&ca.leaf("api"), &ca, BACKEND, &[]),
    )
    .await
    .unwrap();
    let _ = api.write_all(b"x").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, api.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        read.is_err() || rest.is_empty(),
        "a denied caller got an echo"
    );

    // L7 intentions cannot be enforced on raw TCP: denied.
    let index = stub.set_proxy_view(view(
        &ca,
        vec![],
        vec![intentions(json!({
            "Kind": "service-intentions",
            "Name": BACKEND,
            "Sources": [{"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/"}}]}]
        }))],
    ));
    stub.proxy_view_in_effect(index).await;
    // ...which also closes the connection that was allowed before.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(read.is_err() || rest.is_empty());
    let m = metrics(&proxy).await;
    assert_eq!(
        m["inbound_authorization_total{decision=\"deny\",layer=\"l7\",peer=\"\",src_service=\"web\"}"],
        1.0
    );
    assert!(m["tcp_read_bytes_total{direction=\"inbound\"}"] > 14.0);
}

#[tokio::test]
async fn upgrades_pass_through_byte_for_byte() {
    let f = Fixture::start(Protocol::Http, web_allowed_api_denied).await;
    let mut conn = f.conn(&f.ca.leaf("web"), false).await;
    let request = conn.request(
        "GET",
        "/ws",
        &[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ],
        "",
    );
    let response = conn.send(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
    let upgraded = tokio::time::timeout(WAIT, hyper::upgrade::on(response))
        .await
        .unwrap()
        .unwrap();
    let mut io = hyper_util::rt::TokioIo::new(upgraded);
    let frame = b"\x81\x05hello\x00\xff raw bytes";
    io.write_all(frame).await.unwrap();
    let mut echoed = vec![0u8; frame.len()];
    tokio::time::timeout(WAIT, io.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, frame);
}

#[tokio::test]
async fn not_ready_and_refusing_until_the_first_leaf_and_view() {
    let ca = Ca::local();
    let stub = StubAgent::empty().await;
    let app = HttpApp::start(BACKEND).await;
    let proxy = isthmus_proxy::start(proxy_config(&stub, BACKEND, app.addr, Protocol::Http, &[]))
        .await
        .unwrap();
    let (status, body) = admin_get(proxy.admin_addr(), "/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("leaf certificate"), "{body}");
    assert_eq!(admin_get(proxy.admin_addr(), "/live").await.0, 200);
    let web = ca.leaf("web");
    let config = || tls_config(&web, &ca, BACKEND, &[b"http/1.1"]);
    assert!(try_get(proxy.inbound_addr(), config(), "/").await.is_err());

    let index = stub.set_leaf(ca.leaf(BACKEND).leaf_cert(BACKEND));
    stub.leaf_in_effect(index).await;
    let (status, body) = admin_get(proxy.admin_addr(), "/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("proxy view"), "{body}");
    assert!(try_get(proxy.inbound_addr(), config(), "/").await.is_err());

    stub.set_proxy_view(web_allowed_api_denied(&ca));
    tokio::time::timeout(WAIT, proxy.ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin_get(proxy.admin_addr(), "/ready").await.0, 200);
    assert_eq!(
        try_get(proxy.inbound_addr(), config(), "/")
            .await
            .unwrap()
            .status,
        200
    );
    let registration = stub.next_registration().await;
    assert_eq!(registration["Name"], "backend-sidecar-proxy");
    assert_eq!(registration["Kind"], "connect-proxy");
    assert_eq!(registration["Port"], proxy.inbound_addr().port());
    assert_eq!(registration["Proxy"]["LocalServicePort"], app.addr.port());
    let m = metrics(&proxy).await;
    assert_eq!(
        m["inbound_connection_errors_total{kind=\"not_ready\"}"],
        2.0
    );
}

#[tokio::test]
async fn metrics_and_config_describe_the_traffic() {
    let f = Fixture::start(Protocol::Http, web_allowed_api_denied).await;
    let mut conn = f.conn(&f.ca.leaf("web"), true).await;
    for _ in 0..3 {
        assert_eq!(conn.get("/").await.status, 200);
    }
    let (status, text) = admin_get(f.proxy.admin_addr(), "/metrics").await;
    assert_eq!(status, 200);
    let m = parse_prometheus(&text);
    assert_eq!(m["request_total{direction=\"inbound\"}"], 3.0);
    assert_eq!(
        m["response_total{classification=\"success\",direction=\"inbound\",status_code=\"200\"}"],
        3.0
    );
    assert_eq!(
        m["response_latency_seconds_count{direction=\"inbound\"}"],
        3.0
    );
    // Per caller, and the service and datacenter the sidecar fronts, so an
    // edge is computable whatever labels the scrape adds.
    assert_eq!(
        m["inbound_source_response_total{classification=\"success\",src_peer=\"\",src_service=\"web\"}"],
        3.0
    );
    assert_eq!(
        m["inbound_source_response_latency_seconds_count{src_peer=\"\",src_service=\"web\"}"],
        3.0
    );
    assert_eq!(
        m[&format!("isthmus_proxy_info{{datacenter=\"{CLUSTER}\",service=\"{BACKEND}\"}}")],
        1.0
    );
    assert_eq!(m["tcp_open_total{direction=\"inbound\",tls=\"true\"}"], 1.0);
    assert_eq!(m["tcp_open_connections{direction=\"inbound\"}"], 1.0);
    assert!(m["tcp_read_bytes_total{direction=\"inbound\"}"] > 0.0);
    assert!(m["tcp_write_bytes_total{direction=\"inbound\"}"] > 0.0);
    assert!(m
        .keys()
        .any(|k| k.starts_with("isthmus_build_info{version=")));
    assert!(
        m.keys().any(|k| k.starts_with("process_")),
        "process metrics"
    );
    assert!(!text.contains("/hello"), "no paths in labels");

    let config = config_json(&f.proxy).await;
    assert_eq!(config["service"], BACKEND);
    assert_eq!(config["proxy_id"], "backend-sidecar-proxy");
    assert_eq!(config["leaf"]["spiffe_id"], f.ca.service_uri(BACKEND));
    assert!(config["leaf"]["valid_before"].is_string());
    assert_eq!(config["trust_domains"]["local"], TD);
    assert!(config["intentions"]["index"].as_u64().unwrap() > 0);
    assert_eq!(config["ready"], true);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let Fixture {
        ca,
        stub,
        app,
        proxy,
    } = Fixture::start(Protocol::Http, web_allowed_api_denied).await;
    let web = ca.leaf("web");
    let registration = stub.next_registration().await;
    let inbound = proxy.inbound_addr();
    let tls = mtls(inbound, tls_config(&web, &ca, BACKEND, &[b"h2"]))
        .await
        .unwrap();
    let (send, idle_connection) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
    let idle_connection = tokio::spawn(idle_connection);
    let mut busy = inbound_conn(inbound, &web, &ca, BACKEND, false).await;
    let slow = tokio::spawn(async move { busy.call("GET", "/slow", &[]).await });
    app.slow_arrived().await;

    let shutdown = tokio::spawn(proxy.shutdown());
    assert_eq!(
        stub.next_deregistration().await,
        registration["ID"].as_str().unwrap()
    );
    // The idle HTTP/2 connection is sent away (GOAWAY) while the slow request runs.
    let idle_closed = tokio::time::timeout(WAIT, idle_connection).await;
    assert!(idle_closed.is_ok(), "the idle connection was kept open");
    assert!(send.is_closed());
    assert!(!slow.is_finished());
    app.release_slow();
    let reply = tokio::time::timeout(WAIT, slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "slow done"));
    tokio::time::timeout(WAIT, shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(inbound).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn admin_shutdown_cuts_what_outlives_the_drain_timeout() {
    let ca = Ca::local();
    let stub = StubAgent::for_proxy(
        ca.leaf(BACKEND).leaf_cert(BACKEND),
        web_allowed_api_denied(&ca),
    )
    .await;
    let app = HttpApp::start(BACKEND).await;
    let mut config = proxy_config(&stub, BACKEND, app.addr, Protocol::Http, &[]);
    config.drain_timeout = std::time::Duration::from_millis(200);
    let mut proxy = start_ready(config).await;
    stub.next_registration().await;
    let mut stuck = inbound_conn(proxy.inbound_addr(), &ca.leaf("web"), &ca, BACKEND, true).await;
    let slow = tokio::spawn(async move { stuck.call("GET", "/slow", &[]).await });
    app.slow_arrived().await;

    let admin = isthmus_runtime::client::Client::new(&proxy.admin_addr().to_string()).unwrap();
    let response = admin
        .send(http::Method::POST, "/shutdown", None)
        .await
        .unwrap();
    assert_eq!(response.status, 202);
    tokio::time::timeout(WAIT, proxy.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stub.next_deregistration().await, "backend-sidecar-proxy");
    let cut = tokio::time::timeout(WAIT, slow).await.unwrap().unwrap();
    assert!(
        cut.is_err(),
        "the request outlived the drain timeout: {cut:?}"
    );
    assert!(proxy.ready().await.is_err());
}

#[tokio::test]
async fn http2_mode_speaks_http2_to_the_local_application() {
    let f = Fixture::start(Protocol::Http2, web_allowed_api_denied).await;
    for h2 in [false, true] {
        let mut conn = f.conn(&f.ca.leaf("web"), h2).await;
        let reply = conn.get("/via-h2").await;
        assert_eq!(reply.status, 200);
        let seen = reply.json();
        assert_eq!(seen["version"], "HTTP/2.0");
        assert_eq!(seen["uri"], format!("http://{}/via-h2", f.app.addr));
        assert_eq!(seen["headers"]["host"], "backend");
    }
}
