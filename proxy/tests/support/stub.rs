//! An in-process stand-in for the agent's HTTP API: the leaf, the proxy
//! view and upstream views as blocking queries, and service (de)registration.
//! A resource not set yet is withheld: queries for it wait.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use isthmus_api::ca::LeafCert;
use isthmus_api::proxy::{ProxyView, UpstreamView};
use serde_json::Value;
use tokio::sync::{mpsc, watch, Mutex};

use super::WAIT;

type Versioned<T> = Arc<watch::Sender<(u64, Option<T>)>>;

#[derive(Clone)]
struct StubState {
    leaf: Versioned<LeafCert>,
    view: Versioned<ProxyView>,
    /// By `service` or `service@peer`.
    upstreams: Arc<watch::Sender<HashMap<String, (u64, UpstreamView)>>>,
    /// The highest index each resource was asked for with.
    queried: Arc<watch::Sender<HashMap<String, u64>>>,
    registrations: mpsc::UnboundedSender<Value>,
    deregistrations: mpsc::UnboundedSender<String>,
    /// The services registered now, by ID, with an index bumped on every change.
    catalog: Catalog,
    /// While set, registrations are refused (500).
    refuse: Arc<AtomicBool>,
}

type Catalog = Arc<watch::Sender<(u64, HashMap<String, Value>)>>;

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

const LEAF: &str = "leaf";
const VIEW: &str = "view";

