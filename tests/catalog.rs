//! Registration, health checks run by the agent, and the catalog/health
//! answers, driven over HTTP against a real agent.

use http::Method;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::{eventually, TestAgent, TestHttpServer};
use serde_json::{json, Value};

async fn health(agent: &TestAgent, service: &str) -> Vec<Value> {
    let (entries, _) = get(&agent.client, &format!("/v1/health/service/{service}")).await;
    entries.as_array().unwrap().clone()
}

async fn check_status(agent: &TestAgent, service: &str) -> Option<(String, String)> {
    let entries = health(agent, service).await;
    // The instance's own check, not its node's `serfHealth`.
    let check = entries
        .first()?
        .get("Checks")?
        .as_array()?
        .iter()
        .find(|c| c["ServiceID"] != "")?;
    Some((
        check["Status"].as_str()?.to_owned(),
        check["Output"].as_str()?.to_owned(),
    ))
}

#[tokio::test]
async fn ttl_check_starts_critical_passes_and_expires() {
    let agent = TestAgent::start().await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 8080, "Tags": ["v1"], "Meta": {"team": "a"}, "Check": {"TTL": "1s"}}),
    )
    .await;

    let (status, _) = check_status(&agent, "web").await.unwrap();
    assert_eq!(status, "critical", "checks start critical like Consul's");
    let (passing, _) = get(&agent.client, "/v1/health/service/web?passing").await;
    assert_eq!(passing, json!([]));

    put(
        &agent.client,
        "/v1/agent/check/pass/service:web?note=all%20good",
        json!(null),
    )
    .await;
    let (passing, index) = get(&agent.client, "/v1/health/service/web?passing").await;
    let entry = &passing[0];
    assert_eq!(entry["Service"]["ID"], "web");
    assert_eq!(entry["Service"]["Service"], "web");
    assert_eq!(entry["Service"]["Port"], 8080);
    assert_eq!(entry["Service"]["Tags"], json!(["v1"]));
    assert_eq!(entry["Service"]["Meta"], json!({"team": "a"}));
    assert_eq!(entry["Node"]["Node"], "test-node");
    assert_eq!(entry["Node"]["Datacenter"], "dc1");
    // The node's liveness check, then the instance's own.
    assert_eq!(entry["Checks"][0]["CheckID"], "serfHealth");
    assert_eq!(entry["Checks"][0]["Status"], "passing");
    assert_eq!(entry["Checks"][1]["CheckID"], "service:web");
    assert_eq!(entry["Checks"][1]["Name"], "Service 'web' check");
    assert_eq!(entry["Checks"][1]["Type"], "ttl");
    assert_eq!(entry["Checks"][1]["Output"], "all good");

    // Nobody refreshes the TTL: a blocking query wakes when it expires.
    let (after, _) = get(
        &agent.client,
        &format!("/v1/health/service/web?index={index}&wait=15s"),
    )
    .await;
    assert_eq!(after[0]["Checks"][1]["Status"], "critical");
    assert!(after[0]["Checks"][1]["Output"]
        .as_str()
        .unwrap()
        .contains("TTL expired"));
}

#[tokio::test]
async fn http_check_follows_a_live_server() {
    let agent = TestAgent::start().await;
    let server = TestHttpServer::start().await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "api", "ID": "api-1", "Port": server.addr.port(),
               "Check": {"HTTP": format!("http://{}/health", server.addr), "Interval": "100ms", "Timeout": "1s"}}),
    )
    .await;
    let output = eventually("HTTP check passing", || async {
        check_status(&agent, "api")
            .await
            .filter(|(s, _)| s == "passing")
            .map(|(_, o)| o)
    })
    .await;
    assert!(output.contains("200 OK"), "{output}");

    server.stop().await;
    eventually("HTTP check critical after the server stops", || async {
        check_status(&agent, "api")
            .await
            .filter(|(s, _)| s == "critical")
    })
    .await;
}

#[tokio::test]
async fn tcp_check_and_deregister_after_critical() {
    let agent = TestAgent::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "db", "Port": addr.port(), "Check": {"TCP": addr.to_string(), "Interval": "100ms"}}),
    )
    .await;
    eventually("TCP check passing", || async {
        check_status(&agent, "db")
            .await
            .filter(|(s, _)| s == "passing")
    })
    .await;

    // A service whose TTL check stays critical is removed after the grace period.
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "flaky", "Check": {"TTL": "200ms", "DeregisterCriticalServiceAfter": "300ms"}}),
    )
    .await;
    eventually("critical service deregistered", || async {
        health(&agent, "flaky").await.is_empty().then_some(())
    })
    .await;
    let (services, _) = get(&agent.client, "/v1/agent/services").await;
    assert!(services.get("flaky").is_none());
    assert!(services.get("db").is_some());
}

