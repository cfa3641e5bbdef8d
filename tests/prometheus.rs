//! The real-Prometheus harness itself (tests/support/prometheus.rs): it
//! scrapes an agent that requires a token, answers queries, and reports a
//! bad query as an error instead of an empty result.

use isthmus_tests::process::AgentProcess;
use isthmus_tests::prometheus::{PrometheusProcess, ScrapeJob};

const MANAGEMENT: &str = "7e1b1c2a-61a1-4c54-9b43-0d2b5a7e9f10";

#[tokio::test]
async fn prometheus_scrapes_an_agent_with_a_bearer_token_and_answers_queries() {
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        MANAGEMENT,
    ]);
    let prometheus = PrometheusProcess::start(&[
        ScrapeJob::new("agent", [agent.http_addr.clone()]).bearer_token(MANAGEMENT),
        ScrapeJob::new("agent-anonymous", [agent.http_addr.clone()]),
    ])
    .await;
    prometheus.wait_for_targets_up(1).await;

    let up = prometheus
        .wait_for_query("up", |samples| samples.len() == 2)
        .await;
    let health = |job: &str| {
        up.iter()
            .find(|s| s["metric"]["job"] == job)
            .map(|s| s["value"][1].as_str().unwrap().to_owned())
    };
    assert_eq!(health("agent").as_deref(), Some("1"), "{up:?}");
    assert_eq!(
        health("agent-anonymous").as_deref(),
        Some("0"),
        "the anonymous scrape is refused: {up:?}"
    );
    let series = prometheus
        .query_vector("count({job=\"agent\", __name__=~\"isthmus_.+\"})")
        .await;
    assert!(
        series[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0,
        "the agent's own series are stored: {series:?}"
    );

    let error = prometheus.query("rate(up[").await.unwrap_err();
    assert!(format!("{error}").contains("bad_data"), "{error}");
}
