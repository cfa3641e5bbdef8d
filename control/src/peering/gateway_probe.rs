//! The leader's probes of its peers' mesh gateways (Linkerd's gateway
//! probe, which Consul lacks): every interval, for each established
//! peering, a fresh connection to the peer's gateway addresses with the
//! stream's mTLS identity and trust, and a `GET /v1/peering/probe` the
//! peer's gateway answers itself. The result (alive or not, latency, the
//! error) is kept here for the API and exported as
//! `isthmus_peering_gateway_alive{peer}` and
//! `isthmus_peering_gateway_probe_duration_seconds{peer}`.
//!
//! A gateway that stops answering shows dead after its next probe, long
//! before the stream misses three heartbeats. One probe per peer is in
//! flight at a time; a probe that outlasts the interval skips the ticks it
//! overlaps. Probes stop with the term (the agent no longer leads, or
//! stops) and for peerings that are deleted or no longer established.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use isthmus_api::peering::PATH_GATEWAY_PROBE;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::context::PeeringContext;
use super::{dial, PeeringRecord};

/// `--peering-gateway-probe-interval`'s default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Faster would be load for nothing; the tests probe every 200ms.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Slower and "alive" says little.
pub const MAX_INTERVAL: Duration = Duration::from_secs(300);
/// A probe waits at most the interval (so a dead gateway shows within a
/// period or two), and never more than this.
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `interval` is within the bounds; the error names the setting
/// as `key`.
pub fn validate_interval(key: &str, interval: Duration) -> Result<(), String> {
    if (MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        return Ok(());
    }
    Err(format!(
        "{key}: {} is out of range: the peer gateway probe interval must be between {} and {}",
        isthmus_api::duration::format(interval),
        isthmus_api::duration::format(MIN_INTERVAL),
        isthmus_api::duration::format(MAX_INTERVAL)
    ))
}

/// What the probes of one peer's gateways last found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStatus {
    /// Whether the last probe was answered; `None` until one finished.
    pub alive: Option<bool>,
    /// How long the last answered probe took.
    pub latency: Option<Duration>,
    /// When the last probe finished.
    pub last_probe: Option<OffsetDateTime>,
    /// Why the last probe failed; `None` after an answer.
    pub last_error: Option<String>,
    /// The addresses the last probe dialled.
    pub addresses: Vec<String>,
}

impl ProbeStatus {
    pub fn last_probe_rfc3339(&self) -> Option<String> {
        self.last_probe.and_then(|t| t.format(&Rfc3339).ok())
    }
}

/// The probes' results by peer, shared by the probing task (the only
/// writer) and the API.
pub struct GatewayProbes {
    /// How often each established peer's gateways are probed.
    pub interval: Duration,
    statuses: Mutex<HashMap<String, ProbeStatus>>,
}

impl GatewayProbes {
    pub fn new(interval: Duration) -> GatewayProbes {
        GatewayProbes {
            interval,
            statuses: Mutex::new(HashMap::new()),
        }
    }

