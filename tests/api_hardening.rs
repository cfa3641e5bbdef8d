//! Attacks on the agent's HTTP API: a flood of connections that never
//! finish their request, and web pages (cross-origin, DNS rebinding) that
//! try to drive it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use isthmus_runtime::listen::Limits;
use isthmus_testkit::net::wait_closed_within;
use isthmus_tests::{TestAgent, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr` from the loopback address `from` (127.0.0.0/8 is all
/// local on Linux, so each address is a distinct client IP).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let local: IpAddr = from.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(local, 0)).unwrap();
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Sends `head` (a whole request without body unless given) and reads the
/// answer to the end (`Connection: close`): the status and the body.
async fn exchange(mut tcp: TcpStream, head: &str) -> (u16, String) {
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn get(path: &str, host: &str, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Connection: close\r\n\r\n")
}

fn post(path: &str, host: &str, origin: Option<&str>, body: &str) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn metric(agent: &TestAgent, series: &str) -> u64 {
    let tcp = connect_from("127.0.0.1", agent.addr()).await;
    let (status, body) = exchange(tcp, &get("/metrics", &agent.addr().to_string(), None)).await;
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_partial_requests_neither_blocks_other_clients_nor_stays() {
    const PER_CLIENT: usize = 20;
    let agent = TestAgent::start_with(|c| {
        c.http_limits = Limits {
            header_read_timeout: Duration::from_millis(800),
            idle_timeout: Duration::from_secs(5),
            max_conns: 200,
            max_conns_per_client: PER_CLIENT,
        };
    })
    .await;
    let addr = agent.addr();
    // The attacker, from one address: connections that never finish their
    // request line (or send nothing at all).
    let mut flood = Vec::new();
    for i in 0..PER_CLIENT + 10 {
        let mut tcp = connect_from("127.0.0.7", addr).await;
        if i % 2 == 0 {
            tcp.write_all(b"GET /v1/agent/self HTT").await.unwrap();
        }
        flood.push(tcp);
    }
    // Another client is answered at once.
    let other = connect_from("127.0.0.1", addr).await;
    let (status, body) = exchange(other, &get("/v1/agent/self", &addr.to_string(), None)).await;
    assert_eq!(status, 200, "{body}");
    // Every one of the flood is closed: those over the per-client cap at
    // once, the others at the header-read timeout.
    for tcp in &mut flood {
        wait_closed_within(WAIT, tcp).await;
    }
    let prefix = "isthmus_http_connections_";
    assert_eq!(
        metric(
            &agent,
            &format!("{prefix}refused_total{{listener=\"api\",reason=\"max_conns_per_client\"}}")
        )
        .await,
        10
    );
    assert_eq!(
        metric(
            &agent,
            &format!("{prefix}timed_out_total{{listener=\"api\",timeout=\"header_read\"}}")
        )
        .await,
        PER_CLIENT as u64
    );
    // The attacker's address is served again once its connections are gone.
    let again = connect_from("127.0.0.7", addr).await;
    let (status, _) = exchange(again, &get("/v1/agent/self", &addr.to_string(), None)).await;
    assert_eq!(status, 200);
    agent.agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_refuses_at_accept_and_the_agent_stays_healthy() {
    let agent = TestAgent::start_with(|c| {
        c.http_limits.max_conns = 8;
        c.http_limits.max_conns_per_client = 0;
    })
    .await;
    let addr = agent.addr();
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut tcp = connect_from("127.0.0.1", addr).await;
        tcp.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(tcp);
    }
    // Over the cap: closed at once, without an answer.
    let mut over = connect_from("127.0.0.1", addr).await;
    wait_closed_within(WAIT, &mut over).await;
    drop(held);
    // Healthy: answered once places free up (bounded polling, the
    // closes above are asynchronous).
    isthmus_tests::eventually("the agent answers again", || async {
        let tcp = connect_from("127.0.0.1", addr).await;
        let mut tcp = tcp;
        tcp.write_all(get("/v1/agent/self", &addr.to_string(), None).as_bytes())
            .await
            .ok()?;
        let mut answer = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer))
            .await
            .ok()?
            .ok()?;
        answer.starts_with(b"HTTP/1.1 200").then_some(())
    })
    .await;
    assert!(
        metric(
            &agent,
            "isthmus_http_connections_refused_total{listener=\"api\",reason=\"max_conns\"}"
        )
        .await
            >= 1
    );
    agent.agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn cross_origin_pages_and_rebinding_hosts_are_refused() {
    let agent =
        TestAgent::start_with(|c| c.http_allowed_hosts = vec!["consul.internal".into()]).await;
    let addr = agent.addr();
    let host = addr.to_string();
    let own_origin = format!("http://{host}");
    let leaf = "/v1/agent/connect/ca/leaf/web";
    let establish_body = r#"{"PeerName":"evil","PeeringToken":"eyJ9"}"#;
    let cases: Vec<(&str, String, u16)> = vec![
        // A cross-origin page reading a leaf key, or establishing a peering.
        (
            "foreign origin GET leaf",
            get(leaf, &host, Some("http://evil.example")),
            403,
        ),
        (
            "foreign origin POST establish",
            post(
                "/v1/peering/establish",
                &host,
                Some("http://evil.example"),
                establish_body,
            ),
            403,
        ),
        (
            "null origin",
            post("/v1/peering/establish", &host, Some("null"), establish_body),
            403,
        ),
        // DNS rebinding: the page's own name in Host, same origin.
        (
            "rebinding GET leaf",
            get(leaf, "evil.example:8500", None),
            403,
        ),
        (
            "rebinding with its origin",
            get(leaf, "evil.example:8500", Some("http://evil.example:8500")),
            403,
        ),
        // curl, the CLI, client libraries: no Origin.
        ("no origin GET leaf", get(leaf, &host, None), 200),
        (
            "localhost",
            get(
                "/v1/agent/self",
                &format!("localhost:{}", addr.port()),
                None,
            ),
            200,
        ),
        (
            "configured name",
            get("/v1/agent/self", "consul.internal:8500", None),
            200,
        ),
        // The web UI's same-origin write reaches the handler (which
        // refuses the bad token, not the origin).
        (
            "own origin POST establish",
            post(
                "/v1/peering/establish",
                &host,
                Some(&own_origin),
                establish_body,
            ),
            400,
        ),
        (
            "own origin GET",
            get("/v1/peerings", &host, Some(&own_origin)),
            200,
        ),
    ];
    for (what, request, expected) in &cases {
        let tcp = connect_from("127.0.0.1", addr).await;
        let (status, body) = exchange(tcp, request).await;
        assert_eq!(status, *expected, "{what}: {body}");
        if *expected == 403 {
            assert!(
                body.contains("not allowed") || body.contains("cross-origin"),
                "{what}: {body}"
            );
        }
    }
    assert_eq!(
        metric(
            &agent,
            "isthmus_http_requests_refused_total{reason=\"origin\"}"
        )
        .await,
        3
    );
    assert_eq!(
        metric(
            &agent,
            "isthmus_http_requests_refused_total{reason=\"host\"}"
        )
        .await,
        2
    );
    // The HTTP client every component uses is unaffected.
    let response = agent
        .client
        .send(http::Method::GET, "/v1/agent/self", None)
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    agent.agent.shutdown().await.unwrap();
}

/// The real `isthmus agent` process: the flags reach the listener, a flood
/// from one address leaves others served, and the CLI is unaffected by the
/// Host and Origin checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_process_takes_the_limits_from_its_flags() {
    let agent = isthmus_tests::process::AgentProcess::spawn(&[
        "--dev",
        "-http-max-conns-per-client",
        "5",
        "-http-header-read-timeout",
        "400ms",
        "--http-allowed-host",
        "api.test",
    ]);
    let addr: SocketAddr = agent.http_addr.parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..8 {
        let mut tcp = connect_from("127.0.0.9", addr).await;
        tcp.write_all(b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x")
            .await
            .unwrap();
        flood.push(tcp);
    }
    let (status, _) = exchange(
        connect_from("127.0.0.1", addr).await,
        &get("/v1/agent/self", "api.test:8500", None),
    )
    .await;
    assert_eq!(status, 200, "a configured name is allowed");
    for tcp in &mut flood {
        wait_closed_within(WAIT, tcp).await;
    }
    let output = tokio::task::spawn_blocking({
        let http = agent.http_addr.clone();
        move || isthmus_tests::process::cli(&http, &["members"], None)
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        isthmus_tests::process::stderr(&output)
    );
    assert!(agent.terminate().success());
}
