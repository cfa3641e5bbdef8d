//! The web UI's Services and Intentions pages, in a real headless Chromium
//! against real agents, sidecars and a real peering:
//! - `#/services` lists local services with their kind, tags and health
//!   counts, and the services imported from a peer marked with its name;
//!   the filter box narrows the list;
//! - `#/services/<name>` shows instances with their checks, the sidecar in
//!   front, the intentions that apply (and the default policy), the peers
//!   it is exported to and its upstreams; `?peer=` shows an imported one;
//! - `#/intentions`: an intention created in the UI (deny frontend →
//!   backend) makes a real call through real sidecars fail, editing it back
//!   to allow and then to L7 permissions changes what passes, deleting it
//!   restores the wildcard's allow; an invalid permission shows the API's
//!   own text; the "would X call Y?" form answers with the deciding rule.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages.

#[allow(dead_code)]
mod browser;

use browser::{screenshot_path, tid, Browser, Window};
use isthmus_tests::api::{put, send, text};
use isthmus_tests::apps::{get, http_app, request};
use isthmus_tests::cluster::{export_backend_to_cluster_02, peered_clusters};
use isthmus_tests::eventually;
use isthmus_tests::process::AgentProcess;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::json;

fn service_row(name: &str, peer: &str) -> String {
    format!("tr[data-testid=\"service-row\"][data-service=\"{name}\"][data-peer=\"{peer}\"]")
}

fn cell(row: &str, id: &str) -> String {
    format!("{row} {}", tid(id))
}

/// `/v1/agent/self` (not a blocking read: no index).
async fn agent_self(client: &isthmus_runtime::client::Client) -> serde_json::Value {
    client
        .get_json::<serde_json::Value>("/v1/agent/self")
        .await
        .expect("GET /v1/agent/self")
        .0
}

async fn open(window: &Window<'_>, base: &str, fragment: &str, cluster: &str) {
    window.goto(&format!("{base}/ui/{fragment}")).await;
    window.wait_text_eq(&tid("cluster-name"), cluster).await;
}

