//! The agent's state survives a restart of the process on the same data dir.

use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put};
use isthmus_tests::process::{cli, stderr, AgentProcess};
use serde_json::json;

#[tokio::test]
async fn restart_keeps_the_ca_identity_entries_and_services() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let args = ["--data-dir", data, "--cluster-name", "cluster-01"];

    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let (roots_before, _) = get(&client, "/v1/connect/ca/roots").await;
    let written = cli(
        &agent.http_addr,
        &["config", "write", "-"],
        Some(
            r#"{"Kind": "service-intentions", "Name": "backend", "Sources": [{"Name": "web", "Action": "allow"}]}"#,
        ),
    );
    assert!(written.status.success(), "{}", stderr(&written));
    put(
        &client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80, "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    let (_, index_before) = get(&client, "/v1/health/service/web").await;
    assert!(
        agent.terminate().success(),
        "SIGTERM ends the agent cleanly"
    );

    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let (roots_after, _) = get(&client, "/v1/connect/ca/roots").await;
    assert_eq!(roots_after["TrustDomain"], roots_before["TrustDomain"]);
    assert_eq!(
        roots_after["Roots"][0]["RootCert"],
        roots_before["Roots"][0]["RootCert"]
    );
    assert_eq!(roots_after["ActiveRootID"], roots_before["ActiveRootID"]);
    let (entry, _) = get(&client, "/v1/config/service-intentions/backend").await;
    assert_eq!(entry["Sources"][0]["Name"], "web");
    let (health, index_after) = get(&client, "/v1/health/service/web").await;
    assert_eq!(health[0]["Checks"][1]["Status"], "passing");
    assert_eq!(index_after, index_before, "the index carries over");

    // A new write moves the index on from where it was.
    put(
        &client,
        "/v1/agent/service/register",
        json!({"Name": "api", "Port": 81}),
    )
    .await;
    let (_, index) = get(&client, "/v1/catalog/services").await;
    assert!(index > index_before);
}

#[test]
fn a_data_dir_belongs_to_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    drop(AgentProcess::spawn(&[
        "--data-dir",
        data,
        "--cluster-name",
        "cluster-01",
    ]));
    let refused = AgentProcess::try_spawn(&["--data-dir", data, "--cluster-name", "cluster-02"])
        .err()
        .expect("refused");
    assert!(
        refused.contains("belongs to cluster \"cluster-01\""),
        "{refused}"
    );
}

#[test]
fn a_durable_agent_needs_a_data_dir() {
    let refused = AgentProcess::try_spawn(&[]).err().expect("refused");
    assert!(refused.contains("--data-dir"), "{refused}");
}
