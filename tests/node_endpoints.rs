//! `/v1/health/state/:state`, `/v1/health/node/:node`,
//! `/v1/catalog/node-services/:node` and `/v1/status/peers`, driven over
//! real HTTP against an in-process agent the way Consul clients call them.

use http::Method;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::TestAgent;
use serde_json::{json, Value};

fn ids(checks: &Value, field: &str) -> Vec<String> {
    checks
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {checks}"))
        .iter()
        .map(|c| c[field].as_str().unwrap().to_owned())
        .collect()
}

async fn register_web(agent: &TestAgent) {
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"name": "web", "id": "web-1", "port": 8080, "tags": ["v1"],
               "checks": [{"ttl": "60s", "check_id": "web-ttl"},
                          {"ttl": "60s", "check_id": "web-ok", "status": "passing"}]}),
    )
    .await;
}

#[tokio::test]
async fn health_state_lists_checks_by_status() {
    let agent = TestAgent::start().await;
    register_web(&agent).await;

    let (critical, _) = get(&agent.client, "/v1/health/state/critical").await;
    assert!(ids(&critical, "CheckID").contains(&"web-ttl".to_owned()));
    assert!(!ids(&critical, "CheckID").contains(&"web-ok".to_owned()));
    let web_ttl = critical
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "web-ttl")
        .unwrap();
    assert_eq!(web_ttl["Node"], "test-node");
    assert_eq!(web_ttl["ServiceID"], "web-1");
    assert_eq!(web_ttl["ServiceName"], "web");
    assert_eq!(web_ttl["Status"], "critical");

    let (passing, _) = get(&agent.client, "/v1/health/state/passing").await;
    assert!(ids(&passing, "CheckID").contains(&"web-ok".to_owned()));
    assert!(passing
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["Status"] == "passing"));

    let (any, _) = get(&agent.client, "/v1/health/state/any").await;
    for id in ["web-ttl", "web-ok"] {
        assert!(ids(&any, "CheckID").contains(&id.to_owned()), "{any}");
    }

    put(&agent.client, "/v1/agent/check/warn/web-ttl", json!(null)).await;
    let (warning, _) = get(&agent.client, "/v1/health/state/warning").await;
    assert_eq!(ids(&warning, "CheckID"), ["web-ttl"]);
    // Consul's status index is case-insensitive.
    let (upper, _) = get(&agent.client, "/v1/health/state/WARNING").await;
    assert_eq!(ids(&upper, "CheckID"), ["web-ttl"]);

    // A state that is none of Consul's matches nothing; none at all is a 400.
    let (bogus, _) = get(&agent.client, "/v1/health/state/bogus").await;
    assert_eq!(bogus, json!([]));
    let missing = send(&agent.client, Method::GET, "/v1/health/state/", None).await;
    assert_eq!(missing.status, 400);
    assert_eq!(text(&missing), "Missing check state");
}

#[tokio::test]
async fn health_state_blocks_until_a_check_changes() {
    let agent = TestAgent::start().await;
    register_web(&agent).await;
    let (passing, index) = get(&agent.client, "/v1/health/state/passing").await;
    assert!(!ids(&passing, "CheckID").contains(&"web-ttl".to_owned()));

    let client = agent.client.clone();
    let waiter = tokio::spawn(async move {
        get(
            &client,
            &format!("/v1/health/state/passing?index={index}&wait=15s"),
        )
        .await
    });
    put(&agent.client, "/v1/agent/check/pass/web-ttl", json!(null)).await;
    let (after, after_index) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the blocking query wakes")
        .unwrap();
    assert!(after_index > index);
    assert!(ids(&after, "CheckID").contains(&"web-ttl".to_owned()));
}

#[tokio::test]
async fn health_node_lists_the_nodes_checks_and_blocks() {
    let agent = TestAgent::start().await;
    register_web(&agent).await;
    put(
        &agent.client,
        "/v1/agent/check/register",
        json!({"name": "disk", "ttl": "60s"}),
    )
    .await;

    let (checks, index) = get(&agent.client, "/v1/health/node/test-node").await;
    let found = ids(&checks, "CheckID");
    for id in ["disk", "web-ok", "web-ttl"] {
        assert!(found.contains(&id.to_owned()), "{checks}");
    }
    assert!(checks
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["Node"] == "test-node"));
    let disk = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "disk")
        .unwrap();
    assert_eq!(disk["ServiceID"], "");

    // Node names are case-insensitive in Consul's catalog.
    let (upper, _) = get(&agent.client, "/v1/health/node/TEST-NODE").await;
    assert_eq!(ids(&upper, "CheckID"), found);

    let (unknown, _) = get(&agent.client, "/v1/health/node/elsewhere").await;
    assert_eq!(unknown, json!([]));
    let missing = send(&agent.client, Method::GET, "/v1/health/node/", None).await;
    assert_eq!(missing.status, 400);
    assert_eq!(text(&missing), "Missing node name");

    let client = agent.client.clone();
    let waiter = tokio::spawn(async move {
        get(
            &client,
            &format!("/v1/health/node/test-node?index={index}&wait=15s"),
        )
        .await
    });
    put(
        &agent.client,
        "/v1/agent/check/deregister/disk",
        json!(null),
    )
    .await;
    let (after, _) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the blocking query wakes")
        .unwrap();
    assert!(!ids(&after, "CheckID").contains(&"disk".to_owned()));
}

