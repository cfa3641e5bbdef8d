//! The agent's HTTPS API, driven by real clients: curl and openssl trust it
//! with the cluster CA and refuse it without; `--verify-incoming` refuses a
//! client without a CA-signed certificate; the CLI talks https with
//! `-ca-file` or `CONSUL_CACERT`; the listener keeps the API's connection
//! cap and drops a client that never completes its handshake.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use isthmus_runtime::client::Client;
use isthmus_testkit::net::wait_closed_within;
use isthmus_tests::process::{stderr, stdout, AgentProcess};
use isthmus_tests::{isthmus_bin, TestAgent, WAIT};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// An agent with the HTTPS API on an ephemeral port, and the cluster CA's
/// root written to `dir/ca.pem`.
struct HttpsAgent {
    agent: AgentProcess,
    url: String,
    dir: tempfile::TempDir,
}

impl HttpsAgent {
    async fn spawn(extra: &[&str]) -> HttpsAgent {
        let mut args = vec!["--dev", "--https-addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let agent = AgentProcess::spawn(&args);
        let url = agent.https_url.clone().expect("the agent announces https=");
        let dir = tempfile::tempdir().unwrap();
        let client = Client::new(&agent.http_addr).unwrap();
        let (roots, _): (Value, _) = client.get_json("/v1/connect/ca/roots").await.unwrap();
        let pem = roots["Roots"][0]["RootCert"].as_str().unwrap();
        std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
        HttpsAgent { agent, url, dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A service leaf (signed by the cluster CA, usable as a client
    /// certificate), written to `dir/<service>.pem` and `-key.pem`.
    async fn leaf_files(&self, service: &str) -> (PathBuf, PathBuf) {
        let client = Client::new(&self.agent.http_addr).unwrap();
        let (leaf, _): (Value, _) = client
            .get_json(&format!("/v1/agent/connect/ca/leaf/{service}"))
            .await
            .unwrap();
        let cert = self.dir.path().join(format!("{service}.pem"));
        let key = self.dir.path().join(format!("{service}-key.pem"));
        std::fs::write(&cert, leaf["CertPEM"].as_str().unwrap()).unwrap();
        std::fs::write(&key, leaf["PrivateKeyPEM"].as_str().unwrap()).unwrap();
        (cert, key)
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// `curl` of `url`, bounded; the status code it printed (000 when the
/// connection failed) and its output.
fn curl(url: &str, extra: &[&str]) -> (String, Output) {
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let output = run("curl", &args);
    (stdout(&output).trim().to_owned(), output)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn curl_and_openssl_trust_the_https_api_only_with_the_cluster_ca() {
    let agent = HttpsAgent::spawn(&[]).await;
    let leader = format!("{}/v1/status/leader", agent.url);
    let (status, output) = curl(&leader, &["--cacert", path(&agent.ca())]);
    assert_eq!(status, "200", "{}", stderr(&output));
    // The certificate names localhost too.
    let by_name = format!("https://localhost:{}/v1/agent/self", agent.port());
    let (status, output) = curl(&by_name, &["--cacert", path(&agent.ca())]);
    assert_eq!(status, "200", "{}", stderr(&output));

    let (status, output) = curl(&leader, &[]);
    assert_eq!(status, "000");
    assert_eq!(output.status.code(), Some(60), "{}", stderr(&output));

    let connect = format!("127.0.0.1:{}", agent.port());
    let verified = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect,
            "-CAfile",
            path(&agent.ca()),
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-brief",
        ],
    );
    assert!(verified.status.success(), "{}", stderr(&verified));
    let unverified = run(
        "openssl",
        &[
            "s_client",
            "-connect",
            &connect,
            "-verify_return_error",
            "-brief",
        ],
    );
    assert!(!unverified.status.success(), "{}", stderr(&unverified));

    // Plain HTTP on the TLS port gets no answer.
    let (status, _) = curl(
        &format!("http://127.0.0.1:{}/v1/status/leader", agent.port()),
        &[],
    );
    assert_ne!(status, "200");
}

#[tokio::test]
async fn verify_incoming_requires_a_client_certificate_signed_by_the_ca() {
    let agent = HttpsAgent::spawn(&["--verify-incoming"]).await;
    let leader = format!("{}/v1/status/leader", agent.url);
    let ca = agent.ca();
    let (status, output) = curl(&leader, &["--cacert", path(&ca)]);
    assert_eq!(status, "000", "answered without a client certificate");
    assert!(!output.status.success());

    let (cert, key) = agent.leaf_files("web").await;
    let with_cert = [
        "--cacert",
        path(&ca),
        "--cert",
        path(&cert),
        "--key",
        path(&key),
    ];
    let (status, output) = curl(&leader, &with_cert);
    assert_eq!(status, "200", "{}", stderr(&output));

    // A certificate from anyone else is refused.
    let (own_cert, own_key) = (
        agent.dir.path().join("own.pem"),
        agent.dir.path().join("own-key.pem"),
    );
    let made = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=intruder",
            "-days",
            "1",
            "-keyout",
            path(&own_key),
            "-out",
            path(&own_cert),
        ],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let foreign = [
        "--cacert",
        path(&ca),
        "--cert",
        path(&own_cert),
        "--key",
        path(&own_key),
    ];
    let (status, _) = curl(&leader, &foreign);
    assert_eq!(
        status, "000",
        "answered a certificate the cluster CA did not sign"
    );

    // The CLI presents one with -client-cert/-client-key.
    let cli = cli_https(&agent.url, &[("CONSUL_CACERT", path(&ca))], &["info"]);
    assert!(
        !cli.status.success(),
        "the CLI got in without a client certificate"
    );
    let cli = cli_https(
        &agent.url,
        &[("CONSUL_CACERT", path(&ca))],
        &[
            "info",
            "-client-cert",
            path(&cert),
            "-client-key",
            path(&key),
        ],
    );
    assert!(cli.status.success(), "{}", stderr(&cli));
}

/// The CLI with only `env` set of the client variables.
fn cli_https(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(isthmus_bin());
    command.args(args).stdin(std::process::Stdio::null());
    for name in [
        "ISTHMUS_HTTP_ADDR",
        "CONSUL_HTTP_ADDR",
        "CONSUL_CACERT",
        "CONSUL_CLIENT_CERT",
        "CONSUL_CLIENT_KEY",
        "CONSUL_HTTP_TOKEN",
        "ISTHMUS_HTTP_TOKEN",
        "CONSUL_HTTP_TOKEN_FILE",
        "CONSUL_TLS_SERVER_NAME",
    ] {
        command.env_remove(name);
    }
    command.env("CONSUL_HTTP_ADDR", url);
    command.envs(env.iter().copied());
    command.output().expect("run the CLI")
}

#[tokio::test]
async fn the_cli_talks_https_with_ca_file_or_consul_cacert() {
    let agent = HttpsAgent::spawn(&[]).await;
    let ca = agent.ca();
    let with_flag = cli_https(&agent.url, &[], &["info", "-ca-file", path(&ca)]);
    assert!(with_flag.status.success(), "{}", stderr(&with_flag));
    assert!(stdout(&with_flag).contains("dc1"), "{}", stdout(&with_flag));

    let with_env = cli_https(&agent.url, &[("CONSUL_CACERT", path(&ca))], &["members"]);
    assert!(with_env.status.success(), "{}", stderr(&with_env));

    // -http-addr wins over CONSUL_HTTP_ADDR.
    let flag_addr = cli_https(
        "http://127.0.0.1:1",
        &[("CONSUL_CACERT", path(&ca))],
        &["info", "-http-addr", &agent.url],
    );
    assert!(flag_addr.status.success(), "{}", stderr(&flag_addr));

    let untrusted = cli_https(&agent.url, &[], &["info"]);
    assert!(!untrusted.status.success());
    let text = stderr(&untrusted);
    // Unknown issuer (or, on a host without a trust store, no CA at all).
    assert!(
        text.contains("certificate") || text.contains("CA"),
        "{text}"
    );

    let missing = cli_https(
        &agent.url,
        &[],
        &["info", "-ca-file", "/nonexistent/ca.pem"],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("CA file /nonexistent/ca.pem"),
        "{}",
        stderr(&missing)
    );
}

/// The operator's certificate names only `api.internal`: clients reach it
/// by that name, or by address with `-tls-server-name`.
#[tokio::test]
async fn operator_certificate_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (ops_ca, ops_key, csr, ext) = (
        file("ops-ca.pem"),
        file("ops-ca-key.pem"),
        file("api.csr"),
        file("api.ext"),
    );
    let (cert, key) = (PathBuf::from(file("api.pem")), file("api-key.pem"));
    std::fs::write(
        &ext,
        "subjectAltName=DNS:api.internal\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let made = run("openssl", args);
        assert!(made.status.success(), "{args:?}: {}", stderr(&made));
    };
    let ec = "ec_paramgen_curve:prime256v1";
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        ec,
        "-nodes",
        "-subj",
        "/CN=ops CA",
        "-days",
        "1",
        "-keyout",
        &ops_key,
        "-out",
        &ops_ca,
    ]);
    openssl(&[
        "req", "-new", "-newkey", "ec", "-pkeyopt", ec, "-nodes", "-subj", "/CN=api", "-keyout",
        &key, "-out", &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ops_ca,
        "-CAkey",
        &ops_key,
        "-set_serial",
        "7",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        path(&cert),
    ]);
    let key = PathBuf::from(key);
    let ops_ca = PathBuf::from(ops_ca);
    let agent = HttpsAgent::spawn(&[
        "--cert-file",
        path(&cert),
        "--key-file",
        path(&key),
        "--http-allowed-host",
        "api.internal",
    ])
    .await;
    let port = agent.port();
    let by_name = format!("https://api.internal:{port}/v1/status/leader");
    let resolve = format!("api.internal:{port}:127.0.0.1");
    let (status, output) = curl(
        &by_name,
        &["--cacert", path(&ops_ca), "--resolve", &resolve],
    );
    assert_eq!(status, "200", "{}", stderr(&output));
    // Not for the address, and not signed by the cluster CA.
    let by_address = format!("{}/v1/status/leader", agent.url);
    let (status, _) = curl(&by_address, &["--cacert", path(&ops_ca)]);
    assert_eq!(status, "000");
    let (status, _) = curl(
        &by_name,
        &["--cacert", path(&agent.ca()), "--resolve", &resolve],
    );
    assert_eq!(status, "000");

    let trust = [("CONSUL_CACERT", path(&ops_ca))];
    let plain = cli_https(&agent.url, &trust, &["info"]);
    assert!(
        !plain.status.success(),
        "accepted a certificate for another name"
    );
    let flag = cli_https(
        &agent.url,
        &trust,
        &["info", "-tls-server-name", "api.internal"],
    );
    assert!(flag.status.success(), "{}", stderr(&flag));
    let env = [trust[0], ("CONSUL_TLS_SERVER_NAME", "api.internal")];
    let from_env = cli_https(&agent.url, &env, &["info"]);
    assert!(from_env.status.success(), "{}", stderr(&from_env));
}

#[tokio::test]
async fn bad_https_settings_stop_the_agent_with_a_reason() {
    let half = AgentProcess::try_spawn(&[
        "--dev",
        "--https-addr",
        "127.0.0.1:0",
        "--cert-file",
        "/x.pem",
    ])
    .err()
    .expect("a certificate without its key is refused");
    assert!(
        half.contains("cert_file and key_file go together"),
        "{half}"
    );
    let missing = AgentProcess::try_spawn(&[
        "--dev",
        "--https-addr",
        "127.0.0.1:0",
        "--cert-file",
        "/nonexistent/api.pem",
        "--key-file",
        "/nonexistent/api-key.pem",
    ])
    .err()
    .expect("an unreadable certificate is refused");
    assert!(
        missing.contains("cert_file /nonexistent/api.pem"),
        "{missing}"
    );
    let orphan = AgentProcess::try_spawn(&["--dev", "--verify-incoming"])
        .err()
        .expect("verify-incoming without an https listener is refused");
    assert!(orphan.contains("give https_addr"), "{orphan}");
}

/// An in-process agent with the HTTPS API on an ephemeral port.
async fn in_process(max_conns: usize, handshake_timeout: Duration) -> (TestAgent, SocketAddr) {
    let agent = TestAgent::start_with(|c| {
        c.https.addr = Some("127.0.0.1:0".parse().unwrap());
        c.https.handshake_timeout = handshake_timeout;
        c.http_limits.max_conns = max_conns;
    })
    .await;
    let addr = agent.agent.https_addr().expect("https listens");
    (agent, addr)
}

async fn metric(agent: &TestAgent, series: &str) -> u64 {
    let response = agent
        .client
        .call(http::Method::GET, "/metrics", None)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response.body).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{series} missing from the metrics"))
}

