//! The topology view end to end: two peered clusters with real sidecars,
//! a real Prometheus scraping both agents and every sidecar, cluster-01's
//! agent configured with it (`--ui-metrics-base-url`), cluster-02's not.
//! `GET /v1/internal/ui/topology` and the `#/topology` page in headless
//! Chromium show frontend (cluster-02) → backend with a live rate, a denied
//! caller as a denied edge, and, without a provider, edges marked "no
//! metrics".

// Shared with tests/ui.rs; this test uses part of it.
#[allow(dead_code)]
mod browser;

use browser::{screenshot_path, tid, Browser};
use isthmus_tests::api::get as api_get;
use isthmus_tests::apps::{get, http_app};
use isthmus_tests::cluster::{establish_peering, export_backend_to_cluster_02, Cluster};
use isthmus_tests::process::AgentProcess;
use isthmus_tests::prometheus::{PrometheusProcess, ScrapeJob};
use isthmus_tests::proxy_process::ProxyProcess;
use isthmus_tests::{eventually, WAIT};
use serde_json::{json, Value};

/// The edge `source` (at `source_peer`) → `destination` (ours), if drawn.
fn edge<'t>(
    topology: &'t Value,
    source: &str,
    source_peer: &str,
    destination: &str,
) -> Option<&'t Value> {
    topology["Edges"].as_array()?.iter().find(|e| {
        e["Source"]["Name"] == source
            && e["Source"]["Peer"] == source_peer
            && e["Destination"]["Name"] == destination
    })
}

/// Sends requests through `upstream` until dropped, so that rates over
/// Prometheus's window stay above zero while the test looks.
fn keep_calling(upstream: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            every.tick().await;
            let _ = get(&upstream, "/topology").await;
        }
    })
}

#[tokio::test]
async fn topology_shows_live_cross_cluster_edges_from_a_real_prometheus() {
    // The browser first: without Chromium the test fails at once.
    let browser = Browser::start().await;
    let prometheus = PrometheusProcess::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start_with(
        "cluster-01",
        dir.path(),
        &["--ui-metrics-base-url", &prometheus.url],
    )
    .await;
    let c2 = Cluster::start("cluster-02", dir.path()).await;
    establish_peering(&c1, &c2).await;

    let backend = export_backend_to_cluster_02(&c1).await;
    // frontend may call backend; intruder is named, and denied.
    isthmus_tests::api::put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": [
            {"Name": "frontend", "Peer": "cluster-02", "Action": "allow"},
            {"Name": "intruder", "Peer": "cluster-02", "Action": "deny"}]}),
    )
    .await;
    let app = http_app("caller").await.to_string();
    let frontend = ProxyProcess::spawn(
        &c2.agent.url(),
        "frontend",
        &app,
        &["backend@cluster-01"],
        &[],
    );
    let intruder = ProxyProcess::spawn(
        &c2.agent.url(),
        "intruder",
        &app,
        &["backend@cluster-01"],
        &[],
    );
    eventually("frontend reaches backend across the peering", || async {
        matches!(
            get(frontend.upstream("backend@cluster-01"), "/").await,
            Ok((200, _, _))
        )
        .then_some(())
    })
    .await;
    let _calls = keep_calling(frontend.upstream("backend@cluster-01").to_owned());
    let _denied = keep_calling(intruder.upstream("backend@cluster-01").to_owned());

    // Prometheus scrapes both agents and every sidecar's admin port.
    prometheus
        .reconfigure(&[
            ScrapeJob::new(
                "isthmus-agents",
                [c1.agent.http_addr.clone(), c2.agent.http_addr.clone()],
            ),
            ScrapeJob::new(
                "isthmus-sidecars",
                [
                    backend.admin.clone(),
                    frontend.admin.clone(),
                    intruder.admin.clone(),
                ],
            ),
        ])
        .await;
    prometheus.wait_for_targets_up(5).await;

    let topology = eventually(
        "a live rate on frontend (cluster-02) -> backend and denials of intruder",
        || async {
            let (topology, _) = c1
                .client
                .get_json::<Value>("/v1/internal/ui/topology")
                .await
                .ok()?;
            let allowed = edge(&topology, "frontend", "cluster-02", "backend")?;
            let denied = edge(&topology, "intruder", "cluster-02", "backend")?;
            let live = allowed["Metrics"]["RequestRate"].as_f64()? > 0.0
                && denied["Metrics"]["DeniedRate"].as_f64()? > 0.0;
            live.then_some(topology)
        },
    )
    .await;
    assert_eq!(topology["MetricsProvider"], "prometheus");
    assert_eq!(topology["MetricsStatus"], "ok");
    assert_eq!(topology["Datacenter"], "cluster-01");
    let allowed = edge(&topology, "frontend", "cluster-02", "backend").unwrap();
    assert_eq!(allowed["Intention"], "allow");
    assert_eq!(allowed["Reasons"], json!(["intention", "metrics"]));
    assert_eq!(allowed["Metrics"]["SuccessRate"], 1.0, "{allowed}");
    assert!(
        allowed["Metrics"]["P99LatencySeconds"].as_f64().unwrap() > 0.0,
        "{allowed}"
    );
    let denied = edge(&topology, "intruder", "cluster-02", "backend").unwrap();
    assert_eq!(denied["Intention"], "deny");
    let nodes = topology["Nodes"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n["Name"] == "backend" && n["Peer"] == "" && n["Sidecars"] == 1),
        "{nodes:?}"
    );

    // cluster-01's page draws the edge with its figures, the denied one
    // dashed red.
    let ui = browser.first_window().await;
    ui.goto(&format!("{}/ui/#/topology", c1.agent.url())).await;
    ui.wait_text(&tid("topology-metrics-status"), |t| {
        t.contains("prometheus")
    })
    .await;
    let rows = ui
        .wait_text(&tid("topology-edges"), |t| {
            t.lines().any(|l| {
                l.contains("frontend (cluster-02)") && l.contains("req/s") && l.contains("100.0%")
            })
        })
        .await;
    assert!(
        rows.lines().any(|l| l.contains("intruder (cluster-02)")
            && l.contains("deny")
            && l.contains("denied")),
        "{rows}"
    );
    let allowed_edge = ui
        .wait_text(&tid("topology-edge-frontend (cluster-02)->backend"), |t| {
            t.contains("req/s")
        })
        .await;
    assert!(allowed_edge.contains("p99"), "{allowed_edge}");
    ui.wait_text(&tid("topology-edge-intruder (cluster-02)->backend"), |t| {
        t.contains("denied")
    })
    .await;
    ui.screenshot(&screenshot_path("topology.png")).await;

    // cluster-02 has no metrics provider: its edges come from the sidecars'
    // upstreams and say "no metrics".
    let (theirs, _) = api_get(&c2.client, "/v1/internal/ui/topology").await;
    assert_eq!(theirs["MetricsStatus"], "no metrics provider configured");
    let upstream = theirs["Edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["Source"]["Name"] == "frontend"
                && e["Destination"] == json!({"Name": "backend", "Peer": "cluster-01"})
        })
        .unwrap_or_else(|| panic!("no upstream edge: {theirs}"));
    assert_eq!(upstream["Reasons"], json!(["upstream"]));
    assert_eq!(upstream["Metrics"], Value::Null);
    ui.goto(&format!("{}/ui/#/topology", c2.agent.url())).await;
    ui.wait_text(&tid("topology-metrics-status"), |t| {
        t.contains("no metrics provider configured")
    })
    .await;
    ui.wait_text(&tid("topology-edges"), |t| {
        t.lines().any(|l| {
            l.contains("frontend") && l.contains("backend (cluster-01)") && l.contains("no metrics")
        })
    })
    .await;
    ui.screenshot(&screenshot_path("topology-no-metrics.png"))
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_failing_prometheus_leaves_the_edges_with_no_metrics_and_says_why() {
    let closed = isthmus_testkit::net::closed_addr().await;
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--ui-metrics-base-url",
        &format!("http://{closed}"),
    ]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    isthmus_tests::api::put(
        &client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "api", "Sources": [{"Name": "web", "Action": "allow"}]}),
    )
    .await;
    let started = tokio::time::Instant::now();
    let (topology, _) = api_get(&client, "/v1/internal/ui/topology").await;
    assert!(started.elapsed() < WAIT);
    let status = topology["MetricsStatus"].as_str().unwrap();
    assert!(status.starts_with("metrics provider"), "{status}");
    let edge = edge(&topology, "web", "", "api").unwrap();
    assert_eq!(edge["Metrics"], Value::Null);
    assert_eq!(edge["Intention"], "allow");
}

