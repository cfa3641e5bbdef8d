//! Dialer side: connect to a peer's mesh gateway (mutual TLS, HTTP/2),
//! establish a peering with a token, and keep the replication stream up
//! with capped exponential backoff and jitter.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use isthmus_api::peering::{
    self as api, EstablishRequest, ExchangeRequest, ExchangeResponse, PeeringToken, StreamMessage,
};
use rustls_pki_types::ServerName;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::context::PeeringContext;
use super::error::PeeringError;
use super::stream::{self, LineReader, SessionEnd};
use super::token::{
    address_policy, check_groups, groups_or_default, own_info, validate_meta, validate_partition,
    validate_peer_info,
};
use super::{PeeringRecord, Role};
use crate::metrics::{Direction, ErrorReason, PeerCounters};
use crate::store::Reads;

/// Per address: TCP connect plus TLS handshake.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole establishment, across addresses.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(5);
const EXCHANGE_BODY_LIMIT: usize = 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

pub(super) type RequestBody = BoxBody<Bytes, Infallible>;

/// Why dialing failed, kept per address for the error message.
#[derive(Debug)]
pub struct DialError(pub String);

/// Connects to the first reachable address and returns an HTTP/2 sender.
pub(super) async fn connect(
    addresses: &[String],
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<SendRequest<RequestBody>, DialError> {
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| DialError(format!("invalid peering server name {server_name:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(tls);
    let mut failures = Vec::new();
    for address in addresses {
        let attempt = async {
            let tcp = TcpStream::connect(address)
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let tls = connector
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "peering connection closed");
                }
            });
            Ok::<_, String>(sender)
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(Ok(sender)) => return Ok(sender),
            Ok(Err(e)) => failures.push(format!("{address}: {e}")),
            Err(_) => failures.push(format!("{address}: timed out after {ATTEMPT_TIMEOUT:?}")),
        }
    }
    Err(DialError(failures.join("; ")))
}

fn gateway_identity(
    peering: &PeeringContext,
) -> Result<Arc<rustls::sign::CertifiedKey>, PeeringError> {
    let cert = peering.ca.gateway_cert();
    isthmus_api::tls::certified_key(&cert.cert_pem, &cert.key_pem)
        .map_err(|e| PeeringError::GatewayCertUnusable(e.to_string()))
}

/// Reads a response body fully (bounded).
pub(super) async fn read_body(
    response: hyper::Response<hyper::body::Incoming>,
) -> Result<(http::StatusCode, Bytes), String> {
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), EXCHANGE_BODY_LIMIT)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// The peer trust domain named by a token's server name.
fn token_trust_domain(token: &PeeringToken) -> &str {
    token
        .server_name
        .split_once(".peering.")
        .map(|(_, td)| td)
        .unwrap_or_default()
}

