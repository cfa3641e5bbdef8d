//! Where each upstream is: its endpoints and how to dial them, watched
//! from `/v1/internal/proxy/upstream/<service>[?peer=<peer>]` and rebuilt
//! when the view or our TLS identity changes, then published as an
//! immutable [`Route`] through an `ArcSwap`. Endpoints (with their pooled
//! connections) survive a view update that keeps them; a new leaf or new
//! roots retire the old connections, which finish what they carry.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use isthmus_api::naming::SpiffeId;
use isthmus_api::proxy::{agent_path_upstream, UpstreamView};
use isthmus_dataplane::mtls::outbound_client_config;
use isthmus_runtime::client::Client;
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::balance::Load;
use crate::config::{Protocol, UpstreamSpec};
use crate::identity::{Identity, Snapshot};
use crate::metrics::{OutboundError, UpstreamErrors, UpstreamTargets};
use crate::pool::{Connector, Pool};
use isthmus_dataplane::watcher::{LogWording, Query};
use prometheus::IntCounter;

/// One configured upstream.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) spec: UpstreamSpec,
    /// `service` or `service@peer`.
    pub(crate) label: String,
    /// The local listener's address.
    pub(crate) listen: SocketAddr,
    /// The sidecar's own protocol, for an upstream whose view names none.
    pub(crate) default_protocol: Protocol,
    pub(crate) route: ArcSwap<Route>,
    pub(crate) errors: UpstreamErrors,
    targets: UpstreamTargets,
    /// Our identity, for a route the watch has not rebuilt yet.
    identity: Identity,
}

/// How to reach the upstream right now.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) view: Option<(Arc<UpstreamView>, u64)>,
    /// What the local application speaks on this upstream's listener: the
    /// view's protocol (from the service's config entries), else the
    /// sidecar's own. Decided per connection, so a change applies to new
    /// connections.
    pub(crate) protocol: Protocol,
    pub(crate) tls_generation: u64,
    pub(crate) endpoints: Box<[Arc<Endpoint>]>,
    /// Why nothing can be dialed, when nothing can.
    pub(crate) unavailable: Option<(OutboundError, String)>,
    /// HTTP/1.1 (ALPN http/1.1) connections for upgrades; HTTP mode only.
    pub(crate) upgrade: Option<Arc<Connector>>,
    /// Requests sent to the view's chosen target.
    target_requests: Option<IntCounter>,
}

/// One endpoint of an upstream.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: Arc<str>,
    pub(crate) load: Load,
    /// HTTP/2 (HTTP mode) or no ALPN (TCP mode).
    pub(crate) connector: Arc<Connector>,
    pub(crate) pool: Pool,
}

impl AsRef<Load> for Endpoint {
    fn as_ref(&self) -> &Load {
        &self.load
    }
}

impl Route {
    fn unavailable(
        view: Option<(Arc<UpstreamView>, u64)>,
        protocol: Protocol,
        kind: OutboundError,
        reason: String,
    ) -> Route {
        Route {
            view,
            protocol,
            tls_generation: 0,
            endpoints: Box::new([]),
            unavailable: Some((kind, reason)),
            upgrade: None,
            target_requests: None,
        }
    }

    /// Counts a request or connection sent along this route.
    pub(crate) fn count_request(&self) {
        if let Some(counter) = &self.target_requests {
            counter.inc();
        }
    }
}

impl Upstream {
    pub(crate) fn new(
        spec: UpstreamSpec,
        listen: SocketAddr,
        default_protocol: Protocol,
        errors: UpstreamErrors,
        targets: UpstreamTargets,
        identity: Identity,
    ) -> Upstream {
        Upstream {
            identity,
            targets,
            label: spec.label(),
            spec,
            listen,
            default_protocol,
            route: ArcSwap::from_pointee(Route::unavailable(
                None,
                default_protocol,
                OutboundError::NotReady,
                "waiting for the leaf certificate, the proxy view and the upstream's endpoints from the agent".into(),
            )),
            errors,
        }
    }

