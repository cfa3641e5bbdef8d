//! The work one agent of the cluster does at a time, the leader's (with
//! the embedded store, the only agent's): the peering dialers and
//! replication streams, resuming peering deletions, probing the peers'
//! gateways, and renewing the mesh gateway certificate. An agent takes them on when it wins the election
//! and drops them (ending its streams, which the peers redial, through the
//! gateways, to the new leader) when it loses it.

use std::sync::Arc;

use tokio::sync::watch;

use crate::ca;
use crate::http::AgentState;
use crate::peering;
use crate::store::StoreError;

/// The leader's work while it leads; ends when the term does.
pub struct Term {
    over: watch::Sender<bool>,
}

/// Takes on the leader's work: resumes the peerings, probes the peers'
/// gateways and keeps the gateway certificate renewed until the term ends.
pub async fn take_office(state: &Arc<AgentState>) -> Term {
    tracing::info!("this agent leads: taking on the cluster's peering work");
    let (over, term) = watch::channel(false);
    if let Err(e) = resume_peerings(state).await {
        tracing::error!(error = %e, "resuming the peerings failed");
    }
    tokio::spawn(peering::gateway_probe::run(
        state.peering.clone(),
        term.clone(),
    ));
    tokio::spawn(ca::keep_gateway_renewed(
        state.store.clone(),
        state.ca.clone(),
        term,
    ));
    Term { over }
}

/// Follows the leadership until the agent shuts down: takes office on
/// winning it, leaves (ending this agent's peering streams) on losing it.
/// `current` is the term already begun at start-up, if any.
pub async fn run_duties(state: Arc<AgentState>, mut current: Option<Term>) {
    let mut shutdown = state.shutting_down.clone();
    let mut view = state.membership.subscribe();
    loop {
        let term = match current.take() {
            Some(term) => term,
            None => {
                tokio::select! {
                    led = view.wait_for(|v| v.leading) => {
                        if led.is_err() {
                            return;
                        }
                    }
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                take_office(&state).await
            }
        };
        let lost = tokio::select! {
            lost = view.wait_for(|v| !v.leading) => lost.is_ok(),
            _ = shutdown.wait_for(|s| *s) => false,
        };
        if !lost {
            // Shutting down, or a cluster of one (it leads for good): the
            // work stops with the agent.
            let _ = shutdown.wait_for(|s| *s).await;
            let _ = term.over.send(true);
            return;
        }
        tracing::warn!("this agent no longer leads: ending its peering streams");
        let _ = term.over.send(true);
        state.peering.manager.stop_all();
    }
}

/// After a restart no stream is up yet: active peerings are `FAILING` until
/// their stream returns, and this cluster redials the peers it dialed.
/// Deletions that were under way when the agent stopped are finished.
async fn resume_peerings(state: &Arc<AgentState>) -> Result<(), StoreError> {
    let records = state
        .store
        .write(|txn| -> Result<_, StoreError> {
            let mut records = Vec::new();
            for record in peering::list(txn)? {
                if record.state == isthmus_api::peering::STATE_ACTIVE {
                    peering::set_state(txn, &record.name, isthmus_api::peering::STATE_FAILING)?;
                }
                records.push(record);
            }
            Ok(records)
        })
        .await?;
    let deleting = records
        .iter()
        .filter(|r| r.state == isthmus_api::peering::STATE_DELETING)
        .map(|r| r.name.clone())
        .collect();
    peering::delete::resume(&state.peering, deleting);
    for record in records {
        let redial = record.role == peering::Role::Dialer
            && !matches!(
                record.state.as_str(),
                isthmus_api::peering::STATE_TERMINATED | isthmus_api::peering::STATE_DELETING
            );
        if redial {
            peering::dial::start_dialer(state.peering.clone(), record.name);
        }
    }
    Ok(())
}
