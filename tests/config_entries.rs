//! Config entries through the CLI and the HTTP API of a real agent process,
//! using the seed document's HCL verbatim.

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, send, text};
use isthmus_tests::process::{cli, cli_in, stderr, stdout, AgentProcess};
use serde_json::{json, Value};

const SEED_EXPORTED_SERVICES: &str = r#"Kind = "exported-services"
Name = "default"
Services = [
{
## The name and namespace of the service to export.
Name = "service-name"
Namespace = "default"
## The list of peer clusters to export the service to.
Consumers = [
{
## The peer name to reference in config is the one set
## during the peering process.
PeerName = "cluster-02"
}
]
}
]
"#;

const SEED_SERVICE_INTENTIONS: &str = r#"Kind = "service-intentions"
Name = "backend-service"
Sources = [
{
Name = "frontend-service"
Peer = "cluster-02"
Action = "allow"
}
]
"#;

#[tokio::test]
async fn seed_hcl_writes_and_reads_back_with_the_cli_and_the_api() {
    let agent = AgentProcess::spawn(&["--dev"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("peering-config.hcl"),
        SEED_EXPORTED_SERVICES,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("peering-intentions.hcl"),
        SEED_SERVICE_INTENTIONS,
    )
    .unwrap();

    let written = cli_in(
        Some(dir.path()),
        &agent.http_addr,
        &["config", "write", "peering-config.hcl"],
        None,
    );
    assert!(written.status.success(), "{}", stderr(&written));
    assert_eq!(
        stdout(&written),
        "Config entry written: exported-services/default\n"
    );
    let written = cli_in(
        Some(dir.path()),
        &agent.http_addr,
        &["config", "write", "peering-intentions.hcl"],
        None,
    );
    assert_eq!(
        stdout(&written),
        "Config entry written: service-intentions/backend-service\n"
    );

    let read = cli(
        &agent.http_addr,
        &[
            "config",
            "read",
            "-kind",
            "exported-services",
            "-name",
            "default",
        ],
        None,
    );
    assert!(read.status.success(), "{}", stderr(&read));
    let entry: Value = serde_json::from_str(&stdout(&read)).unwrap();
    assert_eq!(entry["Services"][0]["Name"], "service-name");
    assert_eq!(
        entry["Services"][0]["Consumers"],
        json!([{"Peer": "cluster-02"}])
    );

    let client = Client::new(&agent.http_addr).unwrap();
    let (entry, _) = get(&client, "/v1/config/service-intentions/backend-service").await;
    assert_eq!(entry["Sources"][0]["Name"], "frontend-service");
    assert_eq!(entry["Sources"][0]["Peer"], "cluster-02");
    assert_eq!(entry["Sources"][0]["Action"], "allow");
    assert_eq!(entry["Sources"][0]["Precedence"], 9);
    assert!(entry["CreateIndex"].as_u64().unwrap() > 0);

    let list = cli(
        &agent.http_addr,
        &["config", "list", "--kind", "service-intentions"],
        None,
    );
    assert_eq!(stdout(&list), "backend-service\n");

    let deleted = cli(
        &agent.http_addr,
        &[
            "config",
            "delete",
            "-kind=service-intentions",
            "-name=backend-service",
        ],
        None,
    );
    assert_eq!(
        stdout(&deleted),
        "Config entry deleted: service-intentions/backend-service\n"
    );
    let missing = cli(
        &agent.http_addr,
        &[
            "config",
            "read",
            "-kind",
            "service-intentions",
            "-name",
            "backend-service",
        ],
        None,
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing)
            .contains(r#"Config entry not found for "service-intentions" / "backend-service""#),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn invalid_entries_are_refused_and_nothing_is_written() {
    let agent = AgentProcess::spawn(&["--dev"]);
    let cases: &[(&str, &str)] = &[
        ("Name = \"x\"\n", "Payload does not contain a kind/Kind key at the top level"),
        ("Kind = \"service-splitter\"\nName = \"x\"\n", "unsupported config entry kind \"service-splitter\""),
        ("Kind = \"exported-services\"\nName = \"default\"\nServices = [{ Name = \"a\" }]\n", "Services[0]: must have at least one consumer"),
        ("Kind = \"exported-services\"\nName = \"default\"\nServices = [{ Name = \"\", Consumers = [{ Peer = \"p\" }] }]\n", "Services[0]: service name cannot be empty"),
        ("Kind = \"exported-services\"\nName = \"default\"\nServices = [{ Name = \"a\", Consumers = [{ Peer = \"p\", Partition = \"q\" }] }]\n", "Services[0].Consumers[0]: must define at most one of Peer, Partition, or SamenessGroup"),
        ("Kind = \"service-intentions\"\nName = \"b\"\nSources = [{ Action = \"allow\" }]\n", "Sources[0].Name is required"),
        ("Kind = \"service-intentions\"\nName = \"b\"\nSources = [{ Name = \"a\", Peer = \"*\", Action = \"allow\" }]\n", "Sources[0].Peer: cannot use wildcard '*' in peer"),
        ("Kind = \"service-intentions\"\nName = \"b\"\nSources = [{ Name = \"a\", Peer = \"p\", Action = \"allow\" }, { Name = \"a\", Peer = \"p\", Action = \"deny\" }]\n", "Sources[1] defines peer(\"p\") \"a\" more than once"),
        ("Kind = \"service-intentions\"\nName = \"b\"\nSources = [{ Name = \"a\", Acton = \"allow\" }]\n", "Acton"),
        ("Kind = ", "failed to decode config entry input"),
    ];
    for (input, message) in cases {
        let output = cli(&agent.http_addr, &["config", "write", "-"], Some(input));
        assert!(!output.status.success(), "{input:?} was accepted");
        assert!(
            stderr(&output).contains(message),
            "{input:?}: expected {message:?} in {:?}",
            stderr(&output)
        );
    }
    for kind in ["exported-services", "service-intentions"] {
        let list = cli(&agent.http_addr, &["config", "list", "-kind", kind], None);
        assert!(list.status.success(), "{}", stderr(&list));
        assert_eq!(stdout(&list), "", "nothing was written for {kind}");
    }

    let client = Client::new(&agent.http_addr).unwrap();
    let garbage = client
        .send(
            Method::PUT,
            "/v1/config",
            Some(bytes::Bytes::from_static(b"{nope")),
        )
        .await
        .unwrap();
    assert_eq!(garbage.status, 400);
    assert!(text(&garbage).starts_with("Body decoding failed"));
    let unknown_kind = send(&client, Method::GET, "/v1/config/service-router", None).await;
    assert_eq!(unknown_kind.status, 400);
}

#[tokio::test]
async fn check_and_set_guards_concurrent_writers() {
    let agent = AgentProcess::spawn(&["--dev"]);
    let client = Client::new(&agent.http_addr).unwrap();
    let entry = json!({"Kind": "service-intentions", "Name": "b", "Sources": [{"Name": "a", "Action": "allow"}]});
    let created = send(
        &client,
        Method::PUT,
        "/v1/config?cas=0",
        Some(entry.clone()),
    )
    .await;
    assert_eq!(text(&created), "true");
    let again = send(
        &client,
        Method::PUT,
        "/v1/config?cas=0",
        Some(entry.clone()),
    )
    .await;
    assert_eq!(text(&again), "false", "cas=0 only creates");
    let (stored, _) = get(&client, "/v1/config/service-intentions/b").await;
    let index = stored["ModifyIndex"].as_u64().unwrap();
    let stale = send(
        &client,
        Method::PUT,
        &format!("/v1/config?cas={}", index + 100),
        Some(entry.clone()),
    )
    .await;
    assert_eq!(text(&stale), "false");
    let fresh = send(
        &client,
        Method::PUT,
        &format!("/v1/config?cas={index}"),
        Some(entry),
    )
    .await;
    assert_eq!(text(&fresh), "true");
    let (stored, _) = get(&client, "/v1/config/service-intentions/b").await;
    assert!(stored["ModifyIndex"].as_u64().unwrap() > index);
    assert_eq!(stored["CreateIndex"].as_u64().unwrap(), index);
}
