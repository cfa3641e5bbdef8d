//! `PUT /v1/agent/reload` and `PUT /v1/agent/leave` ([`crate::agent_lifecycle`]).

use axum::body::Body;
use axum::extract::State as Extract;
use axum::response::Response;

use isthmus_api::acl::{Access, Resource};

use super::authz::Authz;
use super::error::ApiError;
use super::State;
use crate::agent_lifecycle;

/// Re-reads the configuration; 200 with an empty body, as Consul answers.
pub async fn reload(Extract(state): Extract<State>, authz: Authz) -> Result<Response, ApiError> {
    authz.require(Resource::Agent, &state.node.name, Access::Write)?;
    let catalog = agent_lifecycle::Catalog {
        store: &state.store,
        checks: &state.checks,
        node: &state.node,
    };
    let changes = agent_lifecycle::reload(&state.lifecycle, catalog).await?;
    if changes.is_empty() {
        tracing::info!("configuration reloaded: nothing changed");
    }
    for change in changes {
        if change.applied {
            tracing::info!(setting = change.setting, from = %change.from, to = %change.to, "configuration reloaded: setting applied");
        } else {
            tracing::warn!(setting = change.setting, from = %change.from, to = %change.to, "configuration reloaded: this setting takes effect only after a restart");
        }
    }
    Ok(Response::new(Body::empty()))
}

/// Leaves gracefully: this node's services and checks leave the catalog,
/// the answer (200, empty) goes out, then the agent shuts down.
pub async fn leave(Extract(state): Extract<State>, authz: Authz) -> Result<Response, ApiError> {
    authz.require(Resource::Agent, &state.node.name, Access::Write)?;
    let own = state.clone();
    let removed = state
        .store
        .write(move |txn| agent_lifecycle::deregister_node(txn, |id| !own.is_agent_service(id)))
        .await?;
    for check in &removed {
        state.checks.stop(check);
    }
    // With etcd, the node leaves the member list too (not failed: gone),
    // and its leadership, if it had it, passes on now.
    state.membership.release(true).await;
    tracing::info!(node = %state.node.name, "leaving the cluster: node deregistered, shutting down");
    state.lifecycle.request_leave();
    Ok(Response::new(Body::empty()))
}
