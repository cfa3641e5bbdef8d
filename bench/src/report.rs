//! Aggregation over rounds (median, min, max), the targets, the printed
//! tables and the JSON written to bench/results/<name>.json.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::peering::Peering;
use crate::scenario::Sample;
use crate::topology::Kind;

/// Everything measured for one topology.
#[derive(Debug, Clone, Serialize)]
pub struct TopoResult {
    pub topology: Kind,
    pub version: String,
    /// Why the topology did not run, if it did not.
    pub skipped: Option<String>,
    /// Scenario id → one sample per round.
    pub samples: BTreeMap<String, Vec<Sample>>,
    /// VmRSS per proxy (outbound hop, inbound hop) before any load, KiB.
    pub rss_idle_kib: Vec<u64>,
    /// VmHWM per proxy after all rounds, KiB.
    pub rss_peak_kib: Vec<u64>,
    /// VmRSS of the outbound hop with 1,000 idle keep-alive connections, KiB.
    pub rss_1000_conns_kib: Option<u64>,
    pub idle_conn_errors: u64,
}

impl TopoResult {
    pub fn new(topology: Kind) -> TopoResult {
        TopoResult {
            topology,
            version: String::new(),
            skipped: None,
            samples: BTreeMap::new(),
            rss_idle_kib: Vec::new(),
            rss_peak_kib: Vec::new(),
            rss_1000_conns_kib: None,
            idle_conn_errors: 0,
        }
    }

    pub fn errors(&self) -> u64 {
        self.samples
            .values()
            .flatten()
            .map(|s| s.errors)
            .sum::<u64>()
            + self.idle_conn_errors
    }

    pub fn stat(&self, scenario: &str, f: impl Fn(&Sample) -> Option<f64>) -> Option<Stat> {
        Stat::of(self.samples.get(scenario)?.iter().filter_map(f).collect())
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(mut values: Vec<f64>) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Stat {
            median,
            min: values[0],
            max: values[n - 1],
        })
    }
}

/// One target, met or not, with the ratio it was judged by.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub want: String,
    pub ratio_or_value: Option<f64>,
    /// None: could not be judged (a peer did not run, or not measured).
    pub met: Option<bool>,
    pub note: String,
}

pub const LAT_SCENARIO: &str = "open-http1-1000rps-1k";
pub const TPUT_SCENARIO: &str = "closed-http1-c32-1k";
/// The open-loop scenarios whose added latency is judged.
const LATENCY_SCENARIOS: [(&str, &str); 4] = [
    ("open-http1-1000rps-1k", "@1,000 req/s HTTP/1.1"),
    ("open-http1-5000rps-1k", "@5,000 req/s HTTP/1.1"),
    ("open-h2c-1000rps-1k", "@1,000 req/s h2c"),
    ("open-h2c-5000rps-1k", "@5,000 req/s h2c"),
];
const STREAM_SCENARIO: &str = "closed-http1-c32-64k";
const CHURN_SCENARIO: &str = "churn-tls-c8-1k";
/// The peers the "best of" targets compare with.
const PEERS: [Kind; 3] = [Kind::Envoy, Kind::Nginx, Kind::Haproxy];

fn find(results: &[TopoResult], kind: Kind) -> Option<&TopoResult> {
    results
        .iter()
        .find(|r| r.topology == kind && r.skipped.is_none())
}

/// Latency added over direct in `scenario` (median of rounds), in µs.
pub fn added(
    results: &[TopoResult],
    kind: Kind,
    scenario: &str,
    pick: fn(&Sample) -> u64,
) -> Option<f64> {
    let f = |s: &Sample| Some(pick(s) as f64);
    let topo = find(results, kind)?.stat(scenario, f)?.median;
    let direct = find(results, Kind::Direct)?.stat(scenario, f)?.median;
    Some(topo - direct)
}

