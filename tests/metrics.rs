//! Prometheus metrics across the mesh: the agents' peering figures follow a
//! peering from ACTIVE through an export to its deletion, and `promtool`
//! accepts the expositions of agents, gateways and sidecars and the
//! example scrape config.
//!
//! These tests need `promtool` (Debian: `apt-get install prometheus`); they
//! fail, rather than skip, without it.

use std::path::PathBuf;

use http_body_util::BodyExt;
use isthmus_testkit::metrics::{series_value, sum_series};
use isthmus_tests::apps::{get, http_app};
use isthmus_tests::cluster::{export_backend_to_cluster_02, peered_clusters, Cluster};
use isthmus_tests::eventually;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// GET `http://<addr><path>`: status, Content-Type and body.
async fn fetch(addr: &str, path: &str) -> (u16, String, String) {
    let addr = addr.trim_start_matches("http://");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let response = tokio::time::timeout(isthmus_tests::WAIT, client.get(uri))
        .await
        .unwrap_or_else(|_| panic!("GET {addr}{path} timed out"))
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// An agent's Prometheus exposition, from Consul's path.
async fn agent_metrics(cluster: &Cluster) -> String {
    let (status, content_type, body) = fetch(
        &cluster.agent.http_addr,
        "/v1/agent/metrics?format=prometheus",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, PROMETHEUS_TEXT);
    body
}

/// Waits until `cluster`'s agent shows `series` at `expected`.
async fn wait_for_series(cluster: &Cluster, series: &str, expected: f64) -> String {
    eventually(
        &format!("{}: {series} {expected}", cluster.name),
        || async {
            let text = agent_metrics(cluster).await;
            (series_value(&text, series) == Some(expected)).then_some(text)
        },
    )
    .await
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("promtool"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "promtool not found on PATH or in /usr/bin: these tests lint the metrics with it; \
             install it with `apt-get install prometheus` (Debian/Ubuntu)"
        )
    })
}

/// `promtool check metrics` on `text`; a lint finding (non-zero exit) fails.
async fn check_metrics(what: &str, text: &str) {
    let mut child = tokio::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics on {what} exited {}:\n{}{}\n--- exposition ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test]