/// `POST /v1/peering/establish`.
pub async fn establish(
    peering: Arc<PeeringContext>,
    request: EstablishRequest,
) -> Result<(), PeeringError> {
    if request.peer_name.is_empty() {
        return Err(PeeringError::Invalid(
            "PeerName is required in the payload when establishing a peering.".into(),
        ));
    }
    if request.peering_token.is_empty() {
        return Err(PeeringError::Invalid(
            "PeeringToken is required in the payload when establishing a peering.".into(),
        ));
    }
    api::validate_peer_name(&request.peer_name).map_err(PeeringError::Invalid)?;
    validate_partition(&request.partition)?;
    validate_meta(&request.meta)?;
    let token =
        PeeringToken::decode(&request.peering_token).map_err(|e| PeeringError::Invalid(e.0))?;
    // We dial the token's addresses right away: the same policy as for
    // addresses a peer sends later.
    let policy = address_policy(&peering)?;
    isthmus_api::peering_limits::validate_gateway_addresses(&token.server_addresses, policy)
        .map_err(|e| PeeringError::Invalid(format!("peering token: {e}")))?;
    let expired = OffsetDateTime::parse(&token.expires_at, &Rfc3339)
        .map_or(true, |t| t <= OffsetDateTime::now_utc());
    if expired {
        return Err(PeeringError::Invalid("peering token has expired".into()));
    }
    let peer_trust_domain = token_trust_domain(&token).to_owned();
    if peer_trust_domain == peering.cluster.trust_domain || token.ca == peering.ca.root_pems() {
        return Err(PeeringError::Invalid("cannot create a peering within the same cluster: the token was generated by this cluster".into()));
    }
    let groups = groups_or_default(request.auth_groups.clone());
    let name = request.peer_name.clone();
    {
        let snapshot = peering.store.snapshot()?;
        check_groups(&snapshot, &groups)?;
        check_no_conflict(&snapshot, &name, &peer_trust_domain)?;
    }

    // Verify the gateway against the token's CA *and* fingerprint before
    // anything is sent; our gateway certificate is the client certificate.
    let tls = isthmus_api::tls::peering_client_config(
        &token.ca,
        &token.gateway_fingerprint,
        gateway_identity(&peering)?,
    )
    .map_err(|e| PeeringError::Invalid(format!("peering token invalid CA: {e}")))?;
    let local_id = uuid::Uuid::new_v4().to_string();
    let exchange = ExchangeRequest {
        peer_id: token.peer_id.clone(),
        establishment_secret: token.establishment_secret.clone(),
        dialer: own_info(&peering, &peering.store.snapshot()?, &local_id, &name)?,
    };
    let response = tokio::time::timeout(
        ESTABLISH_TIMEOUT,
        call_exchange(&token, Arc::new(tls), &exchange),
    )
    .await
    .map_err(|_| PeeringError::ExchangeTimedOut {
        name: name.clone(),
        after: ESTABLISH_TIMEOUT,
    })??;
    let acceptor = response.acceptor;
    validate_peer_info(&acceptor, policy)?;
    if acceptor.trust_domain != peer_trust_domain {
        return Err(PeeringError::Invalid(
            "the peer's trust domain does not match its token".into(),
        ));
    }

    let record = PeeringRecord {
        id: local_id,
        name: name.clone(),
        role: Role::Dialer,
        state: api::STATE_ESTABLISHING.into(),
        meta: request.meta,
        deleted_at: None,
        peer_id: token.peer_id.clone(),
        peer_server_name: token.server_name.clone(),
        peer_server_addresses: if acceptor.gateway_addresses.is_empty() {
            token.server_addresses.clone()
        } else {
            acceptor.gateway_addresses.clone()
        },
        peer_ca_pems: acceptor.ca_pems.clone(),
        peer_trust_domain,
        peer_gateway_fingerprint: token.gateway_fingerprint.clone(),
        remote: token.remote.clone(),
        groups,
        name_at_peer: acceptor.peer_name.clone(),
        establishment: None,
        stream_secret: Some(response.stream_secret),
        create_index: 0,
        modify_index: 0,
    };
    let trust_domain = record.peer_trust_domain.clone();
    peering
        .store
        .write(move |txn| -> Result<(), PeeringError> {
            check_no_conflict(txn, &record.name, &trust_domain)?;
            super::put(txn, record.clone())?;
            Ok(())
        })
        .await?;
    tracing::info!(peer = %name, remote = %token.remote.datacenter, "peering established; opening the stream");
    start_dialer(peering, name);
    Ok(())
}

fn check_no_conflict(
    r: &impl Reads,
    name: &str,
    peer_trust_domain: &str,
) -> Result<(), PeeringError> {
    if let Some(existing) = super::get(r, name)? {
        let replaceable = existing.role == Role::Dialer && existing.state == api::STATE_TERMINATED;
        if !replaceable {
            return Err(PeeringError::NameTaken {
                name: name.to_owned(),
                state: existing.state,
            });
        }
    }
    let duplicate = super::list(r)?.into_iter().any(|other| {
        other.name != name
            && other.peer_trust_domain == peer_trust_domain
            && other.state != api::STATE_TERMINATED
    });
    if duplicate {
        return Err(PeeringError::AlreadyLinked);
    }
    Ok(())
}

