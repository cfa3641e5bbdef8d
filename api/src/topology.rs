//! The mesh's topology as `GET /v1/internal/ui/topology` answers it: the
//! services of this cluster and those imported from each peer (nodes), and
//! who calls whom (edges), each edge saying why it is drawn (an intention,
//! a registered upstream, traffic seen in the metrics) and, when a metrics
//! provider answered, its request rate, success rate, p99 latency and
//! denied rate. Pure assembly; reading the store and Prometheus is the
//! agent's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::promql::Sample;

/// `Metrics: null` and this status when no provider is configured.
pub const NO_PROVIDER: &str = "no metrics provider configured";
/// The status when the provider answered every query.
pub const METRICS_OK: &str = "ok";
/// Why an edge is drawn.
pub const REASON_INTENTION: &str = "intention";
pub const REASON_UPSTREAM: &str = "upstream";
pub const REASON_METRICS: &str = "metrics";

/// One end of an edge: a service, here (`Peer` empty) or at a peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    pub name: String,
    pub peer: String,
}

impl Endpoint {
    pub fn new(name: &str, peer: &str) -> Endpoint {
        Endpoint {
            name: name.to_owned(),
            peer: peer.to_owned(),
        }
    }
}

/// A service: ours or imported from a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceNode {
    pub name: String,
    /// Empty for this cluster's services.
    pub peer: String,
    /// `""` (a service), `mesh-gateway`, ...; sidecars count in `Sidecars`.
    pub kind: String,
    pub instances: usize,
    /// `connect-proxy` instances in front of it.
    pub sidecars: usize,
}

