//! Several agents of one cluster over a real etcd: every agent knows the
//! others and whether they are alive, one leads, and when the leader dies
//! another takes over by itself.

use std::collections::BTreeSet;

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_testkit::etcd::EtcdProcess;
use isthmus_tests::api::{send, text};
use isthmus_tests::etcd;
use isthmus_tests::process::{cli, stdout, AgentProcess};
use serde_json::Value;

fn agent(etcd: &EtcdProcess, node: &str) -> AgentProcess {
    etcd::agent(&etcd.endpoint, node, &["--member-ttl", "2s"])
}

/// GET expecting 200 (these endpoints have no index, as in Consul).
async fn get(client: &Client, path: &str) -> (Value, ()) {
    let response = send(client, Method::GET, path, None).await;
    assert_eq!(response.status, 200, "GET {path}: {}", text(&response));
    (serde_json::from_slice(&response.body).unwrap(), ())
}

/// Waits (bounded) until `check` holds for what `client` answers at `path`.
async fn until(client: &Client, path: &str, check: impl Fn(&Value) -> bool) -> Value {
    etcd::until(client, path, check).await.0
}

fn statuses(members: &Value) -> Vec<(String, u64)> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().to_owned(),
                m["Status"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn agents_see_each_other_and_a_new_leader_takes_over_when_the_leader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let mut agents = [agent(&etcd, "n1"), agent(&etcd, "n2"), agent(&etcd, "n3")];
    let clients: Vec<Client> = agents
        .iter()
        .map(|a| Client::new(&a.http_addr).unwrap())
        .collect();
    let addresses: BTreeSet<String> = agents.iter().map(|a| a.http_addr.clone()).collect();

    // Every agent lists all three alive, and they agree on one leader.
    for client in &clients {
        until(client, "/v1/agent/members", |m| {
            statuses(m) == [("n1".into(), 1), ("n2".into(), 1), ("n3".into(), 1)]
        })
        .await;
    }
    let leader = until(&clients[0], "/v1/status/leader", |l| {
        l.as_str().is_some_and(|l| !l.is_empty())
    })
    .await;
    let leader = leader.as_str().unwrap().to_owned();
    assert!(addresses.contains(&leader), "{leader} is one of the agents");
    for client in &clients {
        until(client, "/v1/status/leader", |l| l == leader.as_str()).await;
        let (peers, _) = get(client, "/v1/status/peers").await;
        let peers: BTreeSet<String> = serde_json::from_value(peers).unwrap();
        assert_eq!(peers, addresses);
    }
    // Exactly one says it leads.
    let mut leading = Vec::new();
    for client in &clients {
        let (me, _) = get(client, "/v1/agent/self").await;
        leading.push(me["Stats"]["consul"]["leader"] == "true");
    }
    assert_eq!(leading.iter().filter(|l| **l).count(), 1, "{leading:?}");

    // The CLI shows them as Consul's does.
    let out = cli(&agents[1].http_addr, &["members"], None);
    let text = stdout(&out);
    assert!(text.starts_with("Node"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains("alive")).count(),
        3,
        "{text}"
    );

    // The leader dies (no goodbye): its lease runs out, another agent
    // leads, and the dead node shows as failed.
    let dead = agents.iter().position(|a| a.http_addr == leader).unwrap();
    agents[dead].kill();
    let dead_name = format!("n{}", dead + 1);
    let survivors: Vec<&Client> = (0..3).filter(|i| *i != dead).map(|i| &clients[i]).collect();
    let new_leader = until(survivors[0], "/v1/status/leader", |l| {
        l.as_str().is_some_and(|l| !l.is_empty() && l != leader)
    })
    .await;
    for client in &survivors {
        until(client, "/v1/status/leader", |l| *l == new_leader).await;
        let members = until(client, "/v1/agent/members", |m| {
            statuses(m).contains(&(dead_name.clone(), 4))
        })
        .await;
        assert_eq!(
            statuses(&members).iter().filter(|(_, s)| *s == 1).count(),
            2,
            "{members}"
        );
    }
    let out = cli(&agents[(dead + 1) % 3].http_addr, &["members"], None);
    assert!(stdout(&out).contains("failed"), "{}", stdout(&out));
}

#[tokio::test]
async fn a_stopping_leader_hands_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    // A long lease: only a graceful release can move leadership quickly.
    let spawn = |node: &str| etcd::agent(&etcd.endpoint, node, &["--member-ttl", "60s"]);
    let first = spawn("n1");
    let c1 = Client::new(&first.http_addr).unwrap();
    until(&c1, "/v1/status/leader", |l| *l == first.http_addr.as_str()).await;
    let second = spawn("n2");
    let c2 = Client::new(&second.http_addr).unwrap();
    until(&c2, "/v1/status/leader", |l| *l == first.http_addr.as_str()).await;
    assert!(first.terminate().success());
    // Well within the 60 s lease (the wait is bounded by WAIT, 20 s).
    until(&c2, "/v1/status/leader", |l| {
        *l == second.http_addr.as_str()
    })
    .await;
    // Its own campaign answers a moment after the election key shows.
    until(&c2, "/v1/agent/self", |me| {
        me["Stats"]["consul"]["leader"] == "true"
    })
    .await;
}

