//! Several agents of one cluster sharing its state in a real etcd
//! (`--store etcd`): what one agent writes, the others serve; writes from
//! different agents form one order; an agent that lost its place in etcd's
//! history reads the state afresh; node-owned rows stay with their node.

use std::time::Duration;

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_testkit::etcd::EtcdProcess;
use isthmus_testkit::net::TcpRelay;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::etcd::{agent, until};
use isthmus_tests::process::AgentProcess;
use serde_json::{json, Value};

fn etcd_agent(etcd: &EtcdProcess, node: &str) -> AgentProcess {
    agent(&etcd.endpoint, node, &[])
}

fn intentions(source: &str) -> Value {
    json!({"Kind": "service-intentions", "Name": "backend",
           "Sources": [{"Name": source, "Action": "allow"}]})
}

#[tokio::test]
async fn agents_share_the_cluster_state_and_wake_each_others_queries() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let a = etcd_agent(&etcd, "n1");
    let b = etcd_agent(&etcd, "n2");
    let (ca, cb) = (
        Client::new(&a.http_addr).unwrap(),
        Client::new(&b.http_addr).unwrap(),
    );

    // One CA for the cluster, whichever agent created it.
    let (roots_a, _) = get(&ca, "/v1/connect/ca/roots").await;
    let (roots_b, _) = get(&cb, "/v1/connect/ca/roots").await;
    assert_eq!(roots_a["TrustDomain"], roots_b["TrustDomain"]);
    assert_eq!(
        roots_a["Roots"][0]["RootCert"],
        roots_b["Roots"][0]["RootCert"]
    );

    // B parks a blocking query; A's write wakes it with the entry.
    let (_, index) = get(&cb, "/v1/config/service-intentions").await;
    let parked = {
        let cb = cb.clone();
        tokio::spawn(async move {
            send(
                &cb,
                Method::GET,
                &format!("/v1/config/service-intentions?index={index}&wait=30s"),
                None,
            )
            .await
        })
    };
    put(&ca, "/v1/config", intentions("web")).await;
    let woken = tokio::time::timeout(isthmus_tests::WAIT, parked)
        .await
        .expect("the write through A woke B's query")
        .unwrap();
    assert_eq!(woken.status, 200);
    let entries: Value = serde_json::from_slice(&woken.body).unwrap();
    assert_eq!(entries[0]["Sources"][0]["Name"], "web", "{entries}");
    let woken_index = woken.index.unwrap();
    assert!(woken_index > index);

    // Read-your-writes on the agent that wrote, and one index everywhere.
    put(&cb, "/v1/config", intentions("api")).await;
    let (entry_b, index_b) = get(&cb, "/v1/config/service-intentions/backend").await;
    assert_eq!(entry_b["Sources"][0]["Name"], "api");
    let (entry_a, index_a) = until(&ca, "/v1/config/service-intentions/backend", |e| {
        e["Sources"][0]["Name"] == "api"
    })
    .await;
    assert_eq!(entry_a["ModifyIndex"], entry_b["ModifyIndex"]);
    assert_eq!(index_a, index_b);
}

