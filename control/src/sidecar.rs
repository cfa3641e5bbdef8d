//! `Connect.SidecarService`: the sidecar proxy a service registration asks
//! the agent to register along with the service, filled in with Consul's
//! defaults, and removed with its parent.
//!
//! As Consul's agent does: the sidecar is `<id>-sidecar-proxy`, named
//! `<name>-sidecar-proxy`, of kind `connect-proxy`; it inherits the
//! parent's tags and meta unless it has its own; its proxy points at the
//! parent (`DestinationServiceName`/`ID`, `LocalServiceAddress`/`Port`);
//! without a port it gets the lowest one in [`SIDECAR_PORTS`] that no other
//! proxy or gateway of this node holds (a re-registered sidecar keeps its
//! own); without checks it gets Consul's two: a TCP check on its port
//! (`Connect Sidecar Listening`) and an alias of the parent
//! (`Connect Sidecar Aliasing <id>`). Both are written in the parent's
//! transaction: a registration that fails leaves neither.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use isthmus_api::catalog::{
    AgentService, CheckDefinition, ProxyConfig, ServiceRegistration, KIND_CONNECT_PROXY,
    KIND_MESH_GATEWAY,
};

use crate::catalog::{self, CatalogError, LocalNode, Registered, Registration, BY_KIND};
use crate::store::{Reads, Table, Txn};

/// A sidecar's ID and name are its parent's with this suffix.
pub const SIDECAR_SUFFIX: &str = "-sidecar-proxy";
/// Where sidecar ports are taken from when a registration gives none
/// (Consul's `sidecar_min_port`..`sidecar_max_port` defaults).
pub const SIDECAR_PORTS: RangeInclusive<u16> = 21000..=21255;
/// The interval of the default listening check, as in Consul.
const LISTENING_INTERVAL: &str = "10s";

/// The sidecar a registration asks for, with every default that does not
/// depend on the store filled in.
#[derive(Debug, Clone)]
pub struct SidecarRequest {
    registration: ServiceRegistration,
    /// The request named no checks: Consul's two are added once the port
    /// is known.
    default_checks: bool,
}

impl SidecarRequest {
    /// The sidecar's registration as it will be written.
    pub fn registration(&self) -> &ServiceRegistration {
        &self.registration
    }
}

/// Takes `Connect.SidecarService` out of `parent` and completes it from the
/// parent. The sidecar is validated here (with a stand-in port when it has
/// none yet), so the write can fail only for want of a free port.
pub fn split(
    mut parent: ServiceRegistration,
    node: &LocalNode,
) -> Result<(ServiceRegistration, Option<SidecarRequest>), CatalogError> {
    let Some(sidecar) = parent
        .connect
        .as_mut()
        .and_then(|c| c.sidecar_service.take())
    else {
        return Ok((parent, None));
    };
    let invalid = |message: String| {
        CatalogError::InvalidRegistration(format!("Connect.SidecarService: {message}"))
    };
    let mut sidecar = *sidecar;
    if sidecar.connect.is_some() {
        return Err(invalid(
            "a sidecar cannot have Connect settings of its own".into(),
        ));
    }
    match sidecar.kind.as_deref() {
        None | Some("") | Some(KIND_CONNECT_PROXY) => {}
        Some(other) => {
            return Err(invalid(format!(
                "Kind {other:?} is not allowed: a sidecar is always \"connect-proxy\""
            )))
        }
    }
    let parent_id = parent.id.clone().unwrap_or_else(|| parent.name.clone());
    sidecar.kind = Some(KIND_CONNECT_PROXY.to_owned());
    if sidecar.id.as_deref().is_none_or(str::is_empty) {
        sidecar.id = Some(format!("{parent_id}{SIDECAR_SUFFIX}"));
    }
    if sidecar.id.as_deref() == Some(parent_id.as_str()) {
        return Err(invalid(format!(
            "ID {parent_id:?} is the service's own; a sidecar needs an ID of its own"
        )));
    }
    if sidecar.name.is_empty() {
        sidecar.name = format!("{}{SIDECAR_SUFFIX}", parent.name);
    }
    if sidecar.tags.is_empty() {
        sidecar.tags = parent.tags.clone();
    }
    if sidecar.meta.is_empty() {
        sidecar.meta = parent.meta.clone();
    }
    let proxy = sidecar
        .proxy
        .get_or_insert_with(|| Box::new(ProxyConfig::default()));
    if proxy.destination_service_name.is_empty() {
        proxy.destination_service_name = parent.name.clone();
    }
    if proxy.destination_service_id.is_empty() {
        proxy.destination_service_id = parent_id.clone();
    }
    if proxy.local_service_address.is_empty() {
        proxy.local_service_address = parent
            .address
            .clone()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "127.0.0.1".to_owned());
    }
    if proxy.local_service_port == 0 {
        proxy.local_service_port = parent.port.unwrap_or(0);
    }
    let default_checks = sidecar.check.is_none() && sidecar.checks.is_empty();

    // Validate now, as it will be written (a stand-in port if it has none).
    let mut trial = sidecar.clone();
    let port = trial
        .port
        .filter(|p| *p != 0)
        .unwrap_or(*SIDECAR_PORTS.start());
    trial.port = Some(port);
    if default_checks {
        trial.checks = default_check_definitions(&parent_id, &trial);
    }
    catalog::prepare(trial, node).map_err(|e| match e {
        CatalogError::InvalidRegistration(message) => invalid(message),
        other => other,
    })?;
    Ok((
        parent,
        Some(SidecarRequest {
            registration: sidecar,
            default_checks,
        }),
    ))
}

