//! An `isthmus agent --dev` child process and a tiny JSON client for its
//! HTTP API.

use std::path::Path;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::procs::{self, Proc};

pub struct Agent {
    _proc: Proc,
    pub http_addr: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Agent {
    /// `isthmus agent --dev --no-gateway --http-addr 127.0.0.1:0 <extra>`.
    pub async fn start(bin_dir: &Path, extra: &[&str]) -> Result<Agent> {
        let mut args = vec!["--no-gateway"];
        args.extend_from_slice(extra);
        Agent::start_with(bin_dir, &args).await
    }

    /// `isthmus agent --dev` with its in-process mesh gateway, named
    /// `cluster`, ready to peer (1 s peering heartbeat).
    pub async fn start_peer(bin_dir: &Path, cluster: &str) -> Result<Agent> {
        Agent::start_with(
            bin_dir,
            &[
                "--cluster-name",
                cluster,
                "--gateway-bind",
                "127.0.0.1:0",
                "--gateway-admin-bind",
                "127.0.0.1:0",
                "--peering-heartbeat",
                "1s",
                // The replication figure sends 10,000 instances of one
                // service (the default cap is 4,096 per service).
                "--peering-max-service-instances",
                "20000",
            ],
        )
        .await
    }

    /// `isthmus agent --dev --http-addr 127.0.0.1:0 <extra>`.
    async fn start_with(bin_dir: &Path, extra: &[&str]) -> Result<Agent> {
        let mut args: Vec<String> = [
            "agent",
            "--dev",
            "--http-addr",
            "127.0.0.1:0",
            "--dns-port",
            "0",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        let (proc, line) = procs::spawn(
            "isthmus agent",
            &bin_dir.join("isthmus"),
            &args,
            Some("isthmus agent running:"),
        )?;
        let http_addr = procs::field(line.as_deref().unwrap_or_default(), "http")?
            .trim_start_matches("http://")
            .to_owned();
        Ok(Agent {
            _proc: proc,
            http_addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The agent's process ID, for /proc readings.
    pub fn pid(&self) -> u32 {
        self._proc.pid()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    async fn call(&self, method: http::Method, path: &str, body: Bytes) -> Result<Bytes> {
        Ok(self.call_indexed(method, path, body).await?.0)
    }

    /// The body and the `X-Consul-Index` header (0 if absent).
    async fn call_indexed(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<(Bytes, u64)> {
        let url = format!("http://{}{path}", self.http_addr);
        request(&self.client, method, url, body).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        value: serde_json::Value,
    ) -> Result<serde_json::Value> {
        let body = self
            .call(http::Method::POST, path, Bytes::from(value.to_string()))
            .await?;
        serde_json::from_slice(&body).with_context(|| format!("POST {path}: not JSON"))
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.call(http::Method::DELETE, path, Bytes::new())
            .await
            .map(drop)
    }

    pub async fn put_empty(&self, path: &str) -> Result<()> {
        self.call(http::Method::PUT, path, Bytes::new())
            .await
            .map(drop)
    }

    /// GET returning the JSON body and its `X-Consul-Index`.
    pub async fn get_indexed(&self, path: &str) -> Result<(serde_json::Value, u64)> {
        let (body, index) = self
            .call_indexed(http::Method::GET, path, Bytes::new())
            .await?;
        let value =
            serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))?;
        Ok((value, index))
    }

    pub async fn put_json(&self, path: &str, value: serde_json::Value) -> Result<()> {
        self.call(http::Method::PUT, path, Bytes::from(value.to_string()))
            .await
            .map(drop)
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let body = self.call(http::Method::GET, path, Bytes::new()).await?;
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
    }

    pub async fn get_text(&self, path: &str) -> Result<String> {
        let body = self.call(http::Method::GET, path, Bytes::new()).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// One request to an agent: the body and the `X-Consul-Index` header (0 if
/// absent); a status other than 2xx is an error with the body's text.
pub async fn request(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: http::Method,
    url: String,
    body: Bytes,
) -> Result<(Bytes, u64)> {
    let request = http::Request::builder()
        .method(method.clone())
        .uri(&url)
        .body(Full::new(body))?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status();
    let index = response
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "{method} {url}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((body, index))
}
