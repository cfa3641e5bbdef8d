//! ACL enforcement on the API against a real `isthmus agent --dev` with
//! `default_policy = "deny"`: each rule family allowed and denied through
//! real HTTP requests, reads filtered to what the token may read, and the
//! token taken from each place Consul reads it.

use std::net::SocketAddr;

use isthmus_tests::api::{raw, RawAnswer};
use isthmus_tests::process::AgentProcess;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::{json, Value};

const MANAGEMENT: &str = "5f7c1a0e-4a43-4c7e-9d1e-2d3c4b5a6978";

struct Agent {
    _process: AgentProcess,
    addr: SocketAddr,
}

type Answer = RawAnswer;

/// Consul tells a caller that presented a token that results were left out.
fn filtered(answer: &Answer) -> bool {
    answer.has_header("x-consul-results-filtered-by-acls", "true")
}

/// One HTTP/1.1 exchange; `auth` is a raw header line (or none).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<String>,
    body: Option<Value>,
) -> Answer {
    let headers: Vec<String> = auth.into_iter().collect();
    raw(addr, method, path, &headers, body.as_ref()).await
}

fn token(secret: &str) -> Option<String> {
    Some(format!("X-Consul-Token: {secret}"))
}

impl Agent {
    fn start() -> Agent {
        let process = AgentProcess::spawn(&[
            "--dev",
            "--no-gateway",
            "--dns-port",
            "0",
            "--acl-enabled",
            "--acl-default-policy",
            "deny",
            "--acl-initial-management-token",
            MANAGEMENT,
        ]);
        let addr = process.http_addr.parse().unwrap();
        Agent {
            _process: process,
            addr,
        }
    }

    async fn as_token(
        &self,
        secret: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        call(self.addr, method, path, token(secret), body).await
    }

    async fn manage(&self, method: &str, path: &str, body: Value) -> Value {
        let answer = self.as_token(MANAGEMENT, method, path, Some(body)).await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        if answer.body.is_empty() {
            Value::Null
        } else {
            answer.json()
        }
    }

    /// A token with one policy made of `rules`; returns its secret.
    async fn token_with_rules(&self, name: &str, rules: &str) -> String {
        self.manage(
            "PUT",
            "/v1/acl/policy",
            json!({"Name": name, "Rules": rules}),
        )
        .await;
        let token = self
            .manage(
                "PUT",
                "/v1/acl/token",
                json!({"Description": name, "Policies": [{"Name": name}]}),
            )
            .await;
        token["SecretID"].as_str().unwrap().to_owned()
    }

    /// A token with only the service identity `service`.
    async fn identity_token(&self, service: &str) -> String {
        let token = self
            .manage(
                "PUT",
                "/v1/acl/token",
                json!({"ServiceIdentities": [{"ServiceName": service}]}),
            )
            .await;
        token["SecretID"].as_str().unwrap().to_owned()
    }

    async fn register(&self, secret: &str, name: &str, port: u16) -> Answer {
        self.as_token(
            secret,
            "PUT",
            "/v1/agent/service/register",
            Some(json!({"Name": name, "Port": port})),
        )
        .await
    }
}

fn assert_denied(answer: &Answer, permission: &str) {
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.starts_with("Permission denied") && answer.body.contains(permission),
        "{:?} should deny {permission}",
        answer.body
    );
}

