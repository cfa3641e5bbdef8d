//! The proxy's Prometheus metrics, in Linkerd's vocabulary. Each proxy has
//! its own registry (so several can run in one process). Label handles are
//! resolved ahead of time (per direction, per upstream, per connection), so
//! the data path only touches atomics; encoding happens on the admin side.

use std::sync::OnceLock;
use std::time::Instant;

use http::StatusCode;
use isthmus_api::http_path::PathError;
use isthmus_dataplane::io::CountingIo;
use isthmus_runtime::metrics::counter_vec;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Response latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];
/// Status codes 100..=999 each get a lazily resolved counter.
const STATUSES: usize = 900;

/// The `src_service` label for callers no intention names.
pub(crate) const OTHER_SOURCE: &str = "other";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Why an inbound connection went nowhere (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InboundError {
    /// Refused: no leaf certificate or proxy view yet.
    NotReady,
    /// The TLS handshake failed (untrusted, expired or missing client certificate...).
    Handshake,
    /// The caller closed the connection before the handshake finished (TCP health checks do).
    Closed,
    Timeout,
    /// The client certificate carries no usable service identity.
    Identity,
    /// The local application could not be reached (TCP mode).
    LocalApp,
}

impl InboundError {
    const ALL: [InboundError; 6] = [
        InboundError::NotReady,
        InboundError::Handshake,
        InboundError::Closed,
        InboundError::Timeout,
        InboundError::Identity,
        InboundError::LocalApp,
    ];

    fn label(self) -> &'static str {
        match self {
            InboundError::NotReady => "not_ready",
            InboundError::Handshake => "handshake",
            InboundError::Closed => "closed",
            InboundError::Timeout => "timeout",
            InboundError::Identity => "identity",
            InboundError::LocalApp => "local_app",
        }
    }
}

/// What went wrong on the way to an upstream (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutboundError {
    /// No leaf certificate, proxy view or upstream view yet.
    NotReady,
    NoEndpoint,
    /// The TCP connection was refused or failed.
    Connect,
    /// Connecting (TCP and TLS) took too long.
    Timeout,
    /// The TLS handshake failed: typically the server's identity is wrong.
    Tls,
    /// The upstream's proxy did not speak the expected protocol.
    Protocol,
    /// The request failed after it was sent.
    Request,
}

impl OutboundError {
    const ALL: [OutboundError; 7] = [
        OutboundError::NotReady,
        OutboundError::NoEndpoint,
        OutboundError::Connect,
        OutboundError::Timeout,
        OutboundError::Tls,
        OutboundError::Protocol,
        OutboundError::Request,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            OutboundError::NotReady => "not_ready",
            OutboundError::NoEndpoint => "no_endpoint",
            OutboundError::Connect => "connect",
            OutboundError::Timeout => "timeout",
            OutboundError::Tls => "tls",
            OutboundError::Protocol => "protocol",
            OutboundError::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    L4,
    L7,
}

impl Layer {
    fn label(self) -> &'static str {
        match self {
            Layer::L4 => "l4",
            Layer::L7 => "l7",
        }
    }
}

/// Request and connection metrics of one direction.
#[derive(Debug)]
pub(crate) struct Traffic {
    direction: &'static str,
    requests: IntCounter,
    responses: IntCounterVec,
    by_status: Box<[OnceLock<IntCounter>]>,
    latency: Histogram,
    tcp_open: IntCounter,
    tcp_close: IntCounter,
    open: IntGauge,
    pub(crate) read_bytes: IntCounter,
    pub(crate) write_bytes: IntCounter,
}

struct Families {
    requests: IntCounterVec,
    responses: IntCounterVec,
    latency: HistogramVec,
    tcp_open: IntCounterVec,
    tcp_close: IntCounterVec,
    open: IntGaugeVec,
    read_bytes: IntCounterVec,
    write_bytes: IntCounterVec,
}

impl Traffic {
    /// `io`, counting its bytes into this direction's
    /// `tcp_read_bytes_total` / `tcp_write_bytes_total`.
    pub(crate) fn count<T>(&self, io: T) -> CountingIo<T> {
        CountingIo::new(io, self.read_bytes.clone(), self.write_bytes.clone())
    }
}