/// Consul's checks for a sidecar that names none.
fn default_check_definitions(
    parent_id: &str,
    sidecar: &ServiceRegistration,
) -> Vec<CheckDefinition> {
    let host = sidecar
        .address
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = sidecar.port.unwrap_or(0);
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    vec![
        CheckDefinition {
            name: Some("Connect Sidecar Listening".to_owned()),
            tcp: Some(address),
            interval: Some(LISTENING_INTERVAL.to_owned()),
            ..CheckDefinition::default()
        },
        CheckDefinition {
            name: Some(format!("Connect Sidecar Aliasing {parent_id}")),
            alias_service: Some(parent_id.to_owned()),
            ..CheckDefinition::default()
        },
    ]
}

/// Writes the parent and then its sidecar (if asked for) in one
/// transaction, giving the sidecar a port from [`SIDECAR_PORTS`] if it has
/// none.
pub fn register(
    txn: &mut Txn,
    parent: Registration,
    sidecar: Option<SidecarRequest>,
    node: &LocalNode,
) -> Result<(Registered, Option<Registered>), CatalogError> {
    let parent_id = parent.service.id.clone();
    let parent = catalog::register(txn, parent)?;
    let Some(SidecarRequest {
        mut registration,
        default_checks,
    }) = sidecar
    else {
        return Ok((parent, None));
    };
    if registration.port.unwrap_or(0) == 0 {
        let id = registration.id.clone().unwrap_or_default();
        registration.port = Some(free_port(txn, &id)?);
    }
    if default_checks {
        registration.checks = default_check_definitions(&parent_id, &registration);
    }
    let prepared = catalog::prepare(registration, node)?;
    Ok((parent, Some(catalog::register(txn, prepared)?)))
}

/// The lowest port of [`SIDECAR_PORTS`] that no proxy or gateway of this
/// node holds; the sidecar `id` keeps the port it has.
fn free_port(txn: &Txn, id: &str) -> Result<u16, CatalogError> {
    if let Some(existing) = txn.get::<AgentService>(Table::Services, id)? {
        if SIDECAR_PORTS.contains(&existing.port) {
            return Ok(existing.port);
        }
    }
    let mut taken = HashSet::new();
    for kind in [KIND_CONNECT_PROXY, KIND_MESH_GATEWAY] {
        for service in txn.lookup::<AgentService>(Table::Services, BY_KIND, kind)? {
            taken.insert(service.port);
        }
    }
    SIDECAR_PORTS
        .clone()
        .find(|port| !taken.contains(port))
        .ok_or_else(|| {
            CatalogError::InvalidRegistration(format!(
                "Connect.SidecarService: no port provided and none left in the configured range [{}, {}]",
                SIDECAR_PORTS.start(),
                SIDECAR_PORTS.end()
            ))
        })
}

