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
