//! The Peers page's gateway column and facts, in a real headless Chromium
//! against two peered clusters: the peer's gateway ALIVE with a latency,
//! DEAD (with the probe's error on the detail) once it hangs, while the
//! peering is still ACTIVE, and ALIVE again.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages.

// The shared browser driver; this test needs only part of it.
#[allow(dead_code)]
mod browser;

use browser::{screenshot_path, tid, Browser};
use isthmus_tests::cluster::peered_clusters_with;

fn cell(peer: &str, cell: &str) -> String {
    format!(
        "tr[data-testid=\"peer-row\"][data-peer=\"{peer}\"] {}",
        tid(cell)
    )
}

#[tokio::test]
async fn the_peers_page_shows_a_hung_peer_gateway_dead() {
    let browser = Browser::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A long heartbeat keeps the stream ACTIVE while the probes fail.
    let (c1, c2) = peered_clusters_with(
        dir.path(),
        &[
            "--peering-heartbeat",
            "30s",
            "--peering-gateway-probe-interval",
            "200ms",
        ],
    )
    .await;
    let ui = browser.first_window().await;
    ui.goto(&format!("{}/ui/#/peers", c2.agent.url())).await;
    ui.wait_text_eq(&cell("cluster-01", "gateway-state"), "ALIVE")
        .await;
    ui.wait_text(&cell("cluster-01", "gateway-latency"), |t| {
        t.ends_with("ms")
    })
    .await;
    ui.screenshot(&screenshot_path("peers-gateway-alive.png"))
        .await;

    c1.gateway.freeze();
    ui.wait_text_eq(&cell("cluster-01", "gateway-state"), "DEAD")
        .await;
    ui.wait_gone(&cell("cluster-01", "gateway-latency")).await;
    assert_eq!(
        ui.text(&cell("cluster-01", "peer-state")).await.unwrap(),
        "ACTIVE",
        "the stream has not timed out"
    );
    ui.screenshot(&screenshot_path("peers-gateway-dead.png"))
        .await;

    // The detail says why.
    ui.goto(&format!("{}/ui/#/peers/cluster-01", c2.agent.url()))
        .await;
    ui.wait_text_eq(
        &format!("{} {}", tid("detail-gateway"), tid("gateway-state")),
        "DEAD",
    )
    .await;
    ui.wait_text(&tid("detail-gateway-error"), |t| {
        t.contains("no answer within 200ms")
    })
    .await;
    ui.screenshot(&screenshot_path("peer-detail-gateway-dead.png"))
        .await;

    c1.gateway.thaw();
    ui.wait_text_eq(
        &format!("{} {}", tid("detail-gateway"), tid("gateway-state")),
        "ALIVE",
    )
    .await;
    ui.wait_text_eq(&tid("detail-gateway-error"), "—").await;
    browser.close().await;
}
