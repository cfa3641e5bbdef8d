//! The gateway's Prometheus metrics. Each gateway has its own registry (so
//! several can run in one process); the data path only touches atomic
//! counters, and encoding happens on the admin listener's side.

use isthmus_runtime::listen::{ListenerCounters, ListenerMetrics};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Which peering endpoint a request addressed (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Exchange,
    Stream,
    Health,
    Probe,
    Other,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Exchange => "exchange",
            Endpoint::Stream => "stream",
            Endpoint::Health => "health",
            Endpoint::Probe => "probe",
            Endpoint::Other => "other",
        }
    }
}

/// What became of a peering request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Forwarded to the agent (whatever the agent then answered), or a
    /// probe the gateway answered itself.
    Allowed,
    /// Refused by the gateway's policy (403).
    Denied,
    /// The agent could not be reached (502).
    Error,
    /// Refused by a limit (exchanges: 408, 413, 429, 503).
    Limited,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Limited => "limited",
        }
    }
}

/// Why an unauthenticated peering exchange was refused (bounded labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExchangeRefusal {
    /// The body is larger than `exchange_max_body_bytes` (413).
    TooLarge,
    /// The body did not arrive within `exchange_body_timeout` (408).
    Timeout,
    /// `exchange_max_per_connection` exchanges already run on the connection (429).
    ConnectionLimit,
    /// `exchange_max_concurrent` exchanges already run at the gateway (503).
    TotalLimit,
}

impl ExchangeRefusal {
    pub(crate) const ALL: [ExchangeRefusal; 4] = [
        ExchangeRefusal::TooLarge,
        ExchangeRefusal::Timeout,
        ExchangeRefusal::ConnectionLimit,
        ExchangeRefusal::TotalLimit,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            ExchangeRefusal::TooLarge => "too_large",
            ExchangeRefusal::Timeout => "timeout",
            ExchangeRefusal::ConnectionLimit => "connection_limit",
            ExchangeRefusal::TotalLimit => "total_limit",
        }
    }
}

/// The `peer` label for requests that have no peer from the view.
pub(crate) const UNKNOWN_PEER: &str = "unknown";

