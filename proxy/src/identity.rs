//! The proxy's identity and policy: its leaf certificate
//! (`/v1/agent/connect/ca/leaf/<service>`) and the proxy view (trust
//! bundle and intentions, `/v1/internal/proxy/view`), both watched with
//! blocking queries and combined into an immutable [`Snapshot`] that is
//! swapped in atomically. Handshakes and intention checks read the current
//! snapshot; a renewed leaf or new intentions need no restart, and open
//! connections are not disturbed.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};
use isthmus_api::ca::LeafCert;
use isthmus_api::intentions::IntentionSet;
use isthmus_api::naming::SpiffeId;
use isthmus_api::proxy::{ProxyView, AGENT_PATH_VIEW};
use isthmus_api::tls::{certified_key, certs_from_pem};
use isthmus_dataplane::mtls::{inbound_server_config, spiffe_id_of, TrustBundle};
use isthmus_dataplane::readiness::{Prerequisite, Readiness};
use isthmus_runtime::client::{encode, Client};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::Protocol;
use isthmus_dataplane::watcher::{LogWording, Query};

/// The proxy serves inbound (and so may be ready) only once both are in.
pub(crate) const LEAF_LOADED: Prerequisite =
    Prerequisite::new(0, "waiting for the leaf certificate from the agent");
pub(crate) const VIEW_LOADED: Prerequisite = Prerequisite::new(
    1,
    "waiting for the proxy view (trust bundle and intentions) from the agent",
);

/// Our leaf certificate, parsed.
#[derive(Debug)]
pub(crate) struct Leaf {
    pub(crate) cert: LeafCert,
    pub(crate) key: Arc<CertifiedKey>,
    /// Our SPIFFE ID as the certificate carries it.
    pub(crate) uri: String,
    /// The datacenter our SPIFFE ID names.
    pub(crate) datacenter: String,
}

impl Leaf {
    fn parse(cert: LeafCert, service: &str) -> Result<Leaf, String> {
        let key = certified_key(&cert.cert_pem, &cert.private_key_pem).map_err(|e| e.0)?;
        let first = certs_from_pem(&cert.cert_pem).map_err(|e| e.0)?;
        let id = spiffe_id_of(&first[0]).map_err(|e| e.0)?;
        let datacenter = match &id {
            SpiffeId::Service {
                service: s,
                datacenter,
                ..
            } if s == service => datacenter.clone(),
            other => return Err(format!("it is for {other}, not for the service {service}")),
        };
        Ok(Leaf {
            uri: id.to_string(),
            datacenter,
            cert,
            key,
        })
    }
}

/// The intentions, compiled, and what metrics may say about callers.
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) intentions: IntentionSet,
    /// Source names the intentions for this service mention: the only
    /// values `src_service` takes besides "other" (a peer's CA could
    /// otherwise mint unbounded label values).
    known_sources: HashSet<Box<str>>,
}

impl Policy {
    fn compile(view: &ProxyView, service: &str) -> Policy {
        let known_sources = view
            .intentions
            .iter()
            .filter(|entry| entry.name == service || entry.name == "*")
            .flat_map(|entry| entry.sources.iter())
            .filter(|source| source.name != "*")
            .map(|source| Box::from(source.name.as_str()))
            .collect();
        Policy {
            intentions: IntentionSet::compile(&view.intentions, view.default_allow),
            known_sources,
        }
    }

    /// The `src_service` label for a caller.
    pub(crate) fn source_label<'a>(&self, name: &'a str) -> &'a str {
        if self.known_sources.contains(name) {
            name
        } else {
            crate::metrics::OTHER_SOURCE
        }
    }
}

/// Everything the data path needs to know about who we are and whom we trust.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Increases with every published snapshot.
    pub(crate) generation: u64,
    /// Increases when the leaf or the trust bundle changed: TLS configs
    /// derived from an older one are stale.
    pub(crate) tls_generation: u64,
    pub(crate) leaf: Arc<Leaf>,
    pub(crate) view: Arc<ProxyView>,
    /// The view's `X-Consul-Index`: the intentions' revision.
    pub(crate) view_index: u64,
    pub(crate) bundle: Arc<TrustBundle>,
    pub(crate) server_config: Arc<ServerConfig>,
    pub(crate) policy: Arc<Policy>,
}

/// The readers' handle: the current snapshot (none until the first leaf
/// and view arrived), and a channel that ticks with each new one.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    shared: Arc<ArcSwapOption<Snapshot>>,
    changes: watch::Receiver<u64>,
}

impl Identity {
    /// The current snapshot, cheaply; do not hold it across an await.
    pub(crate) fn load(&self) -> Guard<Option<Arc<Snapshot>>> {
        self.shared.load()
    }

