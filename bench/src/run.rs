//! `isthmus-bench run`: start the topologies, measure them in interleaved
//! rounds, report.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::report::{self, TopoResult};
use crate::topology::{self, Kind, Topology};
use crate::{backend, certs, control, load, measure, peering, peers, scenario, Only, RunArgs};

const IDLE_CONNECTIONS: usize = 1000;

fn timestamp() -> String {
    let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "run".into())
}

pub async fn run(args: RunArgs) -> Result<i32> {
    // `--only control-plane`: the isthmus topology for the intention
    // change, no load rounds, no Envoy, nginx or HAProxy, then the peering figures.
    let control_only = args.only == Some(Only::ControlPlane);
    let rounds = if control_only {
        0
    } else {
        args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1)
    };
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 5.0 });
    let name = args.name.clone().unwrap_or_else(timestamp);
    let bin_dir = crate::bin_dir()?;
    peers::ensure_isthmus(&bin_dir)?;
    if args.only == Some(Only::Memory) {
        return crate::memory::run(&args, &bin_dir, &name).await;
    }
    if args.only == Some(Only::Profile) {
        return crate::profile::run(&args, &bin_dir).await;
    }
    if args.only == Some(Only::Scale) {
        let embedded = crate::scale::run(&args, &bin_dir, &name).await?;
        crate::scale_etcd::run(&args, &bin_dir, &name).await?;
        return Ok(embedded);
    }
    if args.only == Some(Only::Failover) {
        return crate::failover::run(&args, &bin_dir, &name).await;
    }
    if args.only == Some(Only::Soak) {
        return crate::soak::run(&args, &bin_dir, &name).await;
    }
    let machine_start = measure::machine();
    println!("isthmus-bench: {rounds} round(s), {seconds}s per measurement, {} worker(s) per proxy; machine {machine_start}", args.workers);

    let scratch = tempfile::Builder::new()
        .prefix("isthmus-bench-")
        .tempdir()?;
    topology::open_permissions(scratch.path())?;
    let certs = certs::generate(scratch.path())?;
    for path in [
        &certs.ca,
        &certs.server_cert,
        &certs.server_key,
        &certs.client_cert,
        &certs.client_key,
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    let backend = backend::start().await?.to_string();

    let mut results = Vec::new();
    let mut topologies: Vec<Topology> = Vec::new();
    let mut add = |outcome: Result<Topology>, kind: Kind, results: &mut Vec<TopoResult>| {
        let mut result = TopoResult::new(kind);
        match outcome {
            Ok(t) => {
                result.version = t.version.clone();
                topologies.push(t);
            }
            Err(e) => {
                println!("{}: skipped: {e:#}", kind.label());
                let why: String = format!("{e:#}")
                    .replace('\n', " ")
                    .chars()
                    .take(160)
                    .collect();
                result.skipped = Some(why);
            }
        }
        results.push(result);
    };
    add(Ok(topology::direct(&backend)), Kind::Direct, &mut results);
    let isthmus = topology::isthmus(&bin_dir, &backend, args.workers)
        .await
        .context("starting the isthmus topology")?;
    add(Ok(isthmus), Kind::Isthmus, &mut results);
    let envoy = if control_only {
        Err(anyhow::anyhow!("left out (--only control-plane)"))
    } else if args.no_envoy {
        Err(anyhow::anyhow!("left out (--no-envoy)"))
    } else {
        match peers::locate("envoy", args.no_setup) {
            Ok(bin) => topology::envoy(&bin, scratch.path(), &certs, &backend, args.workers).await,
            Err(why) => Err(anyhow::anyhow!(why)),
        }
    };
    add(envoy, Kind::Envoy, &mut results);
    let nginx = if control_only {
        Err(anyhow::anyhow!("left out (--only control-plane)"))
    } else if args.no_nginx {
        Err(anyhow::anyhow!("left out (--no-nginx)"))
    } else {
        match peers::locate("nginx", args.no_setup) {
            Ok(bin) => topology::nginx(&bin, scratch.path(), &certs, &backend, args.workers).await,
            Err(why) => Err(anyhow::anyhow!(why)),
        }
    };
    add(nginx, Kind::Nginx, &mut results);
    let haproxy = if control_only {
        Err(anyhow::anyhow!("left out (--only control-plane)"))
    } else if args.no_haproxy {
        Err(anyhow::anyhow!("left out (--no-haproxy)"))
    } else {
        match peers::locate("haproxy", args.no_setup) {
            Ok(bin) => {
                topology::haproxy(&bin, scratch.path(), &certs, &backend, args.workers).await
            }
            Err(why) => Err(anyhow::anyhow!(why)),
        }
    };
    add(haproxy, Kind::Haproxy, &mut results);
    let index = |kind: Kind| {
        results
            .iter()
            .position(|r| r.topology == kind)
            .expect("every kind has a result")
    };
    let slots: Vec<usize> = topologies.iter().map(|t| index(t.kind)).collect();

    // Idle memory, before any load.
    crate::sleep(1.0).await;
    for (t, slot) in topologies.iter().zip(&slots) {
        results[*slot].rss_idle_kib = t.pids().iter().map(|p| measure::rss_kib(*p)).collect();
    }

    let scenarios = scenario::all();
    let duration = Duration::from_secs_f64(seconds);
    let n = topologies.len();
    for round in 0..rounds {
        println!("round {}/{rounds}", round + 1);
        for t in &topologies {
            let warm = Duration::from_secs_f64(if args.quick { 0.2 } else { 1.0 });
            load::closed_loop(&t.h1_addr, load::Proto::H1, "/1k", backend::SMALL, 8, warm).await?;
        }
        for sc in &scenarios {
            for i in 0..n {
                let at = (i + round) % n;
                let sample = scenario::run(*sc, &topologies[at], duration).await?;
                topologies[at].check_alive()?;
                println!(
                    "  {:<8} {:<26} {:>8.0} req/s  p50 {:>6}µs  p99 {:>7}µs  p99.9 {:>7}µs  cpu {:>6.2}s  errors {}{}",
                    topologies[at].kind.label(),
                    sc.id(),
                    sample.rps,
                    sample.p50_us,
                    sample.p99_us,
                    sample.p999_us,
                    sample.proxy_cpu_s,
                    sample.errors,
                    sample.first_error.as_ref().map_or(String::new(), |e| format!(" (first: {e})")),
                );
                results[slots[at]]
                    .samples
                    .entry(sc.id())
                    .or_default()
                    .push(sample);
                crate::sleep(0.2).await;
            }
        }
    }
    for (t, slot) in topologies.iter().zip(&slots) {
        results[*slot].rss_peak_kib = t.pids().iter().map(|p| measure::hwm_kib(*p)).collect();
    }
    // Memory with 1,000 idle keep-alive connections on the outbound hop.
    for (t, slot) in topologies.iter().zip(&slots) {
        if control_only {
            break;
        }
        let Some(outbound) = t.pids().first().copied() else {
            continue;
        };
        let (streams, errors) = load::open_idle(&t.h1_addr, IDLE_CONNECTIONS).await?;
        crate::sleep(0.5).await;
        let result = &mut results[*slot];
        result.idle_conn_errors = errors;
        result.rss_1000_conns_kib = Some(measure::rss_kib(outbound));
        println!(
            "  {:<8} {} idle connections open ({} failed): outbound RSS {:.1} MiB",
            t.kind.label(),
            streams.len(),
            errors,
            measure::rss_kib(outbound) as f64 / 1024.0
        );
        drop(streams);
    }
    // Control plane: an intention change, enforced by the sidecars.
    let mut intention_change = None;
    if let Some(t) = topologies.iter().find(|t| t.kind == Kind::Isthmus) {
        let figure = control::intention_change(t).await?;
        println!(
            "  isthmus  intention change → enforced: deny {:?} ms, allow again {:?} ms",
            figure.deny_enforced_ms, figure.allow_restored_ms
        );
        intention_change = Some(figure);
    }
    for t in &mut topologies {
        t.check_alive()?;
    }
    // Control plane across a peering: two more agents, peered.
    let (changes, instances) = if args.quick { (20, 500) } else { (200, 10_000) };
    let figure = peering::measure(&bin_dir, changes, instances).await?;
    let c = &figure.export_change;
    println!(
        "  isthmus  export change → peer ({} changes): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} blocking-query answers)",
        c.changes, c.p50_ms, c.p99_ms, c.max_ms, c.answers
    );
    let r = &figure.replication;
    println!(
        "  isthmus  replication of {} exported instances → peer: {:.1} ms ({} blocking-query answers)",
        r.instances, r.ms, r.answers
    );
    let peering = Some(figure);

    let ids: Vec<String> = scenarios.iter().map(|s| s.id()).collect();
    let (tables, mut targets) = if control_only {
        (String::new(), Vec::new())
    } else {
        (report::tables(&results, &ids), report::targets(&results))
    };
    targets.extend(report::peering_targets(peering.as_ref(), args.quick));
    println!("{tables}");
    println!("{}", report::targets_table(&targets));
    let errors: u64 = results
        .iter()
        .filter(|r| r.skipped.is_none())
        .map(TopoResult::errors)
        .sum();
    let document = json!({
        "name": name,
        "quick": args.quick,
        "rounds": rounds,
        "seconds_per_measurement": seconds,
        "workers_per_proxy": args.workers,
        "closed_loop_concurrency": scenario::CONCURRENCY,
        "churn_concurrency": scenario::CHURN_CONCURRENCY,
        "machine_at_start": machine_start,
        "machine_at_end": measure::machine(),
        "scenarios": scenarios,
        "topologies": results,
        "targets": targets,
        "only": args.only.map(|_| "control-plane"),
        "control_plane": { "intention_change": intention_change, "peering": peering },
        "not_measured": Vec::<String>::new(),
        "total_errors": errors,
        "tables_markdown": tables,
    });
    let dir = crate::bench_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("results: {}", path.display());
    drop(topologies);
    if errors > 0 {
        println!("FAILED: {errors} request error(s) in topologies that ran");
        return Ok(1);
    }
    if !args.quick && targets.iter().any(|t| t.met == Some(false)) {
        println!("targets not met (see above): exit 3");
        return Ok(3);
    }
    Ok(0)
}
