//! The clients of the agent's API send their ACL token: the CLI (flag,
//! environment, token file), `isthmus-proxy` and `isthmus-gateway`. ACL
//! enforcement is the agent's business; here a recording HTTP server
//! stands in for it and shows what arrives. The proxy and the gateway also
//! reach an https agent with `--ca-file`.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use isthmus_runtime::client::Client;
use isthmus_testkit::process::ChildProcess;
use isthmus_tests::cluster::GatewayProcess;
use isthmus_tests::process::{stderr, AgentProcess};
use isthmus_tests::proxy_process::ProxyProcess;
use isthmus_tests::{eventually, isthmus_bin};
use serde_json::Value;

/// Each request's path and `X-Consul-Token`, in arrival order.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Answers every request (`[]` for the member list, 503 otherwise) and
/// remembers each request's path and `X-Consul-Token`.
struct Recorder {
    addr: SocketAddr,
    seen: Seen,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let recording = seen.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let recording = recording.clone();
            async move {
                let token = request
                    .headers()
                    .get("x-consul-token")
                    .map(|v| v.to_str().unwrap().to_owned());
                let path = request.uri().path().to_owned();
                recording.lock().unwrap().push((path.clone(), token));
                if path == "/v1/agent/members" {
                    (http::StatusCode::OK, "[]")
                } else {
                    (http::StatusCode::SERVICE_UNAVAILABLE, "recorder")
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Recorder { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn tokens(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    /// Waits until a request carried `token`.
    async fn wait_for(&self, token: &str) {
        eventually(&format!("a request with the token {token}"), || async {
            self.tokens()
                .iter()
                .any(|t| t.as_deref() == Some(token))
                .then_some(())
        })
        .await;
    }
}

const CLIENT_VARIABLES: [&str; 7] = [
    "ISTHMUS_HTTP_ADDR",
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "ISTHMUS_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "ISTHMUS_HTTP_TOKEN_FILE",
    "CONSUL_CACERT",
];

/// `isthmus members` against `url` with only `env` of the client variables.
/// Run off the test's runtime thread: the recorder answers on it.
async fn members(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(isthmus_bin());
    command.arg("members").args(args).stdin(Stdio::null());
    for name in CLIENT_VARIABLES {
        command.env_remove(name);
    }
    command.env("ISTHMUS_HTTP_ADDR", url);
    command.envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("run the CLI"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_its_token_from_the_flag_the_environment_or_a_file() {
    let recorder = Recorder::start().await;
    let url = recorder.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  from-file\n").unwrap();
    let file = file.to_str().unwrap();

    // The environment, the flags, and the token the request should carry.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], Option<&'a str>);
    let cases: [Case; 6] = [
        (&[], &[], None),
        (
            &[("CONSUL_HTTP_TOKEN", "from-env")],
            &["-token", "from-flag"],
            Some("from-flag"),
        ),
        (&[("CONSUL_HTTP_TOKEN", "from-env")], &[], Some("from-env")),
        (
            &[
                ("CONSUL_HTTP_TOKEN", "consul"),
                ("ISTHMUS_HTTP_TOKEN", "isthmus"),
            ],
            &[],
            Some("isthmus"),
        ),
        (&[("CONSUL_HTTP_TOKEN_FILE", file)], &[], Some("from-file")),
        (&[], &["-token-file", file], Some("from-file")),
    ];
    for (env, args, expected) in cases {
        recorder.clear();
        let output = members(&url, env, args).await;
        assert!(
            output.status.success(),
            "{env:?} {args:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            recorder.tokens(),
            [expected.map(str::to_owned)],
            "{env:?} {args:?}"
        );
    }

    recorder.clear();
    let output = members(&url, &[], &["-token-file", "/nonexistent/token"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("reading the token file /nonexistent/token"),
        "{}",
        stderr(&output)
    );
    assert!(recorder.tokens().is_empty(), "sent a request anyway");
}

/// Starts `program` with `args` and `env`, killed on drop.
fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> ChildProcess {
    let mut command = Command::new(isthmus_testkit::process::binary(program));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for name in CLIENT_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    ChildProcess::new(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}")),
    )
}

#[tokio::test]
async fn the_proxy_and_the_gateway_send_their_token() {
    let recorder = Recorder::start().await;
    let url = recorder.url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "proxy-token\n").unwrap();
    let proxy_args = [
        "--service",
        "web",
        "--control",
        &url,
        "--local-app",
        "127.0.0.1:1",
        "--inbound-bind",
        "127.0.0.1:0",
        "--admin-bind",
        "127.0.0.1:0",
        "--token-file",
        file.to_str().unwrap(),
    ];
    let proxy = spawn("isthmus-proxy", &proxy_args, &[]);
    recorder.wait_for("proxy-token").await;
    drop(proxy);

    let gateway_args = [
        "--control",
        &url,
        "--bind",
        "127.0.0.1:0",
        "--admin-bind",
        "127.0.0.1:0",
    ];
    let gateway = spawn(
        "isthmus-gateway",
        &gateway_args,
        &[("CONSUL_HTTP_TOKEN", "gateway-token")],
    );
    recorder.wait_for("gateway-token").await;
    drop(gateway);

    let flagged = [&gateway_args[..], &["--token", "gateway-flag"]].concat();
    let gateway = spawn(
        "isthmus-gateway",
        &flagged,
        &[("CONSUL_HTTP_TOKEN", "gateway-token")],
    );
    recorder.wait_for("gateway-flag").await;
    drop(gateway);
}

#[tokio::test]
async fn the_proxy_and_the_gateway_reach_an_https_agent_with_ca_file() {
    let agent = AgentProcess::spawn(&["--dev", "--https-addr", "127.0.0.1:0"]);
    let url = agent.https_url.clone().expect("https=");
    let client = Client::new(&agent.http_addr).unwrap();
    let (roots, _): (Value, _) = client.get_json("/v1/connect/ca/roots").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, roots["Roots"][0]["RootCert"].as_str().unwrap()).unwrap();
    let ca = ca.to_str().unwrap();

    // Started means it got its first view from the agent, over https.
    let gateway = GatewayProcess::spawn_with(&url, &["--ca-file", ca, "--token", "t"]);

    let proxy = ProxyProcess::spawn(&url, "web", "127.0.0.1:1", &[], &["--ca-file", ca]);
    let admin = Client::new(&proxy.admin).unwrap();
    eventually("the proxy over https is ready", || async {
        let response = admin.send(http::Method::GET, "/ready", None).await.ok()?;
        (response.status == http::StatusCode::OK).then_some(())
    })
    .await;
    let (services, _): (Value, _) = client.get_json("/v1/catalog/services").await.unwrap();
    assert!(services.get("web-sidecar-proxy").is_some(), "{services}");
    proxy.terminate();
    gateway.terminate();
}
