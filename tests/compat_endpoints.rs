//! Consul endpoints a client meets beside the main ones, against a real
//! `isthmus agent --dev` process: `/v1/catalog/gateway-services/:gateway`,
//! `?peer=` naming a peer with no peering (Consul answers empty, 200),
//! `?dc=` naming another datacenter, and the Consul APIs left out.

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::process::AgentProcess;
use serde_json::{json, Value};

fn start() -> (AgentProcess, Client) {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let client = Client::new(&agent.http_addr).unwrap();
    (agent, client)
}

fn names(rows: &Value) -> Vec<(String, bool)> {
    rows.as_array()
        .unwrap_or_else(|| panic!("a list: {rows}"))
        .iter()
        .map(|row| {
            assert_eq!(row["GatewayKind"], "mesh-gateway");
            (
                row["Service"]["Name"].as_str().unwrap().to_owned(),
                row["FromWildcard"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[tokio::test]
async fn gateway_services_lists_what_a_mesh_gateway_exposes() {
    let (_agent, client) = start();
    put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "gw", "kind": "mesh-gateway", "port": 8443}),
    )
    .await;
    for name in ["web", "api"] {
        put(
            &client,
            "/v1/agent/service/register",
            json!({"name": name, "port": 8080}),
        )
        .await;
    }
    let (none, _) = get(&client, "/v1/catalog/gateway-services/gw").await;
    assert_eq!(none, json!([]), "nothing exported yet");

    put(
        &client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [
            {"Name": "web", "Consumers": [{"Peer": "east"}]}
        ]}),
    )
    .await;
    let (rows, index) = get(&client, "/v1/catalog/gateway-services/gw").await;
    assert_eq!(names(&rows), [("web".to_owned(), false)]);
    assert_eq!(rows[0]["Gateway"]["Name"], "gw");

    // A blocking query wakes when the exports change; `*` expands to every
    // service (the gateway itself is no typical service).
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            get(
                &client,
                &format!("/v1/catalog/gateway-services/gw?index={index}&wait=30s"),
            )
            .await
        })
    };
    put(
        &client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [
            {"Name": "web", "Consumers": [{"Peer": "east"}]},
            {"Name": "*", "Consumers": [{"Peer": "west"}]}
        ]}),
    )
    .await;
    let (rows, _) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the blocking query answers")
        .unwrap();
    assert_eq!(
        names(&rows),
        [("api".to_owned(), true), ("web".to_owned(), false)]
    );

    // Not a gateway, or no such service: Consul's empty answer.
    for name in ["web", "nope"] {
        let (rows, _) = get(&client, &format!("/v1/catalog/gateway-services/{name}")).await;
        assert_eq!(rows, json!([]), "{name}");
    }
}

#[tokio::test]
async fn an_unknown_peer_has_imported_nothing() {
    let (_agent, client) = start();
    put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "web", "port": 8080}),
    )
    .await;
    for path in [
        "/v1/health/service/web?peer=nope",
        "/v1/health/service/?peer=nope",
        "/v1/catalog/service/web?peer=nope",
    ] {
        let response = send(&client, Method::GET, path, None).await;
        assert_eq!(response.status.as_u16(), 200, "{path}");
        assert!(response.index.is_some_and(|i| i >= 1), "{path}: an index");
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body, json!([]), "{path}");
    }
    let (services, _) = get(&client, "/v1/catalog/services?peer=nope").await;
    assert_eq!(services, json!({}));
}

#[tokio::test]
async fn another_datacenter_and_out_of_scope_apis_answer_clearly() {
    let (_agent, client) = start();
    // The agent's own datacenter (dc1 unless configured) passes.
    let (_, _) = get(&client, "/v1/catalog/services?dc=dc1").await;
    for path in [
        "/v1/catalog/services?dc=elsewhere",
        "/v1/health/service/web?dc=elsewhere",
        "/v1/connect/intentions?dc=elsewhere",
    ] {
        let response = send(&client, Method::GET, path, None).await;
        assert_eq!(
            (response.status.as_u16(), text(&response).as_str()),
            (500, "No path to datacenter"),
            "{path}"
        );
    }
    // Agent-local endpoints ignore ?dc=, as Consul's do.
    let local = send(&client, Method::GET, "/v1/agent/self?dc=elsewhere", None).await;
    assert_eq!(local.status.as_u16(), 200);
    let kv = send(&client, Method::GET, "/v1/kv/app/config", None).await;
    assert_eq!(kv.status.as_u16(), 404);
    assert_eq!(
        text(&kv),
        "no such endpoint: /v1/kv/app/config (isthmus does not implement Consul's KV store)"
    );
}

#[tokio::test]
async fn catalog_node_lists_a_nodes_services_by_id() {
    let (_agent, client) = start();
    put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "web", "id": "web-1", "port": 8080}),
    )
    .await;
    let (me, _) = client.get_json::<Value>("/v1/agent/self").await.unwrap();
    let node = me["Config"]["NodeName"].as_str().unwrap().to_owned();
    let (answer, _) = get(&client, &format!("/v1/catalog/node/{node}")).await;
    assert_eq!(answer["Node"]["Node"], node.as_str());
    assert_eq!(answer["Services"]["web-1"]["Service"], "web");
    assert_eq!(answer["Services"]["web-1"]["Port"], 8080);
    let (unknown, _) = get(&client, "/v1/catalog/node/nope").await;
    assert_eq!(unknown, Value::Null);
}
