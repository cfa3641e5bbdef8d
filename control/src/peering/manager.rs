//! Live peering state that is not worth persisting: which stream session is
//! current for each peer, when we last heard from and wrote to it, and the
//! dialer tasks that keep this cluster's outgoing streams up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

/// Asks a running session to do something.
#[derive(Debug)]
pub enum Control {
    /// Tell the peer we deleted the peering, then end; acknowledged once the
    /// message is handed to the transport.
    Terminate(oneshot::Sender<()>),
    /// A newer session for the same peer took over.
    Replaced,
}

#[derive(Debug, Default, Clone, Copy)]
struct Times {
    heartbeat: Option<OffsetDateTime>,
    receive: Option<OffsetDateTime>,
    send: Option<OffsetDateTime>,
}

/// `StreamStatus` times as the API shows them.
#[derive(Debug, Default, Clone)]
pub struct LiveStatus {
    pub last_heartbeat: Option<String>,
    pub last_receive: Option<String>,
    pub last_send: Option<String>,
}

struct Session {
    id: u64,
    control: mpsc::Sender<Control>,
}

pub struct PeeringManager {
    /// How often each side sends a heartbeat; a stream silent for three of
    /// these is considered dead.
    pub heartbeat: Duration,
    /// How long a generated token's secret stays valid.
    pub token_ttl: Duration,
    times: Mutex<HashMap<String, Times>>,
    sessions: Mutex<HashMap<String, Session>>,
    dialers: Mutex<HashMap<String, AbortHandle>>,
    /// The deletion running for each peer; turns true once it finished.
    deletions: Mutex<HashMap<String, watch::Receiver<bool>>>,
    next_session: AtomicU64,
}

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.and_then(|t| t.format(&Rfc3339).ok())
}

impl PeeringManager {
    pub fn new(heartbeat: Duration, token_ttl: Duration) -> PeeringManager {
        PeeringManager {
            heartbeat,
            token_ttl,
            times: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            dialers: Mutex::new(HashMap::new()),
            deletions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        }
    }

    pub fn status(&self, peer: &str) -> LiveStatus {
        let times = self.times.lock().expect("peering times lock poisoned");
        let t = times.get(peer).copied().unwrap_or_default();
        LiveStatus {
            last_heartbeat: rfc3339(t.heartbeat),
            last_receive: rfc3339(t.receive),
            last_send: rfc3339(t.send),
        }
    }

    /// When the last heartbeat from `peer` arrived (this agent's lifetime only).
    pub fn last_heartbeat(&self, peer: &str) -> Option<OffsetDateTime> {
        self.times
            .lock()
            .expect("peering times lock poisoned")
            .get(peer)
            .and_then(|t| t.heartbeat)
    }

    pub fn received(&self, peer: &str, heartbeat: bool) {
        let now = OffsetDateTime::now_utc();
        let mut times = self.times.lock().expect("peering times lock poisoned");
        let t = times.entry(peer.to_owned()).or_default();
        t.receive = Some(now);
        if heartbeat {
            t.heartbeat = Some(now);
        }
    }

    pub fn sent(&self, peer: &str) {
        let now = OffsetDateTime::now_utc();
        let mut times = self.times.lock().expect("peering times lock poisoned");
        times.entry(peer.to_owned()).or_default().send = Some(now);
    }

    /// Registers a new session for `peer`, replacing (and ending) any older one.
    pub fn open_session(&self, peer: &str) -> (u64, mpsc::Receiver<Control>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (control, receiver) = mpsc::channel(4);
        let previous = self
            .sessions
            .lock()
            .expect("peering sessions lock poisoned")
            .insert(peer.to_owned(), Session { id, control });
        if let Some(previous) = previous {
            let _ = previous.control.try_send(Control::Replaced);
        }
        (id, receiver)
    }

    /// Unregisters session `id` if it is still the current one for `peer`.
    pub fn close_session(&self, peer: &str, id: u64) -> bool {
        let mut sessions = self
            .sessions
            .lock()
            .expect("peering sessions lock poisoned");
        if sessions.get(peer).is_some_and(|s| s.id == id) {
            sessions.remove(peer);
            true
        } else {
            false
        }
    }

    pub fn has_session(&self, peer: &str) -> bool {
        self.sessions
            .lock()
            .expect("peering sessions lock poisoned")
            .contains_key(peer)
    }

    /// Sends Terminate over the live session, if any; true once handed over.
    pub async fn terminate_session(&self, peer: &str, within: Duration) -> bool {
        let control = self
            .sessions
            .lock()
            .expect("peering sessions lock poisoned")
            .get(peer)
            .map(|s| s.control.clone());
        let Some(control) = control else {
            return false;
        };
        let (ack, acked) = oneshot::channel();
        if control.send(Control::Terminate(ack)).await.is_err() {
            return false;
        }
        tokio::time::timeout(within, acked)
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Records the task dialing `peer`, aborting an older one.
    pub fn set_dialer(&self, peer: &str, task: AbortHandle) {
        let previous = self
            .dialers
            .lock()
            .expect("peering dialers lock poisoned")
            .insert(peer.to_owned(), task);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    pub fn stop_dialer(&self, peer: &str) {
        if let Some(task) = self
            .dialers
            .lock()
            .expect("peering dialers lock poisoned")
            .remove(peer)
        {
            task.abort();
        }
    }

    /// The deletion of `peer`: the running one's completion, or a new one's
    /// with the sender the caller must finish it with
    /// ([`PeeringManager::deletion_finished`]).
    pub fn deletion(&self, peer: &str) -> (watch::Receiver<bool>, Option<watch::Sender<bool>>) {
        let mut deletions = self
            .deletions
            .lock()
            .expect("peering deletions lock poisoned");
        if let Some(running) = deletions.get(peer) {
            return (running.clone(), None);
        }
        let (finished, done) = watch::channel(false);
        deletions.insert(peer.to_owned(), done.clone());
        (done, Some(finished))
    }

    /// Ends the running deletion of `peer`, waking whoever waits for it.
    pub fn deletion_finished(&self, peer: &str, finished: watch::Sender<bool>) {
        self.deletions
            .lock()
            .expect("peering deletions lock poisoned")
            .remove(peer);
        finished.send_replace(true);
    }

    /// Forgets everything about `peer` (after delete).
    pub fn forget(&self, peer: &str) {
        self.stop_dialer(peer);
        self.times
            .lock()
            .expect("peering times lock poisoned")
            .remove(peer);
        if let Some(session) = self
            .sessions
            .lock()
            .expect("peering sessions lock poisoned")
            .remove(peer)
        {
            let _ = session.control.try_send(Control::Replaced);
        }
    }

    pub fn stop_all(&self) {
        for (_, task) in self
            .dialers
            .lock()
            .expect("peering dialers lock poisoned")
            .drain()
        {
            task.abort();
        }
        for (_, session) in self
            .sessions
            .lock()
            .expect("peering sessions lock poisoned")
            .drain()
        {
            let _ = session.control.try_send(Control::Replaced);
        }
    }
}
