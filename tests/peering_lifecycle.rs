//! Peerings through their whole life: what a peer may read, deletes that
//! are interrupted, gateway certificates that are renewed.

use http::Method;
use isthmus_tests::api::{get, put, send};
use isthmus_tests::cluster::{peered_clusters, Cluster};
use isthmus_tests::eventually;
use isthmus_tests::peer_client::{gateway_view, get_via_gateway};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

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
    let imported = eventually("web imported by cluster-02", || async {
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

/// cluster-01 exports `web` to cluster-02 (the dialer), which imports it;
/// then cluster-01's gateway hangs (SIGSTOP), so cluster-02 cannot tell
/// cluster-01 about a delete before its dial timeout, and its peering turns
/// FAILING.
async fn peered_with_a_hung_acceptor(dir: &std::path::Path) -> (Cluster, Cluster) {
    let (c1, c2) = peered_clusters(dir).await;
    put(
        &c1.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80, "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    put(
        &c1.client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web", "Consumers": [{"Peer": "cluster-02"}]}]}),
    )
    .await;
    eventually("web imported by cluster-02", || async {
        imported_web(&c2).await.filter(|n| *n > 0)
    })
    .await;
    c1.gateway.freeze();
    c2.wait_for_state("cluster-01", "FAILING").await;
    (c1, c2)
}

/// How many instances of `web` cluster-02 imported from cluster-01 (None:
/// no such peering).
async fn imported_web(c2: &Cluster) -> Option<usize> {
    let response = send(
        &c2.client,
        Method::GET,
        "/v1/health/service/web?peer=cluster-01",
        None,
    )
    .await;
    if response.status != 200 {
        return None;
    }
    serde_json::from_slice::<Value>(&response.body)
        .ok()?
        .as_array()
        .map(Vec::len)
}

/// Sends `DELETE /v1/peering/<name>`, waits until the agent is at work on
/// it (the peering is DELETING), and then closes the connection without
/// waiting for the answer, as a client that gives up (Ctrl-C on the CLI, a
/// proxy's timeout) does.
async fn delete_and_hang_up(cluster: &Cluster, name: &str) {
    let agent = &cluster.agent.http_addr;
    let mut tcp = tokio::net::TcpStream::connect(agent).await.unwrap();
    let request = format!("DELETE /v1/peering/{name} HTTP/1.1\r\nHost: {agent}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.flush().await.unwrap();
    eventually(&format!("{name} DELETING on {}", cluster.name), || async {
        (state_of(cluster, name).await.as_deref() == Some("DELETING")).then_some(())
    })
    .await;
    drop(tcp);
}

/// The peering's state, or None once it is gone (404).
async fn state_of(cluster: &Cluster, name: &str) -> Option<String> {
    cluster
        .peering(name)
        .await
        .map(|p| p["State"].as_str().unwrap_or_default().to_owned())
}

/// A client that disconnects while the peer is being told used to cancel
/// the delete half-way: the peering stayed DELETING forever and its imports
/// stayed. The deletion finishes in the background.
#[tokio::test]
async fn a_delete_whose_client_hung_up_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (_c1, c2) = peered_with_a_hung_acceptor(dir.path()).await;
    delete_and_hang_up(&c2, "cluster-01").await;
    eventually("the peering gone from cluster-02", || async {
        state_of(&c2, "cluster-01").await.is_none().then_some(())
    })
    .await;
    assert_eq!(imported_web(&c2).await, None, "the imports are gone");
    let (peerings, _) = get(&c2.client, "/v1/peerings").await;
    assert_eq!(peerings, json!([]));
}

/// A repeated DELETE of a peering still DELETING used to answer at once
/// and do nothing. It completes the deletion and answers once it is done.
#[tokio::test]
async fn a_repeated_delete_completes_an_unfinished_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_c1, c2) = peered_with_a_hung_acceptor(dir.path()).await;
    delete_and_hang_up(&c2, "cluster-01").await;
    let response = send(&c2.client, Method::DELETE, "/v1/peering/cluster-01", None).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        state_of(&c2, "cluster-01").await,
        None,
        "gone once the DELETE answered"
    );
    assert_eq!(imported_web(&c2).await, None);
    // And a new token for the same name is no conflict any more.
    let token = send(
        &c2.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({"PeerName": "cluster-01"})),
    )
    .await;
    assert_eq!(
        token.status,
        200,
        "{}",
        String::from_utf8_lossy(&token.body)
    );
}

/// An agent killed (-9) while a peering is DELETING finishes deleting it
/// when it starts again, and tells the peer, which turns TERMINATED.
#[tokio::test]
async fn a_deletion_interrupted_by_a_crash_resumes_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (c1, mut c2) = peered_with_a_hung_acceptor(dir.path()).await;
    delete_and_hang_up(&c2, "cluster-01").await;
    c2.agent.kill();
    c1.gateway.thaw();
    c2.restart_agent_process();
    eventually(
        "the peering gone from cluster-02 after the restart",
        || async { state_of(&c2, "cluster-01").await.is_none().then_some(()) },
    )
    .await;
    assert_eq!(imported_web(&c2).await, None);
    c1.wait_for_state("cluster-02", "TERMINATED").await;
}
