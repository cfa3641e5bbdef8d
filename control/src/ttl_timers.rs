//! The countdowns of TTL checks: one task and one timer wheel for all of
//! them, instead of a task per check, so 100,000 TTL checks cost a few
//! hundred bytes each.
//!
//! A countdown starts when the check starts and restarts on every update
//! from its owner; when it runs out, `expired` is called once with the
//! check's ID and TTL (the check then waits, critical, for its next update).

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::time::delay_queue::{DelayQueue, Key};

enum Command {
    Arm { check_id: String, ttl: Duration },
    Refresh(String),
    Disarm(String),
}

/// Handle to the countdowns; the task ends when the handle is dropped.
pub struct TtlTimers {
    commands: mpsc::UnboundedSender<Command>,
}

impl TtlTimers {
    /// Starts the task (on the current runtime).
    pub fn start(expired: impl Fn(String, Duration) + Send + 'static) -> TtlTimers {
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(receiver, expired));
        TtlTimers { commands }
    }

    /// Starts (or restarts, with a new TTL) the countdown of `check_id`.
    pub fn arm(&self, check_id: &str, ttl: Duration) {
        let _ = self.commands.send(Command::Arm {
            check_id: check_id.to_owned(),
            ttl,
        });
    }

    /// Restarts the countdown of an armed check (also after it ran out).
    pub fn refresh(&self, check_id: &str) {
        let _ = self.commands.send(Command::Refresh(check_id.to_owned()));
    }

    /// Forgets the check.
    pub fn disarm(&self, check_id: &str) {
        let _ = self.commands.send(Command::Disarm(check_id.to_owned()));
    }
}

struct Armed {
    ttl: Duration,
    /// `None` once it ran out (until the next refresh).
    key: Option<Key>,
}

async fn run(
    mut commands: mpsc::UnboundedReceiver<Command>,
    expired: impl Fn(String, Duration) + Send + 'static,
) {
    let mut queue: DelayQueue<String> = DelayQueue::new();
    let mut armed: HashMap<String, Armed> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Arm { check_id, ttl }) => {
                    if let Some(Armed { key: Some(key), .. }) = armed.remove(&check_id) {
                        queue.remove(&key);
                    }
                    let key = queue.insert(check_id.clone(), ttl);
                    armed.insert(check_id, Armed { ttl, key: Some(key) });
                }
                Some(Command::Refresh(check_id)) => {
                    if let Some(entry) = armed.get_mut(&check_id) {
                        match &entry.key {
                            Some(key) => queue.reset(key, entry.ttl),
                            None => entry.key = Some(queue.insert(check_id, entry.ttl)),
                        }
                    }
                }
                Some(Command::Disarm(check_id)) => {
                    if let Some(Armed { key: Some(key), .. }) = armed.remove(&check_id) {
                        queue.remove(&key);
                    }
                }
            },
            Some(ran_out) = queue.next() => {
                let check_id = ran_out.into_inner();
                if let Some(entry) = armed.get_mut(&check_id) {
                    entry.key = None;
                    expired(check_id, entry.ttl);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_countdown_runs_out_once_and_restarts_on_refresh() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let timers = TtlTimers::start(move |id, ttl| {
            let _ = tx.send((id, ttl));
        });
        timers.arm("a", Duration::from_secs(10));
        timers.arm("b", Duration::from_secs(30));
        // Refreshed before it runs out: a stays quiet past its first TTL.
        tokio::time::sleep(Duration::from_secs(8)).await;
        timers.refresh("a");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(rx.try_recv().is_err());
        let (id, ttl) = rx.recv().await.unwrap();
        assert_eq!((id.as_str(), ttl), ("a", Duration::from_secs(10)));
        // Ran out: nothing more until refreshed; b runs out on its own.
        let (id, _) = rx.recv().await.unwrap();
        assert_eq!(id, "b");
        timers.refresh("a");
        timers.disarm("b");
        timers.refresh("b");
        let (id, _) = rx.recv().await.unwrap();
        assert_eq!(id, "a");
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(rx.try_recv().is_err());
    }
}
