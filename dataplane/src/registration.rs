//! A role's own registration in its agent's catalog: made with retries,
//! made again as soon as it is gone from the catalog (or the agent seems
//! to have restarted), removed on graceful shutdown. What is registered
//! (a `mesh-gateway`, a `connect-proxy`) is the role's business; keeping it
//! registered is the same for both.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use isthmus_api::catalog::{CheckDefinition, ServiceRegistration, STATUS_PASSING};
use isthmus_runtime::client::{encode, Client, ClientError};
use tokio::sync::{watch, Notify};

use crate::config::Advertise;
use crate::readiness::Readiness;
use crate::retry::{error_chain, Backoff, FailureLog};
use crate::shutdown::stopped;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A registration that lasted less than this before it vanished makes the
/// next attempt wait (with backoff).
const STABLE_REGISTRATION: Duration = Duration::from_secs(1);

/// The check both roles register with: a TCP check on the advertised
/// address, passing from the start (the role registers once it serves),
/// and the service removed after a minute of failing.
pub fn listening_check(name: String, address: &Advertise) -> CheckDefinition {
    CheckDefinition {
        name: Some(name),
        tcp: Some(address.to_string()),
        interval: Some("10s".to_owned()),
        status: Some(STATUS_PASSING.to_owned()),
        deregister_critical_service_after: Some("1m".to_owned()),
        ..CheckDefinition::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("{action} {id} at the agent {control}: {source}")]
    Api {
        action: &'static str,
        id: String,
        control: String,
        #[source]
        source: ClientError,
    },
    #[error("{action} {id} at the agent {control}: no answer within {CALL_TIMEOUT:?}")]
    Timeout {
        action: &'static str,
        id: String,
        control: String,
    },
}

/// Registers and deregisters one service at the agent.
pub struct Registrar {
    client: Client,
    id: String,
    body: Bytes,
}

impl Registrar {
    pub fn new(client: Client, registration: &ServiceRegistration) -> Registrar {
        let body = serde_json::to_vec(registration).expect("a registration serializes");
        Registrar {
            client,
            id: registration.id.clone().unwrap_or_default(),
            body: body.into(),
        }
    }

    /// The catalog service ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    async fn call(
        &self,
        action: &'static str,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(), RegistrationError> {
        let call = self.client.call(Method::PUT, path, body);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(RegistrationError::Api {
                action,
                id: self.id.clone(),
                control: self.client.base().to_owned(),
                source,
            }),
            Err(_) => Err(RegistrationError::Timeout {
                action,
                id: self.id.clone(),
                control: self.client.base().to_owned(),
            }),
        }
    }

    pub async fn register(&self) -> Result<(), RegistrationError> {
        self.call(
            "registering",
            "/v1/agent/service/register",
            Some(self.body.clone()),
        )
        .await?;
        tracing::info!(id = %self.id, "registered in the catalog");
        Ok(())
    }

    pub async fn deregister(&self) -> Result<(), RegistrationError> {
        let path = format!("/v1/agent/service/deregister/{}", encode(&self.id));
        self.call("deregistering", &path, None).await?;
        tracing::info!(id = %self.id, "deregistered from the catalog");
        Ok(())
    }

    /// Deregisters within `timeout`, logging (not returning) a failure:
    /// what a shutdown does.
    pub async fn deregister_within(&self, timeout: Duration) {
        match tokio::time::timeout(timeout, self.deregister()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %error_chain(&e), "deregistration failed"),
            Err(_) => tracing::warn!("deregistration timed out"),
        }
    }

    /// Registers until it succeeds (unless `registered` says a first
    /// attempt already did); then watches the registration and registers
    /// again as soon as it is gone from the agent's catalog (deregistered
    /// by someone, removed after its check stayed critical, lost in an
    /// agent restart) or the agent seems to have restarted, until `stop`.
    /// `/ready` says not ready while unregistered.
    pub async fn keep_registered(
        self: Arc<Self>,
        mut registered: bool,
        readiness: Arc<Readiness>,
        agent_restarted: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut failures = FailureLog::new(Duration::from_secs(60));
        loop {
            if registered {
                let registered_at = tokio::time::Instant::now();
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = agent_restarted.notified() => {}
                    _ = crate::presence::wait_until_gone(&self.client, &self.id) => {
                        readiness.set_registered(false);
                        tracing::warn!(id = %self.id, "the registration is gone from the agent's catalog; registering again");
                    }
                }
                // A registration that keeps vanishing at once must not make
                // us hammer the agent.
                if registered_at.elapsed() < STABLE_REGISTRATION {
                    tokio::select! {
                        _ = stopped(&mut stop) => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                } else {
                    backoff.reset();
                }
            }
            let result = tokio::select! {
                _ = stopped(&mut stop) => return,
                r = self.register() => r,
            };
            registered = result.is_ok();
            readiness.set_registered(registered);
            match result {
                Ok(()) => {
                    failures.recovered();
                }
                Err(e) => {
                    let message = error_chain(&e);
                    if failures.failed(&message) {
                        tracing::warn!(error = %message, "catalog registration failed; retrying with backoff");
                    }
                    tokio::select! {
                        _ = stopped(&mut stop) => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}
