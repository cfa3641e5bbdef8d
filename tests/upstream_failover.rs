//! The resolved upstream chain across a peering: cluster-02's frontend calls
//! its local `backend`, fails over to cluster-01's exported `backend` when
//! the local one turns critical and comes back when it recovers, under
//! continuous requests; a redirect to the peer; `isthmus upstream explain`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use isthmus_tests::api::put;
use isthmus_tests::apps::{get, http_app, parse};
use isthmus_tests::cluster::{export_backend_to_cluster_02, peered_clusters, Cluster};
use isthmus_tests::process::{stderr, stdout, AgentProcess};
use isthmus_tests::proxy_process::ProxyProcess;
use isthmus_tests::{eventually, WAIT};
use serde_json::{json, Value};

/// The chosen target of `upstream`, as the sidecar's `/config` shows it.
async fn chosen_target(proxy: &ProxyProcess, upstream: &str) -> Option<String> {
    let (status, body, _) = get(proxy.admin.trim_start_matches("http://"), "/config")
        .await
        .ok()?;
    if status != 200 {
        return None;
    }
    parse(&body)["upstreams"]
        .as_array()?
        .iter()
        .find(|u| u["upstream"] == upstream)?["target"]
        .as_str()
        .map(str::to_owned)
}

async fn wait_for_target(proxy: &ProxyProcess, upstream: &str, target: &str) {
    eventually(&format!("{upstream} resolved to {target}"), || async {
        chosen_target(proxy, upstream)
            .await
            .filter(|chosen| chosen == target)
    })
    .await;
}

fn explain(cluster: &Cluster, service: &str) -> String {
    let output = cluster.cli(&["upstream", "explain", service]);
    assert!(output.status.success(), "explain: {}", stderr(&output));
    stdout(&output)
}

/// A switch the test flips on the local backend's sidecar: a TTL check
/// that fails or passes the instance, as an operator's would.
async fn add_switch(cluster: &Cluster) {
    eventually("the switch check is registered", || async {
        let response = isthmus_tests::api::send(
            &cluster.client,
            http::Method::PUT,
            "/v1/agent/check/register",
            Some(json!({"Name": "switch", "CheckID": "switch",
                "ServiceID": "backend-sidecar-proxy", "TTL": "1h", "Status": "passing"})),
        )
        .await;
        (response.status == 200).then_some(())
    })
    .await;
}

async fn flip(cluster: &Cluster, how: &str) {
    put(
        &cluster.client,
        &format!("/v1/agent/check/{how}/switch"),
        json!({}),
    )
    .await;
}

/// What the request loop saw in one phase.
#[derive(Default)]
struct Phase {
    answered_by: Vec<String>,
    failures: Vec<String>,
}

