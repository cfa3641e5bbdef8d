//! `--sidecar-for <service-id>` (and `--proxy-id <id>`): the proxy's
//! settings read from a `connect-proxy` registration on the agent, as
//! `consul connect envoy -sidecar-for` does. The registration names the
//! service the proxy fronts, the inbound port, the local application and
//! the upstreams; the proxy serves it and does not register itself.
//!
//! The registration is read once, at start: a later change (new upstreams,
//! another port) takes a restart of the proxy, which says so in its log
//! (the registration is watched with a blocking query for that).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use isthmus_api::catalog::{AgentService, Upstream, KIND_CONNECT_PROXY};
use isthmus_dataplane::watcher::{LogWording, Query};
use isthmus_runtime::client::{encode, Client, ClientError, Credentials};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    ConfigError, Layer, Protocol, ProxyConfig, Registered, UpstreamSpec, DEFAULT_CONTROL,
};

/// Which registration to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The one `connect-proxy` whose `Proxy.DestinationServiceID` is this
    /// service ID (compared case-insensitively, as Consul does).
    SidecarFor(String),
    /// The registration with this ID.
    ProxyId(String),
}

/// A proxy whose settings come from the agent: the lookup, and the flags
/// and config file's settings, which win where they may.
#[derive(Debug, Clone)]
pub struct FromRegistration {
    pub lookup: Lookup,
    pub given: Layer,
    pub credentials: Credentials,
}

