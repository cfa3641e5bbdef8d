//! Service traffic across a peering: frontend in cluster-02 calls backend in
//! cluster-01 through cluster-01's gateway (passthrough by SNI), and the
//! other way round; intentions with `Peer` decide.

use isthmus_tests::api::{get as api_get, put};
use isthmus_tests::apps::{get, http_app, parse, request_with};
use isthmus_tests::cluster::{export_backend_to_cluster_02, peered_clusters, Cluster};
use isthmus_tests::process::{stderr, stdout};
use isthmus_tests::proxy_process::ProxyProcess;
use isthmus_tests::{eventually, WAIT};
use serde_json::json;

#[tokio::test]
async fn frontend_in_cluster_02_reaches_backend_in_cluster_01() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;

    let _backend = export_backend_to_cluster_02(&c1).await;

    let app = http_app("caller").await.to_string();
    let frontend = ProxyProcess::spawn(
        &c2.agent.url(),
        "frontend",
        &app,
        &["backend@cluster-01"],
        &[],
    );
    let intruder = ProxyProcess::spawn(
        &c2.agent.url(),
        "intruder",
        &app,
        &["backend@cluster-01"],
        &[],
    );

    let body = eventually("frontend reaches backend across the peering", || async {
        match get(frontend.upstream("backend@cluster-01"), "/across").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    let seen = parse(&body);
    assert_eq!(seen["app"], "backend");
    let (c2_roots, _) = api_get(&c2.client, "/v1/connect/ca/roots").await;
    let caller = format!(
        "URI=spiffe://{}/ns/default/dc/cluster-02/svc/frontend",
        c2_roots["TrustDomain"].as_str().unwrap()
    );
    assert!(
        seen["xfcc"].as_str().unwrap().contains(&caller),
        "the backend sees the real caller: {seen}"
    );

    let (status, _, _) = get(intruder.upstream("backend@cluster-01"), "/across")
        .await
        .unwrap();
    assert!(status >= 500, "intruder from cluster-02 got {status}");

    // L7 rules for the peer's caller, enforced by the backend's sidecar:
    // nothing under /admin; GETs only with the team header.
    put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": [{
        "Name": "frontend", "Peer": "cluster-02", "Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
            {"Action": "allow", "HTTP": {"PathPrefix": "/", "Methods": ["GET"],
                "Header": [{"Name": "x-team", "Exact": "web"}]}}
        ]}]}),
    )
    .await;
    let through = frontend.upstream("backend@cluster-01");
    let team = [("x-team", "web")];
    let (_, body, _) = eventually("L7 rules in force across the peering", || async {
        request_with(through, "GET", "/admin/x", &team, false)
            .await
            .ok()
            .filter(|(s, _, _)| *s == 403)
    })
    .await;
    assert_eq!(body, "RBAC: access denied");
    assert_eq!(
        request_with(through, "GET", "/across", &team, false)
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        request_with(through, "GET", "/across", &[], false)
            .await
            .unwrap()
            .0,
        403,
        "no header: no match, default deny"
    );
    assert_eq!(
        request_with(through, "POST", "/across", &team, false)
            .await
            .unwrap()
            .0,
        403
    );
    assert_eq!(
        request_with(through, "GET", "/across", &team, true)
            .await
            .unwrap()
            .0,
        200,
        "HTTP/2 from the app too"
    );

    // Withdrawing the export cuts the path: no endpoint, explicit 503.
    let deleted = c1.cli(&[
        "config",
        "delete",
        "-kind",
        "exported-services",
        "-name",
        "default",
    ]);
    assert!(deleted.status.success());
    let (status, _, error) = eventually("export withdrawn", || async {
        get(frontend.upstream("backend@cluster-01"), "/across")
            .await
            .ok()
            .filter(|(s, _, _)| *s == 503)
    })
    .await;
    assert_eq!(status, 503);
    assert_eq!(error.as_deref(), Some("no healthy endpoint"));
}

