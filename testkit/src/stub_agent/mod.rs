//! An in-process stand-in for the agent's HTTP API (HTTP/1 and h2c), for
//! testing a gateway or a proxy without a control plane. The test sets
//! what the component under test reads (the gateway view; the leaf, the
//! proxy view and upstream views), each served as a blocking query, and
//! sees every service (de)registration. A resource not set yet is
//! withheld: queries for it wait. The peering endpoints a gateway forwards
//! to answer with who called them, so a test sees what was forwarded.

mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use isthmus_api::ca::LeafCert;
use isthmus_api::gateway::GatewayView;
use isthmus_api::proxy::{ProxyView, UpstreamView};
use serde_json::Value;
use tokio::sync::{mpsc, watch, Mutex};

use crate::WAIT;

/// A resource with the index it was last changed at; `None` until set.
type Versioned<T> = Arc<watch::Sender<(u64, Option<T>)>>;

/// The services registered now, by ID, with an index bumped on every change.
type Catalog = Arc<watch::Sender<(u64, HashMap<String, Value>)>>;

/// The index a resource starts at, before its first value.
const FIRST_INDEX: u64 = 10;

/// The names under which queries are recorded, for `*_in_effect`.
const LEAF: &str = "leaf";
const PROXY_VIEW: &str = "proxy-view";
const GATEWAY_VIEW: &str = "gateway-view";

fn upstream_resource(key: &str) -> String {
    format!("upstream:{key}")
}

fn service_resource(id: &str) -> String {
    format!("service:{id}")
}

#[derive(Clone)]
struct StubState {
    gateway_view: Versioned<GatewayView>,
    leaf: Versioned<LeafCert>,
    proxy_view: Versioned<ProxyView>,
    /// By `service` or `service@peer`.
    upstreams: Arc<watch::Sender<HashMap<String, (u64, UpstreamView)>>>,
    /// The highest index each resource was asked for with.
    queried: Arc<watch::Sender<HashMap<String, u64>>>,
    registrations: mpsc::UnboundedSender<Value>,
    deregistrations: mpsc::UnboundedSender<String>,
    catalog: Catalog,
    /// While set, registrations are refused (500).
    refuse: Arc<AtomicBool>,
}

