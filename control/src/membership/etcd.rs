//! Membership and leadership through etcd.
//!
//! Each agent runs one session at a time: it takes a lease (its TTL is the
//! longest a dead agent still counts as alive), writes its member record
//! under the lease and its node record without one (so a node that died
//! shows as failed rather than vanishing), campaigns in etcd's election
//! with the same lease, and watches the cluster's membership keys. It
//! stops counting itself as leader once a third of the lease could have
//! run out unrenewed, before etcd could let anyone else win; a lost
//! session is replaced by a new one.
//!
//! Keys, under the cluster's prefix: `cluster/members/<node>` (leased),
//! `cluster/nodes/<node>`, and the election `cluster/leader`.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{ClusterView, Member, MemberStatus, Membership};
use crate::store::etcd::EtcdKeys;

/// How long a session waits before replacing a lost one.
const RETRY: Duration = Duration::from_millis(500);
/// How long a graceful leave may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the session to give up its lease (and, for a leave, the node).
#[derive(Clone)]
pub struct LeaveHandle {
    tx: mpsc::Sender<(bool, oneshot::Sender<()>)>,
}

impl LeaveHandle {
    pub(super) async fn release(&self, forget: bool) {
        let (done, wait) = oneshot::channel();
        if self.tx.send((forget, done)).await.is_ok() {
            let _ = tokio::time::timeout(LEAVE_TIMEOUT, wait).await;
        }
    }
}

/// Waits until no live agent holds `node`'s member record: a restart after
/// a crash finds its own old record until the lease runs out (`ttl`); a
/// record still live after that belongs to another agent running under the
/// same node name, and starting would mix two agents' services and checks.
pub async fn claim_node_name(
    mut client: Client,
    prefix: String,
    node: String,
    ttl: Duration,
) -> Result<(), String> {
    let key = format!("{prefix}/cluster/members/{node}");
    let deadline = Instant::now() + ttl + Duration::from_secs(1);
    let mut said = false;
    loop {
        let held = client
            .get(key.clone(), None)
            .await
            .map_err(|e| format!("etcd: reading the member record of {node:?}: {e}"))?;
        if held.kvs().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "another agent is running as node {node:?} (its member record in etcd stayed live for longer than --member-ttl); give this one another --node-name"
            ));
        }
        if !said {
            tracing::info!(node = %node, ttl = ?ttl, "a live member record holds this node name; waiting for it to expire (a restart after a crash) or refusing to start");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts this agent's membership session on `runtime` (the etcd client's).
pub fn start(
    client: Client,
    runtime: &tokio::runtime::Handle,
    prefix: &str,
    this: Member,
    ttl: Duration,
) -> Membership {
    let (view_tx, view) = watch::channel(ClusterView::default());
    let (leave_tx, leave_rx) = mpsc::channel(1);
    let session = Session {
        client,
        root: format!("{prefix}/cluster/"),
        election: format!("{prefix}/cluster/leader"),
        this,
        ttl,
        view: view_tx,
    };
    runtime.spawn(session.run(leave_rx));
    Membership {
        view,
        leave: Some(LeaveHandle { tx: leave_tx }),
    }
}

struct Session {
    client: Client,
    /// `<prefix>/cluster/`.
    root: String,
    election: String,
    this: Member,
    ttl: Duration,
    view: watch::Sender<ClusterView>,
}

enum Ended {
    Left,
    Lost(String),
}

/// What the membership keys hold, as last read or watched.
#[derive(Default)]
struct Keys {
    members: BTreeMap<String, Member>,
    nodes: BTreeMap<String, Member>,
    /// Election candidates by key: (create revision, member).
    candidates: BTreeMap<String, (i64, Member)>,
}

impl Keys {
    fn apply(&mut self, root: &str, key: &str, value: Option<(&[u8], i64)>) {
        let Some(rest) = key.strip_prefix(root) else {
            return;
        };
        let parsed = value.and_then(|(bytes, created)| {
            serde_json::from_slice::<Member>(bytes)
                .ok()
                .map(|m| (m, created))
        });
        let (map_name, name) = rest.split_once('/').unwrap_or((rest, ""));
        match (map_name, parsed) {
            ("members", Some((m, _))) => {
                self.members.insert(name.to_owned(), m);
            }
            ("members", None) => {
                self.members.remove(name);
            }
            ("nodes", Some((m, _))) => {
                self.nodes.insert(name.to_owned(), m);
            }
            ("nodes", None) => {
                self.nodes.remove(name);
            }
            ("leader", Some((m, created))) => {
                self.candidates.insert(key.to_owned(), (created, m));
            }
            ("leader", None) => {
                self.candidates.remove(key);
            }
            _ => {}
        }
    }

    fn view(&self, leading: bool) -> ClusterView {
        let mut members = BTreeMap::new();
        for (name, member) in &self.nodes {
            members.insert(name.clone(), (member.clone(), MemberStatus::Failed));
        }
        for (name, member) in &self.members {
            members.insert(name.clone(), (member.clone(), MemberStatus::Alive));
        }
        // etcd's election: the oldest candidate leads.
        let leader = self
            .candidates
            .values()
            .min_by_key(|(created, _)| *created)
            .map(|(_, m)| m.clone());
        ClusterView {
            members,
            leader,
            leading,
        }
    }
}

