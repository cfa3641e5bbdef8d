//! Every way establishing can fail, with the expected message and no state
//! change; a peer that dies turns FAILING and recovers on its own; a
//! certificate from an unpeered CA is refused by the gateway.

use base64::Engine;
use http::Method;
use isthmus_api::peering::PeeringToken;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::cluster::Cluster;
use isthmus_tests::eventually;
use isthmus_tests::peer_client::{gateway_view, get_via_gateway};
use isthmus_tests::process::stdout;
use serde_json::{json, Value};

async fn establish(dialer: &Cluster, name: &str, token: &str) -> (u16, String) {
    let response = send(
        &dialer.client,
        Method::POST,
        "/v1/peering/establish",
        Some(json!({"PeerName": name, "PeeringToken": token})),
    )
    .await;
    (response.status.as_u16(), text(&response))
}

fn tamper(token: &str, change: impl FnOnce(&mut PeeringToken)) -> String {
    let mut decoded = PeeringToken::decode(token).unwrap();
    change(&mut decoded);
    decoded.encode()
}

async fn peerings(cluster: &Cluster) -> Vec<Value> {
    get(&cluster.client, "/v1/peerings")
        .await
        .0
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn every_bad_token_fails_with_its_reason_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let c2 = Cluster::start("cluster-02", dir.path()).await;
    let c3 = Cluster::start("cluster-03", dir.path()).await;
    let token = c1.peering_token("cluster-02").await;
    let other_root = gateway_view(&c3).await.local_root_pems;

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "garbage",
            "not-a-token".into(),
            "peering token is malformed",
        ),
        (
            "not JSON",
            base64::engine::general_purpose::STANDARD.encode("{nope"),
            "peering token is malformed",
        ),
        (
            "no addresses",
            tamper(&token, |t| t.server_addresses.clear()),
            "peering token server addresses value is empty",
        ),
        (
            "bad address",
            tamper(&token, |t| t.server_addresses = vec!["0.0.0.0:8443".into()]),
            "0.0.0.0:8443 is not a valid peering server address",
        ),
        (
            "no server name",
            tamper(&token, |t| t.server_name.clear()),
            "peering token server name value is empty",
        ),
        (
            "no peer ID",
            tamper(&token, |t| t.peer_id.clear()),
            "peering token peer ID value is empty",
        ),
        (
            "bad CA",
            tamper(&token, |t| {
                t.ca = vec!["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()]
            }),
            "peering token invalid CA",
        ),
        (
            "expired",
            tamper(&token, |t| t.expires_at = "2020-01-01T00:00:00Z".into()),
            "peering token has expired",
        ),
        (
            "tampered fingerprint",
            tamper(&token, |t| t.gateway_fingerprint = "ab".repeat(32)),
            "does not match the token's fingerprint",
        ),
        (
            "wrong CA",
            tamper(&token, |t| t.ca = other_root.clone()),
            "UnknownIssuer",
        ),
        (
            "unreachable",
            tamper(&token, |t| t.server_addresses = vec!["127.0.0.1:1".into()]),
            "could not reach a peering server address",
        ),
        (
            "wrong secret",
            tamper(&token, |t| t.establishment_secret = "0".repeat(64)),
            "a new peering token must be generated: invalid peering establishment secret",
        ),
    ];
    for (what, bad, message) in &cases {
        let (status, body) = establish(&c2, "cluster-01", bad).await;
        assert!((400..600).contains(&status), "{what}: status {status}");
        assert!(
            body.contains(message),
            "{what}: expected {message:?} in {body:?}"
        );
    }
    // Peering with oneself.
    let (status, body) = establish(&c1, "myself", &token).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("cannot create a peering within the same cluster"),
        "{body}"
    );

    // Nothing changed anywhere: the dialer has no peering, the acceptor's is still PENDING.
    assert_eq!(peerings(&c2).await, Vec::<Value>::new());
    assert_eq!(peerings(&c1).await.len(), 1);
    c1.wait_for_state("cluster-02", "PENDING").await;

    // The untouched token still works once; reusing it (from another cluster) fails.
    let (status, body) = establish(&c2, "cluster-01", &token).await;
    assert_eq!(status, 200, "{body}");
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    let (status, body) = establish(&c3, "cluster-01", &token).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "a new peering token must be generated: invalid peering establishment secret"
    );
    assert_eq!(peerings(&c3).await, Vec::<Value>::new());
    // A second link between the same two clusters is refused.
    let again = c1.peering_token("cluster-02-again").await;
    let (status, body) = establish(&c2, "cluster-01-again", &again).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body, "A cluster link already exists between these clusters");
}

