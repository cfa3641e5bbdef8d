//! A hostile peer against a real cluster (agent + gateway processes): it
//! holds a real cluster's gateway key (cluster-02's, taken from its
//! gateway view) and speaks the exchange and the replication stream
//! itself through cluster-01's gateway, sending what a well-behaved peer
//! never would. Nothing invalid may be stored; over-long lines are refused
//! before anything is; oversized Meta is refused on the API.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use isthmus_api::catalog::{AgentService, ServiceEntry};
use isthmus_api::gateway::GatewayView;
use isthmus_api::peering::{ExchangeRequest, PeerInfo, PeeringToken, StreamMessage};
use isthmus_api::peering_framing::encode_message;
use isthmus_testkit::body::{channel, full, read_all_within, RequestBody};
use isthmus_testkit::metrics::series_value;
use isthmus_tests::api::{get, send, text};
use isthmus_tests::cluster::Cluster;
use isthmus_tests::peer_client::{gateway_view, h2_via_gateway};
use isthmus_tests::{eventually, WAIT};
use serde_json::{json, Value};

async fn token(acceptor: &Cluster, peer: &str) -> PeeringToken {
    PeeringToken::decode(&acceptor.peering_token(peer).await).unwrap()
}

/// `POST path` through `target`'s gateway as the holder of `as_view`'s
/// gateway certificate.
async fn post(
    target: &Cluster,
    as_view: &GatewayView,
    path: &str,
    body: RequestBody,
) -> http::Response<hyper::body::Incoming> {
    let (server_name, mut sender) =
        h2_via_gateway(target, &as_view.certificate_pem, &as_view.private_key_pem)
            .await
            .unwrap();
    let request = http::Request::post(format!("https://{server_name}{path}"))
        .body(body)
        .unwrap();
    tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("no answer")
        .unwrap()
}

fn dialer_info(view: &GatewayView, gateway_addresses: Vec<String>) -> PeerInfo {
    PeerInfo {
        cluster_name: view.cluster.clone(),
        trust_domain: view.trust_domain.clone(),
        peering_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        ca_pems: view.local_root_pems.clone(),
        gateway_addresses,
        gateway_fingerprint: view.fingerprint.clone(),
        peer_name: "cluster-01".into(),
    }
}

async fn exchange(
    target: &Cluster,
    view: &GatewayView,
    token: &PeeringToken,
    addresses: &[&str],
) -> (u16, String) {
    let request = ExchangeRequest {
        peer_id: token.peer_id.clone(),
        establishment_secret: token.establishment_secret.clone(),
        dialer: dialer_info(view, addresses.iter().map(|a| a.to_string()).collect()),
    };
    let body = full(serde_json::to_vec(&request).unwrap());
    read_all_within(WAIT, post(target, view, "/v1/peering/exchange", body).await).await
}

async fn agent_metrics(cluster: &Cluster) -> String {
    let response = send(
        &cluster.client,
        Method::GET,
        "/v1/agent/metrics?format=prometheus",
        None,
    )
    .await;
    assert_eq!(response.status, 200);
    text(&response)
}

fn instance(service: &str, id: &str) -> ServiceEntry {
    ServiceEntry {
        service: AgentService {
            id: id.into(),
            service: service.into(),
            address: "10.0.0.5".into(),
            port: 8080,
            ..AgentService::default()
        },
        ..ServiceEntry::default()
    }
}

