//! Agents of one cluster over a real etcd (`--store etcd`), and reading
//! what they answer until it holds.

use std::time::Duration;

use http::Method;
use isthmus_runtime::client::Client;
use serde_json::Value;

use super::api::{send, text};
use super::process::AgentProcess;

/// `isthmus agent --store etcd` on `endpoint` as node `node` of
/// `cluster-01`, plus `extra` flags.
pub fn agent(endpoint: &str, node: &str, extra: &[&str]) -> AgentProcess {
    let mut args = vec![
        "--store",
        "etcd",
        "--etcd-endpoints",
        endpoint,
        "--node-name",
        node,
        "--cluster-name",
        "cluster-01",
    ];
    args.extend_from_slice(extra);
    AgentProcess::spawn(&args)
}

/// GETs `path` until it answers 200 with JSON for which `check` holds
/// (bounded by [`crate::WAIT`]); returns it with its `X-Consul-Index` (0
/// for endpoints without one, as in Consul).
pub async fn until(client: &Client, path: &str, check: impl Fn(&Value) -> bool) -> (Value, u64) {
    let deadline = tokio::time::Instant::now() + crate::WAIT;
    loop {
        let response = send(client, Method::GET, path, None).await;
        if response.status == 200 {
            let value: Value = serde_json::from_slice(&response.body).unwrap();
            if check(&value) {
                return (value, response.index.unwrap_or_default());
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never matched; last: {} {}",
            response.status,
            text(&response)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
