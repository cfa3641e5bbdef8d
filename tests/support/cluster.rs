//! A whole cluster on loopback: an `isthmus agent` process and an
//! `isthmus-gateway` process, on ephemeral ports.

use std::path::{Path, PathBuf};
use std::process::Output;

use isthmus_runtime::client::Client;

use serde_json::json;

use http::Method;

use super::api::{put, send, text};
use super::apps::http_app;
use super::eventually;
use super::process::{cli, field, spawn_announcing, stdout, AgentProcess, ChildProcess};
use super::proxy_process::ProxyProcess;

/// The heartbeat the tests run peering streams with, so failures show fast.
pub const TEST_HEARTBEAT: &str = "200ms";

/// An `isthmus-gateway` child process; killed on drop.
pub struct GatewayProcess {
    process: ChildProcess,
    pub bind: String,
    pub advertise: String,
    pub admin: String,
}

impl GatewayProcess {
    pub fn spawn(control: &str) -> GatewayProcess {
        Self::spawn_with(control, &[])
    }

    /// [`GatewayProcess::spawn`] with more flags (`--ca-file`, `--token`, ...).
    pub fn spawn_with(control: &str, extra: &[&str]) -> GatewayProcess {
        let program = isthmus_testkit::process::binary("isthmus-gateway");
        let mut args = vec![
            "--control",
            control,
            "--bind",
            "127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
            "--drain-timeout",
            "2s",
        ];
        args.extend_from_slice(extra);
        let (child, line) = spawn_announcing(&program, &args, "isthmus-gateway running:")
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        GatewayProcess {
            bind: field(&line, "bind"),
            advertise: field(&line, "advertise"),
            admin: field(&line, "admin"),
            process: child,
        }
    }

    pub fn terminate(self) -> std::process::ExitStatus {
        self.process.terminate()
    }

    /// Stops the process (SIGSTOP) without ending it, as a hung peer: the
    /// kernel still completes TCP connections to its port, but nothing
    /// answers. [`GatewayProcess::thaw`] resumes it; drop kills it anyway.
    pub fn freeze(&self) {
        self.process.signal("-STOP");
    }

    /// Resumes a frozen gateway (SIGCONT).
    pub fn thaw(&self) {
        self.process.signal("-CONT");
    }
}

pub struct Cluster {
    pub name: String,
    pub data_dir: PathBuf,
    pub agent: AgentProcess,
    pub gateway: GatewayProcess,
    pub client: Client,
    /// Extra agent flags, kept for restarts.
    agent_args: Vec<String>,
}

impl Cluster {
    /// Starts the agent (data in `dir/<name>`) and a gateway, and waits
    /// until the gateway is registered and passing in the catalog.
    pub async fn start(name: &str, dir: &Path) -> Cluster {
        Self::start_with(name, dir, &[]).await
    }

    /// Like [`Cluster::start`], with extra flags for the agent.
    pub async fn start_with(name: &str, dir: &Path, agent_args: &[&str]) -> Cluster {
        let data_dir = dir.join(name);
        let agent = Self::start_agent_with(name, &data_dir, agent_args);
        let gateway = GatewayProcess::spawn(&agent.url());
        let client = Client::new(&agent.http_addr).unwrap();
        let cluster = Cluster {
            name: name.to_owned(),
            data_dir,
            agent,
            gateway,
            client,
            agent_args: agent_args.iter().map(|a| a.to_string()).collect(),
        };
        cluster.wait_for_gateway().await;
        cluster
    }

    pub fn start_agent(name: &str, data_dir: &Path) -> AgentProcess {
        Self::start_agent_with(name, data_dir, &[])
    }

    fn start_agent_with(name: &str, data_dir: &Path, extra: &[&str]) -> AgentProcess {
        let node = format!("{name}-node");
        let mut args = vec![
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--cluster-name",
            name,
            "--node-name",
            &node,
        ];
        // The test's own heartbeat, if it gives one (a long one lets a
        // test see a gateway fail before the stream does).
        if !extra.contains(&"--peering-heartbeat") {
            args.extend(["--peering-heartbeat", TEST_HEARTBEAT]);
        }
        args.extend_from_slice(extra);
        AgentProcess::spawn(&args)
    }

    async fn wait_for_gateway(&self) {
        let advertise = self.gateway.advertise.clone();
        eventually("gateway registered and passing", || async {
            let (entries, _): (serde_json::Value, _) = self
                .client
                .get_json("/v1/health/service/mesh-gateway?passing")
                .await
                .ok()?;
            entries
                .as_array()?
                .iter()
                .any(|e| {
                    format!(
                        "{}:{}",
                        e["Service"]["Address"].as_str().unwrap_or(""),
                        e["Service"]["Port"]
                    ) == advertise
                })
                .then_some(())
        })
        .await;
    }

