//! Bounded waits: every wait in a test ends, with a message saying what
//! did not happen, instead of hanging the suite or sleeping a guessed time.

use std::future::Future;
use std::time::Duration;

/// How long an in-process test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often [`eventually_within`] asks again.
const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it returns `Some`, failing the test with
/// "timed out waiting for `what`" once `bound` has passed.
pub async fn eventually_within<T, F, Fut>(bound: Duration, what: &str, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// [`eventually_within`] bounded by [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(WAIT, what, condition).await
}
