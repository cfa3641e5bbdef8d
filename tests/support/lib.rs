//! Test harness: start agents in-process or as real `isthmus` processes on
//! ephemeral loopback ports, run the CLI, and wait for conditions with a
//! bound instead of sleeping. The generic parts (child processes, bounded
//! polling, toy workloads, request bodies) come from `isthmus-testkit`.
#![forbid(unsafe_code)]

pub mod apps;
pub mod cluster;
pub mod demo;
pub mod etcd;
pub mod peer_client;
pub mod process;
pub mod prometheus;
pub mod proxy_process;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use isthmus_control::agent::{self, AgentConfig, RunningAgent};
use isthmus_runtime::client::Client;

/// Every wait in the tests is bounded by this unless it says otherwise:
/// as long as a real process gets to start.
pub const WAIT: Duration = isthmus_testkit::process::PROCESS_WAIT;

/// An agent running inside the test process.
pub struct TestAgent {
    pub agent: RunningAgent,
    pub client: Client,
}

impl TestAgent {
    /// A dev agent (in memory) on an ephemeral port.
    pub async fn start() -> TestAgent {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(customize: impl FnOnce(&mut AgentConfig)) -> TestAgent {
        let mut config = AgentConfig::dev();
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.node_name = "test-node".into();
        // Consul's 8600 would collide between the tests' agents.
        config.dns.port = Some(0);
        customize(&mut config);
        let agent = agent::start(config).await.expect("agent starts");
        let client = Client::new(&agent.http_addr().to_string()).unwrap();
        TestAgent { agent, client }
    }

    pub fn addr(&self) -> SocketAddr {
        self.agent.http_addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

/// Polls `condition` until it returns `Some`, failing the test after `WAIT`.
pub async fn eventually<T, F, Fut>(what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    isthmus_testkit::wait::eventually_within(WAIT, what, condition).await
}

pub use isthmus_testkit::process::bin_dir;

/// The built `isthmus` binary.
pub fn isthmus_bin() -> PathBuf {
    isthmus_testkit::process::binary("isthmus")
}

/// A tiny HTTP server answering 200 on every path, for HTTP health checks.
pub struct TestHttpServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestHttpServer {
    pub async fn start() -> TestHttpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new().fallback(|| async { "ok" });
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestHttpServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits until its port is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// JSON helpers over the real HTTP client.
pub mod api {
    use bytes::Bytes;
    use http::Method;
    use isthmus_runtime::client::{ApiResponse, Client};
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A plain HTTP/1.1 request with a JSON body and no Content-Type, as many
    /// client libraries send it. Returns the status and the body text.
    pub async fn raw_json(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        body: &Value,
    ) -> (u16, String) {
        let answer = raw(addr, method, path, &[], Some(body)).await;
        (answer.status, answer.body)
    }

    /// What a raw exchange answered: the status, the head as sent, the body.
    pub struct RawAnswer {
        pub status: u16,
        pub head: String,
        pub body: String,
    }

    impl RawAnswer {
        pub fn json(&self) -> Value {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
        }

        /// Whether a header `name: value` was sent (names in any case).
        pub fn has_header(&self, name: &str, value: &str) -> bool {
            self.head.lines().skip(1).any(|line| {
                line.split_once(':')
                    .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
            })
        }
    }

    /// One HTTP/1.1 exchange with extra header lines (such as
    /// `X-Consul-Token: ...`), bounded by `WAIT`.
    pub async fn raw(
        addr: std::net::SocketAddr,
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<&Value>,
    ) -> RawAnswer {
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            answer
        };
        let answer = tokio::time::timeout(crate::WAIT, exchange)
            .await
            .expect("the agent answers");
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("a complete response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        RawAnswer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    pub async fn send(
        client: &Client,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> ApiResponse {
        let body = body.map(|b| Bytes::from(serde_json::to_vec(&b).unwrap()));
        client
            .send(method, path, body)
            .await
            .expect("agent reachable")
    }

    /// GET expecting 200; returns the JSON and X-Consul-Index.
    pub async fn get(client: &Client, path: &str) -> (Value, u64) {
        let response = send(client, Method::GET, path, None).await;
        assert_eq!(response.status, 200, "GET {path}: {}", text(&response));
        let index = response
            .index
            .unwrap_or_else(|| panic!("GET {path} has no X-Consul-Index"));
        (serde_json::from_slice(&response.body).unwrap(), index)
    }

    /// PUT expecting 200.
    pub async fn put(client: &Client, path: &str, body: Value) -> ApiResponse {
        let response = send(client, Method::PUT, path, Some(body)).await;
        assert_eq!(response.status, 200, "PUT {path}: {}", text(&response));
        response
    }

    pub fn text(response: &ApiResponse) -> String {
        String::from_utf8_lossy(&response.body).into_owned()
    }
}
