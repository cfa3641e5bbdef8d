//! Attacks on the peering server name: unauthenticated exchanges that
//! trickle their bodies or are too large, and a peer's *service*
//! certificate used to open the replication stream. Real TLS on loopback,
//! the stub agent behind the gateway.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use isthmus_gateway::config::ExchangeLimits;
use isthmus_gateway::{GatewayConfig, RunningGateway};
use support::*;
use tokio::task::JoinSet;

const BODY_TIMEOUT: Duration = Duration::from_secs(3);

struct Fixture {
    local: LocalCluster,
    peer: PeerCluster,
    /// Signed by a CA nobody trusts.
    stranger: PeerCluster,
    _stub: StubAgent,
    gateway: RunningGateway,
}

impl Fixture {
    async fn start(max_concurrent: usize) -> Fixture {
        let local = LocalCluster::new();
        let peer = PeerCluster::new("cluster-02", "bbbb.isthmus");
        let stranger = PeerCluster::new("evil", "eeee.isthmus");
        let stub =
            StubAgent::for_gateway(local.view(vec![peer.peer("ACTIVE", &["backend"])])).await;
        let mut config = GatewayConfig::loopback(stub.url());
        config.drain_timeout = Duration::from_secs(1);
        config.startup_timeout = WAIT;
        config.exchange = ExchangeLimits {
            max_body_bytes: 16 * 1024,
            body_timeout: BODY_TIMEOUT,
            max_per_connection: 4,
            max_concurrent,
        };
        let gateway = isthmus_gateway::start(config).await.unwrap();
        Fixture {
            local,
            peer,
            stranger,
            _stub: stub,
            gateway,
        }
    }

    async fn connect(&self, client: &Leaf) -> PeerConnection {
        PeerConnection::connect(self.gateway.bind_addr(), &self.local, client).await
    }

    async fn metrics(&self) -> HashMap<String, f64> {
        admin_metrics(self.gateway.admin_addr()).await
    }

    async fn metric(&self, series: &str) -> f64 {
        self.metrics().await.get(series).copied().unwrap_or(0.0)
    }
}

fn refused(reason: &str) -> String {
    format!("gateway_peering_exchange_refused_total{{reason=\"{reason}\"}}")
}

/// Opens `n` exchanges on `conn` whose bodies trickle one byte every
/// 100 ms and never end; each task yields the status and when it came.
fn trickle(conn: &PeerConnection, n: usize, tasks: &mut JoinSet<(u16, Duration)>) {
    for _ in 0..n {
        let mut sender = conn.sender();
        tasks.spawn(async move {
            let (tx, body) = channel();
            tokio::spawn(async move {
                while tx.send(Bytes::from_static(b" ")).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let request =
                http::Request::post(format!("https://{}/v1/peering/exchange", server_name()))
                    .body(body)
                    .unwrap();
            let started = Instant::now();
            let response = tokio::time::timeout(WAIT, sender.send_request(request))
                .await
                .expect("no answer to a trickling exchange")
                .unwrap();
            (response.status().as_u16(), started.elapsed())
        });
    }
}

/// The next `n` answers of `tasks`, as statuses.
async fn answers(tasks: &mut JoinSet<(u16, Duration)>, n: usize) -> Vec<(u16, Duration)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let next = tokio::time::timeout(WAIT, tasks.join_next())
            .await
            .expect("an exchange was not answered")
            .expect("no task left");
        out.push(next.unwrap());
    }
    out
}

