//! The gateway's catalog registration (`mesh-gateway` kind): the agent
//! builds peering tokens' server addresses from these registrations.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use isthmus_api::catalog::{
    CheckDefinition, ServiceRegistration, KIND_MESH_GATEWAY, STATUS_PASSING,
};
use isthmus_api::gateway::SERVICE_NAME;
use isthmus_runtime::client::{encode, Client};
use tokio::sync::{watch, Notify};

use crate::admin::Readiness;
use crate::config::Advertise;
use isthmus_dataplane::retry::{Backoff, FailureLog};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A registration that lasted less than this before it vanished makes the
/// next attempt wait (with backoff).
const STABLE_REGISTRATION: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistrationError {
    #[error("{action} {id} at the agent {control}: {source}")]
    Api {
        action: &'static str,
        id: String,
        control: String,
        #[source]
        source: isthmus_runtime::client::ClientError,
    },
    #[error("{action} {id} at the agent {control}: no answer within {CALL_TIMEOUT:?}")]
    Timeout {
        action: &'static str,
        id: String,
        control: String,
    },
}

/// `mesh-gateway-<host>-<port>`, with anything but letters, digits, `-`,
/// `_` and `.` replaced by `-` (so never a `/`).
pub fn service_id(advertise: &Advertise) -> String {
    let raw = format!("{SERVICE_NAME}-{}-{}", advertise.host, advertise.port);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The registration body for a gateway reachable at `advertise`.
pub fn registration(advertise: &Advertise) -> ServiceRegistration {
    let address = advertise.to_string();
    ServiceRegistration {
        id: Some(service_id(advertise)),
        name: SERVICE_NAME.to_owned(),
        kind: Some(KIND_MESH_GATEWAY.to_owned()),
        address: Some(advertise.host.clone()),
        port: Some(advertise.port),
        check: Some(CheckDefinition {
            name: Some(format!("Mesh gateway listening on {address}")),
            tcp: Some(address),
            interval: Some("10s".to_owned()),
            status: Some(STATUS_PASSING.to_owned()),
            deregister_critical_service_after: Some("1m".to_owned()),
            ..CheckDefinition::default()
        }),
        ..ServiceRegistration::default()
    }
}

pub(crate) struct Registrar {
    client: Client,
    id: String,
    body: bytes::Bytes,
}

impl Registrar {
    pub(crate) fn new(client: Client, advertise: &Advertise) -> Registrar {
        let body = serde_json::to_vec(&registration(advertise)).expect("a registration serializes");
        Registrar {
            client,
            id: service_id(advertise),
            body: body.into(),
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    async fn call(
        &self,
        action: &'static str,
        path: &str,
        body: Option<bytes::Bytes>,
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

    pub(crate) async fn register(&self) -> Result<(), RegistrationError> {
        self.call(
            "registering",
            "/v1/agent/service/register",
            Some(self.body.clone()),
        )
        .await?;
        tracing::info!(id = %self.id, "registered in the catalog");
        Ok(())
    }

    pub(crate) async fn deregister(&self) -> Result<(), RegistrationError> {
        let path = format!("/v1/agent/service/deregister/{}", encode(&self.id));
        self.call("deregistering", &path, None).await?;
        tracing::info!(id = %self.id, "deregistered from the catalog");
        Ok(())
    }

    /// Registers until it succeeds; then watches the registration and
    /// registers again as soon as it is gone from the agent's catalog
    /// (deregistered by someone, removed after its check stayed critical,
    /// lost in an agent restart) or the agent seems to have restarted,
    /// until shutdown. `/ready` says not ready while unregistered.
    pub(crate) async fn keep_registered(
        self: Arc<Self>,
        mut registered: bool,
        readiness: Arc<Readiness>,
        agent_restarted: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut failures = FailureLog::new(Duration::from_secs(60));
        loop {
            if registered {
                let registered_at = tokio::time::Instant::now();
                tokio::select! {
                    _ = crate::stopped(&mut shutdown) => return,
                    _ = agent_restarted.notified() => {}
                    _ = isthmus_dataplane::presence::wait_until_gone(&self.client, &self.id) => {
                        readiness.set_registered(false);
                        tracing::warn!(id = %self.id, "the registration is gone from the agent's catalog; registering again");
                    }
                }
                // A registration that keeps vanishing at once must not make
                // us hammer the agent.
                if registered_at.elapsed() < STABLE_REGISTRATION {
                    tokio::select! {
                        _ = crate::stopped(&mut shutdown) => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                } else {
                    backoff.reset();
                }
            }
            let result = tokio::select! {
                _ = crate::stopped(&mut shutdown) => return,
                r = self.register() => r,
            };
            registered = result.is_ok();
            readiness.set_registered(registered);
            match result {
                Ok(()) => {
                    failures.recovered();
                }
                Err(e) => {
                    let message = isthmus_dataplane::retry::error_chain(&e);
                    if failures.failed(&message) {
                        tracing::warn!(error = %message, "catalog registration failed; retrying with backoff");
                    }
                    tokio::select! {
                        _ = crate::stopped(&mut shutdown) => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_service_ids() {
        let v4 = Advertise {
            host: "10.0.0.1".into(),
            port: 8443,
        };
        assert_eq!(service_id(&v4), "mesh-gateway-10.0.0.1-8443");
        let v6 = Advertise {
            host: "fd00::1".into(),
            port: 8443,
        };
        assert_eq!(service_id(&v6), "mesh-gateway-fd00--1-8443");
        let odd = Advertise {
            host: "gw/evil".into(),
            port: 1,
        };
        assert!(!service_id(&odd).contains('/'));
    }

    #[test]
    fn registration_shape() {
        let reg = registration(&Advertise {
            host: "fd00::1".into(),
            port: 8443,
        });
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(json["Name"], "mesh-gateway");
        assert_eq!(json["Kind"], "mesh-gateway");
        assert_eq!(json["Address"], "fd00::1");
        assert_eq!(json["Port"], 8443);
        assert_eq!(json["Check"]["TCP"], "[fd00::1]:8443");
        assert_eq!(json["Check"]["Interval"], "10s");
        assert_eq!(json["Check"]["Status"], "passing");
        assert_eq!(json["Check"]["DeregisterCriticalServiceAfter"], "1m");
    }
}
