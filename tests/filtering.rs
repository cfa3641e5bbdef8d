//! `?filter=`, `?tag=` and `?node-meta=` on the list endpoints Consul takes
//! them on, against a real `isthmus agent --dev` process, sent as Consul
//! clients send them (URL-encoded expressions, repeated parameters).

use std::time::Duration;

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::process::AgentProcess;
use serde_json::{json, Value};

const NODE: &str = "filter-node";

/// Percent-encodes a query value as `curl --data-urlencode` does.
fn encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn filtered(path: &str, expression: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}filter={}", encode(expression))
}

fn field(list: &Value, name: &str) -> Vec<String> {
    let mut values: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("expected a list, got {list}"))
        .iter()
        .map(|item| {
            let mut value = item;
            for part in name.split('.') {
                value = &value[part];
            }
            value.as_str().unwrap_or_default().to_owned()
        })
        .collect();
    values.sort();
    values
}

fn keys(map: &Value) -> Vec<String> {
    map.as_object()
        .unwrap_or_else(|| panic!("expected a map, got {map}"))
        .keys()
        .cloned()
        .collect()
}

fn start() -> (AgentProcess, Client) {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--node-name", NODE]);
    let client = Client::new(&agent.http_addr).unwrap();
    (agent, client)
}

async fn register(client: &Client) {
    for body in [
        json!({"name": "web", "id": "web-1", "port": 8080, "tags": ["v1", "primary"],
               "meta": {"version": "1"},
               "check": {"check_id": "web-1-ttl", "ttl": "600s", "status": "passing"}}),
        json!({"name": "web", "id": "web-2", "port": 8081, "tags": ["v2"],
               "meta": {"version": "2"},
               "check": {"check_id": "web-2-ttl", "ttl": "600s"}}),
        json!({"name": "db", "id": "db-1", "port": 5432}),
        json!({"name": "web-sidecar-proxy", "id": "web-1-sidecar-proxy", "kind": "connect-proxy",
               "port": 21000,
               "proxy": {"destination_service_name": "web", "destination_service_id": "web-1",
                         "local_service_port": 8080}}),
    ] {
        let response = put(client, "/v1/agent/service/register", body).await;
        assert_eq!(response.status, 200, "{}", text(&response));
    }
    let external = json!({
        "node": "ext-1", "address": "127.0.0.9", "node_meta": {"rack": "r2"},
        "service": {"id": "web-3", "service": "web", "tags": ["V1"], "port": 9000},
        "check": {"check_id": "ext-1-alive", "name": "alive", "status": "passing",
                  "service_id": "web-3"}
    });
    let response = put(client, "/v1/catalog/register", external).await;
    assert_eq!(response.status, 200, "{}", text(&response));
}

async fn bad_request(client: &Client, path: &str) -> String {
    let response = send(client, Method::GET, path, None).await;
    assert_eq!(response.status, 400, "GET {path}: {}", text(&response));
    text(&response)
}

#[tokio::test]
async fn filter_narrows_every_list_endpoint() {
    let (_agent, client) = start();
    register(&client).await;

    let (services, _) = get(&client, &filtered("/v1/agent/services", "Service == web")).await;
    assert_eq!(keys(&services), ["web-1", "web-2"]);
    let (services, _) = get(
        &client,
        &filtered(
            "/v1/agent/services",
            "Tags contains v2 or Meta.version == \"1\"",
        ),
    )
    .await;
    assert_eq!(keys(&services), ["web-1", "web-2"]);
    let (services, _) = get(
        &client,
        &filtered("/v1/agent/services", "Kind == `connect-proxy`"),
    )
    .await;
    assert_eq!(keys(&services), ["web-1-sidecar-proxy"]);
    let (checks, _) = get(&client, &filtered("/v1/agent/checks", "Status == critical")).await;
    assert_eq!(keys(&checks), ["web-2-ttl"]);

    let (rows, _) = get(
        &client,
        &filtered("/v1/catalog/service/web", "ServiceTags contains primary"),
    )
    .await;
    assert_eq!(field(&rows, "ServiceID"), ["web-1"]);
    let (rows, _) = get(
        &client,
        &filtered("/v1/catalog/service/web", "NodeMeta.rack == r2"),
    )
    .await;
    assert_eq!(field(&rows, "ServiceID"), ["web-3"]);
    let (rows, _) = get(
        &client,
        &filtered("/v1/catalog/connect/web", "ServicePort == 21000"),
    )
    .await;
    assert_eq!(field(&rows, "ServiceID"), ["web-1-sidecar-proxy"]);
    let (nodes, _) = get(
        &client,
        &filtered("/v1/catalog/nodes", "Meta.rack is not empty"),
    )
    .await;
    assert_eq!(field(&nodes, "Node"), ["ext-1"]);
    let (node, _) = get(
        &client,
        &filtered(&format!("/v1/catalog/node-services/{NODE}"), "Port == 5432"),
    )
    .await;
    assert_eq!(field(&node["Services"], "ID"), ["db-1"]);

    let (entries, _) = get(
        &client,
        &filtered("/v1/health/service/web", "Checks.Status == critical"),
    )
    .await;
    assert_eq!(field(&entries, "Service.ID"), ["web-2"]);
    let (entries, _) = get(
        &client,
        &filtered(
            "/v1/health/service/web",
            "Service.Meta.version matches `^[12]$` and not (Node.Node != \"filter-node\")",
        ),
    )
    .await;
    assert_eq!(field(&entries, "Service.ID"), ["web-1", "web-2"]);
    let (entries, _) = get(
        &client,
        &filtered(
            "/v1/health/connect/web",
            "Service.Proxy.DestinationServiceID == \"web-1\"",
        ),
    )
    .await;
    assert_eq!(field(&entries, "Service.ID"), ["web-1-sidecar-proxy"]);
    let (checks, _) = get(
        &client,
        &filtered("/v1/health/checks/web", "ServiceID == \"web-1\""),
    )
    .await;
    assert_eq!(field(&checks, "CheckID"), ["web-1-ttl"]);
    let (checks, _) = get(
        &client,
        &filtered(
            &format!("/v1/health/node/{NODE}"),
            "CheckID matches \"^web-[0-9]-ttl$\"",
        ),
    )
    .await;
    assert_eq!(field(&checks, "CheckID"), ["web-1-ttl", "web-2-ttl"]);
    let (checks, _) = get(
        &client,
        &filtered("/v1/health/state/any", "ServiceName == web"),
    )
    .await;
    assert_eq!(
        field(&checks, "CheckID"),
        ["ext-1-alive", "web-1-ttl", "web-2-ttl"]
    );

    // An empty expression filters nothing, as in Consul.
    let (services, _) = get(&client, "/v1/agent/services?filter=").await;
    assert_eq!(services.as_object().unwrap().len(), 4);
}

