//! The replication stream: one JSON message per line in each direction.
//!
//! Both ends run the same session: send our trust bundle, gateway addresses
//! and exported services, then push changes as the store changes, send
//! heartbeats, and apply what the peer sends. A session that hears nothing
//! for three heartbeat intervals ends, and the peering turns `FAILING`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use isthmus_api::catalog::ServiceEntry;
use isthmus_api::peering::{self as api, StreamMessage};
use isthmus_api::peering_framing::{encode_message, parse_message, FrameError, LineFramer};
use isthmus_api::peering_limits::{self, Invalid, InvalidReason};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::context::PeeringContext;
use super::manager::Control;
use crate::metrics::{Direction, ErrorReason, PeerCounters};
use crate::store::{Reads, StoreError, Table};

/// How long a terminating session waits for the peer to close its side.
pub const TERMINATE_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The most CA roots a peer's trust bundle may hold (a rotation needs two).
const MAX_PEER_ROOTS: usize = 16;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// Why reading the next message failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The peer broke the framing or sent something that is not a message
    /// (over-long line, not UTF-8, not JSON).
    Protocol(FrameError),
    /// The transport failed or ended mid-message.
    Transport(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Protocol(e) => e.fmt(f),
            ReadError::Transport(e) => f.write_str(e),
        }
    }
}

/// Reads messages from a byte stream, one per line, each at most the
/// framer's limit (see [`isthmus_api::peering_framing`]).
pub struct LineReader {
    stream: ByteStream,
    framer: LineFramer,
}

impl LineReader {
    pub fn new(stream: ByteStream, max_line: usize) -> LineReader {
        LineReader {
            stream,
            framer: LineFramer::new(max_line),
        }
    }

    /// The limit for the lines still to come (raised after `Open`).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.framer.set_max_line(max_line);
    }

    /// The next line without its newline; `None` at a clean end of stream.
    async fn next_line(&mut self) -> Result<Option<String>, ReadError> {
        loop {
            if let Some(line) = self.framer.next_line().map_err(ReadError::Protocol)? {
                return Ok(Some(line));
            }
            match self.stream.next().await {
                Some(Ok(chunk)) => self.framer.push(&chunk),
                Some(Err(e)) => return Err(ReadError::Transport(e)),
                None => {
                    return match self.framer.finish() {
                        Ok(()) => Ok(None),
                        Err(e) => Err(ReadError::Transport(e.to_string())),
                    }
                }
            }
        }
    }

    pub async fn next_message(&mut self) -> Result<Option<StreamMessage>, ReadError> {
        match self.next_line().await? {
            Some(line) => parse_message(&line).map(Some).map_err(ReadError::Protocol),
            None => Ok(None),
        }
    }
}

pub fn encode(message: &StreamMessage) -> Bytes {
    Bytes::from(encode_message(message))
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The transport closed or failed; the peering is `FAILING` until a new session.
    Disconnected(String),
    /// Nothing heard for three heartbeat intervals.
    Silent,
    /// The peer deleted the peering: it is `TERMINATED` here.
    PeerTerminated,
    /// We deleted the peering and told the peer.
    WeTerminated,
    /// A newer session for the same peer took over, or the peering is gone.
    Replaced,
    /// The peer broke the protocol.
    ProtocolError(String),
}

/// What we last sent, so only changes are pushed.
#[derive(Default)]
struct Exported {
    /// Table indexes the last computation saw; unchanged means nothing to do.
    seen: Option<[u64; 8]>,
    names: Option<Vec<String>>,
    /// Per exported service: the content hash last sent, and the index at
    /// which what it was computed from last changed.
    services: HashMap<String, (u64, u64)>,
    gateways: Vec<String>,
}

fn content_hash(instances: &[ServiceEntry]) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_vec(instances)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