#[tokio::test]
async fn the_token_issuing_cluster_reaches_the_other_sides_exports_too() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;

    // cluster-02 (the dialer) exports `api`; cluster-01 (the acceptor) calls it.
    let api_app = http_app("api").await.to_string();
    let _api = ProxyProcess::spawn(&c2.agent.url(), "api", &api_app, &[], &[]);
    c2.register_passing("api", 1).await;
    c2.export("api", "cluster-01").await;
    c2.allow_from_peer("api", "web", "cluster-01").await;
    let app = http_app("web").await.to_string();
    let web = ProxyProcess::spawn(&c1.agent.url(), "web", &app, &["api@cluster-02"], &[]);
    let body = eventually("cluster-01 reaches api in cluster-02", || async {
        match get(web.upstream("api@cluster-02"), "/reverse").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(parse(&body)["app"], "api");
}

/// As a workload of cluster-03 (certificate from cluster-03's agent),
/// calls `backend` in cluster-01 through cluster-01's gateway with the SNI
/// that names `sni_peer`: HTTP/2 over mutual TLS, end to end with the
/// backend's sidecar. The status, or why there was none.
async fn call_backend_as_cluster_03(
    c1: &Cluster,
    c3: &Cluster,
    sni_peer: &str,
) -> Result<u16, String> {
    use http_body_util::BodyExt;
    use isthmus_api::ca::{CaRoots, LeafCert};
    use isthmus_api::naming::{peered_sni, SpiffeId};

    let (leaf, _) = c3
        .client
        .get_json::<LeafCert>("/v1/agent/connect/ca/leaf/frontend")
        .await
        .map_err(|e| e.to_string())?;
    let (roots, _) = c1
        .client
        .get_json::<CaRoots>("/v1/connect/ca/roots")
        .await
        .map_err(|e| e.to_string())?;
    let key = isthmus_api::tls::certified_key(&leaf.cert_pem, &leaf.private_key_pem)
        .map_err(|e| e.to_string())?;
    let store = isthmus_api::tls::root_store(roots.roots.iter().map(|r| &r.root_cert))
        .map_err(|e| e.to_string())?;
    let backend = SpiffeId::service(&roots.trust_domain, "cluster-01", "backend");
    let config = isthmus_dataplane::mtls::outbound_client_config(
        key,
        std::sync::Arc::new(store),
        &backend,
        &[b"h2"],
    )
    .map_err(|e| e.to_string())?;
    let sni = peered_sni("backend", sni_peer, &roots.trust_domain);
    let tcp = tokio::net::TcpStream::connect(&c1.gateway.bind)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from(sni).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| format!("handshake: {e}"))?;
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .map_err(|e| format!("http/2: {e}"))?;
    tokio::spawn(connection);
    let request = http::Request::get("http://backend/forged")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(WAIT, send.send_request(request))
        .await
        .map_err(|_| "no response".to_owned())?
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// The view cluster-01's sidecars get: `(exported, connectable)` for `peer`.
async fn proxy_view_of_peer(c1: &Cluster, peer: &str) -> Option<(Vec<String>, Vec<String>)> {
    let (view, _) = api_get(&c1.client, isthmus_api::proxy::AGENT_PATH_VIEW).await;
    let names = |field: &str, p: &serde_json::Value| -> Vec<String> {
        p[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    view["Peers"]
        .as_array()?
        .iter()
        .find(|p| p["Name"] == peer)
        .map(|p| {
            (
                names("ExportedServices", p),
                names("ConnectableServices", p),
            )
        })
}

/// cluster-03's identity on cluster-01 may view `backend` but not connect
/// to it; cluster-02's may do both. A cluster-03 workload that puts
/// cluster-02's name in its SNI gets past the gateway (which can only
/// judge the SNI), and the backend's sidecar refuses it by its
/// certificate, although the intentions allow cluster-03's frontend.
#[tokio::test]
async fn a_peer_without_can_connect_cannot_borrow_another_peers_name_in_its_sni() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, _c2) = peered_clusters(dir.path()).await;
    let c3 = Cluster::start("cluster-03", dir.path()).await;
    for args in [
        &["auth", "group", "create", "viewer"][..],
        &[
            "auth",
            "group",
            "permission",
            "add",
            "viewer",
            "service",
            "can_view",
        ],
    ] {
        let out = c1.cli(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let token = c1.cli(&[
        "cluster",
        "link",
        "create",
        "cluster-03",
        "--auth-group",
        "viewer",
        "--quiet",
    ]);
    assert!(token.status.success(), "{}", stderr(&token));
    let token = stdout(&token).trim().to_owned();
    let established = c3.cli(&[
        "peering",
        "establish",
        "-name",
        "cluster-01",
        "-peering-token",
        &token,
    ]);
    assert!(established.status.success(), "{}", stderr(&established));
    c1.wait_for_state("cluster-03", "ACTIVE").await;

    let backend_proxy = export_backend_to_cluster_02(&c1).await;
    put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [{"Name": "backend",
            "Consumers": [{"Peer": "cluster-02"}, {"Peer": "cluster-03"}]}]}),
    )
    .await;
    put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": [
            {"Name": "frontend", "Peer": "cluster-02", "Action": "allow"},
            {"Name": "frontend", "Peer": "cluster-03", "Action": "allow"}
        ]}),
    )
    .await;

    // The sidecars' view: connectable only where a group grants can_connect.
    let backend = vec!["backend".to_owned()];
    let (exported, connectable) = proxy_view_of_peer(&c1, "cluster-02").await.unwrap();
    assert_eq!((&exported, &connectable), (&backend, &backend));
    let (exported, connectable) = proxy_view_of_peer(&c1, "cluster-03").await.unwrap();
    assert_eq!(exported, backend, "cluster-03 may view backend");
    assert!(
        connectable.is_empty(),
        "cluster-03 may not connect: {connectable:?}"
    );

    // Under its own name, the gateway refuses cluster-03.
    let honest = call_backend_as_cluster_03(&c1, &c3, "cluster-03").await;
    assert!(honest.is_err(), "the gateway let cluster-03 in: {honest:?}");
    // Under cluster-02's name the gateway passes it through (it can only
    // judge the SNI) to the backend's sidecar, which refuses it at L4: the
    // certificate says cluster-03. Polled until the sidecar has seen it,
    // since the gateway and the sidecar learn the new exports on their own.
    let admin = backend_proxy.admin.trim_start_matches("http://").to_owned();
    let refused_by_sidecar = r#"inbound_authorization_total{decision="deny",layer="l4",peer="cluster-03",src_service="frontend"}"#;
    eventually(
        "the backend's sidecar refuses cluster-03's forged SNI",
        || async {
            let forged = call_backend_as_cluster_03(&c1, &c3, "cluster-02").await;
            assert!(forged.is_err(), "a forged SNI reached backend: {forged:?}");
            let (_, metrics, _) = get(&admin, "/metrics").await.ok()?;
            metrics
                .lines()
                .any(|l| l.starts_with(refused_by_sidecar) && !l.ends_with(" 0"))
                .then_some(())
        },
    )
    .await;

    // Granting can_connect opens that same path: the refusal was the grant's.
    let out = c1.cli(&[
        "auth",
        "group",
        "permission",
        "add",
        "viewer",
        "service",
        "backend",
        "can_connect",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("cluster-03 may connect to backend", || async {
        let (_, connectable) = proxy_view_of_peer(&c1, "cluster-03").await?;
        (connectable == backend).then_some(())
    })
    .await;
    let status = eventually("cluster-03's frontend reaches backend", || async {
        call_backend_as_cluster_03(&c1, &c3, "cluster-03")
            .await
            .ok()
    })
    .await;
    assert_eq!(status, 200);
}