async fn agent_metrics_follow_a_peering_from_active_to_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;

    // Healthy and ACTIVE on both sides.
    for (cluster, peer) in [(&c1, "cluster-02"), (&c2, "cluster-01")] {
        let text = wait_for_series(
            cluster,
            &format!("isthmus_peering_healthy{{peer=\"{peer}\"}}"),
            1.0,
        )
        .await;
        let state = |s: &str| {
            series_value(
                &text,
                &format!("isthmus_peering_state{{peer=\"{peer}\",state=\"{s}\"}}"),
            )
        };
        assert_eq!(state("ACTIVE"), Some(1.0), "{text}");
        assert_eq!(state("FAILING"), Some(0.0), "{text}");
        let heartbeat = series_value(
            &text,
            &format!("isthmus_peering_last_heartbeat_timestamp_seconds{{peer=\"{peer}\"}}"),
        )
        .expect("a heartbeat timestamp");
        assert!(heartbeat > 1.6e9, "{text}");
        assert!(
            series_value(&text, "isthmus_build_info{version=\"0.1.0\"}").is_some(),
            "{text}"
        );
        assert!(
            series_value(&text, "process_start_time_seconds").is_some(),
            "{text}"
        );
    }

    // cluster-01 exports backend to cluster-02.
    c1.register_passing("backend", 1).await;
    c1.export("backend", "cluster-02").await;
    let c1_text = wait_for_series(
        &c1,
        "isthmus_peering_exported_services{peer=\"cluster-02\"}",
        1.0,
    )
    .await;
    assert_eq!(
        series_value(
            &c1_text,
            "isthmus_peering_imported_services{peer=\"cluster-02\"}"
        ),
        Some(0.0)
    );
    // consul (the agent's own), mesh-gateway and backend.
    assert_eq!(
        series_value(&c1_text, "isthmus_catalog_services"),
        Some(3.0)
    );
    let c2_text = wait_for_series(
        &c2,
        "isthmus_peering_imported_services{peer=\"cluster-01\"}",
        1.0,
    )
    .await;
    assert_eq!(
        series_value(
            &c2_text,
            "isthmus_peering_exported_services{peer=\"cluster-01\"}"
        ),
        Some(0.0)
    );

    // Replication counters on both ends of the stream.
    let messages = "isthmus_peering_replication_messages_total";
    let c1_text = eventually("cluster-01 counts the service it sent", || async {
        let text = agent_metrics(&c1).await;
        let sent = sum_series(
            &text,
            messages,
            &[
                r#"peer="cluster-02""#,
                r#"direction="sent""#,
                r#"type="service""#,
            ],
        );
        (sent >= 1.0).then_some(text)
    })
    .await;
    for (direction, kind) in [
        ("sent", "heartbeat"),
        ("received", "heartbeat"),
        ("sent", "trust_bundle"),
        ("received", "open"),
    ] {
        let count = sum_series(
            &c1_text,
            messages,
            &[
                r#"peer="cluster-02""#,
                &format!("direction=\"{direction}\""),
                &format!("type=\"{kind}\""),
            ],
        );
        assert!(count >= 1.0, "cluster-01 {direction} {kind}: {c1_text}");
    }
    let c2_text = agent_metrics(&c2).await;
    for (direction, kind) in [
        ("received", "service"),
        ("received", "exported_services"),
        ("sent", "open"),
        ("sent", "heartbeat"),
    ] {
        let count = sum_series(
            &c2_text,
            messages,
            &[
                r#"peer="cluster-01""#,
                &format!("direction=\"{direction}\""),
                &format!("type=\"{kind}\""),
            ],
        );
        assert!(count >= 1.0, "cluster-02 {direction} {kind}: {c2_text}");
    }
    // Error series exist from the first session on, so rates work.
    assert!(
        series_value(
            &c2_text,
            r#"isthmus_peering_replication_errors_total{peer="cluster-01",reason="silent"}"#
        )
        .is_some(),
        "{c2_text}"
    );
    assert!(
        sum_series(
            &c2_text,
            "isthmus_http_requests_total",
            &[r#"method="GET""#, r#"code="200""#]
        ) >= 1.0,
        "{c2_text}"
    );
    check_metrics("cluster-01's agent (peered)", &c1_text).await;
    check_metrics("cluster-02's agent (peered)", &c2_text).await;

    // `/metrics` is the same exposition; without `format` the JSON summary.
    let (status, content_type, text) = fetch(&c1.agent.http_addr, "/metrics").await;
    assert_eq!((status, content_type.as_str()), (200, PROMETHEUS_TEXT));
    assert!(
        text.contains("isthmus_peering_healthy{peer=\"cluster-02\"}"),
        "{text}"
    );
    let (status, content_type, body) = fetch(&c1.agent.http_addr, "/v1/agent/metrics").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let summary: Value = serde_json::from_str(&body).unwrap();
    assert!(summary["Timestamp"]
        .as_str()
        .unwrap()
        .ends_with(" +0000 UTC"));
    let healthy = summary["Gauges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["Name"] == "isthmus_peering_healthy" && g["Labels"]["peer"] == "cluster-02")
        .unwrap_or_else(|| panic!("no healthy gauge in {summary}"));
    assert_eq!(healthy["Value"], 1.0);
    assert!(summary["Counters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["Name"] == messages));
    let (status, _, body) = fetch(&c1.agent.http_addr, "/v1/agent/metrics?format=yaml").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("format=prometheus"), "{body}");

    // cluster-01 deletes the peering: its series for cluster-02 vanish,
    // counters included; cluster-02 keeps a TERMINATED peering, unhealthy.
    let deleted = c1.cli(&["peering", "delete", "-name", "cluster-02"]);
    assert!(deleted.status.success());
    let c1_text = eventually("cluster-01 forgets cluster-02's series", || async {
        let text = agent_metrics(&c1).await;
        (!text.contains(r#"peer="cluster-02""#)).then_some(text)
    })
    .await;
    assert!(!c1_text.contains("isthmus_peering_healthy"), "{c1_text}");
    let c2_text = wait_for_series(
        &c2,
        r#"isthmus_peering_state{peer="cluster-01",state="TERMINATED"}"#,
        1.0,
    )
    .await;
    for series in [
        r#"isthmus_peering_healthy{peer="cluster-01"}"#,
        r#"isthmus_peering_imported_services{peer="cluster-01"}"#,
        r#"isthmus_peering_exported_services{peer="cluster-01"}"#,
        r#"isthmus_peering_state{peer="cluster-01",state="ACTIVE"}"#,
    ] {
        assert_eq!(
            series_value(&c2_text, series),
            Some(0.0),
            "{series} in {c2_text}"
        );
    }
    // Deleting it there too removes the rest.
    let deleted = c2.cli(&["peering", "delete", "-name", "cluster-01"]);
    assert!(deleted.status.success());
    eventually("cluster-02 forgets cluster-01's series", || async {
        let text = agent_metrics(&c2).await;
        (!text.contains(r#"peer="cluster-01""#)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn promtool_accepts_agents_gateways_sidecars_and_the_scrape_config() {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/prometheus.yml");
    let output = tokio::process::Command::new(promtool())
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .await
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check config {}: {}{}",
        config.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Traffic across the peering, so that the gateways' passthrough and the
    // sidecars' request and latency series exist when linted.
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;
    let backend = export_backend_to_cluster_02(&c1).await;
    let app = http_app("frontend").await.to_string();
    let frontend = ProxyProcess::spawn(
        &c2.agent.url(),
        "frontend",
        &app,
        &["backend@cluster-01"],
        &[],
    );
    eventually("frontend reaches backend across the peering", || async {
        match get(frontend.upstream("backend@cluster-01"), "/metrics-test").await {
            Ok((200, _, _)) => Some(()),
            _ => None,
        }
    })
    .await;

    let mut expositions = vec![
        ("cluster-01's agent".to_owned(), agent_metrics(&c1).await),
        ("cluster-02's agent".to_owned(), agent_metrics(&c2).await),
    ];
    for (what, admin) in [
        ("cluster-01's gateway", &c1.gateway.admin),
        ("cluster-02's gateway", &c2.gateway.admin),
        ("backend's sidecar", &backend.admin),
        ("frontend's sidecar", &frontend.admin),
    ] {
        let (status, content_type, text) = fetch(admin, "/metrics").await;
        assert_eq!(status, 200, "{what}: {text}");
        assert_eq!(content_type, PROMETHEUS_TEXT, "{what}");
        assert!(text.contains("isthmus_build_info{"), "{what}: {text}");
        assert!(text.contains("process_cpu_seconds_total"), "{what}: {text}");
        expositions.push((what.to_owned(), text));
    }
    let gateway = &expositions[2].1;
    assert!(
        gateway.contains(
            r#"gateway_passthrough_connections_total{peer="cluster-02",service="backend"}"#
        ),
        "{gateway}"
    );
    let frontend_text = &expositions[5].1;
    assert!(
        frontend_text.contains("response_latency_seconds_bucket{"),
        "{frontend_text}"
    );
    for (what, text) in &expositions {
        check_metrics(what, text).await;
    }
}
