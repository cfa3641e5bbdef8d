//! What `PUT /v1/agent/reload` and `PUT /v1/agent/leave` do to a running agent.
//!
//! Reload re-reads the agent's configuration the way it was first built
//! (defaults, then the config file, then the command-line flags), refuses
//! one that no longer loads, registers the file's service and check
//! definitions again (deregistering those dropped from it,
//! [`crate::config_definitions`]), applies the default intention policy,
//! and logs every other changed setting as needing a restart. Reloads run
//! one at a time.
//!
//! Leave removes this agent's node from the catalog state (its services and
//! checks, as Consul's leader reaps a node that left) and then asks the
//! process to shut down gracefully.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{watch, Mutex};

use crate::agent_checks::{self, AgentCheckError};
use crate::catalog::{self, CatalogError, LocalNode};
use crate::checks::CheckRunner;
use crate::config::AgentConfig;
use crate::config_definitions::{self, ConfigDefinitionError, Definitions};
use crate::store::{Store, StoreError, Table, Txn};

/// A row the proxy view reads, written when a reload changes the default
/// intention policy, so that sidecars' blocking queries wake and take the
/// new policy at once (the policy itself is this agent's configuration).
pub const POLICY_RELOADED_KEY: &str = "config/default-intention-policy";

/// Builds the agent's configuration again from where it first came from.
pub type ConfigLoader = Arc<dyn Fn() -> Result<AgentConfig, String> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Check(#[from] AgentCheckError),
    /// The configuration no longer loads, or its definitions are invalid;
    /// nothing was applied.
    #[error("Failed to reload configs: {0}")]
    Reload(String),
}

impl From<ConfigDefinitionError> for LifecycleError {
    fn from(e: ConfigDefinitionError) -> LifecycleError {
        match e {
            ConfigDefinitionError::Store(e) => LifecycleError::Store(e),
            invalid => LifecycleError::Reload(invalid.to_string()),
        }
    }
}

/// One setting that differs between the running configuration and the reloaded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub setting: &'static str,
    pub from: String,
    pub to: String,
    /// Whether the running agent now uses the new value.
    pub applied: bool,
}

/// The reload and leave state of one agent.
pub struct AgentLifecycle {
    loader: OnceLock<ConfigLoader>,
    /// The configuration as last loaded; held for a whole reload.
    loaded: Mutex<AgentConfig>,
    default_allow: AtomicBool,
    leave: watch::Sender<bool>,
}

impl AgentLifecycle {
    pub fn new(config: &AgentConfig) -> AgentLifecycle {
        AgentLifecycle {
            loader: OnceLock::new(),
            loaded: Mutex::new(config.clone()),
            default_allow: AtomicBool::new(config.default_allow()),
            leave: watch::channel(false).0,
        }
    }

    /// Where reloads read the configuration from (set once, by the command
    /// that started the agent; an agent without one reloads nothing).
    pub fn set_loader(&self, loader: ConfigLoader) {
        let _ = self.loader.set(loader);
    }

    /// The default intention policy in force (reloadable).
    pub fn default_allow(&self) -> bool {
        self.default_allow.load(Ordering::Relaxed)
    }

    /// The configuration from its sources, checked, read off the async
    /// workers (a file read and a parse); `None` without a loader.
    async fn load(&self) -> Result<Option<AgentConfig>, LifecycleError> {
        let Some(loader) = self.loader.get().cloned() else {
            return Ok(None);
        };
        let fresh = tokio::task::spawn_blocking(move || loader())
            .await
            .map_err(|e| LifecycleError::Reload(e.to_string()))?
            .map_err(LifecycleError::Reload)?;
        fresh.validate().map_err(LifecycleError::Reload)?;
        Ok(Some(fresh))
    }

    pub fn request_leave(&self) {
        self.leave.send_replace(true);
    }

    /// Completes once a leave was requested.
    pub async fn left(&self) {
        let mut requested = self.leave.subscribe();
        let _ = requested.wait_for(|left| *left).await;
    }
}

fn definitions(config: &AgentConfig) -> Definitions<'_> {
    Definitions {
        services: &config.services,
        checks: &config.checks,
    }
}

/// What registering definitions works on: the agent's store, its check
/// runner and its node.
pub struct Catalog<'a> {
    pub store: &'a Store,
    pub checks: &'a Arc<CheckRunner>,
    pub node: &'a LocalNode,
}

/// Registers the configuration's service and check definitions at start.
pub async fn register_definitions(
    catalog: Catalog<'_>,
    config: &AgentConfig,
) -> Result<(), LifecycleError> {
    let none = Definitions {
        services: &[],
        checks: &[],
    };
    let applied = config_definitions::apply(
        catalog.store,
        catalog.checks,
        catalog.node,
        none,
        definitions(config),
    )
    .await?;
    if !applied.services.is_empty() || !applied.checks.is_empty() {
        tracing::info!(services = ?applied.services, checks = ?applied.checks, "registered the config file's definitions");
    }
    Ok(())
}

