//! Peering with a cluster whose agents share etcd: the leader runs the
//! peering work, a gateway may forward to any agent (a non-leader relays
//! to the leader), and when the leader dies another agent takes the
//! streams over: the peer sees the peering come back by itself. The
//! leader probes the peer's gateway; any agent shows its results.

use isthmus_runtime::client::Client;
use isthmus_testkit::etcd::EtcdProcess;
use isthmus_tests::cluster::{Cluster, GatewayProcess, TEST_HEARTBEAT};
use isthmus_tests::eventually;
use isthmus_tests::process::{stderr, stdout, AgentProcess};

fn agent(etcd: &EtcdProcess, node: &str) -> AgentProcess {
    isthmus_tests::etcd::agent(
        &etcd.endpoint,
        node,
        &[
            "--member-ttl",
            "2s",
            "--peering-heartbeat",
            TEST_HEARTBEAT,
            "--peering-gateway-probe-interval",
            "200ms",
        ],
    )
}

async fn peering_state(client: &Client, name: &str) -> Option<String> {
    let (peering, _) = client
        .get_json::<serde_json::Value>(&format!("/v1/peering/{name}"))
        .await
        .ok()?;
    peering["State"].as_str().map(str::to_owned)
}

async fn leader(client: &Client) -> String {
    eventually("a leader", || async {
        let (leader, _) = client.get_json::<String>("/v1/status/leader").await.ok()?;
        (!leader.is_empty()).then_some(leader)
    })
    .await
}

/// Whether the leader's last probe of `peer`'s gateway was answered, as
/// the agent behind `client` reports it.
async fn gateway_alive(client: &Client, peer: &str) -> Option<bool> {
    let (gateways, _) = client
        .get_json::<serde_json::Value>("/v1/internal/ui/peering-gateways")
        .await
        .ok()?;
    gateways.as_array()?.iter().find(|g| g["Peer"] == peer)?["Alive"].as_bool()
}

#[tokio::test]
async fn the_peering_follows_the_leader_of_a_multi_agent_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let mut agents = vec![agent(&etcd, "n1"), agent(&etcd, "n2")];
    let first = Client::new(&agents[0].http_addr).unwrap();
    let leading = leader(&first).await;
    // The gateway talks to the agent that does not lead: it relays.
    let (lead, follow) = if agents[0].http_addr == leading {
        (0, 1)
    } else {
        (1, 0)
    };
    let follower = Client::new(&agents[follow].http_addr).unwrap();
    let gateway = GatewayProcess::spawn(&agents[follow].url());
    eventually("cluster-01's gateway registered and passing", || async {
        let (entries, _) = follower
            .get_json::<serde_json::Value>("/v1/health/service/mesh-gateway?passing")
            .await
            .ok()?;
        (entries.as_array()?.len() == 1).then_some(())
    })
    .await;

    // The token comes from the leader (any agent may answer), the peer
    // establishes through cluster-01's gateway.
    let c2 = Cluster::start("cluster-02", dir.path()).await;
    let token = isthmus_tests::process::cli(
        &agents[lead].http_addr,
        &["peering", "generate-token", "-name", "cluster-02"],
        None,
    );
    assert!(token.status.success(), "{}", stderr(&token));
    let token = stdout(&token).trim().to_owned();
    let established = c2.cli(&[
        "peering",
        "establish",
        "-name",
        "cluster-01",
        "-peering-token",
        &token,
    ]);
    assert!(established.status.success(), "{}", stderr(&established));
    c2.wait_for_state("cluster-01", "ACTIVE").await;
    for client in [&first, &follower] {
        eventually(
            "cluster-01 sees the peering ACTIVE on every agent",
            || async {
                (peering_state(client, "cluster-02").await.as_deref() == Some("ACTIVE"))
                    .then_some(())
            },
        )
        .await;
        // The leader probes cluster-02's gateway; the follower asks it.
        eventually("cluster-02's gateway alive, from every agent", || async {
            (gateway_alive(client, "cluster-02").await == Some(true)).then_some(())
        })
        .await;
    }

    // The leader dies. The survivor takes over; the peer's stream breaks,
    // the peer redials through the gateway, and the peering is ACTIVE
    // again on both sides without anyone touching it.
    agents[lead].kill();
    eventually("the survivor leads", || async {
        let (leader, _) = follower
            .get_json::<String>("/v1/status/leader")
            .await
            .ok()?;
        (leader == agents[follow].http_addr).then_some(())
    })
    .await;
    eventually("cluster-01's survivor sees the stream back", || async {
        (peering_state(&follower, "cluster-02").await.as_deref() == Some("ACTIVE")).then_some(())
    })
    .await;
    c2.wait_for_state("cluster-01", "ACTIVE").await;
    // The new leader probes now.
    eventually("the survivor probes cluster-02's gateway", || async {
        (gateway_alive(&follower, "cluster-02").await == Some(true)).then_some(())
    })
    .await;
    drop(gateway);
    agents.clear();
}
