//! The agent's Prometheus metrics.
//!
//! Each agent has its own registry, because several agents run in one test
//! process. Two kinds of figures:
//! - counters (replication messages and errors, HTTP requests), kept in the
//!   registry and bumped on the hot paths through pre-resolved handles, so
//!   an increment is an atomic add;
//! - gauges (peering health and state, imported and exported services,
//!   catalog sizes), computed at scrape time from one store snapshot
//!   ([`scrape`]), so they cannot drift from the store and a deleted
//!   peering's series vanish with it.

pub mod scrape;
pub mod summary;

use http::{Method, StatusCode};
use isthmus_api::peering::StreamMessage;
use isthmus_api::peering_limits::InvalidReason;
use prometheus::proto::MetricFamily;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The Content-Type of the Prometheus text exposition format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A replication stream message's kind: the bounded `type` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Open,
    ExportedServices,
    Service,
    TrustBundle,
    Gateways,
    Heartbeat,
    Terminate,
    GatewayCertificate,
}

impl MessageType {
    pub const ALL: [MessageType; 8] = [
        MessageType::Open,
        MessageType::ExportedServices,
        MessageType::Service,
        MessageType::TrustBundle,
        MessageType::Gateways,
        MessageType::Heartbeat,
        MessageType::Terminate,
        MessageType::GatewayCertificate,
    ];

    pub fn of(message: &StreamMessage) -> MessageType {
        match message {
            StreamMessage::Open { .. } => MessageType::Open,
            StreamMessage::ExportedServices { .. } => MessageType::ExportedServices,
            StreamMessage::Service { .. } => MessageType::Service,
            StreamMessage::TrustBundle { .. } => MessageType::TrustBundle,
            StreamMessage::Gateways { .. } => MessageType::Gateways,
            StreamMessage::Heartbeat => MessageType::Heartbeat,
            StreamMessage::Terminate => MessageType::Terminate,
            StreamMessage::GatewayCertificate { .. } => MessageType::GatewayCertificate,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            MessageType::Open => "open",
            MessageType::ExportedServices => "exported_services",
            MessageType::Service => "service",
            MessageType::TrustBundle => "trust_bundle",
            MessageType::Gateways => "gateways",
            MessageType::Heartbeat => "heartbeat",
            MessageType::Terminate => "terminate",
            MessageType::GatewayCertificate => "gateway_certificate",
        }
    }
}

/// The `direction` label of replication messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Sent, Direction::Received];

    pub fn label(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// Why a replication stream failed: the bounded `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorReason {
    /// The dialer could not open the stream (connect, TLS, HTTP status).
    Dial,
    /// The transport closed or failed under a running session.
    Disconnected,
    /// Nothing heard for three heartbeat intervals.
    Silent,
    /// The peer broke the protocol.
    Protocol,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 4] = [
        ErrorReason::Dial,
        ErrorReason::Disconnected,
        ErrorReason::Silent,
        ErrorReason::Protocol,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorReason::Dial => "dial",
            ErrorReason::Disconnected => "disconnected",
            ErrorReason::Silent => "silent",
            ErrorReason::Protocol => "protocol",
        }
    }
}

/// One peer's replication counters, resolved once per session (or dial
/// loop) so that counting a message is an atomic add, with no map lookup.
/// Handles kept past the peering's deletion count into series no longer
/// exported, so a late message cannot bring a deleted peer's series back.
#[derive(Clone)]
pub struct PeerCounters {
    sent: Vec<IntCounter>,
    received: Vec<IntCounter>,
    errors: Vec<IntCounter>,
    rejected: Vec<IntCounter>,
}

impl PeerCounters {
    pub fn message(&self, direction: Direction, message: &StreamMessage) {
        self.count(direction, MessageType::of(message));
    }

    pub fn count(&self, direction: Direction, message_type: MessageType) {
        let index = message_type as usize;
        match direction {
            Direction::Sent => self.sent[index].inc(),
            Direction::Received => self.received[index].inc(),
        }
    }

    pub fn error(&self, reason: ErrorReason) {
        self.errors[reason as usize].inc();
    }

    /// A message from the peer dropped as invalid.
    pub fn rejected(&self, reason: InvalidReason) {
        self.rejected[reason as usize].inc();
    }
}

