//! Per-upstream protocols from config entries, through real processes: one
//! sidecar (its own flag: `http`) holds an HTTP/2 upstream (the service's
//! `service-defaults`) and a TCP one (the `proxy-defaults` `global`
//! `Config.protocol`) at once, and follows a change without a restart.

use std::time::Duration;

use isthmus_tests::api::put;
use isthmus_tests::apps::{get, http_app, parse, request, tcp_echo};
use isthmus_tests::eventually;
use isthmus_tests::process::AgentProcess;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `message` through `addr` and reads the echo, bounded.
async fn echo_through(addr: &str, message: &[u8]) -> Option<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(message).await.ok()?;
    let mut buffer = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buffer))
        .await
        .ok()?
        .ok()?;
    Some(buffer)
}

/// The caller's upstreams as its admin `/config` shows them, by service.
async fn upstream_protocols(caller: &ProxyProcess) -> Option<Vec<(String, String)>> {
    let (_, body, _) = get(caller.admin.trim_start_matches("http://"), "/config")
        .await
        .ok()?;
    let config: Value = serde_json::from_str(&body).ok()?;
    let mut protocols: Vec<(String, String)> = config["upstreams"]
        .as_array()?
        .iter()
        .map(|u| {
            (
                u["service"].as_str().unwrap_or_default().to_owned(),
                u["protocol"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    protocols.sort();
    Some(protocols)
}

#[tokio::test]
async fn one_sidecar_holds_an_http2_upstream_and_a_tcp_one() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--dns-port", "0"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    for destination in ["backend", "echo"] {
        put(
            &client,
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": destination,
                   "Sources": [{"Name": "caller", "Action": "allow"}]}),
        )
        .await;
    }
    put(
        &client,
        "/v1/config",
        json!({"Kind": "service-defaults", "Name": "backend", "Protocol": "http2"}),
    )
    .await;
    put(
        &client,
        "/v1/config",
        json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}}),
    )
    .await;

    let backend_app = http_app("backend").await.to_string();
    let echo_app = tcp_echo().await.to_string();
    let caller_app = http_app("caller").await.to_string();
    let _backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &[]);
    let _echo = ProxyProcess::spawn(&agent.url(), "echo", &echo_app, &[], &["--protocol", "tcp"]);
    let caller = ProxyProcess::spawn(
        &agent.url(),
        "caller",
        &caller_app,
        &["backend", "echo"],
        &["--protocol", "http"],
    );

    let protocols = eventually("the caller learns both protocols", || async {
        upstream_protocols(&caller).await.filter(|p| {
            p == &[
                ("backend".to_owned(), "http2".to_owned()),
                ("echo".to_owned(), "tcp".to_owned()),
            ]
        })
    })
    .await;
    assert_eq!(protocols.len(), 2);

    // HTTP/2 (prior knowledge) from the app; the sidecar works at L7 (the
    // backend sees the caller's identity in XFCC, which TCP could not add).
    let (status, body, _) = eventually("HTTP/2 through the backend upstream", || async {
        request(caller.upstream("backend"), "GET", "/over-h2", true)
            .await
            .ok()
            .filter(|(status, _, _)| *status == 200)
    })
    .await;
    assert_eq!(status, 200);
    let seen = parse(&body);
    assert_eq!(seen["app"], "backend");
    assert!(
        seen["xfcc"]
            .as_str()
            .unwrap_or_default()
            .contains("/svc/caller"),
        "{seen}"
    );

    // Raw bytes through the echo upstream, at the same time.
    let reply = eventually("bytes through the echo upstream", || async {
        echo_through(caller.upstream("echo"), b"raw tcp bytes").await
    })
    .await;
    assert_eq!(reply, b"raw tcp bytes");

    // Without the global default, echo falls back to the caller's own flag
    // (http), live: the route changes without a restart.
    let deleted = isthmus_tests::api::send(
        &client,
        http::Method::DELETE,
        "/v1/config/proxy-defaults/global",
        None,
    )
    .await;
    assert_eq!(deleted.status, 200);
    eventually("echo falls back to the flag", || async {
        upstream_protocols(&caller).await.filter(|p| {
            p.contains(&("echo".to_owned(), "http".to_owned()))
                && p.contains(&("backend".to_owned(), "http2".to_owned()))
        })
    })
    .await;
}