/// The best (lowest, or highest when `!lower_is_better`) figure among
/// `peers` that ran, with its label.
fn best_of(
    peers: &[Kind],
    figure: impl Fn(Kind) -> Option<f64>,
    lower_is_better: bool,
) -> Option<(f64, &'static str)> {
    peers
        .iter()
        .filter_map(|k| Some((figure(*k)?, k.label())))
        .reduce(|a, b| {
            let b_better = if lower_is_better {
                b.0 < a.0
            } else {
                b.0 > a.0
            };
            if b_better {
                b
            } else {
                a
            }
        })
}

fn ratio_target(
    name: &str,
    want: &str,
    limit: f64,
    ours: Option<f64>,
    theirs: Option<(f64, &str)>,
    at_most: bool,
) -> Target {
    let (ratio, met, note) = match (ours, theirs) {
        (Some(o), Some((t, peer))) if t > 0.0 => {
            let r = o / t;
            let met = if at_most { r <= limit } else { r >= limit };
            (
                Some(r),
                Some(met),
                format!("isthmus {o:.1} vs {peer} {t:.1}"),
            )
        }
        (Some(o), Some((t, peer))) => (
            None,
            None,
            format!("isthmus {o:.1} vs {peer} {t:.1}: peer's figure not positive, no ratio"),
        ),
        _ => (None, None, "not judged: a topology did not run".into()),
    };
    Target {
        name: name.into(),
        want: want.into(),
        ratio_or_value: ratio,
        met,
        note,
    }
}

/// The proxy targets of issue 16 (see bench/README.md, Targets).
pub fn targets(results: &[TopoResult]) -> Vec<Target> {
    let mut out = Vec::new();
    for (scenario, at) in LATENCY_SCENARIOS {
        for (q, pick) in [
            ("p50", (|s: &Sample| s.p50_us) as fn(&Sample) -> u64),
            ("p99", |s: &Sample| s.p99_us),
        ] {
            let ours = added(results, Kind::Isthmus, scenario, pick);
            let best = best_of(
                &[Kind::Nginx, Kind::Haproxy],
                |k| added(results, k, scenario, pick),
                true,
            );
            out.push(ratio_target(
                &format!("added latency {q} {at} vs the best of nginx and HAProxy"),
                "<= 1.0x",
                1.0,
                ours,
                best,
                true,
            ));
            let envoy = added(results, Kind::Envoy, scenario, pick);
            out.push(ratio_target(
                &format!("added latency {q} {at} vs Envoy"),
                "<= 0.5x",
                0.5,
                ours,
                envoy.map(|v| (v, Kind::Envoy.label())),
                true,
            ));
        }
    }
    let median = |k: Kind, scenario: &str, f: fn(&Sample) -> Option<f64>| {
        find(results, k)?.stat(scenario, f).map(|s| s.median)
    };
    let cpu = |k| median(k, LAT_SCENARIO, |s| s.cpu_ms_per_1k);
    let rps = |k, scenario| median(k, scenario, |s| Some(s.rps));
    let with_label = |k: Kind, v: Option<f64>| v.map(|v| (v, k.label()));
    out.push(ratio_target(
        "proxy CPU per 1,000 requests @1,000 req/s (both hops, HTTP/1.1) vs nginx",
        "<= 1.0x",
        1.0,
        cpu(Kind::Isthmus),
        with_label(Kind::Nginx, cpu(Kind::Nginx)),
        true,
    ));
    for (peer, limit) in [(Kind::Envoy, 1.2), (Kind::Nginx, 1.0)] {
        out.push(ratio_target(
            &format!(
                "streamed 64 KiB responses (closed loop c32) vs {}",
                peer.label()
            ),
            &format!(">= {limit:.1}x"),
            limit,
            rps(Kind::Isthmus, STREAM_SCENARIO),
            with_label(peer, rps(peer, STREAM_SCENARIO)),
            false,
        ));
    }
    out.push(ratio_target(
        "max throughput per core (1 worker per proxy, closed loop c32 /1k) vs nginx",
        ">= 1.0x",
        1.0,
        rps(Kind::Isthmus, TPUT_SCENARIO),
        with_label(Kind::Nginx, rps(Kind::Nginx, TPUT_SCENARIO)),
        false,
    ));
    out.push(ratio_target(
        "connection churn (new mTLS connection per request) vs the best peer",
        ">= 1.3x",
        1.3,
        rps(Kind::Isthmus, CHURN_SCENARIO),
        best_of(&PEERS, |k| rps(k, CHURN_SCENARIO), false),
        false,
    ));
    let isthmus = find(results, Kind::Isthmus);
    let idle = isthmus.and_then(|r| r.rss_idle_kib.iter().max().copied());
    out.push(mib_target("sidecar RSS idle (larger hop)", 8.0, idle));
    let conns = isthmus.and_then(|r| r.rss_1000_conns_kib);
    out.push(mib_target(
        "sidecar RSS with 1,000 idle keep-alive connections (outbound hop)",
        20.0,
        conns,
    ));
    let peak = isthmus.and_then(|r| r.rss_peak_kib.iter().max().copied());
    let peak_mib = peak.map(|k| k as f64 / 1024.0);
    out.push(Target {
        name: "sidecar RSS peak under load (larger hop, VmHWM)".into(),
        want: "reported".into(),
        ratio_or_value: peak_mib,
        met: peak_mib.map(|_| true),
        note: peak_mib.map_or("not measured".into(), |m| format!("{m:.1} MiB")),
    });
    out
}

