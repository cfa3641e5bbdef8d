//! `PUT /v1/catalog/register` and `/v1/catalog/deregister` for a node other
//! than the agent's (Consul's external nodes), sent the way client libraries
//! send them: lowercase and snake_case keys, no Content-Type.

use std::time::{Duration, Instant};

use isthmus_tests::api::get;
use isthmus_tests::TestAgent;
use serde_json::{json, Value};

async fn ok(agent: &TestAgent, path: &str, body: Value) {
    let (status, text) = isthmus_tests::api::raw_json(agent.addr(), "PUT", path, &body).await;
    assert_eq!((status, text.trim()), (200, "true"), "PUT {path} {body}");
}

fn external_registration() -> Value {
    json!({
        "node": "ext-db",
        "address": "10.1.2.3",
        "node_meta": {"external-node": "true"},
        "tagged_addresses": {"lan": "10.1.2.3"},
        "service": {"id": "db-1", "service": "db", "tags": ["primary"], "port": 5432,
                    "address": "10.1.2.4", "meta": {"Engine": "pg"}},
        "check": {"check_id": "db-alive", "name": "db alive", "status": "warning",
                  "output": "as given", "service_id": "db-1",
                  "definition": {"tcp": "10.1.2.4:5432", "interval": "1s"}},
        "checks": [{"check_id": "node-ok", "name": "node ok", "status": "passing"}]
    })
}

#[tokio::test]
async fn an_external_node_registers_shows_up_and_deregisters() {
    let agent = TestAgent::start().await;
    ok(&agent, "/v1/catalog/register", external_registration()).await;

    let (nodes, _) = get(&agent.client, "/v1/catalog/nodes").await;
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ext-db", "test-node"], "{nodes}");
    let ext = &nodes[0];
    assert_eq!(ext["Address"], "10.1.2.3");
    assert_eq!(ext["Datacenter"], "dc1");
    assert_eq!(ext["Meta"]["external-node"], "true");
    assert_eq!(ext["TaggedAddresses"]["lan"], "10.1.2.3");

    let (rows, _) = get(&agent.client, "/v1/catalog/service/db").await;
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["Node"], "ext-db");
    assert_eq!(rows[0]["Address"], "10.1.2.3");
    assert_eq!(rows[0]["ServiceID"], "db-1");
    assert_eq!(rows[0]["ServiceAddress"], "10.1.2.4");
    assert_eq!(rows[0]["ServicePort"], 5432);
    assert_eq!(rows[0]["ServiceTags"], json!(["primary"]));
    assert_eq!(rows[0]["ServiceMeta"]["Engine"], "pg");
    assert_eq!(rows[0]["NodeMeta"]["external-node"], "true");

    let (services, _) = get(&agent.client, "/v1/catalog/services").await;
    assert_eq!(services["db"], json!(["primary"]), "{services}");

    // The checks hold the status they were given: nobody runs them (the TCP
    // target does not exist), and they are not this agent's checks.
    let (entries, _) = get(&agent.client, "/v1/health/service/db").await;
    assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
    assert_eq!(entries[0]["Node"]["Node"], "ext-db");
    assert_eq!(entries[0]["Service"]["ID"], "db-1");
    let checks = entries[0]["Checks"].as_array().unwrap();
    let ids: Vec<&str> = checks
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["db-alive", "node-ok"], "{entries}");
    assert_eq!(checks[0]["Status"], "warning");
    assert_eq!(checks[0]["Output"], "as given");
    assert_eq!(checks[0]["Node"], "ext-db");
    assert_eq!(checks[0]["ServiceName"], "db");
    assert_eq!(checks[1]["Status"], "passing");
    let (passing, _) = get(&agent.client, "/v1/health/service/db?passing").await;
    assert_eq!(passing, json!([]), "a warning instance is not passing");
    let (agent_checks, _) = get(&agent.client, "/v1/agent/checks").await;
    assert_eq!(agent_checks, json!({}));
    let (agent_services, _) = get(&agent.client, "/v1/agent/services").await;
    assert_eq!(agent_services, json!({}));

    // Registering again updates the check in place, still as given.
    let mut again = external_registration();
    again["check"]["status"] = json!("passing");
    again["skip_node_update"] = json!(true);
    again["address"] = json!("");
    ok(&agent, "/v1/catalog/register", again).await;
    let (passing, _) = get(&agent.client, "/v1/health/service/db?passing").await;
    assert_eq!(passing.as_array().unwrap().len(), 1, "{passing}");
    assert_eq!(passing[0]["Node"]["Address"], "10.1.2.3", "node kept");

    // Deregistering the service removes it and its checks, not the node.
    ok(
        &agent,
        "/v1/catalog/deregister",
        json!({"node": "ext-db", "service_id": "db-1"}),
    )
    .await;
    let (rows, _) = get(&agent.client, "/v1/catalog/service/db").await;
    assert_eq!(rows, json!([]));
    let (entries, _) = get(&agent.client, "/v1/health/service/db").await;
    assert_eq!(entries, json!([]));
    let (nodes, _) = get(&agent.client, "/v1/catalog/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");

    // Without ServiceID or CheckID the node goes with everything on it.
    ok(&agent, "/v1/catalog/deregister", json!({"node": "ext-db"})).await;
    let (nodes, _) = get(&agent.client, "/v1/catalog/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes[0]["Node"], "test-node");
    // An unknown node deregisters as a no-op, as in Consul.
    ok(&agent, "/v1/catalog/deregister", json!({"node": "ext-db"})).await;
}

