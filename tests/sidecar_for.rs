//! `isthmus-proxy --sidecar-for <service-id>` against a real `isthmus
//! agent --dev`: a workload meshed with a service definition file
//! (`connect { sidecar_service { ... } }`, registered by the CLI) and one
//! command; and the lookup's errors in Consul's words.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use http::Method;
use isthmus_runtime::client::{Client, Credentials};
use isthmus_tests::api::{get, put, raw_json, send, text};
use isthmus_tests::apps::{get as app_get, http_app, parse, tcp_echo};
use isthmus_tests::eventually;
use isthmus_tests::process::{cli_in, stderr, AgentProcess};
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn agent() -> (AgentProcess, Client) {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let client = Client::new(&agent.http_addr).unwrap();
    (agent, client)
}

/// A loopback port free right now, for a registration that must name one.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `isthmus services register <file>` run in `dir`.
async fn register_file(agent: &AgentProcess, dir: &Path, file: &str) {
    let (http_addr, dir, file) = (agent.http_addr.clone(), dir.to_owned(), file.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        cli_in(
            Some(&dir),
            &http_addr,
            &["services", "register", &file],
            None,
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Runs `isthmus-proxy args` expecting it to exit by itself.
async fn proxy_exits(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(isthmus_testkit::process::binary("isthmus-proxy"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("isthmus-proxy runs")
    })
    .await
    .unwrap()
}

fn loopback_args<'a>(control: &'a str, lookup: &[&'a str]) -> Vec<&'a str> {
    let mut args = lookup.to_vec();
    args.extend([
        "--control",
        control,
        "--inbound-bind",
        "127.0.0.1:0",
        "--admin-bind",
        "127.0.0.1:0",
        "--drain-timeout",
        "1s",
    ]);
    args
}

#[tokio::test]
async fn a_service_file_and_one_command_mesh_a_workload() {
    let (agent, client) = agent();
    let control = agent.url();
    for (destination, source) in [("backend", "web"), ("echo", "web"), ("web", "caller")] {
        put(
            &client,
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": destination,
                   "Sources": [{"Name": source, "Action": "allow"}]}),
        )
        .await;
    }
    let backend_app = http_app("backend").await.to_string();
    let _backend = ProxyProcess::spawn(&control, "backend", &backend_app, &[], &[]);
    let echo_app = tcp_echo().await.to_string();
    let _echo = ProxyProcess::spawn(&control, "echo", &echo_app, &[], &["--protocol", "tcp"]);

    // The workload: its app, and a service file as Consul's docs write it.
    let web_app = http_app("web").await;
    let inbound_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.hcl"),
        format!(
            r#"service {{
  name = "web"
  port = {app_port}
  connect {{
    sidecar_service {{
      port = {inbound_port}
      check {{
        name     = "sidecar listening"
        tcp      = "127.0.0.1:{inbound_port}"
        interval = "1s"
      }}
      proxy {{
        upstreams = [
          {{ destination_name = "backend", local_bind_port = 0 }},
          {{ destination_name = "echo", local_bind_port = 0, config = {{ protocol = "tcp" }} }},
        ]
      }}
    }}
  }}
}}
"#,
            app_port = web_app.port()
        ),
    )
    .unwrap();
    register_file(&agent, dir.path(), "web.hcl").await;

    // One command: service, ports and upstreams come from the registration.
    let web = ProxyProcess::spawn_with(&loopback_args(&control, &["--sidecar-for", "web"]))
        .expect("the sidecar starts");
    assert_eq!(web.service, "web");
    assert_eq!(web.inbound, format!("127.0.0.1:{inbound_port}"));

    // Outbound: the registered upstream works end to end.
    let body = eventually("web reaches backend through its upstream", || async {
        match app_get(web.upstream("backend"), "/hello").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(parse(&body)["app"], "backend");
    // The echo upstream carries bytes: its Config.protocol says tcp, while
    // the proxy's own protocol is http.
    let reply = eventually("web reaches echo over TCP", || async {
        let mut stream = tokio::net::TcpStream::connect(web.upstream("echo"))
            .await
            .ok()?;
        stream.write_all(b"not http at all").await.ok()?;
        let mut buffer = [0u8; 15];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut buffer))
            .await
            .ok()?
            .ok()?;
        Some(buffer)
    })
    .await;
    assert_eq!(&reply, b"not http at all");

    // Inbound: another sidecar reaches web's app at the registered port,
    // found through the catalog.
    let other_app = http_app("caller").await.to_string();
    let caller = ProxyProcess::spawn(&control, "caller", &other_app, &["web"], &[]);
    let body = eventually("caller reaches web through web's sidecar", || async {
        match app_get(caller.upstream("web"), "/in").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(parse(&body)["app"], "web");

    // It serves the registration it was given and registers no second one.
    let (rows, _) = get(&client, "/v1/catalog/connect/web").await;
    let rows = rows.as_array().unwrap().clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["ServiceID"], "web-sidecar-proxy");
    assert_eq!(rows[0]["ServicePort"], inbound_port);
    let admin = web.admin.trim_start_matches("http://").to_owned();
    let (status, config, _) = app_get(&admin, "/config").await.unwrap();
    assert_eq!(status, 200);
    let config = parse(&config);
    assert_eq!(config["proxy_id"], "web-sidecar-proxy", "{config}");
    assert_eq!(config["protocol"], "http");
    let upstreams = config["upstreams"].as_array().unwrap();
    let protocols: Vec<(&str, &str)> = upstreams
        .iter()
        .map(|u| {
            (
                u["upstream"].as_str().unwrap(),
                u["protocol"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(protocols, [("backend", "http"), ("echo", "tcp")]);

    // A later change of the registration is not applied, and said so.
    let file = std::fs::read_to_string(dir.path().join("web.hcl")).unwrap();
    let file = file.replace(
        "local_bind_port = 0 },",
        "local_bind_port = 0 },\n          { destination_name = \"db\", local_bind_port = 0 },",
    );
    std::fs::write(dir.path().join("web.hcl"), file).unwrap();
    register_file(&agent, dir.path(), "web.hcl").await;
    eventually(
        "the sidecar warns that its registration changed",
        || async {
            web.logs
                .text()
                .contains("the sidecar registration changed since isthmus-proxy read it at start")
                .then_some(())
        },
    )
    .await;

    // Stopping it leaves the operator's registration in place.
    assert!(web.terminate().success());
    let (sidecar, _) = get(&client, "/v1/agent/service/web-sidecar-proxy").await;
    assert_eq!(sidecar["Port"], inbound_port);
}

#[tokio::test]
async fn lookup_errors_are_consuls() {
    let (agent, _client) = agent();
    let control = agent.url();
    let addr = agent.http_addr.parse().unwrap();
    for body in [
        json!({"name": "plain", "port": 7000}),
        json!({"name": "db", "port": 5432, "connect": {"sidecar_service": {"port": free_port()}}}),
        json!({"name": "db-proxy-2", "kind": "connect-proxy", "port": free_port(),
               "proxy": {"destination_service_name": "db", "destination_service_id": "db",
                         "local_service_port": 5432}}),
    ] {
        let (code, text) = raw_json(addr, "PUT", "/v1/agent/service/register", &body).await;
        assert_eq!(code, 200, "{text}");
    }
    let cases: [(&[&str], &str); 5] = [
        (
            &["--sidecar-for", "nope"],
            "Error: No sidecar proxy registered for nope\n",
        ),
        (
            &["--sidecar-for", "plain"],
            "Error: No sidecar proxy registered for plain\n",
        ),
        (
            &["--sidecar-for", "db"],
            "Error: More than one sidecar proxy registered for db.\n    Start proxy with -proxy-id and one of the following IDs: db-proxy-2, db-sidecar-proxy\n",
        ),
        (
            &["--sidecar-for", "web", "--service", "web"],
            "Error: --service and --sidecar-for cannot be used together: the service comes from the registration's Proxy.DestinationServiceName\n",
        ),
        (
            &["-sidecar-for", "web", "-upstream", "db:0"],
            "Error: --upstream and --sidecar-for cannot be used together: the upstreams come from the registration's Proxy.Upstreams\n",
        ),
    ];
    for (lookup, want) in cases {
        let out = proxy_exits(&loopback_args(&control, lookup)).await;
        assert!(!out.status.success(), "{lookup:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), want, "{lookup:?}");
    }

    // -proxy-id names one of them, as Consul's message suggests.
    let db = ProxyProcess::spawn_with(&loopback_args(&control, &["-proxy-id", "db-proxy-2"]))
        .expect("the proxy starts");
    assert_eq!(db.service, "db");
}

/// Under ACLs (default deny) the registration is read with the proxy's
/// token: the service's identity is enough; the anonymous token sees no
/// sidecar, as in Consul.
#[tokio::test]
async fn the_services_identity_token_reads_its_sidecar() {
    const MANAGEMENT: &str = "7d2c9e4a-1b3f-4c5d-8e6f-0a1b2c3d4e5f";
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
    let control = agent.url();
    let management = Client::with_credentials(
        &agent.http_addr,
        &Credentials {
            token: Some(MANAGEMENT.into()),
            ..Credentials::default()
        },
    )
    .unwrap();
    put(
        &management,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 8080,
               "Connect": {"SidecarService": {"Port": free_port()}}}),
    )
    .await;
    let token = send(
        &management,
        Method::PUT,
        "/v1/acl/token",
        Some(json!({"ServiceIdentities": [{"ServiceName": "web"}]})),
    )
    .await;
    assert_eq!(token.status, 200, "{}", text(&token));
    let token: serde_json::Value = serde_json::from_slice(&token.body).unwrap();
    let secret = token["SecretID"].as_str().unwrap().to_owned();

    let out = proxy_exits(&loopback_args(&control, &["--sidecar-for", "web"])).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: No sidecar proxy registered for web\n"
    );
    let web = ProxyProcess::spawn_with(&loopback_args(
        &control,
        &["--sidecar-for", "web", "--token", &secret],
    ))
    .expect("the sidecar starts with the service's identity");
    assert_eq!(web.service, "web");
}

/// `DestinationPeer` in the registration: the sidecar's upstream crosses
/// the peering through cluster-01's gateway.
#[tokio::test]
async fn a_registered_upstream_reaches_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = isthmus_tests::cluster::peered_clusters(dir.path()).await;
    let _backend = isthmus_tests::cluster::export_backend_to_cluster_02(&c1).await;

    let app = http_app("frontend").await;
    let addr = c2.agent.http_addr.parse().unwrap();
    let registration = json!({"name": "frontend", "port": app.port(),
        "connect": {"sidecar_service": {"port": free_port(), "proxy": {"upstreams": [
            {"destination_name": "backend", "destination_peer": "cluster-01",
             "local_bind_port": 0}]}}}});
    let (code, text) = raw_json(addr, "PUT", "/v1/agent/service/register", &registration).await;
    assert_eq!(code, 200, "{text}");
    let control = c2.agent.url();
    let frontend =
        ProxyProcess::spawn_with(&loopback_args(&control, &["--sidecar-for", "frontend"]))
            .expect("the sidecar starts");
    let body = eventually("frontend reaches backend in cluster-01", || async {
        match app_get(frontend.upstream("backend@cluster-01"), "/across").await {
            Ok((200, body, _)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(parse(&body)["app"], "backend");
}
