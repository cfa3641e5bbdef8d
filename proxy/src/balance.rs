//! Choosing an endpoint: the power of two choices on in-flight requests
//! (or connections, in TCP mode). Two distinct endpoints are drawn at
//! random and the less loaded wins; an endpoint that failed to connect in
//! the last second loses to one that did not. Lock-free: a few atomics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;

/// How long a connection failure counts against an endpoint.
const COOLDOWN: Duration = Duration::from_secs(1);

/// An endpoint's load and recent health.
#[derive(Debug, Default)]
pub(crate) struct Load {
    in_flight: AtomicUsize,
    /// Milliseconds since [`epoch`] of the last connection failure; 0 = none.
    failed_at: AtomicU64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    // +1 so that "now" is never the "no failure" marker.
    epoch().elapsed().as_millis() as u64 + 1
}

impl Load {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records a connection failure.
    pub(crate) fn failed(&self) {
        self.failed_at.store(now_ms(), Ordering::Relaxed);
    }

    fn cooling_down(&self, now: u64) -> bool {
        let at = self.failed_at.load(Ordering::Relaxed);
        at != 0 && now.saturating_sub(at) < COOLDOWN.as_millis() as u64
    }

    /// Lower is better.
    fn score(&self, now: u64) -> (bool, usize) {
        (self.cooling_down(now), self.in_flight())
    }
}

/// Counts one request (or connection) in flight on an endpoint until dropped.
#[derive(Debug)]
pub(crate) struct InFlight<T: AsRef<Load>>(Arc<T>);

impl<T: AsRef<Load>> InFlight<T> {
    pub(crate) fn new(endpoint: Arc<T>) -> InFlight<T> {
        (*endpoint)
            .as_ref()
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        InFlight(endpoint)
    }
}

impl<T: AsRef<Load>> Drop for InFlight<T> {
    fn drop(&mut self) {
        (*self.0).as_ref().in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index of the endpoint to use, never `exclude` (an endpoint that
/// just failed); `None` when there is no other.
pub(crate) fn pick<T: AsRef<Load>>(endpoints: &[Arc<T>], exclude: Option<usize>) -> Option<usize> {
    let excluded = exclude.filter(|e| *e < endpoints.len());
    let candidates = endpoints.len() - usize::from(excluded.is_some());
    // The k-th candidate, skipping the excluded index.
    let nth = |k: usize| match excluded {
        Some(e) if k >= e => k + 1,
        _ => k,
    };
    match candidates {
        0 => None,
        1 => Some(nth(0)),
        _ => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..candidates);
            let mut b = rng.random_range(0..candidates - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (nth(a), nth(b));
            let now = now_ms();
            if (*endpoints[b]).as_ref().score(now) < (*endpoints[a]).as_ref().score(now) {
                Some(b)
            } else {
                Some(a)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct E(Load);

    impl AsRef<Load> for E {
        fn as_ref(&self) -> &Load {
            &self.0
        }
    }

    #[test]
    fn trivial_cases() {
        let none: [Arc<E>; 0] = [];
        assert_eq!(pick(&none, None), None);
        let one = [Arc::new(E::default())];
        assert_eq!(pick(&one, None), Some(0));
        assert_eq!(pick(&one, Some(0)), None);
        let two = [Arc::new(E::default()), Arc::new(E::default())];
        assert_eq!(pick(&two, Some(0)), Some(1));
        assert_eq!(pick(&two, Some(1)), Some(0));
    }

    #[test]
    fn the_less_loaded_of_two_wins() {
        let endpoints: Vec<Arc<E>> = (0..2).map(|_| Arc::new(E::default())).collect();
        let _busy: Vec<_> = (0..3)
            .map(|_| InFlight::new(endpoints[0].clone()))
            .collect();
        for _ in 0..50 {
            assert_eq!(pick(&endpoints, None), Some(1));
        }
        assert_eq!(endpoints[0].0.in_flight(), 3);
        drop(_busy);
        assert_eq!(endpoints[0].0.in_flight(), 0);
    }

    #[test]
    fn failed_endpoints_lose_and_exclusion_holds() {
        let endpoints: Vec<Arc<E>> = (0..3).map(|_| Arc::new(E::default())).collect();
        endpoints[2].0.failed();
        for _ in 0..100 {
            let picked = pick(&endpoints, Some(0)).unwrap();
            assert_eq!(picked, 1, "a failed endpoint lost to a healthy one");
        }
        let mut seen = [false; 3];
        for _ in 0..200 {
            seen[pick(&endpoints[..2], None).unwrap()] = true;
        }
        assert!(seen[0] && seen[1], "both healthy endpoints get traffic");
    }
}
