//! `consul-cluster-peering.md`, every step with `consul` → `isthmus`:
//! token, establish, export, intentions, list/read, health with `?peer=`,
//! delete, TERMINATED on the other side, and re-establishing.

use http::Method;
use isthmus_tests::api::{get, put, send, text};
use isthmus_tests::cluster::Cluster;
use isthmus_tests::eventually;
use isthmus_tests::process::{stderr, stdout};
use serde_json::{json, Value};

const EXPORT_BACKEND: &str = r#"Kind = "exported-services"
Name = "default"
Services = [
{
## The name and namespace of the service to export.
Name = "backend-service"
Namespace = "default"
## The list of peer clusters to export the service to.
Consumers = [
{
## The peer name to reference in config is the one set
## during the peering process.
PeerName = "cluster-02"
}
]
}
]
"#;

const SEED_INTENTIONS: &str = r#"Kind = "service-intentions"
Name = "backend-service"
Sources = [
{
Name = "frontend-service"
Peer = "cluster-02"
Action = "allow"
}
]
"#;

async fn imported(cluster: &Cluster, path: &str) -> Vec<Value> {
    let (entries, _) = get(&cluster.client, path).await;
    entries.as_array().unwrap().clone()
}

#[tokio::test]
async fn seed_flow_from_token_to_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    let c2 = Cluster::start("cluster-02", dir.path()).await;

    // cluster-01: curl --request POST --data '{"PeerName":"cluster-02"}' .../v1/peering/token
    let response = send(
        &c1.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({"PeerName": "cluster-02"})),
    )
    .await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let first: Value = serde_json::from_slice(&response.body).unwrap();
    let first = first["PeeringToken"].as_str().unwrap().to_owned();
    c1.wait_for_state("cluster-02", "PENDING").await;

    // consul peering generate-token -name cluster-02: a new token supersedes the first.
    let generated = c1.cli(&["peering", "generate-token", "-name", "cluster-02"]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let token = stdout(&generated).trim().to_owned();
    assert_ne!(token, first);
    let superseded = send(
        &c2.client,
        Method::POST,
        "/v1/peering/establish",
        Some(json!({"PeerName": "cluster-01", "PeeringToken": first})),
    )
    .await;
    assert_eq!(superseded.status, 400);
    assert_eq!(
        text(&superseded),
        "a new peering token must be generated: invalid peering establishment secret"
    );

    // cluster-02: curl --request POST --data @peering_token.json .../v1/peering/establish
    let established = send(
        &c2.client,
        Method::POST,
        "/v1/peering/establish",
        Some(json!({"PeerName": "cluster-01", "PeeringToken": token})),
    )
    .await;
    assert_eq!(established.status, 200, "{}", text(&established));
    assert_eq!(text(&established), "{}");
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    let dialer = c2.wait_for_state("cluster-01", "ACTIVE").await;
    assert_eq!(dialer["Remote"]["Datacenter"], "cluster-01");
    assert_eq!(
        dialer["PeerServerName"].as_str().unwrap(),
        format!("server.cluster-01.peering.{}", trust_domain(&c1).await)
    );
    assert_eq!(dialer["PeerServerAddresses"], json!([c1.gateway.advertise]));

    // Export backend-service and authorize frontend-service from cluster-02.
    put(
        &c1.client,
        "/v1/agent/service/register",
        json!({"Name": "backend-service", "ID": "backend-1", "Port": 9090, "Tags": ["v2", "primary"], "Check": {"TTL": "1h", "Status": "passing"}}),
    )
    .await;
    let dir_files = tempfile::tempdir().unwrap();
    let export_file = dir_files.path().join("peering-config.hcl");
    std::fs::write(&export_file, EXPORT_BACKEND).unwrap();
    let written = c1.cli(&["config", "write", export_file.to_str().unwrap()]);
    assert_eq!(
        stdout(&written),
        "Config entry written: exported-services/default\n",
        "{}",
        stderr(&written)
    );
    let written = c1.cli_stdin(&["config", "write", "-"], SEED_INTENTIONS);
    assert_eq!(
        stdout(&written),
        "Config entry written: service-intentions/backend-service\n"
    );
    let check = c1.cli(&[
        "intention",
        "check",
        "frontend-service",
        "backend-service",
        "-source-peer",
        "cluster-02",
    ]);
    assert_eq!(stdout(&check), "Allowed\n");
    // A caller from cluster-02's trust domain is frontend-service of peer cluster-02.
    let c2_td = trust_domain(&c2).await;
    for (caller, allowed) in [("frontend-service", true), ("intruder", false)] {
        let uri = format!("spiffe://{c2_td}/ns/default/dc/cluster-02/svc/{caller}");
        let response = send(
            &c1.client,
            Method::POST,
            "/v1/agent/connect/authorize",
            Some(json!({"Target": "backend-service", "ClientCertURI": uri})),
        )
        .await;
        let answer: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(answer["Authorized"], allowed, "{caller}: {answer}");
    }

    // cluster-02 sees the export, pushed over the stream.
    let entries = eventually("backend-service imported on cluster-02", || async {
        let entries = imported(&c2, "/v1/health/service/backend-service?peer=cluster-01").await;
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(entries[0]["Service"]["ID"], "backend-1");
    assert_eq!(entries[0]["Service"]["PeerName"], "cluster-01");
    assert_eq!(entries[0]["Node"]["PeerName"], "cluster-01");
    assert_eq!(entries[0]["Checks"].as_array().unwrap().len(), 1);
    assert_eq!(
        entries[0]["Checks"][0]["CheckID"],
        "backend-1:overall-check"
    );
    assert_eq!(entries[0]["Checks"][0]["Status"], "passing");
    // The seed's own check: curl "http://127.0.0.1:8500/v1/health/service/?peer=cluster-01"
    assert_eq!(
        imported(&c2, "/v1/health/service/?peer=cluster-01")
            .await
            .len(),
        1
    );

    // The catalog's service list for the peer, as Consul's `?peer=`; the
    // local list does not mix imported services in.
    let (names, _) = get(&c2.client, "/v1/catalog/services?peer=cluster-01").await;
    assert_eq!(names, json!({"backend-service": ["primary", "v2"]}));
    let (local, _) = get(&c2.client, "/v1/catalog/services").await;
    assert!(local.get("backend-service").is_none(), "{local}");
    // Consul does not check the peer name: one with no peering imported nothing.
    let (unknown, _) = get(&c2.client, "/v1/catalog/services?peer=nope").await;
    assert_eq!(unknown, json!({}));
    // The catalog rows of an imported service, as Consul's `?peer=`.
    let (rows, _) = get(
        &c2.client,
        "/v1/catalog/service/backend-service?peer=cluster-01",
    )
    .await;
    assert!(
        rows.as_array().is_some_and(|rows| !rows.is_empty()
            && rows
                .iter()
                .all(|row| row["ServiceName"] == "backend-service")),
        "{rows}"
    );

    // A health change on cluster-01 reaches cluster-02's blocking query.
    let (_, index) = get(
        &c2.client,
        "/v1/health/service/backend-service?peer=cluster-01",
    )
    .await;
    put(
        &c1.client,
        "/v1/agent/check/fail/service:backend-1",
        json!(null),
    )
    .await;
    let (after, _) = get(
        &c2.client,
        &format!("/v1/health/service/backend-service?peer=cluster-01&index={index}&wait=15s"),
    )
    .await;
    assert_eq!(after[0]["Checks"][0]["Status"], "critical");
    assert_eq!(
        imported(
            &c2,
            "/v1/health/service/backend-service?peer=cluster-01&passing"
        )
        .await,
        Vec::<Value>::new()
    );

    // List and read, API and CLI.
    let (peerings, _) = get(&c1.client, "/v1/peerings").await;
    assert_eq!(peerings[0]["Name"], "cluster-02");
    assert_eq!(peerings[0]["State"], "ACTIVE");
    assert_eq!(
        peerings[0]["StreamStatus"]["ExportedServices"],
        json!(["backend-service"])
    );
    assert!(peerings[0]["StreamStatus"]["LastHeartbeat"].is_string());
    let list = stdout(&c1.cli(&["peering", "list"]));
    let row = list
        .lines()
        .find(|l| l.starts_with("cluster-02"))
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[..4],
        ["cluster-02", "ACTIVE", "0", "1"]
    );
    let list = stdout(&c2.cli(&["peerings", "list"]));
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..4]
                == ["cluster-01", "ACTIVE", "1", "0"]),
        "{list}"
    );
    let read = stdout(&c1.cli(&["peering", "read", "-name", "cluster-02"]));
    for expected in [
        "Name:",
        "State:",
        "Peer ID:",
        "Exported Services: 1",
        "Imported Services: 0",
    ] {
        assert!(read.contains(expected), "{expected} missing from\n{read}");
    }
    assert!(read.contains("ACTIVE"));
    let exported = stdout(&c1.cli(&["peering", "exported-services", "-name", "cluster-02"]));
    assert_eq!(exported.trim(), "backend-service");
    let (exported_api, _) = get(&c1.client, "/v1/exported-services").await;
    assert_eq!(
        exported_api,
        json!([{"Service": "backend-service", "Consumers": {"Peers": ["cluster-02"]}}])
    );

    // Removing the export removes the service on the peer.
    let deleted = c1.cli(&[
        "config",
        "delete",
        "-kind",
        "exported-services",
        "-name",
        "default",
    ]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    eventually("export withdrawn on cluster-02", || async {
        imported(&c2, "/v1/health/service/backend-service?peer=cluster-01")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    c1.cli(&["config", "write", export_file.to_str().unwrap()]);
    eventually("export back on cluster-02", || async {
        (!imported(&c2, "/v1/health/service/backend-service?peer=cluster-01")
            .await
            .is_empty())
        .then_some(())
    })
    .await;

    // consul peering delete -name cluster-02
    let deleted = c1.cli(&["peering", "delete", "-name", "cluster-02"]);
    assert_eq!(
        stdout(&deleted),
        "Successfully submitted peering connection, cluster-02, for deletion\n",
        "{}",
        stderr(&deleted)
    );
    eventually("peering gone on cluster-01", || async {
        c1.peering("cluster-02").await.is_none().then_some(())
    })
    .await;
    let terminated = c2.wait_for_state("cluster-01", "TERMINATED").await;
    assert_eq!(
        terminated["PeerCAPems"],
        json!([]),
        "the trust bundle is removed"
    );
    assert_eq!(
        imported(&c2, "/v1/health/service/backend-service?peer=cluster-01").await,
        Vec::<Value>::new()
    );
    let missing = send(&c1.client, Method::GET, "/v1/peering/cluster-02", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(text(&missing), "Peering not found for \"cluster-02\"");
    let again = send(&c1.client, Method::DELETE, "/v1/peering/cluster-02", None).await;
    assert_eq!(again.status, 200, "delete is idempotent");

    // A terminated peering can be re-established with a fresh token.
    let token = stdout(&c1.cli(&["peering", "generate-token", "-name", "cluster-02"]))
        .trim()
        .to_owned();
    let established = c2.cli(&[
        "peering",
        "establish",
        "-name",
        "cluster-01",
        "-peering-token",
        &token,
    ]);
    assert_eq!(
        stdout(&established),
        "Successfully established peering connection with cluster-01\n",
        "{}",
        stderr(&established)
    );
    c2.wait_for_state("cluster-01", "ACTIVE").await;
    c1.wait_for_state("cluster-02", "ACTIVE").await;
    eventually("export replicated again", || async {
        (!imported(&c2, "/v1/health/service/backend-service?peer=cluster-01")
            .await
            .is_empty())
        .then_some(())
    })
    .await;

    // Deleting from the dialer's side terminates the acceptor's.
    let deleted = c2.cli(&["peering", "delete", "-name", "cluster-01"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    c1.wait_for_state("cluster-02", "TERMINATED").await;
}

async fn trust_domain(cluster: &Cluster) -> String {
    let (roots, _) = get(&cluster.client, "/v1/connect/ca/roots").await;
    roots["TrustDomain"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn empty_peering_list_and_missing_names() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = Cluster::start("cluster-01", dir.path()).await;
    assert_eq!(
        stdout(&c1.cli(&["peering", "list"])),
        "There are no peering connections.\n"
    );
    let missing = c1.cli(&["peering", "read", "-name", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stdout(&missing).contains("No peering with name nope found.")
            || stderr(&missing).contains("No peering with name nope found.")
    );
    let no_name = c1.cli(&["peering", "generate-token"]);
    assert!(!no_name.status.success());
    assert!(
        stderr(&no_name).contains("Missing the required -name flag"),
        "{}",
        stderr(&no_name)
    );
    let bad_name = send(
        &c1.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({"PeerName": "Cluster_02!"})),
    )
    .await;
    assert_eq!(bad_name.status, 400);
    assert!(text(&bad_name).contains("is not a valid peer name"));
    let no_name = send(
        &c1.client,
        Method::POST,
        "/v1/peering/token",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        text(&no_name),
        "PeerName is required in the payload when generating a new peering token."
    );
    let garbage = c1
        .client
        .send(
            Method::POST,
            "/v1/peering/token",
            Some(bytes::Bytes::from_static(b"{")),
        )
        .await
        .unwrap();
    assert!(text(&garbage).starts_with("Body decoding failed"));
}

#[tokio::test]
async fn two_dev_agents_peer_through_their_in_process_gateways() {
    use isthmus_tests::process::{cli, AgentProcess};
    let c1 = AgentProcess::spawn(&[
        "--dev",
        "--cluster-name",
        "cluster-01",
        "--peering-heartbeat",
        "200ms",
    ]);
    let c2 = AgentProcess::spawn(&[
        "--dev",
        "--cluster-name",
        "cluster-02",
        "--peering-heartbeat",
        "200ms",
    ]);
    let client1 = isthmus_runtime::client::Client::new(&c1.http_addr).unwrap();
    let client2 = isthmus_runtime::client::Client::new(&c2.http_addr).unwrap();
    // The in-process gateway registers itself; a token needs it.
    let token = eventually("dev gateway registered", || async {
        let output = cli(
            &c1.http_addr,
            &["peering", "generate-token", "-name", "cluster-02"],
            None,
        );
        output
            .status
            .success()
            .then(|| stdout(&output).trim().to_owned())
    })
    .await;
    let established = cli(
        &c2.http_addr,
        &[
            "peering",
            "establish",
            "-name",
            "cluster-01",
            "-peering-token",
            &token,
        ],
        None,
    );
    assert!(established.status.success(), "{}", stderr(&established));
    for (client, peer) in [(&client1, "cluster-02"), (&client2, "cluster-01")] {
        eventually("dev peering ACTIVE", || async {
            let (peering, _) = client
                .get_json::<Value>(&format!("/v1/peering/{peer}"))
                .await
                .ok()?;
            (peering["State"] == "ACTIVE").then_some(())
        })
        .await;
    }
}
