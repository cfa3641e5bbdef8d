//! The traffic-management config entries (`service-resolver`,
//! `service-defaults`, `proxy-defaults`, `mesh`) against a real agent
//! process: written from HCL files with the CLI and read back, refused with
//! Consul's texts through `PUT /v1/config` (nothing written), and governed by
//! ACLs as in Consul.

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, raw, send, text};
use isthmus_tests::process::{cli, cli_in, stderr, stdout, AgentProcess};
use serde_json::{json, Value};

const RESOLVER_HCL: &str = r#"
Kind           = "service-resolver"
Name           = "backend"
ConnectTimeout = "3s"
DefaultSubset  = "v1"
Subsets = {
  v1 = { Filter = "Service.Meta.version == \"1\"", OnlyPassing = true }
}
Failover = {
  "*" = {
    Targets = [
      { Peer = "cluster-01" },
      { Service = "backend-dr", Peer = "cluster-03" }
    ]
  }
}
"#;

const SERVICE_DEFAULTS_HCL: &str = r#"
Kind     = "service-defaults"
Name     = "backend"
Protocol = "http2"
UpstreamConfig {
  Overrides = [{ Name = "db", Protocol = "tcp" }]
}
"#;

const PROXY_DEFAULTS_HCL: &str = r#"
Kind = "proxy-defaults"
Name = "global"
Config {
  protocol = "http"
}
"#;

const MESH_HCL: &str = r#"
Kind = "mesh"
Peering {
  peer_through_mesh_gateways = true
}
"#;

fn read_entry(agent: &AgentProcess, kind: &str, name: &str) -> Value {
    let read = cli(
        &agent.http_addr,
        &["config", "read", "-kind", kind, "-name", name],
        None,
    );
    assert!(read.status.success(), "{}", stderr(&read));
    serde_json::from_str(&stdout(&read)).unwrap()
}

#[tokio::test]
async fn each_kind_writes_from_hcl_and_reads_back() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--dns-port", "0"]);
    let dir = tempfile::tempdir().unwrap();
    for (file, text, written) in [
        ("resolver.hcl", RESOLVER_HCL, "service-resolver/backend"),
        (
            "defaults.hcl",
            SERVICE_DEFAULTS_HCL,
            "service-defaults/backend",
        ),
        ("proxy.hcl", PROXY_DEFAULTS_HCL, "proxy-defaults/global"),
        ("mesh.hcl", MESH_HCL, "mesh/mesh"),
    ] {
        std::fs::write(dir.path().join(file), text).unwrap();
        let output = cli_in(
            Some(dir.path()),
            &agent.http_addr,
            &["config", "write", file],
            None,
        );
        assert!(output.status.success(), "{file}: {}", stderr(&output));
        assert_eq!(
            stdout(&output),
            format!("Config entry written: {written}\n")
        );
    }

    let resolver = read_entry(&agent, "service-resolver", "backend");
    assert_eq!(resolver["ConnectTimeout"], "3s");
    assert_eq!(resolver["DefaultSubset"], "v1");
    assert_eq!(resolver["Subsets"]["v1"]["OnlyPassing"], true);
    assert_eq!(
        resolver["Failover"]["*"]["Targets"],
        json!([{"Peer": "cluster-01"}, {"Service": "backend-dr", "Peer": "cluster-03"}])
    );
    let defaults = read_entry(&agent, "service-defaults", "backend");
    assert_eq!(defaults["Protocol"], "http2");
    assert_eq!(defaults["UpstreamConfig"]["Overrides"][0]["Name"], "db");
    let proxy = read_entry(&agent, "proxy-defaults", "global");
    assert_eq!(proxy["Config"], json!({"protocol": "http"}));
    let mesh = read_entry(&agent, "mesh", "mesh");
    assert_eq!(mesh["Kind"], "mesh");
    assert_eq!(mesh["Peering"]["PeerThroughMeshGateways"], true);

    let list = cli(
        &agent.http_addr,
        &["config", "list", "-kind", "service-resolver"],
        None,
    );
    assert_eq!(stdout(&list), "backend\n");
    let list = cli(&agent.http_addr, &["config", "list", "-kind", "mesh"], None);
    assert_eq!(stdout(&list), "mesh\n");

    // The resolver's read is a blocking query like every other.
    let client = Client::new(&agent.http_addr).unwrap();
    let (_, index) = get(&client, "/v1/config/service-resolver/backend").await;
    assert!(index > 0);

    let deleted = cli(
        &agent.http_addr,
        &["config", "delete", "-kind=mesh", "-name=mesh"],
        None,
    );
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let missing = send(&client, Method::GET, "/v1/config/mesh/mesh", None).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn invalid_entries_get_consuls_texts_and_nothing_is_written() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--dns-port", "0"]);
    let client = Client::new(&agent.http_addr).unwrap();
    let resolver = |fields: Value| {
        let mut entry = json!({"Kind": "service-resolver", "Name": "backend"});
        entry
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        entry
    };
    let cases = [
        (
            resolver(json!({"ConnectTimeout": "-1s"})),
            "Bad ConnectTimeout '-1s', must be >= 0",
        ),
        (
            resolver(json!({"Redirect": {"Service": "x"}, "Failover": {"*": {"Service": "y"}}})),
            "Redirect and Failover cannot both be set",
        ),
        (
            resolver(json!({"Failover": {"v2": {"Targets": [{"Peer": "p"}]}}})),
            "Bad Failover[\"v2\"]: not a valid subset subset",
        ),
        (
            resolver(
                json!({"Failover": {"*": {"Targets": [{"Peer": "p", "ServiceSubset": "v1"}]}}}),
            ),
            "Bad Failover[\"*\"].Targets[0]: Peer cannot be set with ServiceSubset",
        ),
        (
            resolver(json!({"Redirect": {"Peer": "cluster-02"}})),
            "Redirect.Peer defined without Redirect.Service",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "*"}),
            "service-defaults name must be the name of a service, and not a wildcard",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "backend", "Protocol": "udp"}),
            "Protocol \"udp\" is not supported: use one of tcp, http, http2, grpc",
        ),
        (
            json!({"Kind": "service-defaults", "Name": "backend", "Mode": "bent"}),
            "Invalid Proxy Mode: \"bent\"",
        ),
        (
            json!({"Kind": "proxy-defaults", "Name": "local"}),
            "invalid name (\"local\"), only \"global\" is supported",
        ),
        (
            json!({"Kind": "mesh", "Name": "mine"}),
            "invalid name (\"mine\"), only \"mesh\" is supported",
        ),
    ];
    for (entry, expected) in cases {
        let answer = send(&client, Method::PUT, "/v1/config", Some(entry.clone())).await;
        assert_eq!(answer.status, 400, "{entry}");
        assert_eq!(text(&answer), expected, "{entry}");
    }
    for kind in [
        "service-resolver",
        "service-defaults",
        "proxy-defaults",
        "mesh",
    ] {
        let (listed, _) = get(&client, &format!("/v1/config/{kind}")).await;
        assert_eq!(listed, json!([]), "nothing was written for {kind}");
    }

    // The CLI prints the same text.
    let output = cli(
        &agent.http_addr,
        &["config", "write", "-"],
        Some("Kind = \"proxy-defaults\"\nName = \"local\"\n"),
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid name (\"local\"), only \"global\" is supported"),
        "{}",
        stderr(&output)
    );
}