/// Whether a TLS handshake and a request over it succeed, trusting the agent's CA.
async fn https_answers(agent: &TestAgent, addr: SocketAddr) -> bool {
    let pem = agent.agent.state.ca.root_pems().join("");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pem).unwrap();
    let credentials = isthmus_runtime::client::Credentials {
        ca_file: Some(dir.path().join("ca.pem")),
        ..Default::default()
    };
    let client = Client::with_credentials(&format!("https://{addr}"), &credentials).unwrap();
    client
        .call(http::Method::GET, "/v1/status/leader", None)
        .await
        .is_ok()
}

#[tokio::test]
async fn the_https_listener_keeps_the_connection_cap() {
    let (agent, addr) = in_process(2, Duration::from_secs(60)).await;
    // (No request before: a client's pooled connection would close
    // asynchronously and blur which connection holds a place.)
    // Two silent connections hold both places (their handshake has a minute).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_closed_within(WAIT, &mut over).await;
    assert!(!https_answers(&agent, addr).await, "served over the cap");
    drop(held);
    isthmus_tests::eventually("the HTTPS API answers again", || async {
        https_answers(&agent, addr).await.then_some(())
    })
    .await;
    let refused =
        r#"isthmus_http_connections_refused_total{listener="api_https",reason="max_conns"}"#;
    assert!(metric(&agent, refused).await >= 2);
    agent.agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_dropped_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let (agent, addr) = in_process(8, timeout).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let took = wait_closed_within(WAIT, &mut silent).await;
    assert!(
        took >= timeout - Duration::from_millis(50),
        "closed after {took:?}"
    );
    let mut rest = Vec::new();
    assert_eq!(silent.read_to_end(&mut rest).await.unwrap_or(0), 0);
    let timed_out =
        r#"isthmus_http_connections_timed_out_total{listener="api_https",timeout="tls_handshake"}"#;
    assert_eq!(metric(&agent, timed_out).await, 1);
    // A client that does say hello is served.
    assert!(https_answers(&agent, addr).await);
    agent.agent.shutdown().await.unwrap();
}