#[tokio::test]
async fn a_service_identity_obtains_only_its_own_certificate() {
    let agent = Agent::start();
    let frontend = agent.identity_token("frontend").await;

    // Anonymous (no token) under default deny: no certificate at all.
    let anonymous = call(
        agent.addr,
        "GET",
        "/v1/agent/connect/ca/leaf/backend",
        None,
        None,
    )
    .await;
    assert_denied(&anonymous, "'service:write' on \"backend\"");

    let own = agent
        .as_token(&frontend, "GET", "/v1/agent/connect/ca/leaf/frontend", None)
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["Service"], "frontend");
    let other = agent
        .as_token(&frontend, "GET", "/v1/agent/connect/ca/leaf/backend", None)
        .await;
    assert_denied(&other, "'service:write' on \"backend\"");

    // It registers itself and its sidecar, not another service.
    assert_eq!(
        agent.register(&frontend, "frontend", 9000).await.status,
        200
    );
    let sidecar = agent
        .as_token(
            &frontend,
            "PUT",
            "/v1/agent/service/register",
            Some(
                json!({"Name": "frontend-sidecar-proxy", "Kind": "connect-proxy", "Port": 21000,
                        "Proxy": {"DestinationServiceName": "frontend"}}),
            ),
        )
        .await;
    assert_eq!(sidecar.status, 200, "{}", sidecar.body);
    assert_denied(
        &agent.register(&frontend, "backend", 9001).await,
        "'service:write' on \"backend\"",
    );
    // A proxy may not claim to front a service its token cannot write.
    let fronting = agent
        .as_token(
            &frontend,
            "PUT",
            "/v1/agent/service/register",
            Some(
                json!({"Name": "frontend-sidecar-proxy", "Kind": "connect-proxy", "Port": 21001,
                        "Proxy": {"DestinationServiceName": "backend"}}),
            ),
        )
        .await;
    assert_denied(&fronting, "'service:write' on \"backend\"");

    // The identity reads the catalog (service_prefix and node_prefix read).
    let services = agent
        .as_token(&frontend, "GET", "/v1/catalog/services", None)
        .await;
    assert_eq!(services.status, 200);
    assert!(
        services.json().get("frontend").is_some(),
        "{}",
        services.body
    );

    // The gateway's endpoints want the mesh-gateway identity.
    let view = agent
        .as_token(
            &frontend,
            "GET",
            isthmus_api::gateway::AGENT_PATH_VIEW,
            None,
        )
        .await;
    assert_denied(&view, "'service:write' on \"mesh-gateway\"");

    // Deregistering someone else's service is refused too.
    assert_eq!(
        agent.register(MANAGEMENT, "backend", 9002).await.status,
        200
    );
    let deregister = agent
        .as_token(
            &frontend,
            "PUT",
            "/v1/agent/service/deregister/backend",
            None,
        )
        .await;
    assert_denied(&deregister, "'service:write' on \"backend\"");
}

#[tokio::test]
async fn reads_are_filtered_to_what_the_token_may_read() {
    let agent = Agent::start();
    for (name, port) in [("web", 8080), ("db", 5432), ("cache", 6379)] {
        assert_eq!(agent.register(MANAGEMENT, name, port).await.status, 200);
    }
    let web_reader = agent
        .token_with_rules(
            "web-reader",
            r#"service "web" { policy = "read" }
               node_prefix "" { policy = "read" }"#,
        )
        .await;

    let services = agent
        .as_token(&web_reader, "GET", "/v1/catalog/services", None)
        .await;
    assert_eq!(services.status, 200);
    let names: Vec<String> = services
        .json()
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(names, ["web"]);
    assert!(filtered(&services), "{}", services.head);

    let web = agent
        .as_token(&web_reader, "GET", "/v1/health/service/web", None)
        .await;
    assert_eq!(web.json().as_array().unwrap().len(), 1);
    assert!(!filtered(&web), "nothing was left out: {}", web.head);
    let db = agent
        .as_token(&web_reader, "GET", "/v1/health/service/db", None)
        .await;
    assert_eq!((db.status, db.json()), (200, json!([])));
    assert!(filtered(&db));
    let catalog_db = agent
        .as_token(&web_reader, "GET", "/v1/catalog/service/db", None)
        .await;
    assert_eq!(catalog_db.json(), json!([]));

    // The UI's one-call summary is filtered the same way.
    let summary = agent
        .as_token(&web_reader, "GET", "/v1/internal/ui/services", None)
        .await;
    assert_eq!(summary.status, 200);
    let names: Vec<String> = summary
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["web"]);
    assert!(filtered(&summary), "{}", summary.head);

    let local = agent
        .as_token(&web_reader, "GET", "/v1/agent/services", None)
        .await;
    let ids: Vec<String> = local.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(ids, ["web"]);
    assert!(filtered(&local));

    // Without node read, even web's instances are left out.
    let no_nodes = agent
        .token_with_rules("web-only", r#"service "web" { policy = "read" }"#)
        .await;
    let hidden = agent
        .as_token(&no_nodes, "GET", "/v1/health/service/web", None)
        .await;
    assert_eq!(hidden.json(), json!([]));
    assert!(filtered(&hidden));
    let nodes = agent
        .as_token(&no_nodes, "GET", "/v1/catalog/nodes", None)
        .await;
    assert_eq!(nodes.json(), json!([]));

    // The anonymous caller is filtered without being told so.
    let anonymous = call(agent.addr, "GET", "/v1/catalog/services", None, None).await;
    assert_eq!((anonymous.status, anonymous.json()), (200, json!({})));
    assert!(!filtered(&anonymous));

    // A management token sees everything, unfiltered.
    let all = agent
        .as_token(MANAGEMENT, "GET", "/v1/catalog/services", None)
        .await;
    assert!(all.json().as_object().unwrap().len() >= 3);
    assert!(!filtered(&all));
}

