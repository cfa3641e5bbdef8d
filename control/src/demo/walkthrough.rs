//! The walkthrough itself: the peering guide's flow, step by step, against
//! the clusters and workloads `setup` started.

use std::time::Duration;

use anyhow::anyhow;
use isthmus_api::peering::Peering;

use super::script::{self, wait_for, Script, Target};
use super::setup::{self, Cluster, Environment};

/// How long replication, discovery and certificate issuance may take to
/// settle before a step counts as failed.
const SETTLE: Duration = Duration::from_secs(30);

/// The seed's flow, step by step.
pub async fn walk(
    script: &mut Script,
    env: &Environment,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let (c1, c2) = (&env.clusters[0], &env.clusters[1]);
    script.step("Register the workloads with their clusters");
    for workload in &env.workloads {
        let cluster = env.cluster(workload.cluster);
        let file = setup::write_service_definition(dir, workload)?;
        script
            .isthmus(&cluster.target, &["services", "register", &file], None)
            .await?;
    }
    for workload in &env.workloads {
        script.say(&format!(
            "{} runs at {} behind its sidecar (inbound mTLS {}{})",
            workload.name,
            workload.app,
            workload.sidecar.inbound,
            workload
                .sidecar
                .upstream
                .as_ref()
                .map(|(name, addr)| format!(", upstream {name} on {addr}"))
                .unwrap_or_default()
        ));
    }

    script.step("cluster-01 generates a peering token for cluster-02");
    let token = script
        .isthmus_quoting(
            &c1.target,
            &["peering", "generate-token", "-name", "cluster-02"],
            Some("peering generate-token -name cluster-02    # saved as $TOKEN"),
            |token| script.show(&abbreviate(token.trim())),
        )
        .await?;
    let token = token.trim().to_owned();
    script.check(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "a one-line token came back",
    )?;

    script.step("cluster-02 establishes the peering with the token");
    script
        .isthmus(
            &c2.target,
            &[
                "peering",
                "establish",
                "-name",
                "cluster-01",
                "-peering-token",
                &token,
            ],
            Some("peering establish -name cluster-01 -peering-token \"$TOKEN\""),
        )
        .await?;
    for (cluster, peer) in [(c1, "cluster-02"), (c2, "cluster-01")] {
        let seen = wait_state(cluster, peer, "ACTIVE").await?;
        script.check(
            seen == "ACTIVE",
            &format!("{} sees the peering {peer} ACTIVE", cluster.target.name),
        )?;
    }

    script.step("cluster-01 exports backend to cluster-02");
    let file = setup::write_file(dir, "exported-services.hcl", setup::EXPORTED_SERVICES)?;
    script.say(&format!("# {file}"));
    script.show(setup::EXPORTED_SERVICES);
    script
        .isthmus(&c1.target, &["config", "write", &file], None)
        .await?;
    let exported = script
        .isthmus(
            &c1.target,
            &["peering", "exported-services", "-name", "cluster-02"],
            None,
        )
        .await?;
    script.check(
        exported.lines().any(|l| l.trim() == "backend"),
        "backend is exported to cluster-02",
    )?;

    script.step("cluster-01 allows frontend from cluster-02 to call backend (and no one else)");
    let file = setup::write_file(dir, "backend-intentions.hcl", setup::BACKEND_INTENTIONS)?;
    script.say(&format!("# {file}"));
    script.show(setup::BACKEND_INTENTIONS);
    script
        .isthmus(&c1.target, &["config", "write", &file], None)
        .await?;
    script.say("intruder matches no source, so the default policy (deny) applies to it");

    script.step("List and read the peerings");
    wait_for("cluster-02 to import backend", SETTLE, || async {
        let peering = peering(c2, "cluster-01").await?;
        if peering
            .stream_status
            .imported_services
            .iter()
            .any(|s| s == "backend")
        {
            Ok(())
        } else {
            Err(format!(
                "imported: {:?}",
                peering.stream_status.imported_services
            ))
        }
    })
    .await?;
    let list = script
        .isthmus(&c2.target, &["peering", "list"], None)
        .await?;
    script.check(
        list.lines().any(|l| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            columns.starts_with(&["cluster-01", "ACTIVE", "1"])
        }),
        "cluster-02 lists cluster-01 as ACTIVE with 1 imported service",
    )?;
    let read = script
        .isthmus(
            &c1.target,
            &["peering", "read", "-name", "cluster-02"],
            None,
        )
        .await?;
    script.check(
        read.contains("State: ACTIVE") && read.contains("Exported Services: 1"),
        "cluster-01 reads cluster-02 as ACTIVE with 1 exported service",
    )?;

    script.step("cluster-02 asks for backend's health in cluster-01");
    let path = "/v1/health/service/backend?peer=cluster-01";
    let entries = wait_for("backend to be replicated passing", SETTLE, || async {
        let entries = health_entries(&c2.target, path).await?;
        if entries.iter().any(|e| e.status == "passing") {
            Ok(entries)
        } else {
            Err(format!("{} entries, none passing", entries.len()))
        }
    })
    .await?;
    script
        .curl_with_token(
            "cluster-02",
            &c2.target.api,
            path,
            &c2.target.token,
            "$ISTHMUS_HTTP_TOKEN",
        )
        .await?;
    for entry in &entries {
        script.show(&entry.to_string());
    }
    script.check(
        entries.len() == 1 && entries[0].peer == "cluster-01" && entries[0].status == "passing",
        "one passing backend instance, from peer cluster-01",
    )?;

    script.step("frontend (cluster-02) calls backend (cluster-01) through its sidecar");
    let frontend = env.workload("frontend");
    let (upstream, upstream_addr) = frontend
        .sidecar
        .upstream
        .as_ref()
        .ok_or_else(|| anyhow!("frontend has no upstream"))?;
    let base = format!("http://{upstream_addr}");
    let answer = wait_for("frontend's call to succeed", SETTLE, || async {
        let answer = script::get(&base, "/hello", None)
            .await
            .map_err(|e| format!("{e:#}"))?;
        match answer.status {
            200 => Ok(answer),
            status => Err(format!("{status} {}", answer.body.trim())),
        }
    })
    .await?;
    script.say(&format!(
        "# frontend's sidecar listens for its upstream {upstream} on {upstream_addr}"
    ));
    script.curl("cluster-02", &base, "/hello").await?;
    script.show(&format!("{} {}", answer.status, answer.body.trim()));
    script.check(
        answer.body.contains("hello from backend in cluster-01")
            && answer.body.contains("/dc/cluster-02/svc/frontend"),
        "backend answered, and saw the caller as cluster-02's frontend",
    )?;

    script.step("intruder (cluster-02) calls backend the same way and is denied");
    let intruder = env.workload("intruder");
    let (_, intruder_addr) = intruder
        .sidecar
        .upstream
        .as_ref()
        .ok_or_else(|| anyhow!("intruder has no upstream"))?;
    let base = format!("http://{intruder_addr}");
    // Until intruder's sidecar has backend's endpoints it answers 503
    // itself; wait for an answer from an attempt that reached backend.
    wait_for("intruder's sidecar to try backend", SETTLE, || async {
        let answer = script::get(&base, "/hello", None)
            .await
            .map_err(|e| format!("{e:#}"))?;
        match answer.error_header.as_deref() {
            Some(NOT_READY | NO_ENDPOINT) => {
                Err(format!("{} {}", answer.status, answer.body.trim()))
            }
            _ => Ok(()),
        }
    })
    .await?;
    let answer = script.curl("cluster-02", &base, "/hello").await?;
    script.show(&format!(
        "{} {}{}",
        answer.status,
        answer.body.trim(),
        answer
            .error_header
            .as_deref()
            .map(|e| format!("   (x-isthmus-error: {e})"))
            .unwrap_or_default()
    ));
    script.check(
        answer.status != 200 && !answer.body.contains("hello from backend"),
        "intruder did not reach backend",
    )?;
    script.say("backend's sidecar refused the connection: no intention allows intruder");

    identities_step(script, env).await?;

    script.step("Look at the metrics");
    let backend = env.workload("backend");
    let decisions = metrics(
        script,
        "cluster-01",
        &backend.sidecar.admin,
        "/metrics",
        None,
        &["inbound_authorization_total"],
    )
    .await?;
    script.check(
        decisions
            .iter()
            .any(|l| l.contains("allow") && !l.ends_with(" 0")),
        "backend's sidecar counted allowed callers",
    )?;
    script.check(
        decisions
            .iter()
            .any(|l| l.contains("deny") && !l.ends_with(" 0")),
        "backend's sidecar counted denied callers",
    )?;
    let passthrough = metrics(
        script,
        "cluster-01",
        &c1.gateway_admin,
        "/metrics",
        None,
        &["gateway_passthrough_connections_total"],
    )
    .await?;
    script.check(
        passthrough.iter().any(|l| !l.ends_with(" 0")),
        "cluster-01's gateway passed connections through to backend",
    )?;
    let peering = metrics(
        script,
        "cluster-02",
        &c2.target.api,
        "/v1/agent/metrics?format=prometheus",
        Some(&c2.target.token),
        &[
            "isthmus_peering_healthy",
            "isthmus_peering_imported_services",
            "isthmus_peering_exported_services",
        ],
    )
    .await?;
    script.check(
        peering
            .iter()
            .any(|l| l == "isthmus_peering_healthy{peer=\"cluster-01\"} 1"),
        "cluster-02's agent reports its peering with cluster-01 healthy",
    )?;
    script.check(
        peering.iter().any(|l| {
            l.starts_with("isthmus_peering_imported_services{")
                && l.contains("cluster-01")
                && l.ends_with(" 1")
        }),
        "and 1 service imported from it",
    )?;
    Ok(())
}