/// The replication counters and gateway probe results of every peer, as
/// the peering code records them: cheap to clone (the series are shared
/// with the registry).
#[derive(Clone)]
pub struct PeerMetrics {
    replication_messages: IntCounterVec,
    replication_errors: IntCounterVec,
    replication_rejected: IntCounterVec,
    gateway_alive: IntGaugeVec,
    gateway_probe_duration: HistogramVec,
}

/// Probe latencies from loopback (well under a millisecond) to a slow WAN
/// link (seconds; a probe never waits longer than 10s).
const PROBE_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The agent's registry and the counters the hot paths bump.
pub struct AgentMetrics {
    registry: Registry,
    /// Replication counters, by peer.
    pub peers: PeerMetrics,
    http_requests: IntCounterVec,
    /// The HTTP API listener's refusals and timeouts.
    pub api_listener: isthmus_runtime::listen::ListenerCounters,
    /// The HTTPS API listener's (`listener="api_https"`), TLS handshake
    /// timeouts included.
    pub api_https_listener: isthmus_runtime::listen::ListenerCounters,
    /// Requests refused for a foreign `Origin` or `Host`, by reason.
    http_refused: [IntCounter; 2],
    /// Limits the log lines of refused requests to one per burst.
    pub request_refusal_log: isthmus_runtime::listen::BurstLog,
}

/// Why the API refused a request before routing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestRefusal {
    /// `Origin` is not the API's own origin (a cross-origin web page).
    Origin,
    /// `Host` names neither an IP address, localhost nor a configured name
    /// (DNS rebinding).
    Host,
}

impl RequestRefusal {
    pub const ALL: [RequestRefusal; 2] = [RequestRefusal::Origin, RequestRefusal::Host];

    pub fn label(self) -> &'static str {
        match self {
            RequestRefusal::Origin => "origin",
            RequestRefusal::Host => "host",
        }
    }
}

impl PeerMetrics {
    /// `peer`'s counters, every series created (at zero if new) so that
    /// rates work from the first scrape. `peer` must name a stored peering:
    /// that is what bounds the label.
    pub fn peer(&self, peer: &str) -> PeerCounters {
        let resolve = |direction: Direction| {
            MessageType::ALL
                .iter()
                .map(|t| {
                    self.replication_messages.with_label_values(&[
                        peer,
                        direction.label(),
                        t.label(),
                    ])
                })
                .collect()
        };
        PeerCounters {
            sent: resolve(Direction::Sent),
            received: resolve(Direction::Received),
            errors: ErrorReason::ALL
                .iter()
                .map(|r| {
                    self.replication_errors
                        .with_label_values(&[peer, r.label()])
                })
                .collect(),
            rejected: InvalidReason::ALL
                .iter()
                .map(|r| {
                    self.replication_rejected
                        .with_label_values(&[peer, r.label()])
                })
                .collect(),
        }
    }

    /// One gateway probe of `peer` (a stored peering, which bounds the
    /// label): `Some(duration)` if it was answered, `None` if it failed.
    /// Only answered probes go into the histogram: a failed one lasts as
    /// long as its timeout, which says nothing about the link.
    pub fn gateway_probed(&self, peer: &str, answered_in: Option<std::time::Duration>) {
        self.gateway_alive
            .with_label_values(&[peer])
            .set(i64::from(answered_in.is_some()));
        if let Some(duration) = answered_in {
            self.gateway_probe_duration
                .with_label_values(&[peer])
                .observe(duration.as_secs_f64());
        }
    }

    /// Drops `peer`'s probe series (its peering is gone, or this agent no
    /// longer leads and so no longer probes).
    pub fn forget_gateway_probes(&self, peer: &str) {
        let _ = self.gateway_alive.remove_label_values(&[peer]);
        let _ = self.gateway_probe_duration.remove_label_values(&[peer]);
    }

