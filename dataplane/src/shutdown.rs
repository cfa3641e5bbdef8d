//! The shutdown flag every long-running task of a role watches.

use tokio::sync::watch;

/// Resolves once `flag` is set (or its sender is gone). Holds no borrow
/// of the channel's value after it resolves.
pub async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}