/// Why a connection with a peered service SNI was not passed through
/// (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The SNI names another cluster's trust domain.
    TrustDomain,
    /// No such peer, or its peering is not established.
    Peer,
    /// The service (or its namespace/partition) is not exported to the peer.
    NotExported,
    /// The peer's auth groups do not grant `can_connect` on the service.
    NotPermitted,
    /// The view lists no healthy endpoint for the service.
    NoEndpoint,
    /// No endpoint accepted the connection.
    ConnectFailed,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 6] = [
        Refusal::TrustDomain,
        Refusal::Peer,
        Refusal::NotExported,
        Refusal::NotPermitted,
        Refusal::NoEndpoint,
        Refusal::ConnectFailed,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::TrustDomain => "trust_domain",
            Refusal::Peer => "peer",
            Refusal::NotExported => "not_exported",
            Refusal::NotPermitted => "not_permitted",
            Refusal::NoEndpoint => "no_endpoint",
            Refusal::ConnectFailed => "connect_failed",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    tcp_open_peering: IntCounter,
    tcp_open_refused: IntCounter,
    tcp_open_passthrough: IntCounter,
    tcp_open_connections: IntGauge,
    peering_requests: IntCounterVec,
    passthrough_connections: IntCounterVec,
    passthrough_refused: IntCounterVec,
    passthrough_open: IntGauge,
    read_bytes: IntCounterVec,
    write_bytes: IntCounterVec,
    exchange_refused: IntCounterVec,
    exchanges_in_flight: IntGauge,
    /// `listener="tls"`: the TLS listener's cap (peering and passed-through
    /// connections together); `"peering"`: header-read and idle timeouts of
    /// peering connections; `"passthrough"`: idle passed-through
    /// connections; `"admin"`: the admin listener.
    pub(crate) tls_listener: ListenerCounters,
    pub(crate) peering_listener: ListenerCounters,
    pub(crate) passthrough_listener: ListenerCounters,
    pub(crate) admin_listener: ListenerCounters,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = isthmus_runtime::metrics::component_registry()?;

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

        let passthrough_connections = IntCounterVec::new(
            Opts::new(
                "gateway_passthrough_connections_total",
                "Service connections passed through by SNI, by exported service and importing peer",
            ),
            &["service", "peer"],
        )?;
        registry.register(Box::new(passthrough_connections.clone()))?;

        let passthrough_refused = IntCounterVec::new(
            Opts::new(
                "gateway_passthrough_refused_total",
                "Connections with a peered service SNI that were not passed through, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(passthrough_refused.clone()))?;
        for reason in Refusal::ALL {
            // Every reason is exported from the start, at zero.
            let _ = passthrough_refused.with_label_values(&[reason.label()]);
        }

        let passthrough_open = IntGauge::new(
            "gateway_passthrough_open_connections",
            "Passed-through service connections currently open",
        )?;
        registry.register(Box::new(passthrough_open.clone()))?;

        let read_bytes = IntCounterVec::new(
            Opts::new(
                "gateway_tcp_read_bytes_total",
                "Bytes read from the downstream (calling) side of passed-through connections, \
                 by exported service and importing peer",
            ),
            &["service", "peer"],
        )?;
        registry.register(Box::new(read_bytes.clone()))?;

        let write_bytes = IntCounterVec::new(
            Opts::new(
                "gateway_tcp_write_bytes_total",
                "Bytes written to the downstream (calling) side of passed-through connections, \
                 by exported service and importing peer",
            ),
            &["service", "peer"],
        )?;
        registry.register(Box::new(write_bytes.clone()))?;

        let exchange_refused = IntCounterVec::new(
            Opts::new(
                "gateway_peering_exchange_refused_total",
                "Unauthenticated peering exchanges refused by a limit, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(exchange_refused.clone()))?;
        for reason in ExchangeRefusal::ALL {
            let _ = exchange_refused.with_label_values(&[reason.label()]);
        }

        let exchanges_in_flight = IntGauge::new(
            "gateway_peering_exchanges_in_flight",
            "Unauthenticated peering exchanges being read or forwarded",
        )?;
        registry.register(Box::new(exchanges_in_flight.clone()))?;
        let listeners = ListenerMetrics::register(&registry, "gateway_")?;

        Ok(Metrics {
            tls_listener: listeners.listener("tls"),
            peering_listener: listeners.listener("peering"),
            passthrough_listener: listeners.listener("passthrough"),
            admin_listener: listeners.listener("admin"),
            registry,
            tcp_open_peering: tcp_open.with_label_values(&["peering"]),
            tcp_open_refused: tcp_open.with_label_values(&["refused"]),
            tcp_open_passthrough: tcp_open.with_label_values(&["passthrough"]),
            tcp_open_connections,
            peering_requests,
            passthrough_connections,
            passthrough_refused,
            passthrough_open,
            read_bytes,
            write_bytes,
            exchange_refused,
            exchanges_in_flight,
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

    /// A connection with a peered service SNI that is not passed through;
    /// also counted as `gateway_tcp_open_total{sni_kind="refused"}`.
    pub(crate) fn passthrough_refused(&self, reason: Refusal) {
        self.tcp_open_refused.inc();
        self.passthrough_refused
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// A connection now passed through to a sidecar of `service`, for
    /// `peer` (both from the view, so the label sets stay bounded). The
    /// returned handles count its bytes; the guard in it keeps
    /// `gateway_passthrough_open_connections` up until it drops.
    pub(crate) fn passthrough_opened(&self, service: &str, peer: &str) -> PassthroughCounters {
        self.tcp_open_passthrough.inc();
        self.passthrough_connections
            .with_label_values(&[service, peer])
            .inc();
        self.passthrough_open.inc();
        PassthroughCounters {
            read: self.read_bytes.with_label_values(&[service, peer]),
            written: self.write_bytes.with_label_values(&[service, peer]),
            _open: OpenConnection(self.passthrough_open.clone()),
        }
    }

    /// `peer` must be a peer name from the view or [`UNKNOWN_PEER`].
    pub(crate) fn request(&self, peer: &str, endpoint: Endpoint, outcome: Outcome) {
        self.peering_requests
            .with_label_values(&[peer, endpoint.label(), outcome.label()])
            .inc();
    }

    pub(crate) fn exchange_refused(&self, reason: ExchangeRefusal) {
        self.exchange_refused
            .with_label_values(&[reason.label()])
            .inc();
    }

    pub(crate) fn exchange_started(&self) {
        self.exchanges_in_flight.inc();
    }

    pub(crate) fn exchange_finished(&self) {
        self.exchanges_in_flight.dec();
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> Result<String, prometheus::Error> {
        isthmus_runtime::metrics::encode_text(&self.registry.gather())
    }
}

/// Decrements its gauge (`gateway_tcp_open_connections`, ...) when dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(IntGauge);

/// The per-connection counters of a passed-through connection.
#[derive(Debug)]
pub(crate) struct PassthroughCounters {
    /// Bytes read from the downstream socket.
    pub(crate) read: IntCounter,
    /// Bytes written to the downstream socket.
    pub(crate) written: IntCounter,
    _open: OpenConnection,
}

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
        metrics.passthrough_refused(Refusal::NotPermitted);
        let passthrough = metrics.passthrough_opened("backend", "cluster-02");
        passthrough.read.inc_by(10);
        passthrough.written.inc_by(20);
        let text = metrics.encode().unwrap();
        assert!(text.contains("isthmus_build_info{version=\""), "{text}");
        assert!(
            text.contains("gateway_tcp_open_total{sni_kind=\"peering\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_tcp_open_total{sni_kind=\"refused\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gateway_tcp_open_total{sni_kind=\"passthrough\"} 1"),
            "{text}"
        );
        assert!(text.contains("gateway_tcp_open_connections 1"), "{text}");
        for reason in Refusal::ALL {
            let count = u8::from(reason == Refusal::NotPermitted);
            let series = format!(
                "gateway_passthrough_refused_total{{reason=\"{}\"}} {count}",
                reason.label()
            );
            assert!(text.contains(&series), "{series} in {text}");
        }
        let labels = "{peer=\"cluster-02\",service=\"backend\"}";
        for series in [
            format!("gateway_passthrough_connections_total{labels} 1"),
            format!("gateway_tcp_read_bytes_total{labels} 10"),
            format!("gateway_tcp_write_bytes_total{labels} 20"),
            "gateway_passthrough_open_connections 1".to_owned(),
        ] {
            assert!(text.contains(&series), "{series} in {text}");
        }
        drop(passthrough);
        assert!(metrics
            .encode()
            .unwrap()
            .contains("gateway_passthrough_open_connections 0"));
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
