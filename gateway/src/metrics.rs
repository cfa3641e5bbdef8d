//! The gateway's Prometheus metrics. Each gateway has its own registry (so
//! several can run in one process); the data path only touches atomic
//! counters, and encoding happens on the admin listener's side.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Which peering endpoint a request addressed (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Exchange,
    Stream,
    Health,
    Other,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Exchange => "exchange",
            Endpoint::Stream => "stream",
            Endpoint::Health => "health",
            Endpoint::Other => "other",
        }
    }
}

/// What became of a peering request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Forwarded to the agent (whatever the agent then answered).
    Allowed,
    /// Refused by the gateway's policy (403).
    Denied,
    /// The agent could not be reached (502).
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// The `peer` label for requests that have no peer from the view.
pub(crate) const UNKNOWN_PEER: &str = "unknown";

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    tcp_open_peering: IntCounter,
    tcp_open_refused: IntCounter,
    tcp_open_connections: IntGauge,
    peering_requests: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        let build_info = IntGaugeVec::new(
            Opts::new("isthmus_build_info", "isthmus build information; always 1"),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;

        let tcp_open = IntCounterVec::new(
            Opts::new(
                "gateway_tcp_open_total",
                "TCP connections accepted, by what their SNI asked for",
            ),
            &["sni_kind"],
        )?;
        registry.register(Box::new(tcp_open.clone()))?;

        let tcp_open_connections = IntGauge::new(
            "gateway_tcp_open_connections",
            "TCP connections currently open",
        )?;
        registry.register(Box::new(tcp_open_connections.clone()))?;

        let peering_requests = IntCounterVec::new(
            Opts::new(
                "gateway_peering_requests_total",
                "Requests on peering connections, by peer, endpoint and outcome",
            ),
            &["peer", "endpoint", "outcome"],
        )?;
        registry.register(Box::new(peering_requests.clone()))?;

        Ok(Metrics {
            registry,
            tcp_open_peering: tcp_open.with_label_values(&["peering"]),
            tcp_open_refused: tcp_open.with_label_values(&["refused"]),
            tcp_open_connections,
            peering_requests,
        })
    }

    /// Counts an open connection until the guard drops.
    pub(crate) fn connection_opened(&self) -> OpenConnection {
        self.tcp_open_connections.inc();
        OpenConnection(self.tcp_open_connections.clone())
    }

    pub(crate) fn peering_connection(&self) {
        self.tcp_open_peering.inc();
    }

    pub(crate) fn refused_connection(&self) {
        self.tcp_open_refused.inc();
    }

    /// `peer` must be a peer name from the view or [`UNKNOWN_PEER`].
    pub(crate) fn request(&self, peer: &str, endpoint: Endpoint, outcome: Outcome) {
        self.peering_requests
            .with_label_values(&[peer, endpoint.label(), outcome.label()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> Result<String, prometheus::Error> {
        let families = self.registry.gather();
        let mut out = Vec::with_capacity(4096);
        TextEncoder::new().encode(&families, &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Decrements `gateway_tcp_open_connections` when dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let metrics = Metrics::new().unwrap();
        let guard = metrics.connection_opened();
        metrics.peering_connection();
        metrics.refused_connection();
        metrics.request("cluster-02", Endpoint::Health, Outcome::Denied);
        let text = metrics.encode().unwrap();
        assert!(text.contains("isthmus_build_info{version=\""), "{text}");
        assert!(
            text.contains("gateway_tcp_open_total{sni_kind=\"peering\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_tcp_open_total{sni_kind=\"refused\"} 1"),
            "{text}"
        );
        assert!(text.contains("gateway_tcp_open_connections 1"), "{text}");
        assert!(
            text.contains("gateway_peering_requests_total{endpoint=\"health\",outcome=\"denied\",peer=\"cluster-02\"} 1"),
            "{text}"
        );
        drop(guard);
        assert!(metrics
            .encode()
            .unwrap()
            .contains("gateway_tcp_open_connections 0"));
    }
}