impl StubAgent {
    /// A stub with nothing to serve yet.
    pub async fn empty() -> StubAgent {
        let (registrations_tx, registrations) = mpsc::unbounded_channel();
        let (deregistrations_tx, deregistrations) = mpsc::unbounded_channel();
        let state = StubState {
            leaf: Arc::new(watch::channel((10, None)).0),
            view: Arc::new(watch::channel((10, None)).0),
            upstreams: Arc::new(watch::channel(HashMap::new()).0),
            queried: Arc::new(watch::channel(HashMap::new()).0),
            registrations: registrations_tx,
            deregistrations: deregistrations_tx,
            catalog: Arc::new(watch::channel((1, HashMap::new())).0),
            refuse: Arc::new(AtomicBool::new(false)),
        };
        let router = Router::new()
            .route("/v1/agent/connect/ca/leaf/{service}", get(leaf))
            .route("/v1/internal/proxy/view", get(view))
            .route("/v1/internal/proxy/upstream/{service}", get(upstream))
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/agent/service/{id}", get(service))
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

    /// A stub serving `leaf` and `view` from the start.
    pub async fn start(leaf: LeafCert, view: ProxyView) -> StubAgent {
        let stub = StubAgent::empty().await;
        stub.set_leaf(leaf);
        stub.set_view(view);
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

    /// Serves a new leaf (to the pending blocking query); returns its index.
    pub fn set_leaf(&self, leaf: LeafCert) -> u64 {
        Self::bump(&self.state.leaf, leaf)
    }

    /// Serves a new proxy view; returns its index.
    pub fn set_view(&self, view: ProxyView) -> u64 {
        Self::bump(&self.state.view, view)
    }

    /// Serves a new view of the upstream `key` (`service` or `service@peer`).
    pub fn set_upstream(&self, key: &str, view: UpstreamView) -> u64 {
        let mut index = 0;
        self.state.upstreams.send_modify(|all| {
            let entry = all.entry(key.to_owned()).or_insert((10, view.clone()));
            entry.0 += 1;
            entry.1 = view;
            index = entry.0;
        });
        index
    }

    async fn wait_for_query(&self, resource: &str, index: u64) {
        let mut rx = self.state.queried.subscribe();
        tokio::time::timeout(
            WAIT,
            rx.wait_for(|q| q.get(resource).is_some_and(|i| *i >= index)),
        )
        .await
        .unwrap_or_else(|_| panic!("the proxy did not pick up {resource} {index}"))
        .unwrap();
    }

    /// Waits until the proxy asks for a leaf newer than `index`: by then
    /// the leaf of `index` is in effect.
    pub async fn leaf_in_effect(&self, index: u64) {
        self.wait_for_query(LEAF, index).await;
    }

    pub async fn view_in_effect(&self, index: u64) {
        self.wait_for_query(VIEW, index).await;
    }

    pub async fn upstream_in_effect(&self, key: &str, index: u64) {
        self.wait_for_query(&format!("upstream:{key}"), index).await;
    }

    pub async fn next_registration(&self) -> Value {
        let mut rx = self.registrations.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no registration")
            .unwrap()
    }

    /// Removes a registration behind the proxy's back, as an operator's
    /// deregistration or the agent's deregister-after-critical does.
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

    pub async fn next_deregistration(&self) -> String {
        let mut rx = self.deregistrations.lock().await;
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("no deregistration")
            .unwrap()
    }
}

/// The index and wait of a (blocking) query, after recording it.
fn record(state: &StubState, resource: &str, query: &HashMap<String, String>) -> (u64, Duration) {
    let index: u64 = query.get("index").and_then(|i| i.parse().ok()).unwrap_or(0);
    state.queried.send_modify(|q| {
        let seen = q.entry(resource.to_owned()).or_insert(0);
        *seen = (*seen).max(index);
    });
    let wait = query
        .get("wait")
        .and_then(|w| isthmus_api::duration::parse(w).ok())
        .unwrap_or(Duration::from_secs(300));
    (index, wait)
}

async fn versioned<T: Clone + serde::Serialize>(
    state: &StubState,
    resource: &str,
    sender: &Versioned<T>,
    query: &HashMap<String, String>,
) -> Response {
    let (index, wait) = record(state, resource, query);
    let mut rx = sender.subscribe();
    let _ = tokio::time::timeout(wait, rx.wait_for(|(i, v)| v.is_some() && *i > index)).await;
    let (current, value) = rx.borrow().clone();
    match value {
        Some(value) => ([("x-consul-index", current.to_string())], Json(value)).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "nothing yet").into_response(),
    }
}

async fn leaf(
    State(state): State<StubState>,
    Path(_service): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    versioned(&state, LEAF, &state.leaf, &query).await
}

async fn view(
    State(state): State<StubState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    versioned(&state, VIEW, &state.view, &query).await
}

async fn upstream(
    State(state): State<StubState>,
    Path(service): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let key = match query.get("peer") {
        Some(peer) => format!("{service}@{peer}"),
        None => service.clone(),
    };
    let (index, wait) = record(&state, &format!("upstream:{key}"), &query);
    let mut rx = state.upstreams.subscribe();
    let _ = tokio::time::timeout(
        wait,
        rx.wait_for(|all| all.get(&key).is_some_and(|(i, _)| *i > index)),
    )
    .await;
    let current = rx.borrow().get(&key).cloned();
    match current {
        Some((i, view)) => ([("x-consul-index", i.to_string())], Json(view)).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "no such upstream yet").into_response(),
    }
}

async fn register(State(state): State<StubState>, Json(body): Json<Value>) -> StatusCode {
    if state.refuse.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let id = body["ID"].as_str().unwrap_or_default().to_owned();
    state.catalog.send_modify(|(index, services)| {
        services.insert(id, body.clone());
        *index += 1;
    });
    let _ = state.registrations.send(body);
    StatusCode::OK
}

async fn deregister(State(state): State<StubState>, Path(id): Path<String>) -> StatusCode {
    state.catalog.send_modify(|(index, services)| {
        services.remove(&id);
        *index += 1;
    });
    let _ = state.deregistrations.send(id);
    StatusCode::OK
}

/// `/v1/agent/service/<id>`, blocking on the catalog's index: the
/// registration, or 404.
async fn service(
    State(state): State<StubState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (index, wait) = record(&state, &format!("service:{id}"), &query);
    let mut rx = state.catalog.subscribe();
    if index > 0 {
        let _ = tokio::time::timeout(wait, rx.wait_for(|(i, _)| *i > index)).await;
    }
    let (current, services) = rx.borrow().clone();
    match services.get(&id) {
        Some(body) => (
            [("x-consul-index", current.to_string())],
            Json(body.clone()),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown service ID: {id}")).into_response(),
    }
}