async fn call_exchange(
    token: &PeeringToken,
    tls: Arc<rustls::ClientConfig>,
    exchange: &ExchangeRequest,
) -> Result<ExchangeResponse, PeeringError> {
    let mut sender = connect(&token.server_addresses, &token.server_name, tls)
        .await
        .map_err(|e| PeeringError::PeerUnreachable(e.0))?;
    let body = Full::new(Bytes::from(
        serde_json::to_vec(exchange).expect("exchange serializes"),
    ))
    .boxed();
    let request = http::Request::post(format!(
        "https://{}{}",
        token.server_name,
        api::PATH_EXCHANGE
    ))
    .header(http::header::CONTENT_TYPE, "application/json")
    .body(body)
    .expect("valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| PeeringError::ExchangeFailed(e.to_string()))?;
    let (status, body) = read_body(response)
        .await
        .map_err(PeeringError::ExchangeFailed)?;
    if !status.is_success() {
        let message = String::from_utf8_lossy(&body).trim().to_owned();
        return Err(if status.is_server_error() {
            PeeringError::PeerFailed(message)
        } else {
            PeeringError::PeerRefused(message)
        });
    }
    serde_json::from_slice(&body).map_err(|e| PeeringError::MalformedExchangeAnswer(e.to_string()))
}

/// Starts (or restarts) the task keeping `peer`'s stream up.
pub fn start_dialer(peering: Arc<PeeringContext>, peer: String) {
    let task = tokio::spawn(dial_loop(peering.clone(), peer.clone()));
    peering.manager.set_dialer(&peer, task.abort_handle());
}

/// The client TLS config for an established peering: the peer's pinned
/// roots and server name (the fingerprint pin only guards establishment,
/// so the peer can renew its gateway certificate).
pub(super) fn stream_tls(
    peering: &PeeringContext,
    record: &PeeringRecord,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let identity = gateway_identity(peering).map_err(|e| e.to_string())?;
    isthmus_api::tls::peer_client_config(&record.peer_ca_pems, identity)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// What one connection attempt came to.
enum Attempt {
    Ended(SessionEnd),
    Failed(String),
    /// The peer no longer knows us: it deleted the peering while we were away.
    Rejected(Refusal),
}

/// Who refused our stream.
enum Refusal {
    /// The peer's agent: it has no peering with our stream secret.
    Agent(String),
    /// The peer's gateway: our certificate matches none of its peerings.
    /// Its view of the peerings lags the agent's by a moment, so right
    /// after establishment this can be stale.
    Gateway(String),
}

/// How long, and how many attempts, a gateway's refusal must persist
/// before we believe the peer deleted the peering.
const GATEWAY_REFUSAL_GRACE: Duration = Duration::from_secs(2);
const GATEWAY_REFUSALS_BEFORE_TERMINATED: u32 = 3;

/// Consecutive gateway refusals of our stream.
#[derive(Default)]
struct GatewayRefusals {
    count: u32,
    first: Option<tokio::time::Instant>,
}

impl GatewayRefusals {
    /// Records one refusal; true once the refusals have lasted long
    /// enough to be the peer's answer rather than its gateway's lag.
    fn persistent(&mut self) -> bool {
        self.count += 1;
        let first = *self.first.get_or_insert_with(tokio::time::Instant::now);
        self.count >= GATEWAY_REFUSALS_BEFORE_TERMINATED && first.elapsed() >= GATEWAY_REFUSAL_GRACE
    }
}

async fn dial_loop(peering: Arc<PeeringContext>, peer: String) {
    let mut backoff = BACKOFF_START;
    let mut gateway_refusals = GatewayRefusals::default();
    let counters = peering.metrics.peer(&peer);
    loop {
        let record = match peering.store.snapshot().and_then(|s| super::get(&s, &peer)) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "reading peering");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if record.role != Role::Dialer
            || matches!(
                record.state.as_str(),
                api::STATE_TERMINATED | api::STATE_DELETING
            )
        {
            return;
        }
        let started = tokio::time::Instant::now();
        let attempt = open_stream(&peering, &record, &counters).await;
        if matches!(attempt, Attempt::Failed(_) | Attempt::Rejected(_)) {
            counters.error(ErrorReason::Dial);
        }
        if !matches!(attempt, Attempt::Rejected(Refusal::Gateway(_))) {
            gateway_refusals = GatewayRefusals::default();
        }
        match attempt {
            Attempt::Ended(
                SessionEnd::PeerTerminated | SessionEnd::WeTerminated | SessionEnd::Replaced,
            ) => return,
            Attempt::Ended(_) => {}
            Attempt::Rejected(Refusal::Gateway(reason)) if !gateway_refusals.persistent() => {
                tracing::info!(peer = %peer, reason = %reason, attempts = gateway_refusals.count, "peer's gateway refused our stream; retrying in case it has not yet seen the peering");
            }
            Attempt::Rejected(Refusal::Agent(reason) | Refusal::Gateway(reason)) => {
                tracing::warn!(peer = %peer, reason = %reason, "peer refused our stream; marking the peering TERMINATED");
                let name = peer.clone();
                let _ = peering
                    .store
                    .write(move |txn| super::mark_terminated(txn, &name))
                    .await;
                return;
            }
            Attempt::Failed(reason) => {
                tracing::debug!(peer = %peer, reason = %reason, "peering stream attempt failed");
                let name = peer.clone();
                let _ = peering
                    .store
                    .write(move |txn| -> Result<(), crate::store::StoreError> {
                        if super::get(txn, &name)?.is_some_and(|r| {
                            r.state == api::STATE_ACTIVE || r.state == api::STATE_ESTABLISHING
                        }) {
                            super::set_state(txn, &name, api::STATE_FAILING)?;
                        }
                        Ok(())
                    })
                    .await;
            }
        }
        // A session that lived a while resets the backoff.
        if started.elapsed() > peering.manager.heartbeat * 3 {
            backoff = BACKOFF_START;
        }
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.5);
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_CAP);
    }
}