impl Traffic {
    fn new(families: &Families, direction: Direction, tls: &str) -> Traffic {
        let d = direction.label();
        Traffic {
            direction: d,
            requests: families.requests.with_label_values(&[d]),
            responses: families.responses.clone(),
            by_status: (0..STATUSES).map(|_| OnceLock::new()).collect(),
            latency: families.latency.with_label_values(&[d]),
            tcp_open: families.tcp_open.with_label_values(&[d, tls]),
            tcp_close: families.tcp_close.with_label_values(&[d]),
            open: families.open.with_label_values(&[d]),
            read_bytes: families.read_bytes.with_label_values(&[d]),
            write_bytes: families.write_bytes.with_label_values(&[d]),
        }
    }

    pub(crate) fn request(&self) {
        self.requests.inc();
    }

    /// Counts a response (when its headers are ready) and its latency.
    pub(crate) fn response(&self, status: StatusCode, started: Instant) {
        self.latency.observe(started.elapsed().as_secs_f64());
        let code = status.as_u16();
        let counter = self.by_status[usize::from(code - 100)].get_or_init(|| {
            let classification = if code >= 500 { "failure" } else { "success" };
            self.responses
                .with_label_values(&[self.direction, status.as_str(), classification])
        });
        counter.inc();
    }

    /// Counts an accepted connection until the guard drops.
    pub(crate) fn connection(&self) -> OpenConnection {
        self.tcp_open.inc();
        self.open.inc();
        OpenConnection {
            open: self.open.clone(),
            close: self.tcp_close.clone(),
        }
    }
}

/// Counts the close of a connection when dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    open: IntGauge,
    close: IntCounter,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.dec();
        self.close.inc();
    }
}

/// The responses one caller received from the inbound side: what makes a
/// service-to-service edge (rate, success, latency) computable without the
/// scrape's own labels. Resolved once per connection.
#[derive(Debug)]
pub(crate) struct SourceTraffic {
    success: IntCounter,
    failure: IntCounter,
    latency: Histogram,
}

impl SourceTraffic {
    pub(crate) fn response(&self, status: StatusCode, started: Instant) {
        self.latency.observe(started.elapsed().as_secs_f64());
        if status.is_server_error() {
            self.failure.inc();
        } else {
            self.success.inc();
        }
    }
}

/// Outbound error counters of one upstream.
#[derive(Debug)]
pub(crate) struct UpstreamErrors(Box<[IntCounter]>);

impl UpstreamErrors {
    pub(crate) fn count(&self, kind: OutboundError) {
        let at = OutboundError::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.0[at].inc();
    }
}

/// Hands out an upstream's request counter for a target, once per route.
#[derive(Debug)]
pub(crate) struct UpstreamTargets {
    upstream: String,
    family: IntCounterVec,
}

