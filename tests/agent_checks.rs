//! Checks registered on their own and maintenance mode, driven over HTTP
//! against a real agent: `/v1/agent/check/register`, `check/deregister`,
//! `/v1/agent/maintenance` and `/v1/agent/service/maintenance/<id>`, with
//! Consul's status codes and texts for the error cases.

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::process::AgentProcess;
use isthmus_tests::TestAgent;
use serde_json::{json, Value};

async fn checks(client: &Client) -> Value {
    get(client, "/v1/agent/checks").await.0
}

async fn passing(client: &Client, service: &str) -> Vec<String> {
    let (entries, _) = get(client, &format!("/v1/health/service/{service}?passing")).await;
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_owned())
        .collect()
}

async fn refused(client: &Client, path: &str, body: Option<Value>) -> (u16, String) {
    let response = send(client, Method::PUT, path, body).await;
    (response.status.as_u16(), text(&response))
}

async fn register_web(client: &Client, id: &str) {
    put(
        client,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": id, "Port": 80, "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
}

#[tokio::test]
async fn a_registered_ttl_check_follows_its_updates_and_goes_on_deregister() {
    let agent = TestAgent::start().await;
    let client = &agent.client;
    register_web(client, "web-1").await;
    assert_eq!(passing(client, "web").await, ["web-1"]);

    // Lowercase and snake_case keys, as client libraries send them.
    put(
        client,
        "/v1/agent/check/register",
        json!({"name": "web disk", "id": "web-disk", "service_id": "web-1", "ttl": "1h", "notes": "disk space"}),
    )
    .await;
    let all = checks(client).await;
    let check = &all["web-disk"];
    assert_eq!(check["Name"], "web disk");
    assert_eq!(check["Status"], "critical", "checks start critical");
    assert_eq!(check["ServiceID"], "web-1");
    assert_eq!(check["ServiceName"], "web");
    assert_eq!(check["Notes"], "disk space");
    assert_eq!(check["Type"], "ttl");
    assert_eq!(check["Node"], "test-node");
    assert!(
        passing(client, "web").await.is_empty(),
        "its check is critical"
    );

    put(client, "/v1/agent/check/pass/web-disk?note=ok", json!(null)).await;
    assert_eq!(checks(client).await["web-disk"]["Status"], "passing");
    assert_eq!(passing(client, "web").await, ["web-1"]);
    put(client, "/v1/agent/check/fail/web-disk", json!(null)).await;
    assert_eq!(checks(client).await["web-disk"]["Status"], "critical");
    assert!(passing(client, "web").await.is_empty());

    put(client, "/v1/agent/check/deregister/web-disk", json!(null)).await;
    assert!(checks(client).await.get("web-disk").is_none());
    assert_eq!(passing(client, "web").await, ["web-1"]);
    let (status, body) = refused(client, "/v1/agent/check/deregister/web-disk", None).await;
    assert_eq!(
        (status, body.as_str()),
        (
            404,
            "Unknown check ID \"web-disk\". Ensure that the check ID is passed, not the check name."
        )
    );
}

#[tokio::test]
async fn a_registered_ttl_check_expires_and_a_node_check_counts_for_every_instance() {
    let agent = TestAgent::start().await;
    let client = &agent.client;
    register_web(client, "web-1").await;
    // No ID: the check is named by its Name, and without a ServiceID it is
    // a node check.
    put(
        client,
        "/v1/agent/check/register",
        json!({"Name": "node-ttl", "TTL": "300ms", "Status": "passing"}),
    )
    .await;
    let all = checks(client).await;
    assert_eq!(all["node-ttl"]["Status"], "passing");
    assert_eq!(all["node-ttl"]["ServiceID"], "");
    let (health, _) = get(client, "/v1/health/service/web").await;
    let ids: Vec<&str> = health[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"node-ttl"), "{ids:?}");
    isthmus_tests::eventually("the TTL expires", || async {
        (checks(client).await["node-ttl"]["Status"] == "critical").then_some(())
    })
    .await;
    assert!(passing(client, "web").await.is_empty());
}