fn body_from(receiver: mpsc::Receiver<Bytes>) -> RequestBody {
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), receiver))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

/// Opens the stream and runs a session on it.
async fn open_stream(
    peering: &Arc<PeeringContext>,
    record: &PeeringRecord,
    counters: &PeerCounters,
) -> Attempt {
    let tls = match stream_tls(peering, record) {
        Ok(tls) => tls,
        Err(e) => return Attempt::Failed(e),
    };
    let mut sender =
        match connect(&record.peer_server_addresses, &record.peer_server_name, tls).await {
            Ok(sender) => sender,
            Err(e) => return Attempt::Failed(e.0),
        };
    let (outgoing, receiver) = mpsc::channel::<Bytes>(64);
    let open = StreamMessage::Open {
        peer_id: record.peer_id.clone(),
        stream_secret: record.stream_secret.clone().unwrap_or_default(),
    };
    if outgoing.send(stream::encode(&open)).await.is_err() {
        return Attempt::Failed("stream closed".into());
    }
    counters.message(Direction::Sent, &open);
    let request = http::Request::post(format!(
        "https://{}{}",
        record.peer_server_name,
        api::PATH_STREAM
    ))
    .header(http::header::CONTENT_TYPE, "application/x-ndjson")
    .body(body_from(receiver))
    .expect("valid request");
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(e) => return Attempt::Failed(format!("opening stream: {e}")),
    };
    if !response.status().is_success() {
        let (status, body) = read_body(response).await.unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_owned();
        // A 403 from the peer's agent (stream secret unknown) or gateway
        // (our certificate no longer belongs to a peering) means the peer
        // deleted the peering while we were away.
        if status == http::StatusCode::FORBIDDEN {
            if message.contains("invalid peering stream secret") {
                return Attempt::Rejected(Refusal::Agent(message));
            }
            if message.contains(api::REFUSAL_NOT_PEERED) {
                return Attempt::Rejected(Refusal::Gateway(message));
            }
        }
        return Attempt::Failed(format!("{status}: {message}"));
    }
    let incoming = response
        .into_body()
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| e.to_string()));
    let reader = LineReader::new(Box::pin(incoming), peering.max_message_bytes);
    Attempt::Ended(
        stream::run_session(peering.clone(), record.name.clone(), reader, outgoing).await,
    )
}

/// Tells the acceptor we deleted the peering when no stream is up: a short
/// stream carrying only `Open` and `Terminate`.
pub async fn send_terminate(
    peering: &Arc<PeeringContext>,
    record: &PeeringRecord,
) -> Result<(), String> {
    let tls = stream_tls(peering, record)?;
    let attempt = async {
        let mut sender = connect(&record.peer_server_addresses, &record.peer_server_name, tls)
            .await
            .map_err(|e| e.0)?;
        let (outgoing, receiver) = mpsc::channel::<Bytes>(4);
        let open = StreamMessage::Open {
            peer_id: record.peer_id.clone(),
            stream_secret: record.stream_secret.clone().unwrap_or_default(),
        };
        let _ = outgoing.send(stream::encode(&open)).await;
        let _ = outgoing
            .send(stream::encode(&StreamMessage::Terminate))
            .await;
        drop(outgoing);
        let request = http::Request::post(format!(
            "https://{}{}",
            record.peer_server_name,
            api::PATH_STREAM
        ))
        .body(body_from(receiver))
        .expect("valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        // Drain the answer so the peer has processed our messages.
        let _ = read_body(response).await;
        Ok(())
    };
    tokio::time::timeout(ESTABLISH_TIMEOUT, attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}