/// ACLs: each workload's token holds only its own service identity, so
/// intruder cannot obtain backend's certificate (and so cannot pose as
/// backend), while frontend's calls go on.
async fn identities_step(script: &mut Script, env: &Environment) -> anyhow::Result<()> {
    script.step("intruder's token cannot obtain backend's certificate; frontend's calls go on");
    let c2 = env.cluster("cluster-02");
    let intruder = env.workload("intruder");
    script.say("# ACLs are on with default deny; each sidecar runs with a token of its own service identity");
    let leaf = "/v1/agent/connect/ca/leaf/backend";
    let refused = script
        .curl_with_token(
            "cluster-02",
            &c2.target.api,
            leaf,
            &intruder.token,
            "$INTRUDER_TOKEN",
        )
        .await?;
    script.show(&format!("{} {}", refused.status, refused.body.trim()));
    script.check(
        refused.status == 403 && refused.body.starts_with("Permission denied"),
        "403: intruder's token may not write backend, so gets no certificate for it",
    )?;
    let own = script
        .curl_with_token(
            "cluster-02",
            &c2.target.api,
            "/v1/agent/connect/ca/leaf/intruder",
            &intruder.token,
            "$INTRUDER_TOKEN",
        )
        .await?;
    script.show(&format!(
        "{} (intruder's own certificate, {} bytes of JSON)",
        own.status,
        own.body.len()
    ));
    script.check(own.status == 200, "its own identity it may obtain")?;

    let frontend = env.workload("frontend");
    let (_, upstream_addr) = frontend
        .sidecar
        .upstream
        .as_ref()
        .ok_or_else(|| anyhow!("frontend has no upstream"))?;
    let answer = script
        .curl("cluster-02", &format!("http://{upstream_addr}"), "/hello")
        .await?;
    script.show(&format!("{} {}", answer.status, answer.body.trim()));
    script.check(
        answer.status == 200 && answer.body.contains("hello from backend in cluster-01"),
        "frontend's call, made with its own identity, still succeeds",
    )?;
    Ok(())
}

