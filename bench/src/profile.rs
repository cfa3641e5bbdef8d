//! `run --only profile`: the isthmus topology alone under a small, fixed
//! load, in phases bracketed by `callgrind_control --zero` and
//! `callgrind_control --dump=<phase>` on both hops, so a hop started under
//! callgrind (`ISTHMUS_BENCH_WRAP_OUTBOUND` / `ISTHMUS_BENCH_WRAP_INBOUND`,
//! e.g. `valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out.%p`)
//! writes one profile per phase: idle, HTTP/1.1 keep-alive `GET /1k` at a
//! low fixed rate, then `GET /64k` (streamed). Instructions per request are
//! a phase's total over its request count (printed), less the idle phase's
//! rate. Outside callgrind the `callgrind_control` calls fail harmlessly.
//! See bench/README.md, "Profiling notes".

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::load::{self, Proto};
use crate::topology::{self, Topology};
use crate::{backend, RunArgs};

/// Requests per second, low enough for a hop slowed ~50× by callgrind.
const RATE_1K: u64 = 50;
const RATE_64K: u64 = 20;

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
    for (phase, path, len, rate) in [
        ("http1-1k", "/1k", backend::SMALL, RATE_1K),
        ("http1-64k", "/64k", large, RATE_64K),
    ] {
        callgrind_control(&t, "--zero");
        let outcome = load::open_loop(&t.h1_addr, Proto::H1, path, len, rate, duration).await?;
        callgrind_control(&t, &format!("--dump={phase}"));
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
