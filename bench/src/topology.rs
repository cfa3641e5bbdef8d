//! The five topologies, started once per run and left up while the rounds
//! interleave them. Every process is a [`Proc`] guard: killed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::agent::Agent;
use crate::certs::{self, CertFiles};
use crate::procs::{self, free_port, Proc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Direct,
    Isthmus,
    Envoy,
    Nginx,
    Haproxy,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Isthmus => "isthmus",
            Kind::Envoy => "envoy",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }
}

/// PEM text for the churn client: CA, client certificate, key, server name.
pub struct ChurnTls {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub name: String,
}

pub struct Topology {
    pub kind: Kind,
    /// Where the load generator sends HTTP/1.1 and h2c.
    pub h1_addr: String,
    pub h2_addr: String,
    /// Where the churn case connects (the inbound hop, or the backend).
    pub churn_addr: String,
    pub churn_tls: Option<ChurnTls>,
    /// The proxies: outbound hop first, then inbound hop.
    pub proxies: Vec<Proc>,
    pub version: String,
    pub agent: Option<Agent>,
}

impl Topology {
    pub fn pids(&self) -> Vec<u32> {
        self.proxies.iter().map(Proc::pid).collect()
    }

    pub fn check_alive(&mut self) -> Result<()> {
        for proxy in &mut self.proxies {
            proxy.check_alive()?;
        }
        Ok(())
    }

