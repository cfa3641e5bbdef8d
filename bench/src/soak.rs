//! `run --only soak`: minutes of steady mesh traffic through the isthmus
//! sidecars while the control plane churns, watching every process for
//! leaks. Not part of CI.
//!
//! Running at once, until `--soak-duration` (default 5 min) is up:
//! - **traffic**: fixed-rate `GET /1k` through the outbound sidecar →
//!   mTLS → inbound sidecar → backend, in 5 s slices alternating HTTP/1.1
//!   and h2c; anything but a 200 with the whole body is an error;
//! - **intention flips**: every second the `service-intentions` entry for
//!   `backend` is rewritten, keeping `frontend` allowed (so traffic must
//!   keep passing) and flipping a second source between allow and deny, so
//!   both sidecars keep re-reading intentions under load;
//! - **peering churn**: a second pair of agents (`cluster-01` exporting
//!   `web` to `cluster-02`, each with its in-process mesh gateway) is
//!   deleted on both sides, re-peered with a fresh token, and must become
//!   ACTIVE and show the imported `web` again, over and over.
//!
//! Every process's VmRSS, VmHWM and open file descriptors (from /proc) are
//! sampled at the start (after a short warm-up), every few seconds and at
//! the end. The report gives each process's RSS growth and fd growth and
//! the error counts; it is printed and written to `results/<name>.json`.
//! Exit code 1 when anything failed or a process died.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::agent::Agent;
use crate::load::{self, Proto};
use crate::{backend, peering, topology, RunArgs};

/// Default `--soak-duration`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(300);
/// Requests per second through the sidecars.
const RATE: u64 = 200;
/// Length of one traffic slice (protocols alternate between slices).
const SLICE: Duration = Duration::from_secs(5);
const FLIP_EVERY: Duration = Duration::from_secs(1);
/// Pause between two peering cycles.
const CHURN_PAUSE: Duration = Duration::from_secs(1);
/// Longest wait for one peering step (deleted, ACTIVE, import visible).
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// `--soak-duration`: whole seconds, or a number with `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 300, 90s, 5m or 1h"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (s, m or h)")),
    };
    if !(seconds.is_finite() && seconds >= 1.0) {
        return Err(format!("{text:?}: at least 1 s"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One process at one moment, from /proc.
#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    rss_kib: u64,
    hwm_kib: u64,
    fds: u64,
    threads: u64,
}

fn usage(pid: u32) -> Option<Usage> {
    if !alive(pid) {
        return None;
    }
    let hop = crate::memory::hop(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        rss_kib: hop.rss_kib,
        hwm_kib: hop.hwm_kib,
        fds,
        threads: hop.threads,
    })
}

/// Running and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    at_s: f64,
    /// Per process, in the order of `processes`; null once it is gone.
    usage: Vec<Option<Usage>>,
}

#[derive(Debug, Clone, Serialize)]
struct ProcessReport {
    process: String,
    pid: u32,
    start: Option<Usage>,
    end: Option<Usage>,
    rss_growth_kib: Option<i64>,
    fd_growth: Option<i64>,
    alive_at_end: bool,
}

