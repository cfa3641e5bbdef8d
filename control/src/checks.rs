//! Runs this node's health checks: probes HTTP and TCP checks on their
//! interval, expires TTL checks nobody refreshed, and removes services whose
//! check stayed critical past `DeregisterCriticalServiceAfter`.
//!
//! One task per HTTP or TCP check; TTL checks share one timer wheel
//! (`ttl_timers`). An alias check's task waits on the store for a change
//! to the aliased instance's checks (a blocking query of its own), so it
//! costs nothing while they stay as they are. Results are written to the store only when status or
//! output changes, so blocked health queries wake on real changes only.
//! A check that turns critical with a deregistration deadline gets a timer
//! (a "reaper"), whoever reported the status; turning healthy cancels it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use isthmus_api::catalog::{STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING};
use tokio::task::AbortHandle;

use crate::catalog::{self, CatalogError, StoredCheck};
use crate::check_kind::CheckKind;
use crate::store::{Reads, Snapshot, Store, StoreError, Table};
use crate::ttl_timers::TtlTimers;

/// How much of an HTTP check's response body is read and kept as its
/// output (Consul keeps 4 KiB). The rest is never read: the connection is
/// dropped, so an application streaming an endless body costs nothing.
const MAX_OUTPUT_BYTES: usize = 4096;

pub struct CheckRunner {
    store: Store,
    http: Client<HttpConnector, Empty<Bytes>>,
    running: Mutex<HashMap<String, Running>>,
    /// The countdowns of TTL checks.
    ttl: TtlTimers,
    /// Deregistration timers of critical checks, by check ID.
    reapers: Mutex<HashMap<String, AbortHandle>>,
}

/// What runs a check: a probe task, or a TTL countdown.
enum Running {
    Probe(AbortHandle),
    Ttl,
}

impl CheckRunner {
    /// A runner on the current runtime.
    pub fn new(store: Store) -> Arc<CheckRunner> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Arc::new_cyclic(|runner: &Weak<CheckRunner>| {
            let runner = runner.clone();
            let ttl = TtlTimers::start(move |check_id, ttl| {
                if let Some(runner) = runner.upgrade() {
                    runner.ttl_expired(check_id, ttl);
                }
            });
            CheckRunner {
                store,
                http: Client::builder(TokioExecutor::new()).build(connector),
                running: Mutex::new(HashMap::new()),
                ttl,
                reapers: Mutex::new(HashMap::new()),
            }
        })
    }

    /// A TTL check's owner did not report in time: it turns critical.
    fn ttl_expired(self: &Arc<Self>, check_id: String, ttl: Duration) {
        let probe = Probe {
            runner: self.clone(),
            check_id,
        };
        tokio::spawn(async move {
            let output = format!(
                "TTL expired (no update within {})",
                isthmus_api::duration::format(ttl)
            );
            if !probe.report(STATUS_CRITICAL, &output).await {
                probe.runner.ttl.disarm(&probe.check_id);
            }
        });
    }

    /// Starts (or restarts) the task for `check`.
    pub fn start(self: &Arc<Self>, check: &StoredCheck) {
        if check.state.r#type == catalog::TYPE_MAINTENANCE {
            return; // critical until maintenance is turned off; nothing to run
        }
        let kind = match check.kind() {
            Ok(kind) => kind,
            Err(e) => {
                tracing::error!(check = %check.state.check_id, error = %e, "not running an invalid stored check");
                return;
            }
        };
        self.observe(check);
        let check_id = &check.state.check_id;
        let running = match kind {
            CheckKind::Ttl { ttl } => {
                self.ttl.arm(check_id, ttl);
                Running::Ttl
            }
            kind => {
                let probe = Probe {
                    runner: self.clone(),
                    check_id: check_id.clone(),
                };
                Running::Probe(tokio::spawn(probe.run(kind)).abort_handle())
            }
        };
        let previous = self
            .running
            .lock()
            .expect("check runner lock poisoned")
            .insert(check_id.clone(), running);
        // A probe replaced by a TTL countdown (or the reverse) stops.
        if let Some(Running::Probe(task)) = previous {
            task.abort();
        }
    }

    pub fn stop(&self, check_id: &str) {
        let removed = self
            .running
            .lock()
            .expect("check runner lock poisoned")
            .remove(check_id);
        self.halt(check_id, removed);
        self.cancel_reaper(check_id);
    }

    fn halt(&self, check_id: &str, running: Option<Running>) {
        match running {
            Some(Running::Probe(task)) => task.abort(),
            Some(Running::Ttl) => self.ttl.disarm(check_id),
            None => {}
        }
    }

    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.running.lock().expect("check runner lock poisoned"));
        for (check_id, running) in all {
            self.halt(&check_id, Some(running));
        }
        let reapers = std::mem::take(&mut *self.reapers.lock().expect("reaper lock poisoned"));
        for reaper in reapers.into_values() {
            reaper.abort();
        }
    }

    fn cancel_reaper(&self, check_id: &str) {
        if let Some(reaper) = self
            .reapers
            .lock()
            .expect("reaper lock poisoned")
            .remove(check_id)
        {
            reaper.abort();
        }
    }

    /// Called with a check's state after every status change, from probes
    /// and from the API alike: arms or cancels its deregistration timer.
    pub fn observe(self: &Arc<Self>, check: &StoredCheck) {
        let check_id = &check.state.check_id;
        let deadline = check
            .deregister_after()
            .filter(|_| check.state.status == STATUS_CRITICAL);
        let Some(after) = deadline else {
            self.cancel_reaper(check_id);
            return;
        };
        let mut reapers = self.reapers.lock().expect("reaper lock poisoned");
        if reapers.contains_key(check_id) {
            return; // already counting down since it turned critical
        }
        let runner = self.clone();
        let id = check_id.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            runner.reap(id).await;
        });
        reapers.insert(check_id.clone(), task.abort_handle());
    }

    /// Deregisters the service of a check that is still critical.
    async fn reap(&self, check_id: String) {
        // Forget (without aborting) our own timer before doing the work.
        self.reapers
            .lock()
            .expect("reaper lock poisoned")
            .remove(&check_id);
        let id = check_id.clone();
        let result: Result<Option<(String, Vec<String>)>, CatalogError> = self
            .store
            .write(move |txn| {
                let Some(check) = catalog::get_check(txn, &id)? else {
                    return Ok(None);
                };
                if check.state.status != STATUS_CRITICAL {
                    return Ok(None);
                }
                let removed = crate::sidecar::deregister(txn, &check.state.service_id)?;
                Ok(Some((check.state.service_id, removed)))
            })
            .await;
        match result {
            Ok(Some((service_id, removed))) => {
                tracing::info!(service = %service_id, check = %check_id, "deregistered service: check stayed critical past DeregisterCriticalServiceAfter");
                for id in &removed {
                    self.stop(id);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(check = %check_id, error = %e, "deregistering critical service failed")
            }
        }
    }

    /// Restarts a TTL check's countdown after its owner reported in.
    pub fn refresh_ttl(&self, check_id: &str) {
        let running = self.running.lock().expect("check runner lock poisoned");
        if matches!(running.get(check_id), Some(Running::Ttl)) {
            self.ttl.refresh(check_id);
        }
    }
}

