//! `run --only scale`: the control plane as the catalog grows.
//!
//! One durable agent (`--data-dir`, release build). Service instances are
//! registered through the HTTP API by 16 concurrent clients (25 instances
//! per service name, one TTL check each), and at each size (10k, 50k and
//! 100k instances; `--quick`: 1k and 2k) it measures:
//! - registrations per second over the last segment (each acknowledged
//!   only once durable);
//! - `health/service/<name>` latency, p50 and p99 of sequential queries on
//!   random names;
//! - the agent's RSS, and RSS per instance.
//!
//! At the largest size: 1,000 blocking queries wait on 1,000 other
//! services and 10 on one service; one write to that service is timed until
//! acknowledged and until its 10 watchers answered, and the 1,000 others
//! must not answer. Then the agent's RSS with them waiting, and a restart:
//! from SIGTERM of the old agent to the new one answering
//! `health/service/<name>` with every instance. Last, replication: two
//! peered agents, the same number of instances (100 per service) exported
//! with `*`, timed until the importer lists them all.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use crate::agent::request as call;
use crate::measure;
use crate::procs::{self, Proc};
use crate::RunArgs;

pub(crate) const INSTANCES_PER_SERVICE: usize = 25;
pub(crate) const CLIENTS: usize = 16;
const QUERIES: usize = 500;
const WAITERS: usize = 1_000;
const WAITERS_ON_CHANGED: usize = 10;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) struct ScaleAgent {
    proc: Option<Proc>,
    pub(crate) addr: String,
}

impl ScaleAgent {
    fn start(bin_dir: &Path, data_dir: &Path) -> Result<ScaleAgent> {
        let data = data_dir.display().to_string();
        Self::start_with(bin_dir, &["--dev", "--no-gateway", "--data-dir", &data])
    }

    /// `isthmus agent <store args>` with the bench's listener settings.
    pub(crate) fn start_with(bin_dir: &Path, store: &[&str]) -> Result<ScaleAgent> {
        let mut args: Vec<String> = vec!["agent".to_owned()];
        args.extend(store.iter().map(|a| a.to_string()));
        args.extend(
            [
                "--http-addr",
                "127.0.0.1:0",
                "--dns-port",
                "0",
                // Every blocking query is its own connection from one client.
                "--http-max-conns",
                "8192",
                "--http-max-conns-per-client",
                "4096",
            ]
            .map(str::to_owned),
        );
        let (proc, line) = procs::spawn(
            "isthmus agent",
            &bin_dir.join("isthmus"),
            &args,
            Some("isthmus agent running:"),
        )?;
        let addr = procs::field(line.as_deref().unwrap_or_default(), "http")?
            .trim_start_matches("http://")
            .to_owned();
        Ok(ScaleAgent {
            proc: Some(proc),
            addr,
        })
    }

    fn pid(&self) -> u32 {
        self.proc.as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// Stops it gracefully (SIGTERM, reaped).
    fn stop(&mut self) {
        drop(self.proc.take());
    }
}

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(WAITERS + 64)
        .build_http()
}

fn registration(instance: usize, per_service: usize, prefix: &str) -> Bytes {
    let service = format!("{prefix}-{:05}", instance / per_service);
    Bytes::from(
        json!({
            "ID": format!("{service}-{instance}"),
            "Name": service,
            "Port": 8000 + (instance % 1000),
            "Tags": ["v1"],
            "Check": {"TTL": "24h", "Status": "passing"},
        })
        .to_string(),
    )
}

/// Registers instances `from..to` with [`CLIENTS`] concurrent clients;
/// returns registrations per second.
async fn register(addr: &str, from: usize, to: usize) -> Result<f64> {
    register_named(addr, from, to, INSTANCES_PER_SERVICE, "svc").await
}

