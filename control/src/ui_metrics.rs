//! The agent's own Prometheus queries for the topology page (with
//! `ui_config { metrics_provider = "prometheus" }`): a FIXED set, built
//! here from this cluster's name only, never from request input, so the
//! agent is no open query proxy. Each runs with a short timeout and a
//! bounded answer; together they give every edge's request rate, success
//! rate, p99 latency and denied rate over the last minute.
//!
//! The sidecars' series are named by their own `isthmus_proxy_info{service,
//! datacenter}`, joined on `instance` and `job`, so the queries do not
//! depend on how the operator labels scrape targets.

use std::collections::BTreeMap;
use std::time::Duration;

use isthmus_api::promql::{self, PromqlError, Sample};
use isthmus_api::topology::{edge_metrics, EdgeMetrics, Endpoint, QueryAnswers};
use isthmus_runtime::client::{encode, Client, ClientError};

use crate::config::MetricsProvider;

/// How long all the queries together may take: the page polls.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest answer read from Prometheus.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// The range every rate is taken over.
const WINDOW: &str = "1m";

#[derive(Debug, thiserror::Error)]
pub enum UiMetricsError {
    #[error("metrics provider: {0}")]
    Client(#[from] ClientError),
    #[error("metrics provider answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("metrics provider: {0}")]
    Promql(#[from] PromqlError),
    #[error("metrics provider did not answer within {}s", QUERY_TIMEOUT.as_secs())]
    Timeout,
}

/// The four queries, for the sidecars of `datacenter` (this cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queries {
    pub inbound_responses: String,
    pub inbound_p99: String,
    pub denied: String,
    pub outbound: String,
}

impl Queries {
    pub fn for_datacenter(datacenter: &str) -> Queries {
        let info = format!(
            "on (instance, job) group_left (service) isthmus_proxy_info{{datacenter={}}}",
            promql::string_literal(datacenter)
        );
        Queries {
            inbound_responses: format!(
                "sum by (service, src_service, src_peer, classification) \
                 (rate(inbound_source_response_total[{WINDOW}]) * {info})"
            ),
            inbound_p99: format!(
                "histogram_quantile(0.99, sum by (le, service, src_service, src_peer) \
                 (rate(inbound_source_response_latency_seconds_bucket[{WINDOW}]) * {info}))"
            ),
            denied: format!(
                "sum by (service, src_service, peer) \
                 (rate(inbound_authorization_total{{decision=\"deny\"}}[{WINDOW}]) * {info})"
            ),
            outbound: format!(
                "sum by (service, target) \
                 (rate(outbound_target_requests_total[{WINDOW}]) * {info})"
            ),
        }
    }
}

/// The Prometheus server of `ui_config`.
pub struct MetricsSource {
    client: Client,
    /// The base URL's path (Prometheus behind a prefix), without a trailing `/`.
    prefix: String,
    queries: Queries,
}

impl MetricsSource {
    pub fn new(
        provider: &MetricsProvider,
        datacenter: &str,
    ) -> Result<MetricsSource, UiMetricsError> {
        let client = Client::new(&provider.base_url)?;
        let prefix = provider
            .base_url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_owned()))
            .unwrap_or_default();
        Ok(MetricsSource {
            client,
            prefix: prefix.trim_end_matches('/').to_owned(),
            queries: Queries::for_datacenter(datacenter),
        })
    }

    /// Every edge's figures, or why they could not be had.
    pub async fn edge_metrics(
        &self,
    ) -> Result<BTreeMap<(Endpoint, Endpoint), EdgeMetrics>, UiMetricsError> {
        let q = &self.queries;
        let all = async {
            let (inbound_responses, inbound_p99, denied, outbound) = tokio::join!(
                self.query(&q.inbound_responses),
                self.query(&q.inbound_p99),
                self.query(&q.denied),
                self.query(&q.outbound),
            );
            Ok::<_, UiMetricsError>(QueryAnswers {
                inbound_responses: inbound_responses?,
                inbound_p99: inbound_p99?,
                denied: denied?,
                outbound: outbound?,
            })
        };
        let answers = tokio::time::timeout(QUERY_TIMEOUT, all)
            .await
            .map_err(|_| UiMetricsError::Timeout)??;
        Ok(edge_metrics(&answers))
    }

    async fn query(&self, promql: &str) -> Result<Vec<Sample>, UiMetricsError> {
        let path = format!("{}/api/v1/query?query={}", self.prefix, encode(promql));
        let (status, body) = self.client.get_bounded(&path, MAX_ANSWER_BYTES).await?;
        // Prometheus answers a refused query with 400/422 and a JSON error.
        match promql::parse_vector(&body) {
            Ok(samples) => Ok(samples),
            Err(PromqlError::Malformed(_)) if !status.is_success() => Err(UiMetricsError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_name_only_this_cluster_quoted() {
        let q = Queries::for_datacenter("cluster-01");
        assert!(q
            .inbound_responses
            .contains("isthmus_proxy_info{datacenter=\"cluster-01\"}"));
        let hostile = Queries::for_datacenter("x\"} or vector(1) #");
        assert!(hostile
            .denied
            .contains("datacenter=\"x\\\"} or vector(1) #\"}"));
    }

    #[test]
    fn the_base_urls_path_prefixes_the_api() {
        let source = MetricsSource::new(
            &MetricsProvider {
                base_url: "http://127.0.0.1:9090/prom".into(),
            },
            "dc1",
        )
        .unwrap();
        assert_eq!(source.prefix, "/prom");
        let source = MetricsSource::new(
            &MetricsProvider {
                base_url: "http://127.0.0.1:9090".into(),
            },
            "dc1",
        )
        .unwrap();
        assert_eq!(source.prefix, "");
    }
}
