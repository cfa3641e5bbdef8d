//! Deleting a peering, to the end, whatever happens to whoever asked.
//!
//! `DELETE /v1/peering/<name>` marks the peering `DELETING` and then a
//! background task (not the request's future) finishes the job: tell the
//! peer, stop dialing, drop what was imported from the peer and the
//! peering itself. A client that disconnects while the peer is told (which
//! may take the dial timeout when the peer is unreachable) no longer
//! leaves the peering in `DELETING` forever; a repeated `DELETE` joins the
//! running deletion or starts one; and an agent that stopped mid-way
//! resumes every `DELETING` peering at start-up ([`resume`]).

use std::sync::Arc;
use std::time::Duration;

use isthmus_api::peering as api;
use time::format_description::well_known::Rfc3339;

use super::context::PeeringContext;
use super::error::PeeringError;
use super::Role;
use crate::store::{StoreError, Table};

/// Marks `name` `DELETING` (unless it already is), makes sure a deletion
/// task runs for it, and waits until that task has removed the peering.
/// Returns at once if there is no such peering. Dropping the returned
/// future (the client went away) does not stop the deletion.
pub async fn delete(peering: &Arc<PeeringContext>, name: &str) -> Result<(), PeeringError> {
    let deleted_at = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .expect("timestamps format");
    let target = name.to_owned();
    let exists = peering
        .store
        .write(move |txn| -> Result<bool, StoreError> {
            let Some(mut record) = super::get(txn, &target)? else {
                return Ok(false);
            };
            if record.state != api::STATE_DELETING {
                record.state = api::STATE_DELETING.into();
                record.deleted_at = Some(deleted_at.clone());
                super::put(txn, record)?;
            }
            Ok(true)
        })
        .await?;
    if !exists {
        return Ok(());
    }
    let mut done = spawn(peering.clone(), name.to_owned());
    // Resolves when the task finished (true) or ended without finishing
    // (sender dropped: the runtime is shutting down).
    let finished = done.wait_for(|finished| *finished).await.is_ok();
    if finished {
        Ok(())
    } else {
        Err(PeeringError::DeletionInterrupted {
            name: name.to_owned(),
        })
    }
}

/// Starts a deletion task for every peering stored as `DELETING` (an agent
/// that stopped mid-way through deleting).
pub fn resume(peering: &Arc<PeeringContext>, names: Vec<String>) {
    for name in names {
        tracing::info!(peer = %name, "resuming the deletion of a peering");
        drop(spawn(peering.clone(), name));
    }
}

/// The deletion task for `name`: the running one, or a new one.
fn spawn(peering: Arc<PeeringContext>, name: String) -> tokio::sync::watch::Receiver<bool> {
    let (done, start) = peering.manager.deletion(&name);
    if let Some(finished) = start {
        tokio::spawn(async move {
            match finish(&peering, &name).await {
                Ok(()) => {}
                Err(e) => {
                    // Only the store can fail here; the next DELETE or the
                    // next start-up tries again.
                    tracing::error!(peer = %name, error = %e, "deleting the peering failed");
                }
            }
            peering.manager.deletion_finished(&name, finished);
        });
    }
    done
}

/// Tells the peer (best effort, bounded), stops dialing, then removes the
/// peering and everything imported from the peer in one write.
async fn finish(peering: &Arc<PeeringContext>, name: &str) -> Result<(), StoreError> {
    let Some(record) = super::get(&peering.store.snapshot()?, name)? else {
        return Ok(());
    };
    if record.state != api::STATE_DELETING {
        // Re-created under the same name since: not ours to delete.
        return Ok(());
    }
    // Tell the peer over the live session first: on the dialer the session
    // runs inside the dial task, so that task is stopped only afterwards.
    let told = peering
        .manager
        .terminate_session(
            name,
            super::stream::TERMINATE_DRAIN + Duration::from_secs(1),
        )
        .await;
    peering.manager.stop_dialer(name);
    if !told && record.role == Role::Dialer && !record.peer_trust_domain.is_empty() {
        if let Err(e) = super::dial::send_terminate(peering, &record).await {
            tracing::warn!(peer = %name, error = %e, "could not tell the peer about the deletion; it will find out when it next connects");
        }
    }
    let target = name.to_owned();
    let id = record.id.clone();
    peering
        .store
        .write(move |txn| -> Result<(), StoreError> {
            // Only the peering this task was deleting.
            if super::get(txn, &target)?.is_some_and(|r| r.id == id) {
                super::drop_imported(txn, &target)?;
                txn.delete(Table::Peerings, &target)?;
            }
            Ok(())
        })
        .await?;
    peering.manager.forget(name);
    peering.metrics.forget_peer(name);
    tracing::info!(peer = %name, "peering deleted");
    Ok(())
}