    /// Waits until a request through the topology succeeds.
    pub async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + procs::WAIT;
        let client = crate::load::client(crate::load::Proto::H1);
        let uri: http::Uri = format!("http://{}/1k", self.h1_addr).parse()?;
        loop {
            let request = http::Request::get(uri.clone()).body(Default::default())?;
            match client.request(request).await {
                Ok(response) if response.status() == 200 => return Ok(()),
                Ok(response) => {
                    if Instant::now() > deadline {
                        bail!("{} answers {}", self.kind.label(), response.status());
                    }
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("{} not ready: {e:?}", self.kind.label())
                }
                Err(_) => {}
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn direct(backend: &str) -> Topology {
    Topology {
        kind: Kind::Direct,
        h1_addr: backend.to_owned(),
        h2_addr: backend.to_owned(),
        churn_addr: backend.to_owned(),
        churn_tls: None,
        proxies: Vec::new(),
        version: "-".into(),
        agent: None,
    }
}

/// Agent (`--dev --no-gateway`), intentions allowing frontend → backend,
/// an inbound sidecar for backend and an outbound one for frontend.
pub async fn isthmus(bin_dir: &Path, backend: &str, workers: usize) -> Result<Topology> {
    let agent = Agent::start(bin_dir, &[]).await?;
    agent
        .put_json(
            "/v1/config",
            serde_json::json!({"Kind": "service-intentions", "Name": "backend",
                "Sources": [{"Name": "frontend", "Action": "allow"}]}),
        )
        .await
        .context("write service-intentions")?;
    let proxy = bin_dir.join("isthmus-proxy");
    let common = |service: &str| -> Vec<String> {
        [
            "--service",
            service,
            "--control",
            &agent.url(),
            "--inbound-bind",
            "127.0.0.1:0",
            "--local-app",
            backend,
            "--admin-bind",
            "127.0.0.1:0",
            "--workers",
            &workers.to_string(),
            "--drain-timeout",
            "1s",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // Profiling aid: `ISTHMUS_BENCH_WRAP_OUTBOUND="heaptrack -o /tmp/out"`
    // (or `ISTHMUS_BENCH_WRAP_INBOUND`) runs that hop under that command
    // (its RSS is then the wrapper's, not the proxy's).
    let (program, args) = wrapped("ISTHMUS_BENCH_WRAP_INBOUND", &proxy, common("backend"));
    let (inbound, line) = procs::spawn(
        "isthmus-proxy (inbound)",
        &program,
        &args,
        Some("isthmus-proxy running:"),
    )?;
    let inbound_addr = procs::field(line.as_deref().unwrap_or_default(), "inbound")?;
    let mut args = common("frontend");
    args.extend(["--upstream".into(), "backend:0".into()]);
    let (program, args) = wrapped("ISTHMUS_BENCH_WRAP_OUTBOUND", &proxy, args);
    let (outbound, line) = procs::spawn(
        "isthmus-proxy (outbound)",
        &program,
        &args,
        Some("isthmus-proxy running:"),
    )?;
    let upstreams = procs::field(line.as_deref().unwrap_or_default(), "upstreams")?;
    let listen = upstreams
        .split(',')
        .find_map(|u| u.strip_prefix("backend="))
        .with_context(|| format!("no backend upstream in {upstreams:?}"))?
        .to_owned();
    let leaf = agent.get_json("/v1/agent/connect/ca/leaf/frontend").await?;
    let ca = agent.get_text("/v1/connect/ca/roots?pem").await?;
    let churn_tls = ChurnTls {
        ca,
        cert: leaf["CertPEM"].as_str().context("CertPEM")?.to_owned(),
        key: leaf["PrivateKeyPEM"]
            .as_str()
            .context("PrivateKeyPEM")?
            .to_owned(),
        name: "backend".into(),
    };
    let version = procs::version(&proxy, &["--version"]);
    let mut topology = Topology {
        kind: Kind::Isthmus,
        h1_addr: listen.clone(),
        h2_addr: listen,
        churn_addr: inbound_addr,
        churn_tls: Some(churn_tls),
        proxies: vec![outbound, inbound],
        version,
        agent: Some(agent),
    };
    topology.wait_ready().await?;
    Ok(topology)
}

/// `program args`, or the same under the command in the environment
/// variable `var` (split on whitespace) when it is set.
fn wrapped(var: &str, program: &Path, args: Vec<String>) -> (PathBuf, Vec<String>) {
    let wrapper = std::env::var(var).unwrap_or_default();
    let mut wrapper = wrapper.split_whitespace().map(str::to_owned);
    match wrapper.next() {
        Some(wrapper_program) => {
            let mut wrapped: Vec<String> = wrapper.collect();
            wrapped.push(program.display().to_string());
            wrapped.extend(args);
            (PathBuf::from(wrapper_program), wrapped)
        }
        None => (program.to_path_buf(), args),
    }
}

/// Replaces every `{{KEY}}` in bench/peers/<file> and writes it to `dir`.
fn render(file: &str, dir: &Path, vars: &[(&str, String)]) -> Result<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(file);
    let mut text =
        std::fs::read_to_string(&source).with_context(|| format!("read {}", source.display()))?;
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    if let Some(at) = text.find("{{") {
        bail!("{file}: unreplaced placeholder near {:?}", &text[at..]);
    }
    let out = dir.join(file);
    std::fs::write(&out, text)?;
    Ok(out)
}

fn cert_vars(certs: &CertFiles) -> Vec<(&'static str, String)> {
    let p = |path: &PathBuf| path.display().to_string();
    vec![
        ("CA", p(&certs.ca)),
        ("SERVER_CERT", p(&certs.server_cert)),
        ("SERVER_KEY", p(&certs.server_key)),
        ("CLIENT_CERT", p(&certs.client_cert)),
        ("CLIENT_KEY", p(&certs.client_key)),
        ("SERVER_NAME", certs::SERVER_NAME.into()),
        ("SERVER_SPIFFE", certs::spiffe("backend")),
        ("CLIENT_SPIFFE", certs::spiffe("frontend")),
    ]
}

fn churn_tls(certs: &CertFiles) -> Result<ChurnTls> {
    Ok(ChurnTls {
        ca: std::fs::read_to_string(&certs.ca)?,
        cert: std::fs::read_to_string(&certs.client_cert)?,
        key: std::fs::read_to_string(&certs.client_key)?,
        name: certs::SERVER_NAME.into(),
    })
}

pub async fn envoy(
    envoy_bin: &Path,
    dir: &Path,
    certs: &CertFiles,
    backend: &str,
    workers: usize,
) -> Result<Topology> {
    let backend_port = backend.rsplit(':').next().unwrap_or_default().to_owned();
    let (in_port, out_port) = (free_port()?, free_port()?);
    let mut vars = cert_vars(certs);
    vars.push(("BACKEND_PORT", backend_port));
    vars.push(("INBOUND_PORT", in_port.to_string()));
    let start = |file: &str, name: &str, listen: u16| -> Result<Proc> {
        let mut vars = vars.clone();
        vars.push(("LISTEN_PORT", listen.to_string()));
        vars.push(("ADMIN_PORT", free_port()?.to_string()));
        let config = render(file, dir, &vars)?;
        let args = [
            "-c",
            &config.display().to_string(),
            "--concurrency",
            &workers.to_string(),
            "--disable-hot-restart",
            "-l",
            "error",
        ]
        .map(str::to_owned);
        Ok(procs::spawn(name, envoy_bin, &args, None)?.0)
    };
    let mut inbound = start("envoy-inbound.yaml", "envoy (inbound)", in_port)?;
    let mut outbound = start("envoy-outbound.yaml", "envoy (outbound)", out_port)?;
    procs::wait_port(&mut inbound, &format!("127.0.0.1:{in_port}")).await?;
    procs::wait_port(&mut outbound, &format!("127.0.0.1:{out_port}")).await?;
    let out_addr = format!("127.0.0.1:{out_port}");
    let mut topology = Topology {
        kind: Kind::Envoy,
        h1_addr: out_addr.clone(),
        h2_addr: out_addr,
        churn_addr: format!("127.0.0.1:{in_port}"),
        churn_tls: Some(churn_tls(certs)?),
        proxies: vec![outbound, inbound],
        version: procs::version(envoy_bin, &["--version"]),
        agent: None,
    };
    topology.wait_ready().await?;
    Ok(topology)
}

pub async fn nginx(
    nginx_bin: &Path,
    dir: &Path,
    certs: &CertFiles,
    backend: &str,
    workers: usize,
) -> Result<Topology> {
    let backend_port = backend.rsplit(':').next().unwrap_or_default().to_owned();
    let (in_port, out_port, h2_port) = (free_port()?, free_port()?, free_port()?);
    let mut vars = cert_vars(certs);
    vars.push(("DIR", dir.display().to_string()));
    vars.push(("BACKEND_PORT", backend_port));
    vars.push(("INBOUND_PORT", in_port.to_string()));
    vars.push(("H2_PORT", h2_port.to_string()));
    vars.push(("WORKERS", workers.to_string()));
    let start = |file: &str, hop: &str, listen: u16| -> Result<Proc> {
        let tmp = dir.join(format!("nginx-{hop}-tmp"));
        std::fs::create_dir_all(&tmp)?;
        open_permissions(&tmp)?;
        let mut vars = vars.clone();
        vars.push(("LISTEN_PORT", listen.to_string()));
        let config = render(file, dir, &vars)?;
        let error_log = dir.join(format!("nginx-{hop}-startup.log"));
        let args = [
            "-p",
            &dir.display().to_string(),
            "-e",
            &error_log.display().to_string(),
            "-c",
            &config.display().to_string(),
        ]
        .map(str::to_owned);
        let name = format!("nginx ({hop})");
        Ok(procs::spawn(&name, nginx_bin, &args, None)?.0)
    };
    let mut inbound = start("nginx-inbound.conf", "inbound", in_port)?;
    let mut outbound = start("nginx-outbound.conf", "outbound", out_port)?;
    procs::wait_port(&mut inbound, &format!("127.0.0.1:{in_port}")).await?;
    procs::wait_port(&mut outbound, &format!("127.0.0.1:{out_port}")).await?;
    let mut topology = Topology {
        kind: Kind::Nginx,
        h1_addr: format!("127.0.0.1:{out_port}"),
        h2_addr: format!("127.0.0.1:{h2_port}"),
        churn_addr: format!("127.0.0.1:{in_port}"),
        churn_tls: Some(churn_tls(certs)?),
        proxies: vec![outbound, inbound],
        version: procs::version(nginx_bin, &["-v"]),
        agent: None,
    };
    topology.wait_ready().await?;
    Ok(topology)
}

/// HAProxy wants a certificate and its key in one PEM file: writes
/// `<name>` (certificate, then key) into `dir`.
fn combined_pem(dir: &Path, name: &str, cert: &Path, key: &Path) -> Result<PathBuf> {
    let mut pem = std::fs::read_to_string(cert)?;
    pem.push_str(&std::fs::read_to_string(key)?);
    let out = dir.join(name);
    std::fs::write(&out, pem).with_context(|| format!("write {}", out.display()))?;
    Ok(out)
}

pub async fn haproxy(
    haproxy_bin: &Path,
    dir: &Path,
    certs: &CertFiles,
    backend: &str,
    workers: usize,
) -> Result<Topology> {
    let backend_port = backend.rsplit(':').next().unwrap_or_default().to_owned();
    let (in_port, out_port) = (free_port()?, free_port()?);
    let server_pem = combined_pem(
        dir,
        "haproxy-server.pem",
        &certs.server_cert,
        &certs.server_key,
    )?;
    let client_pem = combined_pem(
        dir,
        "haproxy-client.pem",
        &certs.client_cert,
        &certs.client_key,
    )?;
    let mut vars = cert_vars(certs);
    vars.push(("SERVER_PEM", server_pem.display().to_string()));
    vars.push(("CLIENT_PEM", client_pem.display().to_string()));
    vars.push(("BACKEND_PORT", backend_port));
    vars.push(("INBOUND_PORT", in_port.to_string()));
    vars.push(("WORKERS", workers.to_string()));
    let start = |file: &str, hop: &str, listen: u16| -> Result<Proc> {
        let mut vars = vars.clone();
        vars.push(("LISTEN_PORT", listen.to_string()));
        let config = render(file, dir, &vars)?;
        // -db: stay in the foreground, one process (no master-worker).
        let args = ["-db", "-f", &config.display().to_string()].map(str::to_owned);
        let name = format!("haproxy ({hop})");
        Ok(procs::spawn(&name, haproxy_bin, &args, None)?.0)
    };
    let mut inbound = start("haproxy-inbound.cfg", "inbound", in_port)?;
    let mut outbound = start("haproxy-outbound.cfg", "outbound", out_port)?;
    procs::wait_port(&mut inbound, &format!("127.0.0.1:{in_port}")).await?;
    procs::wait_port(&mut outbound, &format!("127.0.0.1:{out_port}")).await?;
    let out_addr = format!("127.0.0.1:{out_port}");
    let version = procs::version(haproxy_bin, &["-v"]);
    let mut topology = Topology {
        kind: Kind::Haproxy,
        h1_addr: out_addr.clone(),
        h2_addr: out_addr,
        churn_addr: format!("127.0.0.1:{in_port}"),
        churn_tls: Some(churn_tls(certs)?),
        proxies: vec![outbound, inbound],
        version,
        agent: None,
    };
    topology.wait_ready().await?;
    Ok(topology)
}

/// nginx workers may run as `nobody`: let them into the scratch directory.
pub fn open_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .with_context(|| format!("chmod {}", path.display()))
}