#[tokio::test]
async fn tags_and_node_meta_must_all_match() {
    let (_agent, client) = start();
    register(&client).await;

    let (rows, _) = get(&client, "/v1/catalog/service/web?tag=v1").await;
    // Tags compare without regard to case, as Consul's catalog does.
    assert_eq!(field(&rows, "ServiceID"), ["web-1", "web-3"]);
    let (rows, _) = get(&client, "/v1/catalog/service/web?tag=v1&tag=primary").await;
    assert_eq!(field(&rows, "ServiceID"), ["web-1"]);
    let (rows, _) = get(&client, "/v1/catalog/service/web?node-meta=rack:r2").await;
    assert_eq!(field(&rows, "ServiceID"), ["web-3"]);
    let (entries, _) = get(&client, "/v1/health/service/web?tag=v1&passing").await;
    assert_eq!(field(&entries, "Service.ID"), ["web-1", "web-3"]);
    let (entries, _) = get(&client, "/v1/health/service/web?tag=v2&tag=v1").await;
    assert_eq!(entries, json!([]));
    let (nodes, _) = get(&client, "/v1/catalog/nodes?node-meta=rack:r2").await;
    assert_eq!(field(&nodes, "Node"), ["ext-1"]);
    // Checks by their node's meta: ext-1 has one, this agent's node none.
    let (checks, _) = get(&client, "/v1/health/state/any?node-meta=rack:r2").await;
    assert_eq!(field(&checks, "CheckID"), ["ext-1-alive"]);
    let (checks, _) = get(&client, "/v1/health/checks/web?node-meta=rack:r2").await;
    assert_eq!(field(&checks, "CheckID"), ["ext-1-alive"]);
    let (checks, _) = get(&client, "/v1/health/checks/web?node-meta=rack:r1").await;
    assert_eq!(checks, json!([]));
    let (entries, _) = get(
        &client,
        &filtered("/v1/health/service/web?tag=v1", "Service.Port == 9000"),
    )
    .await;
    assert_eq!(field(&entries, "Service.ID"), ["web-3"]);
}

#[tokio::test]
async fn bad_expressions_are_400_with_consuls_prefix() {
    let (_agent, client) = start();
    register(&client).await;
    for (path, expression) in [
        ("/v1/agent/services", "Service =="),
        ("/v1/health/service/web", "(Service.Service == web"),
        ("/v1/catalog/service/web", "ServiceTags contains"),
        ("/v1/catalog/nodes", "Node matches \"[\""),
        ("/v1/health/state/any", "Status == \"unterminated"),
        // Fits the grammar, not the data: a port is a number.
        ("/v1/agent/services", "Port == eighty"),
        // A field the answer does not have, refused whatever the data.
        ("/v1/catalog/nodes", "Nodes == x"),
    ] {
        let answer = bad_request(&client, &filtered(path, expression)).await;
        assert!(
            answer.starts_with("Failed to create boolean expression evaluator: "),
            "{path} {expression:?}: {answer}"
        );
    }
    let typo = bad_request(
        &client,
        &filtered("/v1/health/service/nothing-here", "Servise.Port == 1"),
    )
    .await;
    assert_eq!(
        typo,
        "Failed to create boolean expression evaluator: Selector \"Servise\" is not valid"
    );
    let long = vec!["Port == 1"; 600].join(" or ");
    let answer = bad_request(&client, &filtered("/v1/agent/checks", &long)).await;
    assert!(answer.contains("over the limit of 4096"), "{answer}");
    let deep = format!("{}Port == 1{}", "(".repeat(50), ")".repeat(50));
    let answer = bad_request(&client, &filtered("/v1/agent/services", &deep)).await;
    assert!(answer.contains("more than 32 levels"), "{answer}");
}

#[tokio::test]
async fn a_filtered_blocking_query_wakes_with_the_filtered_answer() {
    let (_agent, client) = start();
    register(&client).await;
    let path = filtered("/v1/health/service/web", "Service.Tags contains canary");
    let (empty, index) = get(&client, &path).await;
    assert_eq!(empty, json!([]));

    let blocked = format!("{path}&index={index}&wait=30s");
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, &blocked).await })
    };
    let response = put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "web", "id": "web-canary", "port": 8090, "tags": ["canary"]}),
    )
    .await;
    assert_eq!(response.status, 200);
    let (entries, woke_at) = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("the blocking query answers after the write")
        .unwrap();
    assert!(woke_at > index, "{woke_at} > {index}");
    assert_eq!(field(&entries, "Service.ID"), ["web-canary"]);
}