/// Runs a session with `peer` over `incoming` / `outgoing` until it ends.
pub async fn run_session(
    peering: Arc<PeeringContext>,
    peer: String,
    mut incoming: LineReader,
    outgoing: mpsc::Sender<Bytes>,
) -> SessionEnd {
    let (session_id, mut control) = peering.manager.open_session(&peer);
    tracing::info!(peer = %peer, "peering stream opened");
    let counters = peering.metrics.peer(&peer);
    let end = session_loop(
        &peering,
        &peer,
        &counters,
        &mut incoming,
        &outgoing,
        &mut control,
    )
    .await;
    match &end {
        SessionEnd::Disconnected(_) => counters.error(ErrorReason::Disconnected),
        SessionEnd::Silent => counters.error(ErrorReason::Silent),
        SessionEnd::ProtocolError(_) => counters.error(ErrorReason::Protocol),
        SessionEnd::PeerTerminated | SessionEnd::WeTerminated | SessionEnd::Replaced => {}
    }
    let current = peering.manager.close_session(&peer, session_id);
    match &end {
        SessionEnd::Disconnected(_) | SessionEnd::Silent | SessionEnd::ProtocolError(_)
            if current =>
        {
            let name = peer.clone();
            let result = peering
                .store
                .write(move |txn| -> Result<(), StoreError> {
                    if let Some(record) = super::get(txn, &name)? {
                        if matches!(
                            record.state.as_str(),
                            api::STATE_ACTIVE | api::STATE_ESTABLISHING
                        ) {
                            super::set_state(txn, &name, api::STATE_FAILING)?;
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(peer = %peer, error = %e, "recording peering failure");
            }
            tracing::warn!(peer = %peer, reason = ?end, "peering stream lost");
        }
        _ => tracing::info!(peer = %peer, reason = ?end, "peering stream closed"),
    }
    end
}

async fn session_loop(
    peering: &Arc<PeeringContext>,
    peer: &str,
    counters: &PeerCounters,
    incoming: &mut LineReader,
    outgoing: &mpsc::Sender<Bytes>,
    control: &mut mpsc::Receiver<Control>,
) -> SessionEnd {
    let heartbeat = peering.manager.heartbeat;
    let mut changes = peering.store.subscribe();
    let mut exported = Exported::default();
    let send = |message: StreamMessage| async move {
        let ok = outgoing.send(encode(&message)).await.is_ok();
        if ok {
            peering.manager.sent(peer);
            counters.message(Direction::Sent, &message);
        }
        ok
    };

    let bundle = StreamMessage::TrustBundle {
        trust_domain: peering.cluster.trust_domain.clone(),
        root_pems: peering.ca.root_pems(),
    };
    if !send(bundle).await {
        return SessionEnd::Disconnected("peer closed the stream".into());
    }
    let mut ticker = tokio::time::interval(heartbeat);
    let mut last_heard = Instant::now();
    let mut activated = false;
    // The services the peer last said it exports to us (validated).
    let mut peer_exports: Option<Vec<String>> = None;
    let mut sent_fingerprint = None;
    loop {
        changes.borrow_and_update();
        if let Some(message) = gateway_certificate_update(peering, &mut sent_fingerprint) {
            if !send(message).await {
                return SessionEnd::Disconnected("peer closed the stream".into());
            }
        }
        match push_changes(peering, peer, &mut exported).await {
            Ok(messages) => {
                for message in messages {
                    if !send(message).await {
                        return SessionEnd::Disconnected("peer closed the stream".into());
                    }
                }
            }
            Err(SessionEnd::Replaced) => return SessionEnd::Replaced,
            Err(e) => tracing::warn!(peer = %peer, error = ?e, "computing exports failed"),
        }
        tokio::select! {
            line = incoming.next_message() => {
                let message = match line {
                    Ok(Some(message)) => message,
                    Ok(None) => return SessionEnd::Disconnected("peer ended the stream".into()),
                    Err(ReadError::Protocol(e)) => return SessionEnd::ProtocolError(e.to_string()),
                    Err(ReadError::Transport(e)) => return SessionEnd::Disconnected(e),
                };
                last_heard = Instant::now();
                counters.message(Direction::Received, &message);
                peering.manager.received(peer, matches!(message, StreamMessage::Heartbeat));
                if !activated {
                    activated = true;
                    if let Err(e) = mark_active(peering, peer).await {
                        tracing::warn!(peer = %peer, error = %e, "recording peering activation");
                    }
                }
                let message = match check(peering, message, &mut peer_exports) {
                    Ok(message) => message,
                    Err(invalid) => {
                        // Dropped: what we stored before stays, the session goes on.
                        tracing::warn!(
                            peer = %peer,
                            reason = invalid.reason.label(),
                            detail = %invalid.detail,
                            "dropped an invalid replication message from the peer"
                        );
                        counters.rejected(invalid.reason);
                        continue;
                    }
                };
                if let Some(end) = apply(peering, peer, message).await {
                    return end;
                }
            }
            _ = changes.changed() => {}
            _ = ticker.tick() => {
                if !send(StreamMessage::Heartbeat).await {
                    return SessionEnd::Disconnected("peer closed the stream".into());
                }
            }
            _ = tokio::time::sleep_until(last_heard + heartbeat * 3) => return SessionEnd::Silent,
            command = control.recv() => match command {
                Some(Control::Terminate(ack)) => {
                    let _ = send(StreamMessage::Terminate).await;
                    // Wait for the peer to act on it and close its side:
                    // ending first could reset the stream before the
                    // message is flushed.
                    let drain = async { while let Ok(Some(_)) = incoming.next_message().await {} };
                    let _ = tokio::time::timeout(TERMINATE_DRAIN, drain).await;
                    let _ = ack.send(());
                    return SessionEnd::WeTerminated;
                }
                Some(Control::Replaced) | None => return SessionEnd::Replaced,
            },
        }
    }
}

async fn mark_active(peering: &Arc<PeeringContext>, peer: &str) -> Result<(), StoreError> {
    let name = peer.to_owned();
    peering
        .store
        .write(move |txn| {
            if let Some(record) = super::get(txn, &name)? {
                if matches!(
                    record.state.as_str(),
                    api::STATE_ESTABLISHING | api::STATE_FAILING | api::STATE_ACTIVE
                ) {
                    super::set_state(txn, &name, api::STATE_ACTIVE)?;
                }
            }
            Ok(())
        })
        .await
}

/// The messages that bring the peer up to date with our exports.
async fn push_changes(
    peering: &Arc<PeeringContext>,
    peer: &str,
    exported: &mut Exported,
) -> Result<Vec<StreamMessage>, SessionEnd> {
    let snapshot = peering
        .store
        .snapshot()
        .map_err(|e| SessionEnd::Disconnected(e.to_string()))?;
    let err = |e: StoreError| SessionEnd::Disconnected(e.to_string());
    let seen = [
        snapshot.table_index(Table::Services).map_err(err)?,
        snapshot.table_index(Table::Checks).map_err(err)?,
        snapshot.table_index(Table::ConfigEntries).map_err(err)?,
        snapshot.table_index(Table::AuthGroups).map_err(err)?,
        snapshot.table_index(Table::Peerings).map_err(err)?,
        // The cluster's other agents' instances and their nodes' liveness.
        snapshot.table_index(Table::RemoteServices).map_err(err)?,
        snapshot.table_index(Table::RemoteChecks).map_err(err)?,
        snapshot.table_index(Table::NodeHealth).map_err(err)?,
    ];
    if exported.seen == Some(seen) {
        return Ok(Vec::new());
    }
    exported.seen = Some(seen);
    let Some(record) = super::get(&snapshot, peer).map_err(err)? else {
        return Err(SessionEnd::Replaced);
    };
    let mut messages = Vec::new();
    let gateways = super::gateway_addresses(&snapshot).map_err(err)?;
    if gateways != exported.gateways {
        exported.gateways = gateways.clone();
        messages.push(StreamMessage::Gateways {
            addresses: gateways,
        });
    }
    let names = super::exported_names(&snapshot, &record).map_err(err)?;
    if exported.names.as_ref() != Some(&names) {
        exported.services.retain(|name, _| names.contains(name));
        exported.names = Some(names.clone());
        messages.push(StreamMessage::ExportedServices {
            services: names.clone(),
        });
    }
    for name in names {
        // Unchanged since it was last computed: skip it without reading
        // its instances, so a write costs the services it touched.
        let changed_at = crate::catalog::service_changed_at(&snapshot, &name);
        if exported
            .services
            .get(&name)
            .is_some_and(|(_, at)| *at == changed_at)
        {
            continue;
        }
        let instances = super::flattened_instances(&snapshot, &peering.node, &name).map_err(err)?;
        let hash = content_hash(&instances);
        let sent = exported.services.insert(name.clone(), (hash, changed_at));
        if sent.map(|(h, _)| h) != Some(hash) {
            messages.push(StreamMessage::Service { name, instances });
        }
    }
    Ok(messages)
}

/// Validates a message from the peer before anything of it is stored:
/// service names, counts and sizes, services against what the peer said
/// it exports, gateway addresses against the address policy.
fn check(
    peering: &Arc<PeeringContext>,
    message: StreamMessage,
    peer_exports: &mut Option<Vec<String>>,
) -> Result<StreamMessage, Invalid> {
    let limits = &peering.import_limits;
    match &message {
        StreamMessage::ExportedServices { services } => {
            peering_limits::validate_exported_names(services, limits)?;
            *peer_exports = Some(services.clone());
        }
        StreamMessage::Service { name, instances } => {
            let exported = peer_exports.as_deref().unwrap_or_default();
            peering_limits::validate_service(name, instances, exported, limits)?;
        }
        StreamMessage::TrustBundle { root_pems, .. } if root_pems.len() > MAX_PEER_ROOTS => {
            return Err(Invalid {
                reason: InvalidReason::TooMany,
                detail: format!(
                    "trust bundle with {} roots (limit: {MAX_PEER_ROOTS})",
                    root_pems.len()
                ),
            });
        }
        StreamMessage::Gateways { addresses } => {
            let policy = super::token::address_policy(peering).map_err(|e| Invalid {
                reason: InvalidReason::GatewayAddress,
                detail: format!("reading our own gateway addresses: {e}"),
            })?;
            peering_limits::validate_gateway_addresses(addresses, policy).map_err(|detail| {
                Invalid {
                    reason: InvalidReason::GatewayAddress,
                    detail,
                }
            })?;
        }
        _ => {}
    }
    Ok(message)
}

/// Applies one (checked) message from the peer; `Some` ends the session.
async fn apply(
    peering: &Arc<PeeringContext>,
    peer: &str,
    message: StreamMessage,
) -> Option<SessionEnd> {
    let name = peer.to_owned();
    let result: Result<Option<SessionEnd>, StoreError> = match message {
        StreamMessage::Heartbeat => Ok(None),
        StreamMessage::Open { .. } => Ok(Some(SessionEnd::ProtocolError("unexpected Open".into()))),
        StreamMessage::ExportedServices { services } => {
            peering
                .store
                .write(move |txn| {
                    for imported in super::imported_names(txn, &name)? {
                        if !services.contains(&imported) {
                            txn.delete(Table::Imported, &format!("{name}/{imported}"))?;
                        }
                    }
                    Ok(None)
                })
                .await
        }
        StreamMessage::Service {
            name: service,
            mut instances,
        } => {
            for entry in &mut instances {
                entry.node.peer_name = Some(name.clone());
                entry.service.peer_name = Some(name.clone());
                for check in &mut entry.checks {
                    check.peer_name = Some(name.clone());
                }
            }
            peering
                .store
                .write(move |txn| {
                    if super::get(txn, &name)?.is_none_or(|r| !r.established()) {
                        return Ok(Some(SessionEnd::Replaced));
                    }
                    let key = format!("{name}/{service}");
                    if txn
                        .get::<Vec<ServiceEntry>>(Table::Imported, &key)?
                        .as_ref()
                        != Some(&instances)
                    {
                        txn.put(Table::Imported, &key, &instances)?;
                    }
                    Ok(None)
                })
                .await
        }
        StreamMessage::TrustBundle {
            trust_domain,
            root_pems,
        } => {
            if root_pems.is_empty() || isthmus_api::tls::root_store(&root_pems).is_err() {
                return Some(SessionEnd::ProtocolError(
                    "trust bundle has no usable roots".into(),
                ));
            }
            peering
                .store
                .write(move |txn| {
                    let Some(mut record) = super::get(txn, &name)? else {
                        return Ok(Some(SessionEnd::Replaced));
                    };
                    if record.peer_trust_domain != trust_domain {
                        return Ok(Some(SessionEnd::ProtocolError(format!(
                            "peer sent a trust bundle for {trust_domain}, but it is {}",
                            record.peer_trust_domain
                        ))));
                    }
                    if record.peer_ca_pems != root_pems {
                        record.peer_ca_pems = root_pems.clone();
                        super::put(txn, record)?;
                    }
                    Ok(None)
                })
                .await
        }
        StreamMessage::Gateways { addresses } => {
            peering
                .store
                .write(move |txn| {
                    let Some(mut record) = super::get(txn, &name)? else {
                        return Ok(Some(SessionEnd::Replaced));
                    };
                    if record.peer_server_addresses != addresses && !addresses.is_empty() {
                        record.peer_server_addresses = addresses.clone();
                        super::put(txn, record)?;
                    }
                    Ok(None)
                })
                .await
        }
        StreamMessage::GatewayCertificate { fingerprint } => {
            return apply_gateway_certificate(peering, name, fingerprint).await;
        }
        StreamMessage::Terminate => {
            peering
                .store
                .write(move |txn| {
                    super::mark_terminated(txn, &name)?;
                    Ok(Some(SessionEnd::PeerTerminated))
                })
                .await
        }
    };
    match result {
        Ok(end) => end,
        Err(e) => Some(SessionEnd::Disconnected(format!("store: {e}"))),
    }
}

/// Our gateway certificate's fingerprint, if the peer has not been told it
/// yet in this session (at its start, and after each renewal).
fn gateway_certificate_update(
    peering: &PeeringContext,
    sent: &mut Option<String>,
) -> Option<StreamMessage> {
    let fingerprint = peering.ca.gateway_cert().fingerprint.clone();
    if sent.as_ref() == Some(&fingerprint) {
        return None;
    }
    *sent = Some(fingerprint.clone());
    Some(StreamMessage::GatewayCertificate { fingerprint })
}

/// The peer renewed its gateway certificate: its new fingerprint becomes
/// the pin (the link identity's identifier). It proves nothing by itself;
/// the peer's connections are still checked against its pinned roots.
async fn apply_gateway_certificate(
    peering: &Arc<PeeringContext>,
    name: String,
    fingerprint: String,
) -> Option<SessionEnd> {
    let valid = fingerprint.len() == 64
        && fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return Some(SessionEnd::ProtocolError(
            "invalid gateway certificate fingerprint".into(),
        ));
    }
    let result = peering
        .store
        .write(move |txn| -> Result<Option<SessionEnd>, StoreError> {
            let Some(mut record) = super::get(txn, &name)? else {
                return Ok(Some(SessionEnd::Replaced));
            };
            if !record.peer_gateway_fingerprint.is_empty()
                && record.peer_gateway_fingerprint != fingerprint
            {
                tracing::info!(peer = %name, fingerprint = %fingerprint, "the peer renewed its mesh gateway certificate");
                record.peer_gateway_fingerprint = fingerprint.clone();
                super::put(txn, record)?;
            }
            Ok(None)
        })
        .await;
    result.unwrap_or_else(|e| Some(SessionEnd::Disconnected(format!("store: {e}"))))
}
