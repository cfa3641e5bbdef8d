//! Who the cluster's agents are, which are alive, and which one leads.
//!
//! With the embedded store an agent is its cluster's only member and its
//! leader. With etcd ([`etcd`]) every agent holds a lease for its node and
//! keeps its member record under it, so a dead agent's record disappears
//! when the lease expires; one agent at a time wins etcd's election and
//! runs the work that must happen once per cluster.

pub mod etcd;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One agent as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name.
    pub name: String,
    /// The node's node ID (a UUID).
    pub id: String,
    /// The address the node is reachable at (its advertise address).
    pub addr: String,
    /// Where its HTTP API listens (`ip:port`).
    pub api: String,
    pub datacenter: String,
    pub build: String,
}

/// A member's state, numbered as Consul's (Serf's) member status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Alive = 1,
    Left = 3,
    Failed = 4,
}

impl MemberStatus {
    pub fn name(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

/// The cluster as this agent last saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// Every known agent by node name.
    pub members: BTreeMap<String, (Member, MemberStatus)>,
    /// The agent that currently leads, if one does.
    pub leader: Option<Member>,
    /// Whether this agent holds the leadership (its lease is live and it
    /// won the election).
    pub leading: bool,
}

/// A live view of the cluster's members and leader.
#[derive(Clone)]
pub struct Membership {
    view: watch::Receiver<ClusterView>,
    leave: Option<etcd::LeaveHandle>,
}

impl Membership {
    /// An agent that is its cluster's only member (embedded store).
    pub fn single(this: Member) -> Membership {
        let mut members = BTreeMap::new();
        members.insert(this.name.clone(), (this.clone(), MemberStatus::Alive));
        let (_tx, view) = watch::channel(ClusterView {
            members,
            leader: Some(this),
            leading: true,
        });
        // The sender may go: the view never changes.
        Membership { view, leave: None }
    }

    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.view.borrow().leading
    }

    /// Changes whenever the members or the leader change.
    pub fn subscribe(&self) -> watch::Receiver<ClusterView> {
        self.view.clone()
    }

    /// Waits until this agent leads (immediately with the embedded store).
    pub async fn wait_until_leading(&self) {
        let mut view = self.view.clone();
        let _ = view.wait_for(|v| v.leading).await;
    }

    /// Gives up this agent's lease at once (its record and any leadership
    /// go now rather than at the lease's expiry); `forget` also removes its
    /// node from the cluster's list (a graceful leave). Bounded.
    pub async fn release(&self, forget: bool) {
        if let Some(leave) = &self.leave {
            leave.release(forget).await;
        }
    }
}
