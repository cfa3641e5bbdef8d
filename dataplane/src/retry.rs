//! Capped exponential backoff with jitter, and a warn-once log policy so a
//! long outage of the agent produces a few lines rather than one per retry.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Delays growing from `base` to `max`, each drawn uniformly from the upper
/// half of the current step so that many clients do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            step: base,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.step = self.base;
    }
}

/// Decides whether a failure is worth a warning: the first of a run, a
/// different error, or one after `every` of silence. Everything else goes
/// to debug.
#[derive(Debug)]
pub struct FailureLog {
    every: Duration,
    last: Option<(Instant, String)>,
    failures: u64,
}

impl FailureLog {
    pub fn new(every: Duration) -> FailureLog {
        FailureLog {
            every,
            last: None,
            failures: 0,
        }
    }

    /// Records a failure; true if it should be logged at warn.
    pub fn failed(&mut self, message: &str) -> bool {
        self.failures += 1;
        let now = Instant::now();
        let warn = match &self.last {
            None => true,
            Some((at, previous)) => previous != message || now.duration_since(*at) >= self.every,
        };
        if warn {
            self.last = Some((now, message.to_owned()));
        }
        warn
    }

    /// Records a success; returns how many failures preceded it.
    pub fn recovered(&mut self) -> u64 {
        self.last = None;
        std::mem::take(&mut self.failures)
    }
}

/// An error with its causes (`a: b: c`), skipping causes whose text the
/// message already contains (many errors print their source themselves).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        for d in &delays[4..] {
            assert!(
                *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn error_chains_name_the_root_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot reach the agent: {0}")]
        struct Outer(#[source] Middle);
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Middle(#[source] std::io::Error);
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(
            error_chain(&Outer(Middle(refused))),
            "cannot reach the agent: client error (Connect): Connection refused"
        );
    }

    #[test]
    fn repeated_failures_warn_once() {
        let mut log = FailureLog::new(Duration::from_secs(60));
        assert!(log.failed("refused"));
        assert!(!log.failed("refused"));
        assert!(log.failed("timed out"));
        assert_eq!(log.recovered(), 3);
        assert!(log.failed("timed out"));
    }
}
