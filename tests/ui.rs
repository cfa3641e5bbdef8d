//! The web UI's Peers page, in a real headless Chromium: the seed's UI
//! steps (Peers → "Add peer connection" → "Generate token" in cluster-01,
//! "Establish peering" in cluster-02), the list and detail views, an
//! invalid token's error, and delete with confirmation (TERMINATED on the
//! other side). Plus the assets' headers over plain HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages; without them
//! the browser test fails and says so.

mod browser;

use browser::{screenshot_path, tid, wait_for, Browser, Window};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use isthmus_tests::api::{put, send, text};
use isthmus_tests::cluster::Cluster;
use isthmus_tests::TestAgent;
use serde_json::{json, Value};

/// Screenshots for people to look at (not compared): the Peers page, a
/// peer's detail in both clusters, and the dialog showing an API error.
const SCREENSHOT: &str = "peers.png";
const DETAIL_SCREENSHOT: &str = "peer-detail.png";
const IMPORTED_SCREENSHOT: &str = "peer-imported.png";
const ERROR_SCREENSHOT: &str = "establish-error.png";

fn row(peer: &str) -> String {
    format!("tr[data-testid=\"peer-row\"][data-peer=\"{peer}\"]")
}

fn row_cell(peer: &str, cell: &str) -> String {
    format!("{} {}", row(peer), tid(cell))
}

/// Opens the agent's UI at `/ui` (which redirects) and waits for the page
/// to know which cluster it shows.
async fn open_ui(window: &Window<'_>, cluster: &Cluster) {
    window.goto(&format!("{}/ui", cluster.agent.url())).await;
    let url = window.url().await;
    assert_eq!(
        url,
        format!("{}/ui/#/peers", cluster.agent.url()),
        "/ui redirects to /ui/ and the page routes to #/peers"
    );
    window
        .wait_text_eq(&tid("cluster-name"), &cluster.name)
        .await;
}

