//! The proxy's catalog registration: a `connect-proxy` service named
//! `<service>-sidecar-proxy`, reachable at the advertise address, with a
//! TCP check on it. Made once the proxy can serve, made again as soon as it
//! is gone from the agent's catalog (or the agent seems to have
//! restarted), removed on graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use isthmus_api::catalog::{
    CheckDefinition, ProxyConfig as CatalogProxy, ServiceRegistration, Upstream as CatalogUpstream,
    KIND_CONNECT_PROXY, STATUS_PASSING,
};
use isthmus_runtime::client::{encode, Client, ClientError};
use tokio::sync::{watch, Notify};

use crate::admin::Readiness;
use crate::config::{Advertise, ProxyConfig};
use isthmus_dataplane::retry::{error_chain, Backoff, FailureLog};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const SIDECAR_SUFFIX: &str = "-sidecar-proxy";
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
        source: ClientError,
    },
    #[error("{action} {id} at the agent {control}: no answer within {CALL_TIMEOUT:?}")]
    Timeout {
        action: &'static str,
        id: String,
        control: String,
    },
}

/// `<service-id>-sidecar-proxy`.
pub fn proxy_id(config: &ProxyConfig) -> String {
    format!("{}{SIDECAR_SUFFIX}", config.service_id())
}

/// The registration body. `upstream_ports` are the bound local ports, in
/// the order of `config.upstreams`.
pub fn registration(
    config: &ProxyConfig,
    advertise: &Advertise,
    upstream_ports: &[u16],
) -> ServiceRegistration {
    let address = advertise.to_string();
    let upstreams = config
        .upstreams
        .iter()
        .zip(upstream_ports)
        .map(|(spec, port)| CatalogUpstream {
            destination_type: Some("service".into()),
            destination_name: spec.service.clone(),
            destination_peer: spec.peer.clone(),
            local_bind_address: Some("127.0.0.1".into()),
            local_bind_port: *port,
            ..CatalogUpstream::default()
        })
        .collect();
    ServiceRegistration {
        id: Some(proxy_id(config)),
        name: format!("{}{SIDECAR_SUFFIX}", config.service),
        kind: Some(KIND_CONNECT_PROXY.to_owned()),
        address: Some(advertise.host.clone()),
        port: Some(advertise.port),
        proxy: Some(CatalogProxy {
            destination_service_name: config.service.clone(),
            destination_service_id: config.service_id().to_owned(),
            local_service_address: config.local_app.ip().to_string(),
            local_service_port: config.local_app.port(),
            upstreams,
            ..CatalogProxy::default()
        }),
        check: Some(CheckDefinition {
            name: Some(format!("Connect Sidecar Listening on {address}")),
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
    body: Bytes,
}

impl Registrar {
    pub(crate) fn new(client: Client, registration: &ServiceRegistration) -> Registrar {
        let body = serde_json::to_vec(registration).expect("a registration serializes");
        Registrar {
            client,
            id: registration.id.clone().unwrap_or_default(),
            body: body.into(),
        }
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

    /// Registers once `serving` says the proxy can serve, retrying until it
    /// succeeds; then watches the registration and registers again as soon
    /// as it is gone from the agent's catalog (deregistered by someone,
    /// removed after its check stayed critical, lost in an agent restart)
    /// or the agent seems to have restarted. `/ready` says not ready while
    /// the proxy is not registered.
    pub(crate) async fn keep_registered(
        self: Arc<Self>,
        mut serving: watch::Receiver<u64>,
        readiness: Arc<Readiness>,
        agent_restarted: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) {
        tokio::select! {
            _ = crate::stopped(&mut stop) => return,
            ready = serving.wait_for(|generation| *generation > 0) => if ready.is_err() { return },
        }
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut failures = FailureLog::new(Duration::from_secs(60));
        loop {
            let result = tokio::select! {
                _ = crate::stopped(&mut stop) => return,
                r = self.register() => r,
            };
            readiness.set_registered(result.is_ok());
            let wait = match result {
                Ok(()) => {
                    failures.recovered();
                    let registered_at = tokio::time::Instant::now();
                    tokio::select! {
                        _ = crate::stopped(&mut stop) => return,
                        _ = agent_restarted.notified() => {}
                        _ = isthmus_dataplane::presence::wait_until_gone(&self.client, &self.id) => {
                            readiness.set_registered(false);
                            tracing::warn!(id = %self.id, "the registration is gone from the agent's catalog; registering again");
                        }
                    }
                    // A registration that keeps vanishing at once must not
                    // make us hammer the agent.
                    if registered_at.elapsed() < STABLE_REGISTRATION {
                        Some(backoff.next_delay())
                    } else {
                        backoff.reset();
                        None
                    }
                }
                Err(e) => {
                    let message = error_chain(&e);
                    if failures.failed(&message) {
                        tracing::warn!(error = %message, "catalog registration failed; retrying with backoff");
                    }
                    Some(backoff.next_delay())
                }
            };
            if let Some(wait) = wait {
                tokio::select! {
                    _ = crate::stopped(&mut stop) => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_shape() {
        let mut config = ProxyConfig::new("web", "127.0.0.1:8080".parse().unwrap());
        config.service_id = Some("web-1".into());
        config.upstreams = vec![
            "backend:9191".parse().unwrap(),
            "backend@cluster-02:0".parse().unwrap(),
        ];
        let advertise = Advertise {
            host: "10.0.0.5".into(),
            port: 21000,
        };
        let json = serde_json::to_value(registration(&config, &advertise, &[9191, 40000])).unwrap();
        assert_eq!(json["ID"], "web-1-sidecar-proxy");
        assert_eq!(json["Name"], "web-sidecar-proxy");
        assert_eq!(json["Kind"], "connect-proxy");
        assert_eq!(json["Address"], "10.0.0.5");
        assert_eq!(json["Port"], 21000);
        let proxy = &json["Proxy"];
        assert_eq!(proxy["DestinationServiceName"], "web");
        assert_eq!(proxy["DestinationServiceID"], "web-1");
        assert_eq!(proxy["LocalServiceAddress"], "127.0.0.1");
        assert_eq!(proxy["LocalServicePort"], 8080);
        assert_eq!(proxy["Upstreams"][0]["DestinationName"], "backend");
        assert_eq!(proxy["Upstreams"][0]["LocalBindPort"], 9191);
        assert_eq!(proxy["Upstreams"][1]["DestinationPeer"], "cluster-02");
        assert_eq!(proxy["Upstreams"][1]["LocalBindPort"], 40000);
        let check = &json["Check"];
        assert_eq!(check["TCP"], "10.0.0.5:21000");
        assert_eq!(check["Interval"], "10s");
        assert_eq!(check["Status"], "passing");
        assert_eq!(check["DeregisterCriticalServiceAfter"], "1m");
        // The agent's own type accepts it back (it refuses unknown fields).
        let _: ServiceRegistration = serde_json::from_value(json).unwrap();
    }
}