#[tokio::test]
async fn sidecars_answer_connect_health_and_catalog_shapes_match_consul() {
    let agent = TestAgent::start().await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["b", "a"], "Check": {"TTL": "30s", "Status": "passing"}}),
    )
    .await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web-sidecar-proxy", "ID": "web-1-sidecar", "Kind": "connect-proxy", "Port": 21000,
               "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1", "LocalServicePort": 8080},
               "Checks": [{"TTL": "30s", "Status": "passing"}, {"Name": "alias", "TTL": "30s", "Status": "warning"}]}),
    )
    .await;

    let (connect, _) = get(&agent.client, "/v1/health/connect/web").await;
    assert_eq!(connect.as_array().unwrap().len(), 1);
    assert_eq!(connect[0]["Service"]["Kind"], "connect-proxy");
    assert_eq!(
        connect[0]["Service"]["Proxy"]["DestinationServiceName"],
        "web"
    );
    let ids: Vec<&str> = connect[0]["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    // The node's liveness check first, as Consul lists it.
    assert_eq!(
        ids,
        [
            "serfHealth",
            "service:web-1-sidecar:1",
            "service:web-1-sidecar:2"
        ]
    );
    let (passing, _) = get(&agent.client, "/v1/health/connect/web?passing").await;
    assert_eq!(passing, json!([]), "a warning check is not passing");

    let (names, _) = get(&agent.client, "/v1/catalog/services").await;
    // `consul` is the agent's own service, as Consul lists its servers.
    assert_eq!(
        names,
        json!({"consul": [], "web": ["a", "b"], "web-sidecar-proxy": []})
    );
    let (rows, _) = get(&agent.client, "/v1/catalog/service/web").await;
    assert_eq!(rows[0]["ServiceID"], "web-1");
    assert_eq!(rows[0]["ServiceName"], "web");
    assert_eq!(rows[0]["ServicePort"], 8080);
    assert_eq!(rows[0]["Node"], "test-node");
    assert_eq!(
        rows[0]["ServiceWeights"],
        json!({"Passing": 1, "Warning": 1})
    );
    let (agent_services, _) = get(&agent.client, "/v1/agent/services").await;
    assert_eq!(agent_services["web-1"]["Service"], "web");
    let (checks, _) = get(&agent.client, "/v1/agent/checks").await;
    assert_eq!(checks["service:web-1"]["Status"], "passing");

    // Deregistering removes the service and its checks.
    put(
        &agent.client,
        "/v1/agent/service/deregister/web-1-sidecar",
        json!(null),
    )
    .await;
    let (connect, _) = get(&agent.client, "/v1/health/connect/web").await;
    assert_eq!(connect, json!([]));
    let (checks, _) = get(&agent.client, "/v1/agent/checks").await;
    assert_eq!(checks.as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_changes_nothing() {
    let agent = TestAgent::start().await;
    let (_, before) = get(&agent.client, "/v1/agent/services").await;
    let cases: &[(Value, u16, &str)] = &[
        (json!({"Port": 80}), 400, "Missing service name"),
        (
            json!({"Name": "web", "Prot": 80}),
            400,
            "unknown field `Prot`",
        ),
        (
            json!({"Name": "web", "Port": "eighty"}),
            400,
            "Body decoding failed",
        ),
        (json!({"Name": "we b"}), 400, "service name"),
        (
            json!({"Name": "web", "Check": {"TTL": "10s", "HTTP": "http://x/"}}),
            400,
            "Check: must define exactly one of TTL, HTTP, TCP or AliasService",
        ),
        (
            json!({"Name": "web", "Check": {"HTTP": "http://127.0.0.1:1/"}}),
            400,
            "Check: Interval is required for HTTP checks",
        ),
        (
            json!({"Name": "web", "Checks": [{"TTL": "10s"}, {"TCP": "x:1", "Interval": "soon"}]}),
            400,
            "Checks[1].Interval: invalid duration",
        ),
        (
            json!({"Name": "web", "Check": {"HTTP": "https://x/", "Interval": "1s"}}),
            400,
            "must be an absolute http:// URL",
        ),
        (
            json!({"Name": "web", "Kind": "connect-proxy", "Port": 1}),
            400,
            "Proxy.DestinationServiceName must be set",
        ),
        (
            json!({"Name": "web", "Kind": "ingress"}),
            400,
            "invalid service kind",
        ),
        (
            json!({"Name": "web", "Check": {"TTL": "1s", "Status": "great"}}),
            400,
            "Check.Status",
        ),
    ];
    for (body, status, message) in cases {
        let response = send(
            &agent.client,
            Method::PUT,
            "/v1/agent/service/register",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            response.status.as_u16(),
            *status,
            "{body}: {}",
            text(&response)
        );
        assert!(
            text(&response).contains(message),
            "{body}: expected {message:?} in {:?}",
            text(&response)
        );
    }
    let malformed = agent
        .client
        .send(
            Method::PUT,
            "/v1/agent/service/register",
            Some(bytes::Bytes::from_static(b"{\"Name\":")),
        )
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);
    assert!(text(&malformed).starts_with("Body decoding failed"));

    let huge = bytes::Bytes::from(vec![b' '; 5 * 1024 * 1024]);
    let too_big = agent
        .client
        .send(Method::PUT, "/v1/agent/service/register", Some(huge))
        .await
        .unwrap();
    assert_eq!(too_big.status, 413, "{}", text(&too_big));

    let wrong_method = send(
        &agent.client,
        Method::GET,
        "/v1/agent/service/register",
        None,
    )
    .await;
    assert_eq!(wrong_method.status, 405);
    let unknown = send(
        &agent.client,
        Method::PUT,
        "/v1/agent/service/deregister/nope",
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(text(&unknown).contains("Unknown service ID \"nope\""));
    let unknown_check = send(
        &agent.client,
        Method::PUT,
        "/v1/agent/check/pass/nope",
        None,
    )
    .await;
    assert_eq!(unknown_check.status, 404);

    // Nothing above was written.
    let (services, after) = get(&agent.client, "/v1/agent/services").await;
    assert_eq!(services, json!({}));
    assert_eq!(before, after);

    // TTL updates only apply to TTL checks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "db", "Check": {"TCP": addr.to_string(), "Interval": "1s"}}),
    )
    .await;
    let not_ttl = send(
        &agent.client,
        Method::PUT,
        "/v1/agent/check/pass/service:db",
        None,
    )
    .await;
    assert_eq!(not_ttl.status, 400);
    assert!(text(&not_ttl).contains("does not have associated TTL"));
}

#[tokio::test]
async fn re_registering_keeps_check_status_and_drops_removed_checks() {
    let agent = TestAgent::start().await;
    let two_checks = json!({"Name": "web", "Checks": [
        {"CheckID": "alive", "TTL": "30s"},
        {"CheckID": "ready", "TTL": "30s"}
    ]});
    put(&agent.client, "/v1/agent/service/register", two_checks).await;
    put(&agent.client, "/v1/agent/check/pass/alive", json!(null)).await;

    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 81, "Checks": [{"CheckID": "alive", "TTL": "30s"}]}),
    )
    .await;
    let (checks, _) = get(&agent.client, "/v1/agent/checks").await;
    assert_eq!(checks.as_object().unwrap().len(), 1, "{checks}");
    assert_eq!(
        checks["alive"]["Status"], "passing",
        "status survives re-registration"
    );
    let dropped = send(
        &agent.client,
        Method::PUT,
        "/v1/agent/check/pass/ready",
        None,
    )
    .await;
    assert_eq!(dropped.status, 404);
    let (services, _) = get(&agent.client, "/v1/agent/services").await;
    assert_eq!(services["web"]["Port"], 81);
}

