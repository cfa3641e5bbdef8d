//! Keeps every agent node's `serfHealth` check in line with the cluster's
//! membership, as Consul's leader reconciles Serf's member list into the
//! catalog: passing while the node's agent holds its lease, critical once
//! it has lost it, gone once the node left. Only the leader writes.

use tokio::sync::watch;

use crate::catalog_remote::reconcile_liveness;
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

async fn reconcile(store: &Store, view: &ClusterView) {
    let by_status = |wanted: MemberStatus| -> Vec<String> {
        view.members
            .iter()
            .filter(|(_, (_, status))| *status == wanted)
            .map(|(name, _)| name.clone())
            .collect()
    };
    let alive = by_status(MemberStatus::Alive);
    let failed = by_status(MemberStatus::Failed);
    let written = store
        .write(move |txn| -> Result<usize, StoreError> { reconcile_liveness(txn, &alive, &failed) })
        .await;
    match written {
        Ok(0) => {}
        Ok(changed) => tracing::info!(changed, "node liveness checks updated"),
        Err(e) => tracing::warn!(error = %e, "updating the node liveness checks failed"),
    }
}