    /// The current snapshot, to keep.
    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        self.shared.load_full()
    }

    /// Ticks with every snapshot published from now on (the value is its generation).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        let mut changes = self.changes.clone();
        changes.borrow_and_update();
        changes
    }
}

/// Starts watching the leaf and the view; the task runs until `stop`.
pub(crate) fn spawn(
    client: &Client,
    service: &str,
    protocol: Protocol,
    readiness: Arc<Readiness>,
    agent_restarted: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> (Identity, JoinHandle<()>) {
    let shared = Arc::new(ArcSwapOption::empty());
    let (changes_tx, changes) = watch::channel(0);
    let leaf_query = Query {
        client: client.clone(),
        path: format!("/v1/agent/connect/ca/leaf/{}", encode(service)),
        what: "leaf certificate",
        agent_restarted: None,
        known_index: None,
        wording: LogWording::GENERIC,
    };
    let view_query = Query {
        client: client.clone(),
        // Only the intentions that concern this service (its own entry and
        // `*`): a smaller view, and changes to others' do not wake it.
        path: format!("{AGENT_PATH_VIEW}?service={}", encode(service)),
        what: "proxy view",
        agent_restarted: Some(agent_restarted),
        known_index: None,
        wording: LogWording::GENERIC,
    };
    let (mut leaves, leaf_task) =
        isthmus_dataplane::watcher::spawn::<LeafCert>(leaf_query, stop.clone());
    let (mut views, view_task) =
        isthmus_dataplane::watcher::spawn::<ProxyView>(view_query, stop.clone());
    let mut builder = Builder::new(service, protocol);
    let publish_to = shared.clone();
    let task = tokio::spawn(async move {
        loop {
            // `_done` tells the watcher once the snapshot is published.
            let (changed, _done) = tokio::select! {
                _ = isthmus_dataplane::shutdown::stopped(&mut stop) => break,
                Some(fresh) = leaves.recv() => (builder.on_leaf(fresh.value), fresh.done),
                Some(fresh) = views.recv() => (builder.on_view(fresh.value, fresh.index), fresh.done),
                else => break,
            };
            if changed {
                if let Some(snapshot) = builder.build() {
                    let generation = snapshot.generation;
                    publish_to.store(Some(Arc::new(snapshot)));
                    changes_tx.send_replace(generation);
                }
            }
            if builder.leaf.is_some() {
                readiness.set_met(LEAF_LOADED);
            }
            if builder.view.is_some() {
                readiness.set_met(VIEW_LOADED);
            }
        }
        leaf_task.abort();
        view_task.abort();
    });
    (Identity { shared, changes }, task)
}

/// Combines leaf and view updates into snapshots, rebuilding only what changed.
struct Builder {
    service: String,
    protocol: Protocol,
    leaf: Option<Arc<Leaf>>,
    view: Option<(Arc<ProxyView>, u64)>,
    bundle: Option<Arc<TrustBundle>>,
    policy: Option<Arc<Policy>>,
    server_config: Option<Arc<ServerConfig>>,
    tls_dirty: bool,
    generation: u64,
    tls_generation: u64,
}

/// Whether the trust bundle would be the same: exports and `can_connect`
/// changes need a new snapshot, not new TLS configurations.
fn same_trust(a: &ProxyView, b: &ProxyView) -> bool {
    a.trust_domain == b.trust_domain
        && a.local_root_pems == b.local_root_pems
        && a.peers.len() == b.peers.len()
        && a.peers.iter().zip(&b.peers).all(|(x, y)| {
            x.name == y.name && x.trust_domain == y.trust_domain && x.root_pems == y.root_pems
        })
}

impl Builder {
    fn new(service: &str, protocol: Protocol) -> Builder {
        Builder {
            service: service.to_owned(),
            protocol,
            leaf: None,
            view: None,
            bundle: None,
            policy: None,
            server_config: None,
            tls_dirty: true,
            generation: 0,
            tls_generation: 0,
        }
    }

    /// Takes a new leaf; false if it is unusable (the previous one stays).
    fn on_leaf(&mut self, cert: LeafCert) -> bool {
        let serial = cert.serial_number.clone();
        match Leaf::parse(cert, &self.service) {
            Ok(leaf) => {
                let verb = if self.leaf.is_some() {
                    "renewed"
                } else {
                    "loaded"
                };
                tracing::info!(
                    serial = %leaf.cert.serial_number,
                    valid_before = %leaf.cert.valid_before,
                    spiffe_id = %leaf.uri,
                    "leaf certificate {verb}"
                );
                self.leaf = Some(Arc::new(leaf));
                self.tls_dirty = true;
                true
            }
            Err(e) => {
                tracing::warn!(serial = %serial, error = %e, "ignoring an unusable leaf certificate from the agent");
                false
            }
        }
    }

    /// Takes a new view; false if nothing we use changed or it is unusable.
    fn on_view(&mut self, view: ProxyView, index: u64) -> bool {
        let previous = self.view.as_ref().map(|(v, _)| v.clone());
        let trust_changed = previous.as_ref().is_none_or(|p| !same_trust(p, &view));
        if trust_changed {
            match bundle_of(&view) {
                Ok(bundle) => {
                    self.bundle = Some(Arc::new(bundle));
                    self.tls_dirty = true;
                }
                Err(e) => {
                    tracing::warn!(index, error = %e, "ignoring a proxy view with unusable local CA roots");
                    return false;
                }
            }
        }
        let policy_changed = previous.as_ref().is_none_or(|p| {
            p.intentions != view.intentions || p.default_allow != view.default_allow
        });
        if policy_changed {
            self.policy = Some(Arc::new(Policy::compile(&view, &self.service)));
        }
        tracing::info!(
            index,
            trust_domain = %view.trust_domain,
            peers = view.peers.len(),
            intentions = view.intentions.len(),
            default_allow = view.default_allow,
            "proxy view {}",
            if previous.is_some() { "updated" } else { "loaded" }
        );
        self.view = Some((Arc::new(view), index));
        true
    }

    fn build(&mut self) -> Option<Snapshot> {
        let leaf = self.leaf.clone()?;
        let (view, view_index) = self.view.clone()?;
        let bundle = self.bundle.clone()?;
        let policy = self.policy.clone()?;
        if self.tls_dirty || self.server_config.is_none() {
            if let Some(id) = leaf_trust_domain(&leaf) {
                if id != view.trust_domain {
                    tracing::warn!(leaf = %leaf.uri, trust_domain = %view.trust_domain, "the leaf certificate is not in the agent's trust domain");
                }
            }
            match inbound_server_config(leaf.key.clone(), &bundle) {
                Ok(mut config) => {
                    if !self.protocol.is_http() {
                        config.alpn_protocols.clear();
                    }
                    self.server_config = Some(Arc::new(config));
                    self.tls_generation += 1;
                    self.tls_dirty = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build the inbound TLS configuration; keeping the previous one");
                }
            }
        }
        let server_config = self.server_config.clone()?;
        self.generation += 1;
        Some(Snapshot {
            generation: self.generation,
            tls_generation: self.tls_generation,
            leaf,
            view,
            view_index,
            bundle,
            server_config,
            policy,
        })
    }
}

fn leaf_trust_domain(leaf: &Leaf) -> Option<String> {
    SpiffeId::parse(&leaf.uri)
        .ok()
        .map(|id| id.trust_domain().to_owned())
}

/// Our roots plus every peer's; a peer whose roots do not parse is left
/// out (its callers are refused) rather than failing the whole view.
fn bundle_of(view: &ProxyView) -> Result<TrustBundle, String> {
    let mut bundle =
        TrustBundle::new(&view.trust_domain, &view.local_root_pems).map_err(|e| e.0)?;
    for peer in &view.peers {
        if let Err(e) = bundle.add_peer(&peer.name, &peer.trust_domain, &peer.root_pems) {
            tracing::warn!(peer = %peer.name, trust_domain = %peer.trust_domain, error = %e, "not trusting the peer");
        }
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::config_entry::ConfigEntry;

    fn intentions(json: serde_json::Value) -> isthmus_api::config_entry::ServiceIntentions {
        match ConfigEntry::from_json(json).unwrap() {
            ConfigEntry::ServiceIntentions(entry) => entry,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn source_labels_are_bounded_by_the_intentions() {
        let view = ProxyView {
            intentions: vec![
                intentions(serde_json::json!({
                    "Kind": "service-intentions", "Name": "backend",
                    "Sources": [{"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}]
                })),
                intentions(serde_json::json!({
                    "Kind": "service-intentions", "Name": "other",
                    "Sources": [{"Name": "admin", "Action": "allow"}]
                })),
                intentions(serde_json::json!({
                    "Kind": "service-intentions", "Name": "*",
                    "Sources": [{"Name": "ops", "Action": "allow"}]
                })),
            ],
            ..ProxyView::default()
        };
        let policy = Policy::compile(&view, "backend");
        assert_eq!(policy.source_label("web"), "web");
        assert_eq!(policy.source_label("ops"), "ops");
        assert_eq!(policy.source_label("admin"), "other");
        assert_eq!(policy.source_label("random-1234"), "other");
    }
}