#[tokio::test]
async fn peers_page_generate_establish_inspect_and_delete() {
    // The browser first: without Chromium the test fails at once.
    let browser = Browser::start().await;
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let c2 = Cluster::start("cluster-02", dir.path()).await;
    let ui1 = browser.first_window().await;
    let ui2 = browser.new_window().await;

    open_ui(&ui1, &c1).await;
    ui1.wait_text(&tid("peers-empty"), |t| t.contains("No peers yet"))
        .await;

    // cluster-01: Peers → Add peer connection → Generate token for cluster-02.
    ui1.click(&tid("add-peer")).await;
    ui1.wait_text_eq(&tid("tab-generate"), "Generate token")
        .await;
    ui1.fill(&tid("generate-peer-name"), "cluster-02").await;
    ui1.click(&tid("generate-submit")).await;
    let token = wait_for("the generated token", || async {
        match ui1.value(&tid("generated-token")).await {
            Some(token) if !token.is_empty() => Ok(token),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(
        isthmus_api::peering::PeeringToken::decode(&token).is_ok(),
        "the textarea holds a whole token"
    );
    // Copy: the clipboard, or (no permission headless) the text selected.
    ui1.click(&tid("copy-token")).await;
    ui1.wait_text(&tid("copy-status"), |t| {
        t.starts_with("Copied") || t.starts_with("Selected")
    })
    .await;
    ui1.click(&tid("generate-done")).await;
    ui1.wait_gone(&tid("add-peer-dialog")).await;
    ui1.wait_text_eq(&row_cell("cluster-02", "peer-state"), "PENDING")
        .await;

    // cluster-02: Peers → Add peer connection → Establish peering.
    open_ui(&ui2, &c2).await;
    ui2.click(&tid("add-peer")).await;
    ui2.click(&tid("tab-establish")).await;
    ui2.fill(&tid("establish-peer-name"), "cluster-01").await;
    ui2.fill(&tid("establish-token"), &token).await;
    ui2.click(&tid("establish-submit")).await;
    ui2.wait_gone(&tid("add-peer-dialog")).await;
    ui2.wait_text(&tid("page-notice"), |t| t.contains("established"))
        .await;

    // Both sides ACTIVE, in both UIs, without reloading.
    ui2.wait_text_eq(&row_cell("cluster-01", "peer-state"), "ACTIVE")
        .await;
    ui1.wait_text_eq(&row_cell("cluster-02", "peer-state"), "ACTIVE")
        .await;
    for (ui, peer) in [(&ui1, "cluster-02"), (&ui2, "cluster-01")] {
        ui.wait_text(&row_cell(peer, "peer-heartbeat"), |t| {
            t == "just now" || t.ends_with("s ago")
        })
        .await;
    }

    // cluster-01 exports a service to cluster-02 (the UI does not export,
    // as in Consul): both lists count it, cluster-02 sees its health.
    put(
        &c1.client,
        "/v1/agent/service/register",
        json!({"Name": "backend-service", "ID": "backend-1", "Port": 9090,
               "Check": {"CheckID": "backend-1-ttl", "TTL": "1h", "Status": "passing"}}),
    )
    .await;
    put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default",
               "Services": [{"Name": "backend-service", "Consumers": [{"Peer": "cluster-02"}]}]}),
    )
    .await;
    ui1.wait_text_eq(&row_cell("cluster-02", "peer-exported"), "1")
        .await;
    ui1.wait_text_eq(&row_cell("cluster-02", "peer-imported"), "0")
        .await;
    ui2.wait_text_eq(&row_cell("cluster-01", "peer-imported"), "1")
        .await;
    ui1.screenshot(&screenshot_path(SCREENSHOT)).await;

    // cluster-02: the detail view of cluster-01.
    ui2.click(&format!("{} {}", row("cluster-01"), tid("peer-link")))
        .await;
    assert!(ui2.url().await.ends_with("/ui/#/peers/cluster-01"));
    ui2.wait_text_eq(&tid("detail-name"), "cluster-01").await;
    ui2.wait_text_eq(&tid("detail-state-badge"), "ACTIVE").await;
    let api_view = c2.wait_for_state("cluster-01", "ACTIVE").await;
    ui2.wait_text_eq(&tid("detail-peer-id"), api_view["PeerID"].as_str().unwrap())
        .await;
    ui2.wait_text_eq(&tid("detail-addresses"), &c1.gateway.advertise)
        .await;
    ui2.wait_text_eq(&tid("detail-remote"), "cluster-01").await;
    let service = "[data-testid=\"imported-service\"][data-service=\"backend-service\"]";
    let health = |status: &str| format!("{service} {}", tid(&format!("health-{status}")));
    ui2.wait_text_eq(&format!("{service} td.name"), "backend-service")
        .await;
    ui2.wait_text_eq(&health("passing"), "1").await;
    ui2.wait_text_eq(&health("warning"), "0").await;
    ui2.wait_text_eq(&health("critical"), "0").await;
    // The instance's health changes in cluster-01; the open view follows.
    put(
        &c1.client,
        "/v1/agent/check/warn/backend-1-ttl",
        json!(null),
    )
    .await;
    ui2.wait_text_eq(&health("warning"), "1").await;
    ui2.wait_text_eq(&health("passing"), "0").await;
    ui2.wait_text(&tid("exported-empty"), |t| t.contains("Nothing exported"))
        .await;
    ui2.screenshot(&screenshot_path(IMPORTED_SCREENSHOT)).await;

    // cluster-01: the detail view lists the export.
    ui1.goto(&format!("{}/ui/#/peers/cluster-02", c1.agent.url()))
        .await;
    ui1.wait_text_eq(&tid("detail-state-badge"), "ACTIVE").await;
    ui1.wait_text_eq(&tid("exported-service"), "backend-service")
        .await;
    ui1.wait_text(&tid("imported-empty"), |t| t.contains("Nothing imported"))
        .await;
    ui1.screenshot(&screenshot_path(DETAIL_SCREENSHOT)).await;
    ui1.click(&tid("back-to-peers")).await;
    ui1.wait_text_eq(&row_cell("cluster-02", "peer-state"), "ACTIVE")
        .await;

    // cluster-02: an invalid token shows the API's own error text.
    let refused = send(
        &c2.client,
        Method::POST,
        "/v1/peering/establish",
        Some(json!({"PeerName": "cluster-03", "PeeringToken": "not-a-token"})),
    )
    .await;
    assert_eq!(refused.status, 400);
    let message = text(&refused);
    assert!(
        message.starts_with("peering token is malformed"),
        "{message}"
    );
    ui2.click(&tid("back-to-peers")).await;
    ui2.click(&tid("add-peer")).await;
    ui2.click(&tid("tab-establish")).await;
    ui2.fill(&tid("establish-peer-name"), "cluster-03").await;
    ui2.fill(&tid("establish-token"), "not-a-token").await;
    ui2.click(&tid("establish-submit")).await;
    ui2.wait_text_eq(&tid("dialog-error"), &message).await;
    ui2.screenshot(&screenshot_path(ERROR_SCREENSHOT)).await;
    // The dialog stays open with what was typed, and nothing was created.
    assert_eq!(
        ui2.value(&tid("establish-peer-name")).await.as_deref(),
        Some("cluster-03")
    );
    ui2.click(&tid("add-peer-close")).await;
    ui2.wait_gone(&tid("add-peer-dialog")).await;
    assert!(c2.peering("cluster-03").await.is_none());

    // cluster-01: delete asks first; Cancel keeps the peering.
    ui1.click(&row_cell("cluster-02", "delete-peer")).await;
    ui1.wait_text(&tid("confirm-message"), |t| t.contains("“cluster-02”"))
        .await;
    ui1.click(&tid("confirm-cancel")).await;
    ui1.wait_gone(&tid("confirm-dialog")).await;
    ui1.wait_text_eq(&row_cell("cluster-02", "peer-state"), "ACTIVE")
        .await;
    assert!(c1.peering("cluster-02").await.is_some());

    // Delete confirmed: the row turns DELETING, then goes.
    ui1.click(&row_cell("cluster-02", "delete-peer")).await;
    ui1.click(&tid("confirm-delete")).await;
    wait_for("the row to show DELETING or go", || async {
        match ui1.text(&row_cell("cluster-02", "peer-state")).await {
            Ok(state) if state == "DELETING" => Ok(()),
            Ok(state) => Err(state),
            Err(_) => Ok(()),
        }
    })
    .await;
    ui1.wait_gone(&row("cluster-02")).await;
    ui1.wait_text(&tid("peers-empty"), |t| t.contains("No peers yet"))
        .await;
    ui1.wait_text(&tid("page-notice"), |t| t.contains("deleted"))
        .await;
    assert!(c1.peering("cluster-02").await.is_none());

    // cluster-02's open page sees the peering TERMINATED, imports dropped.
    ui2.wait_text_eq(&row_cell("cluster-01", "peer-state"), "TERMINATED")
        .await;
    ui2.wait_text_eq(&row_cell("cluster-01", "peer-imported"), "0")
        .await;
    let errors = ui2.text(&tid("page-error")).await;
    assert!(errors.is_err(), "no page error: {errors:?}");

    browser.close().await;
}