/// The sidecar registered for `parent_id` through its registration, if
/// there is one: `<id>-sidecar-proxy`, a proxy of that very instance.
pub fn sidecar_of(r: &impl Reads, parent_id: &str) -> Result<Option<String>, CatalogError> {
    let id = format!("{parent_id}{SIDECAR_SUFFIX}");
    let sidecar: Option<AgentService> = r.get(Table::Services, &id)?;
    Ok(sidecar
        .filter(|s| {
            s.kind.as_deref() == Some(KIND_CONNECT_PROXY)
                && s.proxy
                    .as_ref()
                    .is_some_and(|p| p.destination_service_id == parent_id)
        })
        .map(|_| id))
}

/// Removes `service_id` and the sidecar registered with it; returns the
/// removed check IDs.
pub fn deregister(txn: &mut Txn, service_id: &str) -> Result<Vec<String>, CatalogError> {
    let mut removed = catalog::deregister(txn, service_id)?;
    if let Some(sidecar) = sidecar_of(txn, service_id)? {
        removed.extend(catalog::deregister(txn, &sidecar)?);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::catalog::{ConnectDefinition, Upstream};

    fn node() -> LocalNode {
        LocalNode {
            id: "id".into(),
            name: "n1".into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
        }
    }

    fn web(sidecar: ServiceRegistration) -> ServiceRegistration {
        ServiceRegistration {
            id: Some("web-1".into()),
            name: "web".into(),
            port: Some(8080),
            tags: vec!["v1".into()],
            connect: Some(ConnectDefinition {
                native: false,
                sidecar_service: Some(Box::new(sidecar)),
            }),
            ..ServiceRegistration::default()
        }
    }

    #[test]
    fn an_empty_sidecar_gets_consuls_defaults() {
        let (parent, sidecar) = split(web(ServiceRegistration::default()), &node()).unwrap();
        assert!(parent.connect.unwrap().sidecar_service.is_none());
        let sidecar = sidecar.unwrap();
        assert!(sidecar.default_checks);
        let reg = sidecar.registration;
        assert_eq!(reg.id.as_deref(), Some("web-1-sidecar-proxy"));
        assert_eq!(reg.name, "web-sidecar-proxy");
        assert_eq!(reg.kind.as_deref(), Some(KIND_CONNECT_PROXY));
        assert_eq!(reg.tags, ["v1"]);
        assert_eq!(reg.port, None);
        let proxy = reg.proxy.unwrap();
        assert_eq!(proxy.destination_service_name, "web");
        assert_eq!(proxy.destination_service_id, "web-1");
        assert_eq!(proxy.local_service_address, "127.0.0.1");
        assert_eq!(proxy.local_service_port, 8080);
    }

    #[test]
    fn given_fields_win() {
        let upstreams = vec![Upstream {
            destination_name: "db".into(),
            local_bind_port: 9191,
            ..Upstream::default()
        }];
        let given = ServiceRegistration {
            port: Some(21999),
            tags: vec!["proxy".into()],
            proxy: Some(Box::new(ProxyConfig {
                upstreams: upstreams.clone(),
                local_service_port: 9000,
                ..ProxyConfig::default()
            })),
            checks: vec![CheckDefinition {
                ttl: Some("30s".into()),
                ..CheckDefinition::default()
            }],
            ..ServiceRegistration::default()
        };
        let (_, sidecar) = split(web(given), &node()).unwrap();
        let sidecar = sidecar.unwrap();
        assert!(!sidecar.default_checks);
        let reg = sidecar.registration;
        assert_eq!(reg.port, Some(21999));
        assert_eq!(reg.tags, ["proxy"]);
        let proxy = reg.proxy.unwrap();
        assert_eq!(proxy.upstreams, upstreams);
        assert_eq!(proxy.local_service_port, 9000);
        assert_eq!(proxy.destination_service_id, "web-1");
    }

    #[test]
    fn a_sidecar_of_another_kind_or_invalid_is_refused() {
        let gateway = ServiceRegistration {
            kind: Some(KIND_MESH_GATEWAY.into()),
            ..ServiceRegistration::default()
        };
        let e = split(web(gateway), &node()).unwrap_err().to_string();
        assert!(e.starts_with("Connect.SidecarService: Kind"), "{e}");
        let bad_check = ServiceRegistration {
            check: Some(CheckDefinition::default()),
            ..ServiceRegistration::default()
        };
        let e = split(web(bad_check), &node()).unwrap_err().to_string();
        assert!(e.starts_with("Connect.SidecarService: Check"), "{e}");
        let same_id = ServiceRegistration {
            id: Some("web-1".into()),
            ..ServiceRegistration::default()
        };
        let e = split(web(same_id), &node()).unwrap_err().to_string();
        assert!(e.starts_with("Connect.SidecarService: ID"), "{e}");
    }

    #[test]
    fn default_checks_listen_on_the_port_and_alias_the_parent() {
        let sidecar = ServiceRegistration {
            port: Some(21003),
            ..ServiceRegistration::default()
        };
        let checks = default_check_definitions("web-1", &sidecar);
        assert_eq!(checks[0].name.as_deref(), Some("Connect Sidecar Listening"));
        assert_eq!(checks[0].tcp.as_deref(), Some("127.0.0.1:21003"));
        assert_eq!(checks[0].interval.as_deref(), Some("10s"));
        assert_eq!(
            checks[1].name.as_deref(),
            Some("Connect Sidecar Aliasing web-1")
        );
        assert_eq!(checks[1].alias_service.as_deref(), Some("web-1"));
    }

    fn store() -> crate::store::Store {
        crate::store::Store::with_log(Box::new(crate::store::NoLog), catalog::schema()).unwrap()
    }

    fn register_with_sidecar(
        store: &crate::store::Store,
        name: &str,
        sidecar: ServiceRegistration,
    ) -> Result<Option<u16>, CatalogError> {
        let reg = ServiceRegistration {
            id: None,
            name: name.into(),
            connect: Some(ConnectDefinition {
                native: false,
                sidecar_service: Some(Box::new(sidecar)),
            }),
            ..ServiceRegistration::default()
        };
        let (parent, sidecar) = split(reg, &node())?;
        let parent = catalog::prepare(parent, &node())?;
        let (_, sidecar) =
            store.write_blocking(|txn| register(txn, parent.clone(), sidecar.clone(), &node()))?;
        Ok(sidecar.map(|s| s.registration.service.port))
    }

    #[test]
    fn ports_run_out_and_then_nothing_is_written() {
        let store = store();
        // Every port of the range but the last is taken by given ports.
        for port in *SIDECAR_PORTS.start()..*SIDECAR_PORTS.end() {
            let given = ServiceRegistration {
                port: Some(port),
                ..ServiceRegistration::default()
            };
            register_with_sidecar(&store, &format!("s{port}"), given).unwrap();
        }
        let last = register_with_sidecar(&store, "last", ServiceRegistration::default());
        assert_eq!(last.unwrap(), Some(*SIDECAR_PORTS.end()));
        let e = register_with_sidecar(&store, "late", ServiceRegistration::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("none left in the configured range [21000, 21255]"),
            "{e}"
        );
        let snap = store.snapshot().unwrap();
        assert!(catalog::get_service(&snap, "late").unwrap().is_none());
    }

    #[test]
    fn deregistering_a_parent_leaves_proxies_of_others_alone() {
        let store = store();
        register_with_sidecar(&store, "web", ServiceRegistration::default()).unwrap();
        // A proxy that happens to be called like web's sidecar but fronts
        // another instance is not web's.
        let stranger = ServiceRegistration {
            id: Some("db-sidecar-proxy".into()),
            name: "db-sidecar-proxy".into(),
            kind: Some(KIND_CONNECT_PROXY.into()),
            port: Some(30000),
            proxy: Some(Box::new(ProxyConfig {
                destination_service_name: "other".into(),
                destination_service_id: "other".into(),
                ..ProxyConfig::default()
            })),
            ..ServiceRegistration::default()
        };
        let stranger = catalog::prepare(stranger, &node()).unwrap();
        store
            .write_blocking(|txn| catalog::register(txn, stranger.clone()))
            .unwrap();
        let db = catalog::prepare(
            ServiceRegistration {
                name: "db".into(),
                ..ServiceRegistration::default()
            },
            &node(),
        )
        .unwrap();
        store
            .write_blocking(|txn| catalog::register(txn, db.clone()))
            .unwrap();

        store.write_blocking(|txn| deregister(txn, "web")).unwrap();
        store.write_blocking(|txn| deregister(txn, "db")).unwrap();
        let snap = store.snapshot().unwrap();
        assert!(catalog::get_service(&snap, "web-sidecar-proxy")
            .unwrap()
            .is_none());
        assert!(catalog::get_service(&snap, "db-sidecar-proxy")
            .unwrap()
            .is_some());
    }
}
