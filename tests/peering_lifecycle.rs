//! Peerings through their whole life: what a peer may read, deletes that
//! are interrupted, gateway certificates that are renewed.

use http::Method;
use isthmus_tests::api::{get, put, send};
use isthmus_tests::cluster::peered_clusters;
use isthmus_tests::peer_client::{gateway_view, get_via_gateway};
use serde_json::{json, Value};

/// Replication deliberately flattens checks (one overall status per
/// instance). A peer asking cluster-01's gateway for the exported service's
/// health used to get the full local checks instead: their `Output` (what
/// a probe or the app reported) and `Notes`. It gets the flattened form.
#[tokio::test]
async fn a_peer_asking_through_the_gateway_sees_flattened_checks_only() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, c2) = peered_clusters(dir.path()).await;
    put(
        &c1.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "ID": "web-1", "Port": 80,
               "Check": {"CheckID": "web-ttl", "TTL": "1h", "Notes": "NOTES-db-password-in-runbook"}}),
    )
    .await;
    put(
        &c1.client,
        "/v1/agent/check/pass/web-ttl?note=OUTPUT-connected-to-10.1.2.3-as-admin",
        json!({}),
    )
    .await;
    put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web", "Consumers": [{"Peer": "cluster-02"}]}]}),
    )
    .await;
    // Locally the check says everything.
    let (local, _) = get(&c1.client, "/v1/health/service/web").await;
    assert_eq!(
        local[0]["Checks"][0]["Output"],
        "OUTPUT-connected-to-10.1.2.3-as-admin"
    );

    let peer = gateway_view(&c2).await;
    for path in ["/v1/health/service/web", "/v1/health/service/web?passing"] {
        let (status, body) =
            get_via_gateway(&c1, &peer.certificate_pem, &peer.private_key_pem, path)
                .await
                .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains("OUTPUT-") && !body.contains("NOTES-") && !body.contains("web-ttl"),
            "{path}: a peer reads local checks: {body}"
        );
        let entries: Value = serde_json::from_str(&body).unwrap();
        let checks = entries[0]["Checks"].as_array().unwrap();
        assert_eq!(checks.len(), 1, "{body}");
        assert_eq!(checks[0]["CheckID"], "web-1:overall-check");
        assert_eq!(checks[0]["Status"], "passing");
        assert_eq!(entries[0]["Service"]["ID"], "web-1");
    }

    // What replication gave cluster-02 is the same form.
    let imported = isthmus_tests::eventually("web imported by cluster-02", || async {
        let response = send(
            &c2.client,
            Method::GET,
            "/v1/health/service/web?peer=cluster-01",
            None,
        )
        .await;
        let entries: Value = serde_json::from_slice(&response.body).ok()?;
        (response.status == 200 && entries.as_array().is_some_and(|a| !a.is_empty()))
            .then_some(entries)
    })
    .await;
    assert_eq!(imported[0]["Checks"][0]["CheckID"], "web-1:overall-check");
}