/// Why the registration could not configure the proxy. The first three
/// are Consul's texts.
#[derive(Debug, thiserror::Error)]
pub enum SidecarForError {
    #[error("Failed looking up sidecar proxy info for {service_id}: {source}")]
    Lookup {
        service_id: String,
        #[source]
        source: ClientError,
    },
    #[error("No sidecar proxy registered for {0}")]
    NoSidecar(String),
    #[error("More than one sidecar proxy registered for {service_id}.\n    Start proxy with -proxy-id and one of the following IDs: {}", ids.join(", "))]
    SeveralSidecars {
        service_id: String,
        ids: Vec<String>,
    },
    #[error("reading the proxy registration {id}: {source}")]
    Read {
        id: String,
        #[source]
        source: ClientError,
    },
    #[error("the registration {id} is not a connect-proxy (Kind {kind:?})")]
    NotAProxy { id: String, kind: String },
    #[error("the proxy registration {id}: {problem}")]
    Invalid { id: String, problem: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Settings that cannot be combined with `--sidecar-for`/`--proxy-id`,
/// because the registration decides them: the flag and why.
const DECIDED_BY_THE_REGISTRATION: &[(&str, &str)] = &[
    (
        "--service",
        "the service comes from the registration's Proxy.DestinationServiceName",
    ),
    (
        "--service-id",
        "the service ID comes from the registration's Proxy.DestinationServiceID",
    ),
    (
        "--upstream",
        "the upstreams come from the registration's Proxy.Upstreams",
    ),
    (
        "--advertise",
        "the registration's address is what other sidecars dial",
    ),
];

impl FromRegistration {
    /// Refuses settings the registration decides; `flag` names the lookup
    /// flag in the message.
    pub fn new(
        lookup: Lookup,
        given: Layer,
        credentials: Credentials,
    ) -> Result<FromRegistration, ConfigError> {
        let flag = match lookup {
            Lookup::SidecarFor(_) => "--sidecar-for",
            Lookup::ProxyId(_) => "--proxy-id",
        };
        let set = [
            given.service.is_some(),
            given.service_id.is_some(),
            given.upstreams.is_some(),
            given.advertise.is_some(),
        ];
        for (&(other, why), set) in DECIDED_BY_THE_REGISTRATION.iter().zip(set) {
            if set {
                return Err(ConfigError(format!(
                    "{other} and {flag} cannot be used together: {why}"
                )));
            }
        }
        Ok(FromRegistration {
            lookup,
            given,
            credentials,
        })
    }

    /// Finds and reads the registration, and builds the proxy's settings.
    pub async fn resolve(self) -> Result<ProxyConfig, SidecarForError> {
        let control = self.given.control.as_deref().unwrap_or(DEFAULT_CONTROL);
        let client = Client::with_credentials(control, &self.credentials)
            .map_err(|e| ConfigError(e.to_string()))?;
        let proxy_id = match &self.lookup {
            Lookup::SidecarFor(service_id) => find_proxy_id(&client, service_id).await?,
            Lookup::ProxyId(id) => id.clone(),
        };
        let (registration, index) =
            read_service(&client, &proxy_id)
                .await
                .map_err(|source| SidecarForError::Read {
                    id: proxy_id.clone(),
                    source,
                })?;
        let parent_port = match registration.proxy.as_deref() {
            Some(proxy) if proxy.local_service_port == 0 => {
                let parent = &proxy.destination_service_id;
                read_service(&client, parent)
                    .await
                    .ok()
                    .map(|(s, _)| s.port)
            }
            _ => None,
        };
        let mut config = settings(&registration, parent_port, self.given)?;
        config.agent_credentials = self.credentials;
        if let Some(registered) = &mut config.registered {
            registered.index = index;
        }
        Ok(config)
    }
}

fn service_path(id: &str) -> String {
    format!("/v1/agent/service/{}", encode(id))
}

async fn read_service(client: &Client, id: &str) -> Result<(AgentService, u64), ClientError> {
    let (service, index) = client.get_json(&service_path(id)).await?;
    Ok((service, index.unwrap_or(0)))
}

/// What of a registration the proxy's settings depend on.
fn fingerprint(registration: &AgentService) -> String {
    serde_json::json!([registration.port, registration.address, registration.proxy]).to_string()
}

/// Watches the registration (blocking queries from the index it was read
/// at) and warns when what the proxy uses changed: the proxy keeps serving
/// what it read at start until restarted.
pub(crate) fn spawn_change_notice(
    client: &Client,
    registered: &Registered,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let query = Query {
        client: client.clone(),
        path: service_path(&registered.proxy_id),
        what: "sidecar registration",
        agent_restarted: None,
        known_index: Some(registered.index),
        wording: LogWording::GENERIC,
    };
    let (mut changes, task) = isthmus_dataplane::watcher::spawn::<AgentService>(query, stop);
    let (proxy_id, mut in_effect) = (registered.proxy_id.clone(), registered.fingerprint.clone());
    tokio::spawn(async move {
        let _watch = AbortOnDrop(task);
        while let Some(fresh) = changes.recv().await {
            let now = fingerprint(&fresh.value);
            if now != in_effect {
                tracing::warn!(
                    proxy_id = %proxy_id,
                    index = fresh.index,
                    "the sidecar registration changed since isthmus-proxy read it at start; restart the proxy to apply the change"
                );
                in_effect = now;
            }
        }
    })
}

/// Stops the watcher task with the task that reads it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The ID of the one `connect-proxy` on the agent that is a sidecar for
/// `service_id`.
pub async fn find_proxy_id(client: &Client, service_id: &str) -> Result<String, SidecarForError> {
    let (services, _): (BTreeMap<String, AgentService>, _) = client
        .get_json("/v1/agent/services")
        .await
        .map_err(|source| SidecarForError::Lookup {
            service_id: service_id.to_owned(),
            source,
        })?;
    pick_sidecar(services.values(), service_id)
}

/// Consul's rule: exactly one connect-proxy whose
/// `Proxy.DestinationServiceID` equals `service_id`, ignoring case.
pub fn pick_sidecar<'a>(
    services: impl IntoIterator<Item = &'a AgentService>,
    service_id: &str,
) -> Result<String, SidecarForError> {
    let mut ids: Vec<String> = services
        .into_iter()
        .filter(|s| s.kind.as_deref() == Some(KIND_CONNECT_PROXY))
        .filter(|s| {
            s.proxy
                .as_deref()
                .is_some_and(|p| p.destination_service_id.eq_ignore_ascii_case(service_id))
        })
        .map(|s| s.id.clone())
        .collect();
    ids.sort();
    match ids.len() {
        0 => Err(SidecarForError::NoSidecar(service_id.to_owned())),
        1 => Ok(ids.remove(0)),
        _ => Err(SidecarForError::SeveralSidecars {
            service_id: service_id.to_owned(),
            ids,
        }),
    }
}

/// The proxy's settings: the registration's, under the given ones where
/// those may decide (`--local-app`, `--protocol`, `--inbound-bind`'s host,
/// and everything the registration does not speak of). `parent_port` is
/// the fronted service's port, the local application's default port.
pub fn settings(
    registration: &AgentService,
    parent_port: Option<u16>,
    given: Layer,
) -> Result<ProxyConfig, SidecarForError> {
    let id = registration.id.clone();
    let invalid = |problem: String| SidecarForError::Invalid {
        id: id.clone(),
        problem,
    };
    if registration.kind.as_deref() != Some(KIND_CONNECT_PROXY) {
        return Err(SidecarForError::NotAProxy {
            id: id.clone(),
            kind: registration.kind.clone().unwrap_or_default(),
        });
    }
    let Some(proxy) = registration.proxy.as_deref() else {
        return Err(invalid("it has no Proxy block".into()));
    };
    if proxy.destination_service_name.is_empty() {
        return Err(invalid("Proxy.DestinationServiceName is empty".into()));
    }
    if registration.port == 0 {
        return Err(invalid(
            "it has no Port, the port the proxy's inbound listener serves".into(),
        ));
    }
    let inbound_host = match given.inbound_bind {
        Some(bind) if bind.port() != 0 && bind.port() != registration.port => {
            return Err(ConfigError(format!(
                "--inbound-bind {bind}: the port must be 0 or {}, the port of the registration {id} that other sidecars dial",
                registration.port
            ))
            .into());
        }
        Some(bind) => bind.ip(),
        None => registration
            .address
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    };
    let local_app = match given.local_app {
        Some(addr) => addr,
        None => {
            let host = if proxy.local_service_address.is_empty() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                proxy.local_service_address.parse().map_err(|_| {
                    invalid(format!(
                        "Proxy.LocalServiceAddress {:?} is not an IP address; give --local-app",
                        proxy.local_service_address
                    ))
                })?
            };
            let port = match (proxy.local_service_port, parent_port) {
                (0, Some(port)) if port != 0 => port,
                (0, _) => {
                    return Err(invalid(format!(
                        "neither Proxy.LocalServicePort nor the service {:?} has a port; give --local-app",
                        proxy.destination_service_id
                    )))
                }
                (port, _) => port,
            };
            SocketAddr::new(host, port)
        }
    };
    let protocol = match given.protocol {
        Some(protocol) => Some(protocol),
        None => config_protocol(&proxy.config).map_err(invalid)?,
    };
    let upstreams = proxy
        .upstreams
        .iter()
        .map(upstream)
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let service_id = if proxy.destination_service_id.is_empty() {
        None
    } else {
        Some(proxy.destination_service_id.clone())
    };
    let from_registration = Layer {
        service: Some(proxy.destination_service_name.clone()),
        service_id,
        inbound_bind: Some(SocketAddr::new(inbound_host, registration.port)),
        local_app: Some(local_app),
        upstreams: Some(upstreams),
        protocol,
        ..Layer::default()
    };
    let advertise = (!registration.address.is_empty())
        .then(|| format!("{}:{}", registration.address, registration.port));
    let mut config = from_registration
        .over(given)
        .finish()
        .map_err(|e| invalid(e.0))?;
    config.advertise = advertise;
    config.registered = Some(Registered {
        proxy_id: id,
        index: 0,
        fingerprint: fingerprint(registration),
    });
    Ok(config)
}

