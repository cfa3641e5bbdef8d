//! `run --only profile`: the isthmus topology alone under a small, fixed
//! load, in phases bracketed by `callgrind_control --zero` and
//! `callgrind_control --dump=<phase>` on both hops, so a hop started under
//! callgrind (`ISTHMUS_BENCH_WRAP_OUTBOUND` / `ISTHMUS_BENCH_WRAP_INBOUND`,
//! e.g. `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out.%p`)
//! writes one profile per phase: idle, HTTP/1.1 keep-alive `GET /1k` at a
//! low fixed rate, then `GET /64k` (streamed). Instructions per request are
//! a phase's total over its request count (printed), less the idle phase's
//! rate. Outside callgrind the `callgrind_control` calls fail harmlessly.
//!
//! With `ISTHMUS_BENCH_STRACE=<dir>` the hops run at full speed instead:
//! each phase attaches `strace -c -f` to both hops for its duration, at
//! 1,000 req/s for `/1k` (HTTP/1.1, then h2c) and 200 req/s for `/64k`,
//! and prints system calls per request per hop (summaries kept in `<dir>`).
//! See bench/README.md, "Profiling notes".

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::load::{self, Proto};
use crate::topology::{self, Topology};
use crate::{backend, RunArgs};

/// Requests per second, low enough for a hop slowed ~50× by callgrind.
const RATE_1K: u64 = 50;
const RATE_64K: u64 = 20;
/// Under strace the hops run at full speed: the full bench's rate.
const STRACE_RATE_1K: u64 = 1000;
const STRACE_RATE_64K: u64 = 200;

/// `strace -c -f` attached to each hop for one phase.
struct Straced {
    children: Vec<(&'static str, Child, PathBuf)>,
}

fn strace_start(t: &Topology, dir: &Path, phase: &str) -> Result<Straced> {
    let mut children = Vec::new();
    for (hop, pid) in ["outbound", "inbound"].into_iter().zip(t.pids()) {
        let out = dir.join(format!("strace.{hop}.{phase}"));
        let child = Command::new("strace")
            .args(["-c", "-f", "-q", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .context("run strace")?;
        children.push((hop, child, out));
    }
    Ok(Straced { children })
}

/// Stops the tracers (SIGINT writes the summary) and prints the calls
/// per request of each hop: the total and the most frequent calls.
fn strace_stop(straced: Straced, phase: &str, requests: u64) -> Result<()> {
    for (hop, mut child, out) in straced.children {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        child.wait()?;
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let mut calls: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                // % time, seconds, usecs/call, calls, [errors,] syscall
                if cols.len() < 5 || cols[0].parse::<f64>().is_err() {
                    return None;
                }
                let name = cols.last()?.to_string();
                Some((cols[3].parse().ok()?, name))
            })
            .filter(|(_, name)| name != "total")
            .collect();
        calls.sort_by_key(|c| std::cmp::Reverse(c.0));
        let per = |n: u64| n as f64 / requests.max(1) as f64;
        let total: u64 = calls.iter().map(|c| c.0).sum();
        let top: Vec<String> = calls
            .iter()
            .take(6)
            .map(|(n, name)| format!("{name} {:.2}", per(*n)))
            .collect();
        println!(
            "  strace {phase} {hop}: {:.2} system calls per request ({})",
            per(total),
            top.join(", ")
        );
    }
    Ok(())
}

fn callgrind_control(t: &Topology, arg: &str) {
    for pid in t.pids() {
        // It exits 0 for a process not under callgrind too; "OK" is the
        // answer of one that is.
        let ok = Command::new("callgrind_control")
            .arg(arg)
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("OK"));
        if ok {
            println!("  callgrind_control {arg} {pid}");
        }
    }
}

pub async fn run(args: &RunArgs, bin_dir: &std::path::Path) -> Result<i32> {
    let seconds = args.seconds.unwrap_or(20.0);
    let duration = Duration::from_secs_f64(seconds);
    println!(
        "isthmus-bench profile: isthmus topology only, {} worker(s) per proxy, {seconds}s per phase",
        args.workers
    );
    let backend = backend::start().await?.to_string();
    let mut t = topology::isthmus(bin_dir, &backend, args.workers)
        .await
        .context("starting the isthmus topology")?;
    let large = backend::LARGE_CHUNK * backend::LARGE_CHUNKS;
    let strace_dir = std::env::var_os("ISTHMUS_BENCH_STRACE").map(PathBuf::from);
    if let Some(dir) = &strace_dir {
        std::fs::create_dir_all(dir)?;
    }
    let (rate_1k, rate_64k) = if strace_dir.is_some() {
        (STRACE_RATE_1K, STRACE_RATE_64K)
    } else {
        (RATE_1K, RATE_64K)
    };
    // Warm-up: pooled connections, lazily resolved metrics, allocator.
    let warm = Duration::from_secs(2);
    load::open_loop(&t.h1_addr, Proto::H1, "/1k", backend::SMALL, RATE_1K, warm).await?;
    load::open_loop(&t.h1_addr, Proto::H1, "/64k", large, RATE_64K, warm).await?;
    crate::sleep(1.0).await;

    callgrind_control(&t, "--zero");
    crate::sleep(seconds).await;
    callgrind_control(&t, "--dump=idle");
    println!("phase idle: {seconds}s, 0 requests");

    let mut errors = 0;
    for (phase, proto, path, len, rate) in [
        ("http1-1k", Proto::H1, "/1k", backend::SMALL, rate_1k),
        ("h2c-1k", Proto::H2, "/1k", backend::SMALL, rate_1k),
        ("http1-64k", Proto::H1, "/64k", large, rate_64k),
    ] {
        let addr = if proto == Proto::H1 {
            &t.h1_addr
        } else {
            &t.h2_addr
        };
        let straced = match &strace_dir {
            Some(dir) => {
                let straced = strace_start(&t, dir, phase)?;
                // Let strace attach to every thread before the phase starts.
                crate::sleep(0.5).await;
                Some(straced)
            }
            None => None,
        };
        callgrind_control(&t, "--zero");
        let outcome = load::open_loop(addr, proto, path, len, rate, duration).await?;
        callgrind_control(&t, &format!("--dump={phase}"));
        if let Some(straced) = straced {
            strace_stop(straced, phase, outcome.ok + outcome.errors)?;
        }
        println!(
            "phase {phase}: {rate} req/s for {seconds}s, {} ok, {} errors, p50 {} µs{}",
            outcome.ok,
            outcome.errors,
            outcome.hist.value_at_quantile(0.5),
            outcome
                .first_error
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
        errors += outcome.errors;
        t.check_alive()?;
    }
    drop(t);
    if errors > 0 {
        bail!("{errors} request errors");
    }
    Ok(0)
}
