//! Keeps every agent node's `serfHealth` check in line with the cluster's
//! membership, as Consul's leader reconciles Serf's member list into the
//! catalog: passing while the node's agent holds its lease, critical once
//! it has lost it, gone once the node left. Only the leader writes.

use tokio::sync::watch;

use crate::catalog_remote::{reconcile_liveness, AgentNode};
use crate::membership::{ClusterView, MemberStatus, Membership};
use crate::store::{Store, StoreError};

/// Runs until `stop` turns true.
pub async fn keep_reconciled(
    store: Store,
    membership: Membership,
    mut stop: watch::Receiver<bool>,
) {
    let mut view = membership.subscribe();
    loop {
        let current = view.borrow_and_update().clone();
        if current.leading {
            reconcile(&store, &current).await;
        }
        let changed = tokio::select! {
            changed = view.changed() => changed.is_ok(),
            _ = stop.wait_for(|s| *s) => return,
        };
        if !changed {
            // A cluster of one: its view never changes again.
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
    }
}

/// One reconciliation of `view` into the store (the agent runs one at
/// start-up when it leads from the start, so it reports started with its
/// node's `serfHealth` in place).
pub async fn reconcile(store: &Store, view: &ClusterView) {
    let nodes: Vec<AgentNode> = view
        .members
        .values()
        .map(|(member, status)| AgentNode {
            name: member.name.clone(),
            address: member.addr.clone(),
            api_port: member
                .api
                .parse::<std::net::SocketAddr>()
                .map(|a| a.port())
                .unwrap_or_default(),
            alive: *status == MemberStatus::Alive,
        })
        .collect();
    let written = store
        .write(move |txn| -> Result<usize, StoreError> { reconcile_liveness(txn, &nodes) })
        .await;
    match written {
        Ok(0) => {}
        Ok(changed) => tracing::info!(changed, "node liveness checks and agent services updated"),
        Err(e) => tracing::warn!(error = %e, "updating the node liveness checks failed"),
    }
}
