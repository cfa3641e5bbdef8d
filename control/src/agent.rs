//! `isthmus agent`: opens the store, loads the cluster identity and CA,
//! restarts the health checks and serves the HTTP API until told to stop.
//!
//! This is the composition root: it builds the narrow handles the other
//! modules work with (the store, the CA, the peering context, the metrics)
//! and the router over them; nothing else in the crate depends on it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ca;
use crate::catalog::{self, LocalNode};
use crate::checks::CheckRunner;
pub use crate::cluster::ClusterIdentity;
pub use crate::config::{AgentConfig, IntentionPolicy};
pub use crate::http::AgentState;
use crate::membership::{self, Member, Membership};
use crate::metrics::AgentMetrics;
use crate::peering::{PeeringContext, PeeringManager};
use crate::store::etcd::EtcdLog;
use crate::store::{Reads, Store, StoreError, Table};

const CLUSTER_KEY: &str = "cluster";
const NODE_KEY: &str = "node";
const STORE_FILE: &str = "state.redb";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("setting up ACLs: {0}")]
    Acl(#[from] crate::acl::AclError),
    #[error("loading the CA: {0}")]
    Ca(#[from] ca::CaError),
    #[error("setting up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("binding the HTTP API to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("binding the HTTPS API to {addr}: {source}")]
    BindHttps {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Https(#[from] crate::https::HttpsError),
    #[error("binding the DNS interface to {addr} (UDP and TCP): {source} (see --dns-port; -1 turns DNS off)")]
    DnsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started agent. Dropping it does not stop it; call [`RunningAgent::shutdown`].
pub struct RunningAgent {
    pub state: Arc<AgentState>,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// `None` once [`RunningAgent::wait`] saw it finish: a finished
    /// handle must not be awaited again.
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// The DNS interface, unless turned off.
    dns: Option<crate::dns::DnsServer>,
    /// The HTTPS API, when configured: where it listens and its server.
    https: Option<(SocketAddr, JoinHandle<()>)>,
}

impl RunningAgent {
    /// Where the HTTP API actually listens (resolves port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the HTTPS API listens (resolves port 0); `None` when off.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().map(|(addr, _)| *addr)
    }

    /// Where the DNS interface listens, UDP and TCP (resolves port 0);
    /// `None` when it is turned off.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(|dns| dns.addr())
    }

    /// Stops accepting, lets in-flight requests finish, stops the checks.
    pub async fn shutdown(self) -> std::io::Result<()> {
        if let Some(dns) = self.dns {
            dns.shutdown().await;
        }
        // End peering sessions first: their open streams would otherwise
        // hold the HTTP server's graceful shutdown (and a gateway's drain).
        self.state.peering.manager.stop_all();
        // Leadership and liveness pass on now, not at the lease's expiry.
        self.state.membership.release(false).await;
        let _ = self.stop.send(true);
        let result = match self.server {
            Some(server) => server
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        if let Some((_, https)) = self.https {
            let _ = https.await;
        }
        self.state.checks.stop_all();
        result
    }

    /// Runs until the server ends (it only ends on shutdown or a fatal error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let result = server.await;
        self.server = None;
        result.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// The cluster's etcd, when the state is there: the log and its prefix.
struct EtcdCluster {
    log: Arc<EtcdLog>,
    prefix: String,
}

fn open_store(config: &AgentConfig) -> Result<(Store, Option<EtcdCluster>), StartError> {
    if let Some(etcd) = &config.etcd {
        let mut etcd = etcd.clone();
        if etcd.prefix.is_empty() {
            etcd.prefix = crate::config::default_etcd_prefix(&config.cluster_name);
        }
        tracing::info!(endpoints = ?etcd.endpoints, prefix = %etcd.prefix, "the cluster's state is in etcd");
        let log = EtcdLog::connect(&etcd, &config.node_name)?;
        let store = Store::with_shared_log(log.clone(), store_schema())?;
        let cluster = EtcdCluster {
            log,
            prefix: etcd.prefix,
        };
        return Ok((store, Some(cluster)));
    }
    Ok((open_embedded_store(config)?, None))
}

/// The catalog's tables and the ACL tables.
fn store_schema() -> crate::store::Schema {
    crate::acl::tables::schema(crate::catalog::schema())
}

fn open_embedded_store(config: &AgentConfig) -> Result<Store, StartError> {
    match &config.data_dir {
        Some(dir) => {
            // It holds the CA key, the gateway key and the stream secrets.
            crate::store::private::create_private_dir(dir)
                .map_err(|e| StartError::Config(format!("data dir: {e}")))?;
            let log = crate::store::RedbBackend::open(&dir.join(STORE_FILE))?;
            Ok(Store::with_log(Box::new(log), store_schema())?)
        }
        None => Ok(Store::with_log(
            Box::new(crate::store::NoLog),
            store_schema(),
        )?),
    }
}

/// Loads or creates the cluster identity and node record. A data dir
/// belongs to one cluster: starting it under another name is refused rather
/// than silently re-keying the cluster.
fn load_identity(
    store: &Store,
    config: &AgentConfig,
) -> Result<(ClusterIdentity, LocalNode), StartError> {
    store.write_blocking(|txn| {
        let cluster = match txn.get::<ClusterIdentity>(Table::Meta, CLUSTER_KEY)? {
            Some(existing) if existing.name != config.cluster_name => {
                return Err(StartError::Config(format!(
                    "the data dir belongs to cluster {:?}; refusing to start it as {:?}",
                    existing.name, config.cluster_name
                )))
            }
            Some(existing) => existing,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let cluster = ClusterIdentity {
                    trust_domain: isthmus_api::naming::trust_domain(&id),
                    id,
                    name: config.cluster_name.clone(),
                };
                txn.put(Table::Meta, CLUSTER_KEY, &cluster)?;
                cluster
            }
        };
        let node_id = match txn.get::<LocalNode>(Table::Meta, NODE_KEY)? {
            Some(node) => node.id,
            None => uuid::Uuid::new_v4().to_string(),
        };
        let node = LocalNode {
            id: node_id,
            name: config.node_name.clone(),
            address: config.advertise_addr.to_string(),
            datacenter: cluster.name.clone(),
        };
        let stored: Option<LocalNode> = txn.get(Table::Meta, NODE_KEY)?;
        if stored.as_ref().map(|n| (&n.name, &n.address)) != Some((&node.name, &node.address)) {
            txn.put(Table::Meta, NODE_KEY, &node)?;
        }
        Ok((cluster, node))
    })
}

/// Where other agents reach this one's API: the bound address, or the
/// advertise address when bound to all interfaces.
fn api_address(bound: SocketAddr, advertise: std::net::IpAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(advertise, bound.port())
    } else {
        bound
    }
}

/// Opens state, binds the API and starts serving.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, StartError> {
    config.validate().map_err(StartError::Config)?;
    let (store, etcd) = open_store(&config)?;
    if let Some(etcd) = &etcd {
        let claim = membership::etcd::claim_node_name(
            etcd.log.client(),
            etcd.prefix.clone(),
            config.node_name.clone(),
            config.member_ttl,
        );
        // On the etcd client's runtime; awaited from this one.
        etcd.log
            .runtime()
            .spawn(claim)
            .await
            .map_err(|e| StartError::Config(e.to_string()))?
            .map_err(StartError::Config)?;
    }
    let (cluster, node) = load_identity(&store, &config)?;
    if config.acl.enabled {
        crate::acl::bootstrap::initialize(&store, &config.acl)?;
    }
    let ca = ca::open(
        &store,
        &cluster.trust_domain,
        &cluster.name,
        config.leaf_cert_ttl,
        config.gateway_cert_ttl,
    )?;

    let metrics = AgentMetrics::new()?;
    let checks = CheckRunner::new(store.clone());
    for check in catalog::all_checks(&store.snapshot()?)? {
        checks.start(&check);
    }

    let https_listener = match config.https.addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::BindHttps { addr, source })?,
        ),
        None => None,
    };
    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http_addr,
        source,
    })?;

    // With port 0 the agent answers (status/leader, agent/self) with the
    // port it actually listens on (the HTTPS one's too, in its settings).
    let mut config = config;
    config.http_addr = http_addr;
    if let Some(bound) = https_listener.as_ref().and_then(|l| l.local_addr().ok()) {
        config.https.addr = Some(bound);
    }
    let (stop, mut stopped) = watch::channel(false);
    let peering = Arc::new(PeeringContext {
        store,
        cluster,
        node,
        ca: Arc::new(ca),
        manager: PeeringManager::new(config.peering_heartbeat, config.peering_token_ttl),
        metrics: metrics.peers.clone(),
        probes: crate::peering::gateway_probe::GatewayProbes::new(
            config.peering_gateway_probe_interval,
        ),
        max_message_bytes: config.peering_max_message_bytes,
        import_limits: isthmus_api::peering_limits::ImportLimits {
            max_services: config.peering_max_imported_services,
            max_instances: config.peering_max_service_instances,
            ..isthmus_api::peering_limits::ImportLimits::default()
        },
    });
    let this = Member {
        name: peering.node.name.clone(),
        id: peering.node.id.clone(),
        addr: peering.node.address.clone(),
        api: api_address(http_addr, config.advertise_addr).to_string(),
        datacenter: peering.cluster.name.clone(),
        build: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let membership = match &etcd {
        Some(etcd) => membership::etcd::start(
            etcd.log.client(),
            &etcd.log.runtime(),
            &etcd.prefix,
            this,
            config.member_ttl,
        ),
        None => Membership::single(this),
    };
    let state = Arc::new(AgentState::new(
        config,
        peering,
        checks,
        metrics,
        stopped.clone(),
        membership,
    ));
    // Before the API listens: a bad definition stops the start cleanly.
    let catalog = crate::agent_lifecycle::Catalog {
        store: &state.store,
        checks: &state.checks,
        node: &state.node,
    };
    crate::agent_lifecycle::register_definitions(catalog, &state.config)
        .await
        .map_err(|e| StartError::Config(format!("the config file's definitions: {e}")))?;
    let router = crate::http::router(state.clone());
    let https = match https_listener {
        Some(listener) => match start_https(&state, listener, router.clone()) {
            Ok(https) => Some(https),
            Err(e) => {
                let _ = stop.send(true);
                return Err(e);
            }
        },
        None => None,
    };
    let mut limits = state.config.http_limits;
    limits.fit_fd_limit("api");
    let counters = state.metrics.api_listener.clone();
    let limiter = isthmus_runtime::listen::ConnLimiter::new("api", &limits, counters.clone());
    let server = tokio::spawn(async move {
        let make_service = move |_remote| {
            let router = router.clone();
            hyper::service::service_fn(move |request| {
                tower::ServiceExt::oneshot(router.clone(), request)
            })
        };
        isthmus_runtime::listen::serve(
            listener,
            limiter,
            limits,
            counters,
            make_service,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )
        .await;
        Ok(())
    });
    tokio::spawn(crate::liveness::keep_reconciled(
        state.store.clone(),
        state.membership.clone(),
        state.shutting_down.clone(),
    ));
    let dns = match start_dns(&state, http_addr.ip()).await {
        Ok(dns) => dns,
        Err(e) => {
            let _ = stop.send(true);
            return Err(e);
        }
    };
    tokio::spawn(ca::follow_gateway_cert(
        state.store.clone(),
        state.ca.clone(),
        state.shutting_down.clone(),
    ));
    // A cluster of one leads from the start: its peerings are resumed
    // before it reports started, as they always were.
    if state.membership.is_leader() {
        crate::liveness::reconcile(&state.store, &state.membership.view()).await;
    }
    let first_term = if state.membership.is_leader() {
        Some(crate::leader::take_office(&state).await)
    } else {
        None
    };
    tokio::spawn(crate::leader::run_duties(state.clone(), first_term));
    tracing::info!(
        cluster = %state.cluster.name,
        trust_domain = %state.cluster.trust_domain,
        http = %http_addr,
        https = ?https.as_ref().map(|(addr, _)| *addr),
        dns = ?dns.as_ref().map(|d| d.addr()),
        http_max_conns = state.config.http_limits.max_conns,
        http_max_conns_per_client = state.config.http_limits.max_conns_per_client,
        http_header_read_timeout = ?state.config.http_limits.header_read_timeout,
        http_idle_timeout = ?state.config.http_limits.idle_timeout,
        data_dir = ?state.config.data_dir,
        index = state.store.index(),
        "agent started"
    );
    Ok(RunningAgent {
        state,
        http_addr,
        stop,
        server: Some(server),
        dns,
        https,
    })
}

