//! Bringing the demo's world up: two clusters (agent and gateway each) and
//! three workloads (toy app and sidecar each), and describing it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio::sync::watch;

use super::procs::{field, Launcher, Processes};
use super::prometheus::{self, LateSidecar, Prometheus};
use super::script::{wait_for, Target};
use super::toy;

pub const CLUSTERS: [&str; 2] = ["cluster-01", "cluster-02"];

/// The exported-services entry of the peering guide, for cluster-01.
pub const EXPORTED_SERVICES: &str = r#"Kind = "exported-services"
Name = "default"
Services = [
  {
    Name = "backend"
    Consumers = [
      {
        Peer = "cluster-02"
      }
    ]
  }
]
"#;

/// Intentions for backend: frontend from the peer may call it.
pub const BACKEND_INTENTIONS: &str = r#"Kind = "service-intentions"
Name = "backend"
Sources = [
  {
    Name   = "frontend"
    Peer   = "cluster-02"
    Action = "allow"
  }
]
"#;

pub struct Cluster {
    pub target: Target,
    /// The gateway's TLS listener, as advertised in peering tokens.
    pub gateway: String,
    /// The gateway's admin listener, `http://...`.
    pub gateway_admin: String,
}

pub struct Sidecar {
    pub inbound: String,
    /// The admin listener, `http://...`.
    pub admin: String,
    /// The upstream (`backend@cluster-01`) and its local listener.
    pub upstream: Option<(String, String)>,
}

pub struct Workload {
    pub name: &'static str,
    pub cluster: &'static str,
    pub app: SocketAddr,
    pub sidecar: Sidecar,
    /// The workload's ACL token: its own service identity and nothing else.
    pub token: String,
}

pub struct Environment {
    pub clusters: Vec<Cluster>,
    pub workloads: Vec<Workload>,
    /// The file holding the token Prometheus scrapes the agents with (the
    /// same secret in both clusters, allowed `agent:read` only).
    pub scrape_token_file: String,
}

impl Environment {
    pub fn cluster(&self, name: &str) -> &Cluster {
        self.clusters
            .iter()
            .find(|c| c.target.name == name)
            .expect("the demo's clusters are fixed")
    }

    pub fn workload(&self, name: &str) -> &Workload {
        self.workloads
            .iter()
            .find(|w| w.name == name)
            .expect("the demo's workloads are fixed")
    }
}

/// The workloads: name, cluster, and the upstream its sidecar offers.
const WORKLOADS: [(&str, &str, Option<&str>); 3] = [
    ("backend", "cluster-01", None),
    ("frontend", "cluster-02", Some("backend@cluster-01")),
    ("intruder", "cluster-02", Some("backend@cluster-01")),
];

/// Starts both clusters and all workloads, each ready when this returns.
/// `agent_settings` (HCL) go into both agents' config file.
pub async fn start(
    launcher: &Launcher,
    processes: &mut Processes,
    dir: &Path,
    agent_settings: &str,
    apps_stop: watch::Receiver<bool>,
) -> anyhow::Result<Environment> {
    println!("Starting the clusters and workloads:");
    let mut clusters = Vec::new();
    for name in CLUSTERS {
        let cluster = start_cluster(launcher, processes, dir, name, agent_settings).await?;
        println!(
            "   {name}: agent {}   gateway {} (admin {})",
            cluster.target.api, cluster.gateway, cluster.gateway_admin
        );
        clusters.push(cluster);
    }
    let scrape_token = uuid::Uuid::new_v4().to_string();
    for cluster in &clusters {
        scrape_token_for(&cluster.target, &scrape_token).await?;
    }
    let scrape_token_file = write_secret(dir, "prometheus.token", &scrape_token)?;
    let mut workloads = Vec::new();
    for (name, cluster, upstream) in WORKLOADS {
        let target = &clusters
            .iter()
            .find(|c| c.target.name == cluster)
            .expect("the workload's cluster is started")
            .target;
        let token = service_token(target, name).await?;
        let token_file = write_secret(dir, &format!("{name}.token"), &token)?;
        let app = toy::start(name, cluster, apps_stop.clone()).await?;
        let sidecar = start_sidecar(
            launcher,
            processes,
            SidecarArgs {
                api: &target.api,
                service: name,
                app,
                upstream,
                token_file: &token_file,
                log_name: format!("{name}-sidecar"),
                extra: Vec::new(),
            },
        )
        .await?;
        println!(
            "   {name} ({cluster}): app {app}   sidecar inbound {} (admin {})",
            sidecar.inbound, sidecar.admin
        );
        workloads.push(Workload {
            name,
            cluster,
            app,
            sidecar,
            token,
        });
    }
    Ok(Environment {
        clusters,
        workloads,
        scrape_token_file,
    })
}