#[tokio::test]
async fn writes_from_two_agents_form_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let a = etcd_agent(&etcd, "n1");
    let b = etcd_agent(&etcd, "n2");
    let clients = [
        Client::new(&a.http_addr).unwrap(),
        Client::new(&b.http_addr).unwrap(),
    ];

    // Many writes at once through both agents: every one lands.
    let mut writes = Vec::new();
    for i in 0..40 {
        let client = clients[i % 2].clone();
        writes.push(tokio::spawn(async move {
            let entry = json!({"Kind": "service-intentions", "Name": format!("svc-{i}"),
                               "Sources": [{"Name": "web", "Action": "allow"}]});
            put(&client, "/v1/config", entry).await;
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    for client in &clients {
        let (entries, _) = until(client, "/v1/config/service-intentions", |e| {
            e.as_array().is_some_and(|a| a.len() == 40)
        })
        .await;
        let mut indexes: Vec<u64> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ModifyIndex"].as_u64().unwrap())
            .collect();
        indexes.sort();
        indexes.dedup();
        assert_eq!(indexes.len(), 40, "each write got an index of its own");
    }

    // Check-and-set across agents: of two writers that read the same
    // ModifyIndex, exactly one wins.
    let (entry, _) = get(&clients[0], "/v1/config/service-intentions/svc-0").await;
    let modify_index = entry["ModifyIndex"].as_u64().unwrap();
    let cas = |client: Client, source: &'static str| async move {
        let response = send(
            &client,
            Method::PUT,
            &format!("/v1/config?cas={modify_index}"),
            Some(json!({"Kind": "service-intentions", "Name": "svc-0",
                        "Sources": [{"Name": source, "Action": "allow"}]})),
        )
        .await;
        assert_eq!(response.status, 200, "{}", text(&response));
        text(&response).trim() == "true"
    };
    let (won_a, won_b) = tokio::join!(cas(clients[0].clone(), "a"), cas(clients[1].clone(), "b"));
    assert!(
        won_a ^ won_b,
        "exactly one check-and-set wins: a={won_a} b={won_b}"
    );
}

#[tokio::test]
async fn services_belong_to_the_node_that_registered_them() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let a = etcd_agent(&etcd, "n1");
    let b = etcd_agent(&etcd, "n2");
    let (ca, cb) = (
        Client::new(&a.http_addr).unwrap(),
        Client::new(&b.http_addr).unwrap(),
    );
    // The same service ID on two nodes is two instances, not one.
    put(
        &ca,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 8001}),
    )
    .await;
    put(
        &cb,
        "/v1/agent/service/register",
        json!({"Name": "web", "Port": 8002}),
    )
    .await;
    let (services_a, _) = get(&ca, "/v1/agent/services").await;
    let (services_b, _) = get(&cb, "/v1/agent/services").await;
    assert_eq!(services_a["web"]["Port"], 8001, "{services_a}");
    assert_eq!(services_b["web"]["Port"], 8002, "{services_b}");
    // Deregistering on one node leaves the other's.
    put(&cb, "/v1/agent/service/deregister/web", json!(null)).await;
    let (services_a, _) = get(&ca, "/v1/agent/services").await;
    assert_eq!(services_a["web"]["Port"], 8001);
}

// The relay runs on the test's runtime while the test blocks starting
// processes: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_survives_the_agent_and_a_compacted_watch_reads_it_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(dir.path());
    let a = etcd_agent(&etcd, "n1");
    let ca = Client::new(&a.http_addr).unwrap();
    put(&ca, "/v1/config", intentions("web")).await;
    let (roots_before, _) = get(&ca, "/v1/connect/ca/roots").await;
    assert!(a.terminate().success());

    // A new agent process finds everything in etcd.
    let a = etcd_agent(&etcd, "n1");
    let ca = Client::new(&a.http_addr).unwrap();
    let (roots_after, _) = get(&ca, "/v1/connect/ca/roots").await;
    assert_eq!(
        roots_after["Roots"][0]["RootCert"],
        roots_before["Roots"][0]["RootCert"]
    );
    let (entry, _) = get(&ca, "/v1/config/service-intentions/backend").await;
    assert_eq!(entry["Sources"][0]["Name"], "web");

    // B is cut off from etcd, A writes, etcd forgets the history B needs:
    // B's watch cannot resume, so B reads the whole state afresh.
    let etcd_addr = etcd.endpoint.trim_start_matches("http://").parse().unwrap();
    let relay = TcpRelay::start(etcd_addr).await;
    let b = agent(&format!("http://{}", relay.addr), "n2", &[]);
    let cb = Client::new(&b.http_addr).unwrap();
    get(&cb, "/v1/config/service-intentions/backend").await;
    relay.cut();
    put(&ca, "/v1/config", intentions("api")).await;
    // Compaction keeps the revision it is at: one more write, so the one
    // B needs is gone.
    put(
        &ca,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "other",
               "Sources": [{"Name": "web", "Action": "deny"}]}),
    )
    .await;
    etcd.compact_all();
    let (entry, _) = get(&cb, "/v1/config/service-intentions/backend").await;
    assert_eq!(
        entry["Sources"][0]["Name"], "web",
        "B, cut off, still serves what it had"
    );
    relay.restore();
    let (entry, _) = until(&cb, "/v1/config/service-intentions/backend", |e| {
        e["Sources"][0]["Name"] == "api"
    })
    .await;
    assert_eq!(entry["Sources"][0]["Name"], "api");
    // And B keeps following new writes afterwards.
    put(&ca, "/v1/config", intentions("late")).await;
    until(&cb, "/v1/config/service-intentions/backend", |e| {
        e["Sources"][0]["Name"] == "late"
    })
    .await;
    assert!(
        b.logs().text().contains("reading the whole state again"),
        "B resynchronized"
    );
}