/// A GET with the response's headers (the API client keeps only the body).
async fn fetch(
    base: &str,
    path: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<Bytes>>(HttpConnector::new());
    let mut request = Request::get(format!("{base}{path}"));
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn ui_assets_are_served_with_their_types_and_a_strict_csp() {
    let agent = TestAgent::start().await;
    let base = agent.url();

    for path in ["/", "/ui"] {
        let (status, headers, _) = fetch(&base, path, None).await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT, "{path}");
        assert_eq!(header_str(&headers, "location"), "/ui/", "{path}");
    }

    let assets = [
        ("/ui/", "text/html; charset=utf-8", "<!doctype html>"),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "// isthmus web UI",
        ),
        (
            "/ui/app.css",
            "text/css; charset=utf-8",
            "/* isthmus web UI",
        ),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ];
    for (path, content_type, starts) in assets {
        let (status, headers, body) = fetch(&base, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header_str(&headers, "content-type"), content_type, "{path}");
        assert!(
            String::from_utf8_lossy(&body).starts_with(starts),
            "{path} body"
        );
        let csp = header_str(&headers, "content-security-policy");
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(header_str(&headers, "cache-control"), "no-cache", "{path}");
        assert_eq!(header_str(&headers, "x-content-type-options"), "nosniff");

        // Revalidation: the same ETag answers 304 with no body.
        let etag = header_str(&headers, "etag").to_owned();
        let (status, headers, body) = fetch(&base, path, Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header_str(&headers, "etag"), etag);
        assert!(body.is_empty());
    }

    // Nothing else lives under /ui/, and the API is untouched.
    let (status, _, body) = fetch(&base, "/ui/peers", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "no such endpoint: /ui/peers");
    let (status, headers, body) = fetch(&base, "/v1/peerings", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header_str(&headers, "content-type"), "application/json");
    let peerings: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(peerings, json!([]));
}

/// With ACLs on, the UI asks for a token when the API refuses it, keeps
/// it for the tab's session only, and asks again after a wrong one.
#[tokio::test]
async fn the_ui_asks_for_a_token_when_the_api_answers_403() {
    const MANAGEMENT: &str = "0b4f6a42-8d0e-4c59-9a55-7f1f3f2c7d10";
    let browser = Browser::start().await;
    let agent = TestAgent::start_with(|config| {
        config.acl.enabled = true;
        config.acl.default_allow = false;
        config.acl.initial_management = Some(MANAGEMENT.into());
    })
    .await;
    let ui = browser.first_window().await;
    ui.goto(&format!("{}/ui/#/peers", agent.url())).await;

    // Anonymous under default deny: refused, so the UI asks.
    ui.wait_text(&tid("token-reason"), |t| t.starts_with("Permission denied"))
        .await;
    ui.screenshot("/tmp/ui-token-prompt.png").await;

    // A secret that names no token: the API's answer shows, and it asks again.
    ui.fill(&tid("token-input"), "00000000-1111-2222-3333-444444444444")
        .await;
    ui.click(&tid("token-submit")).await;
    ui.wait_text(&tid("token-reason"), |t| t.contains("ACL not found"))
        .await;

    ui.fill(&tid("token-input"), MANAGEMENT).await;
    ui.click(&tid("token-submit")).await;
    ui.wait_gone(&tid("token-dialog")).await;
    ui.wait_text_eq(&tid("cluster-name"), "dc1").await;
    ui.wait_text(&tid("peers-empty"), |t| t.contains("No peers yet"))
        .await;
    ui.wait_text_eq(&tid("token-button"), "Forget token").await;

    // Another tab is another session: it has to ask for its own.
    let other = browser.new_window().await;
    other.goto(&format!("{}/ui/#/peers", agent.url())).await;
    other
        .wait_text(&tid("token-reason"), |t| t.starts_with("Permission denied"))
        .await;
}