impl UpstreamTargets {
    pub(crate) fn counter(&self, target: &str) -> IntCounter {
        self.family.with_label_values(&[&self.upstream, target])
    }
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) inbound: Traffic,
    pub(crate) outbound: Traffic,
    authorization: IntCounterVec,
    /// Inbound responses and latency by caller (`src_service`, `src_peer`),
    /// bounded like `inbound_authorization_total`'s labels.
    source_responses: IntCounterVec,
    source_latency: HistogramVec,
    /// `isthmus_proxy_info{service, datacenter}` = 1 once the leaf is in.
    info: IntGaugeVec,
    inbound_errors: Box<[IntCounter]>,
    /// By [`PathError::ALL`]'s order.
    inbound_request_errors: Box<[IntCounter]>,
    outbound_errors: IntCounterVec,
    /// Per upstream and chosen target (`service` or `service@peer`): one
    /// value per target a resolver names, so bounded by configuration.
    outbound_targets: IntCounterVec,
    /// Cap refusals and timeouts, per listener (`inbound`, `outbound`, `admin`).
    pub(crate) inbound_listener: isthmus_runtime::listen::ListenerCounters,
    pub(crate) outbound_listener: isthmus_runtime::listen::ListenerCounters,
    pub(crate) admin_listener: isthmus_runtime::listen::ListenerCounters,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = isthmus_runtime::metrics::component_registry()?;

        let r = &registry;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "response_latency_seconds",
                "Time from a request's arrival to its response's headers",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["direction"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        let open = IntGaugeVec::new(
            Opts::new("tcp_open_connections", "Connections currently open"),
            &["direction"],
        )?;
        registry.register(Box::new(open.clone()))?;
        let families = Families {
            requests: counter_vec(r, "request_total", "HTTP requests received", &["direction"])?,
            responses: counter_vec(
                r,
                "response_total",
                "HTTP responses sent, by status and classification",
                &["direction", "status_code", "classification"],
            )?,
            latency,
            tcp_open: counter_vec(
                r,
                "tcp_open_total",
                "Connections accepted",
                &["direction", "tls"],
            )?,
            tcp_close: counter_vec(r, "tcp_close_total", "Connections closed", &["direction"])?,
            open,
            read_bytes: counter_vec(
                r,
                "tcp_read_bytes_total",
                "Bytes read from accepted connections",
                &["direction"],
            )?,
            write_bytes: counter_vec(
                r,
                "tcp_write_bytes_total",
                "Bytes written to accepted connections",
                &["direction"],
            )?,
        };
        let authorization = counter_vec(
            r,
            "inbound_authorization_total",
            "Intention decisions: per connection at L4, per request at L7",
            &["decision", "layer", "src_service", "peer"],
        )?;
        let source_responses = counter_vec(
            r,
            "inbound_source_response_total",
            "Inbound HTTP responses by caller (src_service as in inbound_authorization_total, src_peer \"\" for local callers) and classification",
            &["src_service", "src_peer", "classification"],
        )?;
        let source_latency = HistogramVec::new(
            HistogramOpts::new(
                "inbound_source_response_latency_seconds",
                "Time from an inbound request's arrival to its response's headers, by caller",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["src_service", "src_peer"],
        )?;
        registry.register(Box::new(source_latency.clone()))?;
        let info = IntGaugeVec::new(
            Opts::new(
                "isthmus_proxy_info",
                "1 for the service this sidecar fronts and its datacenter (join on instance and job to name the service of any series)",
            ),
            &["service", "datacenter"],
        )?;
        registry.register(Box::new(info.clone()))?;
        let inbound_errors = counter_vec(
            r,
            "inbound_connection_errors_total",
            "Inbound connections that went nowhere, by why",
            &["kind"],
        )?;
        let inbound_request_errors = counter_vec(
            r,
            "inbound_request_errors_total",
            "Inbound HTTP requests refused before authorization (400), by why: their path cannot be normalized",
            &["kind"],
        )?;
        let outbound_errors = counter_vec(
            r,
            "outbound_errors_total",
            "Outbound requests or connections that failed, by upstream and kind",
            &["upstream", "kind"],
        )?;
        let outbound_targets = counter_vec(
            r,
            "outbound_target_requests_total",
            "Outbound HTTP requests or TCP connections sent, by upstream and the target its chain chose",
            &["upstream", "target"],
        )?;
        let listeners = isthmus_runtime::listen::ListenerMetrics::register(r, "")?;
        Ok(Metrics {
            inbound_listener: listeners.listener("inbound"),
            outbound_listener: listeners.listener("outbound"),
            admin_listener: listeners.listener("admin"),
            inbound: Traffic::new(&families, Direction::Inbound, "true"),
            outbound: Traffic::new(&families, Direction::Outbound, "disabled"),
            authorization,
            source_responses,
            source_latency,
            info,
            inbound_errors: InboundError::ALL
                .iter()
                .map(|k| inbound_errors.with_label_values(&[k.label()]))
                .collect(),
            inbound_request_errors: PathError::ALL
                .iter()
                .map(|k| inbound_request_errors.with_label_values(&[k.label()]))
                .collect(),
            outbound_errors,
            outbound_targets,
            registry,
        })
    }

    pub(crate) fn inbound_error(&self, kind: InboundError) {
        let at = InboundError::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.inbound_errors[at].inc();
    }

    /// Counts an inbound request refused because its path is invalid.
    pub(crate) fn inbound_path_refused(&self, kind: PathError) {
        let at = PathError::ALL
            .iter()
            .position(|k| *k == kind)
            .expect("every kind is listed");
        self.inbound_request_errors[at].inc();
    }

    /// The error counters of one upstream (`label` is bounded by configuration).
    pub(crate) fn upstream_errors(&self, upstream: &str) -> UpstreamErrors {
        UpstreamErrors(
            OutboundError::ALL
                .iter()
                .map(|k| {
                    self.outbound_errors
                        .with_label_values(&[upstream, k.label()])
                })
                .collect(),
        )
    }

    /// The per-target request counters of one upstream.
    pub(crate) fn upstream_targets(&self, upstream: &str) -> UpstreamTargets {
        UpstreamTargets {
            upstream: upstream.to_owned(),
            family: self.outbound_targets.clone(),
        }
    }

    /// The counter of one decision. `src_service` must be a name the
    /// intentions know or [`OTHER_SOURCE`]; `peer` a peering's name or "".
    pub(crate) fn authorization(
        &self,
        allow: bool,
        layer: Layer,
        src_service: &str,
        peer: &str,
    ) -> IntCounter {
        let decision = if allow { "allow" } else { "deny" };
        self.authorization
            .with_label_values(&[decision, layer.label(), src_service, peer])
    }

    /// The response counters and latency of one caller; its labels are
    /// bounded as [`Metrics::authorization`]'s are.
    pub(crate) fn source_traffic(&self, src_service: &str, peer: &str) -> SourceTraffic {
        SourceTraffic {
            success: self
                .source_responses
                .with_label_values(&[src_service, peer, "success"]),
            failure: self
                .source_responses
                .with_label_values(&[src_service, peer, "failure"]),
            latency: self.source_latency.with_label_values(&[src_service, peer]),
        }
    }

    /// Names the service this sidecar fronts and its datacenter (from its
    /// leaf certificate) in `isthmus_proxy_info`; the only series it has.
    pub(crate) fn identify(&self, service: &str, datacenter: &str) {
        let gauge = self.info.with_label_values(&[service, datacenter]);
        if gauge.get() != 1 {
            self.info.reset();
            self.info.with_label_values(&[service, datacenter]).set(1);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn encode(&self) -> Result<String, prometheus::Error> {
        isthmus_runtime::metrics::encode_text(&self.registry.gather())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_every_family() {
        let metrics = Metrics::new().unwrap();
        let guard = metrics.inbound.connection();
        metrics.inbound.request();
        metrics
            .inbound
            .response(StatusCode::FORBIDDEN, Instant::now());
        metrics
            .outbound
            .response(StatusCode::SERVICE_UNAVAILABLE, Instant::now());
        metrics.authorization(false, Layer::L7, "web", "").inc();
        let web = metrics.source_traffic("web", "cluster-02");
        web.response(StatusCode::OK, Instant::now());
        web.response(StatusCode::BAD_GATEWAY, Instant::now());
        metrics.identify("api", "dc1");
        metrics.inbound_error(InboundError::Handshake);
        metrics.inbound_path_refused(PathError::EncodedSlash);
        metrics
            .upstream_errors("backend@c2")
            .count(OutboundError::NoEndpoint);
        let text = metrics.encode().unwrap();
        for want in [
            "isthmus_build_info{version=\"",
            "request_total{direction=\"inbound\"} 1",
            "response_total{classification=\"success\",direction=\"inbound\",status_code=\"403\"} 1",
            "response_total{classification=\"failure\",direction=\"outbound\",status_code=\"503\"} 1",
            "response_latency_seconds_bucket{direction=\"inbound\",le=\"0.001\"}",
            "tcp_open_total{direction=\"inbound\",tls=\"true\"} 1",
            "tcp_open_connections{direction=\"inbound\"} 1",
            "inbound_authorization_total{decision=\"deny\",layer=\"l7\",peer=\"\",src_service=\"web\"} 1",
            "inbound_connection_errors_total{kind=\"handshake\"} 1",
            "inbound_request_errors_total{kind=\"path_encoded_slash\"} 1",
            "inbound_request_errors_total{kind=\"path_backslash\"} 0",
            "outbound_errors_total{kind=\"no_endpoint\",upstream=\"backend@c2\"} 1",
            "inbound_source_response_total{classification=\"success\",src_peer=\"cluster-02\",src_service=\"web\"} 1",
            "inbound_source_response_total{classification=\"failure\",src_peer=\"cluster-02\",src_service=\"web\"} 1",
            "inbound_source_response_latency_seconds_count{src_peer=\"cluster-02\",src_service=\"web\"} 2",
            "isthmus_proxy_info{datacenter=\"dc1\",service=\"api\"} 1",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        drop(guard);
        let text = metrics.encode().unwrap();
        assert!(text.contains("tcp_open_connections{direction=\"inbound\"} 0"));
        assert!(text.contains("tcp_close_total{direction=\"inbound\"} 1"));
        metrics.identify("api", "dc2");
        let text = metrics.encode().unwrap();
        assert!(text.contains("isthmus_proxy_info{datacenter=\"dc2\",service=\"api\"} 1"));
        assert!(
            !text.contains("datacenter=\"dc1\""),
            "one info series: {text}"
        );
    }
}
