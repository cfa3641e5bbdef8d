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
    c1.export("web", "cluster-02").await;
    // Locally the check says everything.
    let (local, _) = get(&c1.client, "/v1/health/service/web").await;
    assert_eq!(
        local[0]["Checks"][1]["Output"],
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
    c1.register_passing("web", 80).await;
    c1.export("web", "cluster-02").await;
    eventually("web imported by cluster-02", || async {
        imported_web(&c2).await.filter(|n| *n > 0)
    })
    .await;
    c1.gateway.freeze();
    c2.wait_for_state("cluster-01", "FAILING").await;
    (c1, c2)
}

/// How many instances of `web` cluster-02 imported from cluster-01 (0 once
/// the peering is gone: like Consul, the agent answers `[]` for a peer name
/// with no peering; None: the query failed).
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
    assert_eq!(imported_web(&c2).await, Some(0), "the imports are gone");
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
    assert_eq!(imported_web(&c2).await, Some(0));
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
    assert_eq!(imported_web(&c2).await, Some(0));
    c1.wait_for_state("cluster-02", "TERMINATED").await;
}

/// The mesh gateway certificate was renewed only at agent start: a
/// long-running agent let it expire, and then its gateway's handshakes
/// failed and the dialer marked the peering TERMINATED. With a 3s lifetime
/// both clusters renew it live every 2s; over several lifetimes the
/// peering stays ACTIVE, each side learns the other's new fingerprint over
/// the stream, and new connections through the gateway (which check both
/// certificates' validity) keep working.
#[tokio::test]
async fn gateway_certificates_are_renewed_live_and_peers_follow() {
    const TTL: std::time::Duration = std::time::Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let args = ["--gateway-cert-ttl", "3s"];
    let c1 = Cluster::start_with("cluster-01", dir.path(), &args).await;
    let c2 = Cluster::start_with("cluster-02", dir.path(), &args).await;
    // A token pins the gateway certificate current when it was generated;
    // one renewed before the establish completes makes it stale (the
    // dialer says so), and a new token is the operator's answer.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let token = send(
            &c1.client,
            Method::POST,
            "/v1/peering/token",
            Some(json!({"PeerName": "cluster-02"})),
        )
        .await;
        let token: Value = serde_json::from_slice(&token.body).unwrap();
        let established = send(
            &c2.client,
            Method::POST,
            "/v1/peering/establish",
            Some(json!({"PeerName": "cluster-01", "PeeringToken": token["PeeringToken"]})),
        )
        .await;
        if established.status == 200 {
            break;
        }
        let why = String::from_utf8_lossy(&established.body).into_owned();
        assert!(
            attempts < 5 && why.contains("does not match the token's fingerprint"),
            "establish: {why}"
        );
    }
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    c2.wait_for_state("cluster-01", "ACTIVE").await;
    c1.register_passing("web", 80).await;
    c1.export("web", "cluster-02").await;
    let first = gateway_view(&c1).await.fingerprint;

    // Watch cluster-01's certificate change over more than three lifetimes.
    let mut seen = vec![first.clone()];
    let until = tokio::time::Instant::now() + TTL * 3 + TTL / 2;
    while tokio::time::Instant::now() < until {
        let now = gateway_view(&c1).await.fingerprint;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 4, "renewed at least three times: {seen:?}");

    // Every certificate first issued has expired by now. The peering is up...
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    c2.wait_for_state("cluster-01", "ACTIVE").await;
    // ...each side pins the other's current fingerprint...
    for (cluster, peer, of) in [(&c2, "cluster-01", &c1), (&c1, "cluster-02", &c2)] {
        eventually(
            &format!("{} follows {}'s fingerprint", cluster.name, of.name),
            || async {
                let current = gateway_view(of).await.fingerprint;
                let (identity, _) =
                    get(&cluster.client, &format!("/v1/auth/identities/tls/{peer}")).await;
                (identity["Identifier"] == current.as_str()).then_some(())
            },
        )
        .await;
    }
    // ...replication still flows...
    eventually("web imported by cluster-02", || async {
        imported_web(&c2).await.filter(|n| *n > 0)
    })
    .await;
    // ...and a new connection through cluster-01's gateway, with
    // cluster-02's current certificate, gets an answer.
    let peer = gateway_view(&c2).await;
    let (status, body) = get_via_gateway(
        &c1,
        &peer.certificate_pem,
        &peer.private_key_pem,
        "/v1/health/service/web",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"web\""), "{body}");
    assert_ne!(gateway_view(&c1).await.fingerprint, first);
}
