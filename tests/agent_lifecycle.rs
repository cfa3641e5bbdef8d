//! `PUT /v1/agent/reload` and `PUT /v1/agent/leave` against real
//! `isthmus agent` processes: a reload applies the config file's intention
//! policy (and refuses a file that no longer loads); a leave takes the
//! node's services out of the (durable) catalog and ends the process cleanly.

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::process::AgentProcess;
use serde_json::{json, Value};

async fn allowed(client: &Client) -> bool {
    let (answer, _): (Value, _) = client
        .get_json("/v1/connect/intentions/check?source=web&destination=db")
        .await
        .unwrap();
    answer["Allowed"].as_bool().unwrap()
}

#[tokio::test]
async fn reload_applies_the_intention_policy_and_keeps_a_good_config_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.hcl");
    std::fs::write(&file, "default_intention_policy = \"deny\"\n").unwrap();
    let agent = AgentProcess::spawn(&["--dev", "--config-file", file.to_str().unwrap()]);
    let client = Client::new(&agent.http_addr).unwrap();
    assert!(!allowed(&client).await);

    // A sidecar's blocking view query wakes with the new policy.
    let (view, index) = get(&client, "/v1/internal/proxy/view?service=db").await;
    assert_eq!(view["DefaultAllow"], false);
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            get(
                &client,
                &format!("/v1/internal/proxy/view?service=db&index={index}&wait=5m"),
            )
            .await
        })
    };

    std::fs::write(
        &file,
        "default_intention_policy = \"allow\"\npeering_token_ttl = \"1h\"\n",
    )
    .unwrap();
    let reloaded = send(&client, Method::PUT, "/v1/agent/reload", None).await;
    assert_eq!(
        (reloaded.status.as_u16(), text(&reloaded)),
        (200, String::new())
    );
    assert!(allowed(&client).await, "the reloaded policy is in force");
    let (view, _) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the view query wakes")
        .unwrap();
    assert_eq!(view["DefaultAllow"], true);

    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let refused = send(&client, Method::PUT, "/v1/agent/reload", None).await;
    assert_eq!(refused.status.as_u16(), 500);
    assert!(
        text(&refused).starts_with("Failed to reload configs: config file "),
        "{}",
        text(&refused)
    );
    assert!(allowed(&client).await, "a failed reload changes nothing");

    let (status, logs) = agent.terminate_with_logs();
    assert!(status.success());
    assert!(logs.contains("default_intention_policy"), "{logs}");
    assert!(
        logs.contains("takes effect only after a restart"),
        "the other changed setting is reported: {logs}"
    );
}

#[tokio::test]
async fn leave_deregisters_the_node_and_stops_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let agent = AgentProcess::spawn(&["--dev", "--data-dir", data_dir, "--no-gateway"]);
    let client = Client::new(&agent.http_addr).unwrap();
    put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "web", "port": 8080, "check": {"ttl": "60s"}}),
    )
    .await;
    let (services, _) = get(&client, "/v1/catalog/service/web").await;
    assert_eq!(services.as_array().unwrap().len(), 1);

    let left = send(&client, Method::PUT, "/v1/agent/leave", None).await;
    assert_eq!((left.status.as_u16(), text(&left)), (200, String::new()));
    let (status, logs) = agent.wait_exit_with_logs();
    assert!(status.success(), "a clean exit: {logs}");
    assert!(logs.contains("left the cluster"), "{logs}");

    // The deregistration was durable: the node's services are gone.
    let again = AgentProcess::spawn(&["--dev", "--data-dir", data_dir, "--no-gateway"]);
    let client = Client::new(&again.http_addr).unwrap();
    let (services, _) = get(&client, "/v1/catalog/service/web").await;
    assert_eq!(services, json!([]));
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert_eq!(checks, json!({}));
    assert!(again.terminate().success());
}

/// The catalog's instances of `service`: (ID, port).
async fn instances(client: &Client, service: &str) -> Vec<(String, u64)> {
    let (rows, _) = get(client, &format!("/v1/catalog/service/{service}")).await;
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ServiceID"].as_str().unwrap().to_owned(),
                r["ServicePort"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_config_files_services_register_at_start_and_follow_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.hcl");
    std::fs::write(
        &file,
        "service {\n  name = \"web\"\n  port = 8080\n  check {\n    ttl = \"60s\"\n  }\n}\n\
         check {\n  name = \"disk\"\n  ttl = \"60s\"\n}\n",
    )
    .unwrap();
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--config-file",
        file.to_str().unwrap(),
    ]);
    let client = Client::new(&agent.http_addr).unwrap();
    assert_eq!(instances(&client, "web").await, [("web".to_owned(), 8080)]);
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert!(checks.get("disk").is_some(), "{checks}");
    // A service registered through the API is not the file's to remove.
    put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "manual", "port": 1}),
    )
    .await;

    // web moves, api appears, the disk check goes.
    std::fs::write(
        &file,
        "services = [\n  { name = \"web\", port = 9090 },\n  { name = \"api\", port = 7070 }\n]\n",
    )
    .unwrap();
    let reloaded = send(&client, Method::PUT, "/v1/agent/reload", None).await;
    assert_eq!(reloaded.status.as_u16(), 200, "{}", text(&reloaded));
    assert_eq!(instances(&client, "web").await, [("web".to_owned(), 9090)]);
    assert_eq!(instances(&client, "api").await, [("api".to_owned(), 7070)]);
    assert_eq!(instances(&client, "manual").await.len(), 1);
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert!(checks.get("disk").is_none(), "{checks}");

    // A bad definition is refused whole: nothing changes.
    std::fs::write(
        &file,
        "services = [\n  { name = \"web\", port = 1 },\n  { port = 2 }\n]\n",
    )
    .unwrap();
    let refused = send(&client, Method::PUT, "/v1/agent/reload", None).await;
    assert_eq!(refused.status.as_u16(), 500);
    assert_eq!(
        text(&refused),
        "Failed to reload configs: service definition 1: Missing service name"
    );
    assert_eq!(instances(&client, "web").await, [("web".to_owned(), 9090)]);
    assert!(agent.terminate().success());
}
