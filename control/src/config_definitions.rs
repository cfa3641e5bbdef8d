//! Services and checks defined in the agent's config file (Consul's
//! `service`/`services` and `check`/`checks`): registered when the agent
//! starts and again on every reload, like Consul's; a definition dropped
//! from the file is deregistered on reload. Every definition is prepared
//! (validated) before anything is written, and all of them are written in
//! one transaction, so a bad file changes nothing.

use isthmus_api::catalog::{CheckDefinition, ServiceRegistration};
use serde::Deserialize;

use crate::agent_checks::{self, AgentCheckError};
use crate::catalog::LocalNode;
use crate::catalog::{self, CatalogError, Registration};
use crate::checks::CheckRunner;
use crate::store::{Store, StoreError};

/// Definitions one config file may hold of each kind.
pub const MAX_DEFINITIONS: usize = 1024;

/// A single block (`service { ... }`) or a list of them (repeated blocks,
/// `services = [...]`), as Consul's config takes both.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<serde_json::Value>>, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Array(items) => Some(items),
        serde_json::Value::Null => None,
        single => Some(vec![single]),
    })
}

/// Decodes config file definitions like request bodies (Consul's key
/// spellings), naming the failing one as `services[1]: ...`.
pub fn decode<T: isthmus_api::consul_json::ConsulBody>(
    key: &str,
    values: Vec<serde_json::Value>,
) -> Result<Vec<T>, String> {
    if values.len() > MAX_DEFINITIONS {
        return Err(format!(
            "{key}: at most {MAX_DEFINITIONS} definitions are accepted, got {}",
            values.len()
        ));
    }
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            isthmus_api::consul_json::from_value(value).map_err(|e| format!("{key}[{index}]: {e}"))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigDefinitionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("service definition {index}: {source}")]
    Service { index: usize, source: CatalogError },
    #[error("check definition {index}: {source}")]
    Check {
        index: usize,
        source: AgentCheckError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    AgentCheck(#[from] AgentCheckError),
}

/// The definitions of one configuration.
#[derive(Clone, Copy)]
pub struct Definitions<'a> {
    pub services: &'a [ServiceRegistration],
    pub checks: &'a [CheckDefinition],
}

/// What applying a configuration's definitions did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub services: Vec<String>,
    pub checks: Vec<String>,
    pub removed_services: Vec<String>,
    pub removed_checks: Vec<String>,
}

/// Registers `fresh`'s definitions and deregisters those only `previous` had.
pub async fn apply(
    store: &Store,
    runner: &std::sync::Arc<CheckRunner>,
    node: &LocalNode,
    previous: Definitions<'_>,
    fresh: Definitions<'_>,
) -> Result<Applied, ConfigDefinitionError> {
    let services: Vec<Registration> = fresh
        .services
        .iter()
        .enumerate()
        .map(|(index, definition)| {
            catalog::prepare(definition.clone(), node)
                .map_err(|source| ConfigDefinitionError::Service { index, source })
        })
        .collect::<Result<_, _>>()?;
    let checks = fresh
        .checks
        .iter()
        .enumerate()
        .map(|(index, definition)| {
            agent_checks::prepare(definition.clone(), node)
                .map_err(|source| ConfigDefinitionError::Check { index, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut applied = Applied {
        services: services.iter().map(|s| s.service.id.clone()).collect(),
        checks: checks.iter().map(|c| c.state.check_id.clone()).collect(),
        ..Applied::default()
    };
    // What the previous file defined and this one does not (IDs are
    // derived the same way, so preparing again finds them).
    applied.removed_services = previous
        .services
        .iter()
        .filter_map(|definition| catalog::prepare(definition.clone(), node).ok())
        .map(|s| s.service.id)
        .filter(|id| !applied.services.contains(id))
        .collect();
    applied.removed_checks = previous
        .checks
        .iter()
        .filter_map(|definition| agent_checks::prepare(definition.clone(), node).ok())
        .map(|c| c.state.check_id)
        .filter(|id| !applied.checks.contains(id))
        .collect();

    let removed_services = applied.removed_services.clone();
    let removed_checks = applied.removed_checks.clone();
    let (started, stopped) = store
        .write(move |txn| {
            let mut started = Vec::new();
            let mut stopped = Vec::new();
            for id in &removed_checks {
                match agent_checks::deregister(txn, id) {
                    // Deregistered through the API since: nothing left to do.
                    Ok(()) | Err(AgentCheckError::UnknownCheck { .. }) => stopped.push(id.clone()),
                    Err(e) => return Err(ConfigDefinitionError::from(e)),
                }
            }
            for id in &removed_services {
                match catalog::deregister(txn, id) {
                    Ok(checks) => stopped.extend(checks),
                    Err(CatalogError::UnknownService { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            for registration in services.iter().cloned() {
                let registered = catalog::register(txn, registration)?;
                stopped.extend(registered.dropped_checks);
                started.extend(registered.registration.checks);
            }
            for check in checks.iter().cloned() {
                started.push(agent_checks::register(txn, check)?);
            }
            Ok((started, stopped))
        })
        .await?;
    for check in &stopped {
        runner.stop(check);
    }
    for check in &started {
        runner.start(check);
    }
    Ok(applied)
}
