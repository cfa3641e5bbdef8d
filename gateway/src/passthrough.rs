//! Service traffic passed through by SNI. A peer's sidecar dials this
//! gateway with the SNI `<svc>.<ns>.<partition>.<peer>.external.<td>`; when
//! the view says that service is exported to that peer (and the peer may
//! connect to it), the connection is spliced to one of the service's
//! healthy sidecars *without terminating TLS*: the ClientHello was only
//! peeked, so the sidecar receives the caller's handshake untouched and
//! authenticates the caller's own certificate (end-to-end mTLS). The
//! gateway never sees the plaintext; intentions are the sidecar's job.
//!
//! | check (in order) | refusal reason |
//! |---|---|
//! | `<td>` is this cluster's trust domain | `trust_domain` |
//! | `<peer>` is a peering of ours (our name for the importer) in state `ACTIVE`, `ESTABLISHING` or `FAILING` | `peer` |
//! | `<ns>` and `<partition>` are `default`, `<svc>` is in the peer's exported services | `not_exported` |
//! | the peer's auth groups grant `can_connect` on `<svc>` | `not_permitted` |
//! | the view lists at least one endpoint for `<svc>` | `no_endpoint` |
//! | one of the endpoints accepts a TCP connection within [`CONNECT_TIMEOUT`] | `connect_failed` |
//!
//! The checks run against the view current when the connection arrives; a
//! later view (a service no longer exported, a peering deleted) applies to
//! new connections, not to connections already passed through.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use isthmus_api::auth::can_connect_service;
use isthmus_api::gateway::GatewayView;
use isthmus_api::naming::{PeeredSni, DEFAULT_NAMESPACE, DEFAULT_PARTITION};
use isthmus_api::peering::{STATE_ACTIVE, STATE_ESTABLISHING, STATE_FAILING};
use isthmus_dataplane::io::{splice, CountingIo, Spliced};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::metrics::{Metrics, Refusal};

/// How long one endpoint may take to accept the TCP connection.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an accepted connection goes: the view's spelling of the service
/// and peer (used as metric labels) and the service's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) service: String,
    pub(crate) peer: String,
    pub(crate) endpoints: Vec<String>,
}

/// Why a connection is not passed through, with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) reason: Refusal,
    pub(crate) detail: String,
}

fn refuse(reason: Refusal, detail: String) -> Refused {
    Refused { reason, detail }
}

/// Decides, against one view, whether a peered SNI may be passed through.
/// The SNI is lower-case (see `sni.rs`), so names compare ignoring case.
pub(crate) fn decide(view: &GatewayView, sni: &PeeredSni<'_>) -> Result<Target, Refused> {
    if !sni.trust_domain.eq_ignore_ascii_case(&view.trust_domain) {
        return Err(refuse(
            Refusal::TrustDomain,
            format!(
                "trust domain {} is not this cluster's ({})",
                sni.trust_domain, view.trust_domain
            ),
        ));
    }
    let Some(peer) = view
        .peers
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(sni.peer))
    else {
        return Err(refuse(
            Refusal::Peer,
            format!("there is no peering named {}", sni.peer),
        ));
    };
    if !matches!(
        peer.state.as_str(),
        STATE_ACTIVE | STATE_ESTABLISHING | STATE_FAILING
    ) {
        return Err(refuse(
            Refusal::Peer,
            format!("peering {} is {}", peer.name, peer.state),
        ));
    }
    if !sni.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE)
        || !sni.partition.eq_ignore_ascii_case(DEFAULT_PARTITION)
    {
        return Err(refuse(
            Refusal::NotExported,
            format!(
                "only namespace and partition {DEFAULT_NAMESPACE} are exported, not {}/{}",
                sni.namespace, sni.partition
            ),
        ));
    }
    // Prefer an exact match, in case two exports differ only in case.
    let exported = peer
        .exported_services
        .iter()
        .find(|s| s.as_str() == sni.service)
        .or_else(|| {
            peer.exported_services
                .iter()
                .find(|s| s.eq_ignore_ascii_case(sni.service))
        });
    let Some(service) = exported else {
        return Err(refuse(
            Refusal::NotExported,
            format!(
                "service {} is not exported to peer {}",
                sni.service, peer.name
            ),
        ));
    };
    if !can_connect_service(&peer.permissions, service) {
        let groups = if peer.groups.is_empty() {
            "none".to_owned()
        } else {
            peer.groups.join(",")
        };
        return Err(refuse(
            Refusal::NotPermitted,
            format!(
                "identity {} (groups: {groups}) may not connect to service {service}",
                peer.identity
            ),
        ));
    }
    let endpoints = view.endpoints.get(service).map_or(&[][..], Vec::as_slice);
    if endpoints.is_empty() {
        return Err(refuse(
            Refusal::NoEndpoint,
            format!("service {service} has no healthy endpoint"),
        ));
    }
    Ok(Target {
        service: service.clone(),
        peer: peer.name.clone(),
        endpoints: endpoints.to_vec(),
    })
}