/// What a sidecar's `x-isthmus-error` says before it can try an upstream.
const NOT_READY: &str = "proxy not ready";
const NO_ENDPOINT: &str = "no healthy endpoint";

/// The start of a long token and its length.
fn abbreviate(token: &str) -> String {
    match token.get(..48) {
        Some(start) if token.len() > 64 => format!("{start}… ({} characters)", token.len()),
        _ => token.to_owned(),
    }
}

/// Waits until `cluster` sees its peering with `peer` in `state`.
async fn wait_state(cluster: &Cluster, peer: &str, state: &str) -> anyhow::Result<String> {
    wait_for(
        &format!("{} to see {peer} {state}", cluster.target.name),
        SETTLE,
        || async {
            let peering = peering(cluster, peer).await?;
            if peering.state == state {
                Ok(peering.state)
            } else {
                Err(format!("it is {}", peering.state))
            }
        },
    )
    .await
}

async fn peering(cluster: &Cluster, peer: &str) -> Result<Peering, String> {
    let client = cluster.target.client().map_err(|e| e.to_string())?;
    client
        .get_json::<Peering>(&format!("/v1/peering/{peer}"))
        .await
        .map(|(p, _)| p)
        .map_err(|e| e.to_string())
}

/// GETs a Prometheus exposition and shows the samples of `families`.
async fn metrics(
    script: &Script,
    label: &str,
    base: &str,
    path: &str,
    token: Option<&str>,
    families: &[&str],
) -> anyhow::Result<Vec<String>> {
    let pattern = families
        .iter()
        .map(|f| format!("^{f}"))
        .collect::<Vec<_>>()
        .join("\\|");
    let header = if token.is_some() {
        " -H \"X-Consul-Token: $ISTHMUS_HTTP_TOKEN\""
    } else {
        ""
    };
    println!("   [{label}]$ curl -s{header} '{base}{path}' | grep '{pattern}'");
    let answer = script::get(base, path, token).await?;
    let samples: Vec<String> = answer
        .body
        .lines()
        .filter(|l| families.iter().any(|f| l.starts_with(&format!("{f}{{"))))
        .map(str::to_owned)
        .collect();
    script.show(&samples.join("\n"));
    Ok(samples)
}