#[tokio::test]
async fn trickling_exchanges_are_capped_and_starve_nobody() {
    let f = Fixture::start(10).await;
    // Two connections with an untrusted certificate, 100 trickling
    // exchanges each: four per connection are read, the rest refused.
    let attacker_a = f.connect(&f.stranger.gateway).await;
    let attacker_b = f.connect(&f.stranger.gateway).await;
    let mut held = JoinSet::new();
    trickle(&attacker_a, 100, &mut held);
    trickle(&attacker_b, 100, &mut held);
    let first = answers(&mut held, 192).await;
    assert!(first.iter().all(|(s, _)| *s == 429), "{first:?}");
    assert_eq!(f.metric("gateway_peering_exchanges_in_flight").await, 8.0);

    // Meanwhile an authenticated peer's health query and a legitimate
    // exchange are answered at once.
    let started = Instant::now();
    let mut peer = f.connect(&f.peer.gateway).await;
    let (status, body) = peer.call("GET", "/v1/health/service/backend").await;
    assert_eq!(status, 200, "{body}");
    let mut newcomer = f.connect(&f.stranger.gateway).await;
    let response = newcomer
        .request("POST", "/v1/peering/exchange", full(r#"{"PeerID":"p1"}"#))
        .await;
    let (status, body) = read_all(response).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"{\"PeerID\":\"p1\"}"#), "{body}");
    assert!(
        started.elapsed() < BODY_TIMEOUT,
        "peers waited {:?} behind the trickling exchanges",
        started.elapsed()
    );

    // A third connection finds the gateway-wide cap (10) nearly reached.
    let attacker_c = f.connect(&f.stranger.gateway).await;
    trickle(&attacker_c, 10, &mut held);
    let third = answers(&mut held, 8).await;
    assert!(third.iter().all(|(s, _)| *s == 503), "{third:?}");
    assert_eq!(f.metric("gateway_peering_exchanges_in_flight").await, 10.0);
    // The health query still goes through.
    let (status, _) = peer.call("GET", "/v1/health/service/backend").await;
    assert_eq!(status, 200);

    // The ten held exchanges time out (408) when their body deadline passes.
    let last = answers(&mut held, 10).await;
    for (status, elapsed) in &last {
        assert_eq!(*status, 408);
        assert!(
            *elapsed >= BODY_TIMEOUT - Duration::from_millis(100),
            "{elapsed:?}"
        );
    }
    let metrics = f.metrics().await;
    assert_eq!(metrics[&refused("connection_limit")], 192.0);
    assert_eq!(metrics[&refused("total_limit")], 8.0);
    assert_eq!(metrics[&refused("timeout")], 10.0);
    assert_eq!(metrics["gateway_peering_exchanges_in_flight"], 0.0);
    let limited = "gateway_peering_requests_total{endpoint=\"exchange\",outcome=\"limited\",peer=\"unknown\"}";
    assert_eq!(metrics[limited], 210.0);

    // With the slots free again, a new exchange goes through.
    let response = newcomer
        .request("POST", "/v1/peering/exchange", full(r#"{"PeerID":"p2"}"#))
        .await;
    assert_eq!(read_all(response).await.0, 200);
}

#[tokio::test]
async fn oversized_exchange_bodies_are_refused_before_the_agent_sees_them() {
    let f = Fixture::start(64).await;
    let mut conn = f.connect(&f.stranger.gateway).await;
    // Declared too large.
    let response = conn
        .request("POST", "/v1/peering/exchange", full(vec![b'x'; 17 * 1024]))
        .await;
    let (status, body) = read_all(response).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body, "peering exchange body is larger than 16384 bytes");

    // Streamed without a length until it passes the limit.
    let (tx, body) = channel();
    let feeder = tokio::spawn(async move {
        for _ in 0..64 {
            if tx.send(Bytes::from(vec![b'x'; 1024])).await.is_err() {
                break;
            }
        }
        tx
    });
    let response = conn.request("POST", "/v1/peering/exchange", body).await;
    assert_eq!(response.status(), 413);
    let _ = response.into_body().collect().await;
    drop(feeder.await);
    assert_eq!(f.metric(&refused("too_large")).await, 2.0);
    assert_eq!(f.metric("gateway_peering_exchanges_in_flight").await, 0.0);

    // The connection is still good for a proper exchange.
    let response = conn
        .request("POST", "/v1/peering/exchange", full(r#"{"PeerID":"p1"}"#))
        .await;
    assert_eq!(read_all(response).await.0, 200);
}

#[tokio::test]
async fn only_the_peers_mesh_gateway_may_open_the_stream() {
    let f = Fixture::start(64).await;
    // A certificate of the peer's CA and trust domain, but a service's.
    let service = f.peer.ca.leaf("web");
    let mut conn = f.connect(&service).await;
    let (tx, body) = channel();
    tx.send(Bytes::from_static(b"{\"Type\":\"Open\"}\n"))
        .await
        .unwrap();
    let response = conn.request("POST", "/v1/peering/stream", body).await;
    let (status, body) = read_all(response).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        "peer cluster-02 may open /v1/peering/stream only with its mesh gateway's certificate \
         (spiffe://bbbb.isthmus/gateway/mesh/dc/<dc>), not spiffe://bbbb.isthmus/ns/default/dc/cluster-02/svc/web"
    );
    let denied = "gateway_peering_requests_total{endpoint=\"stream\",outcome=\"denied\",peer=\"cluster-02\"}";
    assert_eq!(f.metric(denied).await, 1.0);

    // The gateway's certificate still opens it.
    let mut conn = f.connect(&f.peer.gateway).await;
    let (_tx, body) = channel();
    let response = conn.request("POST", "/v1/peering/stream", body).await;
    assert_eq!(response.status(), 200);
}
