//! `isthmus demo`: two clusters on loopback, peered and exercised the way
//! the peering guide does it, each step shown as the command a user would
//! type, really run, and checked.
//!
//! cluster-01 runs `backend`; cluster-02 runs `frontend` and `intruder`.
//! Every cluster is an `isthmus agent` and an `isthmus-gateway` process;
//! every workload a toy app (inside this process) behind an `isthmus-proxy`
//! sidecar process. All on free loopback ports.

mod failover;
mod procs;
mod prometheus;
mod script;
mod setup;
mod toy;
mod walkthrough;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use procs::{Launcher, Processes};
use prometheus::Prometheus;
use script::Script;

#[derive(Args)]
pub struct DemoArgs {
    /// After the walkthrough, leave everything running and print where to
    /// look (API, UI, metrics) until Ctrl-C; then stop it all.
    #[arg(long)]
    keep_running: bool,
    /// Where `isthmus-gateway` and `isthmus-proxy` are [default: the
    /// directory of this `isthmus` binary].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Keep the clusters' data, the generated files and the logs in DIR
    /// [default: a temporary directory, removed when the demo succeeds].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// With --keep-running, where the demo's Prometheus listens (it is
    /// started when `prometheus` is on PATH) [default: a free loopback port].
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    prometheus_addr: SocketAddr,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (dir, temporary) = match work_dir(args.dir.clone()) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut processes = Processes::default();
    let (stop_apps, apps_stop) = watch::channel(false);
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        let result = demo(&args, &dir, &mut processes, apps_stop).await;
        let interrupted = result
            .as_ref()
            .is_err_and(|e| e.downcast_ref::<Interrupted>().is_some());
        if args.keep_running && !interrupted {
            // Even after a failure: what is up is worth a look.
            let signal = isthmus_runtime::process::shutdown_signal().await;
            println!("\n{signal}: stopping everything");
        }
        result
    });
    // Sidecars first (they drain requests to the apps), then the apps.
    let killed = processes.stop_all();
    let _ = stop_apps.send(true);
    if !killed.is_empty() {
        eprintln!(
            "had to kill (no exit within the grace period): {}",
            killed.join(", ")
        );
    }
    drop(runtime);
    match outcome {
        Ok(script) => {
            println!(
                "\nDemo complete: all {} steps passed ({} checks) in {:.1}s.",
                script.steps(),
                script.checks(),
                started.elapsed().as_secs_f64()
            );
            if temporary {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                println!("Data and logs: {}", dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nDemo FAILED: {e:#}");
            eprintln!("Logs of every process: {}", dir.join("logs").display());
            ExitCode::FAILURE
        }
    }
}

/// The demo was stopped by a signal before it was done: the user wants it
/// gone, even with `--keep-running`.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {0}")]
struct Interrupted(&'static str);

/// Starts Prometheus when it is installed; otherwise says how to install it.
async fn start_prometheus(
    launcher: &Launcher,
    processes: &mut Processes,
    dir: &Path,
    addr: SocketAddr,
) -> anyhow::Result<Option<Prometheus>> {
    let Some(program) = prometheus::find_on_path() else {
        println!("{}\n", prometheus::INSTALL_HINT);
        return Ok(None);
    };
    let prometheus = prometheus::start(launcher, processes, dir, &program, addr).await?;
    println!(
        "Prometheus: {} (scraping the clusters once they are up)\n",
        prometheus.url
    );
    Ok(Some(prometheus))
}

/// The demo's directory, and whether it is a temporary one.
fn work_dir(chosen: Option<PathBuf>) -> anyhow::Result<(PathBuf, bool)> {
    match chosen {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // A previous run's clusters would come back with their old
            // peerings, and the walkthrough starts from nothing.
            let mut entries =
                std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
            if entries.next().is_some() {
                anyhow::bail!(
                    "{} is not empty: give --dir an empty or new directory",
                    dir.display()
                );
            }
            Ok((dir, false))
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("isthmus-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            Ok((dir.keep(), true))
        }
    }
}

async fn demo(
    args: &DemoArgs,
    dir: &Path,
    processes: &mut Processes,
    apps_stop: watch::Receiver<bool>,
) -> anyhow::Result<Script> {
    let isthmus = std::env::current_exe().context("finding the isthmus binary")?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => procs::default_bin_dir()?,
    };
    let launcher = Launcher::new(bin_dir, dir.join("logs"))?;
    println!(
        "isthmus demo: two clusters peered on loopback.\nFiles and logs: {}\n",
        dir.display()
    );
    let mut script = Script::new(isthmus);
    let walkthrough = async {
        let prometheus = match args.keep_running {
            true => start_prometheus(&launcher, processes, dir, args.prometheus_addr).await?,
            false => None,
        };
        // The agents' UI takes the topology's numbers from it.
        let agent_settings = prometheus
            .as_ref()
            .map(|prometheus| prometheus::ui_config(&prometheus.url))
            .unwrap_or_default();
        let env = setup::start(
            &launcher,
            processes,
            dir,
            &agent_settings,
            apps_stop.clone(),
        )
        .await?;
        let steps = async {
            walkthrough::walk(&mut script, &env, dir).await?;
            failover::failover_step(&mut script, &launcher, processes, &env, dir, apps_stop).await
        };
        let late_sidecars = steps.await.map_err(|e| {
            let mut e = e.context(script.current());
            let exited = processes.exited();
            if !exited.is_empty() {
                e = e.context(format!("exited early: {}", exited.join(", ")));
            }
            e
        })?;
        if args.keep_running {
            let (config, targets) = prometheus::scrape_config(&env, &late_sidecars);
            match &prometheus {
                Some(prometheus) => prometheus.load(&config, targets).await?,
                None => {
                    setup::write_file(dir, "prometheus.yml", &config)?;
                }
            }
            setup::print_exploration(&env, dir, prometheus.as_ref(), &late_sidecars)?;
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::select! {
        // The signal handlers first: from the first line printed on, a
        // SIGTERM stops the demo in order instead of killing it outright.
        biased;
        signal = isthmus_runtime::process::shutdown_signal() => {
            return Err(Interrupted(signal).into());
        }
        result = walkthrough => result?,
    }
    Ok(script)
}