#[tokio::test]
async fn every_agent_finds_services_on_every_node_and_a_dead_nodes_turn_critical() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let mut agents = [agent(&etcd, "n1"), agent(&etcd, "n2"), agent(&etcd, "n3")];
    let clients: Vec<Client> = agents
        .iter()
        .map(|a| Client::new(&a.http_addr).unwrap())
        .collect();
    for client in &clients {
        until(client, "/v1/agent/members", |m| {
            statuses(m).iter().filter(|(_, s)| *s == 1).count() == 3
        })
        .await;
    }
    // Every agent is an instance of `consul`, as Consul lists its servers.
    let servers = until(&clients[0], "/v1/catalog/service/consul", |rows| {
        rows.as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let server_nodes: Vec<&str> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Node"].as_str().unwrap())
        .collect();
    assert_eq!(server_nodes, ["n1", "n2", "n3"]);
    assert_eq!(
        servers[1]["ServicePort"].as_u64().unwrap().to_string(),
        agents[1].http_addr.rsplit(':').next().unwrap()
    );

    // n1 waits for `web`; the registration on n2 wakes it.
    let response = send(&clients[0], Method::GET, "/v1/health/service/web", None).await;
    let index = response.index.unwrap();
    let parked = {
        let client = clients[0].clone();
        tokio::spawn(async move {
            send(
                &client,
                Method::GET,
                &format!("/v1/health/service/web?index={index}&wait=30s"),
                None,
            )
            .await
        })
    };
    for (client, port) in [(&clients[1], 8002), (&clients[2], 8003)] {
        let register = serde_json::json!({"Name": "web", "Port": port,
            "Check": {"CheckID": "web-ttl", "TTL": "1h", "Status": "passing"}});
        let response = send(
            client,
            Method::PUT,
            "/v1/agent/service/register",
            Some(register),
        )
        .await;
        assert_eq!(response.status, 200, "{}", text(&response));
    }
    let woken = tokio::time::timeout(isthmus_tests::WAIT, parked)
        .await
        .expect("a registration on another node woke the query")
        .unwrap();
    assert!(woken.index.unwrap() > index);

    // Both instances, each on its own node with its node's liveness check.
    let entries = until(&clients[0], "/v1/health/service/web?passing", |e| {
        e.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let nodes: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"]["Node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["n2", "n3"]);
    for entry in entries.as_array().unwrap() {
        let ids: Vec<&str> = entry["Checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["CheckID"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["serfHealth", "web-ttl"], "{entry}");
        assert_eq!(entry["Checks"][0]["Node"], entry["Node"]["Node"]);
    }
    let (rows, _) = get(&clients[0], "/v1/catalog/service/web").await;
    let ports: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ServicePort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [8002, 8003]);
    let (names, _) = get(&clients[0], "/v1/catalog/services").await;
    assert!(names.get("web").is_some(), "{names}");
    // Node-scoped reads know every agent's node.
    let nodes = until(&clients[0], "/v1/catalog/nodes", |n| {
        n.as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n1", "n2", "n3"]);
    let (on_n2, _) = get(&clients[0], "/v1/catalog/node-services/n2").await;
    assert_eq!(on_n2["Node"]["Node"], "n2");
    assert_eq!(on_n2["Services"][0]["Port"], 8002, "{on_n2}");
    let (checks, _) = get(&clients[0], "/v1/health/checks/web").await;
    let check_nodes: Vec<&str> = checks
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Node"].as_str().unwrap())
        .collect();
    assert_eq!(check_nodes, ["n2", "n3"], "{checks}");

    // The agent endpoints stay local: n1 runs nothing.
    let (local, _) = get(&clients[0], "/v1/agent/services").await;
    assert_eq!(local, serde_json::json!({}));

    // n3's agent dies: its instance turns critical through its node.
    agents[2].kill();
    let entries = until(&clients[0], "/v1/health/service/web?passing", |e| {
        e.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(entries[0]["Node"]["Node"], "n2");
    let all = until(&clients[1], "/v1/health/service/web", |e| {
        e.as_array().is_some_and(|a| {
            a.iter()
                .any(|e| e["Node"]["Node"] == "n3" && e["Checks"][0]["Status"] == "critical")
        })
    })
    .await;
    let dead = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Node"]["Node"] == "n3")
        .unwrap();
    assert_eq!(dead["Checks"][0]["CheckID"], "serfHealth");
    assert_eq!(dead["Checks"][0]["Output"], "Agent not live or unreachable");
    let (node_checks, _) = get(&clients[0], "/v1/health/node/n3").await;
    assert_eq!(node_checks[0]["CheckID"], "serfHealth", "{node_checks}");
    assert_eq!(node_checks[0]["Status"], "critical");
    let (critical, _) = get(&clients[0], "/v1/health/state/critical").await;
    assert!(
        critical
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["Node"] == "n3" && c["CheckID"] == "serfHealth"),
        "{critical}"
    );
}

#[tokio::test]
async fn a_node_name_belongs_to_one_live_agent() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let mut first = agent(&etcd, "n1");
    let c1 = Client::new(&first.http_addr).unwrap();
    until(&c1, "/v1/agent/members", |m| {
        statuses(m) == [("n1".into(), 1)]
    })
    .await;

    // A second agent under the same name is refused once the first's
    // record outlives the member TTL, and the first goes on.
    let refused = isthmus_tests::process::AgentProcess::try_spawn(&[
        "--store",
        "etcd",
        "--etcd-endpoints",
        &etcd.endpoint,
        "--node-name",
        "n1",
        "--cluster-name",
        "cluster-01",
        "--member-ttl",
        "2s",
    ]);
    let logs = match refused {
        Ok(_) => panic!("a second agent started as n1"),
        Err(logs) => logs,
    };
    assert!(
        logs.contains("another agent is running as node \"n1\""),
        "{logs}"
    );
    until(&c1, "/v1/agent/members", |m| {
        statuses(m) == [("n1".into(), 1)]
    })
    .await;

    // The same node restarting after a crash waits out its old lease.
    first.kill();
    let again = agent(&etcd, "n1");
    let c1 = Client::new(&again.http_addr).unwrap();
    until(&c1, "/v1/agent/members", |m| {
        statuses(m) == [("n1".into(), 1)]
    })
    .await;
}