/// One `health/service` entry, summarised.
struct HealthEntry {
    service: String,
    address: String,
    peer: String,
    status: String,
}

impl std::fmt::Display for HealthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Service {} at {}  PeerName {}  checks: {}",
            self.service, self.address, self.peer, self.status
        )
    }
}

async fn health_entries(target: &Target, path: &str) -> Result<Vec<HealthEntry>, String> {
    let client = target.client().map_err(|e| e.to_string())?;
    let (entries, _) = client
        .get_json::<Vec<serde_json::Value>>(path)
        .await
        .map_err(|e| e.to_string())?;
    Ok(entries
        .iter()
        .map(|e| {
            let checks = e["Checks"].as_array().cloned().unwrap_or_default();
            let worst = ["critical", "warning", "passing"]
                .into_iter()
                .find(|s| checks.iter().any(|c| c["Status"] == *s))
                .unwrap_or("passing");
            HealthEntry {
                service: e["Service"]["Service"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                // Consul's rule: an empty service address means the node's.
                address: format!(
                    "{}:{}",
                    e["Service"]["Address"]
                        .as_str()
                        .filter(|a| !a.is_empty())
                        .or(e["Node"]["Address"].as_str())
                        .unwrap_or_default(),
                    e["Service"]["Port"]
                ),
                peer: e["Service"]["PeerName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                status: worst.to_owned(),
            }
        })
        .collect())
}
