//! The demo's failover step: backend also runs in cluster-02 and frontend
//! prefers it, with a service-resolver failing over to cluster-01's backend
//! through the peering; the local backend is put in maintenance, calls are
//! answered from cluster-01, and it is restored. Runs after the walkthrough
//! (cluster-01 already exports backend and allows cluster-02's frontend).

use std::time::Duration;

use anyhow::anyhow;
use isthmus_runtime::client::Client;
use tokio::sync::watch;

use super::procs::{Launcher, Processes};
use super::prometheus::LateSidecar;
use super::script::{self, wait_for, Script};
use super::setup::{self, Environment, SidecarArgs, Workload};
use super::toy;

/// How long a health change may take to reach the caller's sidecar.
const SETTLE: Duration = Duration::from_secs(30);

const LOCAL_BACKEND_INTENTIONS: &str = r#"Kind = "service-intentions"
Name = "backend"
Sources = [
  { Name = "frontend", Action = "allow" },
]
"#;

const BACKEND_RESOLVER: &str = r#"Kind = "service-resolver"
Name = "backend"
Failover = {
  "*" = {
    Targets = [
      { Peer = "cluster-01" },
    ]
  }
}
"#;

/// The sidecar's service ID for frontend's second instance, whose
/// upstream is plain `backend` (resolved by the chain).
const FRONTEND_ID: &str = "frontend-prefers-local";

pub async fn failover_step(
    script: &mut Script,
    launcher: &Launcher,
    processes: &mut Processes,
    env: &Environment,
    dir: &std::path::Path,
    apps_stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<LateSidecar>> {
    let c2 = env.cluster("cluster-02");
    script
        .step("backend also runs in cluster-02; frontend prefers it and fails over to cluster-01");
    let app = toy::start("backend", "cluster-02", apps_stop.clone()).await?;
    let token = setup::service_token(&c2.target, "backend").await?;
    let token_file = setup::write_secret(dir, "cluster-02-backend.token", &token)?;
    let backend = Workload {
        name: "backend",
        cluster: "cluster-02",
        app,
        sidecar: setup::start_sidecar(
            launcher,
            processes,
            SidecarArgs {
                api: &c2.target.api,
                service: "backend",
                app,
                upstream: None,
                token_file: &token_file,
                log_name: "cluster-02-backend-sidecar".into(),
                extra: Vec::new(),
            },
        )
        .await?,
        token,
    };
    let file = setup::write_service_definition(dir, &backend)?;
    script
        .isthmus(&c2.target, &["services", "register", &file], None)
        .await?;
    for (name, contents) in [
        (
            "cluster-02-backend-intentions.hcl",
            LOCAL_BACKEND_INTENTIONS,
        ),
        ("backend-resolver.hcl", BACKEND_RESOLVER),
    ] {
        let file = setup::write_file(dir, name, contents)?;
        script.say(&format!("# {file}"));
        script.show(contents);
        script
            .isthmus(&c2.target, &["config", "write", &file], None)
            .await?;
    }
    let caller = env.workload("frontend");
    let token_file = setup::write_secret(dir, &format!("{FRONTEND_ID}.token"), &caller.token)?;
    // frontend's second sidecar, under its own service ID.
    let frontend = setup::start_sidecar(
        launcher,
        processes,
        SidecarArgs {
            api: &c2.target.api,
            service: "frontend",
            app: caller.app,
            upstream: Some("backend"),
            token_file: &token_file,
            log_name: "cluster-02-frontend-sidecar".into(),
            extra: vec!["--service-id".into(), FRONTEND_ID.into()],
        },
    )
    .await?;
    let (_, upstream) = frontend
        .upstream
        .clone()
        .ok_or_else(|| anyhow!("frontend's sidecar has no backend upstream"))?;
    let base = format!("http://{upstream}");
    script.say(&format!(
        "# a second frontend sidecar ({FRONTEND_ID}) has the upstream backend on {upstream}"
    ));
    let answer = answered_by(script, &base, "cluster-02").await?;
    script.show(&answer);
    script.check(
        answer.contains("hello from backend in cluster-02"),
        "frontend's calls are answered by its own cluster's backend",
    )?;
    script
        .isthmus(&c2.target, &["upstream", "explain", "backend"], None)
        .await?;

    script.step("cluster-02's backend goes into maintenance: calls fail over to cluster-01");
    let client = c2.target.client()?;
    let maintenance = |enable: bool| {
        format!("/v1/agent/service/maintenance/backend-sidecar-proxy?enable={enable}&reason=demo")
    };
    println!(
        "   [cluster-02]$ curl -s -X PUT -H \"X-Consul-Token: $ISTHMUS_HTTP_TOKEN\" '{}{}'",
        c2.target.api,
        maintenance(true)
    );
    set_maintenance(&client, &maintenance(true)).await?;
    let answer = answered_by(script, &base, "cluster-01").await?;
    script.show(&answer);
    script.check(
        answer.contains("hello from backend in cluster-01"),
        "frontend's calls are answered from cluster-01 through the peering",
    )?;
    let explained = script
        .isthmus(&c2.target, &["upstream", "explain", "backend"], None)
        .await?;
    script.check(
        explained.contains("Target:    backend@cluster-01"),
        "upstream explain shows the failover target chosen",
    )?;

    script.step("cluster-02's backend is restored: calls come back to it");
    println!(
        "   [cluster-02]$ curl -s -X PUT -H \"X-Consul-Token: $ISTHMUS_HTTP_TOKEN\" '{}{}'",
        c2.target.api,
        maintenance(false)
    );
    set_maintenance(&client, &maintenance(false)).await?;
    let answer = answered_by(script, &base, "cluster-02").await?;
    script.show(&answer);
    script.check(
        answer.contains("hello from backend in cluster-02"),
        "frontend's calls are answered by its own cluster's backend again",
    )?;
    Ok(vec![
        LateSidecar {
            service: "backend",
            cluster: "cluster-02",
            admin: backend.sidecar.admin,
        },
        LateSidecar {
            service: "frontend",
            cluster: "cluster-02",
            admin: frontend.admin,
        },
    ])
}

async fn set_maintenance(client: &Client, path: &str) -> anyhow::Result<()> {
    let response = client.send(http::Method::PUT, path, None).await?;
    if response.status != 200 {
        return Err(anyhow!(
            "PUT {path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        ));
    }
    Ok(())
}

/// Calls through the upstream until the backend of `cluster` answers.
async fn answered_by(script: &Script, base: &str, cluster: &str) -> anyhow::Result<String> {
    let wanted = format!("hello from backend in {cluster}");
    wait_for(&format!("an answer from {cluster}"), SETTLE, || async {
        let answer = script::get(base, "/", None)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status == 200 && answer.body.contains(&wanted) {
            Ok(())
        } else {
            Err(format!("{} {}", answer.status, answer.body.trim()))
        }
    })
    .await?;
    Ok(script.curl("frontend", base, "/").await?.body)
}