    /// Runs the CLI against this cluster's agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.agent.http_addr, args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        cli(&self.agent.http_addr, args, Some(stdin))
    }

    /// A peering's JSON as the API shows it.
    pub async fn peering(&self, name: &str) -> Option<serde_json::Value> {
        self.client
            .get_json::<serde_json::Value>(&format!("/v1/peering/{name}"))
            .await
            .ok()
            .map(|(v, _)| v)
    }

    /// Waits until the peering `name` is in `state`.
    pub async fn wait_for_state(&self, name: &str, state: &str) -> serde_json::Value {
        eventually(
            &format!("{}: peering {name} {state}", self.name),
            || async { self.peering(name).await.filter(|p| p["State"] == state) },
        )
        .await
    }

    /// Registers `service` on `port` with a passing TTL check.
    pub async fn register_passing(&self, service: &str, port: u16) {
        put(
            &self.client,
            "/v1/agent/service/register",
            json!({"Name": service, "Port": port, "Check": {"TTL": "1h", "Status": "passing"}}),
        )
        .await;
    }

    /// Exports `service` to the peer `consumer` (the whole
    /// `exported-services` entry).
    pub async fn export(&self, service: &str, consumer: &str) {
        put(
            &self.client,
            "/v1/config",
            json!({"Kind": "exported-services", "Name": "default", "Services": [{"Name": service, "Consumers": [{"Peer": consumer}]}]}),
        )
        .await;
    }

    /// Lets `source` of the peer `peer` call `service` (its whole
    /// `service-intentions` entry).
    pub async fn allow_from_peer(&self, service: &str, source: &str, peer: &str) {
        put(
            &self.client,
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": service, "Sources": [{"Name": source, "Peer": peer, "Action": "allow"}]}),
        )
        .await;
    }

    /// A peering token for `peer`, from the HTTP API (expecting 200).
    pub async fn peering_token(&self, peer: &str) -> String {
        let response = send(
            &self.client,
            Method::POST,
            "/v1/peering/token",
            Some(json!({"PeerName": peer})),
        )
        .await;
        assert_eq!(response.status, 200, "{}", text(&response));
        serde_json::from_slice::<serde_json::Value>(&response.body).unwrap()["PeeringToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Restarts the agent on the same data dir (new ephemeral port); the
    /// gateway is not restarted.
    pub fn restart_agent_process(&mut self) {
        let extra: Vec<&str> = self.agent_args.iter().map(String::as_str).collect();
        let agent = Self::start_agent_with(&self.name, &self.data_dir, &extra);
        self.client = Client::new(&agent.http_addr).unwrap();
        self.agent = agent;
    }
}

/// cluster-01 (token) and cluster-02 (establish), peered and `ACTIVE` on
/// both sides.
pub async fn peered_clusters(dir: &Path) -> (Cluster, Cluster) {
    peered_clusters_with(dir, &[]).await
}

/// Like [`peered_clusters`], both agents started with `agent_args` too.
pub async fn peered_clusters_with(dir: &Path, agent_args: &[&str]) -> (Cluster, Cluster) {
    let c1 = Cluster::start_with("cluster-01", dir, agent_args).await;
    let c2 = Cluster::start_with("cluster-02", dir, agent_args).await;
    establish_peering(&c1, &c2).await;
    (c1, c2)
}

/// Peers two started clusters the way the peering guide does: a token from
/// `c1` (naming `c2`), established on `c2`; waits for `ACTIVE` on both.
pub async fn establish_peering(c1: &Cluster, c2: &Cluster) {
    let token = stdout(&c1.cli(&["peering", "generate-token", "-name", &c2.name]))
        .trim()
        .to_owned();
    let established = c2.cli(&[
        "peering",
        "establish",
        "-name",
        &c1.name,
        "-peering-token",
        &token,
    ]);
    assert!(
        established.status.success(),
        "establish: {}",
        super::process::stderr(&established)
    );
    c1.wait_for_state(&c2.name, "ACTIVE").await;
    c2.wait_for_state(&c1.name, "ACTIVE").await;
}

/// On cluster-01: a `backend` app behind its sidecar, registered passing,
/// exported to cluster-02, and callable by cluster-02's `frontend`.
pub async fn export_backend_to_cluster_02(c1: &Cluster) -> ProxyProcess {
    let backend_app = http_app("backend").await.to_string();
    let backend = ProxyProcess::spawn(&c1.agent.url(), "backend", &backend_app, &[], &[]);
    c1.register_passing("backend", 1).await;
    c1.export("backend", "cluster-02").await;
    c1.allow_from_peer("backend", "frontend", "cluster-02")
        .await;
    backend
}