async fn start_cluster(
    launcher: &Launcher,
    processes: &mut Processes,
    dir: &Path,
    name: &'static str,
    agent_settings: &str,
) -> anyhow::Result<Cluster> {
    let data_dir = dir.join(name);
    // ACLs on, default deny, as in production: a management token for the
    // operator's commands, kept in a file only the user can read.
    let management = uuid::Uuid::new_v4().to_string();
    let acl_config = write_secret(
        dir,
        &format!("{name}-acl.hcl"),
        &format!(
            "acl {{\n  enabled        = true\n  default_policy = \"deny\"\n  tokens {{\n    initial_management = \"{management}\"\n  }}\n}}\n{agent_settings}"
        ),
    )?;
    let args = [
        "agent",
        "--config-file",
        &acl_config,
        "--cluster-name",
        name,
        "--node-name",
        &format!("{name}-node"),
        "--data-dir",
        path_str(&data_dir)?,
        "--http-addr",
        "127.0.0.1:0",
        // Both clusters run on this host: Consul's 8600 would collide.
        "--dns-port",
        "0",
    ]
    .map(str::to_owned);
    let line = launcher
        .start(
            processes,
            &format!("{name}-agent"),
            "isthmus",
            &args,
            "isthmus agent running:",
        )
        .await?;
    let api = field(&line, "http")?;
    let target = Target {
        name,
        api,
        token: management,
    };
    let gateway_token = service_token(&target, isthmus_api::gateway::SERVICE_NAME).await?;
    let gateway_token_file = write_secret(dir, &format!("{name}-gateway.token"), &gateway_token)?;

    let args = [
        "--control",
        &target.api,
        "--token-file",
        &gateway_token_file,
        "--bind",
        "127.0.0.1:0",
        "--admin-bind",
        "127.0.0.1:0",
    ]
    .map(str::to_owned);
    let line = launcher
        .start(
            processes,
            &format!("{name}-gateway"),
            "isthmus-gateway",
            &args,
            "isthmus-gateway running:",
        )
        .await?;
    let cluster = Cluster {
        target,
        gateway: field(&line, "advertise")?,
        gateway_admin: field(&line, "admin")?,
    };
    wait_for_gateway(&cluster).await?;
    Ok(cluster)
}

/// Peering tokens carry the gateway's address from the catalog, so the
/// gateway must be registered and passing before the first token.
async fn wait_for_gateway(cluster: &Cluster) -> anyhow::Result<()> {
    let client = cluster.target.client()?;
    wait_for(
        &format!(
            "{}'s gateway to be registered and passing",
            cluster.target.name
        ),
        Duration::from_secs(30),
        || async {
            let (entries, _) = client
                .get_json::<Vec<serde_json::Value>>("/v1/health/service/mesh-gateway?passing")
                .await
                .map_err(|e| e.to_string())?;
            if entries.is_empty() {
                Err("not yet".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await
}

/// How to start one workload's sidecar.
pub(super) struct SidecarArgs<'a> {
    /// The agent's HTTP API.
    pub api: &'a str,
    pub service: &'a str,
    pub app: SocketAddr,
    /// `svc` or `svc@peer`, on an ephemeral local port.
    pub upstream: Option<&'a str>,
    pub token_file: &'a str,
    /// The process's name in the demo's logs.
    pub log_name: String,
    /// More flags (a second sidecar of a service needs its own `--service-id`).
    pub extra: Vec<String>,
}

pub(super) async fn start_sidecar(
    launcher: &Launcher,
    processes: &mut Processes,
    sidecar: SidecarArgs<'_>,
) -> anyhow::Result<Sidecar> {
    let SidecarArgs {
        api,
        service,
        app,
        upstream,
        token_file,
        log_name,
        extra,
    } = sidecar;
    let mut args: Vec<String> = [
        "--service",
        service,
        "--control",
        api,
        "--token-file",
        token_file,
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
        args.push("--upstream".into());
        args.push(format!("{upstream}:0"));
    }
    args.extend(extra);
    let line = launcher
        .start(
            processes,
            &log_name,
            "isthmus-proxy",
            &args,
            "isthmus-proxy running:",
        )
        .await?;
    let upstream = match upstream {
        None => None,
        Some(name) => {
            let listeners = field(&line, "upstreams")?;
            let addr = listeners
                .split(',')
                .find_map(|u| u.strip_prefix(name)?.strip_prefix('='))
                .ok_or_else(|| anyhow!("{service}'s sidecar did not announce {name}: {line}"))?;
            Some((name.to_owned(), addr.to_owned()))
        }
    };
    Ok(Sidecar {
        inbound: field(&line, "inbound")?,
        admin: field(&line, "admin")?,
        upstream,
    })
}

/// Writes a workload's service definition (with an HTTP check on its toy
/// app) and returns its path.
pub fn write_service_definition(dir: &Path, workload: &Workload) -> anyhow::Result<String> {
    let definition = format!(
        "service {{\n  name = \"{name}\"\n  port = {port}\n  check {{\n    http     = \"http://{app}/health\"\n    interval = \"1s\"\n  }}\n}}\n",
        name = workload.name,
        port = workload.app.port(),
        app = workload.app,
    );
    write_file(dir, &format!("{}.hcl", workload.name), &definition)
}

/// A token with only the service identity `service`, made with the
/// cluster's management token (what `isthmus acl token create
/// -service-identity` does).
pub(super) async fn service_token(target: &Target, service: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "Description": format!("{service} (isthmus demo)"),
        "ServiceIdentities": [{"ServiceName": service}],
    });
    let token: serde_json::Value = target
        .client()?
        .send_json(http::Method::PUT, "/v1/acl/token", &body)
        .await
        .with_context(|| format!("creating {service}'s ACL token in {}", target.name))?;
    token["SecretID"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{}'s agent answered a token without SecretID", target.name))
}

/// Makes `secret` a token in `target`'s cluster that may read the agents'
/// metrics (`agent:read`) and nothing else.
async fn scrape_token_for(target: &Target, secret: &str) -> anyhow::Result<()> {
    let client = target.client()?;
    let policy = serde_json::json!({
        "Name": "prometheus-scrape",
        "Description": "Read the agents' metrics",
        "Rules": "agent_prefix \"\" {\n  policy = \"read\"\n}\n",
    });
    let _: serde_json::Value = client
        .send_json(http::Method::PUT, "/v1/acl/policy", &policy)
        .await
        .with_context(|| format!("creating the scrape policy in {}", target.name))?;
    let token = serde_json::json!({
        "SecretID": secret,
        "Description": "Prometheus (isthmus demo)",
        "Policies": [{"Name": "prometheus-scrape"}],
    });
    let _: serde_json::Value = client
        .send_json(http::Method::PUT, "/v1/acl/token", &token)
        .await
        .with_context(|| format!("creating the scrape token in {}", target.name))?;
    Ok(())
}

/// Writes a secret (a token, a config holding one) readable by the user only.
pub(super) fn write_secret(dir: &Path, name: &str, contents: &str) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path_str(&path)?.to_owned())
}

