//! `/v1/acl/*` against a real `isthmus agent` process with ACLs enabled:
//! bootstrap once only, the initial management token, token and policy
//! CRUD, `token/self`, a policy that allows ACL reads but not writes,
//! expired, deleted and unknown tokens refused, rules the parser refuses,
//! and ACL state surviving a restart on the same data dir.

use http::Method;
use isthmus_runtime::client::{ApiResponse, Client};
use isthmus_tests::api::{send, text};
use isthmus_tests::eventually;
use isthmus_tests::process::AgentProcess;
use serde_json::{json, Value};

/// A request carrying `token` (`?token=`, one of Consul's three ways).
async fn call(
    client: &Client,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> ApiResponse {
    let path = match token {
        Some(token) if path.contains('?') => format!("{path}&token={token}"),
        Some(token) => format!("{path}?token={token}"),
        None => path.to_owned(),
    };
    send(client, method, &path, body).await
}

fn json_of(response: &ApiResponse) -> Value {
    serde_json::from_slice(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(response)))
}

/// Expects 200 and returns the JSON body.
async fn ok(
    client: &Client,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let response = call(client, method.clone(), path, token, body).await;
    assert_eq!(response.status, 200, "{method} {path}: {}", text(&response));
    json_of(&response)
}

fn write_config(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("agent.hcl");
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn acls_disabled_answer_consul_401() {
    let agent = AgentProcess::spawn(&["--dev"]);
    let client = Client::new(&agent.http_addr).unwrap();
    for path in ["/v1/acl/tokens", "/v1/acl/policies", "/v1/acl/token/self"] {
        let response = call(&client, Method::GET, path, None, None).await;
        assert_eq!(response.status, 401, "{path}");
        assert_eq!(text(&response), "ACL support disabled");
    }
    let response = call(&client, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn bootstrap_once_then_tokens_and_policies_allow_and_deny() {
    let dir = tempfile::tempdir().unwrap();
    // Short token lifetimes allowed, so expiry is observable in a test.
    let config = write_config(
        dir.path(),
        "acl {\n  enabled = true\n  default_policy = \"deny\"\n  token_min_expiration_ttl = \"1s\"\n}\n",
    );
    let agent = AgentProcess::spawn(&["--dev", "--config-file", &config]);
    let client = Client::new(&agent.http_addr).unwrap();

    // No token: the anonymous token, which may not read ACLs.
    let response = call(&client, Method::GET, "/v1/acl/policies", None, None).await;
    assert_eq!(response.status, 403, "{}", text(&response));
    assert!(text(&response).starts_with("Permission denied"));

    // Bootstrap once: a management token; then never again.
    let root = ok(&client, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(root["Description"], "Bootstrap Token (Global Management)");
    assert_eq!(root["Policies"][0]["Name"], "global-management");
    let root_secret = root["SecretID"].as_str().unwrap().to_owned();
    let root_token = Some(root_secret.as_str());
    let again = call(&client, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(again.status, 403);
    assert_eq!(
        text(&again),
        format!(
            "Permission denied: ACL bootstrap no longer allowed (reset index: {})",
            root["CreateIndex"]
        )
    );

    // Policies: rules the parser refuses come back with its text.
    let bad_rules = "service \"web\" { policy = \"shout\" }";
    let parser_says = isthmus_api::acl::Rules::parse(bad_rules)
        .unwrap_err()
        .to_string();
    let refused = call(
        &client,
        Method::PUT,
        "/v1/acl/policy",
        root_token,
        Some(json!({"Name": "bad", "Rules": bad_rules})),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(text(&refused), parser_says);
    let policy = ok(
        &client,
        Method::PUT,
        "/v1/acl/policy",
        root_token,
        Some(json!({"Name": "acl-read", "Description": "reads ACLs", "Rules": "acl = \"read\""})),
    )
    .await;
    let policy_id = policy["ID"].as_str().unwrap().to_owned();
    let by_name = ok(
        &client,
        Method::GET,
        "/v1/acl/policy/name/acl-read",
        root_token,
        None,
    )
    .await;
    assert_eq!(by_name["ID"], policy_id);
    assert_eq!(by_name["Rules"], "acl = \"read\"");
    let duplicate = call(
        &client,
        Method::PUT,
        "/v1/acl/policy",
        root_token,
        Some(json!({"Name": "acl-read"})),
    )
    .await;
    assert_eq!(duplicate.status, 400);
    assert_eq!(
        text(&duplicate),
        "Invalid Policy: A Policy with Name \"acl-read\" already exists"
    );

    // A token linked by policy name.
    let reader = ok(
        &client,
        Method::PUT,
        "/v1/acl/token",
        root_token,
        Some(json!({"Description": "reader", "Policies": [{"Name": "acl-read"}]})),
    )
    .await;
    let reader_secret = reader["SecretID"].as_str().unwrap().to_owned();
    let reader_accessor = reader["AccessorID"].as_str().unwrap().to_owned();
    let reader_token = Some(reader_secret.as_str());
    assert_eq!(reader["Policies"][0]["ID"], policy_id);
    let missing_policy = call(
        &client,
        Method::PUT,
        "/v1/acl/token",
        root_token,
        Some(json!({"Policies": [{"Name": "nope"}]})),
    )
    .await;
    assert_eq!(missing_policy.status, 400);
    assert_eq!(
        text(&missing_policy),
        "No such ACL policy with name \"nope\""
    );

    // The reader may read ACLs (secrets hidden) but not write them.
    let listed = ok(&client, Method::GET, "/v1/acl/tokens", reader_token, None).await;
    let listed = listed.as_array().unwrap();
    assert!(listed.iter().all(|t| t["SecretID"] == "<hidden>"));
    assert!(listed.iter().any(|t| t["AccessorID"] == reader_accessor));
    let denied = call(
        &client,
        Method::PUT,
        "/v1/acl/policy",
        reader_token,
        Some(json!({"Name": "mine", "Rules": ""})),
    )
    .await;
    assert_eq!(denied.status, 403);
    assert!(
        text(&denied).starts_with("Permission denied"),
        "{}",
        text(&denied)
    );
    let me = ok(
        &client,
        Method::GET,
        "/v1/acl/token/self",
        reader_token,
        None,
    )
    .await;
    assert_eq!(me["AccessorID"], reader_accessor);
    assert_eq!(me["SecretID"], reader_secret);

    // Filtered by policy; read and update by accessor.
    let with_policy = ok(
        &client,
        Method::GET,
        &format!("/v1/acl/tokens?policy={policy_id}"),
        root_token,
        None,
    )
    .await;
    let accessors: Vec<_> = with_policy
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["AccessorID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(accessors, std::slice::from_ref(&reader_accessor));
    let path = format!("/v1/acl/token/{reader_accessor}");
    let updated = ok(
        &client,
        Method::PUT,
        &path,
        root_token,
        Some(json!({"Description": "reader v2", "Policies": [{"ID": policy_id}]})),
    )
    .await;
    assert_eq!(updated["Description"], "reader v2");
    assert_eq!(updated["CreateIndex"], reader["CreateIndex"]);
    let read = ok(&client, Method::GET, &path, root_token, None).await;
    assert_eq!(read["Description"], "reader v2");
    assert_eq!(read["SecretID"], reader_secret);

    // Changing the policy changes what its tokens may do, at once.
    ok(
        &client,
        Method::PUT,
        &format!("/v1/acl/policy/{policy_id}"),
        root_token,
        Some(json!({"Name": "acl-read", "Rules": "acl = \"write\""})),
    )
    .await;
    ok(
        &client,
        Method::PUT,
        "/v1/acl/policy",
        reader_token,
        Some(json!({"Name": "mine", "Rules": ""})),
    )
    .await;

    // Built-ins cannot be deleted; a token cannot delete itself.
    let anonymous = call(
        &client,
        Method::DELETE,
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        root_token,
        None,
    )
    .await;
    assert_eq!(anonymous.status, 400);
    assert_eq!(
        text(&anonymous),
        "Delete operation not permitted on the anonymous token"
    );
    let builtin = call(
        &client,
        Method::DELETE,
        "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
        root_token,
        None,
    )
    .await;
    assert_eq!(builtin.status, 400);
    let own = call(&client, Method::DELETE, &path, reader_token, None).await;
    assert_eq!(own.status, 400);
    assert_eq!(
        text(&own),
        "Deletion of the request's authorization token is not permitted"
    );

    // Deleted and unknown tokens are refused.
    assert_eq!(
        ok(&client, Method::DELETE, &path, root_token, None).await,
        json!(true)
    );
    for secret in [
        reader_secret.as_str(),
        "6f1a3cb2-0000-4000-8000-000000000000",
    ] {
        let refused = call(&client, Method::GET, "/v1/acl/policies", Some(secret), None).await;
        assert_eq!(refused.status, 403);
        assert_eq!(text(&refused), "ACL not found");
    }
    let gone = call(&client, Method::GET, &path, root_token, None).await;
    assert_eq!(gone.status, 404);

    // Tokens by service identity.
    ok(
        &client,
        Method::PUT,
        "/v1/acl/token",
        root_token,
        Some(json!({"Description": "web sidecar", "ServiceIdentities": [{"ServiceName": "web"}]})),
    )
    .await;
    let web = ok(
        &client,
        Method::GET,
        "/v1/acl/tokens?servicename=web",
        root_token,
        None,
    )
    .await;
    let web = web.as_array().unwrap();
    assert_eq!(web.len(), 1);
    assert_eq!(web[0]["Description"], "web sidecar");
    assert_eq!(web[0]["ServiceIdentities"][0]["ServiceName"], "web");

    // Operators may give the anonymous token (no token at all) policies.
    let anonymous = ok(
        &client,
        Method::PUT,
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        root_token,
        Some(json!({"Description": "Anonymous Token", "Policies": [{"Name": "acl-read"}]})),
    )
    .await;
    assert_eq!(anonymous["SecretID"], "anonymous");
    let roles = ok(&client, Method::GET, "/v1/acl/roles", None, None).await;
    assert_eq!(roles, json!([]));

    // A token that expires is refused once it has.
    let short = ok(
        &client,
        Method::PUT,
        "/v1/acl/token",
        root_token,
        Some(json!({"Policies": [{"Name": "acl-read"}], "ExpirationTTL": "2s"})),
    )
    .await;
    assert!(short["ExpirationTime"].is_string());
    let short_secret = short["SecretID"].as_str().unwrap().to_owned();
    ok(
        &client,
        Method::GET,
        "/v1/acl/policies",
        Some(&short_secret),
        None,
    )
    .await;
    eventually("the short-lived token expires", || {
        let client = &client;
        let secret = short_secret.clone();
        async move {
            let response = call(client, Method::GET, "/v1/acl/policies", Some(&secret), None).await;
            (response.status == 403 && text(&response) == "ACL not found").then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn initial_management_token_and_acl_state_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let secret = "5c1e6ff4-9d3b-4b8e-a1c2-3f4e5d6c7b8a";
    let config = write_config(
        dir.path(),
        &format!(
            "data_dir = {:?}\nacl {{\n  enabled = true\n  default_policy = \"deny\"\n  tokens {{\n    initial_management = \"{secret}\"\n  }}\n}}\n",
            data_dir.to_str().unwrap()
        ),
    );
    let args = ["--config-file", config.as_str()];
    let root = Some(secret);

    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let me = ok(&client, Method::GET, "/v1/acl/token/self", root, None).await;
    assert_eq!(me["Description"], "Initial Management Token");
    assert_eq!(me["Policies"][0]["Name"], "global-management");
    // A configured management token stands for the bootstrap.
    let bootstrap = call(&client, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(bootstrap.status, 403);
    assert!(text(&bootstrap).starts_with("Permission denied: ACL bootstrap no longer allowed"));
    let policy = ok(
        &client,
        Method::PUT,
        "/v1/acl/policy",
        root,
        Some(json!({"Name": "ops", "Rules": "operator = \"read\""})),
    )
    .await;
    let tokens_before = ok(&client, Method::GET, "/v1/acl/tokens", root, None).await;
    assert!(agent.terminate().success());

    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let read = ok(
        &client,
        Method::GET,
        &format!("/v1/acl/policy/{}", policy["ID"].as_str().unwrap()),
        root,
        None,
    )
    .await;
    assert_eq!(read["Name"], "ops");
    let tokens_after = ok(&client, Method::GET, "/v1/acl/tokens", root, None).await;
    assert_eq!(
        tokens_after, tokens_before,
        "a restart creates no second management or anonymous token"
    );
    let bootstrap = call(&client, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(bootstrap.status, 403);
}

#[tokio::test]
async fn agents_starting_together_on_etcd_share_one_acl_state() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = isthmus_testkit::etcd::EtcdProcess::start(dir.path());
    let secret = "0b7f3d2e-5a4c-4e1f-9b8a-7c6d5e4f3a2b";
    let flags = [
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        secret,
    ];
    // Both create the built-ins and the initial management token at once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| isthmus_tests::etcd::agent(&etcd.endpoint, "n1", &flags));
        let b = s.spawn(|| isthmus_tests::etcd::agent(&etcd.endpoint, "n2", &flags));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (ca, cb) = (
        Client::new(&a.http_addr).unwrap(),
        Client::new(&b.http_addr).unwrap(),
    );
    let root = Some(secret);
    let tokens = ok(&cb, Method::GET, "/v1/acl/tokens", root, None).await;
    let descriptions: Vec<_> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Description"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        descriptions.len(),
        2,
        "one anonymous and one initial management token: {descriptions:?}"
    );
    let bootstrap = call(&ca, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(bootstrap.status, 403);

    // A blocking read on n2 wakes for a policy written through n1, and a
    // token created on n1 is honoured by n2.
    let before = call(&cb, Method::GET, "/v1/acl/policies", root, None).await;
    let index = before.index.expect("X-Consul-Index");
    let blocked = {
        let cb = cb.clone();
        tokio::spawn(async move {
            call(
                &cb,
                Method::GET,
                &format!("/v1/acl/policies?index={index}&wait=30s"),
                Some(secret),
                None,
            )
            .await
        })
    };
    ok(
        &ca,
        Method::PUT,
        "/v1/acl/policy",
        root,
        Some(json!({"Name": "acl-read", "Rules": "acl = \"read\""})),
    )
    .await;
    let woken = tokio::time::timeout(isthmus_tests::WAIT, blocked)
        .await
        .expect("the blocking read returns")
        .unwrap();
    assert_eq!(woken.status, 200);
    assert!(woken.index.unwrap() > index);
    assert!(json_of(&woken)
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["Name"] == "acl-read"));
    let reader = ok(
        &ca,
        Method::PUT,
        "/v1/acl/token",
        root,
        Some(json!({"Policies": [{"Name": "acl-read"}]})),
    )
    .await;
    let reader_secret = reader["SecretID"].as_str().unwrap().to_owned();
    eventually("n2 honours the token created on n1", || {
        let cb = &cb;
        let secret = reader_secret.clone();
        async move {
            let response = call(cb, Method::GET, "/v1/acl/policies", Some(&secret), None).await;
            (response.status == 200).then_some(())
        }
    })
    .await;
    let denied = call(
        &cb,
        Method::PUT,
        "/v1/acl/policy",
        Some(&reader_secret),
        Some(json!({"Name": "x"})),
    )
    .await;
    assert_eq!(denied.status, 403);

    // n2's cached authorizer for the token goes when n1 changes its policy.
    let policy = ok(&ca, Method::GET, "/v1/acl/policy/name/acl-read", root, None).await;
    ok(
        &ca,
        Method::PUT,
        &format!("/v1/acl/policy/{}", policy["ID"].as_str().unwrap()),
        root,
        Some(json!({"Name": "acl-read", "Rules": "acl = \"write\""})),
    )
    .await;
    eventually("n2 applies the policy change", || {
        let cb = &cb;
        let secret = reader_secret.clone();
        async move {
            let response = call(
                cb,
                Method::PUT,
                "/v1/acl/policy",
                Some(&secret),
                Some(json!({"Name": "x"})),
            )
            .await;
            (response.status == 200).then_some(())
        }
    })
    .await;
}
