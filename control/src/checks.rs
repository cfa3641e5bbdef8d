//! Runs this node's health checks: probes HTTP and TCP checks on their
//! interval, expires TTL checks nobody refreshed, and removes services whose
//! check stayed critical past `DeregisterCriticalServiceAfter`.
//!
//! One task per check; results are written to the store only when status or
//! output changes, so blocked health queries wake on real changes only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use isthmus_api::catalog::{STATUS_CRITICAL, STATUS_PASSING, STATUS_WARNING};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::catalog::{self, CheckKind, StoredCheck};
use crate::error::ApiError;
use crate::store::Store;

/// Output kept from an HTTP check's response body.
const MAX_OUTPUT_BYTES: usize = 512;

pub struct CheckRunner {
    store: Store,
    http: Client<HttpConnector, Empty<Bytes>>,
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    task: AbortHandle,
    /// Set for TTL checks: refreshing the TTL restarts the countdown.
    ttl_refresh: Option<Arc<Notify>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CheckRunner {
    pub fn new(store: Store) -> Arc<CheckRunner> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Arc::new(CheckRunner {
            store,
            http: Client::builder(TokioExecutor::new()).build(connector),
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Starts (or restarts) the task for `check`.
    pub fn start(self: &Arc<Self>, check: &StoredCheck) {
        let kind = match check.kind() {
            Ok(kind) => kind,
            Err(e) => {
                tracing::error!(check = %check.state.check_id, error = %e, "not running an invalid stored check");
                return;
            }
        };
        let ttl_refresh = matches!(kind, CheckKind::Ttl { .. }).then(|| Arc::new(Notify::new()));
        let probe = Probe {
            runner: self.clone(),
            check_id: check.state.check_id.clone(),
            service_id: check.state.service_id.clone(),
            deregister_after: check.deregister_after(),
            critical_since: None,
        };
        let task = tokio::spawn(probe.run(kind, ttl_refresh.clone())).abort_handle();
        let previous = self
            .running
            .lock()
            .expect("check runner lock poisoned")
            .insert(check.state.check_id.clone(), Running { task, ttl_refresh });
        drop(previous);
    }

    pub fn stop(&self, check_id: &str) {
        let removed = self
            .running
            .lock()
            .expect("check runner lock poisoned")
            .remove(check_id);
        drop(removed);
    }

    pub fn stop_all(&self) {
        let all = std::mem::take(&mut *self.running.lock().expect("check runner lock poisoned"));
        drop(all);
    }

    /// Whether `check_id` is a TTL check this runner knows.
    pub fn is_ttl(&self, check_id: &str) -> bool {
        self.running
            .lock()
            .expect("check runner lock poisoned")
            .get(check_id)
            .is_some_and(|r| r.ttl_refresh.is_some())
    }

    /// Restarts a TTL check's countdown after its owner reported in.
    pub fn refresh_ttl(&self, check_id: &str) {
        let running = self.running.lock().expect("check runner lock poisoned");
        if let Some(notify) = running.get(check_id).and_then(|r| r.ttl_refresh.as_ref()) {
            notify.notify_one();
        }
    }
}

struct Probe {
    runner: Arc<CheckRunner>,
    check_id: String,
    service_id: String,
    deregister_after: Option<Duration>,
    critical_since: Option<Instant>,
}

impl Probe {
    async fn run(mut self, kind: CheckKind, ttl_refresh: Option<Arc<Notify>>) {
        match kind {
            CheckKind::Ttl { ttl } => {
                let refresh = ttl_refresh.expect("TTL checks carry a refresh handle");
                let output = format!(
                    "TTL expired (no update within {})",
                    isthmus_api::duration::format(ttl)
                );
                loop {
                    tokio::select! {
                        _ = refresh.notified() => self.critical_since = None,
                        // Expired: mark critical, then keep re-reporting every
                        // TTL so deregistration is re-evaluated.
                        _ = tokio::time::sleep(ttl) => {
                            if !self.report(STATUS_CRITICAL, &output).await {
                                return;
                            }
                        }
                    }
                }
            }
            CheckKind::Http {
                url,
                method,
                headers,
                interval,
                timeout,
            } => loop {
                let (status, output) = self.probe_http(&url, &method, &headers, timeout).await;
                if !self.report(status, &output).await {
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
                if !self.report(status, &output).await {
                    return;
                }
                tokio::time::sleep(interval).await;
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
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
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
                let shown = &body[..body.len().min(MAX_OUTPUT_BYTES)];
                let output = format!(
                    "HTTP {method} {url}: {status} Output: {}",
                    String::from_utf8_lossy(shown)
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
    async fn report(&mut self, status: &'static str, output: &str) -> bool {
        let check_id = self.check_id.clone();
        let output_owned = output.to_owned();
        let result = self
            .runner
            .store
            .write(move |txn| catalog::set_check_status(txn, &check_id, status, &output_owned))
            .await;
        match result {
            Ok(check) => {
                if check.state.status != status {
                    return true;
                }
            }
            Err(e) if e.status == http::StatusCode::NOT_FOUND => return false,
            Err(e) => {
                tracing::warn!(check = %self.check_id, error = %e, "recording check result failed");
                return true;
            }
        }
        if status != STATUS_CRITICAL {
            self.critical_since = None;
            return true;
        }
        let since = *self.critical_since.get_or_insert_with(Instant::now);
        match self.deregister_after {
            Some(after) if since.elapsed() >= after => {
                self.deregister().await;
                false
            }
            _ => true,
        }
    }

    async fn deregister(&self) {
        let service_id = self.service_id.clone();
        let result: Result<Vec<String>, ApiError> = self
            .runner
            .store
            .write(move |txn| catalog::deregister(txn, &service_id))
            .await;
        match result {
            Ok(removed) => {
                tracing::info!(service = %self.service_id, check = %self.check_id, "deregistered service: check stayed critical past DeregisterCriticalServiceAfter");
                for id in removed.iter().filter(|id| **id != self.check_id) {
                    self.runner.stop(id);
                }
                // This task's own entry is removed last; the caller returns
                // right after, so aborting itself is harmless.
                self.runner.stop(&self.check_id);
            }
            Err(e) => {
                tracing::warn!(service = %self.service_id, error = %e, "deregistering critical service failed")
            }
        }
    }
}