const MANAGEMENT: &str = "0b8e6a52-1f3c-4d2e-9a7b-6c5d4e3f2a10";

#[tokio::test]
async fn acls_govern_each_kind_as_consul_does() {
    let agent = AgentProcess::spawn(&[
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
    let addr = agent.http_addr.parse().unwrap();
    let call = |secret: &str, method: &'static str, path: String, body: Option<Value>| {
        let header = format!("X-Consul-Token: {secret}");
        async move { raw(addr, method, &path, &[header], body.as_ref()).await }
    };
    let policy =
        json!({"Name": "backend-owner", "Rules": "service \"backend\" { policy = \"write\" }"});
    let answer = call(MANAGEMENT, "PUT", "/v1/acl/policy".into(), Some(policy)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let token = json!({"Policies": [{"Name": "backend-owner"}]});
    let answer = call(MANAGEMENT, "PUT", "/v1/acl/token".into(), Some(token)).await;
    let owner = answer.json()["SecretID"].as_str().unwrap().to_owned();

    // service-defaults and service-resolver: service:write on the name.
    let defaults = json!({"Kind": "service-defaults", "Name": "backend", "Protocol": "http"});
    let answer = call(&owner, "PUT", "/v1/config".into(), Some(defaults)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let other = json!({"Kind": "service-defaults", "Name": "frontend", "Protocol": "http"});
    let answer = call(&owner, "PUT", "/v1/config".into(), Some(other)).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("service:write"), "{}", answer.body);
    // A resolver failing over to another local service also needs read on it.
    let resolver = json!({"Kind": "service-resolver", "Name": "backend",
        "Failover": {"*": {"Targets": [{"Service": "backend-dr"}]}}});
    let answer = call(&owner, "PUT", "/v1/config".into(), Some(resolver)).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("service:read"), "{}", answer.body);
    let resolver = json!({"Kind": "service-resolver", "Name": "backend",
        "Failover": {"*": {"Targets": [{"Peer": "cluster-01"}]}}});
    let answer = call(&owner, "PUT", "/v1/config".into(), Some(resolver)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // proxy-defaults and mesh: mesh:write to write, anyone may read.
    let proxy = json!({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "tcp"}});
    let answer = call(&owner, "PUT", "/v1/config".into(), Some(proxy.clone())).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(answer.body.contains("mesh:write"), "{}", answer.body);
    let answer = call(MANAGEMENT, "PUT", "/v1/config".into(), Some(proxy)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let anonymous = raw(addr, "GET", "/v1/config/proxy-defaults/global", &[], None).await;
    assert_eq!(anonymous.status, 200, "{}", anonymous.body);
    assert_eq!(anonymous.json()["Config"]["protocol"], "tcp");
    let anonymous = raw(
        addr,
        "GET",
        "/v1/config/service-defaults/backend",
        &[],
        None,
    )
    .await;
    assert_eq!(anonymous.status, 403, "{}", anonymous.body);
    let listed = call(&owner, "GET", "/v1/config/service-defaults".into(), None).await;
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
}