#[tokio::test]
async fn a_hostile_peer_stores_nothing_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let c2 = Cluster::start("cluster-02", dir.path()).await;
    let evil = gateway_view(&c2).await;
    let token = token(&c1, "evil").await;

    // Gateway addresses our sidecars would dial: refused before anything is stored.
    for bad in ["169.254.169.254:80", "0.0.0.0:0", "[ff02::1]:443", "gw_x:1"] {
        let (status, body) = exchange(&c1, &evil, &token, &[bad]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains(bad), "{bad}: {body}");
        let peering = c1.peering("evil").await.unwrap();
        assert_eq!(peering["State"], "PENDING", "{peering}");
    }
    // The secret is still good: the refusals used it up nowhere.
    let (status, body) = exchange(&c1, &evil, &token, &[&c2.gateway.advertise]).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let stream_secret = answer["StreamSecret"].as_str().unwrap().to_owned();
    let peering = c1.peering("evil").await.unwrap();
    assert_eq!(peering["State"], "ESTABLISHING");
    assert_eq!(
        peering["PeerServerAddresses"],
        json!([c2.gateway.advertise])
    );

    // Wait until cluster-01's gateway knows the new peer (its view follows
    // the agent's): an empty stream then reaches the agent, which wants an Open.
    eventually("the gateway forwards evil's stream", || async {
        let response = post(&c1, &evil, "/v1/peering/stream", full("")).await;
        let (status, body) = read_all_within(WAIT, response).await;
        (status == 400).then_some(()).or_else(|| {
            assert_eq!(status, 403, "{body}");
            None
        })
    })
    .await;

    // An Open line past 8 KiB is refused without waiting for its end; the
    // stream is answered and closed, and nothing is stored or counted.
    let (tx, body) = channel();
    let huge_open = format!(
        "{{\"Type\":\"Open\",\"PeerID\":\"{}\",\"StreamSecret\":\"{}",
        token.peer_id,
        "x".repeat(9 * 1024)
    );
    tx.send(Bytes::from(huge_open)).await.unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        post(&c1, &evil, "/v1/peering/stream", body),
    )
    .await
    .expect("an over-long Open line was buffered instead of refused");
    let (status, body) = read_all_within(WAIT, refused).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body, "stream message longer than 8192 bytes");
    drop(tx);
    let peering = c1.peering("evil").await.unwrap();
    assert_eq!(peering["State"], "ESTABLISHING", "{peering}");
    let open = "isthmus_peering_replication_messages_total{direction=\"received\",peer=\"evil\",type=\"open\"}";
    assert_eq!(
        series_value(&agent_metrics(&c1).await, open).unwrap_or(0.0),
        0.0
    );

    // Now a real session, carrying hostile messages among valid ones.
    let (tx, body) = channel();
    let line = |m: &StreamMessage| Bytes::from(encode_message(m));
    tx.send(line(&StreamMessage::Open {
        peer_id: token.peer_id.clone(),
        stream_secret,
    }))
    .await
    .unwrap();
    let response = post(&c1, &evil, "/v1/peering/stream", body).await;
    assert_eq!(response.status(), 200);
    // Read what cluster-01 sends, so its side never waits on flow control.
    let mut incoming = response.into_body();
    let draining = tokio::spawn(async move { while let Some(Ok(_)) = incoming.frame().await {} });
    // Keep the session alive (the test heartbeat is 200ms).
    let heartbeats = tx.clone();
    let beating = tokio::spawn(async move {
        while heartbeats
            .send(line(&StreamMessage::Heartbeat))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut backend_with_meta = instance("backend", "backend-meta");
    backend_with_meta.service.meta = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
    let hostile = [
        StreamMessage::TrustBundle {
            trust_domain: evil.trust_domain.clone(),
            root_pems: evil.local_root_pems.clone(),
        },
        // An invalid name in the export list: the whole list is dropped.
        StreamMessage::ExportedServices {
            services: vec!["backend".into(), "../admin".into()],
        },
        StreamMessage::ExportedServices {
            services: vec!["backend".into()],
        },
        // Not exported by the peer.
        StreamMessage::Service {
            name: "db".into(),
            instances: vec![instance("db", "db-1")],
        },
        // An invalid name.
        StreamMessage::Service {
            name: "Bad.Name".into(),
            instances: vec![],
        },
        // Too many instances.
        StreamMessage::Service {
            name: "backend".into(),
            instances: vec![instance("backend", "b"); 4097],
        },
        // Oversized meta.
        StreamMessage::Service {
            name: "backend".into(),
            instances: vec![backend_with_meta],
        },
        // Gateways our sidecars would dial.
        StreamMessage::Gateways {
            addresses: vec!["169.254.169.254:80".into()],
        },
        StreamMessage::Gateways {
            addresses: vec!["0.0.0.0:0".into()],
        },
        // Finally a valid service: once it is stored, all of the above
        // have been seen.
        StreamMessage::Service {
            name: "backend".into(),
            instances: vec![instance("backend", "backend-1")],
        },
    ];
    for message in &hostile {
        tx.send(line(message)).await.unwrap();
    }
    eventually("the valid service imported", || async {
        let (entries, _) = get(&c1.client, "/v1/health/service/backend?peer=evil").await;
        (entries.as_array()?.len() == 1).then_some(())
    })
    .await;

    let (entries, _) = get(&c1.client, "/v1/health/service/backend?peer=evil").await;
    assert_eq!(entries[0]["Service"]["ID"], "backend-1", "{entries}");
    let (services, _) = get(&c1.client, "/v1/catalog/services?peer=evil").await;
    let names: Vec<&String> = services.as_object().unwrap().keys().collect();
    assert_eq!(names, ["backend"], "{services}");
    let (db, _) = get(&c1.client, "/v1/health/service/db?peer=evil").await;
    assert_eq!(db, json!([]));
    let peering = c1.peering("evil").await.unwrap();
    assert_eq!(peering["State"], "ACTIVE", "{peering}");
    assert_eq!(
        peering["PeerServerAddresses"],
        json!([c2.gateway.advertise]),
        "a hostile gateway address was stored"
    );
    let metrics = agent_metrics(&c1).await;
    for (reason, count) in [
        ("service_name", 2.0),
        ("not_exported", 1.0),
        ("too_many", 1.0),
        ("bad_instance", 1.0),
        ("gateway_address", 2.0),
    ] {
        let series = format!(
            "isthmus_peering_replication_rejected_total{{peer=\"evil\",reason=\"{reason}\"}}"
        );
        assert_eq!(
            series_value(&metrics, &series).unwrap_or(0.0),
            count,
            "{series}"
        );
    }
    beating.abort();
    draining.abort();
}

#[tokio::test]
async fn oversized_meta_is_refused_on_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let meta: serde_json::Map<String, Value> = (0..100_000)
        .map(|i| (format!("key-{i}"), Value::from("v")))
        .collect();
    let response = send(
        &c1.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({"PeerName": "cluster-02", "Meta": meta})),
    )
    .await;
    assert_eq!(response.status, 400, "{}", text(&response));
    assert_eq!(
        text(&response),
        "Meta cannot contain more than 64 key/value pairs"
    );
    assert!(c1.peering("cluster-02").await.is_none());

    let response = send(
        &c1.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({"PeerName": "cluster-02", "Meta": {"k": "v".repeat(513)}})),
    )
    .await;
    assert_eq!(response.status, 400);
    assert!(
        text(&response).ends_with("Value is too long (limit: 512 characters)"),
        "{}",
        text(&response)
    );

    let response = send(
        &c1.client,
        Method::POST,
        "/v1/peering/establish",
        Some(
            json!({"PeerName": "cluster-02", "PeeringToken": "x", "Meta": {"k".repeat(129): "v"}}),
        ),
    )
    .await;
    assert_eq!(response.status, 400);
    assert!(
        text(&response).ends_with("Key is too long (limit: 128 characters)"),
        "{}",
        text(&response)
    );

    // Within the limits it works.
    let response = send(
        &c1.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({"PeerName": "cluster-02", "Meta": {"env": "prod"}})),
    )
    .await;
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(
        c1.peering("cluster-02").await.unwrap()["Meta"],
        json!({"env": "prod"})
    );
}
