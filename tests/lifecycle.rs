//! The agent's process lifecycle: clean shutdowns, and what it leaves on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put};
use isthmus_tests::apps::http_app;
use isthmus_tests::cluster::Cluster;
use isthmus_tests::eventually;
use isthmus_tests::process::{field, AgentProcess};
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::json;

/// The status `GET path` answers on `client`, if it answers.
async fn status(client: &Client, path: &str) -> Option<u16> {
    client
        .send(Method::GET, path, None)
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

/// `isthmus agent --dev` runs a mesh gateway in-process; its supervisor
/// used to await the peering listener's finished task again on about one
/// shutdown in five and panic (`JoinHandle polled after completion`); and a
/// SIGTERM right after the announcement line killed the agent outright
/// (exit by signal), its handler not installed yet. Every SIGTERM must end
/// the process cleanly, with nothing panicking inside.
#[tokio::test]
async fn sigterm_never_panics_the_dev_agent_or_its_gateway() {
    for round in 0..10 {
        let agent = AgentProcess::spawn(&["--dev"]);
        if round % 2 == 1 {
            // Shut down a gateway that is fully up (view loaded, listening,
            // registered), as an operator's SIGTERM usually finds it.
            let admin = Client::new(&field(&agent.line, "gateway_admin")).unwrap();
            eventually("the in-process gateway is ready", || async {
                (status(&admin, "/ready").await == Some(200)).then_some(())
            })
            .await;
        }
        // Otherwise at once, as a supervisor (or a script) does as soon as
        // it has read the announcement: the agent must already listen for
        // the signal rather than die of it.
        let (status, logs) = agent.terminate_with_logs();
        assert!(
            !logs.contains("panicked"),
            "round {round}: something panicked during shutdown:\n{logs}"
        );
        assert!(
            status.success(),
            "round {round}: exit status {status}:\n{logs}"
        );
        assert!(
            logs.contains("mesh gateway stopped"),
            "round {round}: the gateway's shutdown sequence ran to its end:\n{logs}"
        );
    }
}

/// Every file under `dir` (recursively) and its mode bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        found.push((
            entry.path(),
            meta.permissions().mode() & 0o7777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            found.extend(modes(&entry.path()));
        }
    }
    found
}

fn assert_private(data_dir: &Path) {
    let dir_mode = std::fs::metadata(data_dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(dir_mode, 0o700, "the data dir is {dir_mode:04o}");
    let found = modes(data_dir);
    assert!(
        found.iter().any(|(p, _, _)| p.ends_with("state.redb")),
        "the state file is there: {found:?}"
    );
    for (path, mode, is_dir) in found {
        let wanted = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, wanted, "{} is {mode:04o}", path.display());
    }
}

/// The data dir holds the CA key, the gateway key and stream secrets:
/// under the usual umask 022 the agent used to leave it 0755 and its state
/// file 0644 (readable by every local user). A new data dir is 0700 and its
/// files 0600; an existing one that others can read is tightened at start.
#[tokio::test]
async fn the_data_dir_and_its_files_are_private_to_the_agent_user() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let data = data_dir.to_str().unwrap();
    let args = ["--data-dir", data, "--cluster-name", "cluster-01"];

    let agent = AgentProcess::spawn_with_umask("022", &args);
    // Secrets worth stealing: a peering's establishment secret, and the CA
    // and gateway keys written at first start.
    let client = Client::new(&agent.http_addr).unwrap();
    let token = client
        .send(
            Method::POST,
            "/v1/peering/token",
            Some(
                r#"{"PeerName": "cluster-02", "ServerExternalAddresses": ["127.0.0.1:8443"]}"#
                    .into(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        token.status,
        200,
        "{}",
        String::from_utf8_lossy(&token.body)
    );
    assert_private(&data_dir);
    assert!(agent.terminate().success());

    // A careless operator (or an older version) left them open.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = data_dir.join("state.redb");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
    let agent = AgentProcess::spawn_with_umask("022", &args);
    assert_private(&data_dir);
    let (status, logs) = agent.terminate_with_logs();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("the data directory was readable by others; restricted it to its owner")
            && logs.contains("the state file was readable by others; restricted it to its owner"),
        "the agent says what it tightened:\n{logs}"
    );
}

/// A sidecar's and a gateway's registrations deregistered behind their
/// backs (as an operator, a script or the agent's
/// deregister-after-critical does) used to stay gone until the agent's
/// index went backwards: the mesh lost them for good. Each comes back
/// within seconds, and both end up ready.
#[tokio::test]
async fn deregistered_sidecars_and_gateways_register_again() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start("cluster-01", dir.path()).await;
    let app = http_app("backend").await.to_string();
    let proxy = ProxyProcess::spawn(&cluster.agent.url(), "backend", &app, &[], &[]);
    let proxy_admin = Client::new(&proxy.admin).unwrap();
    let gateway_admin = Client::new(&cluster.gateway.admin).unwrap();
    let (services, _) = get(&cluster.client, "/v1/agent/services").await;
    let gateway_id = services
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, s)| s["Kind"] == "mesh-gateway")
        .map(|(id, _)| id.clone())
        .expect("the gateway registered");
    let proxy_id = "backend-sidecar-proxy".to_owned();

    for (id, admin) in [(&proxy_id, &proxy_admin), (&gateway_id, &gateway_admin)] {
        eventually(&format!("{id} ready"), || async {
            (status(admin, "/ready").await == Some(200)).then_some(())
        })
        .await;
        put(
            &cluster.client,
            &format!("/v1/agent/service/deregister/{id}"),
            json!(null),
        )
        .await;
        eventually(&format!("{id} registered again"), || async {
            (status(&cluster.client, &format!("/v1/agent/service/{id}")).await == Some(200))
                .then_some(())
        })
        .await;
        eventually(&format!("{id} ready again"), || async {
            (status(admin, "/ready").await == Some(200)).then_some(())
        })
        .await;
    }
    // The gateway is back where peering tokens look for it: registered and passing.
    eventually("the gateway passing again", || async {
        let (entries, _) = get(&cluster.client, "/v1/health/service/mesh-gateway?passing").await;
        (entries.as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    assert!(proxy.terminate().success());
}