    /// What `/config` shows.
    pub(crate) fn describe(&self) -> Value {
        let route = self.route.load();
        let endpoints: Vec<Value> = route
            .endpoints
            .iter()
            .map(|e| json!({ "address": &*e.addr, "in_flight": e.load.in_flight() }))
            .collect();
        let view = route.view.as_ref().map(|(view, index)| {
            json!({
                "index": index,
                "trust_domain": view.trust_domain,
                "sni": view.sni,
                "spiffe_id": view.spiffe_id,
                "connect_timeout_ms": view.connect_timeout_ms,
            })
        });
        let target = route.view.as_ref().map(|(view, _)| view.target_label());
        let chain: Vec<Value> = route
            .view
            .iter()
            .flat_map(|(view, _)| &view.chain)
            .map(|step| json!({ "target": step.target, "chosen": step.chosen, "reason": step.reason }))
            .collect();
        json!({
            "upstream": self.label,
            "service": self.spec.service,
            "peer": self.spec.peer,
            "listener": self.listen.to_string(),
            "protocol": route.protocol.as_str(),
            "view": view,
            "target": target,
            "chain": chain,
            "endpoints": endpoints,
            "unavailable": route.unavailable.as_ref().map(|(_, reason)| reason),
        })
    }

    /// The route to use for a request or connection now. When the identity
    /// arrived after the route was built (the proxy turned ready) and the
    /// watch task has not rebuilt it yet, it is built here, so the first
    /// requests after readiness are not refused as "not ready".
    pub(crate) fn current_route(&self) -> Arc<Route> {
        let route = self.route.load_full();
        let waiting_for_identity =
            route.view.is_some() && matches!(route.unavailable, Some((OutboundError::NotReady, _)));
        if !waiting_for_identity {
            return route;
        }
        let Some(snapshot) = self.identity.current() else {
            return route;
        };
        let fresh = Arc::new(self.build(route.view.as_ref(), Some(&snapshot), &route));
        // Only if nobody replaced it meanwhile (the watch may hold a newer view).
        let before = self.route.compare_and_swap(&route, fresh.clone());
        if Arc::ptr_eq(&before, &route) {
            fresh
        } else {
            self.route.load_full()
        }
    }

    /// Rebuilds the route from the latest view and identity.
    fn rebuild(&self, view: Option<&(Arc<UpstreamView>, u64)>, snapshot: Option<&Snapshot>) {
        let previous = self.route.load_full();
        let route = self.build(view, snapshot, &previous);
        let target = |route: &Route| route.view.as_ref().map(|(view, _)| view.target_label());
        if let (Some(before), Some(now)) = (target(&previous), target(&route)) {
            if before != now {
                // The old target's pooled connections go with the old route:
                // they close once the requests they carry finish.
                tracing::info!(upstream = %self.label, from = %before, to = %now, "upstream target changed");
            }
        }
        if let Some((kind, reason)) = &route.unavailable {
            tracing::info!(upstream = %self.label, kind = kind.label(), reason = %reason, "upstream unavailable");
        } else {
            tracing::info!(upstream = %self.label, endpoints = route.endpoints.len(), "upstream endpoints updated");
        }
        self.route.store(Arc::new(route));
    }

    fn build(
        &self,
        view: Option<&(Arc<UpstreamView>, u64)>,
        snapshot: Option<&Snapshot>,
        previous: &Route,
    ) -> Route {
        let protocol = self.protocol_of(view.map(|(view, _)| &**view));
        let mut route = match (view, snapshot) {
            (None, _) => Route::unavailable(
                None,
                protocol,
                OutboundError::NotReady,
                "waiting for the upstream's endpoints from the agent".into(),
            ),
            (Some(view), None) => Route::unavailable(
                Some(view.clone()),
                protocol,
                OutboundError::NotReady,
                "waiting for the leaf certificate and the proxy view from the agent".into(),
            ),
            (Some(view), Some(snapshot)) => self.route(view, protocol, snapshot, previous),
        };
        if let (Some(snapshot), Some(_)) = (snapshot, &route.unavailable) {
            // Built with this identity, even if there is nothing to dial.
            route.tls_generation = snapshot.tls_generation;
        }
        route
    }

    /// The view's protocol when it names one this sidecar speaks, else the
    /// sidecar's own.
    fn protocol_of(&self, view: Option<&UpstreamView>) -> Protocol {
        // The registration's own per-upstream protocol wins, as in Consul.
        if let Some(pinned) = self.spec.protocol {
            return pinned;
        }
        let Some(named) = view.and_then(|view| view.protocol.as_deref()) else {
            return self.default_protocol;
        };
        Protocol::from_config_entry(named).unwrap_or_else(|| {
            tracing::warn!(upstream = %self.label, protocol = named, fallback = %self.default_protocol, "the agent names a protocol this proxy does not speak");
            self.default_protocol
        })
    }

