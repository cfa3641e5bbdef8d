//! The demo's Prometheus, with `--keep-running`: started from PATH before
//! the clusters (so their agents' UI can be pointed at it), then given the
//! scrape config of every agent, gateway and sidecar the demo runs, and
//! checked to scrape them all. Without Prometheus installed the demo says
//! how to install it and goes on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use http::Method;
use isthmus_runtime::client::Client;

use super::procs::{field, Announces, Launcher, Processes};
use super::script::wait_for;
use super::setup::Environment;

/// The scrape interval: short, so a fresh demo has rates within seconds.
const SCRAPE_INTERVAL: &str = "5s";
/// How long Prometheus may take to be ready, and to scrape every target
/// once after a reload (one scrape interval plus slack).
const READY_LIMIT: Duration = Duration::from_secs(30);

/// How to install Prometheus, printed when it is not on PATH.
pub const INSTALL_HINT: &str = "Prometheus is not installed (no `prometheus` on PATH): \
install it to see live metrics in the UI's topology (Debian/Ubuntu: `sudo apt-get install \
prometheus`; elsewhere: https://prometheus.io/download/), then run the demo again. Going on without it.";

/// A sidecar started after [`setup::start`] (the failover step's), to be
/// scraped like the others.
pub struct LateSidecar {
    pub service: &'static str,
    pub cluster: &'static str,
    /// The admin listener, `http://...`.
    pub admin: String,
}

/// The running Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    config_file: PathBuf,
    client: Client,
}