#[tokio::test]
async fn a_check_failed_through_the_api_also_deregisters_its_service() {
    let agent = TestAgent::start().await;
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "batch", "Check": {"TTL": "1h", "Status": "passing", "DeregisterCriticalServiceAfter": "200ms"}}),
    )
    .await;
    put(
        &agent.client,
        "/v1/agent/check/fail/service:batch",
        json!(null),
    )
    .await;
    eventually("service failed via the API deregistered", || async {
        health(&agent, "batch").await.is_empty().then_some(())
    })
    .await;

    // Recovering before the deadline cancels the deregistration.
    put(
        &agent.client,
        "/v1/agent/service/register",
        json!({"Name": "steady", "Check": {"TTL": "1h", "Status": "passing", "DeregisterCriticalServiceAfter": "300ms"}}),
    )
    .await;
    put(
        &agent.client,
        "/v1/agent/check/fail/service:steady",
        json!(null),
    )
    .await;
    put(
        &agent.client,
        "/v1/agent/check/pass/service:steady",
        json!(null),
    )
    .await;
    // Outlast the deadline, observed through a blocking query that times out.
    let (_, index) = get(&agent.client, "/v1/health/service/steady").await;
    let (entries, _) = get(
        &agent.client,
        &format!("/v1/health/service/steady?index={index}&wait=600ms"),
    )
    .await;
    assert_eq!(entries[0]["Checks"][1]["Status"], "passing");
    assert_eq!(health(&agent, "steady").await.len(), 1);
}

#[tokio::test]
async fn a_relayed_peer_query_may_not_read_imports() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let agent = TestAgent::start().await;
    // What a gateway would forward if it relayed ?peer= (it drops it; the
    // agent refuses it too, as a second line).
    let mut stream = tokio::net::TcpStream::connect(agent.addr()).await.unwrap();
    stream
        .write_all(b"GET /v1/health/service/web?peer=cluster-03 HTTP/1.1\r\nhost: 127.0.0.1\r\nx-isthmus-peer: cluster-02\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("may query only services this cluster exports"),
        "{answer}"
    );
}