/// [`register`] with `per_service` instances per `<prefix>-NNNNN` name.
pub(crate) async fn register_named(
    addr: &str,
    from: usize,
    to: usize,
    per_service: usize,
    prefix: &'static str,
) -> Result<f64> {
    let next = Arc::new(AtomicUsize::new(from));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let next = next.clone();
        let url = format!("http://{addr}/v1/agent/service/register");
        tasks.push(tokio::spawn(async move {
            let client = client();
            loop {
                let instance = next.fetch_add(1, Ordering::Relaxed);
                if instance >= to {
                    return Ok::<_, anyhow::Error>(());
                }
                call(
                    &client,
                    http::Method::PUT,
                    url.clone(),
                    registration(instance, per_service, prefix),
                )
                .await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((to - from) as f64 / started.elapsed().as_secs_f64())
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// p50 and p99 (ms) of sequential `health/service/<name>` queries.
pub(crate) async fn query_latency(addr: &str, instances: usize) -> Result<(f64, f64)> {
    let client = client();
    let services = instances / INSTANCES_PER_SERVICE;
    let mut samples = Vec::with_capacity(QUERIES);
    for q in 0..QUERIES {
        // A fixed stride over the names: deterministic, spread out.
        let service = format!("svc-{:05}", (q * 7919) % services.max(1));
        let url = format!("http://{addr}/v1/health/service/{service}");
        let started = Instant::now();
        let (body, _) = call(&client, http::Method::GET, url, Bytes::new()).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        if q == 0 {
            let entries: serde_json::Value = serde_json::from_slice(&body)?;
            let n = entries.as_array().map(Vec::len).unwrap_or(0);
            if n != INSTANCES_PER_SERVICE {
                bail!("health/service/{service}: {n} instances, expected {INSTANCES_PER_SERVICE}");
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 50.0), percentile(&samples, 99.0)))
}

struct WakeFigures {
    ack_ms: f64,
    answered_ms: f64,
    others_answered: usize,
    rss_waiting_kib: u64,
}

/// 1,000 blocking queries on other services and 10 on one; one write to
/// that one.
async fn wake(agent: &ScaleAgent, instances: usize) -> Result<WakeFigures> {
    let addr = agent.addr.clone();
    let services = instances / INSTANCES_PER_SERVICE;
    if services < 2 {
        bail!("too few services for the wake test");
    }
    let changed = "svc-00000".to_owned();
    let client = client();
    let (_, changed_index) = call(
        &client,
        http::Method::GET,
        format!("http://{addr}/v1/health/service/{changed}"),
        Bytes::new(),
    )
    .await?;
    let before = measure::rss_kib(agent.pid());
    let fds_before = open_fds(agent.pid());
    let others_answered = Arc::new(AtomicUsize::new(0));
    let mut others = Vec::new();
    for w in 0..WAITERS {
        let service = format!("svc-{:05}", 1 + w % (services - 1));
        let client = client.clone();
        let addr = addr.clone();
        let answered = others_answered.clone();
        others.push(tokio::spawn(async move {
            let (_, index) = call(
                &client,
                http::Method::GET,
                format!("http://{addr}/v1/health/service/{service}"),
                Bytes::new(),
            )
            .await?;
            call(
                &client,
                http::Method::GET,
                format!("http://{addr}/v1/health/service/{service}?index={index}&wait=60s"),
                Bytes::new(),
            )
            .await?;
            answered.fetch_add(1, Ordering::Relaxed);
            Ok::<_, anyhow::Error>(())
        }));
    }
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::channel(WAITERS_ON_CHANGED);
    for _ in 0..WAITERS_ON_CHANGED {
        let client = client.clone();
        let url =
            format!("http://{addr}/v1/health/service/{changed}?index={changed_index}&wait=60s");
        let tx = answered_tx.clone();
        tokio::spawn(async move {
            let result = call(&client, http::Method::GET, url, Bytes::new()).await;
            let _ = tx.send((Instant::now(), result.map(|(_, i)| i))).await;
        });
    }
    // Every query parked: the agent holds one connection per waiter (the
    // first, non-blocking, queries reuse those connections).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connections = open_fds(agent.pid()).saturating_sub(fds_before);
        if connections >= WAITERS + WAITERS_ON_CHANGED {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {connections} of the blocking queries connected");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_waiting = measure::rss_kib(agent.pid());
    // The write: a new instance of the watched service.
    let started = Instant::now();
    call(
        &client,
        http::Method::PUT,
        format!("http://{addr}/v1/agent/service/register"),
        Bytes::from(
            json!({"ID": "svc-00000-extra", "Name": changed, "Port": 9999,
                   "Check": {"TTL": "24h", "Status": "passing"}})
            .to_string(),
        ),
    )
    .await?;
    let ack = started.elapsed();
    let mut last = started;
    for _ in 0..WAITERS_ON_CHANGED {
        let (at, result) = tokio::time::timeout(Duration::from_secs(10), answered_rx.recv())
            .await
            .context("a watcher of the changed service never answered")?
            .context("watcher channel closed")?;
        let index = result?;
        if index <= changed_index {
            bail!("a watcher answered with index {index}, not past {changed_index}");
        }
        last = last.max(at);
    }
    // Give a wrongly woken query time to answer before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let others_answered = others_answered.load(Ordering::Relaxed);
    for task in others {
        task.abort();
    }
    Ok(WakeFigures {
        ack_ms: ack.as_secs_f64() * 1000.0,
        answered_ms: last.duration_since(started).as_secs_f64() * 1000.0,
        others_answered,
        rss_waiting_kib: rss_waiting.saturating_sub(before),
    })
}

/// The agent's open file descriptors (each API connection is one).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Instances per service in the replication phase: 1,000 services for
/// 100,000 instances, under the importer's default caps (1,024 imported
/// services, 4,096 instances per service).
const REPLICATED_PER_SERVICE: usize = 100;

/// Two peered dev agents; `instances` registered on the exporter, then
/// every service exported (`*`): milliseconds until the importer lists
/// every service with all its instances.
async fn replication(bin_dir: &Path, instances: usize) -> Result<f64> {
    let (exporter, importer) = crate::peering::peered(bin_dir).await?;
    register_named(
        &exporter.http_addr,
        0,
        instances,
        REPLICATED_PER_SERVICE,
        "rep",
    )
    .await?;
    let services = instances / REPLICATED_PER_SERVICE;
    let last = format!("rep-{:05}", services - 1);
    let started = Instant::now();
    crate::peering::export(&exporter, &["*"]).await?;
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let names = format!(
            "http://{}/v1/catalog/services?peer={}",
            importer.http_addr,
            crate::peering::EXPORTER
        );
        let (body, _) = call(&client, http::Method::GET, names, Bytes::new()).await?;
        let listed: serde_json::Value = serde_json::from_slice(&body)?;
        if listed.as_object().map_or(0, |m| m.len()) >= services {
            let url = format!(
                "http://{}/v1/health/service/{last}?peer={}",
                importer.http_addr,
                crate::peering::EXPORTER
            );
            let (body, _) = call(&client, http::Method::GET, url, Bytes::new()).await?;
            let entries: serde_json::Value = serde_json::from_slice(&body)?;
            if entries.as_array().map_or(0, Vec::len) == REPLICATED_PER_SERVICE {
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if Instant::now() > deadline {
            bail!("the importer did not list all {services} services within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(args: &RunArgs, bin_dir: &Path, name: &str) -> Result<i32> {
    let sizes: Vec<usize> = if args.quick {
        vec![1_000, 2_000]
    } else {
        vec![10_000, 50_000, 100_000]
    };
    let scratch = tempfile::Builder::new()
        .prefix("isthmus-scale-")
        .tempdir()?;
    let data_dir = scratch.path().join("data");
    let mut agent = ScaleAgent::start(bin_dir, &data_dir)?;
    println!(
        "isthmus-bench scale: durable agent, {CLIENTS} clients, {INSTANCES_PER_SERVICE} instances per service"
    );
    println!(
        "{:>10} {:>14} {:>12} {:>12} {:>10} {:>14}",
        "instances", "registered/s", "query p50", "query p99", "RSS MiB", "KiB/instance"
    );
    let mut rows = Vec::new();
    let mut registered = 0;
    for &size in &sizes {
        let rate = register(&agent.addr, registered, size).await?;
        registered = size;
        let (p50, p99) = query_latency(&agent.addr, size).await?;
        let rss = measure::rss_kib(agent.pid());
        let per_instance = rss as f64 / size as f64;
        println!(
            "{size:>10} {rate:>14.0} {p50:>10.2}ms {p99:>10.2}ms {:>10.1} {per_instance:>14.2}",
            rss as f64 / 1024.0
        );
        rows.push(json!({
            "instances": size,
            "registrations_per_s": rate,
            "health_service_p50_ms": p50,
            "health_service_p99_ms": p99,
            "rss_kib": rss,
            "rss_kib_per_instance": per_instance,
        }));
    }
    let wake = wake(&agent, registered).await?;
    println!(
        "one write while {WAITERS} blocking queries wait on other services: acknowledged in {:.2} ms, its {WAITERS_ON_CHANGED} watchers answered in {:.2} ms, {} of the others answered (0 expected); RSS +{:.1} MiB with them waiting",
        wake.ack_ms,
        wake.answered_ms,
        wake.others_answered,
        wake.rss_waiting_kib as f64 / 1024.0
    );
    // Restart: stop, start again, time until serving every instance.
    agent.stop();
    let started = Instant::now();
    let agent = ScaleAgent::start(bin_dir, &data_dir)?;
    let client = client();
    let mut restart_ms = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let url = format!("http://{}/v1/health/service/svc-00001", agent.addr);
        if let Ok((body, _)) = call(&client, http::Method::GET, url, Bytes::new()).await {
            let entries: serde_json::Value = serde_json::from_slice(&body)?;
            if entries.as_array().map(Vec::len) == Some(INSTANCES_PER_SERVICE) {
                restart_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restart_ms = restart_ms.context("the restarted agent never served the catalog")?;
    let rss_after_restart = measure::rss_kib(agent.pid());
    println!(
        "restart with {registered} instances: serving in {restart_ms:.0} ms (RSS {:.1} MiB)",
        rss_after_restart as f64 / 1024.0
    );
    drop(agent);
    let replicated = registered;
    let replication_ms = replication(bin_dir, replicated).await?;
    println!(
        "replication to a peer: {replicated} instances ({} services) in {replication_ms:.0} ms",
        replicated / REPLICATED_PER_SERVICE
    );
    let document = json!({
        "kind": "scale",
        "machine": measure::machine(),
        "clients": CLIENTS,
        "instances_per_service": INSTANCES_PER_SERVICE,
        "sizes": rows,
        "wake": {
            "waiters_on_other_services": WAITERS,
            "waiters_on_changed_service": WAITERS_ON_CHANGED,
            "write_ack_ms": wake.ack_ms,
            "changed_answered_ms": wake.answered_ms,
            "others_answered": wake.others_answered,
            "rss_kib_with_waiters": wake.rss_waiting_kib,
        },
        "restart": {"instances": registered, "serving_ms": restart_ms, "rss_kib": rss_after_restart},
        "replication": {"instances": replicated, "services": replicated / REPLICATED_PER_SERVICE, "ms": replication_ms},
    });
    let dir = crate::bench_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}-scale.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(if wake.others_answered == 0 { 0 } else { 1 })
}
