//! Blocking queries: `?index=N&wait=D` holds until the answer's index moves
//! past N, and every read answers with X-Consul-Index.

use std::time::{Duration, Instant};

use http::Method;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::TestAgent;
use serde_json::json;

#[tokio::test]
async fn a_blocked_query_wakes_on_a_relevant_change() {
    let agent = TestAgent::start().await;
    let (empty, index) = get(&agent.client, "/v1/health/service/web").await;
    assert_eq!(empty, json!([]));

    let client = agent.client.clone();
    let blocked = tokio::spawn(async move {
        let started = Instant::now();
        let answer = get(
            &client,
            &format!("/v1/health/service/web?index={index}&wait=60s"),
        )
        .await;
        (answer, started.elapsed())
    });
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80}),
    )
    .await;

    let ((entries, new_index), elapsed) = tokio::time::timeout(Duration::from_secs(20), blocked)
        .await
        .expect("the blocked query returned")
        .unwrap();
    assert!(new_index > index);
    assert_eq!(entries[0]["Service"]["ID"], "web");
    // It woke because of the change, long before its 60 s wait.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

#[tokio::test]
async fn unrelated_changes_do_not_end_a_blocking_query() {
    let agent = TestAgent::start().await;
    let (_, index) = get(&agent.client, "/v1/health/service/web").await;
    let client = agent.client.clone();
    let blocked = tokio::spawn(async move {
        get(
            &client,
            &format!("/v1/health/service/web?index={index}&wait=700ms"),
        )
        .await
    });
    // A config entry write bumps the global index but not the health tables.
    put(
        &agent.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "web", "Sources": [{"Name": "a", "Action": "allow"}]}),
    )
    .await;
    let (entries, after) = blocked.await.unwrap();
    assert_eq!(entries, json!([]));
    assert_eq!(
        after, index,
        "answered at the wait's end with the same index"
    );
}

#[tokio::test]
async fn a_service_query_sleeps_through_changes_to_other_services() {
    let agent = TestAgent::start().await;
    let register = |body: serde_json::Value| {
        let client = agent.client.clone();
        async move { put(&client, "/v1/agent/service/register", body).await }
    };
    register(json!({"Name": "web", "ID": "web-1", "Port": 80})).await;
    register(json!({"Name": "db", "ID": "db-1", "Port": 5432})).await;
    let (_, web_index) = get(&agent.client, "/v1/health/service/web").await;
    let (_, catalog_index) = get(&agent.client, "/v1/catalog/service/web").await;

    let client = agent.client.clone();
    let blocked = tokio::spawn(async move {
        get(
            &client,
            &format!("/v1/health/service/web?index={web_index}&wait=60s"),
        )
        .await
    });
    // Another service changes: web's answer and its index stay where they
    // were (as Consul's per-service indexes do), so the query keeps waiting.
    register(json!({"Name": "db", "ID": "db-2", "Port": 5432})).await;
    let (_, still) = get(&agent.client, "/v1/health/service/web").await;
    assert_eq!(still, web_index);
    let (_, catalog_still) = get(&agent.client, "/v1/catalog/service/web").await;
    assert_eq!(catalog_still, catalog_index);
    assert!(!blocked.is_finished());

    // web changes: the query answers with the new instance.
    register(json!({"Name": "web", "ID": "web-2", "Port": 81})).await;
    let (entries, index) = tokio::time::timeout(Duration::from_secs(20), blocked)
        .await
        .expect("the blocked query returned")
        .unwrap();
    assert!(index > web_index);
    let ids: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["web-1", "web-2"]);
}

#[tokio::test]
async fn every_read_endpoint_has_an_index_and_bad_parameters_are_refused() {
    let agent = TestAgent::start().await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80}),
    )
    .await;
    for path in [
        "/v1/agent/services",
        "/v1/agent/checks",
        "/v1/catalog/services",
        "/v1/catalog/service/web",
        "/v1/catalog/nodes",
        "/v1/health/service/web",
        "/v1/health/connect/web",
        "/v1/health/checks/web",
        "/v1/config/service-intentions",
        "/v1/connect/ca/roots",
        "/v1/agent/connect/ca/roots",
        "/v1/agent/connect/ca/leaf/web",
    ] {
        let (_, index) = get(&agent.client, path).await;
        assert!(index >= 1, "{path}");
    }
    for (path, message) in [
        ("/v1/health/service/web?index=abc", "Invalid index"),
        (
            "/v1/health/service/web?index=1&wait=forever",
            "Invalid wait time",
        ),
    ] {
        let response = send(&agent.client, Method::GET, path, None).await;
        assert_eq!(response.status, 400, "{path}");
        assert!(
            text(&response).contains(message),
            "{path}: {}",
            text(&response)
        );
    }
}

#[tokio::test]
async fn the_gateway_view_wakes_on_sidecar_health() {
    // The gateway's passthrough endpoints are healthy sidecars: a check
    // change must end its blocking query at once, not at the wait's end.
    let agent = TestAgent::start().await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "api-sidecar-proxy", "Kind": "connect-proxy", "Port": 21000,
               "Proxy": {"DestinationServiceName": "api"}, "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    let (_, index) = get(&agent.client, isthmus_api::gateway::AGENT_PATH_VIEW).await;
    let client = agent.client.clone();
    let blocked = tokio::spawn(async move {
        let started = Instant::now();
        let (_, new_index) = get(
            &client,
            &format!(
                "{}?index={index}&wait=60s",
                isthmus_api::gateway::AGENT_PATH_VIEW
            ),
        )
        .await;
        (new_index, started.elapsed())
    });
    put(
        &agent.client,
        "/v1/agent/check/fail/service:api-sidecar-proxy",
        json!(null),
    )
    .await;
    let (new_index, elapsed) = tokio::time::timeout(Duration::from_secs(20), blocked)
        .await
        .unwrap()
        .unwrap();
    assert!(new_index > index);
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}