/// Connects to the target's endpoints and splices connections to them.
#[derive(Debug)]
pub(crate) struct Passthrough {
    metrics: Arc<Metrics>,
    /// Where the next connection starts in an endpoint list (round robin).
    next: AtomicUsize,
    /// No bytes either way for this long closes a connection.
    idle_timeout: Duration,
}

impl Passthrough {
    pub(crate) fn new(metrics: Arc<Metrics>, idle_timeout: Duration) -> Passthrough {
        Passthrough {
            metrics,
            next: AtomicUsize::new(0),
            idle_timeout,
        }
    }

    /// Passes `downstream` (its ClientHello still unread) through to one
    /// of the target's endpoints until either side closes. Shutdown only
    /// interrupts the connect: an established connection is left to the
    /// listener's drain, which aborts it when the drain timeout passes.
    pub(crate) async fn serve(
        &self,
        downstream: TcpStream,
        remote: SocketAddr,
        sni: &str,
        target: Target,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let upstream = tokio::select! {
            _ = isthmus_dataplane::shutdown::stopped(&mut shutdown) => return,
            upstream = connect_any(&target.endpoints, start, CONNECT_TIMEOUT) => upstream,
        };
        let (upstream, endpoint) = match upstream {
            Ok(connected) => connected,
            Err(last_error) => {
                tracing::info!(
                    remote = %remote,
                    sni,
                    reason = Refusal::ConnectFailed.label(),
                    detail = %format!("no endpoint of service {} accepted the connection (last error: {last_error})", target.service),
                    "refusing service connection"
                );
                self.metrics.passthrough_refused(Refusal::ConnectFailed);
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        let counters = self
            .metrics
            .passthrough_opened(&target.service, &target.peer);
        tracing::debug!(remote = %remote, sni, endpoint = %endpoint, peer = %target.peer, "passing service connection through");
        let moved = Arc::new(AtomicU64::new(0));
        let mut downstream =
            CountingIo::new(downstream, counters.read.clone(), counters.written.clone())
                .with_activity(moved.clone());
        let mut upstream = upstream;
        match splice(
            &mut downstream,
            &mut upstream,
            idle(&moved, self.idle_timeout),
        )
        .await
        {
            Spliced::Done(sent, received) => {
                tracing::debug!(remote = %remote, endpoint = %endpoint, sent, received, "service connection closed");
            }
            Spliced::Failed(e) => {
                tracing::debug!(remote = %remote, endpoint = %endpoint, error = %e, "service connection ended with an error");
            }
            Spliced::Stopped => {
                self.metrics
                    .passthrough_listener
                    .timed_out(isthmus_runtime::listen::Timeout::Idle);
                tracing::debug!(remote = %remote, endpoint = %endpoint, sni, idle_timeout = ?self.idle_timeout, "closing an idle service connection");
            }
        }
        drop(counters);
    }
}

/// Resolves once `moved` (bytes passed either way) has not changed for
/// `timeout` (checked every quarter of it, so within 1.25 x `timeout`).
async fn idle(moved: &AtomicU64, timeout: Duration) {
    let tick = (timeout / 4).max(Duration::from_millis(5));
    let mut seen = moved.load(Ordering::Relaxed);
    let mut since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = moved.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            since = tokio::time::Instant::now();
        } else if since.elapsed() >= timeout {
            return;
        }
    }
}

