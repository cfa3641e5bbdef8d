//! What a role's `/ready` reports: ready once each of the role's
//! prerequisites is met (say, the first view loaded) and its registration
//! in the catalog succeeded, until it starts shutting down.
//!
//! The state lives in a `watch` channel so that a caller can also *wait*
//! for readiness ([`Readiness::wait_ready`]) instead of polling `/ready`.

use tokio::sync::watch;

/// One thing a role needs before it serves, and what `/ready` says while
/// it is missing. `bit` tells a role's prerequisites apart (0 to 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prerequisite {
    bit: u8,
    missing: &'static str,
}

impl Prerequisite {
    pub const fn new(bit: u8, missing: &'static str) -> Prerequisite {
        assert!(bit < 32, "a role has at most 32 prerequisites");
        Prerequisite { bit, missing }
    }

    fn mask(self) -> u32 {
        1 << self.bit
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ReadyState {
    met: u32,
    registered: bool,
    draining: bool,
    /// The role has stopped: nobody waiting should wait on.
    stopped: bool,
}

/// Ready once every prerequisite is met and the registration succeeded,
/// until draining starts.
#[derive(Debug)]
pub struct Readiness {
    state: watch::Sender<ReadyState>,
    prerequisites: &'static [Prerequisite],
    /// What `/ready` says once draining started (`draining: the … is shutting down`).
    shutting_down: &'static str,
}

/// [`Readiness::wait_ready`] gave up: the role stopped before it was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped before it was ready")]
pub struct StoppedBeforeReady;

impl Readiness {
    /// `prerequisites` are checked in order; the first missing one is what
    /// `/ready` reports.
    pub fn new(shutting_down: &'static str, prerequisites: &'static [Prerequisite]) -> Readiness {
        Readiness {
            state: watch::channel(ReadyState::default()).0,
            prerequisites,
            shutting_down,
        }
    }

    fn update(&self, change: impl FnOnce(&mut ReadyState)) {
        self.state.send_if_modified(|state| {
            let before = *state;
            change(state);
            *state != before
        });
    }

    pub fn set_met(&self, prerequisite: Prerequisite) {
        self.update(|s| s.met |= prerequisite.mask());
    }

    pub fn set_registered(&self, registered: bool) {
        self.update(|s| s.registered = registered);
    }

    pub fn set_draining(&self) {
        self.update(|s| s.draining = true);
    }

    pub fn set_stopped(&self) {
        self.update(|s| s.stopped = true);
    }

    /// `Ok` when ready, else what is missing.
    pub fn check(&self) -> Result<(), &'static str> {
        self.evaluate(&self.state.borrow())
    }

    fn evaluate(&self, state: &ReadyState) -> Result<(), &'static str> {
        if state.draining || state.stopped {
            return Err(self.shutting_down);
        }
        if let Some(missing) = self
            .prerequisites
            .iter()
            .find(|p| state.met & p.mask() == 0)
        {
            return Err(missing.missing);
        }
        if !state.registered {
            return Err("not registered in the catalog yet");
        }
        Ok(())
    }

    /// Resolves once ready, or fails once the role stopped first.
    pub async fn wait_ready(&self) -> Result<(), StoppedBeforeReady> {
        let mut state = self.state.subscribe();
        let state = state
            .wait_for(|s| self.evaluate(s).is_ok() || s.stopped)
            .await
            .map_err(|_| StoppedBeforeReady)?;
        if state.stopped {
            Err(StoppedBeforeReady)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Prerequisite = Prerequisite::new(0, "waiting for the first");
    const SECOND: Prerequisite = Prerequisite::new(1, "waiting for the second");

    #[tokio::test]
    async fn ready_needs_every_prerequisite_in_order_and_the_registration() {
        let r = Readiness::new("draining: shutting down", &[FIRST, SECOND]);
        assert_eq!(r.check(), Err("waiting for the first"));
        r.set_met(SECOND);
        assert_eq!(r.check(), Err("waiting for the first"));
        r.set_met(FIRST);
        assert_eq!(r.check(), Err("not registered in the catalog yet"));
        r.set_registered(true);
        assert_eq!(r.check(), Ok(()));
        assert_eq!(r.wait_ready().await, Ok(()));
        r.set_draining();
        assert_eq!(r.check(), Err("draining: shutting down"));
        r.set_stopped();
        assert_eq!(r.wait_ready().await, Err(StoppedBeforeReady));
    }
}
