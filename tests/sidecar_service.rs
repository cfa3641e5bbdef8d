//! `Connect.SidecarService` in `PUT /v1/agent/service/register`, sent the
//! way client libraries send it (lowercase and snake_case keys, no
//! Content-Type), against a real `isthmus agent --dev` process; and an
//! `isthmus-proxy` taking over the sidecar registered that way.

use std::net::SocketAddr;

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, raw_json, send, text};
use isthmus_tests::apps::{get as app_get, http_app, parse};
use isthmus_tests::eventually;
use isthmus_tests::process::AgentProcess;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::{json, Value};

fn start(extra: &[&str]) -> (AgentProcess, Client, SocketAddr) {
    let mut args = vec!["--dev", "--no-gateway"];
    args.extend_from_slice(extra);
    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let addr = agent.http_addr.parse().unwrap();
    (agent, client, addr)
}

async fn register(addr: SocketAddr, body: Value) -> (u16, String) {
    raw_json(addr, "PUT", "/v1/agent/service/register", &body).await
}

async fn status(client: &Client, path: &str) -> u16 {
    send(client, Method::GET, path, None).await.status.as_u16()
}

async fn check_status(client: &Client, id: &str) -> Option<String> {
    let (checks, _) = get(client, "/v1/agent/checks").await;
    checks[id]["Status"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_sidecar_is_registered_with_consuls_defaults_and_leaves_with_its_parent() {
    let (_agent, client, addr) = start(&[]);
    let (code, body) = register(
        addr,
        json!({"name": "web", "id": "web-1", "port": 8080, "tags": ["v1"],
               "check": {"check_id": "web-ttl", "ttl": "600s", "status": "passing"},
               "connect": {"sidecar_service": {}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let (sidecar, _) = get(&client, "/v1/agent/service/web-1-sidecar-proxy").await;
    assert_eq!(sidecar["Kind"], "connect-proxy");
    assert_eq!(sidecar["ID"], "web-1-sidecar-proxy");
    assert_eq!(sidecar["Service"], "web-sidecar-proxy");
    assert_eq!(sidecar["Tags"], json!(["v1"]));
    assert_eq!(sidecar["Port"], 21000, "the first port of the range");
    let proxy = &sidecar["Proxy"];
    assert_eq!(proxy["DestinationServiceName"], "web");
    assert_eq!(proxy["DestinationServiceID"], "web-1");
    assert_eq!(proxy["LocalServiceAddress"], "127.0.0.1");
    assert_eq!(proxy["LocalServicePort"], 8080);
    // The parent shows no trace of the request, as in Consul.
    let (parent, _) = get(&client, "/v1/agent/service/web-1").await;
    assert!(parent.get("Connect").is_none(), "{parent}");

    let (checks, _) = get(&client, "/v1/agent/checks").await;
    let listening = &checks["service:web-1-sidecar-proxy:1"];
    assert_eq!(listening["Name"], "Connect Sidecar Listening");
    assert_eq!(listening["Type"], "tcp");
    assert_eq!(listening["ServiceID"], "web-1-sidecar-proxy");
    let alias = &checks["service:web-1-sidecar-proxy:2"];
    assert_eq!(alias["Name"], "Connect Sidecar Aliasing web-1");
    assert_eq!(alias["Type"], "alias");

    // The alias follows the parent's health.
    let alias_id = "service:web-1-sidecar-proxy:2";
    eventually("the alias passes with its parent", || async {
        (check_status(&client, alias_id).await.as_deref() == Some("passing")).then_some(())
    })
    .await;
    let failed = send(&client, Method::PUT, "/v1/agent/check/fail/web-ttl", None).await;
    assert_eq!(failed.status, 200, "{}", text(&failed));
    eventually("the alias turns critical with its parent", || async {
        (check_status(&client, alias_id).await.as_deref() == Some("critical")).then_some(())
    })
    .await;

    // A second sidecar takes the next free port; upstreams are kept as given.
    let (code, body) = register(
        addr,
        json!({"name": "api", "port": 9090, "connect": {"sidecar_service": {"proxy": {
            "upstreams": [{"destination_name": "web", "local_bind_port": 9191}]}}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (api, _) = get(&client, "/v1/agent/service/api-sidecar-proxy").await;
    assert_eq!(api["Port"], 21001);
    assert_eq!(api["Proxy"]["Upstreams"][0]["DestinationName"], "web");
    assert_eq!(api["Proxy"]["Upstreams"][0]["LocalBindPort"], 9191);
    assert_eq!(api["Proxy"]["DestinationServiceID"], "api");
    // Registering again keeps the port.
    let (code, _) = register(
        addr,
        json!({"name": "api", "port": 9090, "connect": {"sidecar_service": {}}}),
    )
    .await;
    assert_eq!(code, 200);
    let (api, _) = get(&client, "/v1/agent/service/api-sidecar-proxy").await;
    assert_eq!(api["Port"], 21001);

    let (rows, _) = get(&client, "/v1/catalog/connect/web").await;
    assert_eq!(rows[0]["ServiceID"], "web-1-sidecar-proxy", "{rows}");

    // Deregistering the parent takes the sidecar and its checks along.
    let gone = send(
        &client,
        Method::PUT,
        "/v1/agent/service/deregister/web-1",
        None,
    )
    .await;
    assert_eq!(gone.status, 200);
    assert_eq!(
        status(&client, "/v1/agent/service/web-1-sidecar-proxy").await,
        404
    );
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert!(
        keys_starting(&checks, "service:web-1-sidecar-proxy").is_empty(),
        "{checks}"
    );
    assert_eq!(
        status(&client, "/v1/agent/service/api-sidecar-proxy").await,
        200
    );
}

fn keys_starting(map: &Value, prefix: &str) -> Vec<String> {
    map.as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test]
async fn given_sidecar_fields_win_and_bad_ones_are_refused_whole() {
    let (_agent, client, addr) = start(&[]);
    let (code, body) = register(
        addr,
        json!({"Name": "db", "Port": 5432, "Connect": {"SidecarService": {
            "ID": "db-proxy", "Name": "db-proxy", "Port": 21500, "Tags": ["mesh"],
            "Check": {"Name": "proxy alive", "TTL": "30s"}}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (proxy, _) = get(&client, "/v1/agent/service/db-proxy").await;
    assert_eq!(proxy["Port"], 21500);
    assert_eq!(proxy["Tags"], json!(["mesh"]));
    let (checks, _) = get(&client, "/v1/agent/checks").await;
    assert_eq!(
        keys_starting(&checks, "service:db-proxy"),
        ["service:db-proxy"]
    );
    assert_eq!(checks["service:db-proxy"]["Name"], "proxy alive");

    // A bad sidecar refuses the whole registration: the parent is not
    // written either.
    let (code, body) = register(
        addr,
        json!({"name": "cache", "connect": {"sidecar_service": {"kind": "mesh-gateway"}}}),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.starts_with("Connect.SidecarService: Kind"), "{body}");
    let (code, body) = register(
        addr,
        json!({"name": "cache", "connect": {"sidecar_service": {"check": {"ttl": "1s", "tcp": "x:1"}}}}),
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("exactly one of"), "{body}");
    let (code, body) = register(
        addr,
        json!({"name": "cache", "connect": {"sidecar_service": {"connect": {}}}}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(status(&client, "/v1/agent/service/cache").await, 404);
}

#[tokio::test]
async fn an_isthmus_proxy_takes_over_the_registered_sidecar() {
    let (agent, client, addr) = start(&[]);
    isthmus_tests::api::put(
        &client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend",
               "Sources": [{"Name": "frontend", "Action": "allow"}]}),
    )
    .await;
    let (code, body) = register(
        addr,
        json!({"name": "backend", "port": 1, "connect": {"sidecar_service": {}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    let backend_app = http_app("backend").await.to_string();
    let frontend_app = http_app("frontend").await.to_string();
    // The proxy registers the same ID, `backend-sidecar-proxy`, with the
    // address it really listens on.
    let backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &[]);
    let frontend = ProxyProcess::spawn(&agent.url(), "frontend", &frontend_app, &["backend"], &[]);
    let body = eventually("frontend reaches backend through its sidecar", || async {
        match app_get(frontend.upstream("backend"), "/hello").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(parse(&body)["app"], "backend");

    let (rows, _) = get(&client, "/v1/catalog/connect/backend").await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "one sidecar for backend: {rows:?}");
    assert_eq!(rows[0]["ServiceID"], "backend-sidecar-proxy");
    let inbound_port: u64 = backend.inbound.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(rows[0]["ServicePort"], inbound_port);
}

/// The way Consul's documentation registers a sidecar: a service file with
/// `connect { sidecar_service { ... } }`, through the CLI.
#[tokio::test]
async fn the_cli_registers_a_sidecar_from_a_service_file() {
    use isthmus_tests::process::{cli, cli_in, stderr, stdout};
    let (agent, client, _) = start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.hcl"),
        "service {\n  name = \"web\"\n  port = 8080\n  connect {\n    sidecar_service {\n      proxy {\n        upstreams = [{ destination_name = \"db\", local_bind_port = 9191 }]\n      }\n    }\n  }\n}\n",
    )
    .unwrap();
    let http_addr = agent.http_addr.clone();
    let dir_path = dir.path().to_owned();
    let registered = tokio::task::spawn_blocking(move || {
        cli_in(
            Some(&dir_path),
            &http_addr,
            &["services", "register", "web.hcl"],
            None,
        )
    })
    .await
    .unwrap();
    assert!(registered.status.success(), "{}", stderr(&registered));
    assert_eq!(stdout(&registered), "Registered service: web\n");
    let (sidecar, _) = get(&client, "/v1/agent/service/web-sidecar-proxy").await;
    assert_eq!(sidecar["Proxy"]["DestinationServiceID"], "web");
    assert_eq!(sidecar["Proxy"]["Upstreams"][0]["DestinationName"], "db");
    assert_eq!(sidecar["Proxy"]["Upstreams"][0]["LocalBindPort"], 9191);

    let http_addr = agent.http_addr.clone();
    let deregistered = tokio::task::spawn_blocking(move || {
        cli(&http_addr, &["services", "deregister", "-id", "web"], None)
    })
    .await
    .unwrap();
    assert!(deregistered.status.success(), "{}", stderr(&deregistered));
    assert_eq!(
        status(&client, "/v1/agent/service/web-sidecar-proxy").await,
        404
    );
}

/// `Connect.Native`: the instance shows `Connect: {Native: true}` and the
/// connect endpoints find it under its own name, as Consul's do.
#[tokio::test]
async fn a_connect_native_instance_is_found_by_connect_queries() {
    let (_agent, client, addr) = start(&[]);
    let (code, body) = register(
        addr,
        json!({"name": "pay", "id": "pay-1", "port": 7070, "connect": {"native": true}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (pay, _) = get(&client, "/v1/agent/service/pay-1").await;
    assert_eq!(pay["Connect"], json!({"Native": true}));
    let (entries, _) = get(&client, "/v1/health/connect/pay").await;
    assert_eq!(entries[0]["Service"]["ID"], "pay-1", "{entries}");
    let (rows, _) = get(&client, "/v1/catalog/connect/pay").await;
    assert_eq!(rows[0]["ServiceID"], "pay-1", "{rows}");

    // Not native: no Connect, not a connect endpoint.
    let (code, _) = register(addr, json!({"name": "pay", "id": "pay-1", "port": 7070})).await;
    assert_eq!(code, 200);
    let (pay, _) = get(&client, "/v1/agent/service/pay-1").await;
    assert!(pay.get("Connect").is_none(), "{pay}");
    let (entries, _) = get(&client, "/v1/health/connect/pay").await;
    assert_eq!(entries, json!([]));
}
