//! The leader's probes of its peers' mesh gateways, on two real peered
//! clusters: `isthmus peering gateways` (table and JSON), the agent's
//! metrics, a peer gateway that hangs turning ALIVE false within three
//! probe periods while the stream (long heartbeat) still says ACTIVE, and
//! back; the series gone with the peering.

use std::time::{Duration, Instant};

use http::Method;
use isthmus_testkit::metrics::series_value;
use isthmus_tests::api::send;
use isthmus_tests::cluster::{peered_clusters_with, Cluster};
use isthmus_tests::eventually;
use isthmus_tests::process::{stderr, stdout};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const PROBE_INTERVAL: Duration = Duration::from_millis(300);

/// What `cluster` says of `peer`'s gateway (`GET /v1/internal/ui/peering-gateways`).
async fn gateway(cluster: &Cluster, peer: &str) -> Value {
    let response = send(
        &cluster.client,
        Method::GET,
        "/v1/internal/ui/peering-gateways",
        None,
    )
    .await;
    assert_eq!(response.status, 200);
    let all: Value = serde_json::from_slice(&response.body).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|g| g["Peer"] == peer)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn metrics(cluster: &Cluster) -> String {
    let response = send(
        &cluster.client,
        Method::GET,
        "/v1/agent/metrics?format=prometheus",
        None,
    )
    .await;
    assert_eq!(response.status, 200);
    String::from_utf8(response.body.to_vec()).unwrap()
}

fn gateways_cli(cluster: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["peering", "gateways"];
    all.extend_from_slice(args);
    let output = cluster.cli(&all);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// The CLI's row for `peer`, split into columns.
fn cli_row(cluster: &Cluster, peer: &str) -> Vec<String> {
    let text = gateways_cli(cluster, &[]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["PEER", "ALIVE", "SERVICES", "LATENCY"], "{text}");
    lines
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|row| row[0] == peer)
        .unwrap_or_else(|| panic!("no row for {peer} in {text}"))
}

#[tokio::test]
async fn a_hung_peer_gateway_turns_alive_false_before_the_stream_notices() {
    let dir = tempfile::tempdir().unwrap();
    // A 10s heartbeat: the stream needs 30s of silence to turn FAILING,
    // the probes (every 300ms) far less.
    let (c1, c2) = peered_clusters_with(
        dir.path(),
        &[
            "--peering-heartbeat",
            "10s",
            "--peering-gateway-probe-interval",
            "300ms",
        ],
    )
    .await;
    c1.register_passing("backend", 8080).await;
    c1.export("backend", "cluster-02").await;

    // cluster-02 (the dialer) probes cluster-01's gateway, and the other
    // way round.
    let alive = eventually(
        "cluster-02 sees cluster-01's gateway alive with backend imported",
        || async {
            let g = gateway(&c2, "cluster-01").await;
            (g["Alive"] == true && g["Services"] == 1).then_some(g)
        },
    )
    .await;
    assert!(alive["LatencyMs"].as_f64().unwrap() > 0.0, "{alive}");
    assert!(alive["LastError"].is_null(), "{alive}");
    assert_eq!(
        alive["Addresses"],
        serde_json::json!([c1.gateway.advertise])
    );
    OffsetDateTime::parse(alive["LastProbe"].as_str().unwrap(), &Rfc3339).unwrap();
    eventually("cluster-01 sees cluster-02's gateway alive", || async {
        (gateway(&c1, "cluster-02").await["Alive"] == true).then_some(())
    })
    .await;

    let row = cli_row(&c2, "cluster-01");
    assert_eq!(row[1], "true", "{row:?}");
    assert_eq!(row[2], "1", "{row:?}");
    assert!(
        row[3] == "<1ms" || row[3].ends_with("ms") && row[3] != "-",
        "{row:?}"
    );
    let json: Value = serde_json::from_str(&gateways_cli(&c2, &["-format", "json"])).unwrap();
    assert_eq!(json[0]["Peer"], "cluster-01", "{json}");
    assert_eq!(json[0]["Alive"], true, "{json}");

    let text = metrics(&c2).await;
    assert_eq!(
        series_value(&text, r#"isthmus_peering_gateway_alive{peer="cluster-01"}"#),
        Some(1.0),
        "{text}"
    );
    let probes = series_value(
        &text,
        r#"isthmus_peering_gateway_probe_duration_seconds_count{peer="cluster-01"}"#,
    )
    .unwrap_or(0.0);
    assert!(probes >= 1.0, "{text}");

    // cluster-01's gateway hangs: connections still open, nothing answers.
    let frozen_at = OffsetDateTime::now_utc();
    let frozen = Instant::now();
    c1.gateway.freeze();
    let dead = eventually("cluster-02 sees cluster-01's gateway dead", || async {
        let g = gateway(&c2, "cluster-01").await;
        (g["Alive"] == false).then_some(g)
    })
    .await;
    let noticed = frozen.elapsed();
    let probed_at = OffsetDateTime::parse(dead["LastProbe"].as_str().unwrap(), &Rfc3339).unwrap();
    let after_freeze: Duration = (probed_at - frozen_at).try_into().unwrap_or_default();
    // Within three periods of the gateway hanging (as the agent's clock
    // says: what the test's polling adds does not count).
    assert!(
        after_freeze <= PROBE_INTERVAL * 3,
        "dead after {after_freeze:?} (noticed by the test after {noticed:?}): {dead}"
    );
    assert!(
        dead["LastError"]
            .as_str()
            .unwrap()
            .contains("no answer within 300ms"),
        "{dead}"
    );
    // The stream has not timed out: the peering is still ACTIVE.
    assert_eq!(c2.peering("cluster-01").await.unwrap()["State"], "ACTIVE");
    assert_eq!(cli_row(&c2, "cluster-01")[1..], ["false", "1", "-"]);
    let text = metrics(&c2).await;
    assert_eq!(
        series_value(&text, r#"isthmus_peering_gateway_alive{peer="cluster-01"}"#),
        Some(0.0),
        "{text}"
    );
    assert!(
        c2.agent
            .logs()
            .text()
            .contains("the peer's mesh gateway does not answer probes"),
        "no log line for the dead gateway"
    );
    // cluster-02's own gateway still answers cluster-01's probes.
    assert_eq!(gateway(&c1, "cluster-02").await["Alive"], true);

    c1.gateway.thaw();
    eventually(
        "cluster-02 sees cluster-01's gateway alive again",
        || async { (gateway(&c2, "cluster-01").await["Alive"] == true).then_some(()) },
    )
    .await;
    assert_eq!(c2.peering("cluster-01").await.unwrap()["State"], "ACTIVE");
    assert!(c2
        .agent
        .logs()
        .text()
        .contains("the peer's mesh gateway answers probes again"));

    // Deleting the peering drops its probe series and its row.
    let deleted = c2.cli(&["peering", "delete", "-name", "cluster-01"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    eventually("cluster-01 gone from cluster-02's gateways", || async {
        gateway(&c2, "cluster-01").await.is_null().then_some(())
    })
    .await;
    let text = metrics(&c2).await;
    assert!(
        !text.contains(r#"isthmus_peering_gateway_alive{peer="cluster-01"}"#)
            && !text.contains(
                r#"isthmus_peering_gateway_probe_duration_seconds_count{peer="cluster-01"}"#
            ),
        "{text}"
    );
    assert_eq!(
        gateways_cli(&c2, &[]),
        "There are no peering connections.\n"
    );
}
