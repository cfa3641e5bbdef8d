//! The load generator: a hyper client over HTTP/1.1 keep-alive or h2c.
//! Open loop at a fixed rate records each request's latency from its
//! *intended* start (coordinated-omission correct); closed loop runs a fixed
//! number of back-to-back callers for throughput; churn opens a new (TLS)
//! connection per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::churn::TlsTarget;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Proto {
    #[serde(rename = "http1")]
    H1,
    #[serde(rename = "h2c")]
    H2,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::H1 => "http1",
            Proto::H2 => "h2c",
        }
    }
}

/// What one measurement saw.
pub struct Outcome {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency in microseconds.
    pub hist: Histogram<u64>,
}

struct Recorder {
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    hist: Mutex<Histogram<u64>>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")),
        })
    }

    fn record(&self, result: Result<()>, latency: Duration) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let micros = (latency.as_micros() as u64).clamp(1, 60_000_000);
                self.hist.lock().unwrap().saturating_record(micros);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    fn finish(&self, elapsed: Duration) -> Outcome {
        Outcome {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error.lock().unwrap().clone(),
            elapsed,
            hist: self.hist.lock().unwrap().clone(),
        }
    }
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client(proto: Proto) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder.pool_max_idle_per_host(usize::MAX);
    if proto == Proto::H2 {
        builder.http2_only(true);
    }
    builder.build(connector)
}

/// One GET; the status must be 200 and the whole body must arrive.
async fn one(client: &HttpClient, uri: &http::Uri, expect_len: usize) -> Result<()> {
    let request = http::Request::get(uri.clone()).body(Empty::new())?;
    let attempt = async {
        let response = client.request(request).await.context("request")?;
        let status = response.status();
        let body = response.into_body().collect().await.context("body")?;
        let len = body.to_bytes().len();
        if status != 200 || len != expect_len {
            bail!("status {status}, {len} body bytes (want 200, {expect_len})");
        }
        Ok(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .context("timed out")?
}

/// Fixed-rate load for `duration`; latency counted from intended start.
pub async fn open_loop(
    addr: &str,
    proto: Proto,
    path: &str,
    expect_len: usize,
    rate: u64,
    duration: Duration,
) -> Result<Outcome> {
    let client = client(proto);
    let uri: http::Uri = format!("http://{addr}{path}").parse()?;
    let recorder = Recorder::new();
    let total = (rate as f64 * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    // The dispatcher is an OS thread with precise sleeps: tokio's timer
    // rounds up to whole milliseconds, which would add up to 1 ms to every
    // latency. Late dispatch still counts: latency runs from `intended`.
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now() + Duration::from_millis(5);
    let dispatcher = {
        let recorder = recorder.clone();
        std::thread::spawn(move || {
            let mut tasks = Vec::with_capacity(total as usize);
            for i in 0..total {
                let intended = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let (client, uri, recorder) = (client.clone(), uri.clone(), recorder.clone());
                tasks.push(handle.spawn(async move {
                    let result = one(&client, &uri, expect_len).await;
                    recorder.record(result, intended.elapsed());
                }));
            }
            tasks
        })
    };
    let tasks = tokio::task::spawn_blocking(move || dispatcher.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the open-loop dispatcher panicked"))?;
    for task in tasks {
        task.await?;
    }
    Ok(recorder.finish(start.elapsed()))
}

/// `concurrency` callers back to back for `duration`.
pub async fn closed_loop(
    addr: &str,
    proto: Proto,
    path: &str,
    expect_len: usize,
    concurrency: usize,
    duration: Duration,
) -> Result<Outcome> {
    let client = client(proto);
    let uri: http::Uri = format!("http://{addr}{path}").parse()?;
    let recorder = Recorder::new();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, uri, recorder) = (client.clone(), uri.clone(), recorder.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let began = Instant::now();
                let result = one(&client, &uri, expect_len).await;
                recorder.record(result, began.elapsed());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(recorder.finish(start.elapsed()))
}

/// One request on a brand-new connection (TLS with the client certificate
/// when `tls` is given, plain TCP otherwise), then close.
async fn churn_one(addr: &str, tls: Option<&TlsTarget>) -> Result<()> {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.context("connect")?;
        tcp.set_nodelay(true)?;
        let request = http::Request::get("/1k")
            .header(http::header::HOST, "backend")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())?;
        let response = match tls {
            Some(tls) => {
                let stream = tls.connect(tcp).await?;
                send_h1(TokioIo::new(stream), request).await?
            }
            None => send_h1(TokioIo::new(tcp), request).await?,
        };
        if response != crate::backend::SMALL {
            bail!("{response} body bytes, want {}", crate::backend::SMALL);
        }
        Ok(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, attempt)
        .await
        .context("timed out")?
}

async fn send_h1<T>(io: T, request: http::Request<Empty<Bytes>>) -> Result<usize>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.context("request")?;
    let status = response.status();
    let body = response.into_body().collect().await.context("body")?;
    let _ = driver.await;
    if status != 200 {
        bail!("status {status}");
    }
    Ok(body.to_bytes().len())
}

/// Closed-loop connection churn: each request on its own new connection.
pub async fn churn(
    addr: &str,
    tls: Option<TlsTarget>,
    concurrency: usize,
    duration: Duration,
) -> Result<Outcome> {
    let recorder = Recorder::new();
    let start = Instant::now();
    let deadline = start + duration;
    let tls = tls.map(Arc::new);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (addr, tls, recorder) = (addr.to_owned(), tls.clone(), recorder.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let began = Instant::now();
                let result = churn_one(&addr, tls.as_deref()).await;
                recorder.record(result, began.elapsed());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(recorder.finish(start.elapsed()))
}

/// Opens `count` HTTP/1.1 keep-alive connections to `addr`, one request on
/// each, and keeps them open (idle) until the returned streams drop.
pub async fn open_idle(addr: &str, count: usize) -> Result<(Vec<TcpStream>, u64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut streams = Vec::with_capacity(count);
    let mut errors = 0;
    let request = b"GET /1k HTTP/1.1\r\nhost: backend\r\n\r\n";
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let addr = addr.to_owned();
            set.spawn(async move {
                let attempt = async {
                    let mut tcp = TcpStream::connect(&addr).await?;
                    tcp.write_all(request).await?;
                    // Read until the 1 KiB body has arrived (headers + body).
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let n = tcp.read(&mut buf).await?;
                        if n == 0 {
                            bail!("closed");
                        }
                        seen.extend_from_slice(&buf[..n]);
                        if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            if seen.len() >= at + 4 + crate::backend::SMALL {
                                break;
                            }
                        }
                    }
                    anyhow::Ok(tcp)
                };
                tokio::time::timeout(REQUEST_TIMEOUT, attempt)
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined? {
                Ok(tcp) => streams.push(tcp),
                Err(_) => errors += 1,
            }
        }
    }
    Ok((streams, errors))
}
