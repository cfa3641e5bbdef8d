//! Control-plane figure: how long an intention change takes to be enforced
//! by the isthmus sidecars, seen from the caller's side of the mesh.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::load::{self, Proto};
use crate::topology::Topology;

const LIMIT: Duration = Duration::from_secs(10);
const REPEATS: usize = 3;

#[derive(Debug, Clone, Serialize)]
pub struct IntentionChange {
    /// Per repeat: ms from writing a deny until a request is refused
    /// (None: still allowed after 10 s).
    pub deny_enforced_ms: Vec<Option<f64>>,
    /// Per repeat: ms from writing the allow back until a request passes.
    pub allow_restored_ms: Vec<Option<f64>>,
}

async fn status(client: &load::HttpClient, uri: &http::Uri) -> Option<u16> {
    let request = http::Request::get(uri.clone())
        .body(Default::default())
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(2), client.request(request))
        .await
        .ok()?
        .ok()?;
    Some(response.status().as_u16())
}

/// Writes `action` for frontend → backend, then polls through the
/// outbound sidecar (over its kept-alive connection) until `done` holds.
async fn change(
    topology: &Topology,
    client: &load::HttpClient,
    uri: &http::Uri,
    action: &str,
    done: fn(Option<u16>) -> bool,
) -> Result<Option<f64>> {
    let agent = topology.agent.as_ref().context("no agent")?;
    let start = Instant::now();
    agent
        .put_json(
            "/v1/config",
            json!({"Kind": "service-intentions", "Name": "backend",
                "Sources": [{"Name": "frontend", "Action": action}]}),
        )
        .await?;
    while start.elapsed() < LIMIT {
        if done(status(client, uri).await) {
            return Ok(Some(start.elapsed().as_secs_f64() * 1000.0));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(None)
}

pub async fn intention_change(topology: &Topology) -> Result<IntentionChange> {
    let client = load::client(Proto::H1);
    let uri: http::Uri = format!("http://{}/1k", topology.h1_addr).parse()?;
    let mut out = IntentionChange {
        deny_enforced_ms: Vec::new(),
        allow_restored_ms: Vec::new(),
    };
    for _ in 0..REPEATS {
        // Warm the connection so the deny has to act on a live one.
        status(&client, &uri).await;
        out.deny_enforced_ms
            .push(change(topology, &client, &uri, "deny", |s| s != Some(200)).await?);
        out.allow_restored_ms
            .push(change(topology, &client, &uri, "allow", |s| s == Some(200)).await?);
    }
    Ok(out)
}
