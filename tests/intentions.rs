//! Intention precedence through the agent's API: a table of cases with
//! exact and wildcard sources and destinations, peers and L7 permissions.

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::TestAgent;
use serde_json::{json, Value};

async fn write_entries(client: &Client) {
    for entry in [
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": [
            {"Name": "web", "Action": "allow"},
            {"Name": "*", "Action": "deny"},
            {"Name": "frontend", "Peer": "cluster-02", "Action": "allow"},
            {"Name": "*", "Peer": "cluster-03", "Action": "allow"},
            {"Name": "api", "Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/v1", "Methods": ["GET"]}}]}
        ]}),
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [
            {"Name": "admin", "Action": "allow"},
            {"Name": "web", "Action": "deny"}
        ]}),
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "deny"}]}),
    ] {
        put(client, "/v1/config", entry).await;
    }
}

async fn check(
    client: &Client,
    source: &str,
    peer: Option<&str>,
    destination: &str,
) -> (bool, String) {
    let mut path =
        format!("/v1/connect/intentions/check?source={source}&destination={destination}");
    if let Some(peer) = peer {
        path.push_str(&format!("&source-peer={peer}"));
    }
    let response = send(client, Method::GET, &path, None).await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    (
        body["Allowed"].as_bool().unwrap(),
        body["Reason"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn precedence_table() {
    let agent = TestAgent::start().await;
    write_entries(&agent.client).await;
    // (source, peer, destination, allowed, reason contains)
    let cases: &[(&str, Option<&str>, &str, bool, &str)] = &[
        ("web", None, "backend", true, "Precedence: 9"),
        ("other", None, "backend", false, "* => backend"),
        // Destination specificity outranks source: backend's `*` deny (8)
        // beats the wildcard destination's exact `admin` allow (6).
        ("admin", None, "backend", false, "Precedence: 8"),
        ("admin", None, "payments", true, "Precedence: 6"),
        ("web", None, "payments", false, "Precedence: 6"),
        (
            "nobody",
            None,
            "payments",
            false,
            "Default intention policy",
        ),
        ("web", None, "db", false, "Precedence: 9"),
        // Peer sources match only callers from that peer...
        (
            "frontend",
            Some("cluster-02"),
            "backend",
            true,
            "cluster-02",
        ),
        // ...and local sources never match a peer's caller.
        (
            "web",
            Some("cluster-02"),
            "backend",
            false,
            "Default intention policy",
        ),
        ("frontend", None, "backend", false, "Precedence: 8"),
        (
            "anything",
            Some("cluster-03"),
            "backend",
            true,
            "cluster-03",
        ),
        // An L7 intention cannot be satisfied without a request: denied at L4.
        ("api", None, "backend", false, "Matched L7 intention"),
    ];
    for (source, peer, destination, allowed, reason) in cases {
        let (got, why) = check(&agent.client, source, *peer, destination).await;
        assert_eq!(got, *allowed, "{source}@{peer:?} -> {destination}: {why}");
        assert!(
            why.contains(reason),
            "{source}@{peer:?} -> {destination}: {why:?} lacks {reason:?}"
        );
    }
}

async fn authorize(agent: &TestAgent, target: &str, uri: &str) -> (bool, String) {
    let response = send(
        &agent.client,
        Method::POST,
        "/v1/agent/connect/authorize",
        Some(json!({"Target": target, "ClientCertURI": uri})),
    )
    .await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    (
        body["Authorized"].as_bool().unwrap(),
        body["Reason"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn authorize_uses_the_callers_spiffe_id() {
    let agent = TestAgent::start().await;
    write_entries(&agent.client).await;
    let (roots, _) = get(&agent.client, "/v1/connect/ca/roots").await;
    let td = roots["TrustDomain"].as_str().unwrap();

    let web = format!("spiffe://{td}/ns/default/dc/dc1/svc/web");
    assert_eq!(
        authorize(&agent, "backend", &web).await,
        (
            true,
            "Matched L4 intention: web => backend (Action: allow, Precedence: 9)".into()
        )
    );
    assert!(!authorize(&agent, "db", &web).await.0);

    let (ok, reason) = authorize(
        &agent,
        "backend",
        "spiffe://other.isthmus/ns/default/dc/dc9/svc/web",
    )
    .await;
    assert!(!ok);
    assert!(reason.contains("external trust domain"), "{reason}");
    let (ok, reason) = authorize(&agent, "backend", "spiffe://nope").await;
    assert!(!ok);
    assert!(
        reason.contains("not a valid Connect identifier"),
        "{reason}"
    );

    let missing = send(
        &agent.client,
        Method::POST,
        "/v1/agent/connect/authorize",
        Some(json!({"ClientCertURI": web})),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(text(&missing), "Target service must be specified");
}

#[tokio::test]
async fn default_policy_is_configurable_and_changes_apply_at_once() {
    let agent = TestAgent::start_with(|c| {
        c.default_intention_policy = isthmus_control::agent::IntentionPolicy::Allow
    })
    .await;
    assert_eq!(
        check(&agent.client, "x", None, "y").await,
        (true, "Default intention policy".into())
    );
    put(&agent.client, "/v1/config", json!({"Kind": "service-intentions", "Name": "y", "Sources": [{"Name": "x", "Action": "deny"}]})).await;
    assert!(!check(&agent.client, "x", None, "y").await.0);
    let deleted = send(
        &agent.client,
        Method::DELETE,
        "/v1/config/service-intentions/y",
        None,
    )
    .await;
    assert_eq!(deleted.status, 200);
    assert!(check(&agent.client, "x", None, "y").await.0);
}

/// A sidecar's view carries only the intentions that concern its service
/// (`?service=`), and its index does not move when others' entries or
/// instances change.
#[tokio::test]
async fn a_sidecars_view_holds_only_its_own_intentions() {
    let agent = TestAgent::start().await;
    write_entries(&agent.client).await;
    put(
        &agent.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "backend", "Action": "allow"}]}),
    )
    .await;
    let view = "/v1/internal/proxy/view?service=backend";
    let (body, index) = get(&agent.client, view).await;
    let mut names: Vec<&str> = body["Intentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["*", "backend"]);
    let (all, _) = get(&agent.client, "/v1/internal/proxy/view").await;
    assert_eq!(all["Intentions"].as_array().unwrap().len(), 3);

    // Another service's entry and a new instance: the view stays as it was.
    put(
        &agent.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Action": "deny"}]}),
    )
    .await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80}),
    )
    .await;
    let (_, unchanged) = get(&agent.client, view).await;
    assert_eq!(unchanged, index);
    // Its own entry changes: the index moves.
    put(
        &agent.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": [{"Name": "web", "Action": "allow"}]}),
    )
    .await;
    let (body, moved) = get(&agent.client, view).await;
    assert!(moved > index);
    assert_eq!(body["Intentions"].as_array().unwrap().len(), 2);
}