/// The `prometheus` executable on PATH, if any.
pub fn find_on_path() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Starts `program` on `addr` (port 0: a free one) with an empty scrape
/// config, its data under `dir`, and waits until it is ready.
pub async fn start(
    launcher: &Launcher,
    processes: &mut Processes,
    dir: &Path,
    program: &Path,
    addr: SocketAddr,
) -> anyhow::Result<Prometheus> {
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config_header())
        .with_context(|| format!("writing {}", config_file.display()))?;
    let args = [
        format!("--config.file={}", config_file.display()),
        format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ),
        format!("--web.listen-address={addr}"),
        // POST /-/reload: the targets are known only once the clusters run.
        "--web.enable-lifecycle".to_owned(),
    ];
    // Logged once the listener is bound, with the real port.
    let line = launcher
        .start_program(
            processes,
            "prometheus",
            program,
            &args,
            "msg=\"Listening on\"",
            Announces::OnStderr,
        )
        .await?;
    let url = format!("http://{}", field(&line, "address")?);
    let client = Client::new(&url)?;
    wait_for("Prometheus to be ready", READY_LIMIT, || async {
        match client.send(Method::GET, "/-/ready", None).await {
            Ok(response) if response.status == 200 => Ok(()),
            Ok(response) => Err(format!("/-/ready answered {}", response.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    Ok(Prometheus {
        url,
        config_file,
        client,
    })
}

impl Prometheus {
    /// Replaces the config with `config` and waits until every target in
    /// it has been scraped successfully.
    pub async fn load(&self, config: &str, targets: usize) -> anyhow::Result<()> {
        std::fs::write(&self.config_file, config)
            .with_context(|| format!("writing {}", self.config_file.display()))?;
        let reloaded = self.client.send(Method::POST, "/-/reload", None).await?;
        if reloaded.status != 200 {
            return Err(anyhow!(
                "Prometheus refused the config {}: {}",
                self.config_file.display(),
                String::from_utf8_lossy(&reloaded.body).trim()
            ));
        }
        wait_for(
            &format!("Prometheus to scrape all {targets} targets"),
            READY_LIMIT,
            || async {
                let (answer, _) = self
                    .client
                    .get_json::<serde_json::Value>("/api/v1/targets?state=active")
                    .await
                    .map_err(|e| e.to_string())?;
                let active = answer["data"]["activeTargets"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let down: Vec<String> = active
                    .iter()
                    .filter(|t| t["health"] != "up")
                    .map(|t| format!("{} ({}) {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect();
                if active.len() == targets && down.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {targets} targets active; not up: {}",
                        active.len(),
                        down.join(", ")
                    ))
                }
            },
        )
        .await
    }
}

fn config_header() -> String {
    format!(
        "# Written by `isthmus demo`: every agent, gateway and sidecar it runs.\n\
         global:\n  scrape_interval: {SCRAPE_INTERVAL}\nscrape_configs:\n"
    )
}

/// A scrape config for everything the demo runs, in the shape of
/// `configs/prometheus.yml` (same jobs and labels), and how many targets
/// it has.
pub fn scrape_config(env: &Environment, late: &[LateSidecar]) -> (String, usize) {
    let host = |url: &str| url.trim_start_matches("http://").to_owned();
    let mut targets = 0;
    let mut out = config_header();
    let mut target = |out: &mut String, addr: &str, labels: &str| {
        targets += 1;
        out.push_str(&format!(
            "      - targets: ['{}']\n        labels: {{{labels}}}\n",
            host(addr)
        ));
    };
    out.push_str(&format!(
        "  - job_name: isthmus-agent\n    metrics_path: /v1/agent/metrics\n    params:\n      format: [prometheus]\n    authorization:\n      credentials_file: {}\n    static_configs:\n",
        env.scrape_token_file
    ));
    for cluster in &env.clusters {
        let labels = format!("cluster: {}, component: agent", cluster.target.name);
        target(&mut out, &cluster.target.api, &labels);
    }
    out.push_str("  - job_name: isthmus-gateway\n    static_configs:\n");
    for cluster in &env.clusters {
        let labels = format!("cluster: {}, component: gateway", cluster.target.name);
        target(&mut out, &cluster.gateway_admin, &labels);
    }
    out.push_str("  - job_name: isthmus-proxy\n    static_configs:\n");
    let sidecars = env
        .workloads
        .iter()
        .map(|w| (w.name, w.cluster, w.sidecar.admin.as_str()))
        .chain(
            late.iter()
                .map(|s| (s.service, s.cluster, s.admin.as_str())),
        );
    for (service, cluster, admin) in sidecars {
        let labels = format!("cluster: {cluster}, component: sidecar, service: {service}");
        target(&mut out, admin, &labels);
    }
    (out, targets)
}

/// The agents' setting that points their UI at Prometheus (Consul's keys).
pub fn ui_config(url: &str) -> String {
    format!(
        "ui_config {{\n  enabled          = true\n  metrics_provider = \"prometheus\"\n  metrics_proxy {{\n    base_url = \"{url}\"\n  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentConfig, MetricsProvider, Settings, Source};
    use crate::demo::script::Target;
    use crate::demo::setup::{Cluster, Sidecar, Workload};

    fn environment() -> Environment {
        let cluster = |name: &'static str, port: u16| Cluster {
            target: Target {
                name,
                api: format!("http://127.0.0.1:{port}"),
                token: "secret".into(),
            },
            gateway: format!("127.0.0.1:{}", port + 1),
            gateway_admin: format!("http://127.0.0.1:{}", port + 2),
        };
        Environment {
            clusters: vec![cluster("cluster-01", 1000), cluster("cluster-02", 2000)],
            workloads: vec![Workload {
                name: "backend",
                cluster: "cluster-01",
                app: "127.0.0.1:3000".parse().unwrap(),
                sidecar: Sidecar {
                    inbound: "127.0.0.1:3001".into(),
                    admin: "http://127.0.0.1:3002".into(),
                    upstream: None,
                },
                token: "secret".into(),
            }],
            scrape_token_file: "/demo/prometheus.token".into(),
        }
    }

    #[test]
    fn the_scrape_config_has_every_component_with_its_labels() {
        let late = [LateSidecar {
            service: "backend",
            cluster: "cluster-02",
            admin: "http://127.0.0.1:4002".into(),
        }];
        let (config, targets) = scrape_config(&environment(), &late);
        assert_eq!(targets, 2 + 2 + 2, "{config}");
        for expected in [
            "  scrape_interval: 5s\n",
            "credentials_file: /demo/prometheus.token\n",
            "- targets: ['127.0.0.1:1000']\n        labels: {cluster: cluster-01, component: agent}\n",
            "- targets: ['127.0.0.1:2002']\n        labels: {cluster: cluster-02, component: gateway}\n",
            "- targets: ['127.0.0.1:3002']\n        labels: {cluster: cluster-01, component: sidecar, service: backend}\n",
            "- targets: ['127.0.0.1:4002']\n        labels: {cluster: cluster-02, component: sidecar, service: backend}\n",
        ] {
            assert!(config.contains(expected), "{expected:?} in:\n{config}");
        }
    }

    #[test]
    fn the_ui_setting_is_one_the_agent_takes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ui.hcl");
        std::fs::write(&file, ui_config("http://127.0.0.1:9999")).unwrap();
        let mut config = AgentConfig::dev();
        Settings::load(&file)
            .unwrap()
            .apply(&mut config, Source::File)
            .unwrap();
        assert_eq!(
            config.ui.metrics,
            Some(MetricsProvider {
                base_url: "http://127.0.0.1:9999".into()
            })
        );
    }
}