    /// What the probes of `peer` last found (`None`: not probed).
    pub fn status(&self, peer: &str) -> Option<ProbeStatus> {
        self.lock().get(peer).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ProbeStatus>> {
        self.statuses
            .lock()
            .expect("gateway probe statuses lock poisoned")
    }

    /// Records a finished probe; returns whether the peer was alive before.
    fn record(
        &self,
        peer: &str,
        addresses: Vec<String>,
        outcome: &Result<Duration, String>,
    ) -> Option<bool> {
        let mut statuses = self.lock();
        let status = statuses.entry(peer.to_owned()).or_default();
        let before = status.alive;
        status.alive = Some(outcome.is_ok());
        status.last_probe = Some(OffsetDateTime::now_utc());
        status.addresses = addresses;
        match outcome {
            Ok(latency) => {
                status.latency = Some(*latency);
                status.last_error = None;
            }
            Err(e) => status.last_error = Some(e.clone()),
        }
        before
    }

    fn forget(&self, peer: &str) {
        self.lock().remove(peer);
    }

    fn probed_peers(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// A finished probe, as a probe task hands it back.
struct Finished {
    peer: String,
    addresses: Vec<String>,
    outcome: Result<Duration, String>,
}

/// Probes every established peer's gateways until `term` ends (the agent
/// stops leading or shuts down); then forgets every result, since a
/// follower does not probe and must not show stale ones.
pub async fn run(peering: Arc<PeeringContext>, mut term: watch::Receiver<bool>) {
    let interval = peering.probes.interval;
    let timeout = interval.min(MAX_TIMEOUT);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut in_flight: HashMap<String, AbortHandle> = HashMap::new();
    // Unbounded but bounded in practice: one probe per peer in flight.
    let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
    loop {
        tokio::select! {
            _ = term.wait_for(|over| *over) => break,
            _ = ticker.tick() => {
                start_probes(&peering, &mut in_flight, &finished_tx, timeout);
            }
            Some(done) = finished.recv() => {
                in_flight.remove(&done.peer);
                apply(&peering, done);
            }
        }
    }
    for (_, task) in in_flight.drain() {
        task.abort();
    }
    for peer in peering.probes.probed_peers() {
        peering.probes.forget(&peer);
        peering.metrics.forget_gateway_probes(&peer);
    }
}

/// The peerings worth probing: established, with addresses and roots.
fn probe_targets(peering: &PeeringContext) -> Option<Vec<PeeringRecord>> {
    let records = match peering.store.snapshot().and_then(|s| super::list(&s)) {
        Ok(records) => records,
        Err(e) => {
            tracing::warn!(error = %e, "reading the peerings to probe their gateways");
            return None;
        }
    };
    Some(
        records
            .into_iter()
            .filter(|r| {
                r.established() && !r.peer_server_addresses.is_empty() && !r.peer_ca_pems.is_empty()
            })
            .collect(),
    )
}

/// Starts a probe for each target with none in flight, and drops what
/// belongs to peerings no longer probed.
fn start_probes(
    peering: &Arc<PeeringContext>,
    in_flight: &mut HashMap<String, AbortHandle>,
    finished: &mpsc::UnboundedSender<Finished>,
    timeout: Duration,
) {
    let Some(targets) = probe_targets(peering) else {
        return;
    };
    let wanted = |peer: &str| targets.iter().any(|t| t.name == peer);
    in_flight.retain(|peer, task| {
        let keep = wanted(peer);
        if !keep {
            task.abort();
        }
        keep
    });
    for peer in peering.probes.probed_peers() {
        if !wanted(&peer) {
            peering.probes.forget(&peer);
            peering.metrics.forget_gateway_probes(&peer);
        }
    }
    for record in targets {
        if in_flight.contains_key(&record.name) {
            tracing::debug!(peer = %record.name, "previous gateway probe still running; skipping this one");
            continue;
        }
        let peer = record.name.clone();
        let context = peering.clone();
        let finished = finished.clone();
        let task = tokio::spawn(async move {
            let outcome = probe(&context, &record, timeout).await;
            let _ = finished.send(Finished {
                peer: record.name,
                addresses: record.peer_server_addresses,
                outcome,
            });
        });
        in_flight.insert(peer, task.abort_handle());
    }
}

/// Records a finished probe, if its peering is still probed; logs when
/// the gateway turns dead or alive again.
fn apply(peering: &PeeringContext, done: Finished) {
    let still_probed = peering
        .store
        .snapshot()
        .and_then(|s| super::get(&s, &done.peer))
        .ok()
        .flatten()
        .is_some_and(|r| r.established());
    if !still_probed {
        return;
    }
    let before = peering
        .probes
        .record(&done.peer, done.addresses, &done.outcome);
    peering
        .metrics
        .gateway_probed(&done.peer, done.outcome.as_ref().ok().copied());
    match (&done.outcome, before) {
        (Err(e), None | Some(true)) => tracing::warn!(
            peer = %done.peer,
            error = %e,
            "the peer's mesh gateway does not answer probes: marking it dead"
        ),
        (Ok(latency), Some(false)) => tracing::info!(
            peer = %done.peer,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "the peer's mesh gateway answers probes again: alive"
        ),
        (Ok(latency), None) => tracing::info!(
            peer = %done.peer,
            latency_ms = latency.as_secs_f64() * 1000.0,
            "the peer's mesh gateway answers probes: alive"
        ),
        _ => {}
    }
}

/// One probe: connect to the peer's gateway addresses (the first that
/// completes the handshake), with this cluster's gateway certificate as
/// the client certificate and the peer's pinned roots, and ask
/// `GET /v1/peering/probe`; the time it all took, or why it failed.
async fn probe(
    peering: &PeeringContext,
    record: &PeeringRecord,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let tls = dial::stream_tls(peering, record)?;
    let attempt = async {
        let mut sender =
            dial::connect(&record.peer_server_addresses, &record.peer_server_name, tls)
                .await
                .map_err(|e| e.0)?;
        let request = http::Request::get(format!(
            "https://{}{PATH_GATEWAY_PROBE}",
            record.peer_server_name
        ))
        .body(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("probe request: {e}"))?;
        let (status, body) = dial::read_body(response).await?;
        if status != http::StatusCode::OK {
            return Err(format!(
                "the gateway answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        Ok(started.elapsed())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "no answer within {}",
            isthmus_api::duration::format(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_bounded() {
        assert!(validate_interval("x", DEFAULT_INTERVAL).is_ok());
        assert!(validate_interval("x", MIN_INTERVAL).is_ok());
        assert!(validate_interval("x", MAX_INTERVAL).is_ok());
        let err = validate_interval(
            "--peering-gateway-probe-interval",
            Duration::from_millis(50),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "--peering-gateway-probe-interval: 50ms is out of range: the peer gateway probe \
             interval must be between 100ms and 5m0s"
        );
        assert!(validate_interval("x", Duration::from_secs(301)).is_err());
    }

    #[test]
    fn results_remember_the_last_latency_and_clear_the_error_on_an_answer() {
        let probes = GatewayProbes::new(DEFAULT_INTERVAL);
        assert_eq!(probes.status("p"), None);
        let before = probes.record("p", vec!["a:1".into()], &Ok(Duration::from_millis(4)));
        assert_eq!(before, None);
        let before = probes.record("p", vec!["a:1".into()], &Err("refused".into()));
        assert_eq!(before, Some(true));
        let status = probes.status("p").unwrap();
        assert_eq!(status.alive, Some(false));
        assert_eq!(status.latency, Some(Duration::from_millis(4)));
        assert_eq!(status.last_error.as_deref(), Some("refused"));
        assert!(status.last_probe_rfc3339().is_some());
        probes.record("p", vec![], &Ok(Duration::from_millis(2)));
        let status = probes.status("p").unwrap();
        assert_eq!((status.alive, status.last_error), (Some(true), None));
        probes.forget("p");
        assert!(probes.probed_peers().is_empty());
    }
}
