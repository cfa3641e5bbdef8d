//! Sidecars inside one cluster, as real processes: intentions at L4 and L7,
//! HTTP/1.1, HTTP/2 and TCP through the mesh, changes without restarts.

use isthmus_tests::api::{get as api_get, put};
use isthmus_tests::apps::{get, http_app, parse, request, tcp_echo};
use isthmus_tests::eventually;
use isthmus_tests::process::AgentProcess;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn write_intentions(client: &isthmus_runtime::client::Client, sources: serde_json::Value) {
    put(
        client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": sources}),
    )
    .await;
}

#[tokio::test]
async fn intentions_decide_who_reaches_backend_at_l4_and_l7() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    let (roots, _) = api_get(&client, "/v1/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap().to_owned();
    write_intentions(&client, json!([{"Name": "frontend", "Action": "allow"}])).await;

    let backend_app = http_app("backend").await.to_string();
    let other_app = http_app("other").await.to_string();
    let _backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &[]);
    let frontend = ProxyProcess::spawn(&agent.url(), "frontend", &other_app, &["backend"], &[]);
    let intruder = ProxyProcess::spawn(&agent.url(), "intruder", &other_app, &["backend"], &[]);

    // frontend is allowed: the app sees the caller's identity.
    let body = eventually("frontend reaches backend", || async {
        match get(frontend.upstream("backend"), "/hello").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    let seen = parse(&body);
    assert_eq!(seen["app"], "backend");
    assert_eq!(seen["path"], "/hello");
    let caller = format!("URI=spiffe://{td}/ns/default/dc/dc1/svc/frontend");
    assert!(seen["xfcc"].as_str().unwrap().contains(&caller), "{seen}");
    // HTTP/2 from the app to its sidecar works too.
    let (status, _, _) = request(frontend.upstream("backend"), "GET", "/h2", true)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // intruder matches no intention: the default policy (deny) closes it at L4.
    let (status, _, _) = get(intruder.upstream("backend"), "/hello").await.unwrap();
    assert!(status >= 500, "intruder got {status}");

    // L7: frontend may only GET under /api; intruder is now allowed outright.
    write_intentions(
        &client,
        json!([
            {"Name": "frontend", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/api", "Methods": ["GET"]}}]},
            {"Name": "intruder", "Action": "allow"}
        ]),
    )
    .await;
    let (status, body, _) = eventually("L7 rule enforced", || async {
        get(frontend.upstream("backend"), "/admin")
            .await
            .ok()
            .filter(|(s, _, _)| *s == 403)
    })
    .await;
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    let (status, _, _) = get(frontend.upstream("backend"), "/api/items")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = request(frontend.upstream("backend"), "POST", "/api/items", false)
        .await
        .unwrap();
    assert_eq!(status, 403);
    let (status, _, _) = eventually("intruder allowed after the change", || async {
        get(intruder.upstream("backend"), "/x")
            .await
            .ok()
            .filter(|(s, _, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);

    // The backend's sidecar counted its decisions.
    let metrics = eventually("metrics", || async {
        get(_backend.admin.trim_start_matches("http://"), "/metrics")
            .await
            .ok()
    })
    .await
    .1;
    assert!(metrics.contains("inbound_authorization_total"), "{metrics}");
    assert!(metrics.contains("decision=\"deny\""), "{metrics}");
}

#[tokio::test]
async fn tcp_passes_through_the_mesh() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    put(&client, "/v1/config", json!({"Kind": "service-intentions", "Name": "echo", "Sources": [{"Name": "caller", "Action": "allow"}]})).await;
    let echo = tcp_echo().await.to_string();
    let other = tcp_echo().await.to_string();
    let _server = ProxyProcess::spawn(&agent.url(), "echo", &echo, &[], &["--protocol", "tcp"]);
    let caller = ProxyProcess::spawn(
        &agent.url(),
        "caller",
        &other,
        &["echo"],
        &["--protocol", "tcp"],
    );
    let reply = eventually("echo through the mesh", || async {
        let mut stream = tokio::net::TcpStream::connect(caller.upstream("echo"))
            .await
            .ok()?;
        stream.write_all(b"ping over mtls").await.ok()?;
        let mut buffer = [0u8; 14];
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            stream.read_exact(&mut buffer),
        )
        .await
        .ok()?
        .ok()?;
        Some(buffer)
    })
    .await;
    assert_eq!(&reply, b"ping over mtls");
}

async fn leaf_serial(proxy: &ProxyProcess) -> Option<String> {
    let (_, body, _) = get(proxy.admin.trim_start_matches("http://"), "/config")
        .await
        .ok()?;
    parse(&body)["leaf"]["serial"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn certificates_rotate_under_load_without_a_failed_request() {
    // Leaves live 3 s and are renewed at 2 s: the test crosses renewals on
    // both sides while requests keep flowing.
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--leaf-cert-ttl", "3s"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    write_intentions(&client, json!([{"Name": "frontend", "Action": "allow"}])).await;
    let backend_app = http_app("backend").await.to_string();
    let backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &[]);
    let frontend = ProxyProcess::spawn(&agent.url(), "frontend", &backend_app, &["backend"], &[]);
    eventually("path up", || async {
        get(frontend.upstream("backend"), "/")
            .await
            .ok()
            .filter(|(s, _, _)| *s == 200)
    })
    .await;
    let first_backend = leaf_serial(&backend).await.unwrap();
    let first_frontend = leaf_serial(&frontend).await.unwrap();

    let mut requests = 0;
    let deadline = tokio::time::Instant::now() + isthmus_tests::WAIT;
    loop {
        let (status, body, _) = get(frontend.upstream("backend"), "/rotating")
            .await
            .expect("request completes");
        assert_eq!(
            status, 200,
            "request {requests} failed during rotation: {body}"
        );
        requests += 1;
        let rotated_backend = leaf_serial(&backend)
            .await
            .is_some_and(|s| s != first_backend);
        let rotated_frontend = leaf_serial(&frontend)
            .await
            .is_some_and(|s| s != first_frontend);
        if rotated_backend && rotated_frontend && requests > 50 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaves did not rotate"
        );
    }
}

#[tokio::test]
async fn callers_without_a_trusted_certificate_are_refused() {
    use std::sync::Arc;
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--default-intention-policy",
        "allow",
    ]);
    let backend_app = http_app("backend").await.to_string();
    let backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &[]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    let (roots, _) = api_get(&client, "/v1/connect/ca/roots").await;
    let root_pem = roots["Roots"][0]["RootCert"].as_str().unwrap().to_owned();
    let td = roots["TrustDomain"].as_str().unwrap().to_owned();
    eventually("backend ready", || async {
        get(backend.admin.trim_start_matches("http://"), "/ready")
            .await
            .ok()
            .filter(|(s, _, _)| *s == 200)
    })
    .await;

    // A leaf from a cluster nobody peered with, and no certificate at all.
    let stranger = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let stranger_client = isthmus_runtime::client::Client::new(&stranger.http_addr).unwrap();
    let (leaf, _) = api_get(&stranger_client, "/v1/agent/connect/ca/leaf/frontend").await;
    let identity = isthmus_api::tls::certified_key(
        leaf["CertPEM"].as_str().unwrap(),
        leaf["PrivateKeyPEM"].as_str().unwrap(),
    )
    .unwrap();
    let roots = Arc::new(isthmus_api::tls::root_store([&root_pem]).unwrap());
    let expected = isthmus_api::naming::SpiffeId::service(&td, "dc1", "backend");
    let with_stranger_cert = isthmus_dataplane::mtls::outbound_client_config(
        identity,
        roots.clone(),
        &expected,
        &[b"http/1.1"],
    )
    .unwrap();
    let without_cert = rustls::ClientConfig::builder_with_provider(isthmus_api::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(isthmus_dataplane::mtls::SpiffeServerVerifier::new(
            roots, &expected,
        ))
        .with_no_client_auth();
    for (what, config) in [
        ("unpeered CA", with_stranger_cert),
        ("no certificate", without_cert),
    ] {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&backend.inbound)
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("backend").unwrap();
        // TLS 1.3 clients learn of a refused certificate on their first read.
        let refused = match connector.connect(name, tcp).await {
            Err(_) => true,
            Ok(mut tls) => {
                let _ = tls
                    .write_all(b"GET / HTTP/1.1\r\nhost: backend\r\n\r\n")
                    .await;
                let mut buffer = [0u8; 64];
                !matches!(tls.read(&mut buffer).await, Ok(n) if n > 0)
            }
        };
        assert!(refused, "{what} was let in");
    }
}