    fn route(
        &self,
        (view, index): &(Arc<UpstreamView>, u64),
        protocol: Protocol,
        snapshot: &Snapshot,
        previous: &Route,
    ) -> Route {
        let with_view = Some((view.clone(), *index));
        if view.endpoints.is_empty() {
            let reason = if view.reason.is_empty() {
                format!("{} has no healthy endpoint", self.label)
            } else {
                view.reason.clone()
            };
            return Route::unavailable(with_view, protocol, OutboundError::NoEndpoint, reason);
        }
        let untrusted = |problem: String| {
            Route::unavailable(with_view.clone(), protocol, OutboundError::Tls, problem)
        };
        let Some(roots) = snapshot.bundle.roots(&view.trust_domain) else {
            return untrusted(format!(
                "the trust domain {} of {} is not trusted (no active peering)",
                view.trust_domain, self.label
            ));
        };
        let expected = match SpiffeId::parse(&view.spiffe_id) {
            Ok(id) => id,
            Err(e) => return untrusted(format!("the upstream view's identity: {e}")),
        };
        let server_name = match ServerName::try_from(view.sni.clone()) {
            Ok(name) => name,
            Err(e) => return untrusted(format!("the upstream view's SNI {:?}: {e}", view.sni)),
        };
        let connect_timeout = view.connect_timeout_ms.map_or(
            crate::pool::CONNECT_TIMEOUT,
            std::time::Duration::from_millis,
        );
        let connector = |alpn: &[&[u8]]| {
            outbound_client_config(snapshot.leaf.key.clone(), roots.clone(), &expected, alpn).map(
                |config| Arc::new(Connector::new(config, server_name.clone(), connect_timeout)),
            )
        };
        let built = if protocol.is_http() {
            connector(&[b"h2"]).and_then(|main| Ok((main, Some(connector(&[b"http/1.1"])?))))
        } else {
            connector(&[]).map(|main| (main, None))
        };
        let (main, upgrade) = match built {
            Ok(built) => built,
            Err(e) => return untrusted(format!("building the TLS configuration: {e}")),
        };
        // Keep endpoints (and their connections) when nothing about how to dial them changed.
        let reusable = previous.tls_generation == snapshot.tls_generation
            && previous.protocol.is_http() == protocol.is_http()
            && previous.view.as_ref().is_some_and(|(old, _)| {
                old.trust_domain == view.trust_domain
                    && old.sni == view.sni
                    && old.spiffe_id == view.spiffe_id
                    && old.connect_timeout_ms == view.connect_timeout_ms
            });
        let endpoints = view
            .endpoints
            .iter()
            .map(|addr| {
                let kept = reusable
                    .then(|| {
                        previous
                            .endpoints
                            .iter()
                            .find(|e| &*e.addr == addr.as_str())
                    })
                    .flatten();
                kept.cloned().unwrap_or_else(|| {
                    Arc::new(Endpoint {
                        addr: Arc::from(addr.as_str()),
                        load: Load::default(),
                        connector: main.clone(),
                        pool: Pool::new(),
                    })
                })
            })
            .collect();
        Route {
            target_requests: Some(self.targets.counter(&view.target_label())),
            view: with_view,
            protocol,
            tls_generation: snapshot.tls_generation,
            endpoints,
            unavailable: None,
            upgrade,
        }
    }
}

/// Keeps the upstream's route current until `stop`.
pub(crate) fn spawn_watch(
    upstream: Arc<Upstream>,
    client: &Client,
    identity: Identity,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let query = Query {
        client: client.clone(),
        path: agent_path_upstream(&upstream.spec.service, upstream.spec.peer.as_deref()),
        what: "upstream endpoints",
        agent_restarted: None,
        known_index: None,
        wording: LogWording::GENERIC,
    };
    let (mut views, view_task) =
        isthmus_dataplane::watcher::spawn::<UpstreamView>(query, stop.clone());
    let mut changes = identity.changes();
    tokio::spawn(async move {
        let mut latest: Option<(Arc<UpstreamView>, u64)> = None;
        loop {
            // Held until the route is rebuilt: the watcher then asks again.
            let mut _done = None;
            tokio::select! {
                _ = isthmus_dataplane::shutdown::stopped(&mut stop) => break,
                Some(fresh) = views.recv() => {
                    latest = Some((Arc::new(fresh.value), fresh.index));
                    _done = Some(fresh.done);
                }
                Ok(()) = changes.changed() => {
                    // Only a new leaf or new roots change how to dial.
                    let tls_generation = identity.load().as_ref().map_or(0, |s| s.tls_generation);
                    if tls_generation == upstream.route.load().tls_generation {
                        continue;
                    }
                }
                else => break,
            }
            let snapshot = identity.current();
            upstream.rebuild(latest.as_ref(), snapshot.as_deref());
        }
        view_task.abort();
    })
}
