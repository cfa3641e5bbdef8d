//! `isthmus-bench run --only failover`: how long a caller's requests take to
//! reach a peer after the local instances of their upstream turn critical.
//! cluster-02 runs `frontend` and a local `backend` whose service-resolver
//! fails over to cluster-01's exported `backend`; each round fails the local
//! backend's sidecar (a TTL check) and times, with requests sent back to
//! back, from the check update to the first response answered by the peer;
//! then passes it again and times the way back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;

use crate::agent::{self, Agent};
use crate::peering::{self, IMPORTER};
use crate::procs::{self, Proc};
use crate::RunArgs;

/// Longest wait for one switch.
const LIMIT: Duration = Duration::from_secs(60);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP server answering every request with `name`.
async fn named_app(name: &'static str) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            name.as_bytes(),
                        ))))
                    });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A sidecar for `service` in front of `app`; returns it and its listeners'
/// announcement line.
fn sidecar(
    bin_dir: &Path,
    agent: &Agent,
    service: &str,
    app: SocketAddr,
    upstream: Option<&str>,
) -> Result<(Proc, String)> {
    let mut args: Vec<String> = [
        "--service",
        service,
        "--control",
        &agent.url(),
        "--inbound-bind",
        "127.0.0.1:0",
        "--local-app",
        &app.to_string(),
        "--admin-bind",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(upstream) = upstream {
        args.extend(["--upstream".to_owned(), format!("{upstream}:0")]);
    }
    let (proc, line) = procs::spawn(
        &format!("sidecar {service}"),
        &bin_dir.join("isthmus-proxy"),
        &args,
        Some("isthmus-proxy running:"),
    )?;
    Ok((proc, line.unwrap_or_default()))
}

/// Who answered one request through the frontend's upstream listener.
async fn answer(client: &HttpClient, url: &str) -> Result<String> {
    let (body, _) = agent::request(client, http::Method::GET, url.to_owned(), Bytes::new()).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sends requests back to back until one is answered by `who`; returns the
/// time that took and how many requests failed on the way.
async fn until_answered_by(client: &HttpClient, url: &str, who: &str) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let mut failed = 0;
    while start.elapsed() < LIMIT {
        match answer(client, url).await {
            Ok(body) if body == who => return Ok((start.elapsed(), failed)),
            Ok(_) => {}
            Err(_) => failed += 1,
        }
    }
    bail!("no request answered by {who} within {LIMIT:?}")
}

fn summary(samples: &[Duration]) -> serde_json::Value {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let p50 = ms[(ms.len() - 1) / 2];
    let max = ms.last().copied().unwrap_or_default();
    json!({"p50_ms": p50, "max_ms": max, "samples_ms": ms})
}

pub async fn run(args: &RunArgs, bin_dir: &Path, name: &str) -> Result<i32> {
    let rounds = args
        .rounds
        .unwrap_or(if args.quick { 3 } else { 10 })
        .max(1);
    println!("isthmus-bench failover: {rounds} round(s) of local backend critical → answered by the peer, and back");
    let (exporter, importer) = peering::peered(bin_dir)
        .await
        .context("starting and peering cluster-01 and cluster-02")?;

    // cluster-01: backend exported to cluster-02, callable by its frontend.
    let remote_app = named_app("remote").await?;
    let _remote = sidecar(bin_dir, &exporter, "backend", remote_app, None)?;
    exporter
        .put_json(
            "/v1/agent/service/register",
            json!({"Name": "backend", "Port": 1, "Check": {"TTL": "24h", "Status": "passing"}}),
        )
        .await?;
    peering::export(&exporter, &["backend"]).await?;
    exporter
        .put_json(
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": "backend",
                "Sources": [{"Name": "frontend", "Peer": IMPORTER, "Action": "allow"}]}),
        )
        .await?;

    // cluster-02: its own backend, preferred; failover to cluster-01's.
    let local_app = named_app("local").await?;
    let _local = sidecar(bin_dir, &importer, "backend", local_app, None)?;
    importer
        .put_json(
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": "backend",
                "Sources": [{"Name": "frontend", "Action": "allow"}]}),
        )
        .await?;
    importer
        .put_json(
            "/v1/config",
            json!({"Kind": "service-resolver", "Name": "backend",
                "Failover": {"*": {"Targets": [{"Peer": peering::EXPORTER}]}}}),
        )
        .await?;
    importer
        .put_json(
            "/v1/agent/check/register",
            json!({"Name": "switch", "CheckID": "switch", "ServiceID": "backend-sidecar-proxy",
                "TTL": "24h", "Status": "passing"}),
        )
        .await
        .context("adding the switch check to the local backend's sidecar")?;
    let caller_app = named_app("caller").await?;
    let (_frontend, line) = sidecar(bin_dir, &importer, "frontend", caller_app, Some("backend"))?;
    let upstream = procs::field(&line, "upstreams")?;
    let listener = upstream
        .strip_prefix("backend=")
        .context("no backend upstream in the sidecar's announcement")?;
    let url = format!("http://{listener}/");
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    until_answered_by(&client, &url, "local")
        .await
        .context("frontend reaching its local backend")?;

    let (mut over, mut back, mut failed) = (Vec::new(), Vec::new(), 0);
    for round in 1..=rounds {
        importer.put_empty("/v1/agent/check/fail/switch").await?;
        let (took, errors) = until_answered_by(&client, &url, "remote").await?;
        over.push(took);
        importer.put_empty("/v1/agent/check/pass/switch").await?;
        let (took_back, errors_back) = until_answered_by(&client, &url, "local").await?;
        back.push(took_back);
        failed += errors + errors_back;
        println!(
            "round {round}: failover {:.1} ms, back {:.1} ms, {} failed request(s)",
            took.as_secs_f64() * 1e3,
            took_back.as_secs_f64() * 1e3,
            errors + errors_back
        );
    }
    let document = json!({
        "name": name,
        "only": "failover",
        "rounds": rounds,
        "failover": summary(&over),
        "failback": summary(&back),
        "failed_requests": failed,
    });
    println!(
        "failover (local critical → first answer from the peer): p50 {} ms, max {} ms; back: p50 {} ms, max {} ms; failed requests: {failed}",
        document["failover"]["p50_ms"],
        document["failover"]["max_ms"],
        document["failback"]["p50_ms"],
        document["failback"]["max_ms"],
    );
    let dir = crate::bench_dir().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}-failover.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)
        .with_context(|| format!("write {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(0)
}
