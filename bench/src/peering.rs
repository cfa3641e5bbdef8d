//! Control-plane figures across a peering: two `isthmus agent --dev`
//! processes (cluster-01 exports, cluster-02 imports), peered over their
//! HTTP APIs. How long a health change on the exporter takes to show on the
//! importer's `/v1/health/service/<name>?peer=`, and how long a freshly
//! exported service of many instances takes to arrive there in full.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use crate::agent::Agent;

pub const EXPORTER: &str = "cluster-01";
pub const IMPORTER: &str = "cluster-02";
/// Concurrent registrations while setting up the bulk service.
const REGISTER_CONCURRENCY: usize = 8;
/// Longest wait for one change or for the whole replication.
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct ExportChange {
    pub changes: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Blocking-query answers over all changes (equal to `changes` when
    /// each change was seen in the first answer after it).
    pub answers: usize,
    /// Every change, ms, in the order measured.
    pub samples_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replication {
    pub instances: usize,
    /// From the `PUT /v1/config` exporting the service until the importer's
    /// health endpoint lists every instance.
    pub ms: f64,
    /// Blocking-query answers seen on the way (the last one complete).
    pub answers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Peering {
    pub export_change: ExportChange,
    pub replication: Replication,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Starts both agents and peers them; returns (exporter, importer).
pub async fn peered(bin_dir: &Path) -> Result<(Agent, Agent)> {
    let exporter = Agent::start_peer(bin_dir, EXPORTER).await?;
    let importer = Agent::start_peer(bin_dir, IMPORTER).await?;
    establish(&exporter, &importer).await?;
    Ok((exporter, importer))
}

/// A token from the exporter, established on the importer; waits for ACTIVE.
pub async fn establish(exporter: &Agent, importer: &Agent) -> Result<()> {
    // The in-process gateway registers itself a moment after start; token
    // generation fails until it has.
    let start = Instant::now();
    let token = loop {
        match exporter
            .post_json("/v1/peering/token", json!({"PeerName": IMPORTER}))
            .await
        {
            Ok(v) => {
                break v["PeeringToken"]
                    .as_str()
                    .context("no PeeringToken in the answer")?
                    .to_owned()
            }
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                return Err(e.context("generating a peering token"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    importer
        .post_json(
            "/v1/peering/establish",
            json!({"PeerName": EXPORTER, "PeeringToken": token}),
        )
        .await
        .context("establishing the peering")?;
    let start = Instant::now();
    loop {
        let state = importer
            .get_json(&format!("/v1/peering/{EXPORTER}"))
            .await
            .ok()
            .and_then(|v| v["State"].as_str().map(str::to_owned));
        if state.as_deref() == Some("ACTIVE") {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("peering not ACTIVE after 20 s (state {state:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn export(exporter: &Agent, services: &[&str]) -> Result<()> {
    let services: Vec<Value> = services
        .iter()
        .map(|s| json!({"Name": s, "Consumers": [{"Peer": IMPORTER}]}))
        .collect();
    exporter
        .put_json(
            "/v1/config",
            json!({"Kind": "exported-services", "Name": "default", "Services": services}),
        )
        .await
}

/// "critical" if any check of any entry is critical, "passing" if there
/// are entries and all their checks pass, else None.
fn health(entries: &Value) -> Option<&'static str> {
    let entries = entries.as_array().filter(|e| !e.is_empty())?;
    let statuses: Vec<&str> = entries
        .iter()
        .flat_map(|e| e["Checks"].as_array().into_iter().flatten())
        .filter_map(|c| c["Status"].as_str())
        .collect();
    if statuses.contains(&"critical") {
        Some("critical")
    } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "passing") {
        Some("passing")
    } else {
        None
    }
}

/// Blocking queries on `path` from `index` until `done` holds for the
/// answer; returns when it did and how many answers it took.
async fn watch(
    agent: &Agent,
    path: &str,
    mut index: u64,
    done: impl Fn(&Value) -> bool,
) -> Result<(Instant, usize)> {
    let start = Instant::now();
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut answers = 0;
    while start.elapsed() < LIMIT {
        let (value, next) = agent
            .get_indexed(&format!("{path}{sep}index={index}&wait=10s"))
            .await?;
        let at = Instant::now();
        answers += 1;
        if done(&value) {
            return Ok((at, answers));
        }
        // An index that went backwards (or is missing) restarts the watch.
        index = if next > index { next } else { 0 };
    }
    bail!("{path}: not done after {LIMIT:?}")
}

async fn export_change(exporter: &Agent, importer: &Agent, changes: usize) -> Result<ExportChange> {
    exporter
        .put_json(
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": 80, "Check": {"TTL": "1h", "Status": "passing"}}),
        )
        .await?;
    export(exporter, &["web"]).await?;
    let path = format!("/v1/health/service/web?peer={EXPORTER}");
    // Wait for the import to show the passing instance.
    watch(importer, &path, 0, |v| health(v) == Some("passing")).await?;
    let mut samples = Vec::with_capacity(changes);
    let mut answers = 0;
    for i in 0..changes {
        let (to, verb) = if i % 2 == 0 {
            ("critical", "fail")
        } else {
            ("passing", "pass")
        };
        let (_, index) = importer.get_indexed(&path).await?;
        let toggle = async {
            let start = Instant::now();
            exporter
                .put_empty(&format!("/v1/agent/check/{verb}/service:web"))
                .await
                .map(|_| start)
        };
        let (seen, start) = tokio::join!(
            watch(importer, &path, index, |v| health(v) == Some(to)),
            toggle
        );
        let (at, n) = seen?;
        answers += n;
        samples.push((at - start?).as_secs_f64() * 1000.0);
    }
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(ExportChange {
        changes,
        p50_ms: percentile(&sorted, 0.50),
        p99_ms: percentile(&sorted, 0.99),
        max_ms: *sorted.last().context("no changes measured")?,
        answers,
        samples_ms: samples,
    })
}

async fn replication(exporter: &Agent, importer: &Agent, instances: usize) -> Result<Replication> {
    // Setup, not timed: register every instance before exporting.
    futures_util::stream::iter(0..instances)
        .map(|i| {
            exporter.put_json(
                "/v1/agent/service/register",
                json!({"ID": format!("bulk-{i}"), "Name": "bulk", "Port": 10_000 + i}),
            )
        })
        .buffer_unordered(REGISTER_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .context("registering the bulk instances")?;
    let path = format!("/v1/health/service/bulk?peer={EXPORTER}");
    let (_, index) = importer.get_indexed(&path).await?;
    let complete = |v: &Value| v.as_array().map_or(0, Vec::len) >= instances;
    let exporting = async {
        let start = Instant::now();
        export(exporter, &["web", "bulk"]).await.map(|_| start)
    };
    let (seen, start) = tokio::join!(watch(importer, &path, index, complete), exporting);
    let (at, answers) = seen?;
    Ok(Replication {
        instances,
        ms: (at - start?).as_secs_f64() * 1000.0,
        answers,
    })
}

/// Both figures, on a fresh pair of peered agents (killed on return).
pub async fn measure(bin_dir: &Path, changes: usize, instances: usize) -> Result<Peering> {
    let (exporter, importer) = peered(bin_dir).await?;
    let export_change = export_change(&exporter, &importer, changes)
        .await
        .context("export change → peer")?;
    let replication = replication(&exporter, &importer, instances)
        .await
        .context("replication of exported instances")?;
    Ok(Peering {
        export_change,
        replication,
    })
}