/// Tries the endpoints in order, starting at `start` (modulo their
/// number), each for at most `timeout`; returns the first connection and
/// its endpoint, or the last error.
async fn connect_any(
    endpoints: &[String],
    start: usize,
    timeout: Duration,
) -> Result<(TcpStream, String), String> {
    let mut last_error = "no endpoints".to_owned();
    for i in 0..endpoints.len() {
        let endpoint = &endpoints[(start + i) % endpoints.len()];
        match tokio::time::timeout(timeout, TcpStream::connect(endpoint.as_str())).await {
            Ok(Ok(stream)) => return Ok((stream, endpoint.clone())),
            Ok(Err(e)) => last_error = format!("{endpoint}: {e}"),
            Err(_) => last_error = format!("{endpoint}: timed out after {timeout:?}"),
        }
        tracing::debug!(endpoint = %endpoint, error = %last_error, "connecting to a service endpoint failed");
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use isthmus_api::auth::{builtin_peering_permissions, Permission};
    use isthmus_api::gateway::GatewayPeer;
    use isthmus_api::naming::{parse_peered_sni, peered_sni};

    use super::*;

    const TD: &str = "aaaa.isthmus";

    fn view() -> GatewayView {
        let peer = |name: &str, state: &str| GatewayPeer {
            name: name.into(),
            state: state.into(),
            trust_domain: format!("{name}.isthmus"),
            identity: format!("tls/{name}"),
            groups: vec!["peering".into()],
            permissions: builtin_peering_permissions(),
            exported_services: vec!["backend".into(), "web".into(), "Mixed".into()],
            ..GatewayPeer::default()
        };
        let mut viewer = peer("cluster-04", "ACTIVE");
        viewer.groups = vec!["web-viewers".into()];
        viewer.permissions = vec![Permission {
            entity_type: "service".into(),
            entity_name: Some("backend".into()),
            entitlement: "can_view".into(),
        }];
        GatewayView {
            trust_domain: TD.into(),
            peers: vec![
                peer("cluster-02", "ACTIVE"),
                peer("cluster-03", "PENDING"),
                peer("cluster-05", "FAILING"),
                peer("cluster-06", "ESTABLISHING"),
                peer("cluster-07", "DELETING"),
                peer("cluster-08", "TERMINATED"),
                viewer,
            ],
            endpoints: [
                ("backend".to_owned(), vec!["10.0.0.1:21000".to_owned()]),
                ("Mixed".to_owned(), vec!["10.0.0.2:21000".to_owned()]),
                ("web".to_owned(), vec![]),
            ]
            .into_iter()
            .collect(),
            ..GatewayView::default()
        }
    }

    fn check(sni: &str) -> Result<Target, Refused> {
        decide(&view(), &parse_peered_sni(sni).expect("a peered SNI"))
    }

    fn reason(sni: &str) -> Refusal {
        check(sni).expect_err("refused").reason
    }

    #[test]
    fn exported_permitted_services_of_established_peers_pass() {
        for peer in ["cluster-02", "cluster-05", "cluster-06"] {
            let target = check(&peered_sni("backend", peer, TD)).unwrap();
            assert_eq!(
                target,
                Target {
                    service: "backend".into(),
                    peer: peer.into(),
                    endpoints: vec!["10.0.0.1:21000".into()],
                }
            );
        }
        // SNIs arrive lower-cased; the view's spelling is kept.
        let target = check("mixed.default.default.cluster-02.external.aaaa.isthmus").unwrap();
        assert_eq!(
            (target.service.as_str(), target.peer.as_str()),
            ("Mixed", "cluster-02")
        );
    }

    #[test]
    fn refusals_say_why() {
        let refused = check(&peered_sni("backend", "cluster-02", "bbbb.isthmus")).unwrap_err();
        assert_eq!(refused.reason, Refusal::TrustDomain);
        assert_eq!(
            refused.detail,
            "trust domain bbbb.isthmus is not this cluster's (aaaa.isthmus)"
        );
        let refused = check(&peered_sni("backend", "cluster-09", TD)).unwrap_err();
        assert_eq!(
            (refused.reason, refused.detail.as_str()),
            (Refusal::Peer, "there is no peering named cluster-09")
        );
        for (peer, state) in [
            ("cluster-03", "PENDING"),
            ("cluster-07", "DELETING"),
            ("cluster-08", "TERMINATED"),
        ] {
            let refused = check(&peered_sni("backend", peer, TD)).unwrap_err();
            assert_eq!(refused.reason, Refusal::Peer);
            assert_eq!(refused.detail, format!("peering {peer} is {state}"));
        }
        let refused = check(&peered_sni("db", "cluster-02", TD)).unwrap_err();
        assert_eq!(
            (refused.reason, refused.detail.as_str()),
            (
                Refusal::NotExported,
                "service db is not exported to peer cluster-02"
            )
        );
        assert_eq!(
            reason("backend.ns2.default.cluster-02.external.aaaa.isthmus"),
            Refusal::NotExported
        );
        assert_eq!(
            reason("backend.default.part2.cluster-02.external.aaaa.isthmus"),
            Refusal::NotExported
        );
        let refused = check(&peered_sni("backend", "cluster-04", TD)).unwrap_err();
        assert_eq!(
            (refused.reason, refused.detail.as_str()),
            (
                Refusal::NotPermitted,
                "identity tls/cluster-04 (groups: web-viewers) may not connect to service backend"
            )
        );
        assert_eq!(
            check(&peered_sni("web", "cluster-02", TD)).unwrap_err(),
            Refused {
                reason: Refusal::NoEndpoint,
                detail: "service web has no healthy endpoint".into()
            }
        );
        let mut no_entry = view();
        no_entry.endpoints.clear();
        let sni = peered_sni("backend", "cluster-02", TD);
        assert_eq!(
            decide(&no_entry, &parse_peered_sni(&sni).unwrap())
                .unwrap_err()
                .reason,
            Refusal::NoEndpoint
        );
    }

    #[tokio::test]
    async fn connects_to_the_next_endpoint_when_one_fails() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (live_addr, dead_addr) = (
            live.local_addr().unwrap().to_string(),
            dead.local_addr().unwrap().to_string(),
        );
        drop(dead);
        let endpoints = vec![dead_addr.clone(), live_addr.clone()];
        for start in 0..2 {
            let (_, endpoint) = connect_any(&endpoints, start, Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(endpoint, live_addr);
        }
        let err = connect_any(std::slice::from_ref(&dead_addr), 7, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.starts_with(&dead_addr), "{err}");
    }
}