/// Reads at most `limit` bytes of `body`, then stops (dropping the body
/// closes the connection instead of draining it).
async fn read_prefix<B>(mut body: B, limit: usize) -> Result<Vec<u8>, String>
where
    B: hyper::body::Body + Unpin,
    B::Data: AsRef<[u8]>,
    B::Error: std::fmt::Display,
{
    let mut kept = Vec::new();
    while kept.len() < limit {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            let data = data.as_ref();
            let room = limit - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(kept)
}

/// An alias check reads its service again at least this often, whatever
/// the store says (a safety net; changes wake it at once).
const ALIAS_RECHECK: Duration = Duration::from_secs(60);

/// The aliased instance's health: its own checks' and the node's, worst
/// first, as Consul's alias check judges a local service.
fn alias_status(snap: &Snapshot, service_id: &str) -> Result<(&'static str, String), StoreError> {
    if catalog::get_service(snap, service_id)?.is_none() {
        return Ok((
            STATUS_CRITICAL,
            format!("Service {service_id} could not be found on node"),
        ));
    }
    let mut worst = STATUS_PASSING;
    for owner in [service_id, ""] {
        let checks: Vec<StoredCheck> = snap.lookup(Table::Checks, catalog::BY_SERVICE, owner)?;
        for check in checks {
            let status = match check.state.status.as_str() {
                STATUS_PASSING => STATUS_PASSING,
                STATUS_WARNING => STATUS_WARNING,
                _ => STATUS_CRITICAL,
            };
            if isthmus_api::catalog::status_severity(status)
                > isthmus_api::catalog::status_severity(worst)
            {
                worst = status;
            }
        }
    }
    let output = match worst {
        STATUS_PASSING => "All checks passing.".to_owned(),
        _ => format!("Aliased service {service_id} is {worst}"),
    };
    Ok((worst, output))
}

struct Probe {
    runner: Arc<CheckRunner>,
    check_id: String,
}

impl Probe {
    /// The probe loop of an HTTP or TCP check. Its future stays small
    /// (the probe and the store write are boxed, allocated only while they
    /// run).
    async fn run(self, kind: CheckKind) {
        match kind {
            // Counted down by the runner's timer wheel, never probed.
            CheckKind::Ttl { .. } => {}
            CheckKind::Http {
                url,
                method,
                headers,
                interval,
                timeout,
            } => loop {
                let (status, output) =
                    Box::pin(self.probe_http(&url, &method, &headers, timeout)).await;
                if !Box::pin(self.report(status, &output)).await {
                    return;
                }
                tokio::time::sleep(interval).await;
            },
            CheckKind::Tcp {
                address,
                interval,
                timeout,
            } => loop {
                let (status, output) =
                    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address))
                        .await
                    {
                        Ok(Ok(_)) => (STATUS_PASSING, format!("TCP connect {address}: Success")),
                        Ok(Err(e)) => (STATUS_CRITICAL, format!("TCP connect {address}: {e}")),
                        Err(_) => (
                            STATUS_CRITICAL,
                            format!(
                                "TCP connect {address}: timed out after {}",
                                isthmus_api::duration::format(timeout)
                            ),
                        ),
                    };
                if !Box::pin(self.report(status, &output)).await {
                    return;
                }
                tokio::time::sleep(interval).await;
            },
            CheckKind::Alias { service_id } => loop {
                let store = &self.runner.store;
                let snap = store.recording_snapshot();
                let (status, output) = match alias_status(&snap, &service_id) {
                    Ok(verdict) => verdict,
                    Err(e) => (STATUS_CRITICAL, format!("reading {service_id:?}: {e}")),
                };
                let watched = snap.watch_set();
                let since = snap.state_index();
                drop(snap);
                if !Box::pin(self.report(status, &output)).await {
                    return;
                }
                let deadline = tokio::time::Instant::now() + ALIAS_RECHECK;
                store.wait_for_change(&watched, since, deadline).await;
            },
        }
    }

    async fn probe_http(
        &self,
        url: &http::Uri,
        method: &http::Method,
        headers: &[(http::HeaderName, http::HeaderValue)],
        timeout: Duration,
    ) -> (&'static str, String) {
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(url.clone())
            .header(http::header::USER_AGENT, "isthmus health check");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Empty::new())
            .expect("validated at registration");
        let attempt = async {
            let response = self
                .runner
                .http
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = read_prefix(response.into_body(), MAX_OUTPUT_BYTES).await?;
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok((status, body))) => {
                let verdict = if status.is_success() {
                    STATUS_PASSING
                } else if status == http::StatusCode::TOO_MANY_REQUESTS {
                    STATUS_WARNING
                } else {
                    STATUS_CRITICAL
                };
                let output = format!(
                    "HTTP {method} {url}: {status} Output: {}",
                    String::from_utf8_lossy(&body)
                );
                (verdict, output)
            }
            Ok(Err(e)) => (STATUS_CRITICAL, format!("HTTP {method} {url}: {e}")),
            Err(_) => (
                STATUS_CRITICAL,
                format!(
                    "HTTP {method} {url}: timed out after {}",
                    isthmus_api::duration::format(timeout)
                ),
            ),
        }
    }

    /// Records a result. Returns false once the check no longer exists, so
    /// the task ends.
    async fn report(&self, status: &'static str, output: &str) -> bool {
        let check_id = self.check_id.clone();
        let output = output.to_owned();
        let result = self
            .runner
            .store
            .write(move |txn| catalog::set_check_status(txn, &check_id, status, &output))
            .await;
        match result {
            Ok(check) => {
                self.runner.observe(&check);
                true
            }
            Err(CatalogError::UnknownCheck { .. }) => false,
            Err(e) => {
                tracing::warn!(check = %self.check_id, error = %e, "recording check result failed");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An application whose health endpoint answers 200 and then streams
    /// an endless body as fast as it can be read.
    async fn endless_app() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = [0u8; 1024];
                    let _ = tcp.read(&mut head).await;
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
                    while tcp.write_all(chunk.as_bytes()).await.is_ok() {
                        counter.fetch_add(64 * 1024, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        (addr, sent)
    }

    #[tokio::test]
    async fn an_endless_body_is_cut_at_the_output_limit() {
        let (addr, sent) = endless_app().await;
        let probe = Probe {
            runner: CheckRunner::new(Store::in_memory().unwrap()),
            check_id: "endless".into(),
        };
        let url: http::Uri = format!("http://{addr}/health").parse().unwrap();
        let timeout = Duration::from_secs(5);
        let started = std::time::Instant::now();
        let (status, output) = probe
            .probe_http(&url, &http::Method::GET, &[], timeout)
            .await;
        assert!(
            started.elapsed() < timeout,
            "the probe read until the timeout"
        );
        assert_eq!(status, STATUS_PASSING, "{output}");
        let body = output.split_once("Output: ").unwrap().1;
        assert_eq!(body.len(), MAX_OUTPUT_BYTES);
        assert!(body.bytes().all(|b| b == b'x'));
        // The connection was dropped: the app cannot go on sending for long
        // (at most what the socket buffers hold).
        let mut last = sent.load(std::sync::atomic::Ordering::Relaxed);
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = sent.load(std::sync::atomic::Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        assert!(last < 64 << 20, "the app sent {last} bytes after the probe");
    }
}