#[tokio::test]
async fn services_pages_show_local_and_imported_services() {
    let browser = Browser::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;
    // cluster-01: backend behind its sidecar, exported to cluster-02 and
    // callable by cluster-02's frontend; a web sidecar calling backend; a
    // tagged api service with a critical check.
    let _backend = export_backend_to_cluster_02(&c1).await;
    let web_app = http_app("web").await.to_string();
    let _web = ProxyProcess::spawn(&c1.agent.url(), "web", &web_app, &["backend"], &[]);
    put(
        &c1.client,
        "/v1/agent/service/register",
        json!({"Name": "api", "ID": "api-1", "Port": 7000, "Tags": ["v1", "http"],
               "Check": {"CheckID": "api-1-ttl", "Name": "api alive", "TTL": "1h", "Status": "critical"}}),
    )
    .await;
    put(
        &c1.client,
        "/v1/agent/check/fail/api-1-ttl?note=connection%20refused",
        json!(null),
    )
    .await;

    let ui1 = browser.first_window().await;
    open(&ui1, &c1.agent.url(), "#/services", "cluster-01").await;
    let backend = service_row("backend", "");
    ui1.wait_text_eq(&cell(&backend, "service-kind"), "service")
        .await;
    ui1.wait_text_eq(&cell(&backend, "health-passing"), "1")
        .await;
    ui1.wait_text_eq(&cell(&backend, "service-instances"), "1")
        .await;
    let sidecar = service_row("backend-sidecar-proxy", "");
    ui1.wait_text_eq(&cell(&sidecar, "service-kind"), "connect-proxy")
        .await;
    ui1.wait_text_eq(
        &cell(&service_row("mesh-gateway", ""), "service-kind"),
        "mesh-gateway",
    )
    .await;
    let api = service_row("api", "");
    ui1.wait_text_eq(&cell(&api, "health-critical"), "1").await;
    ui1.wait_text_eq(&cell(&api, "health-passing"), "0").await;
    ui1.wait_text(&cell(&api, "service-tags"), |t| {
        t.contains("v1") && t.contains("http")
    })
    .await;
    ui1.wait_text_eq(&cell(&backend, "service-proxied"), "in mesh")
        .await;
    ui1.screenshot(&screenshot_path("services.png")).await;

    // The filter matches tags too; clearing it brings everything back.
    ui1.fill(&tid("services-filter"), "v1").await;
    ui1.wait_gone(&backend).await;
    ui1.wait_text_eq(&cell(&api, "service-kind"), "service")
        .await;
    ui1.fill(&tid("services-filter"), "zzz").await;
    ui1.wait_text(&tid("services-no-match"), |t| {
        t.contains("No service matches")
    })
    .await;
    ui1.fill(&tid("services-filter"), "backend").await;
    ui1.wait_gone(&api).await;

    // backend's detail: instance and check, sidecar, intention, default
    // policy, export.
    ui1.click(&cell(&backend, "service-link")).await;
    assert!(ui1.url().await.ends_with("/ui/#/services/backend"));
    ui1.wait_text_eq(&tid("service-detail-name"), "backend")
        .await;
    let instance = "[data-testid=\"instance\"][data-instance=\"backend\"]";
    ui1.wait_text_eq(&cell(instance, "instance-health"), "passing")
        .await;
    ui1.wait_text_eq(&cell(instance, "check-status"), "passing")
        .await;
    let sidecar_item = "[data-testid=\"sidecar\"][data-sidecar=\"backend-sidecar-proxy\"]";
    ui1.wait_text(sidecar_item, |t| t.contains("backend-sidecar-proxy"))
        .await;
    let intention =
        "[data-testid=\"service-intention\"][data-source=\"frontend\"][data-source-peer=\"cluster-02\"]";
    ui1.wait_text_eq(
        &cell(intention, "service-intention-source"),
        "frontend (peer cluster-02)",
    )
    .await;
    ui1.wait_text_eq(&cell(intention, "service-intention-action"), "allow")
        .await;
    let agent_self = agent_self(&c1.client).await;
    let policy = agent_self["Isthmus"]["DefaultIntentionPolicy"]
        .as_str()
        .unwrap()
        .to_owned();
    ui1.wait_text(&tid("service-default-policy"), |t| {
        t.ends_with(&format!("default intention policy, {policy}."))
    })
    .await;
    ui1.wait_text_eq(
        "[data-testid=\"exported-to\"][data-peer=\"cluster-02\"]",
        "cluster-02",
    )
    .await;
    ui1.wait_text(&tid("service-upstreams-empty"), |t| {
        t.contains("No upstreams")
    })
    .await;
    ui1.screenshot(&screenshot_path("service-detail.png")).await;

    // api's detail: the failing check's output; web's: its upstream.
    ui1.goto(&format!("{}/ui/#/services/api", c1.agent.url()))
        .await;
    let check = "[data-testid=\"check\"][data-check=\"api-1-ttl\"]";
    ui1.wait_text_eq(&cell(check, "check-name"), "api alive")
        .await;
    ui1.wait_text_eq(&cell(check, "check-status"), "critical")
        .await;
    ui1.wait_text_eq(&cell(check, "check-output"), "connection refused")
        .await;
    ui1.goto(&format!("{}/ui/#/services/web", c1.agent.url()))
        .await;
    ui1.wait_text_eq(
        "[data-testid=\"upstream\"][data-upstream=\"backend\"]",
        "backend",
    )
    .await;

    summary_endpoint_answers_and_blocks(&c1, &c2).await;

    // cluster-02: backend imported from cluster-01, marked with the peer.
    let ui2 = browser.new_window().await;
    open(&ui2, &c2.agent.url(), "#/services", "cluster-02").await;
    let imported = service_row("backend", "cluster-01");
    ui2.wait_text_eq(&cell(&imported, "service-peer"), "cluster-01")
        .await;
    ui2.wait_text_eq(&cell(&imported, "health-passing"), "1")
        .await;
    ui2.screenshot(&screenshot_path("services-imported.png"))
        .await;
    ui2.click(&cell(&imported, "service-link")).await;
    assert!(ui2
        .url()
        .await
        .ends_with("/ui/#/services/backend?peer=cluster-01"));
    ui2.wait_text_eq(&tid("service-detail-peer"), "cluster-01")
        .await;
    ui2.wait_text_eq(
        "[data-testid=\"instance\"] [data-testid=\"instance-health\"]",
        "passing",
    )
    .await;
    ui2.wait_text(&tid("service-imported-note"), |t| {
        t.contains("backend@cluster-01")
    })
    .await;
    ui2.screenshot(&screenshot_path("service-imported.png"))
        .await;

    // cluster-01's Intentions page edits the intention naming the peer's
    // frontend: the entry keeps its Peer, the backend's detail follows.
    ui1.goto(&format!("{}/ui/#/intentions", c1.agent.url()))
        .await;
    let peer_row = "tr[data-testid=\"intention-row\"][data-source=\"frontend\"][data-source-peer=\"cluster-02\"]";
    ui1.wait_text_eq(
        &cell(peer_row, "intention-source"),
        "frontend (peer cluster-02)",
    )
    .await;
    ui1.click(&cell(peer_row, "intention-edit")).await;
    ui1.wait_text_eq(
        &tid("intention-form-title"),
        "Edit frontend (peer cluster-02) → backend",
    )
    .await;
    choose(&ui1, &tid("intention-type"), "deny").await;
    ui1.click(&tid("intention-save")).await;
    ui1.wait_text_eq(&cell(peer_row, "intention-action"), "deny")
        .await;
    let entry = c1
        .client
        .get_json::<serde_json::Value>("/v1/config/service-intentions/backend")
        .await
        .unwrap()
        .0;
    let sources = entry["Sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "{entry}");
    assert_eq!(
        (
            &sources[0]["Name"],
            &sources[0]["Peer"],
            &sources[0]["Action"]
        ),
        (&json!("frontend"), &json!("cluster-02"), &json!("deny"))
    );
    ui1.goto(&format!("{}/ui/#/services/backend", c1.agent.url()))
        .await;
    ui1.wait_text_eq(&cell(intention, "service-intention-action"), "deny")
        .await;
}

/// `/v1/internal/ui/services` directly: the fields the page reads, and a
/// blocking query woken by a new registration.
async fn summary_endpoint_answers_and_blocks(
    c1: &isthmus_tests::cluster::Cluster,
    c2: &isthmus_tests::cluster::Cluster,
) {
    let find = |all: &serde_json::Value, name: &str, peer: Option<&str>| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|s| s["Name"] == name && s["PeerName"].as_str() == peer)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} ({peer:?}) in {all}"))
    };
    let (all, index) = isthmus_tests::api::get(&c1.client, "/v1/internal/ui/services").await;
    let backend = find(&all, "backend", None);
    assert_eq!(backend["InstanceCount"], 1);
    assert_eq!(backend["InstancesPassing"], 1);
    assert_eq!(backend["ConnectedWithProxy"], true);
    assert_eq!(backend["Datacenter"], "cluster-01");
    assert!(backend.get("Kind").is_none(), "{backend}");
    let api = find(&all, "api", None);
    assert_eq!(
        (
            api["ChecksCritical"].clone(),
            api["InstancesCritical"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(api["Tags"], json!(["http", "v1"]));
    assert_eq!(
        find(&all, "backend-sidecar-proxy", None)["Kind"],
        "connect-proxy"
    );
    let imported = isthmus_tests::api::get(&c2.client, "/v1/internal/ui/services")
        .await
        .0;
    let backend = find(&imported, "backend", Some("cluster-01"));
    assert_eq!(backend["InstancesPassing"], 1);
    assert_eq!(backend["Datacenter"], "cluster-02");

    // Blocking queries (?index=) follow the changes: a watcher sees a new
    // registration without polling.
    let client = c1.client.clone();
    let watcher = tokio::spawn(async move {
        let mut index = index;
        loop {
            let (all, next) = client
                .get_json::<serde_json::Value>(&format!(
                    "/v1/internal/ui/services?index={index}&wait=60s"
                ))
                .await
                .unwrap();
            if all.as_array().unwrap().iter().any(|s| s["Name"] == "late") {
                return;
            }
            index = next.expect("X-Consul-Index");
        }
    });
    c1.register_passing("late", 7100).await;
    tokio::time::timeout(isthmus_tests::WAIT, watcher)
        .await
        .expect("the blocking query answers after the change")
        .unwrap();
}

fn intention_row(source: &str) -> String {
    format!(
        "tr[data-testid=\"intention-row\"][data-source=\"{source}\"][data-destination=\"backend\"]"
    )
}

/// Picks `value` in the `<select>` `select`.
async fn choose(window: &Window<'_>, select: &str, value: &str) {
    window
        .click(&format!("{select} option[value=\"{value}\"]"))
        .await;
}

/// The status of a GET through frontend's sidecar; 0 when the connection
/// itself fails.
async fn call_status(frontend: &ProxyProcess, path: &str) -> u16 {
    match get(frontend.upstream("backend"), path).await {
        Ok((status, _, _)) => status,
        Err(_) => 0,
    }
}

async fn wait_call(frontend: &ProxyProcess, path: &str, what: &str, ok: impl Fn(u16) -> bool) {
    let ok = &ok;
    eventually(what, || async move {
        let status = call_status(frontend, path).await;
        ok(status).then_some(())
    })
    .await;
}

#[tokio::test]
async fn intentions_page_changes_what_real_sidecars_let_through() {
    let browser = Browser::start().await;
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    // Everyone may call backend, until the UI says otherwise for frontend.
    put(
        &client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend", "Sources": [{"Name": "*", "Action": "allow"}]}),
    )
    .await;
    let backend_app = http_app("backend").await.to_string();
    let frontend_app = http_app("frontend").await.to_string();
    let _backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &[]);
    let frontend = ProxyProcess::spawn(&agent.url(), "frontend", &frontend_app, &["backend"], &[]);
    wait_call(&frontend, "/hello", "frontend reaches backend", |s| {
        s == 200
    })
    .await;

    let ui = browser.first_window().await;
    let agent_self = agent_self(&client).await;
    let cluster = agent_self["Config"]["Datacenter"]
        .as_str()
        .unwrap()
        .to_owned();
    open(&ui, &agent.url(), "#/intentions", &cluster).await;
    ui.wait_text_eq(&cell(&intention_row("*"), "intention-action"), "allow")
        .await;
    ui.wait_text_eq(
        &tid("intentions-default"),
        "A call that no intention matches gets the default intention policy: deny.",
    )
    .await;

    // Create: deny frontend → backend; the real call starts failing.
    ui.click(&tid("new-intention")).await;
    ui.fill(&tid("intention-source-name"), "frontend").await;
    ui.fill(&tid("intention-destination-name"), "backend").await;
    choose(&ui, &tid("intention-type"), "deny").await;
    ui.fill(&tid("intention-description-input"), "from the UI test")
        .await;
    ui.click(&tid("intention-save")).await;
    ui.wait_text(&tid("page-notice"), |t| t.contains("created"))
        .await;
    let row = intention_row("frontend");
    ui.wait_text_eq(&cell(&row, "intention-action"), "deny")
        .await;
    ui.wait_text_eq(&cell(&row, "intention-description"), "from the UI test")
        .await;
    // An exact source outranks the wildcard: listed first.
    ui.wait_text_eq(
        "tr[data-testid=\"intention-row\"]:first-child [data-testid=\"intention-source\"]",
        "frontend",
    )
    .await;
    let precedence = ui.text(&cell(&row, "intention-precedence")).await.unwrap();
    wait_call(&frontend, "/hello", "frontend denied", |s| {
        s == 0 || s >= 500
    })
    .await;
    ui.screenshot(&screenshot_path("intentions.png")).await;

    // "Would frontend be allowed to call backend?": no, and why.
    ui.fill(&tid("check-source"), "frontend").await;
    ui.fill(&tid("check-destination"), "backend").await;
    ui.click(&tid("check-submit")).await;
    ui.wait_text_eq(&tid("check-verdict"), "Denied").await;
    ui.wait_text_eq(
        &tid("check-reason"),
        &format!(
            "Matched L4 intention: frontend => backend (Action: deny, Precedence: {precedence})"
        ),
    )
    .await;
    // And a service only the wildcard matches: allowed by it.
    ui.fill(&tid("check-source"), "billing").await;
    ui.click(&tid("check-submit")).await;
    ui.wait_text(&tid("check-reason"), |t| {
        t.contains("* => backend (Action: allow")
    })
    .await;
    ui.wait_text_eq(&tid("check-verdict"), "Allowed").await;
    ui.screenshot(&screenshot_path("intention-check.png")).await;

    // Edit back to allow: the call passes again.
    ui.click(&cell(&row, "intention-edit")).await;
    ui.wait_text_eq(&tid("intention-form-title"), "Edit frontend → backend")
        .await;
    choose(&ui, &tid("intention-type"), "allow").await;
    ui.click(&tid("intention-save")).await;
    ui.wait_text_eq(&cell(&row, "intention-action"), "allow")
        .await;
    wait_call(&frontend, "/hello", "frontend allowed again", |s| s == 200).await;

    // Edit to L7 permissions: GET under /api only.
    ui.click(&cell(&row, "intention-edit")).await;
    choose(&ui, &tid("intention-type"), "l7").await;
    let permission = tid("permission");
    choose(&ui, &cell(&permission, "permission-path-kind"), "prefix").await;
    ui.fill(&cell(&permission, "permission-path"), "/api").await;
    ui.fill(&cell(&permission, "permission-methods"), "GET")
        .await;
    ui.screenshot(&screenshot_path("intention-form.png")).await;
    ui.click(&tid("intention-save")).await;
    ui.wait_text_eq(&cell(&row, "intention-action"), "L7 permissions")
        .await;
    ui.wait_text_eq(
        &cell(&row, "intention-permission"),
        "allow GET path prefix /api",
    )
    .await;
    wait_call(&frontend, "/admin", "L7 rule enforced", |s| s == 403).await;
    assert_eq!(call_status(&frontend, "/api/items").await, 200);
    let (status, _, _) = request(frontend.upstream("backend"), "POST", "/api/items", false)
        .await
        .unwrap();
    assert_eq!(status, 403, "only GET is allowed");

    // An invalid permission: the form shows the API's own text, nothing is written.
    ui.click(&tid("new-intention")).await;
    ui.fill(&tid("intention-source-name"), "billing").await;
    ui.fill(&tid("intention-destination-name"), "backend").await;
    choose(&ui, &tid("intention-type"), "l7").await;
    choose(&ui, &cell(&permission, "permission-path-kind"), "exact").await;
    ui.fill(&cell(&permission, "permission-path"), "admin")
        .await;
    ui.click(&tid("intention-save")).await;
    let shown = ui
        .wait_text(&tid("intention-form-error"), |t| !t.is_empty())
        .await;
    let (entry, _) =
        isthmus_tests::api::get(&client, "/v1/config/service-intentions/backend").await;
    let mut sources = entry["Sources"].as_array().unwrap().clone();
    sources.push(json!({"Name": "billing", "Permissions": [{"Action": "allow", "HTTP": {"PathExact": "admin"}}]}));
    let refused = send(
        &client,
        http::Method::PUT,
        "/v1/config",
        Some(json!({"Kind": "service-intentions", "Name": "backend", "Sources": sources})),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(shown, text(&refused).trim(), "the API's text, as it is");
    assert!(
        shown.contains("PathExact doesn't start with '/'"),
        "{shown}"
    );
    ui.screenshot(&screenshot_path("intention-error.png")).await;
    ui.click(&tid("intention-cancel")).await;
    ui.wait_gone(&intention_row("billing")).await;

    // Delete, confirmed in place: the wildcard's allow applies again.
    ui.click(&cell(&row, "intention-delete")).await;
    ui.click(&cell(&row, "intention-delete-confirm")).await;
    ui.wait_text(&tid("page-notice"), |t| t.contains("deleted"))
        .await;
    ui.wait_gone(&row).await;
    wait_call(
        &frontend,
        "/admin",
        "frontend allowed by the wildcard",
        |s| s == 200,
    )
    .await;
}
