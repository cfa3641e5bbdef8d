//! What the request handlers work with: the agent's configuration, store,
//! identity, CA, checks, peerings and metrics, built by the agent.

use std::sync::{Arc, Mutex, OnceLock};

use isthmus_api::config_entry::ServiceIntentions;
use isthmus_api::intentions::IntentionSet;
use tokio::sync::watch;

use crate::acl::AclResolver;
use crate::agent_lifecycle::AgentLifecycle;
use crate::ca::CertificateAuthority;
use crate::catalog::LocalNode;
use crate::checks::CheckRunner;
use crate::cluster::ClusterIdentity;
use crate::config::AgentConfig;
use crate::config_entries;
use crate::membership::Membership;
use crate::metrics::AgentMetrics;
use crate::peering::PeeringContext;
use crate::store::{Reads, Snapshot, Store, StoreError, Table};

/// Everything request handlers need.
pub struct AgentState {
    pub config: AgentConfig,
    pub store: Store,
    pub cluster: ClusterIdentity,
    pub node: LocalNode,
    pub ca: Arc<CertificateAuthority>,
    pub checks: Arc<CheckRunner>,
    /// The peerings' handles, over the same store, identity, node and CA.
    pub peering: Arc<PeeringContext>,
    /// This agent's own registry (several agents can share a process).
    pub metrics: AgentMetrics,
    /// Becomes true when the agent stops; blocking queries end early on it.
    pub shutting_down: watch::Receiver<bool>,
    /// The cluster's agents and its leader.
    pub membership: Membership,
    /// Reloads of the configuration and the request to leave.
    pub lifecycle: AgentLifecycle,
    /// Resolves requests' ACL tokens.
    pub acl: Arc<AclResolver>,
    /// The intention set compiled at a config-entries index, with the
    /// default policy it was compiled for.
    intentions: Mutex<Option<(u64, bool, Arc<IntentionSet>)>>,
    /// The service ID of the mesh gateway `agent --dev` runs in-process:
    /// in the catalog like Consul's mesh gateways, but not one of the
    /// agent's local services (`/v1/agent/services`, `/v1/agent/checks`).
    in_process_gateway: OnceLock<String>,
    /// The `ui_config` metrics provider's client, made at first use.
    ui_metrics: OnceLock<Option<Result<Arc<crate::ui_metrics::MetricsSource>, String>>>,
}

impl AgentState {
    /// The state over `peering`'s store, identity, node and CA.
    pub fn new(
        config: AgentConfig,
        peering: Arc<PeeringContext>,
        checks: Arc<CheckRunner>,
        metrics: AgentMetrics,
        shutting_down: watch::Receiver<bool>,
        membership: Membership,
    ) -> AgentState {
        AgentState {
            lifecycle: AgentLifecycle::new(&config),
            acl: Arc::new(AclResolver::new(config.acl.clone(), peering.store.clone())),
            config,
            store: peering.store.clone(),
            cluster: peering.cluster.clone(),
            node: peering.node.clone(),
            ca: peering.ca.clone(),
            checks,
            peering,
            metrics,
            shutting_down,
            membership,
            intentions: Mutex::new(None),
            in_process_gateway: OnceLock::new(),
            ui_metrics: OnceLock::new(),
        }
    }

    /// The topology page's metrics source: `None` without a provider,
    /// `Err` if its client could not be made.
    pub fn ui_metrics(&self) -> Option<Result<Arc<crate::ui_metrics::MetricsSource>, String>> {
        self.ui_metrics
            .get_or_init(|| {
                self.config.ui.metrics.as_ref().map(|provider| {
                    crate::ui_metrics::MetricsSource::new(provider, &self.config.cluster_name)
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                })
            })
            .clone()
    }

    /// Marks `service_id` as the in-process gateway's registration (once).
    pub fn set_in_process_gateway(&self, service_id: &str) {
        let _ = self.in_process_gateway.set(service_id.to_owned());
    }

    /// Whether the agent endpoints list this service (or its checks) as
    /// one of the agent's own: everything but the in-process gateway.
    pub fn is_agent_service(&self, service_id: &str) -> bool {
        self.in_process_gateway.get().map(String::as_str) != Some(service_id)
    }

    /// The intentions in force in `snapshot`, compiled once per change.
    pub fn intentions(&self, snapshot: &Snapshot) -> Result<Arc<IntentionSet>, StoreError> {
        let index = snapshot.table_index(Table::ConfigEntries)?;
        let default_allow = self.default_allow();
        if let Some((cached_at, cached_allow, set)) =
            &*self.intentions.lock().expect("intentions lock poisoned")
        {
            if *cached_at == index && *cached_allow == default_allow {
                return Ok(set.clone());
            }
        }
        let entries: Vec<ServiceIntentions> = config_entries::service_intentions(snapshot)?;
        let set = Arc::new(IntentionSet::compile(&entries, default_allow));
        *self.intentions.lock().expect("intentions lock poisoned") =
            Some((index, default_allow, set.clone()));
        Ok(set)
    }

    /// The default intention policy in force: the configuration's, as last
    /// reloaded.
    pub fn default_allow(&self) -> bool {
        self.lifecycle.default_allow()
    }
}
