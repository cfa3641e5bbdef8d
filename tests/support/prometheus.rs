//! A real Prometheus (Debian's `/usr/bin/prometheus`) for the tests that
//! check what the mesh exports is usable by it: it scrapes the given jobs
//! every second from an ephemeral loopback port, keeps its data in a
//! directory of its own, and is killed when dropped.
//!
//! The scrape configuration is written as JSON, which is YAML too, so
//! target addresses and paths never need YAML quoting.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use http::Method;
use isthmus_runtime::client::{encode, Client};
use serde_json::{json, Value};

/// Where Debian installs it (`apt-get install prometheus`).
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// How often every job is scraped: short, so rates show within seconds.
pub const SCRAPE_INTERVAL: &str = "1s";

/// One scrape job: its targets (`host:port`), the path, and optionally a
/// bearer token (written to a file Prometheus reads, as a user would).
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    pub name: String,
    pub targets: Vec<String>,
    pub metrics_path: String,
    pub bearer_token: Option<String>,
}

impl ScrapeJob {
    /// A job scraping `/metrics` on each of `targets`.
    pub fn new<T: Into<String>>(name: &str, targets: impl IntoIterator<Item = T>) -> ScrapeJob {
        ScrapeJob {
            name: name.to_owned(),
            targets: targets
                .into_iter()
                .map(|t| strip_scheme(&t.into()).to_owned())
                .collect(),
            metrics_path: "/metrics".to_owned(),
            bearer_token: None,
        }
    }

    /// Scrapes `path` instead of `/metrics`.
    pub fn path(mut self, path: &str) -> ScrapeJob {
        self.metrics_path = path.to_owned();
        self
    }

    /// Sends `Authorization: Bearer <token>` with every scrape.
    pub fn bearer_token(mut self, token: &str) -> ScrapeJob {
        self.bearer_token = Some(token.to_owned());
        self
    }
}

fn strip_scheme(target: &str) -> &str {
    target
        .strip_prefix("http://")
        .unwrap_or(target)
        .trim_end_matches('/')
}

/// A running Prometheus; killed (and its data removed) when dropped.
pub struct PrometheusProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    client: Client,
    dir: tempfile::TempDir,
    log: PathBuf,
}

/// A port nobody listens on right now; Prometheus cannot report a port it
/// picked itself, so a start that loses the race for it retries.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl PrometheusProcess {
    /// Starts Prometheus scraping `jobs` and waits (bounded) until it is
    /// ready to answer queries.
    pub async fn start(jobs: &[ScrapeJob]) -> PrometheusProcess {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(jobs, free_port()).await {
                Ok(prometheus) => return prometheus,
                Err(e) => last_error = format!("{e:#}"),
            }
        }
        panic!("prometheus did not start: {last_error}");
    }

    async fn try_start(jobs: &[ScrapeJob], port: u16) -> anyhow::Result<PrometheusProcess> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        write_config(dir.path(), &config, jobs)?;
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(PROMETHEUS_BIN)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // For `reconfigure`: POST /-/reload.
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!("starting {PROMETHEUS_BIN} (apt-get install prometheus installs it)")
            })?;
        let url = format!("http://127.0.0.1:{port}");
        let mut prometheus = PrometheusProcess {
            child,
            client: Client::new(&url)?,
            url,
            dir,
            log,
        };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    /// Waits for `/-/ready`, failing early (with its log) if it exits, as
    /// when another process took the port.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited ({status}): {}", self.logs());
            }
            if let Ok(response) = self.client.send(Method::GET, "/-/ready", None).await {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "prometheus not ready within {:?}: {}",
                    crate::WAIT,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What Prometheus logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Replaces the scrape jobs (rewrites the file, then `POST /-/reload`),
    /// for targets that start after Prometheus.
    pub async fn reconfigure(&self, jobs: &[ScrapeJob]) {
        let config = self.dir.path().join("prometheus.yml");
        write_config(self.dir.path(), &config, jobs).expect("write the scrape config");
        let response = self
            .client
            .send(Method::POST, "/-/reload", None)
            .await
            .expect("prometheus reachable");
        assert_eq!(
            response.status,
            200,
            "reload refused: {}",
            String::from_utf8_lossy(&response.body)
        );
    }

    /// An instant query (`/api/v1/query`); returns `data` (`resultType`
    /// and `result`), or the error Prometheus gave (a bad query, say).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let response = self.client.send(Method::GET, &path, None).await?;
        let body: Value = serde_json::from_slice(&response.body).with_context(|| {
            format!(
                "prometheus answered {} with no JSON: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            )
        })?;
        if body["status"] != "success" {
            return Err(anyhow!(
                "query {promql:?} failed ({}): {} {}",
                response.status,
                body["errorType"].as_str().unwrap_or_default(),
                body["error"].as_str().unwrap_or_default()
            ));
        }
        Ok(body["data"].clone())
    }

    /// The samples of an instant vector query (`data.result`), failing the
    /// test on an error.
    pub async fn query_vector(&self, promql: &str) -> Vec<Value> {
        let data = self.query(promql).await.unwrap_or_else(|e| panic!("{e:#}"));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `promql` until `check` holds for its samples (bounded by
    /// [`crate::WAIT`]); returns them.
    pub async fn wait_for_query(
        &self,
        promql: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            let samples = self.query_vector(promql).await;
            if check(&samples) {
                return samples;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{promql} never matched; last: {samples:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (bounded by [`crate::WAIT`]) until at least `n` targets were
    /// scraped successfully (health `up`).
    pub async fn wait_for_targets_up(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + crate::WAIT;
        loop {
            let targets = self.targets().await;
            let up = targets.iter().filter(|t| t["health"] == "up").count();
            if up >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {up} of {n} targets up: {}",
                serde_json::to_string_pretty(&targets).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The active targets as `/api/v1/targets` lists them.
    pub async fn targets(&self) -> Vec<Value> {
        let response = self
            .client
            .send(Method::GET, "/api/v1/targets?state=active", None)
            .await
            .expect("prometheus reachable");
        let body: Value = serde_json::from_slice(&response.body).expect("targets are JSON");
        body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the configuration for `jobs` to `config`, with each bearer token
/// in a file of its own under `dir`.
fn write_config(dir: &Path, config: &Path, jobs: &[ScrapeJob]) -> anyhow::Result<()> {
    let mut scrape_configs = Vec::new();
    for job in jobs {
        let mut entry = json!({
            "job_name": job.name,
            "metrics_path": job.metrics_path,
            "static_configs": [{"targets": job.targets}],
        });
        if let Some(token) = &job.bearer_token {
            let file = dir.join(format!("token-{}", scrape_configs.len()));
            std::fs::write(&file, token)?;
            entry["authorization"] = json!({"type": "Bearer", "credentials_file": file});
        }
        scrape_configs.push(entry);
    }
    let document = json!({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": scrape_configs,
    });
    std::fs::write(config, serde_json::to_vec_pretty(&document)?)?;
    Ok(())
}