/// Serves `router` over TLS on `listener` with the HTTP API's caps and
/// timeouts plus the handshake timeout, and keeps a CA-issued certificate
/// renewed. Stops with the agent.
fn start_https(
    state: &Arc<AgentState>,
    listener: TcpListener,
    router: axum::Router,
) -> Result<(SocketAddr, JoinHandle<()>), StartError> {
    let settings = &state.config.https;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::BindHttps {
            addr: settings.addr.unwrap_or(state.config.http_addr),
            source,
        })?;
    let names =
        crate::https::ApiCertNames::new(&state.node.name, state.config.advertise_addr, bound);
    let tls = crate::https::prepare(settings, &state.ca, names)?;
    if let Some((names, renew_at)) = tls.renewal {
        tokio::spawn(crate::https::keep_renewed(
            state.ca.clone(),
            tls.resolver.clone(),
            names,
            renew_at,
            state.shutting_down.clone(),
        ));
    }
    let mut limits = state.config.http_limits;
    limits.fit_fd_limit("api_https");
    let counters = state.metrics.api_https_listener.clone();
    let limiter = isthmus_runtime::listen::ConnLimiter::new("api_https", &limits, counters.clone());
    let handshake = isthmus_runtime::listen::tls_handshake(
        tokio_rustls::TlsAcceptor::from(tls.config),
        settings.handshake_timeout,
        counters.clone(),
    );
    let mut stopped = state.shutting_down.clone();
    let server = tokio::spawn(async move {
        let make_service = move |_remote| {
            let router = router.clone();
            hyper::service::service_fn(move |request| {
                tower::ServiceExt::oneshot(router.clone(), request)
            })
        };
        isthmus_runtime::listen::serve_upgraded(
            listener,
            limiter,
            limits,
            counters,
            handshake,
            make_service,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        )
        .await;
    });
    Ok((bound, server))
}

/// Binds the DNS interface on the HTTP API's address, unless turned off.
async fn start_dns(
    state: &Arc<AgentState>,
    ip: std::net::IpAddr,
) -> Result<Option<crate::dns::DnsServer>, StartError> {
    let Some(port) = state.config.dns.port else {
        return Ok(None);
    };
    let addr = SocketAddr::new(ip, port);
    let metrics = crate::dns::DnsMetrics::register(state.metrics.registry())?;
    let handler = crate::dns::DnsHandler::new(
        state.store.clone(),
        state.node.clone(),
        Arc::new(state.config.dns.clone()),
        metrics,
        state.acl.clone(),
    )
    .map_err(|e| StartError::Config(format!("domain {:?}: {e}", state.config.dns.domain)))?;
    let server = crate::dns::DnsServer::bind(ip, port, handler)
        .await
        .map_err(|source| StartError::DnsBind { addr, source })?;
    Ok(Some(server))
}