/// Live figures of an edge over the last minute; `None` when unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EdgeMetrics {
    /// Requests per second.
    pub request_rate: Option<f64>,
    /// Share of responses that were not 5xx, 0 to 1.
    pub success_rate: Option<f64>,
    pub p99_latency_seconds: Option<f64>,
    /// Refusals by intentions per second (connections at L4, requests at L7).
    pub denied_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Edge {
    pub source: Endpoint,
    pub destination: Endpoint,
    /// What the intention naming this source says: `allow`, `deny` or
    /// `l7` (per-request permissions); `None` when no intention names it.
    pub intention: Option<String>,
    /// Why the edge is drawn: [`REASON_INTENTION`], [`REASON_UPSTREAM`],
    /// [`REASON_METRICS`].
    pub reasons: Vec<String>,
    /// `null`: no metrics for this edge (none configured, the provider
    /// failed, or no traffic seen).
    pub metrics: Option<EdgeMetrics>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Topology {
    pub datacenter: String,
    /// Ours first (by name), then each peer's (by peer, then name).
    pub nodes: Vec<ServiceNode>,
    pub edges: Vec<Edge>,
    /// `prometheus` or `""`.
    pub metrics_provider: String,
    /// [`METRICS_OK`], [`NO_PROVIDER`], or why the provider failed.
    pub metrics_status: String,
}

/// Collects nodes and edges, then [`TopologyBuilder::build`]s the answer.
#[derive(Debug, Default)]
pub struct TopologyBuilder {
    nodes: BTreeMap<(String, String), ServiceNode>,
    edges: BTreeMap<(Endpoint, Endpoint), Edge>,
}

impl TopologyBuilder {
    /// Counts one instance of `name` at `peer` (`""`: ours). A
    /// `connect-proxy` counts as a sidecar of the service it fronts.
    pub fn instance(&mut self, name: &str, peer: &str, kind: &str, proxy_for: Option<&str>) {
        let (service, is_sidecar) = match (kind, proxy_for) {
            ("connect-proxy", Some(destination)) if !destination.is_empty() => (destination, true),
            _ => (name, false),
        };
        let node = self
            .nodes
            .entry((peer.to_owned(), service.to_owned()))
            .or_insert_with(|| ServiceNode {
                name: service.to_owned(),
                peer: peer.to_owned(),
                kind: String::new(),
                instances: 0,
                sidecars: 0,
            });
        if is_sidecar {
            node.sidecars += 1;
        } else {
            node.instances += 1;
            node.kind = kind.to_owned();
        }
    }

    fn edge(&mut self, source: Endpoint, destination: Endpoint, reason: &str) -> &mut Edge {
        let edge = self
            .edges
            .entry((source.clone(), destination.clone()))
            .or_insert_with(|| Edge {
                source,
                destination,
                intention: None,
                reasons: Vec::new(),
                metrics: None,
            });
        if !edge.reasons.iter().any(|r| r == reason) {
            edge.reasons.push(reason.to_owned());
        }
        edge
    }

    /// An intention on `destination` naming `source`: `allow`, `deny` or `l7`.
    pub fn intention(&mut self, source: Endpoint, destination: Endpoint, action: &str) {
        self.edge(source, destination, REASON_INTENTION).intention = Some(action.to_owned());
    }

    /// A sidecar of `source` registered `destination` as an upstream.
    pub fn upstream(&mut self, source: Endpoint, destination: Endpoint) {
        self.edge(source, destination, REASON_UPSTREAM);
    }

    /// Attaches figures to an edge, adding it if only the metrics saw it.
    pub fn metrics(&mut self, source: Endpoint, destination: Endpoint, metrics: EdgeMetrics) {
        self.edge(source, destination, REASON_METRICS).metrics = Some(metrics);
    }

    /// Keeps only the nodes and edges `readable` allows (both ends of an edge).
    pub fn retain(&mut self, readable: impl Fn(&str) -> bool) {
        self.nodes.retain(|(_, name), _| readable(name));
        self.edges
            .retain(|(s, d), _| readable(&s.name) && readable(&d.name));
    }

    /// The answer; a service an edge names but the catalog does not (an
    /// upstream not registered yet, a caller seen only in the metrics) is
    /// a node with no instances.
    pub fn build(mut self, datacenter: &str, provider: &str, status: &str) -> Topology {
        let ends: Vec<Endpoint> = self
            .edges
            .keys()
            .flat_map(|(s, d)| [s.clone(), d.clone()])
            .collect();
        for end in ends {
            self.nodes
                .entry((end.peer.clone(), end.name.clone()))
                .or_insert_with(|| ServiceNode {
                    name: end.name,
                    peer: end.peer,
                    kind: String::new(),
                    instances: 0,
                    sidecars: 0,
                });
        }
        Topology {
            datacenter: datacenter.to_owned(),
            nodes: self.nodes.into_values().collect(),
            edges: self.edges.into_values().collect(),
            metrics_provider: provider.to_owned(),
            metrics_status: status.to_owned(),
        }
    }
}

/// The answers of the agent's fixed queries (see the agent's
/// `ui_metrics`), by the labels those queries keep.
#[derive(Debug, Default)]
pub struct QueryAnswers {
    /// By `service`, `src_service`, `src_peer`, `classification`: req/s.
    pub inbound_responses: Vec<Sample>,
    /// By `service`, `src_service`, `src_peer`: seconds.
    pub inbound_p99: Vec<Sample>,
    /// By `service`, `src_service`, `peer`: denials/s.
    pub denied: Vec<Sample>,
    /// By `service`, `target` (`name` or `name@peer`): req/s.
    pub outbound: Vec<Sample>,
}

/// The figures of every edge the answers mention. Inbound figures (seen by
/// the destination's sidecars, here) win; an edge to a peer's service has
/// only the request rate its callers' sidecars counted.
pub fn edge_metrics(answers: &QueryAnswers) -> BTreeMap<(Endpoint, Endpoint), EdgeMetrics> {
    #[derive(Default)]
    struct Tally {
        success: f64,
        total: f64,
        seen: bool,
    }
    let mut tallies: BTreeMap<(Endpoint, Endpoint), Tally> = BTreeMap::new();
    for sample in &answers.inbound_responses {
        let key = inbound_key(sample, "src_peer");
        let tally = tallies.entry(key).or_default();
        let value = sample.value.unwrap_or(0.0);
        tally.total += value;
        if sample.label("classification") == "success" {
            tally.success += value;
        }
        tally.seen = true;
    }
    let mut edges: BTreeMap<(Endpoint, Endpoint), EdgeMetrics> = tallies
        .into_iter()
        .filter(|(_, t)| t.seen)
        .map(|(key, t)| {
            let metrics = EdgeMetrics {
                request_rate: Some(t.total),
                success_rate: (t.total > 0.0).then(|| t.success / t.total),
                ..EdgeMetrics::default()
            };
            (key, metrics)
        })
        .collect();
    for sample in &answers.inbound_p99 {
        let metrics = edges.entry(inbound_key(sample, "src_peer")).or_default();
        metrics.p99_latency_seconds = sample.value;
    }
    for sample in &answers.denied {
        let metrics = edges.entry(inbound_key(sample, "peer")).or_default();
        *metrics.denied_rate.get_or_insert(0.0) += sample.value.unwrap_or(0.0);
    }
    for sample in &answers.outbound {
        let (name, peer) = match sample.label("target").split_once('@') {
            Some((name, peer)) => (name, peer),
            None => (sample.label("target"), ""),
        };
        if name.is_empty() || sample.label("service").is_empty() {
            continue;
        }
        let key = (
            Endpoint::new(sample.label("service"), ""),
            Endpoint::new(name, peer),
        );
        let metrics = edges.entry(key).or_default();
        if metrics.request_rate.is_none() {
            metrics.request_rate = Some(sample.value.unwrap_or(0.0));
        }
    }
    edges
        .retain(|(source, destination), _| !source.name.is_empty() && !destination.name.is_empty());
    edges
}

/// (source, destination) of an inbound series: the caller's labels, and
/// the service the sidecar fronts (ours).
fn inbound_key(sample: &Sample, peer_label: &str) -> (Endpoint, Endpoint) {
    (
        Endpoint::new(sample.label("src_service"), sample.label(peer_label)),
        Endpoint::new(sample.label("service"), ""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: Some(value),
        }
    }

    #[test]
    fn nodes_count_instances_and_sidecars() {
        let mut builder = TopologyBuilder::default();
        builder.instance("backend", "", "", None);
        builder.instance("backend", "", "", None);
        builder.instance(
            "backend-sidecar-proxy",
            "",
            "connect-proxy",
            Some("backend"),
        );
        builder.instance("gw", "", "mesh-gateway", None);
        builder.instance("frontend", "cluster-02", "", None);
        let topology = builder.build("cluster-01", "", NO_PROVIDER);
        let names: Vec<(&str, &str, usize, usize)> = topology
            .nodes
            .iter()
            .map(|n| (n.peer.as_str(), n.name.as_str(), n.instances, n.sidecars))
            .collect();
        assert_eq!(
            names,
            [
                ("", "backend", 2, 1),
                ("", "gw", 1, 0),
                ("cluster-02", "frontend", 1, 0)
            ]
        );
        assert_eq!(topology.nodes[1].kind, "mesh-gateway");
    }

    #[test]
    fn edges_say_why_and_carry_figures() {
        let mut builder = TopologyBuilder::default();
        let frontend = Endpoint::new("frontend", "cluster-02");
        let backend = Endpoint::new("backend", "");
        builder.intention(frontend.clone(), backend.clone(), "allow");
        builder.upstream(Endpoint::new("web", ""), Endpoint::new("api", "cluster-02"));
        let answers = QueryAnswers {
            inbound_responses: vec![
                sample(
                    &[
                        ("service", "backend"),
                        ("src_service", "frontend"),
                        ("src_peer", "cluster-02"),
                        ("classification", "success"),
                    ],
                    3.0,
                ),
                sample(
                    &[
                        ("service", "backend"),
                        ("src_service", "frontend"),
                        ("src_peer", "cluster-02"),
                        ("classification", "failure"),
                    ],
                    1.0,
                ),
            ],
            inbound_p99: vec![sample(
                &[
                    ("service", "backend"),
                    ("src_service", "frontend"),
                    ("src_peer", "cluster-02"),
                ],
                0.25,
            )],
            denied: vec![sample(
                &[
                    ("service", "backend"),
                    ("src_service", "intruder"),
                    ("peer", "cluster-02"),
                ],
                0.5,
            )],
            outbound: vec![
                sample(&[("service", "web"), ("target", "api@cluster-02")], 2.0),
                sample(&[("service", "web"), ("target", "")], 2.0),
            ],
        };
        for ((source, destination), metrics) in edge_metrics(&answers) {
            builder.metrics(source, destination, metrics);
        }
        let topology = builder.build("cluster-01", "prometheus", METRICS_OK);
        let find = |s: &str, d: &str| {
            topology
                .edges
                .iter()
                .find(|e| e.source.name == s && e.destination.name == d)
                .unwrap_or_else(|| panic!("no edge {s} -> {d}: {:?}", topology.edges))
        };
        let edge = find("frontend", "backend");
        assert_eq!(edge.intention.as_deref(), Some("allow"));
        assert_eq!(edge.reasons, ["intention", "metrics"]);
        let m = edge.metrics.as_ref().unwrap();
        assert_eq!(m.request_rate, Some(4.0));
        assert_eq!(m.success_rate, Some(0.75));
        assert_eq!(m.p99_latency_seconds, Some(0.25));
        assert_eq!(m.denied_rate, None);
        let denied = find("intruder", "backend");
        assert_eq!(denied.source.peer, "cluster-02");
        assert_eq!(denied.reasons, ["metrics"]);
        assert_eq!(denied.metrics.as_ref().unwrap().denied_rate, Some(0.5));
        let outbound = find("web", "api");
        assert_eq!(outbound.reasons, ["upstream", "metrics"]);
        assert_eq!(outbound.destination.peer, "cluster-02");
        assert_eq!(outbound.metrics.as_ref().unwrap().request_rate, Some(2.0));
        assert_eq!(topology.edges.len(), 3);
    }

    #[test]
    fn retain_drops_nodes_and_edges_touching_unreadable_services() {
        let mut builder = TopologyBuilder::default();
        builder.instance("backend", "", "", None);
        builder.instance("secret", "", "", None);
        builder.intention(
            Endpoint::new("secret", ""),
            Endpoint::new("backend", ""),
            "deny",
        );
        builder.intention(
            Endpoint::new("web", ""),
            Endpoint::new("backend", ""),
            "allow",
        );
        builder.retain(|name| name != "secret");
        let topology = builder.build("dc1", "", NO_PROVIDER);
        assert_eq!(topology.edges.len(), 1);
        let names: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["backend", "web"],
            "web: an edge's end with no instance"
        );
        assert_eq!(topology.edges[0].source.name, "web");
    }
}
