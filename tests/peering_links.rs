//! `lxd-cluster-links-create.md`, every step with `lxc` → `isthmus`: auth
//! groups with entitlements, `cluster link create` on both sides, the
//! `tls/<link>` identity, and a peer whose group does not allow a query.

use isthmus_tests::api::{get, put};
use isthmus_tests::cluster::Cluster;
use isthmus_tests::eventually;
use isthmus_tests::peer_client::{gateway_view, get_via_gateway};
use isthmus_tests::process::{stderr, stdout};
use serde_json::{json, Value};

fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

async fn imported_backend(cluster: &Cluster, peer: &str) -> Vec<Value> {
    let (entries, _) = get(
        &cluster.client,
        &format!("/v1/health/service/backend?peer={peer}"),
    )
    .await;
    entries.as_array().unwrap().clone()
}

#[tokio::test]
async fn seed_flow_with_auth_groups() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cluster::start("cluster-a", dir.path()).await;
    let b = Cluster::start("cluster-b", dir.path()).await;

    // Prepare authentication on both clusters.
    for cluster in [&a, &b] {
        ok(cluster.cli(&["auth", "group", "create", "link"]));
        ok(cluster.cli(&[
            "auth",
            "group",
            "permission",
            "add",
            "link",
            "server",
            "admin",
        ]));
        ok(cluster.cli(&["auth", "group", "create", "backup"]));
        ok(cluster.cli(&[
            "auth",
            "group",
            "permission",
            "add",
            "backup",
            "instance",
            "can_manage_backups",
        ]));
    }

    // Unknown groups are refused before anything is created.
    let refused = a.cli(&[
        "cluster",
        "link",
        "create",
        "cluster_b",
        "--auth-group",
        "nope",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("One or more groups were not found"),
        "{}",
        stderr(&refused)
    );
    assert!(a.peering("cluster_b").await.is_none());

    // Cluster A: create the link, get a trust token.
    let created = ok(a.cli(&[
        "cluster",
        "link",
        "create",
        "cluster_b",
        "--auth-group",
        "link",
    ]));
    let mut lines = created.lines();
    assert_eq!(
        lines.next(),
        Some("Cluster link cluster_b created (pending)")
    );
    let token = lines.next().expect("token line").trim().to_owned();
    let quiet = ok(a.cli(&[
        "cluster",
        "link",
        "create",
        "cluster_b",
        "--auth-group",
        "link",
        "--quiet",
    ]));
    assert_eq!(quiet.lines().count(), 1, "--quiet prints only the token");
    assert_ne!(quiet.trim(), token, "a new token supersedes the first");
    let token = quiet.trim().to_owned();
    let pending = ok(a.cli(&["auth", "identity", "show", "tls/cluster_b"]));
    assert!(
        pending.contains("Cluster link certificate (pending)"),
        "{pending}"
    );

    // Cluster B: create the link with the token.
    ok(b.cli(&[
        "cluster",
        "link",
        "create",
        "cluster_a",
        "--token",
        &token,
        "--auth-group",
        "link",
    ]));
    a.wait_for_state("cluster_b", "ACTIVE").await;
    b.wait_for_state("cluster_a", "ACTIVE").await;

    // The identities on both sides.
    let shown = ok(a.cli(&["auth", "identity", "show", "tls/cluster_b"]));
    assert!(
        shown.contains("type: Cluster link certificate\n"),
        "{shown}"
    );
    assert!(shown.contains("- link"), "{shown}");
    let b_fingerprint = gateway_view(&b).await.fingerprint;
    assert!(
        shown.contains(&b_fingerprint),
        "the identity pins cluster B's certificate: {shown}"
    );
    let shown = ok(b.cli(&["auth", "identity", "show", "tls/cluster_a"]));
    assert!(
        shown.contains("type: Cluster link certificate\n"),
        "{shown}"
    );
    assert!(
        shown.contains(&gateway_view(&a).await.fingerprint),
        "{shown}"
    );

    // A link is a peering seen another way, and vice versa.
    let peerings = ok(a.cli(&["peering", "list"]));
    assert!(peerings.contains("cluster_b"), "{peerings}");
    let links = ok(a.cli(&["cluster", "link", "list"]));
    assert!(
        links.contains("cluster_b") && links.contains("ACTIVE"),
        "{links}"
    );

    // A exports backend to B; `server admin` lets B see it.
    put(
        &a.client,
        "/v1/agent/service/register",
        json!({"Name": "backend", "Port": 80}),
    )
    .await;
    put(
        &a.client,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default", "Services": [{"Name": "backend", "Consumers": [{"Peer": "cluster_b"}]}]}),
    )
    .await;
    eventually("backend imported on B", || async {
        (!imported_backend(&b, "cluster_a").await.is_empty()).then_some(())
    })
    .await;
    let b_view = gateway_view(&b).await;
    let (status, _) = get_via_gateway(
        &a,
        &b_view.certificate_pem,
        &b_view.private_key_pem,
        "/v1/health/service/backend",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);

    // Move B's identity on A to the backup group: it may no longer read backend.
    ok(a.cli(&[
        "auth",
        "identity",
        "group",
        "add",
        "tls/cluster_b",
        "backup",
    ]));
    ok(a.cli(&[
        "auth",
        "identity",
        "group",
        "remove",
        "tls/cluster_b",
        "link",
    ]));
    let (status, body) = get_via_gateway(
        &a,
        &b_view.certificate_pem,
        &b_view.private_key_pem,
        "/v1/health/service/backend",
    )
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not view service backend"), "{body}");
    eventually("backend withdrawn from B", || async {
        imported_backend(&b, "cluster_a")
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // Deleting the link on A tells B.
    ok(a.cli(&["cluster", "link", "delete", "cluster_b"]));
    b.wait_for_state("cluster_a", "TERMINATED").await;
    let identities = ok(a.cli(&["auth", "identity", "list"]));
    assert!(!identities.contains("cluster_b"), "{identities}");
}
