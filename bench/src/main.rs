//! isthmus-bench: isthmus-proxy against a direct connection, Envoy, nginx
//! and HAProxy, side by side in one run. See bench/README.md.
#![forbid(unsafe_code)]

mod agent;
mod backend;
mod certs;
mod churn;
mod control;
mod failover;
mod load;
mod measure;
mod memory;
mod peering;
mod peers;
mod procs;
mod profile;
mod report;
mod scale;
mod scale_etcd;
mod scenario;
mod soak;
mod topology;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "isthmus-bench",
    about = "Benchmarks isthmus-proxy against direct, Envoy, nginx and HAProxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the isthmus binaries if needed, start every topology, measure
    /// in interleaved rounds, print the tables and write bench/results/<name>.json.
    Run(RunArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// One short round (about a second per measurement); no targets enforced.
    #[arg(long)]
    quick: bool,
    /// Rounds (topologies interleaved within each). [default: 3; 1 with --quick]
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per measurement. [default: 5; 1 with --quick]
    #[arg(long)]
    seconds: Option<f64>,
    /// Leave Envoy out.
    #[arg(long)]
    no_envoy: bool,
    /// Leave nginx out.
    #[arg(long)]
    no_nginx: bool,
    /// Leave HAProxy out.
    #[arg(long)]
    no_haproxy: bool,
    /// Never run bench/setup.sh; skip a missing peer instead.
    #[arg(long)]
    no_setup: bool,
    /// Worker threads/processes per proxy (isthmus --workers, Envoy --concurrency, nginx worker_processes, HAProxy nbthread).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Results file name (bench/results/<name>.json). [default: a UTC timestamp]
    #[arg(long)]
    name: Option<String>,
    /// Run one part only. `control-plane`: the intention change (isthmus
    /// topology only, no load rounds) and the peering figures. `memory`: the
    /// isthmus sidecars' RSS idle, with 1,000 idle connections, after one
    /// short load round (--seconds per scenario, default 1) and with 1,000
    /// connections again. `profile`: the isthmus topology under a small
    /// fixed load in phases (idle, HTTP/1.1 /1k, /64k; --seconds each,
    /// default 20), bracketed by callgrind_control zero/dump on both hops.
    /// `soak`: steady mesh traffic through the sidecars plus peering churn
    /// and intention flips for --soak-duration, reporting each process's
    /// RSS and fd growth and the errors. `scale`: one durable agent as the
    /// catalog grows to 10k, 50k and 100k instances (--quick: 1k, 2k):
    /// registrations/s, health/service latency, RSS per instance, one write
    /// while 1,000 blocking queries wait on other services, restart time.
    /// `failover`: two peered clusters; per round (--rounds, default 10,
    /// --quick 3) the time from the local backend turning critical to the
    /// first request answered by the peer's, and back (p50/max).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// How long `--only soak` runs: seconds, or with a unit (90s, 5m, 1h). [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = soak::parse_duration)]
    soak_duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    ControlPlane,
    Memory,
    Profile,
    Scale,
    Soak,
    Failover,
}

fn main() -> Result<()> {
    let Cli {
        command: Command::Run(args),
    } = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let code = runtime.block_on(async {
        tokio::select! {
            result = run::run(args) => result,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: stopping every process the bench started");
                Ok(130)
            }
        }
    })?;
    // Dropping the runtime drops the topologies: their processes are killed.
    drop(runtime);
    std::process::exit(code);
}

mod run;

/// bench/ (the package's own directory).
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the release binaries (where this binary lives).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    Ok(exe.parent().context("exe has no parent")?.to_path_buf())
}

pub fn sleep(seconds: f64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_secs_f64(seconds))
}