#[tokio::test]
async fn bad_registrations_answer_consuls_errors() {
    let agent = TestAgent::start().await;
    let cases = [
        (
            "/v1/catalog/register",
            json!({"address": "10.0.0.1"}),
            400,
            "Missing node name",
        ),
        (
            "/v1/catalog/register",
            json!({"node": "ext"}),
            400,
            "Missing node address",
        ),
        (
            "/v1/catalog/register",
            json!({"node": "ext", "address": "10.0.0.1", "service": {"id": "x", "port": 1}}),
            400,
            "Missing service name",
        ),
        (
            "/v1/catalog/register",
            json!({"node": "ext", "address": "10.0.0.1", "datacenter": "dc2"}),
            500,
            "No path to datacenter",
        ),
        (
            "/v1/catalog/register?dc=dc2",
            json!({"node": "ext", "address": "10.0.0.1"}),
            500,
            "No path to datacenter",
        ),
        (
            "/v1/catalog/register",
            json!({"node": "ext", "address": "10.0.0.1",
                   "check": {"check_id": "c", "service_id": "nope"}}),
            500,
            "Missing service registration",
        ),
        (
            "/v1/catalog/deregister",
            json!({"service_id": "x"}),
            400,
            "Missing node name",
        ),
        (
            "/v1/catalog/deregister?dc=dc2",
            json!({"node": "ext"}),
            500,
            "No path to datacenter",
        ),
    ];
    for (path, body, status, message) in cases {
        let answer = isthmus_tests::api::raw_json(agent.addr(), "PUT", path, &body).await;
        assert_eq!(answer.0, status, "PUT {path} {body}: {}", answer.1);
        assert!(
            answer.1.contains(message),
            "PUT {path} {body}: {}",
            answer.1
        );
    }
    // None of them wrote anything.
    let (nodes, _) = get(&agent.client, "/v1/catalog/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    // The agent's own node is written through the agent endpoints.
    let (status, text) = isthmus_tests::api::raw_json(
        agent.addr(),
        "PUT",
        "/v1/catalog/register",
        &json!({"node": "test-node", "address": "127.0.0.1"}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn a_blocked_catalog_query_wakes_on_register() {
    let agent = TestAgent::start().await;
    let (empty, index) = get(&agent.client, "/v1/catalog/service/db").await;
    assert_eq!(empty, json!([]));

    let client = agent.client.clone();
    let blocked = tokio::spawn(async move {
        let started = Instant::now();
        let answer = get(
            &client,
            &format!("/v1/catalog/service/db?index={index}&wait=60s"),
        )
        .await;
        (answer, started.elapsed())
    });
    ok(&agent, "/v1/catalog/register", external_registration()).await;

    let ((rows, new_index), elapsed) = tokio::time::timeout(Duration::from_secs(20), blocked)
        .await
        .expect("the blocked query returned")
        .unwrap();
    assert!(new_index > index);
    assert_eq!(rows[0]["ServiceID"], "db-1", "{rows}");
    assert!(elapsed < Duration::from_secs(20), "woke on the change");
}

#[tokio::test]
async fn node_reads_show_an_external_node() {
    let agent = TestAgent::start().await;
    ok(&agent, "/v1/catalog/register", external_registration()).await;

    let (checks, _) = get(&agent.client, "/v1/health/node/EXT-DB").await;
    let ids: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["db-alive", "node-ok"], "{checks}");

    let (warning, _) = get(&agent.client, "/v1/health/state/warning").await;
    assert_eq!(warning[0]["CheckID"], "db-alive", "{warning}");
    assert_eq!(warning[0]["Node"], "ext-db");

    let (service_checks, _) = get(&agent.client, "/v1/health/checks/db").await;
    assert_eq!(
        service_checks.as_array().unwrap().len(),
        1,
        "{service_checks}"
    );
    assert_eq!(service_checks[0]["CheckID"], "db-alive");

    let (services, _) = get(&agent.client, "/v1/catalog/node-services/ext-db").await;
    assert_eq!(services["Node"]["Address"], "10.1.2.3", "{services}");
    assert_eq!(services["Services"][0]["ID"], "db-1");

    ok(
        &agent,
        "/v1/catalog/deregister",
        json!({"node": "ext-db", "check_id": "node-ok"}),
    )
    .await;
    let (checks, _) = get(&agent.client, "/v1/health/node/ext-db").await;
    assert_eq!(checks.as_array().unwrap().len(), 1, "{checks}");
    assert_eq!(checks[0]["CheckID"], "db-alive");
}