#[tokio::test]
async fn node_services_answers_consuls_shape() {
    let agent = TestAgent::start().await;
    register_web(&agent).await;

    let (body, index) = get(&agent.client, "/v1/catalog/node-services/test-node").await;
    assert_eq!(body["Node"]["Node"], "test-node");
    assert_eq!(body["Node"]["Datacenter"], "dc1");
    assert!(body["Node"]["ID"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(body["Node"]["Address"].is_string());
    let services = body["Services"].as_array().unwrap();
    let web = services
        .iter()
        .find(|s| s["ID"] == "web-1")
        .expect("web-1 listed");
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Port"], 8080);
    assert_eq!(web["Tags"], json!(["v1"]));

    // An unknown node: 200 with Consul's zero value.
    let (unknown, _) = get(&agent.client, "/v1/catalog/node-services/elsewhere").await;
    assert_eq!(unknown, json!({"Node": null, "Services": null}));
    let missing = send(
        &agent.client,
        Method::GET,
        "/v1/catalog/node-services/",
        None,
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(text(&missing), "Missing node name");

    let client = agent.client.clone();
    let waiter = tokio::spawn(async move {
        get(
            &client,
            &format!("/v1/catalog/node-services/test-node?index={index}&wait=15s"),
        )
        .await
    });
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"name": "api", "port": 9090}),
    )
    .await;
    let (after, _) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the blocking query wakes")
        .unwrap();
    assert!(after["Services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["ID"] == "api"));
}

#[tokio::test]
async fn status_peers_is_the_leader() {
    let agent = TestAgent::start().await;
    let leader = send(&agent.client, Method::GET, "/v1/status/leader", None).await;
    assert_eq!(leader.status, 200);
    let leader: Value = serde_json::from_slice(&leader.body).unwrap();
    let peers = send(&agent.client, Method::GET, "/v1/status/peers", None).await;
    assert_eq!(peers.status, 200, "{}", text(&peers));
    let peers: Value = serde_json::from_slice(&peers.body).unwrap();
    assert_eq!(peers, json!([leader]));
    let addr: std::net::SocketAddr = peers[0].as_str().unwrap().parse().unwrap();
    assert_eq!(addr, agent.addr());
}

#[tokio::test]
async fn agent_self_has_consuls_config_and_stats() {
    let agent = TestAgent::start().await;
    register_web(&agent).await;
    let response = send(&agent.client, Method::GET, "/v1/agent/self", None).await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let body: Value = serde_json::from_slice(&response.body).unwrap();

    let config = &body["Config"];
    assert_eq!(config["Datacenter"], "dc1");
    assert_eq!(config["PrimaryDatacenter"], "dc1");
    assert_eq!(config["NodeName"], "test-node");
    assert!(config["NodeID"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(config["Server"], true);
    assert!(config["Version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(config["Revision"].is_string());

    let leader = send(&agent.client, Method::GET, "/v1/status/leader", None).await;
    let leader: Value = serde_json::from_slice(&leader.body).unwrap();
    let stats = &body["Stats"];
    assert_eq!(stats["consul"]["leader_addr"], leader);
    assert_eq!(stats["consul"]["server"], "true");
    assert_eq!(stats["consul"]["leader"], "true");
    // Consul's Stats values are all strings; tools parse them as such.
    for section in ["agent", "build", "consul", "runtime"] {
        let fields = stats[section]
            .as_object()
            .unwrap_or_else(|| panic!("Stats.{section}"));
        assert!(!fields.is_empty());
        for (key, value) in fields {
            assert!(value.is_string(), "Stats.{section}.{key} = {value}");
        }
    }
    let count = |key: &str| {
        stats["agent"][key]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    };
    assert!(count("services") >= 1);
    assert!(count("checks") >= 2);
    assert!(count("check_ttls") >= 2);
    assert_eq!(stats["runtime"]["os"], std::env::consts::OS);
    assert!(
        stats["runtime"]["cpu_count"]
            .as_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
            >= 1
    );

    // What existed before stays: Member and isthmus's own section.
    assert_eq!(body["Member"]["Name"], "test-node");
    assert_eq!(body["Isthmus"]["ClusterName"], "dc1");
}

/// A fresh `agent --dev` has no local services or checks, as Consul's dev
/// agent: its in-process mesh gateway is in the catalog (where peering and
/// the demo look for it), not among the agent's own services.
#[tokio::test]
async fn dev_agent_lists_no_local_services_but_catalogs_its_gateway() {
    let agent = isthmus_tests::process::AgentProcess::spawn(&["--dev"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    isthmus_tests::eventually("the in-process gateway registered and passing", || async {
        let (entries, _) = get(&client, "/v1/health/service/mesh-gateway?passing").await;
        (entries.as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;

    let (services, services_index) = get(&client, "/v1/agent/services").await;
    assert_eq!(services, json!({}));
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert_eq!(checks, json!({}));
    let (catalog, _) = get(&client, "/v1/catalog/services").await;
    assert!(catalog.get("mesh-gateway").is_some(), "{catalog}");
    let response = send(&client, Method::GET, "/v1/agent/self", None).await;
    let me: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(me["Stats"]["agent"]["services"], "0");
    assert_eq!(me["Stats"]["agent"]["checks"], "0");

    // A service registered with the agent is listed, and a blocking query
    // on the list wakes for it.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move {
            get(
                &client,
                &format!("/v1/agent/services?index={services_index}&wait=15s"),
            )
            .await
        })
    };
    put(
        &client,
        "/v1/agent/service/register",
        json!({"name": "web", "port": 8080, "check": {"ttl": "60s"}}),
    )
    .await;
    let (after, _) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the blocking query wakes")
        .unwrap();
    assert_eq!(
        after.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["web"]
    );
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert_eq!(
        checks.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["service:web"]
    );
    assert!(agent.terminate().success());
}

#[tokio::test]
async fn catalog_connect_lists_the_sidecars_in_front_of_a_service_and_ingress_is_empty() {
    let agent = TestAgent::start().await;
    register_web(&agent).await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Kind": "connect-proxy", "Name": "web-sidecar-proxy", "ID": "web-1-sidecar-proxy",
               "Port": 21000, "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1"}}),
    )
    .await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Kind": "connect-proxy", "Name": "db-sidecar-proxy", "ID": "db-1-sidecar-proxy",
               "Port": 21001, "Proxy": {"DestinationServiceName": "db"}}),
    )
    .await;

    let (rows, index) = get(&agent.client, "/v1/catalog/connect/web").await;
    assert_eq!(ids(&rows, "ServiceID"), ["web-1-sidecar-proxy"]);
    assert_eq!(rows[0]["ServiceKind"], "connect-proxy");
    assert_eq!(rows[0]["ServiceProxy"]["DestinationServiceName"], "web");
    assert_eq!(rows[0]["ServicePort"], 21000);
    assert!(index > 0);
    let (none, _) = get(&agent.client, "/v1/catalog/connect/nothing").await;
    assert_eq!(none, json!([]));

    let (ingress, index) = get(&agent.client, "/v1/health/ingress/web").await;
    assert_eq!(ingress, json!([]));
    assert!(index > 0);

    // health/checks/<service> finds its checks by index, in CheckID order.
    let (checks, _) = get(&agent.client, "/v1/health/checks/web").await;
    assert_eq!(ids(&checks, "CheckID"), ["web-ok", "web-ttl"]);
}

#[tokio::test]
async fn acl_endpoints_answer_as_consul_does_with_acls_disabled() {
    let agent = TestAgent::start().await;
    for (method, path) in [
        (Method::PUT, "/v1/agent/token/default"),
        (Method::PUT, "/v1/agent/token/agent"),
        (Method::PUT, "/v1/acl/bootstrap"),
        (Method::GET, "/v1/acl/tokens"),
        (Method::GET, "/v1/acl/token/self"),
        (Method::GET, "/v1/acl/policies"),
    ] {
        let response = send(
            &agent.client,
            method.clone(),
            path,
            Some(json!({"Token": "x"})),
        )
        .await;
        assert_eq!(response.status, 401, "{method} {path}");
        assert_eq!(text(&response), "ACL support disabled", "{method} {path}");
    }
}
