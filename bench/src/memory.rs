//! `run --only memory`: the isthmus topology alone, and its sidecars'
//! memory from /proc, step by step: idle; with 1,000 idle keep-alive
//! HTTP/1.1 connections on a fresh outbound hop; after one short round of
//! every load scenario; and with 1,000 connections again after that load
//! (which is where a full run measures them). No Envoy, no nginx, no
//! latency tables; about 30 s with the default 1 s per scenario.

use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::topology::{self, Topology};
use crate::{backend, load, scenario, RunArgs};

const CONNECTIONS: usize = 1000;

/// One hop's memory at one step, from /proc/<pid>/status and smaps_rollup.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Anonymous memory (heap, stacks) within the RSS.
    pub anon_kib: u64,
    /// File-backed pages within the RSS (the binary's code and data).
    pub file_kib: u64,
    pub threads: u64,
}

fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

pub fn hop(pid: u32) -> Hop {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Hop {
        rss_kib: field(&status, "VmRSS:"),
        hwm_kib: field(&status, "VmHWM:"),
        anon_kib: field(&status, "RssAnon:"),
        file_kib: field(&status, "RssFile:"),
        threads: field(&status, "Threads:"),
    }
}

#[derive(Debug, Clone, Serialize)]
struct Step {
    step: &'static str,
    /// Outbound hop, then inbound hop.
    hops: Vec<Hop>,
    note: String,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print(step: &Step) {
    let hops: Vec<String> = step
        .hops
        .iter()
        .zip(["outbound", "inbound"])
        .map(|(h, name)| {
            format!(
                "{name} RSS {:>5.1} MiB (anon {:>5.1}, file {:>4.1}, peak {:>5.1}, {} threads)",
                mib(h.rss_kib),
                mib(h.anon_kib),
                mib(h.file_kib),
                mib(h.hwm_kib),
                h.threads
            )
        })
        .collect();
    println!("  {:<28} {}{}", step.step, hops.join("  "), step.note);
}

fn step(t: &Topology, name: &'static str, note: String) -> Step {
    let step = Step {
        step: name,
        hops: t.pids().into_iter().map(hop).collect(),
        note,
    };
    print(&step);
    step
}

async fn connections(
    t: &Topology,
    name: &'static str,
) -> Result<(Step, Vec<tokio::net::TcpStream>)> {
    let (streams, errors) = load::open_idle(&t.h1_addr, CONNECTIONS).await?;
    crate::sleep(0.5).await;
    let base = format!("  ({} open, {errors} failed)", streams.len());
    Ok((step(t, name, base), streams))
}

pub async fn run(args: &RunArgs, bin_dir: &std::path::Path, name: &str) -> Result<i32> {
    let seconds = args.seconds.unwrap_or(1.0);
    println!(
        "isthmus-bench memory: isthmus topology only, {} worker(s) per proxy, {seconds}s per load scenario",
        args.workers
    );
    let backend = backend::start().await?.to_string();
    let mut t = topology::isthmus(bin_dir, &backend, args.workers)
        .await
        .context("starting the isthmus topology")?;
    crate::sleep(1.0).await;
    let mut steps = vec![step(&t, "idle", String::new())];

    let (cold, streams) = connections(&t, "1,000 conns (no load yet)").await?;
    steps.push(cold);
    drop(streams);
    crate::sleep(1.0).await;
    steps.push(step(&t, "after closing them", String::new()));

    let duration = Duration::from_secs_f64(seconds);
    let mut errors = 0;
    for sc in scenario::all() {
        let sample = scenario::run(sc, &t, duration).await?;
        errors += sample.errors;
        t.check_alive()?;
    }
    crate::sleep(1.0).await;
    steps.push(step(
        &t,
        "after one load round",
        format!("  ({errors} request errors)"),
    ));

    let (warm, streams) = connections(&t, "1,000 conns (after load)").await?;
    steps.push(warm);
    drop(streams);
    t.check_alive()?;

    let idle = steps[0].hops.iter().map(|h| h.rss_kib).max().unwrap_or(0);
    let with_conns = steps[4].hops.first().map_or(0, |h| h.rss_kib);
    println!(
        "targets: idle (larger hop) {:.1} MiB (want <= 8), 1,000 conns after load (outbound) {:.1} MiB (want <= 20)",
        mib(idle),
        mib(with_conns)
    );
    let document = json!({
        "name": name,
        "only": "memory",
        "workers_per_proxy": args.workers,
        "seconds_per_scenario": seconds,
        "connections": CONNECTIONS,
        "steps": steps,
        "request_errors": errors,
    });
    let dir = crate::bench_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("results: {}", path.display());
    drop(t);
    Ok(if errors > 0 { 1 } else { 0 })
}