/// The peering targets; judged only in full runs (a quick run replicates
/// fewer instances and measures fewer changes).
pub fn peering_targets(peering: Option<&Peering>, quick: bool) -> Vec<Target> {
    let judge = |met: bool| if quick { None } else { Some(met) };
    let quick_note = if quick {
        " (quick run: not judged)"
    } else {
        ""
    };
    let change = peering.map(|p| &p.export_change);
    let replication = peering.map(|p| &p.replication);
    vec![
        Target {
            name: "change propagation to a peer p99 (health change → peer's ?peer= blocking query)"
                .into(),
            want: "< 100 ms".into(),
            ratio_or_value: change.map(|c| c.p99_ms),
            met: change.and_then(|c| judge(c.p99_ms < 100.0)),
            note: change.map_or("not measured".into(), |c| {
                format!(
                    "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes{quick_note}",
                    c.p50_ms, c.p99_ms, c.max_ms, c.changes
                )
            }),
        },
        Target {
            name: "10,000 exported instances replicated to a peer".into(),
            want: "< 1000 ms".into(),
            ratio_or_value: replication.map(|r| r.ms),
            met: replication.and_then(|r| judge(r.instances >= 10_000 && r.ms < 1000.0)),
            note: replication.map_or("not measured".into(), |r| {
                format!("{} instances in {:.1} ms{quick_note}", r.instances, r.ms)
            }),
        },
    ]
}

fn mib_target(name: &str, limit: f64, kib: Option<u64>) -> Target {
    let mib = kib.map(|k| k as f64 / 1024.0);
    Target {
        name: name.into(),
        want: format!("<= {limit} MiB"),
        ratio_or_value: mib,
        met: mib.map(|m| m <= limit),
        note: mib.map_or("not measured".into(), |m| format!("{m:.1} MiB")),
    }
}

fn us(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.1}ms", v / 1000.0)
    } else {
        format!("{v:.0}µs")
    }
}

fn cell(stat: Option<Stat>, fmt: fn(f64) -> String) -> String {
    match stat {
        Some(s) if s.min != s.max => format!("{} [{}–{}]", fmt(s.median), fmt(s.min), fmt(s.max)),
        Some(s) => fmt(s.median),
        None => "-".into(),
    }
}