#[tokio::test]
async fn bad_ui_settings_stop_the_agent_with_the_reason() {
    let error = AgentProcess::try_spawn(&["--dev", "--ui-metrics-provider", "grafana"])
        .err()
        .expect("the agent refuses an unknown provider");
    assert!(
        error.contains("--ui-metrics-provider: unsupported metrics provider \"grafana\""),
        "{error}"
    );
    let error = AgentProcess::try_spawn(&["--dev", "--ui-metrics-base-url", "prometheus:9090"])
        .err()
        .expect("the agent refuses a base URL without a scheme");
    assert!(error.contains("--ui-metrics-base-url: "), "{error}");
}

#[tokio::test]
async fn the_topology_shows_only_services_the_token_may_read() {
    const MANAGEMENT: &str = "2b7c6a1e-0f5d-4e8a-9c3b-5d1e7f9a0b21";
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        MANAGEMENT,
    ]);
    let addr: std::net::SocketAddr = agent.http_addr.parse().unwrap();
    let as_token = |secret: &str| vec![format!("X-Consul-Token: {secret}")];
    let call = |method: &'static str, path: &'static str, secret: String, body: Option<Value>| async move {
        let answer =
            isthmus_tests::api::raw(addr, method, path, &as_token(&secret), body.as_ref()).await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
        answer.json()
    };
    for (destination, action) in [("api", "allow"), ("secret", "deny")] {
        call(
            "PUT",
            "/v1/config",
            MANAGEMENT.into(),
            Some(json!({"Kind": "service-intentions", "Name": destination,
                "Sources": [{"Name": "web", "Action": action}]})),
        )
        .await;
    }
    call(
        "PUT",
        "/v1/acl/policy",
        MANAGEMENT.into(),
        Some(json!({"Name": "web-api", "Rules": "service \"web\" { policy = \"read\" }\nservice \"api\" { policy = \"read\" }"})),
    )
    .await;
    let token = call(
        "PUT",
        "/v1/acl/token",
        MANAGEMENT.into(),
        Some(json!({"Policies": [{"Name": "web-api"}]})),
    )
    .await;
    let secret = token["SecretID"].as_str().unwrap().to_owned();

    let everything = call("GET", "/v1/internal/ui/topology", MANAGEMENT.into(), None).await;
    assert!(
        edge(&everything, "web", "", "secret").is_some(),
        "{everything}"
    );
    let narrowed = call("GET", "/v1/internal/ui/topology", secret, None).await;
    assert!(edge(&narrowed, "web", "", "api").is_some(), "{narrowed}");
    assert!(edge(&narrowed, "web", "", "secret").is_none(), "{narrowed}");
    assert!(
        !narrowed["Nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Name"] == "secret"),
        "{narrowed}"
    );
}