#[tokio::test]
async fn each_rule_family_allows_and_denies() {
    let agent = Agent::start();

    // Intentions: governed by `intentions` on the destination.
    let db_intentions = agent
        .token_with_rules(
            "db-intentions",
            r#"service "db" { policy = "read" intentions = "write" }"#,
        )
        .await;
    let allowed = agent
        .as_token(
            &db_intentions,
            "PUT",
            "/v1/connect/intentions/exact?source=web&destination=db",
            Some(json!({"Action": "allow"})),
        )
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let denied = agent
        .as_token(
            &db_intentions,
            "PUT",
            "/v1/connect/intentions/exact?source=db&destination=web",
            Some(json!({"Action": "allow"})),
        )
        .await;
    assert_denied(&denied, "'intention:write' on \"web\"");
    agent
        .manage(
            "PUT",
            "/v1/connect/intentions/exact?source=db&destination=web",
            json!({"Action": "deny"}),
        )
        .await;
    let listed = agent
        .as_token(&db_intentions, "GET", "/v1/connect/intentions", None)
        .await;
    let destinations: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["DestinationName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(destinations, ["db"]);
    assert!(filtered(&listed));
    let entry = agent
        .as_token(
            &db_intentions,
            "GET",
            "/v1/config/service-intentions/web",
            None,
        )
        .await;
    assert_denied(&entry, "'intention:read' on \"web\"");

    // Peering: read lists, write is needed to generate a token.
    let peering_reader = agent
        .token_with_rules("peering-reader", r#"peering = "read""#)
        .await;
    let list = agent
        .as_token(&peering_reader, "GET", "/v1/peerings", None)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    // The gateway probe report is read like the peerings.
    let gateways = agent
        .as_token(
            &peering_reader,
            "GET",
            "/v1/internal/ui/peering-gateways",
            None,
        )
        .await;
    assert_eq!(gateways.status, 200, "{}", gateways.body);
    let gateways = agent
        .as_token(
            &db_intentions,
            "GET",
            "/v1/internal/ui/peering-gateways",
            None,
        )
        .await;
    assert_denied(&gateways, "'peering:read'");
    let generate = agent
        .as_token(
            &peering_reader,
            "POST",
            "/v1/peering/token",
            Some(json!({"PeerName": "cluster-02"})),
        )
        .await;
    assert_denied(&generate, "'peering:write'");

    // Mesh (exported-services), and its fallback to operator.
    let exported = json!({"Kind": "exported-services", "Name": "default",
                          "Services": [{"Name": "web", "Consumers": [{"Peer": "cluster-02"}]}]});
    let mesh_writer = agent
        .token_with_rules("mesh-writer", r#"mesh = "write""#)
        .await;
    let operator = agent
        .token_with_rules("operator", r#"operator = "write""#)
        .await;
    for secret in [&mesh_writer, &operator] {
        let written = agent
            .as_token(secret, "PUT", "/v1/config", Some(exported.clone()))
            .await;
        assert_eq!(written.status, 200, "{}", written.body);
    }
    let denied = agent
        .as_token(&peering_reader, "PUT", "/v1/config", Some(exported.clone()))
        .await;
    assert_denied(&denied, "'mesh:write'");

    // Agent: read for self and metrics, write for reload.
    let agent_reader = agent
        .token_with_rules("agent-reader", r#"agent_prefix "" { policy = "read" }"#)
        .await;
    assert_eq!(
        agent
            .as_token(&agent_reader, "GET", "/v1/agent/self", None)
            .await
            .status,
        200
    );
    assert_eq!(
        agent
            .as_token(&agent_reader, "GET", "/metrics", None)
            .await
            .status,
        200
    );
    let reload = agent
        .as_token(&agent_reader, "PUT", "/v1/agent/reload", None)
        .await;
    assert_denied(&reload, "'agent:write'");
    let metrics = call(agent.addr, "GET", "/metrics", None, None).await;
    assert_eq!(metrics.status, 403);

    // Node: write for node maintenance.
    let node_writer = agent
        .token_with_rules("node-writer", r#"node_prefix "" { policy = "write" }"#)
        .await;
    let maintenance = agent
        .as_token(
            &node_writer,
            "PUT",
            "/v1/agent/maintenance?enable=true&reason=test",
            None,
        )
        .await;
    assert_eq!(maintenance.status, 200, "{}", maintenance.body);
    let refused = agent
        .as_token(
            &agent_reader,
            "PUT",
            "/v1/agent/maintenance?enable=false",
            None,
        )
        .await;
    assert_denied(&refused, "'node:write'");

    // An explicit deny wins over a broader grant.
    let all_but_db = agent
        .token_with_rules(
            "all-but-db",
            r#"service_prefix "" { policy = "write" }
               service "db" { policy = "deny" }"#,
        )
        .await;
    assert_eq!(agent.register(&all_but_db, "api", 7000).await.status, 200);
    assert_denied(
        &agent.register(&all_but_db, "db", 7001).await,
        "'service:write' on \"db\"",
    );
}

#[tokio::test]
async fn tokens_are_read_from_every_place_consul_reads_them() {
    let agent = Agent::start();
    let backend = agent.identity_token("backend").await;
    let path = "/v1/agent/connect/ca/leaf/backend";

    let header = call(agent.addr, "GET", path, token(&backend), None).await;
    assert_eq!(header.status, 200, "{}", header.body);
    let bearer = call(
        agent.addr,
        "GET",
        path,
        Some(format!("Authorization: Bearer {backend}")),
        None,
    )
    .await;
    assert_eq!(bearer.status, 200, "{}", bearer.body);
    let query = call(
        agent.addr,
        "GET",
        &format!("{path}?token={backend}"),
        None,
        None,
    )
    .await;
    assert_eq!(query.status, 200, "{}", query.body);

    // A secret that names no token is refused outright.
    let unknown = call(
        agent.addr,
        "GET",
        "/v1/catalog/services",
        token("00000000-1111-2222-3333-444444444444"),
        None,
    )
    .await;
    assert_eq!(
        (unknown.status, unknown.body.trim()),
        (403, "ACL not found")
    );
}

/// `agent --dev` with ACLs mints its in-process gateway a token of its own
/// (the mesh-gateway identity): the gateway reads its view and registers.
#[tokio::test]
async fn the_dev_agents_gateway_runs_with_its_own_token() {
    let process = AgentProcess::spawn(&[
        "--dev",
        "--dns-port",
        "0",
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        MANAGEMENT,
    ]);
    let addr: SocketAddr = process.http_addr.parse().unwrap();
    let entries = isthmus_tests::eventually("the gateway registered and passing", || async {
        let answer = call(
            addr,
            "GET",
            "/v1/health/service/mesh-gateway?passing",
            token(MANAGEMENT),
            None,
        )
        .await;
        let entries = answer.json();
        (entries.as_array().is_some_and(|e| !e.is_empty())).then_some(entries)
    })
    .await;
    assert_eq!(entries[0]["Service"]["Kind"], "mesh-gateway");
    let tokens = call(addr, "GET", "/v1/acl/tokens", token(MANAGEMENT), None).await;
    let gateway_tokens: Vec<Value> = tokens
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["Description"] == "in-process mesh gateway of agent --dev")
        .cloned()
        .collect();
    assert_eq!(gateway_tokens.len(), 1);
    assert_eq!(
        gateway_tokens[0]["ServiceIdentities"][0]["ServiceName"],
        "mesh-gateway"
    );
}

/// A real sidecar with its own service's token obtains its identity and
/// becomes ready; one started for the same service with another service's
/// token is refused the certificate by the agent, says so, and never serves.
#[tokio::test]
async fn a_sidecar_with_another_services_token_gets_no_identity() {
    use tokio::io::AsyncBufReadExt;

    let agent = Agent::start();
    let api = format!("http://{}", agent.addr);
    let backend = agent.identity_token("backend").await;
    let frontend = agent.identity_token("frontend").await;
    // ProxyProcess announces only once the sidecar holds its identity.
    let own = ProxyProcess::spawn(&api, "backend", "127.0.0.1:9", &[], &["--token", &backend]);
    let admin: SocketAddr = own.admin.trim_start_matches("http://").parse().unwrap();
    assert_eq!(raw(admin, "GET", "/ready", &[], None).await.status, 200);

    let mut impostor =
        tokio::process::Command::new(isthmus_testkit::process::binary("isthmus-proxy"))
            .args([
                "--service",
                "backend",
                "--control",
                &api,
                "--token",
                &frontend,
                "--inbound-bind",
                "127.0.0.1:0",
                "--local-app",
                "127.0.0.1:9",
                "--admin-bind",
                "127.0.0.1:0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut lines = tokio::io::BufReader::new(impostor.stderr.take().unwrap()).lines();
    let refusal = tokio::time::timeout(isthmus_tests::WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("leaf certificate") && line.contains("403 (Permission denied") {
                return line;
            }
        }
        panic!("the impostor exited without reporting the refusal");
    })
    .await
    .expect("the impostor reports that the agent refused its certificate");
    assert!(
        refusal.contains("lacks permission 'service:write' on \"backend\""),
        "{refusal}"
    );
    impostor.kill().await.unwrap();
}

/// Updating a service's TTL check needs write on that service; a node
/// check needs write on the node.
#[tokio::test]
async fn check_updates_need_write_on_their_service_or_node() {
    let agent = Agent::start();
    let backend = agent.identity_token("backend").await;
    let frontend = agent.identity_token("frontend").await;
    agent
        .manage(
            "PUT",
            "/v1/agent/service/register",
            json!({"Name": "backend", "Port": 9000,
                   "Check": {"CheckID": "backend-ttl", "TTL": "1h"}}),
        )
        .await;
    let refused = agent
        .as_token(&frontend, "PUT", "/v1/agent/check/pass/backend-ttl", None)
        .await;
    assert_denied(&refused, "'service:write' on \"backend\"");
    let passed = agent
        .as_token(&backend, "PUT", "/v1/agent/check/pass/backend-ttl", None)
        .await;
    assert_eq!(passed.status, 200, "{}", passed.body);

    agent
        .manage(
            "PUT",
            "/v1/agent/check/register",
            json!({"CheckID": "node-ttl", "Name": "node", "TTL": "1h"}),
        )
        .await;
    let node = agent
        .as_token(&backend, "PUT", "/v1/agent/check/pass/node-ttl", None)
        .await;
    assert_denied(&node, "'node:write'");
}
