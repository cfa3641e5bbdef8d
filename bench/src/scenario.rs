//! The measurements of one round, and running one of them against one
//! topology with the proxies' CPU time sampled around it.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::backend;
use crate::churn::TlsTarget;
use crate::load::{self, Outcome, Proto};
use crate::measure;
use crate::topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Scenario {
    /// Fixed rate (req/s), 1 KiB answers; latency from intended start.
    Open { proto: Proto, rate: u64 },
    /// Fixed concurrency, back to back, for maximum throughput.
    Closed {
        proto: Proto,
        large: bool,
        concurrency: usize,
    },
    /// A new connection per request to the inbound hop (TLS + client cert).
    Churn { concurrency: usize },
}

pub const CONCURRENCY: usize = 32;
pub const CHURN_CONCURRENCY: usize = 8;

pub fn all() -> Vec<Scenario> {
    let mut out = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        for rate in [1000, 5000] {
            out.push(Scenario::Open { proto, rate });
        }
    }
    for (proto, large) in [(Proto::H1, false), (Proto::H2, false), (Proto::H1, true)] {
        out.push(Scenario::Closed {
            proto,
            large,
            concurrency: CONCURRENCY,
        });
    }
    out.push(Scenario::Churn {
        concurrency: CHURN_CONCURRENCY,
    });
    out
}

impl Scenario {
    pub fn id(&self) -> String {
        match self {
            Scenario::Open { proto, rate } => format!("open-{}-{rate}rps-1k", proto.label()),
            Scenario::Closed {
                proto,
                large,
                concurrency,
            } => format!(
                "closed-{}-c{concurrency}-{}",
                proto.label(),
                if *large { "64k" } else { "1k" }
            ),
            Scenario::Churn { concurrency } => format!("churn-tls-c{concurrency}-1k"),
        }
    }
}

/// One measurement's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// CPU seconds (user+system) of the topology's proxy processes.
    pub proxy_cpu_s: f64,
    /// Proxy CPU milliseconds per 1,000 successful requests.
    pub cpu_ms_per_1k: Option<f64>,
}

fn sample(outcome: Outcome, cpu: f64) -> Sample {
    let h = &outcome.hist;
    let seconds = outcome.elapsed.as_secs_f64();
    Sample {
        ok: outcome.ok,
        errors: outcome.errors,
        first_error: outcome.first_error,
        seconds,
        rps: outcome.ok as f64 / seconds.max(1e-9),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        proxy_cpu_s: cpu,
        cpu_ms_per_1k: (outcome.ok > 0).then(|| cpu * 1000.0 / outcome.ok as f64 * 1000.0),
    }
}

/// Runs `scenario` against `topology` for `duration`.
pub async fn run(scenario: Scenario, topology: &Topology, duration: Duration) -> Result<Sample> {
    let pids = topology.pids();
    let before = measure::cpu_of(&pids);
    let outcome = match scenario {
        Scenario::Open { proto, rate } => {
            let addr = addr(topology, proto);
            load::open_loop(addr, proto, "/1k", backend::SMALL, rate, duration).await?
        }
        Scenario::Closed {
            proto,
            large,
            concurrency,
        } => {
            let (path, len) = if large {
                ("/64k", backend::LARGE_CHUNK * backend::LARGE_CHUNKS)
            } else {
                ("/1k", backend::SMALL)
            };
            let addr = addr(topology, proto);
            load::closed_loop(addr, proto, path, len, concurrency, duration).await?
        }
        Scenario::Churn { concurrency } => {
            let tls = match &topology.churn_tls {
                Some(t) => Some(TlsTarget::new(&t.ca, &t.cert, &t.key, &t.name)?),
                None => None,
            };
            load::churn(&topology.churn_addr, tls, concurrency, duration).await?
        }
    };
    let after = measure::cpu_of(&pids);
    Ok(sample(outcome, after.seconds - before.seconds))
}

fn addr(topology: &Topology, proto: Proto) -> &str {
    match proto {
        Proto::H1 => &topology.h1_addr,
        Proto::H2 => &topology.h2_addr,
    }
}
