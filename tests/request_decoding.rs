//! Request bodies sent the way Consul client libraries send them: lowercase
//! and snake_case keys, mixed-case `Id`, no Content-Type. Consul decodes them
//! with Go's case-insensitive `encoding/json` plus its snake_case aliases;
//! isthmus answers them the same way, and reads back in Consul's canonical
//! field names.

use isthmus_tests::api::get;
use isthmus_tests::TestAgent;
use serde_json::{json, Value};

#[tokio::test]
async fn a_lowercase_snake_case_registration_reads_back_in_consul_names() {
    let agent = TestAgent::start().await;
    let (status, text) = isthmus_tests::api::raw_json(
        agent.addr(),
        "PUT",
        "/v1/agent/service/register",
        &json!({
            "name": "web",
            "id": "web-1",
            "port": 80,
            "address": "127.0.0.1",
            "tags": ["v1"],
            "meta": {"lowercase_key": "a", "Odd.Key-X": "b", "name": "c", "ID": "d"},
            "tagged_addresses": {"lan_ipv4": {"address": "10.0.0.1", "port": 8080}},
            "enable_tag_override": true,
            "weights": {"passing": 5, "warning": 2},
            "check": {
                "check_id": "web-ttl",
                "ttl": "10s",
                "notes": "set by the test",
                "deregister_critical_service_after": "1m",
            },
        }),
    )
    .await;
    assert_eq!(status, 200, "{text}");

    let (service, _) = get(&agent.client, "/v1/agent/service/web-1").await;
    assert_eq!(service["ID"], "web-1");
    assert_eq!(service["Service"], "web");
    assert_eq!(service["Port"], 80);
    assert_eq!(service["Address"], "127.0.0.1");
    assert_eq!(service["Tags"], json!(["v1"]));
    assert_eq!(
        service["Meta"],
        json!({"lowercase_key": "a", "Odd.Key-X": "b", "name": "c", "ID": "d"}),
        "Meta keys are user data, kept exactly"
    );
    assert_eq!(
        service["TaggedAddresses"],
        json!({"lan_ipv4": {"Address": "10.0.0.1", "Port": 8080}})
    );
    assert_eq!(service["EnableTagOverride"], true);
    assert_eq!(service["Weights"], json!({"Passing": 5, "Warning": 2}));

    let (checks, _) = get(&agent.client, "/v1/agent/checks").await;
    let check = &checks["web-ttl"];
    assert_eq!(check["CheckID"], "web-ttl", "{checks}");
    assert_eq!(check["ServiceID"], "web-1");
    assert_eq!(check["Notes"], "set by the test");
    assert_eq!(check["Type"], "ttl");

    // The check update body, lowercase too.
    let (status, text) = isthmus_tests::api::raw_json(
        agent.addr(),
        "PUT",
        "/v1/agent/check/update/web-ttl",
        &json!({"status": "passing", "output": "all good"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (checks, _) = get(&agent.client, "/v1/agent/checks").await;
    assert_eq!(checks["web-ttl"]["Status"], "passing");
    assert_eq!(checks["web-ttl"]["Output"], "all good");
}

#[tokio::test]
async fn mixed_case_keys_name_the_same_fields() {
    let agent = TestAgent::start().await;
    for body in [
        json!({"Name": "api", "Id": "api-1", "PORT": 81, "Check": {"CheckId": "api-1-ttl", "Ttl": "5s"}}),
        json!({"NAME": "api", "ID": "api-2", "Port": 82, "Checks": [{"TTL": "5s", "check_ID": "api-2-ttl"}]}),
    ] {
        let (status, text) =
            isthmus_tests::api::raw_json(agent.addr(), "PUT", "/v1/agent/service/register", &body)
                .await;
        assert_eq!(status, 200, "{body}: {text}");
    }
    let (instances, _) = get(&agent.client, "/v1/catalog/service/api").await;
    let mut seen: Vec<(String, u64)> = instances
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["ServiceID"].as_str().unwrap().to_owned(),
                i["ServicePort"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [("api-1".to_owned(), 81), ("api-2".to_owned(), 82)]);
    let (checks, _) = get(&agent.client, "/v1/agent/checks").await;
    assert_eq!(checks["api-1-ttl"]["ServiceID"], "api-1", "{checks}");
    assert_eq!(checks["api-2-ttl"]["ServiceID"], "api-2", "{checks}");
}

#[tokio::test]
async fn unknown_fields_are_refused_naming_them_and_change_nothing() {
    let agent = TestAgent::start().await;
    let cases = [
        (json!({"name": "web", "prot": 80}), "unknown field `prot`"),
        (
            json!({"name": "web", "check": {"ttl": "1s", "intervall": "1s"}}),
            "unknown field `Check.intervall`",
        ),
        (
            json!({"name": "web", "checks": [{"ttl": "1s"}, {"tcp": "x:1", "interval": "1s", "tls": true}]}),
            "unknown field `Checks[1].tls`",
        ),
        (
            json!({"name": "web", "port": "eighty"}),
            "Port: invalid type: string \"eighty\"",
        ),
    ];
    for (body, message) in cases {
        let (status, text) =
            isthmus_tests::api::raw_json(agent.addr(), "PUT", "/v1/agent/service/register", &body)
                .await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(
            text.starts_with("Body decoding failed: ") && text.contains(message),
            "{body}: expected {message:?} in {text:?}"
        );
    }
    let (services, _) = get(&agent.client, "/v1/agent/services").await;
    assert!(
        services.get("web").is_none(),
        "nothing registered: {services}"
    );
}

#[tokio::test]
async fn peering_and_auth_bodies_take_lowercase_keys_too() {
    let agent = TestAgent::start().await;
    let (status, text) = isthmus_tests::api::raw_json(
        agent.addr(),
        "POST",
        "/v1/peering/token",
        &json!({
            "peer_name": "cluster-02",
            "meta": {"Env_Name": "test"},
            "server_external_addresses": ["127.0.0.1:8443"],
        }),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let token: Value = serde_json::from_str(&text).unwrap();
    assert!(token["PeeringToken"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let (peering, _) = get(&agent.client, "/v1/peering/cluster-02").await;
    assert_eq!(peering["Meta"], json!({"Env_Name": "test"}), "{peering}");

    let (status, text) = isthmus_tests::api::raw_json(
        agent.addr(),
        "POST",
        "/v1/auth/groups",
        &json!({"name": "ops", "description": "operators"}),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let (group, _) = get(&agent.client, "/v1/auth/groups/ops").await;
    assert_eq!(group["Name"], "ops", "{group}");
    assert_eq!(group["Description"], "operators", "{group}");

    let (status, text) = isthmus_tests::api::raw_json(
        agent.addr(),
        "POST",
        "/v1/auth/groups",
        &json!({"name": "ops2", "owner": "me"}),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("unknown field `owner`"), "{text}");
}
