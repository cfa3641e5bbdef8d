//! Service traffic across a peering: frontend in cluster-02 calls backend in
//! cluster-01 through cluster-01's gateway (passthrough by SNI), and the
//! other way round; intentions with `Peer` decide.

use isthmus_tests::api::{get as api_get, put};
use isthmus_tests::apps::{get, http_app, parse, request_with};
use isthmus_tests::cluster::{export_backend_to_cluster_02, peered_clusters};
use isthmus_tests::eventually;
use isthmus_tests::proxy_process::ProxyProcess;
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
    put(
        &c2.client,
        "/v1/agent/service/register",
        json!({"Name": "api", "Port": 1, "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    put(
        &c2.client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [{"Name": "api", "Consumers": [{"Peer": "cluster-01"}]}]}),
    )
    .await;
    put(
        &c2.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Peer": "cluster-01", "Action": "allow"}]}),
    )
    .await;
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
