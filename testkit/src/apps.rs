//! Toy workloads to put behind a proxy: an HTTP app (HTTP/1.1 and h2c)
//! that describes each request it gets, with a slow endpoint the test
//! releases, a streaming echo and a WebSocket-style upgrade; and a TCP echo
//! server. Each stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex, Semaphore};

use crate::WAIT;

type AppBody = BoxBody<Bytes, hyper::Error>;

fn full(body: impl Into<Bytes>) -> AppBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

struct Context {
    name: String,
    slow_arrivals: mpsc::UnboundedSender<()>,
    release: Semaphore,
}

/// An HTTP application that answers every request with JSON describing
/// it: its name (`app`), `method`, `path`, `uri`, `version`, `headers`, and
/// the `x-forwarded-client-cert` header (`xfcc`, empty when absent); except
/// `/slow` (answers once the test releases it), `/stream` (echoes the body)
/// and `/ws` with an upgrade (echoes the upgraded connection).
pub struct HttpApp {
    pub addr: SocketAddr,
    context: Arc<Context>,
    slow_arrivals: Mutex<mpsc::UnboundedReceiver<()>>,
    /// `None` once detached.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for HttpApp {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl HttpApp {
    pub async fn start(name: &str) -> HttpApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let context = Arc::new(Context {
            name: name.into(),
            slow_arrivals: tx,
            release: Semaphore::new(0),
        });
        let serving = context.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let context = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(context.clone(), request));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HttpApp {
            addr,
            context,
            slow_arrivals: Mutex::new(rx),
            task: Some(task),
        }
    }

    /// Keeps the app running for the rest of the test process and returns
    /// its address.
    pub fn detach(mut self) -> SocketAddr {
        self.task = None;
        self.addr
    }

    /// Waits until a request to `/slow` has arrived.
    pub async fn slow_arrived(&self) {
        let mut rx = self.slow_arrivals.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no slow request arrived")
            .unwrap();
    }

    /// Lets one `/slow` request answer.
    pub fn release_slow(&self) {
        self.context.release.add_permits(1);
    }
}

async fn handle(
    context: Arc<Context>,
    mut request: Request<Incoming>,
) -> Result<Response<AppBody>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/ws" && request.headers().contains_key(http::header::UPGRADE) {
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut read, &mut write).await;
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(""))
            .unwrap();
        return Ok(response);
    }
    if path == "/slow" {
        let _ = context.slow_arrivals.send(());
        context.release.acquire().await.unwrap().forget();
        return Ok(Response::new(full("slow done")));
    }
    if path == "/stream" {
        // Echo the request body as it arrives.
        return Ok(Response::new(request.into_body().boxed()));
    }
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                json!(String::from_utf8_lossy(value.as_bytes())),
            )
        })
        .collect();
    let xfcc = request
        .headers()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let description = json!({
        "app": context.name,
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "uri": request.uri().to_string(),
        "version": format!("{:?}", request.version()),
        "headers": headers,
        "xfcc": xfcc,
    });
    let mut response = Response::new(full(description.to_string()));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
        .headers_mut()
        .insert("x-app", context.name.parse().unwrap());
    Ok(response)
}

/// A TCP server that echoes what it receives.
pub struct TcpEcho {
    pub addr: SocketAddr,
    /// `None` once detached.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl TcpEcho {
    pub async fn start() -> TcpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let (mut read, mut write) = tcp.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        TcpEcho {
            addr,
            task: Some(task),
        }
    }

    /// Keeps the server running for the rest of the test process and
    /// returns its address.
    pub fn detach(mut self) -> SocketAddr {
        self.task = None;
        self.addr
    }
}