#[tokio::test]
async fn agents_reach_an_etcd_that_requires_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (etcd, files) = EtcdProcess::start_tls(dir.path());
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca, cert, key) = (
        path(&files.ca),
        path(&files.client_cert),
        path(&files.client_key),
    );
    let base = [
        "--store",
        "etcd",
        "--etcd-endpoints",
        etcd.endpoint.as_str(),
        "--cluster-name",
        "cluster-01",
        "--node-name",
        "n1",
    ];

    // Without a client certificate etcd refuses the agent, which says why.
    let mut refused: Vec<&str> = base.to_vec();
    refused.extend(["--etcd-ca-file", &ca]);
    let error = match AgentProcess::try_spawn(&refused) {
        Ok(_) => panic!("an agent without a client certificate started"),
        Err(logs) => logs,
    };
    assert!(error.contains("etcd"), "{error}");

    // An https endpoint without the CA is refused before any connection.
    let error = match AgentProcess::try_spawn(&base) {
        Ok(_) => panic!("an https endpoint without --etcd-ca-file was accepted"),
        Err(logs) => logs,
    };
    assert!(error.contains("--etcd-ca-file"), "{error}");

    // With the certificate it works as over plain HTTP.
    let mut full: Vec<&str> = base.to_vec();
    full.extend([
        "--etcd-ca-file",
        &ca,
        "--etcd-cert-file",
        &cert,
        "--etcd-key-file",
        &key,
    ]);
    let agent = AgentProcess::spawn(&full);
    let client = Client::new(&agent.http_addr).unwrap();
    put(&client, "/v1/config", intentions("web")).await;
    let (entry, _) = get(&client, "/v1/config/service-intentions/backend").await;
    assert_eq!(entry["Sources"][0]["Name"], "web");
}

#[tokio::test]
async fn losing_etcd_stops_writes_with_a_reason_and_reads_go_on_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = EtcdProcess::start(dir.path());
    let agent = etcd_agent(&etcd, "n1");
    let client = Client::new(&agent.http_addr).unwrap();
    put(&client, "/v1/config", intentions("web")).await;

    etcd.kill();
    // Reads are answered from the agent's state.
    let (entry, _) = get(&client, "/v1/config/service-intentions/backend").await;
    assert_eq!(entry["Sources"][0]["Name"], "web");
    // A write fails, saying why, instead of hanging.
    let refused = tokio::time::timeout(
        isthmus_tests::WAIT,
        send(&client, Method::PUT, "/v1/config", Some(intentions("api"))),
    )
    .await
    .expect("a write without etcd is answered");
    assert_eq!(refused.status, 500, "{}", text(&refused));
    assert!(text(&refused).contains("etcd"), "{}", text(&refused));

    // etcd is back: writes work again and are read back.
    etcd.restart();
    let deadline = tokio::time::Instant::now() + isthmus_tests::WAIT;
    loop {
        let response = send(&client, Method::PUT, "/v1/config", Some(intentions("api"))).await;
        if response.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "writes never worked again: {}",
            text(&response)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (entry, _) = get(&client, "/v1/config/service-intentions/backend").await;
    assert_eq!(entry["Sources"][0]["Name"], "api");
}