pub fn write_file(dir: &Path, name: &str, contents: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path_str(&path)?.to_owned())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("{} is not valid UTF-8", path.display()))
}

/// What `--keep-running` leaves up: every component's address, and the
/// demo's Prometheus (`None`: not installed, its config written for later).
pub fn print_exploration(
    env: &Environment,
    dir: &Path,
    prometheus: Option<&Prometheus>,
    late: &[LateSidecar],
) -> anyhow::Result<()> {
    for cluster in &env.clusters {
        write_secret(
            dir,
            &format!("{}-management.token", cluster.target.name),
            &cluster.target.token,
        )?;
    }
    println!("\nEverything is still running. To explore:");
    for cluster in &env.clusters {
        let api = &cluster.target.api;
        println!("   {}:", cluster.target.name);
        println!("      web UI      {api}/ui/");
        println!("      topology    {api}/ui/#/topology");
        println!(
            "      HTTP API    {api}   (ISTHMUS_HTTP_ADDR={api} ISTHMUS_HTTP_TOKEN_FILE={} isthmus peering list)",
            dir.join(format!("{}-management.token", cluster.target.name)).display()
        );
        println!(
            "      metrics     {api}/v1/agent/metrics?format=prometheus   (token: agent:read)"
        );
        println!(
            "      gateway     {}   metrics {}/metrics",
            cluster.gateway, cluster.gateway_admin
        );
    }
    for workload in &env.workloads {
        println!(
            "   {} ({}): sidecar metrics {}/metrics",
            workload.name, workload.cluster, workload.sidecar.admin
        );
    }
    for sidecar in late {
        println!(
            "   {} ({}): sidecar metrics {}/metrics",
            sidecar.service, sidecar.cluster, sidecar.admin
        );
    }
    for (caller, note) in [("frontend", ""), ("intruder", " (denied by intentions)")] {
        if let Some((name, addr)) = &env.workload(caller).sidecar.upstream {
            println!("   call {name} as {caller}{note}:   curl http://{addr}/hello");
        }
    }
    let config = dir.join("prometheus.yml");
    match prometheus {
        Some(prometheus) => {
            println!(
                "   Prometheus:   {}   (scraping all of the above; config {})",
                prometheus.url,
                config.display()
            );
            println!(
                "   Grafana dashboards: configs/grafana/ (import them with this Prometheus as the data source)"
            );
            println!(
                "   the agents' UI reads the topology's numbers from it (ui_config metrics_provider = \"prometheus\")"
            );
        }
        None => {
            println!(
                "   Prometheus:   prometheus --config.file={}",
                config.display()
            );
            println!(
                "   then point the agents' UI at it (agent config file):\n{}",
                indent(&prometheus::ui_config("http://127.0.0.1:9090"), "      ")
            );
        }
    }
    println!("Press Ctrl-C to stop and clean up.");
    Ok(())
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