#[tokio::test]
async fn check_register_refuses_like_consul() {
    let agent = TestAgent::start().await;
    let client = &agent.client;
    let cases = [
        (
            json!({"Name": "c", "ServiceID": "nope", "TTL": "10s"}),
            404,
            "ServiceID \"nope\" does not exist",
        ),
        (json!({"TTL": "10s"}), 400, "Missing check name"),
        (
            json!({"Name": "c", "TTL": "10s", "Status": "sideways"}),
            400,
            "Bad check status",
        ),
    ];
    for (body, want_status, want_text) in cases {
        let (status, text) = refused(client, "/v1/agent/check/register", Some(body.clone())).await;
        assert_eq!((status, text.as_str()), (want_status, want_text), "{body}");
    }
    let (status, text) = refused(
        client,
        "/v1/agent/check/register",
        Some(json!({"Name": "c"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.starts_with("Invalid check: "), "{text}");
    assert_eq!(checks(client).await, json!({}));
}

#[tokio::test]
async fn service_maintenance_is_a_critical_check_that_drops_the_instance() {
    let agent = TestAgent::start().await;
    let client = &agent.client;
    register_web(client, "web-1").await;
    register_web(client, "web-2").await;
    assert_eq!(passing(client, "web").await, ["web-1", "web-2"]);

    put(
        client,
        "/v1/agent/service/maintenance/web-1?enable=true&reason=deploying",
        json!(null),
    )
    .await;
    let (health, _) = get(client, "/v1/health/service/web").await;
    let maint = health[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "_service_maintenance:web-1")
        .expect("the maintenance check shows in health")
        .clone();
    assert_eq!(maint["Name"], "Service Maintenance Mode");
    assert_eq!(maint["Status"], "critical");
    assert_eq!(maint["Notes"], "deploying");
    assert_eq!(maint["ServiceID"], "web-1");
    assert_eq!(maint["ServiceName"], "web");
    assert_eq!(passing(client, "web").await, ["web-2"]);
    // Registering the service again does not end its maintenance.
    register_web(client, "web-1").await;
    assert_eq!(
        checks(client).await["_service_maintenance:web-1"]["Notes"],
        "deploying"
    );
    assert_eq!(passing(client, "web").await, ["web-2"]);

    put(
        client,
        "/v1/agent/service/maintenance/web-1?enable=false",
        json!(null),
    )
    .await;
    assert!(checks(client)
        .await
        .get("_service_maintenance:web-1")
        .is_none());
    assert_eq!(passing(client, "web").await, ["web-1", "web-2"]);

    // No reason: Consul's default text.
    put(
        client,
        "/v1/agent/service/maintenance/web-2?enable=true",
        json!(null),
    )
    .await;
    assert_eq!(
        checks(client).await["_service_maintenance:web-2"]["Notes"],
        "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
    );
    // Deregistering the service takes its maintenance check with it.
    put(client, "/v1/agent/service/deregister/web-2", json!(null)).await;
    assert!(checks(client)
        .await
        .get("_service_maintenance:web-2")
        .is_none());

    for (path, want_status, want_text) in [
        (
            "/v1/agent/service/maintenance/nope?enable=true",
            404,
            "No service registered with ID \"nope\"",
        ),
        (
            "/v1/agent/service/maintenance/web-1",
            400,
            "Missing value for enable",
        ),
        (
            "/v1/agent/service/maintenance/web-1?enable=maybe",
            400,
            "Invalid value for enable: \"maybe\"",
        ),
    ] {
        let (status, text) = refused(client, path, None).await;
        assert_eq!((status, text.as_str()), (want_status, want_text), "{path}");
    }
}

#[tokio::test]
async fn node_maintenance_drops_every_instance_on_the_node() {
    let agent = TestAgent::start().await;
    let client = &agent.client;
    register_web(client, "web-1").await;

    put(client, "/v1/agent/maintenance?enable=true", json!(null)).await;
    let all = checks(client).await;
    let maint = &all["_node_maintenance"];
    assert_eq!(maint["Name"], "Node Maintenance Mode");
    assert_eq!(maint["Status"], "critical");
    assert_eq!(maint["ServiceID"], "");
    assert_eq!(
        maint["Notes"],
        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
    );
    let (health, _) = get(client, "/v1/health/service/web").await;
    assert!(health[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "_node_maintenance"));
    assert!(passing(client, "web").await.is_empty());

    put(client, "/v1/agent/maintenance?enable=false", json!(null)).await;
    assert!(checks(client).await.get("_node_maintenance").is_none());
    assert_eq!(passing(client, "web").await, ["web-1"]);

    put(
        client,
        "/v1/agent/maintenance?enable=true&reason=kernel%20upgrade",
        json!(null),
    )
    .await;
    assert_eq!(
        checks(client).await["_node_maintenance"]["Notes"],
        "kernel upgrade"
    );

    for (path, want_text) in [
        ("/v1/agent/maintenance", "Missing value for enable"),
        (
            "/v1/agent/maintenance?enable=yes",
            "Invalid value for enable: \"yes\"",
        ),
    ] {
        let (status, text) = refused(client, path, None).await;
        assert_eq!((status, text.as_str()), (400, want_text), "{path}");
    }
}

#[tokio::test]
async fn registered_checks_and_maintenance_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap()];

    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    register_web(&client, "web-1").await;
    put(
        &client,
        "/v1/agent/check/register",
        json!({"Name": "web disk", "CheckID": "web-disk", "ServiceID": "web-1", "TTL": "1h", "Status": "passing"}),
    )
    .await;
    put(
        &client,
        "/v1/agent/check/register",
        json!({"Name": "short", "TTL": "1s", "Status": "passing"}),
    )
    .await;
    put(
        &client,
        "/v1/agent/service/maintenance/web-1?enable=true&reason=r",
        json!(null),
    )
    .await;
    assert!(agent.terminate().success());

    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let all = checks(&client).await;
    assert_eq!(all["web-disk"]["Status"], "passing");
    assert_eq!(all["web-disk"]["ServiceID"], "web-1");
    assert_eq!(all["_service_maintenance:web-1"]["Status"], "critical");
    assert_eq!(all["_service_maintenance:web-1"]["Notes"], "r");
    assert!(passing(&client, "web").await.is_empty());
    // The restored TTL checks run again: one expires, one takes updates.
    put(&client, "/v1/agent/check/pass/short", json!(null)).await;
    assert_eq!(checks(&client).await["short"]["Status"], "passing");
    isthmus_tests::eventually("the restored TTL check expires", || async {
        (checks(&client).await["short"]["Status"] == "critical").then_some(())
    })
    .await;
    put(&client, "/v1/agent/check/deregister/short", json!(null)).await;
    put(&client, "/v1/agent/check/fail/web-disk", json!(null)).await;
    assert_eq!(checks(&client).await["web-disk"]["Status"], "critical");
    put(
        &client,
        "/v1/agent/service/maintenance/web-1?enable=false",
        json!(null),
    )
    .await;
    put(&client, "/v1/agent/check/deregister/web-disk", json!(null)).await;
    assert_eq!(passing(&client, "web").await, ["web-1"]);
}

async fn upstream_endpoints(client: &Client, service: &str) -> Value {
    get(client, &format!("/v1/internal/proxy/upstream/{service}"))
        .await
        .0["Endpoints"]
        .clone()
}

#[tokio::test]
async fn maintenance_stops_routing_to_a_sidecar() {
    let agent = TestAgent::start().await;
    let client = &agent.client;
    register_web(client, "web-1").await;
    put(
        client,
        "/v1/agent/service/register",
        json!({"Name": "web-sidecar-proxy", "ID": "web-1-sidecar", "Kind": "connect-proxy", "Port": 21000,
               "Address": "127.0.0.1",
               "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1", "LocalServicePort": 80},
               "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    assert_eq!(
        upstream_endpoints(client, "web").await,
        json!(["127.0.0.1:21000"])
    );

    put(
        client,
        "/v1/agent/service/maintenance/web-1-sidecar?enable=true",
        json!(null),
    )
    .await;
    assert_eq!(upstream_endpoints(client, "web").await, json!([]));
    let (connect, _) = get(client, "/v1/health/connect/web?passing").await;
    assert_eq!(connect, json!([]));
    put(
        client,
        "/v1/agent/service/maintenance/web-1-sidecar?enable=false",
        json!(null),
    )
    .await;
    assert_eq!(
        upstream_endpoints(client, "web").await,
        json!(["127.0.0.1:21000"])
    );

    put(client, "/v1/agent/maintenance?enable=true", json!(null)).await;
    assert_eq!(upstream_endpoints(client, "web").await, json!([]));
    put(client, "/v1/agent/maintenance?enable=false", json!(null)).await;
    assert_eq!(
        upstream_endpoints(client, "web").await,
        json!(["127.0.0.1:21000"])
    );
}