#[tokio::test]
async fn a_dead_peer_turns_failing_and_recovers_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let mut c2 = Cluster::start("cluster-02", dir.path()).await;
    let token = c1.peering_token("cluster-02").await;
    assert_eq!(establish(&c2, "cluster-01", &token).await.0, 200);
    c1.wait_for_state("cluster-02", "ACTIVE").await;

    // cluster-02 exports a service to cluster-01.
    c2.register_passing("api", 80).await;
    c2.export("api", "cluster-01").await;
    eventually("api imported on cluster-01", || async {
        let (entries, _) = get(&c1.client, "/v1/health/service/api?peer=cluster-02").await;
        (!entries.as_array().unwrap().is_empty()).then_some(())
    })
    .await;

    // The dialer's agent dies: the acceptor notices within a few heartbeats
    // and keeps serving what it imported.
    c2.agent.kill();
    let failing = c1.wait_for_state("cluster-02", "FAILING").await;
    assert!(failing["StreamStatus"]["LastHeartbeat"].is_string());
    let (entries, _) = get(&c1.client, "/v1/health/service/api?peer=cluster-02").await;
    assert_eq!(
        entries[0]["Service"]["Service"], "api",
        "last imported data is still served"
    );

    // It comes back on its own: the restarted dialer redials.
    c2.restart_agent_process();
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    c2.wait_for_state("cluster-01", "ACTIVE").await;

    // The acceptor deletes the peering while the dialer is down: when the
    // dialer comes back, it learns so and turns TERMINATED (no endless retry).
    c2.agent.kill();
    let deleted = c1.cli(&["peering", "delete", "-name", "cluster-02"]);
    assert!(stdout(&deleted).contains("for deletion"));
    c2.restart_agent_process();
    c2.wait_for_state("cluster-01", "TERMINATED").await;
}

#[tokio::test]
async fn the_gateway_refuses_certificates_from_unpeered_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let c2 = Cluster::start("cluster-02", dir.path()).await;
    let c3 = Cluster::start("cluster-03", dir.path()).await;
    let token = c1.peering_token("cluster-02").await;
    assert_eq!(establish(&c2, "cluster-01", &token).await.0, 200);
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    put(
        &c1.client,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 80}),
    )
    .await;
    c1.export("web", "cluster-02").await;

    // The peer itself may ask for the exported service...
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
    // ...but not for what is not exported, nor anything else.
    let (status, body) = get_via_gateway(
        &c1,
        &peer.certificate_pem,
        &peer.private_key_pem,
        "/v1/health/service/secret",
    )
    .await
    .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (403, "service secret is not exported to peer cluster-02")
    );
    let (status, _) = get_via_gateway(
        &c1,
        &peer.certificate_pem,
        &peer.private_key_pem,
        "/v1/agent/self",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    // Nor can it read, through the exported name, what cluster-01 imported
    // from someone else: the gateway drops `?peer=`, so the answer is
    // cluster-01's own `web`, nothing imported.
    let (status, body) = get_via_gateway(
        &c1,
        &peer.certificate_pem,
        &peer.private_key_pem,
        "/v1/health/service/web?peer=cluster-03",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("PeerName"), "imported data leaked: {body}");
    assert!(body.contains("\"Datacenter\":\"cluster-01\""), "{body}");

    // A cluster nobody peered with is refused.
    let stranger = gateway_view(&c3).await;
    let (status, body) = get_via_gateway(
        &c1,
        &stranger.certificate_pem,
        &stranger.private_key_pem,
        "/v1/health/service/web",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(body, "client certificate is not from a peered cluster");

    // Once the peering is deleted, the former peer is a stranger too.
    let deleted = c1.cli(&["peering", "delete", "-name", "cluster-02"]);
    assert!(stdout(&deleted).contains("for deletion"));
    eventually("former peer refused", || async {
        let result = get_via_gateway(
            &c1,
            &peer.certificate_pem,
            &peer.private_key_pem,
            "/v1/health/service/web",
        )
        .await;
        matches!(result, Ok((403, _))).then_some(())
    })
    .await;
}