impl Session {
    async fn run(mut self, mut leave: mpsc::Receiver<(bool, oneshot::Sender<()>)>) {
        loop {
            match self.session(&mut leave).await {
                Ended::Left => return,
                Ended::Lost(reason) => {
                    self.view.send_modify(|v| v.leading = false);
                    tracing::warn!(%reason, node = %self.this.name, "the cluster membership session was lost; starting a new one");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn session(&mut self, leave: &mut mpsc::Receiver<(bool, oneshot::Sender<()>)>) -> Ended {
        let ttl_secs = self.ttl.as_secs().max(1) as i64;
        let lease = match self.client.lease_grant(ttl_secs, None).await {
            Ok(lease) => lease.id(),
            Err(e) => return Ended::Lost(format!("taking a lease: {e}")),
        };
        let ended = self.with_lease(lease, leave).await;
        if let Ended::Lost(_) = ended {
            // Best effort: the old lease's keys go now, not at expiry.
            let _ = tokio::time::timeout(RETRY, self.client.lease_revoke(lease)).await;
        }
        ended
    }

    async fn with_lease(
        &mut self,
        lease: i64,
        leave: &mut mpsc::Receiver<(bool, oneshot::Sender<()>)>,
    ) -> Ended {
        let record = serde_json::to_vec(&self.this).expect("a member serializes");
        let member_key = format!("{}members/{}", self.root, self.this.name);
        let node_key = format!("{}nodes/{}", self.root, self.this.name);
        let register = Txn::new().and_then(vec![
            TxnOp::put(node_key.clone(), record.clone(), None),
            TxnOp::put(
                member_key,
                record.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
        ]);
        if let Err(e) = self.client.txn(register).await {
            return Ended::Lost(format!("writing the member record: {e}"));
        }
        let (mut keeper, mut acks) = match self.client.lease_keep_alive(lease).await {
            Ok(pair) => pair,
            Err(e) => return Ended::Lost(format!("keeping the lease alive: {e}")),
        };
        let (mut keys, revision) = match self.read_keys().await {
            Ok(read) => read,
            Err(e) => return Ended::Lost(e),
        };
        let mut leading = false;
        self.view.send_replace(keys.view(leading));
        tracing::info!(node = %self.this.name, lease = format!("{lease:x}"), "joined the cluster");

        let options = WatchOptions::new()
            .with_range(EtcdKeys::range_end(&self.root))
            .with_start_revision(revision + 1);
        let mut changes = match self.client.watch(self.root.clone(), Some(options)).await {
            Ok(stream) => stream,
            Err(e) => return Ended::Lost(format!("watching the members: {e}")),
        };
        let mut election = self.client.election_client();
        let campaign = election.campaign(self.election.clone(), record, lease);
        tokio::pin!(campaign);
        let mut campaigning = true;
        let mut renew = tokio::time::interval(self.ttl / 3);
        let mut last_ack = Instant::now();
        // Past this without a renewal, etcd may already have let the lease
        // go and another agent lead.
        let safe = self.ttl * 2 / 3;
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    if last_ack.elapsed() > safe {
                        return Ended::Lost("the lease went unrenewed".into());
                    }
                    if let Err(e) = keeper.keep_alive().await {
                        return Ended::Lost(format!("renewing the lease: {e}"));
                    }
                }
                ack = acks.message() => match ack {
                    Ok(Some(ack)) if ack.ttl() > 0 => last_ack = Instant::now(),
                    Ok(Some(_)) => return Ended::Lost("the lease expired".into()),
                    Ok(None) => return Ended::Lost("the lease renewal stream closed".into()),
                    Err(e) => return Ended::Lost(format!("renewing the lease: {e}")),
                },
                won = &mut campaign, if campaigning => {
                    campaigning = false;
                    match won {
                        Ok(_) => {
                            leading = true;
                            tracing::info!(node = %self.this.name, "this agent leads the cluster");
                            self.view.send_replace(keys.view(leading));
                        }
                        Err(e) => return Ended::Lost(format!("campaigning: {e}")),
                    }
                }
                change = changes.message() => match change {
                    Ok(Some(change)) => {
                        if change.canceled() || change.compact_revision() > 0 {
                            return Ended::Lost("the members watch was canceled".into());
                        }
                        for event in change.events() {
                            let Some(kv) = event.kv() else { continue };
                            let Ok(key) = kv.key_str() else { continue };
                            let value = (event.event_type() == EventType::Put)
                                .then(|| (kv.value(), kv.create_revision()));
                            keys.apply(&self.root, key, value);
                        }
                        let view = keys.view(leading);
                        self.view.send_if_modified(|current| {
                            let changed = *current != view;
                            *current = view;
                            changed
                        });
                    }
                    Ok(None) => return Ended::Lost("the members watch closed".into()),
                    Err(e) => return Ended::Lost(format!("watching the members: {e}")),
                },
                request = leave.recv() => {
                    self.view.send_modify(|v| v.leading = false);
                    let forget = request.as_ref().is_some_and(|(forget, _)| *forget);
                    let _ = self.client.lease_revoke(lease).await;
                    if forget {
                        let _ = self.client.delete(node_key.clone(), None).await;
                    }
                    tracing::info!(node = %self.this.name, forget, "left the cluster");
                    if let Some((_, done)) = request {
                        let _ = done.send(());
                    }
                    return Ended::Left;
                }
            }
        }
    }

    /// Every membership key, and the revision they were read at.
    async fn read_keys(&mut self) -> Result<(Keys, i64), String> {
        let options = GetOptions::new().with_range(EtcdKeys::range_end(&self.root));
        let response = self
            .client
            .get(self.root.clone(), Some(options))
            .await
            .map_err(|e| format!("reading the members: {e}"))?;
        let revision = response.header().map(|h| h.revision()).unwrap_or_default();
        let mut keys = Keys::default();
        for kv in response.kvs() {
            if let Ok(key) = kv.key_str() {
                keys.apply(&self.root, key, Some((kv.value(), kv.create_revision())));
            }
        }
        Ok((keys, revision))
    }
}
