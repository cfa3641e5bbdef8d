//! `run --only scale`, the cluster on etcd: one real etcd (Debian's
//! `etcd-server`) and two agents sharing it (`--store etcd`). At each size
//! (10k instances; `--quick`: 1k) it measures:
//! - registrations per second through agent A (16 clients; each write is
//!   one etcd transaction, answered once A has applied it);
//! - how long after the last registration's answer agent B serves every
//!   instance;
//! - `health/service/<name>` p50 and p99 on B, where the instances are
//!   another node's;
//! - propagation: a registration through A until a blocking query parked
//!   on B answers, p50 and p99 of 20;
//! - a third agent joining: from start to serving every instance (one
//!   paged read of the whole state from etcd).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde_json::json;

use crate::agent::request as call;
use crate::measure;
use crate::procs::{self, Proc};
use crate::scale::{
    client, percentile, query_latency, register_named, ScaleAgent, CLIENTS, INSTANCES_PER_SERVICE,
};
use crate::RunArgs;

const PROPAGATION_SAMPLES: usize = 20;
const WAIT: Duration = Duration::from_secs(120);

struct Etcd {
    _proc: Proc,
    endpoint: String,
}

impl Etcd {
    async fn start(dir: &Path) -> Result<Etcd> {
        let client_port = procs::free_port()?;
        let peer_port = procs::free_port()?;
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args: Vec<String> = [
            "--name",
            "bench",
            "--data-dir",
            &dir.join("etcd").display().to_string(),
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("bench={peer}"),
            "--max-txn-ops",
            "10000",
            "--max-request-bytes",
            "16777216",
        ]
        .map(str::to_owned)
        .to_vec();
        let (proc, _) = procs::spawn("etcd", Path::new("etcd"), &args, None)
            .context("starting etcd (scripts/setup.sh installs etcd-server)")?;
        let http = client();
        let deadline = Instant::now() + WAIT;
        loop {
            let health = call(
                &http,
                http::Method::GET,
                format!("{endpoint}/health"),
                Bytes::new(),
            )
            .await;
            if health.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("etcd at {endpoint} never became healthy");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Etcd {
            _proc: proc,
            endpoint,
        })
    }

    fn agent(&self, bin_dir: &Path, node: &str) -> Result<ScaleAgent> {
        ScaleAgent::start_with(
            bin_dir,
            &[
                "--store",
                "etcd",
                "--etcd-endpoints",
                &self.endpoint,
                "--node-name",
                node,
                "--cluster-name",
                "bench",
            ],
        )
    }
}

/// Waits until `addr` answers `svc-<last>` with every instance; returns
/// the milliseconds since `since`.
async fn until_serving(addr: &str, instances: usize, since: Instant) -> Result<f64> {
    let http = client();
    let last = format!("svc-{:05}", instances / INSTANCES_PER_SERVICE - 1);
    let url = format!("http://{addr}/v1/health/service/{last}");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok((body, _)) = call(&http, http::Method::GET, url.clone(), Bytes::new()).await {
            let entries: serde_json::Value = serde_json::from_slice(&body)?;
            if entries.as_array().map(Vec::len) == Some(INSTANCES_PER_SERVICE) {
                return Ok(since.elapsed().as_secs_f64() * 1000.0);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("{addr} never served all of {last}")
}

/// A registration through `a` until a blocking query parked on `b` for
/// that service answers: p50 and p99 (ms).
async fn propagation(a: &str, b: &str) -> Result<(f64, f64)> {
    let http = client();
    let mut samples = Vec::with_capacity(PROPAGATION_SAMPLES);
    for i in 0..PROPAGATION_SAMPLES {
        let service = format!("probe-{i}");
        let url = format!("http://{b}/v1/health/service/{service}");
        let (_, index) = call(&http, http::Method::GET, url.clone(), Bytes::new()).await?;
        let parked = {
            let http = http.clone();
            let url = format!("{url}?index={index}&wait=30s");
            tokio::spawn(async move { call(&http, http::Method::GET, url, Bytes::new()).await })
        };
        // Let the query park before the write.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        let body = json!({"Name": service, "Port": 9000}).to_string();
        call(
            &http,
            http::Method::PUT,
            format!("http://{a}/v1/agent/service/register"),
            Bytes::from(body),
        )
        .await?;
        let (answer, after) = parked.await??;
        if after <= index || answer.len() < 3 {
            bail!("the query on {b} answered without the new instance");
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 50.0), percentile(&samples, 99.0)))
}

/// Runs the measurements and writes `results/<name>-scale-etcd.json`.
pub async fn run(args: &RunArgs, bin_dir: &Path, name: &str) -> Result<()> {
    let sizes: Vec<usize> = if args.quick {
        vec![1_000]
    } else {
        vec![10_000]
    };
    let scratch = tempfile::Builder::new()
        .prefix("isthmus-scale-etcd-")
        .tempdir()?;
    let etcd = Etcd::start(scratch.path()).await?;
    let a = etcd.agent(bin_dir, "n1")?;
    let b = etcd.agent(bin_dir, "n2")?;
    println!(
        "isthmus-bench scale on etcd: two agents sharing one etcd, {CLIENTS} clients registering through the first"
    );
    println!(
        "{:>10} {:>14} {:>16} {:>14} {:>14}",
        "instances", "registered/s", "other lags by", "other p50", "other p99"
    );
    let mut rows = Vec::new();
    let mut registered = 0;
    for &size in &sizes {
        let rate = register_named(&a.addr, registered, size, INSTANCES_PER_SERVICE, "svc").await?;
        registered = size;
        // From the last registration's answer until the other agent has it.
        let visible_ms = until_serving(&b.addr, size, Instant::now()).await?;
        let (p50, p99) = query_latency(&b.addr, size).await?;
        println!("{size:>10} {rate:>14.0} {visible_ms:>14.0}ms {p50:>12.2}ms {p99:>12.2}ms");
        rows.push(json!({
            "instances": size,
            "registrations_per_s": rate,
            "other_agent_lag_ms": visible_ms,
            "other_agent_health_service_p50_ms": p50,
            "other_agent_health_service_p99_ms": p99,
        }));
    }
    let (prop_p50, prop_p99) = propagation(&a.addr, &b.addr).await?;
    println!(
        "a registration through one agent until a blocking query on the other answers: p50 {prop_p50:.2} ms, p99 {prop_p99:.2} ms"
    );
    let joined = Instant::now();
    let c = etcd.agent(bin_dir, "n3")?;
    let join_ms = until_serving(&c.addr, registered, joined).await?;
    println!("a third agent joining with {registered} instances: serving in {join_ms:.0} ms");
    let document = json!({
        "kind": "scale-etcd",
        "machine": measure::machine(),
        "agents": 2,
        "clients": CLIENTS,
        "instances_per_service": INSTANCES_PER_SERVICE,
        "sizes": rows,
        "propagation_p50_ms": prop_p50,
        "propagation_p99_ms": prop_p99,
        "join": {"instances": registered, "serving_ms": join_ms},
    });
    let dir = crate::bench_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}-scale-etcd.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}