    /// Drops every counter series of a deleted peering.
    pub fn forget_peer(&self, peer: &str) {
        self.forget_gateway_probes(peer);
        for direction in Direction::ALL {
            for t in MessageType::ALL {
                let _ = self.replication_messages.remove_label_values(&[
                    peer,
                    direction.label(),
                    t.label(),
                ]);
            }
        }
        for reason in ErrorReason::ALL {
            let _ = self
                .replication_errors
                .remove_label_values(&[peer, reason.label()]);
        }
        for reason in InvalidReason::ALL {
            let _ = self
                .replication_rejected
                .remove_label_values(&[peer, reason.label()]);
        }
    }
}

impl AgentMetrics {
    /// The registry, for components that register their own counters
    /// (the DNS interface).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn new() -> Result<AgentMetrics, prometheus::Error> {
        let registry = isthmus_runtime::metrics::component_registry()?;

        let replication_messages = IntCounterVec::new(
            Opts::new(
                "isthmus_peering_replication_messages_total",
                "Replication stream messages, by peer, direction (sent or received) and message type",
            ),
            &["peer", "direction", "type"],
        )?;
        registry.register(Box::new(replication_messages.clone()))?;

        let replication_errors = IntCounterVec::new(
            Opts::new(
                "isthmus_peering_replication_errors_total",
                "Replication streams that failed to open or broke, by peer and reason",
            ),
            &["peer", "reason"],
        )?;
        registry.register(Box::new(replication_errors.clone()))?;

        let replication_rejected = IntCounterVec::new(
            Opts::new(
                "isthmus_peering_replication_rejected_total",
                "Replication messages from a peer dropped as invalid (nothing of them stored), by peer and reason",
            ),
            &["peer", "reason"],
        )?;
        registry.register(Box::new(replication_rejected.clone()))?;

        let gateway_alive = IntGaugeVec::new(
            Opts::new(
                "isthmus_peering_gateway_alive",
                "Whether the last probe of the peer's mesh gateways over the peering's mTLS was answered (1) or not (0); exported by the leader",
            ),
            &["peer"],
        )?;
        registry.register(Box::new(gateway_alive.clone()))?;

        let gateway_probe_duration = HistogramVec::new(
            HistogramOpts::new(
                "isthmus_peering_gateway_probe_duration_seconds",
                "How long answered probes of the peer's mesh gateways took (connect, mTLS handshake, probe request), by peer",
            )
            .buckets(PROBE_BUCKETS.to_vec()),
            &["peer"],
        )?;
        registry.register(Box::new(gateway_probe_duration.clone()))?;