/// Error counters shared by the concurrent activities.
#[derive(Default)]
struct Counters {
    requests_ok: AtomicU64,
    request_errors: AtomicU64,
    flips_ok: AtomicU64,
    flip_errors: AtomicU64,
    peering_cycles: AtomicU64,
    peering_errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Counters {
    fn note(&self, what: &str, error: impl std::fmt::Display) {
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 10 {
            first.push(format!("{what}: {error:#}"));
        }
    }
}

async fn traffic(addr: String, until: Instant, counters: Arc<Counters>) {
    let mut slice = 0;
    while Instant::now() + Duration::from_millis(200) < until {
        let proto = if slice % 2 == 0 { Proto::H1 } else { Proto::H2 };
        let length = SLICE.min(until - Instant::now());
        match load::open_loop(&addr, proto, "/1k", backend::SMALL, RATE, length).await {
            Ok(outcome) => {
                counters
                    .requests_ok
                    .fetch_add(outcome.ok, Ordering::Relaxed);
                counters
                    .request_errors
                    .fetch_add(outcome.errors, Ordering::Relaxed);
                if let Some(error) = outcome.first_error {
                    counters.note(&format!("traffic ({})", proto.label()), error);
                }
            }
            Err(e) => {
                counters.request_errors.fetch_add(1, Ordering::Relaxed);
                counters.note("traffic", e);
            }
        }
        slice += 1;
    }
}

async fn intention_flips(agent: &Agent, until: Instant, counters: &Counters) {
    let mut flip = 0u64;
    while Instant::now() + FLIP_EVERY < until {
        let action = if flip % 2 == 0 { "deny" } else { "allow" };
        let entry = json!({"Kind": "service-intentions", "Name": "backend", "Sources": [
            {"Name": "frontend", "Action": "allow"},
            {"Name": "soak-probe", "Action": action},
        ]});
        match agent.put_json("/v1/config", entry).await {
            Ok(()) => counters.flips_ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                counters.note("intention flip", e);
                counters.flip_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
        flip += 1;
        tokio::time::sleep(FLIP_EVERY).await;
    }
}

/// Polls `check` until it is true, at most `STEP_LIMIT`.
async fn until_true<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < STEP_LIMIT {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what}: not within {STEP_LIMIT:?}")
}

async fn gone(agent: &Agent, name: &str) -> bool {
    match agent.get_json(&format!("/v1/peering/{name}")).await {
        Ok(peering) => peering["State"] == "DELETED" || peering.is_null(),
        Err(e) => format!("{e:#}").contains("404"),
    }
}

/// Delete the peering on both sides, peer again, wait for the import.
async fn peering_cycle(exporter: &Agent, importer: &Agent) -> Result<()> {
    let (exp_name, imp_name) = (peering::EXPORTER, peering::IMPORTER);
    importer
        .delete(&format!("/v1/peering/{exp_name}"))
        .await
        .context("delete on the importer")?;
    exporter
        .delete(&format!("/v1/peering/{imp_name}"))
        .await
        .context("delete on the exporter")?;
    until_true("peering deleted on the importer", || {
        gone(importer, exp_name)
    })
    .await?;
    until_true("peering deleted on the exporter", || {
        gone(exporter, imp_name)
    })
    .await?;
    peering::establish(exporter, importer).await?;
    let path = format!("/v1/health/service/web?peer={exp_name}");
    until_true("web imported again", || async {
        importer
            .get_json(&path)
            .await
            .is_ok_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    })
    .await
}

async fn peering_churn(exporter: &Agent, importer: &Agent, until: Instant, counters: &Counters) {
    while Instant::now() + CHURN_PAUSE < until {
        match peering_cycle(exporter, importer).await {
            Ok(()) => counters.peering_cycles.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                counters.note("peering churn", e);
                counters.peering_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
        tokio::time::sleep(CHURN_PAUSE).await;
    }
}

fn sample(pids: &[u32], start: Instant) -> Sample {
    Sample {
        at_s: start.elapsed().as_secs_f64(),
        usage: pids.iter().map(|pid| usage(*pid)).collect(),
    }
}

fn mib(kib: i64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn run(args: &RunArgs, bin_dir: &Path, name: &str) -> Result<i32> {
    let duration = args.soak_duration.unwrap_or(DEFAULT_DURATION);
    println!(
        "isthmus-bench soak: {:.0} s of {RATE} req/s through the sidecars (HTTP/1.1 and h2c), intention flips every {:?}, peering churn; {} worker(s) per proxy",
        duration.as_secs_f64(),
        FLIP_EVERY,
        args.workers
    );
    let backend = backend::start().await?.to_string();
    let mesh = topology::isthmus(bin_dir, &backend, args.workers)
        .await
        .context("starting the isthmus topology")?;
    let (exporter, importer) = peering::peered(bin_dir)
        .await
        .context("starting and peering cluster-01 and cluster-02")?;
    exporter
        .put_json(
            "/v1/agent/service/register",
            json!({"Name": "web", "Port": 80, "Check": {"TTL": "24h", "Status": "passing"}}),
        )
        .await?;
    peering::export(&exporter, &["web"]).await?;

    let mesh_agent = mesh.agent.as_ref().context("no agent")?;
    let processes: Vec<(String, u32)> = vec![
        ("sidecar outbound (frontend)".into(), mesh.pids()[0]),
        ("sidecar inbound (backend)".into(), mesh.pids()[1]),
        ("agent (mesh)".into(), mesh_agent.pid()),
        (
            format!("agent {} + gateway", peering::EXPORTER),
            exporter.pid(),
        ),
        (
            format!("agent {} + gateway", peering::IMPORTER),
            importer.pid(),
        ),
    ];
    let pids: Vec<u32> = processes.iter().map(|(_, pid)| *pid).collect();

    // Warm-up, so the baseline has the connection pools and caches in place.
    let warm = load::open_loop(
        &mesh.h1_addr,
        Proto::H1,
        "/1k",
        backend::SMALL,
        RATE,
        SLICE / 2,
    )
    .await?;
    let warm2 = load::open_loop(
        &mesh.h2_addr,
        Proto::H2,
        "/1k",
        backend::SMALL,
        RATE,
        SLICE / 2,
    )
    .await?;
    if warm.errors + warm2.errors > 0 {
        println!(
            "warning: {} errors during warm-up (first: {:?})",
            warm.errors + warm2.errors,
            warm.first_error.or(warm2.first_error)
        );
    }
    let start = Instant::now();
    let until = start + duration;
    let mut samples = vec![sample(&pids, start)];

    let counters = Arc::new(Counters::default());
    let traffic = tokio::spawn(traffic(mesh.h1_addr.clone(), until, counters.clone()));
    let done = AtomicBool::new(false);
    let every = (duration / 20).clamp(Duration::from_secs(1), Duration::from_secs(15));
    let sampler = async {
        while !done.load(Ordering::Relaxed) && Instant::now() < until {
            tokio::time::sleep(every.min(until.saturating_duration_since(Instant::now()))).await;
            let s = sample(&pids, start);
            let rss: Vec<String> = s
                .usage
                .iter()
                .map(|u| {
                    u.map_or("gone".into(), |u| {
                        format!("{:.1}", u.rss_kib as f64 / 1024.0)
                    })
                })
                .collect();
            println!(
                "  {:>6.0}s  RSS MiB [{}]  requests ok {} errors {}  flips {}  peering cycles {} (errors {})",
                s.at_s,
                rss.join(", "),
                counters.requests_ok.load(Ordering::Relaxed),
                counters.request_errors.load(Ordering::Relaxed),
                counters.flips_ok.load(Ordering::Relaxed),
                counters.peering_cycles.load(Ordering::Relaxed),
                counters.peering_errors.load(Ordering::Relaxed),
            );
            samples.push(s);
        }
    };
    let activities = async {
        tokio::join!(
            intention_flips(mesh_agent, until, &counters),
            peering_churn(&exporter, &importer, until, &counters),
        );
        let _ = traffic.await;
        done.store(true, Ordering::Relaxed);
    };
    tokio::join!(sampler, activities);
    // Let in-flight work settle before the final reading.
    crate::sleep(1.0).await;
    let end = sample(&pids, start);
    samples.push(end.clone());

    let mut reports = Vec::new();
    for (i, (process, pid)) in processes.iter().enumerate() {
        let first = samples[0].usage[i];
        let last = end.usage[i];
        let growth =
            |f: fn(&Usage) -> u64| first.zip(last).map(|(a, b)| f(&b) as i64 - f(&a) as i64);
        reports.push(ProcessReport {
            process: process.clone(),
            pid: *pid,
            start: first,
            end: last,
            rss_growth_kib: growth(|u| u.rss_kib),
            fd_growth: growth(|u| u.fds),
            alive_at_end: last.is_some(),
        });
    }
    let died = reports.iter().filter(|r| !r.alive_at_end).count();

    println!();
    println!(
        "| process | RSS start MiB | RSS end MiB | RSS growth MiB | peak MiB | fds start | fds end | fd growth |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &reports {
        let cell = |u: Option<Usage>, f: fn(&Usage) -> String| u.as_ref().map_or("gone".into(), f);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.process,
            cell(r.start, |u| format!("{:.1}", u.rss_kib as f64 / 1024.0)),
            cell(r.end, |u| format!("{:.1}", u.rss_kib as f64 / 1024.0)),
            r.rss_growth_kib
                .map_or("-".into(), |g| format!("{:+.1}", mib(g))),
            cell(r.end, |u| format!("{:.1}", u.hwm_kib as f64 / 1024.0)),
            cell(r.start, |u| u.fds.to_string()),
            cell(r.end, |u| u.fds.to_string()),
            r.fd_growth.map_or("-".into(), |g| format!("{g:+}")),
        );
    }
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let errors = json!({
        "requests_ok": load(&counters.requests_ok),
        "request_errors": load(&counters.request_errors),
        "intention_flips": load(&counters.flips_ok),
        "intention_flip_errors": load(&counters.flip_errors),
        "peering_cycles": load(&counters.peering_cycles),
        "peering_errors": load(&counters.peering_errors),
        "processes_died": died,
        "first_errors": counters.first_errors.lock().unwrap().clone(),
    });
    println!();
    println!(
        "requests: {} ok, {} errors; intention flips: {} ({} errors); peering cycles: {} ({} errors); processes died: {died}",
        errors["requests_ok"],
        errors["request_errors"],
        errors["intention_flips"],
        errors["intention_flip_errors"],
        errors["peering_cycles"],
        errors["peering_errors"],
    );
    for e in counters.first_errors.lock().unwrap().iter() {
        println!("  error: {e}");
    }
    let failed = load(&counters.request_errors)
        + load(&counters.flip_errors)
        + load(&counters.peering_errors)
        + died as u64
        > 0;

    let document = json!({
        "name": name,
        "only": "soak",
        "soak_seconds": duration.as_secs_f64(),
        "rate_per_second": RATE,
        "workers_per_proxy": args.workers,
        "processes": reports,
        "errors": errors,
        "samples": samples,
        "process_order": processes.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
    });
    let dir = crate::bench_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("results: {}", path.display());
    drop((exporter, importer));
    drop(mesh);
    if failed {
        println!("FAILED: errors during the soak (see above)");
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_durations() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "0", "x", "5d", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