#[tokio::test]
async fn fails_over_to_the_peer_and_back_under_continuous_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;
    let _remote = export_backend_to_cluster_02(&c1).await;

    // cluster-02 has its own backend, preferred while healthy.
    let local_app = http_app("local-backend").await.to_string();
    let _local = ProxyProcess::spawn(&c2.agent.url(), "backend", &local_app, &[], &[]);
    c2.register_passing("backend", 1).await;
    add_switch(&c2).await;
    put(
        &c2.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend",
            "Sources": [{"Name": "frontend", "Action": "allow"}]}),
    )
    .await;
    put(
        &c2.client,
        "/v1/config",
        json!({"Kind": "service-resolver", "Name": "backend",
            "Failover": {"*": {"Targets": [{"Peer": "cluster-01"}]}}}),
    )
    .await;
    let caller_app = http_app("caller").await.to_string();
    let frontend = ProxyProcess::spawn(&c2.agent.url(), "frontend", &caller_app, &["backend"], &[]);
    let through = frontend.upstream("backend").to_owned();
    wait_for_target(&frontend, "backend", "backend").await;
    eventually("frontend reaches its local backend", || async {
        let (status, body, _) = get(&through, "/").await.ok()?;
        (status == 200 && parse(&body)["app"] == "local-backend").then_some(())
    })
    .await;
    let text = explain(&c2, "backend");
    assert!(text.contains("Target:    backend\n"), "{text}");
    assert!(
        text.contains("  1. backend             chosen   local healthy instances\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  2. backend@cluster-01  skipped  not needed: backend has healthy instances\n"
        ),
        "{text}"
    );

    // Requests run without pause; each is filed under the phase it started in.
    // Phases: 0 local, 1 failing (not yet propagated), 2 on the peer,
    // 3 recovering (not yet propagated), 4 local again.
    let phase = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<Vec<Phase>>> =
        Arc::new(Mutex::new((0..5).map(|_| Phase::default()).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let requests = tokio::spawn({
        let (phase, seen, stop, through) =
            (phase.clone(), seen.clone(), stop.clone(), through.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let at = phase.load(Ordering::SeqCst);
                let outcome = get(&through, "/call").await;
                let mut seen = seen.lock().unwrap();
                match outcome {
                    Ok((200, body, _)) => {
                        let answer = parse(&body);
                        seen[at]
                            .answered_by
                            .push(answer["app"].as_str().unwrap_or("?").to_owned());
                        if answer["app"] == "backend" {
                            // The peer's sidecar sees the caller's real identity and peering.
                            let xfcc = answer["xfcc"].as_str().unwrap_or_default();
                            assert!(xfcc.contains("/dc/cluster-02/svc/frontend"), "{xfcc}");
                        }
                    }
                    other => seen[at].failures.push(format!("{other:?}")),
                }
            }
        }
    });
    let in_phase = |wanted: usize, count: usize| {
        let seen = seen.clone();
        async move {
            eventually(&format!("{count} requests in phase {wanted}"), || async {
                (seen.lock().unwrap()[wanted].answered_by.len() >= count).then_some(())
            })
            .await
        }
    };
    in_phase(0, 5).await;

    phase.store(1, Ordering::SeqCst);
    flip(&c2, "fail").await;
    wait_for_target(&frontend, "backend", "backend@cluster-01").await;
    phase.store(2, Ordering::SeqCst);
    in_phase(2, 20).await;
    let text = explain(&c2, "backend");
    assert!(text.starts_with("Upstream:  backend\n"), "{text}");
    assert!(text.contains("Target:    backend@cluster-01\n"), "{text}");
    assert!(
        text.contains("  1. backend             skipped  no healthy sidecar proxy for service backend in cluster cluster-02\n"),
        "{text}"
    );
    assert!(
        text.contains("  2. backend@cluster-01  chosen   failover target 1\n"),
        "{text}"
    );
    // The same, as frontend's sidecar has the upstream registered.
    let output = c2.cli(&["upstream", "explain", "backend", "-sidecar-for", "frontend"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), text);
    let output = c2.cli(&["upstream", "explain", "api", "-sidecar-for", "frontend"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains(
            "The sidecar proxy frontend-sidecar-proxy has no upstream \"api\" (it has: backend)"
        ),
        "{}",
        stderr(&output)
    );
    let output = c2.cli(&["upstream", "explain", "backend", "-sidecar-for", "nobody"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("No sidecar proxy registered for service ID \"nobody\""),
        "{}",
        stderr(&output)
    );

    phase.store(3, Ordering::SeqCst);
    flip(&c2, "pass").await;
    wait_for_target(&frontend, "backend", "backend").await;
    phase.store(4, Ordering::SeqCst);
    in_phase(4, 20).await;
    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(WAIT, requests).await.unwrap().unwrap();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for (at, answers) in [(2, "backend"), (4, "local-backend")] {
        eprintln!(
            "phase {at}: {} requests answered, {} failed",
            seen[at].answered_by.len(),
            seen[at].failures.len()
        );
        assert!(
            seen[at].failures.is_empty(),
            "phase {at}: {:?}",
            seen[at].failures
        );
        assert!(
            seen[at].answered_by.iter().all(|app| app == answers),
            "phase {at} answered by {:?}",
            seen[at].answered_by
        );
    }

    // The outbound metrics name each target the requests went to.
    let (_, metrics, _) = get(frontend.admin.trim_start_matches("http://"), "/metrics")
        .await
        .unwrap();
    for target in ["backend", "backend@cluster-01"] {
        let series =
            format!("outbound_target_requests_total{{target=\"{target}\",upstream=\"backend\"}}");
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn a_redirect_sends_every_call_to_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;
    let _remote = export_backend_to_cluster_02(&c1).await;
    put(
        &c2.client,
        "/v1/config",
        json!({"Kind": "service-resolver", "Name": "backend",
            "Redirect": {"Service": "backend", "Peer": "cluster-01"}}),
    )
    .await;
    let caller_app = http_app("caller").await.to_string();
    let frontend = ProxyProcess::spawn(&c2.agent.url(), "frontend", &caller_app, &["backend"], &[]);
    wait_for_target(&frontend, "backend", "backend@cluster-01").await;
    let (status, body, _) = get(frontend.upstream("backend"), "/redirected")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(parse(&body)["app"], "backend");

    let text = explain(&c2, "backend");
    assert!(
        text.contains(
            "  1. backend@cluster-01  chosen   redirected by the service-resolver of backend\n"
        ),
        "{text}"
    );
    let output = c2.cli(&["upstream", "explain", "backend", "-format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let view: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(view["Target"], "backend@cluster-01");
    assert_eq!(view["Chain"][0]["Chosen"], true);

    // The export withdrawn: nothing healthy to redirect to, and why.
    let deleted = c1.cli(&[
        "config",
        "delete",
        "-kind",
        "exported-services",
        "-name",
        "default",
    ]);
    assert!(deleted.status.success());
    let text = eventually("explain shows the redirect target unusable", || async {
        Some(explain(&c2, "backend")).filter(|t| t.contains("skipped"))
    })
    .await;
    assert!(text.contains("Target:    none\n"), "{text}");
    assert!(
        text.contains("  1. backend@cluster-01  skipped  no healthy instance of backend is imported from peer cluster-01\n"),
        "{text}"
    );
}

/// The `isthmus` CLI against `agent` with `token` in `ISTHMUS_HTTP_TOKEN`.
fn cli_as(agent: &AgentProcess, token: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(isthmus_tests::isthmus_bin())
        .args(args)
        .env("ISTHMUS_HTTP_ADDR", &agent.http_addr)
        .env("ISTHMUS_HTTP_TOKEN", token)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("isthmus CLI runs");
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    stdout(&output)
}

fn secret_of(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("SecretID:"))
        .unwrap_or_else(|| panic!("no SecretID in {output}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn explain_skips_targets_the_token_may_not_read() {
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
    ]);
    let management = secret_of(&cli_as(&agent, "", &["acl", "bootstrap"]));
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    let written = isthmus_tests::api::send(
        &client,
        http::Method::PUT,
        &format!("/v1/config?token={management}"),
        Some(json!({"Kind": "service-resolver", "Name": "backend",
            "Failover": {"*": {"Targets": [{"Service": "secret"}, {"Service": "spare"}]}}})),
    )
    .await;
    assert_eq!(
        written.status,
        200,
        "{}",
        isthmus_tests::api::text(&written)
    );
    cli_as(
        &agent,
        &management,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "reader",
            "-rules",
            "service \"backend\" { policy = \"read\" }\nservice \"spare\" { policy = \"read\" }",
        ],
    );
    let reader = secret_of(&cli_as(
        &agent,
        &management,
        &["acl", "token", "create", "-policy-name", "reader"],
    ));

    let text = cli_as(&agent, &reader, &["upstream", "explain", "backend"]);
    assert!(text.contains("Target:    none\n"), "{text}");
    assert!(
        text.contains(
            "  1. backend  skipped  no healthy sidecar proxy for service backend in cluster "
        ),
        "{text}"
    );
    assert!(
        text.contains("  2. secret   skipped  skipped: the token may not read service secret\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  3. spare    skipped  no healthy sidecar proxy for service spare in cluster "
        ),
        "{text}"
    );
    // The management token reads every target.
    let text = cli_as(&agent, &management, &["upstream", "explain", "backend"]);
    assert!(
        text.contains(
            "  2. secret   skipped  no healthy sidecar proxy for service secret in cluster "
        ),
        "{text}"
    );
}