/// The tables, as Markdown (printed and pasted into the README).
pub fn tables(results: &[TopoResult], scenarios: &[String]) -> String {
    let mut out = String::new();
    let rps = |v: f64| format!("{v:.0}");
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    for scenario in scenarios.iter().filter(|s| s.starts_with("open-")) {
        let _ = writeln!(
            out,
            "\n#### Latency, {scenario} (median [min–max] of rounds)\n"
        );
        let _ = writeln!(
            out,
            "| topology | p50 | p90 | p99 | p99.9 | added p50 | added p99 | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        let direct = results.iter().find(|r| r.topology == Kind::Direct);
        for r in results {
            if let Some(why) = &r.skipped {
                let _ = writeln!(out, "| {} | skipped: {why} |||||||", r.topology.label());
                continue;
            }
            let q = |f: fn(&Sample) -> u64| r.stat(scenario, move |s| Some(f(s) as f64));
            let add = |f: fn(&Sample) -> u64| {
                let d = direct?.stat(scenario, move |s| Some(f(s) as f64))?.median;
                Some(us(q(f)?.median - d))
            };
            let errors: u64 = r
                .samples
                .get(scenario)
                .map_or(0, |v| v.iter().map(|s| s.errors).sum());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {errors} |",
                r.topology.label(),
                cell(q(|s| s.p50_us), us),
                cell(q(|s| s.p90_us), us),
                cell(q(|s| s.p99_us), us),
                cell(q(|s| s.p999_us), us),
                add(|s| s.p50_us).unwrap_or("-".into()),
                add(|s| s.p99_us).unwrap_or("-".into()),
            );
        }
    }
    let closed: Vec<&String> = scenarios
        .iter()
        .filter(|s| !s.starts_with("open-"))
        .collect();
    let _ = writeln!(out, "\n#### Throughput, req/s (closed loop; churn = new TLS connection per request to the inbound hop)\n");
    let _ = write!(out, "| topology |");
    for s in &closed {
        let _ = write!(out, " {s} |");
    }
    let _ = writeln!(out, " errors |\n|---|{}---|", "---|".repeat(closed.len()));
    for r in results.iter().filter(|r| r.skipped.is_none()) {
        let _ = write!(out, "| {} |", r.topology.label());
        for s in &closed {
            let _ = write!(out, " {} |", cell(r.stat(s, |x| Some(x.rps)), rps));
        }
        let errors: u64 = closed
            .iter()
            .filter_map(|s| r.samples.get(*s))
            .flatten()
            .map(|x| x.errors)
            .sum();
        let _ = writeln!(out, " {errors} |");
    }
    let _ = writeln!(
        out,
        "\n#### Proxy resources (both hops together for CPU; RSS per hop: outbound / inbound)\n"
    );
    let _ = writeln!(out, "| topology | CPU ms per 1k req @1k req/s | CPU ms per 1k req, closed c32 | RSS idle MiB | RSS peak (VmHWM) MiB | RSS outbound, 1,000 idle conns, MiB | total errors |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let ms = |v: f64| format!("{v:.1}");
    for r in results
        .iter()
        .filter(|r| r.skipped.is_none() && r.topology != Kind::Direct)
    {
        let hops = |v: &[u64]| v.iter().map(|k| mib(*k)).collect::<Vec<_>>().join(" / ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.topology.label(),
            cell(r.stat(LAT_SCENARIO, |s| s.cpu_ms_per_1k), ms),
            cell(r.stat(TPUT_SCENARIO, |s| s.cpu_ms_per_1k), ms),
            hops(&r.rss_idle_kib),
            hops(&r.rss_peak_kib),
            r.rss_1000_conns_kib.map_or("not measured".into(), mib),
            r.errors(),
        );
    }
    out
}

pub fn targets_table(targets: &[Target]) -> String {
    let mut out = String::from("\n#### Targets\n\n| target | want | ratio / value | met | detail |\n|---|---|---|---|---|\n");
    for t in targets {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not judged",
        };
        let value = t.ratio_or_value.map_or("-".into(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {value} | {met} | {} |",
            t.name, t.want, t.note
        );
    }
    out
}
