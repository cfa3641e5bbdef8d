//! The proxy's catalog registration: a `connect-proxy` service named
//! `<service>-sidecar-proxy`, reachable at the advertise address, with a
//! TCP check on it. Made once the proxy can serve, made again as soon as it
//! is gone from the agent's catalog (or the agent seems to have
//! restarted), removed on graceful shutdown.

use std::sync::Arc;

use isthmus_api::catalog::{
    ProxyConfig as CatalogProxy, ServiceRegistration, Upstream as CatalogUpstream,
    KIND_CONNECT_PROXY,
};
use isthmus_dataplane::readiness::Readiness;
use isthmus_dataplane::registration::{listening_check, Registrar};
use isthmus_dataplane::shutdown::stopped;
use tokio::sync::{watch, Notify};

use crate::config::{Advertise, ProxyConfig};

const SIDECAR_SUFFIX: &str = "-sidecar-proxy";

/// `<service-id>-sidecar-proxy`, or the ID of the registration the proxy
/// serves (`--sidecar-for`).
pub fn proxy_id(config: &ProxyConfig) -> String {
    match &config.registered {
        Some(registered) => registered.proxy_id.clone(),
        None => format!("{}{SIDECAR_SUFFIX}", config.service_id()),
    }
}

/// The registration body. `upstream_ports` are the bound local ports, in
/// the order of `config.upstreams`.
pub fn registration(
    config: &ProxyConfig,
    advertise: &Advertise,
    upstream_ports: &[u16],
) -> ServiceRegistration {
    let upstreams = config
        .upstreams
        .iter()
        .zip(upstream_ports)
        .map(|(spec, port)| CatalogUpstream {
            destination_type: Some("service".into()),
            destination_name: spec.service.clone(),
            destination_peer: spec.peer.clone(),
            local_bind_address: Some(spec.local_address.to_string()),
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
        proxy: Some(Box::new(CatalogProxy {
            destination_service_name: config.service.clone(),
            destination_service_id: config.service_id().to_owned(),
            local_service_address: config.local_app.ip().to_string(),
            local_service_port: config.local_app.port(),
            upstreams,
            ..CatalogProxy::default()
        })),
        check: Some(listening_check(
            format!("Connect Sidecar Listening on {advertise}"),
            advertise,
        )),
        ..ServiceRegistration::default()
    }
}

/// Registers once `serving` says the proxy can serve, then keeps the
/// registration in the catalog until `stop` (see
/// [`Registrar::keep_registered`]).
pub(crate) async fn register_once_serving(
    registrar: Arc<Registrar>,
    mut serving: watch::Receiver<u64>,
    readiness: Arc<Readiness>,
    agent_restarted: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = stopped(&mut stop) => return,
        ready = serving.wait_for(|generation| *generation > 0) => if ready.is_err() { return },
    }
    registrar
        .keep_registered(false, readiness, agent_restarted, stop)
        .await;
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