/// `Config.protocol` of a proxy or an upstream, if set. gRPC is HTTP/2.
fn config_protocol(
    config: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Protocol>, String> {
    let Some(value) = config.get("protocol") else {
        return Ok(None);
    };
    match value.as_str() {
        Some("grpc") => Ok(Some(Protocol::Http2)),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|e: ConfigError| format!("Config.protocol: {} (or grpc)", e.0)),
        None => Err(format!("Config.protocol {value}: expected a string")),
    }
}

/// One of `Proxy.Upstreams` as the proxy's upstream.
fn upstream(upstream: &Upstream) -> Result<UpstreamSpec, String> {
    let name = &upstream.destination_name;
    match upstream.destination_type.as_deref() {
        None | Some("") | Some("service") => {}
        Some(other) => {
            return Err(format!(
                "upstream {name}: DestinationType {other:?} is not supported (only service)"
            ))
        }
    }
    let peer = upstream
        .destination_peer
        .as_deref()
        .filter(|p| !p.is_empty());
    let mut spec = UpstreamSpec::new(name, peer, upstream.local_bind_port).map_err(|e| e.0)?;
    if let Some(address) = upstream
        .local_bind_address
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        spec.local_address = address.parse().map_err(|_| {
            format!("upstream {name}: LocalBindAddress {address:?} is not an IP address")
        })?;
    }
    spec.protocol =
        config_protocol(&upstream.config).map_err(|e| format!("upstream {name}: {e}"))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use isthmus_api::catalog::ProxyConfig as CatalogProxy;
    use serde_json::json;

    use super::*;

    fn sidecar(id: &str, for_id: &str) -> AgentService {
        AgentService {
            kind: Some(KIND_CONNECT_PROXY.into()),
            id: id.into(),
            service: "web-sidecar-proxy".into(),
            port: 21000,
            proxy: Some(Box::new(CatalogProxy {
                destination_service_name: "web".into(),
                destination_service_id: for_id.into(),
                ..CatalogProxy::default()
            })),
            ..AgentService::default()
        }
    }

    #[test]
    fn exactly_one_sidecar_is_picked_as_consul_does() {
        let plain = AgentService {
            id: "web".into(),
            service: "web".into(),
            ..AgentService::default()
        };
        let one = [plain.clone(), sidecar("web-sidecar-proxy", "web")];
        assert_eq!(pick_sidecar(&one, "WEB").unwrap(), "web-sidecar-proxy");
        let err = pick_sidecar(&one, "api").unwrap_err();
        assert_eq!(err.to_string(), "No sidecar proxy registered for api");
        let two = [sidecar("b-proxy", "web"), sidecar("a-proxy", "web"), plain];
        assert_eq!(
            pick_sidecar(&two, "web").unwrap_err().to_string(),
            "More than one sidecar proxy registered for web.\n    Start proxy with -proxy-id and one of the following IDs: a-proxy, b-proxy"
        );
    }

    #[test]
    fn settings_come_from_the_registration_with_consuls_defaults() {
        let mut registration = sidecar("web-sidecar-proxy", "web-1");
        {
            let proxy = registration.proxy.as_deref_mut().unwrap();
            proxy.upstreams = vec![
                Upstream {
                    destination_name: "backend".into(),
                    local_bind_port: 0,
                    config: [("protocol".to_owned(), json!("tcp"))]
                        .into_iter()
                        .collect(),
                    ..Upstream::default()
                },
                Upstream {
                    destination_name: "backend".into(),
                    destination_peer: Some("cluster-02".into()),
                    local_bind_address: Some("127.0.0.2".into()),
                    local_bind_port: 9192,
                    ..Upstream::default()
                },
            ];
            proxy.config = [("protocol".to_owned(), json!("grpc"))]
                .into_iter()
                .collect();
        }
        let config = settings(&registration, Some(8080), Layer::default()).unwrap();
        assert_eq!(config.service, "web");
        assert_eq!(config.service_id(), "web-1");
        assert_eq!(config.inbound_bind, "0.0.0.0:21000".parse().unwrap());
        assert_eq!(config.local_app, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.protocol, Protocol::Http2);
        let registered = config.registered.as_ref().unwrap();
        assert_eq!(registered.proxy_id, "web-sidecar-proxy");
        // Only what the proxy uses counts as a change.
        let mut retagged = registration.clone();
        retagged.tags = vec!["v2".into()];
        retagged.modify_index += 1;
        assert_eq!(fingerprint(&retagged), registered.fingerprint);
        let mut moved = registration.clone();
        moved.port += 1;
        assert_ne!(fingerprint(&moved), registered.fingerprint);
        assert_eq!(config.upstreams[0].protocol, Some(Protocol::Tcp));
        assert_eq!(config.upstreams[0].local_port, 0);
        assert_eq!(config.upstreams[1].label(), "backend@cluster-02");
        assert_eq!(config.upstreams[1].local_address.to_string(), "127.0.0.2");
        assert_eq!(config.upstreams[1].protocol, None);

        // Given settings win where they may.
        let given = Layer {
            inbound_bind: Some("127.0.0.1:0".parse().unwrap()),
            local_app: Some("127.0.0.1:9999".parse().unwrap()),
            protocol: Some(Protocol::Tcp),
            ..Layer::default()
        };
        let config = settings(&registration, Some(8080), given).unwrap();
        assert_eq!(config.inbound_bind, "127.0.0.1:21000".parse().unwrap());
        assert_eq!(config.local_app.port(), 9999);
        assert_eq!(config.protocol, Protocol::Tcp);
        let given = Layer {
            inbound_bind: Some("127.0.0.1:21001".parse().unwrap()),
            ..Layer::default()
        };
        let err = settings(&registration, Some(8080), given).unwrap_err();
        assert!(err.to_string().contains("must be 0 or 21000"), "{err}");

        // No port anywhere for the local application.
        let err = settings(&registration, None, Layer::default()).unwrap_err();
        assert!(err.to_string().contains("--local-app"), "{err}");
    }

    #[test]
    fn bad_registrations_are_refused_clearly() {
        let mut plain = sidecar("web", "web");
        plain.kind = None;
        let err = settings(&plain, Some(1), Layer::default()).unwrap_err();
        assert!(err.to_string().contains("not a connect-proxy"), "{err}");
        let mut registration = sidecar("web-sidecar-proxy", "web");
        registration.proxy.as_deref_mut().unwrap().upstreams = vec![Upstream {
            destination_type: Some("prepared_query".into()),
            destination_name: "q".into(),
            ..Upstream::default()
        }];
        let err = settings(&registration, Some(1), Layer::default()).unwrap_err();
        assert!(err.to_string().contains("prepared_query"), "{err}");
        let proxy = registration.proxy.as_deref_mut().unwrap();
        proxy.upstreams.clear();
        proxy.config = [("protocol".to_owned(), json!("udp"))]
            .into_iter()
            .collect();
        let err = settings(&registration, Some(1), Layer::default()).unwrap_err();
        assert!(err.to_string().contains("udp"), "{err}");
    }

    #[test]
    fn flags_the_registration_decides_are_refused() {
        let given = Layer {
            service: Some("web".into()),
            ..Layer::default()
        };
        let err = FromRegistration::new(
            Lookup::SidecarFor("web".into()),
            given,
            Credentials::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "--service and --sidecar-for cannot be used together: the service comes from the registration's Proxy.DestinationServiceName"
        );
        let given = Layer {
            upstreams: Some(vec![]),
            ..Layer::default()
        };
        let err = FromRegistration::new(Lookup::ProxyId("p".into()), given, Credentials::default())
            .unwrap_err();
        assert!(err.0.starts_with("--upstream and --proxy-id"), "{err}");
    }
}