/// The stub agent; it stops serving when dropped.
pub struct StubAgent {
    pub addr: SocketAddr,
    state: StubState,
    registrations: Mutex<mpsc::UnboundedReceiver<Value>>,
    deregistrations: Mutex<mpsc::UnboundedReceiver<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StubAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StubAgent {
    /// A stub with nothing to serve yet.
    pub async fn empty() -> StubAgent {
        let (registrations_tx, registrations) = mpsc::unbounded_channel();
        let (deregistrations_tx, deregistrations) = mpsc::unbounded_channel();
        let state = StubState {
            gateway_view: Arc::new(watch::channel((FIRST_INDEX, None)).0),
            leaf: Arc::new(watch::channel((FIRST_INDEX, None)).0),
            proxy_view: Arc::new(watch::channel((FIRST_INDEX, None)).0),
            upstreams: Arc::new(watch::channel(HashMap::new()).0),
            queried: Arc::new(watch::channel(HashMap::new()).0),
            registrations: registrations_tx,
            deregistrations: deregistrations_tx,
            catalog: Arc::new(watch::channel((1, HashMap::new())).0),
            refuse: Arc::new(AtomicBool::new(false)),
        };
        let router = Router::new()
            .route("/v1/internal/gateway/view", get(routes::gateway_view))
            .route("/v1/agent/connect/ca/leaf/{service}", get(routes::leaf))
            .route("/v1/internal/proxy/view", get(routes::proxy_view))
            .route(
                "/v1/internal/proxy/upstream/{service}",
                get(routes::upstream),
            )
            .route("/v1/agent/service/register", put(routes::register))
            .route("/v1/agent/service/deregister/{id}", put(routes::deregister))
            .route("/v1/agent/service/{id}", get(routes::service))
            .route("/v1/internal/peering/exchange", post(routes::exchange))
            .route("/v1/internal/peering/stream", post(routes::stream))
            .route("/v1/health/service/{name}", get(routes::health))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        StubAgent {
            addr,
            state,
            registrations: Mutex::new(registrations),
            deregistrations: Mutex::new(deregistrations),
            task,
        }
    }

    /// A stub serving a gateway `view` from the start.
    pub async fn for_gateway(view: GatewayView) -> StubAgent {
        let stub = StubAgent::empty().await;
        stub.set_gateway_view(view);
        stub
    }

    /// A stub serving a proxy its `leaf` and `view` from the start.
    pub async fn for_proxy(leaf: LeafCert, view: ProxyView) -> StubAgent {
        let stub = StubAgent::empty().await;
        stub.set_leaf(leaf);
        stub.set_proxy_view(view);
        stub
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn bump<T>(sender: &watch::Sender<(u64, Option<T>)>, value: T) -> u64 {
        let mut index = 0;
        sender.send_modify(|(i, v)| {
            *i += 1;
            index = *i;
            *v = Some(value);
        });
        index
    }

    /// Serves a new gateway view (to the pending blocking query); returns its index.
    pub fn set_gateway_view(&self, view: GatewayView) -> u64 {
        Self::bump(&self.state.gateway_view, view)
    }

    /// Serves a new leaf; returns its index.
    pub fn set_leaf(&self, leaf: LeafCert) -> u64 {
        Self::bump(&self.state.leaf, leaf)
    }

    /// Serves a new proxy view; returns its index.
    pub fn set_proxy_view(&self, view: ProxyView) -> u64 {
        Self::bump(&self.state.proxy_view, view)
    }

    /// Serves a new view of the upstream `key` (`service` or `service@peer`).
    pub fn set_upstream(&self, key: &str, view: UpstreamView) -> u64 {
        let mut index = 0;
        self.state.upstreams.send_modify(|all| {
            let entry = all
                .entry(key.to_owned())
                .or_insert((FIRST_INDEX, view.clone()));
            entry.0 += 1;
            entry.1 = view;
            index = entry.0;
        });
        index
    }

    /// Waits until a blocking query for `resource` asks with at least
    /// `index`: a watcher applies what it got before asking for the next,
    /// so by then the value of `index` is in effect.
    async fn wait_for_query(&self, resource: &str, index: u64) {
        let mut rx = self.state.queried.subscribe();
        tokio::time::timeout(
            WAIT,
            rx.wait_for(|q| q.get(resource).is_some_and(|i| *i >= index)),
        )
        .await
        .unwrap_or_else(|_| panic!("the watcher did not pick up {resource} {index}"))
        .unwrap();
    }

    /// Waits until the gateway view of `index` is in effect.
    pub async fn gateway_view_in_effect(&self, index: u64) {
        self.wait_for_query(GATEWAY_VIEW, index).await;
    }

    /// Waits until the leaf of `index` is in effect.
    pub async fn leaf_in_effect(&self, index: u64) {
        self.wait_for_query(LEAF, index).await;
    }

    /// Waits until the proxy view of `index` is in effect.
    pub async fn proxy_view_in_effect(&self, index: u64) {
        self.wait_for_query(PROXY_VIEW, index).await;
    }

    /// Waits until the view of upstream `key` of `index` is in effect.
    pub async fn upstream_in_effect(&self, key: &str, index: u64) {
        self.wait_for_query(&upstream_resource(key), index).await;
    }

    /// The body of the next service registration.
    pub async fn next_registration(&self) -> Value {
        let mut rx = self.registrations.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no registration")
            .unwrap()
    }

    /// The ID of the next service deregistration.
    pub async fn next_deregistration(&self) -> String {
        let mut rx = self.deregistrations.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no deregistration")
            .unwrap()
    }

    /// Removes a registration behind the registrant's back, as an
    /// operator's deregistration or the agent's deregister-after-critical does.
    pub fn drop_registration(&self, id: &str) {
        self.state.catalog.send_modify(|(index, services)| {
            services.remove(id);
            *index += 1;
        });
    }

    /// Whether `id` is registered now.
    pub fn is_registered(&self, id: &str) -> bool {
        self.state.catalog.borrow().1.contains_key(id)
    }

    /// Refuses (500) every registration while `refuse` is true.
    pub fn refuse_registrations(&self, refuse: bool) {
        self.state.refuse.store(refuse, Ordering::SeqCst);
    }
}