        let http_requests = IntCounterVec::new(
            Opts::new(
                "isthmus_http_requests_total",
                "Requests answered by the agent's HTTP API, by method and status code",
            ),
            &["method", "code"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;

        let listeners =
            isthmus_runtime::listen::ListenerMetrics::register(&registry, "isthmus_http_")?;
        let http_refused = isthmus_runtime::metrics::counter_vec(
            &registry,
            "isthmus_http_requests_refused_total",
            "Requests the HTTP API refused with 403 before routing, by reason \
             (origin: a cross-origin web page; host: a Host name not allowed, as DNS rebinding sends)",
            &["reason"],
        )?;

        Ok(AgentMetrics {
            registry,
            peers: PeerMetrics {
                replication_messages,
                replication_errors,
                replication_rejected,
                gateway_alive,
                gateway_probe_duration,
            },
            http_requests,
            api_listener: listeners.listener("api"),
            api_https_listener: listeners.listener("api_https"),
            request_refusal_log: Default::default(),
            http_refused: RequestRefusal::ALL.map(|r| http_refused.with_label_values(&[r.label()])),
        })
    }

    pub fn http_request(&self, method: &Method, status: StatusCode) {
        self.http_requests
            .with_label_values(&[method_label(method), status.as_str()])
            .inc();
    }

    pub fn http_refused(&self, reason: RequestRefusal) {
        self.http_refused[reason as usize].inc();
    }

    /// Every family: the registry's and the scrape-time ones, by name.
    pub fn gather(
        &self,
        figures: &scrape::Figures,
    ) -> Result<Vec<MetricFamily>, prometheus::Error> {
        let mut families = self.registry.gather();
        families.extend(figures.families()?);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(families)
    }
}

pub use isthmus_runtime::metrics::encode_text;

/// Standard methods by name; anything else is `OTHER`, so a client cannot
/// mint label values.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(metrics: &AgentMetrics) -> String {
        encode_text(&metrics.gather(&scrape::Figures::default()).unwrap()).unwrap()
    }

    #[test]
    fn counts_messages_per_peer_direction_and_type() {
        let metrics = AgentMetrics::new().unwrap();
        let peer = metrics.peers.peer("cluster-02");
        peer.message(Direction::Sent, &StreamMessage::Heartbeat);
        peer.message(Direction::Sent, &StreamMessage::Heartbeat);
        peer.message(
            Direction::Received,
            &StreamMessage::ExportedServices { services: vec![] },
        );
        peer.error(ErrorReason::Silent);
        let text = text(&metrics);
        for series in [
            r#"isthmus_peering_replication_messages_total{direction="sent",peer="cluster-02",type="heartbeat"} 2"#,
            r#"isthmus_peering_replication_messages_total{direction="received",peer="cluster-02",type="exported_services"} 1"#,
            r#"isthmus_peering_replication_messages_total{direction="received",peer="cluster-02",type="terminate"} 0"#,
            r#"isthmus_peering_replication_errors_total{peer="cluster-02",reason="silent"} 1"#,
            r#"isthmus_peering_replication_errors_total{peer="cluster-02",reason="dial"} 0"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert!(text.contains("isthmus_build_info{version=\""), "{text}");
    }

    #[test]
    fn forgetting_a_peer_removes_its_series_and_late_counts_stay_hidden() {
        let metrics = AgentMetrics::new().unwrap();
        let gone = metrics.peers.peer("gone");
        let kept = metrics.peers.peer("kept");
        gone.message(Direction::Sent, &StreamMessage::Heartbeat);
        kept.message(Direction::Sent, &StreamMessage::Heartbeat);
        metrics.peers.forget_peer("gone");
        // A session that still holds its handles counts into the void.
        gone.message(Direction::Sent, &StreamMessage::Heartbeat);
        gone.error(ErrorReason::Disconnected);
        gone.rejected(InvalidReason::NotExported);
        kept.rejected(InvalidReason::GatewayAddress);
        let text = text(&metrics);
        assert!(
            text.contains("isthmus_peering_replication_rejected_total{peer=\"kept\",reason=\"gateway_address\"} 1"),
            "{text}"
        );
        assert!(!text.contains("peer=\"gone\""), "{text}");
        assert!(text.contains("peer=\"kept\""), "{text}");
    }

    #[test]
    fn gateway_probes_set_alive_and_observe_answered_ones_until_forgotten() {
        let metrics = AgentMetrics::new().unwrap();
        metrics
            .peers
            .gateway_probed("cluster-02", Some(std::time::Duration::from_millis(3)));
        metrics.peers.gateway_probed("cluster-03", None);
        let text = text(&metrics);
        for series in [
            r#"isthmus_peering_gateway_alive{peer="cluster-02"} 1"#,
            r#"isthmus_peering_gateway_alive{peer="cluster-03"} 0"#,
            r#"isthmus_peering_gateway_probe_duration_seconds_count{peer="cluster-02"} 1"#,
            r#"isthmus_peering_gateway_probe_duration_seconds_bucket{peer="cluster-02",le="0.005"} 1"#,
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        assert!(
            !text.contains(
                r#"isthmus_peering_gateway_probe_duration_seconds_count{peer="cluster-03"}"#
            ),
            "{text}"
        );
        metrics.peers.forget_peer("cluster-02");
        metrics.peers.forget_gateway_probes("cluster-03");
        let after = super::tests::text(&metrics);
        assert!(!after.contains("isthmus_peering_gateway_"), "{after}");
    }

    #[test]
    fn http_labels_are_bounded() {
        let metrics = AgentMetrics::new().unwrap();
        metrics.http_request(&Method::GET, StatusCode::OK);
        metrics.http_request(&Method::GET, StatusCode::OK);
        metrics.http_request(
            &Method::from_bytes(b"BREW").unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
        );
        let text = text(&metrics);
        assert!(
            text.contains(r#"isthmus_http_requests_total{code="200",method="GET"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"isthmus_http_requests_total{code="405",method="OTHER"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn every_message_type_has_its_own_slot() {
        for (i, t) in MessageType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
        for (i, r) in ErrorReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, r) in InvalidReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }
}