/// Reloads the configuration (see the module docs) and returns the
/// settings that changed.
pub async fn reload(
    lifecycle: &AgentLifecycle,
    catalog: Catalog<'_>,
) -> Result<Vec<Change>, LifecycleError> {
    let mut loaded = lifecycle.loaded.lock().await;
    let Some(mut fresh) = lifecycle.load().await? else {
        return Ok(Vec::new());
    };
    // Port 0 was resolved when the agent started; that is no change.
    if fresh.http_addr.port() == 0 && fresh.http_addr.ip() == loaded.http_addr.ip() {
        fresh.http_addr = loaded.http_addr;
    }
    let applied = config_definitions::apply(
        catalog.store,
        catalog.checks,
        catalog.node,
        definitions(&loaded),
        definitions(&fresh),
    )
    .await?;
    tracing::info!(
        services = ?applied.services,
        checks = ?applied.checks,
        removed_services = ?applied.removed_services,
        removed_checks = ?applied.removed_checks,
        "configuration reloaded: definitions registered"
    );
    let changes = changes(&loaded, &fresh);
    let allow = fresh.default_allow();
    lifecycle.default_allow.store(allow, Ordering::Relaxed);
    if allow != loaded.default_allow() {
        let policy = if allow { "allow" } else { "deny" }.to_owned();
        catalog
            .store
            .write(move |txn| txn.put(Table::Meta, POLICY_RELOADED_KEY, &policy))
            .await?;
    }
    *loaded = fresh;
    Ok(changes)
}

/// The settings a reload compares, by their config file names.
fn settings(config: &AgentConfig) -> Vec<(&'static str, String)> {
    vec![
        ("data_dir", format!("{:?}", config.data_dir)),
        ("cluster_name", config.cluster_name.clone()),
        ("node_name", config.node_name.clone()),
        ("advertise_addr", config.advertise_addr.to_string()),
        ("http_addr", config.http_addr.to_string()),
        (
            "default_intention_policy",
            if config.default_allow() {
                "allow"
            } else {
                "deny"
            }
            .to_owned(),
        ),
        ("leaf_cert_ttl", format!("{:?}", config.leaf_cert_ttl)),
        ("gateway_cert_ttl", format!("{:?}", config.gateway_cert_ttl)),
        (
            "peering_heartbeat",
            format!("{:?}", config.peering_heartbeat),
        ),
        (
            "peering_token_ttl",
            format!("{:?}", config.peering_token_ttl),
        ),
        (
            "peering_max_message_bytes",
            config.peering_max_message_bytes.to_string(),
        ),
        (
            "peering_max_imported_services",
            config.peering_max_imported_services.to_string(),
        ),
        (
            "peering_max_service_instances",
            config.peering_max_service_instances.to_string(),
        ),
        ("limits", format!("{:?}", config.http_limits)),
        (
            "http_allowed_hosts",
            format!("{:?}", config.http_allowed_hosts),
        ),
    ]
}

/// Settings the running agent takes over from a reload.
const RELOADABLE: &[&str] = &["default_intention_policy"];

fn changes(running: &AgentConfig, fresh: &AgentConfig) -> Vec<Change> {
    settings(running)
        .into_iter()
        .zip(settings(fresh))
        .filter(|((_, from), (_, to))| from != to)
        .map(|((setting, from), (_, to))| Change {
            setting,
            from,
            to,
            applied: RELOADABLE.contains(&setting),
        })
        .collect()
}

/// Removes every service and check of this agent's node but the services
/// `deregisters_itself` names (the in-process gateway, which deregisters on
/// its own way out); returns the IDs of the checks removed, for their
/// runners to stop.
pub fn deregister_node(
    txn: &mut Txn,
    deregisters_itself: impl Fn(&str) -> bool,
) -> Result<Vec<String>, LifecycleError> {
    let mut removed = Vec::new();
    for service in catalog::all_services(txn)? {
        if deregisters_itself(&service.id) {
            continue;
        }
        removed.extend(catalog::deregister(txn, &service.id)?);
    }
    for check in catalog::all_checks(txn)? {
        if deregisters_itself(&check.state.service_id) {
            continue;
        }
        agent_checks::deregister(txn, &check.state.check_id)?;
        removed.push(check.state.check_id);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IntentionPolicy;

    #[test]
    fn changes_name_each_setting_and_whether_it_applies_live() {
        let running = AgentConfig::dev();
        let mut fresh = running.clone();
        assert_eq!(changes(&running, &fresh), Vec::new());
        fresh.default_intention_policy = IntentionPolicy::Allow;
        fresh.peering_token_ttl *= 2;
        let summary: Vec<(&str, bool)> = changes(&running, &fresh)
            .iter()
            .map(|c| (c.setting, c.applied))
            .collect();
        assert_eq!(
            summary,
            [
                ("default_intention_policy", true),
                ("peering_token_ttl", false)
            ]
        );
    }

    #[tokio::test]
    async fn a_configuration_that_no_longer_loads_is_refused_with_consuls_prefix() {
        let lifecycle = AgentLifecycle::new(&AgentConfig::dev());
        assert!(
            lifecycle.load().await.unwrap().is_none(),
            "no loader: nothing to do"
        );
        lifecycle.set_loader(Arc::new(|| Err("config file x.hcl: bad".to_owned())));
        let refused = lifecycle.load().await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Failed to reload configs: config file x.hcl: bad"
        );
        assert!(!lifecycle.default_allow());
    }
}
