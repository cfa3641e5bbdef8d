//! The shutdown flag every long-running task of a role watches, and the
//! signals that ask a role's process to shut down.

use tokio::sync::watch;

/// Resolves once `flag` is set (or its sender is gone). Holds no borrow
/// of the channel's value after it resolves.
pub async fn stopped(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), logging which.
pub async fn terminated() {
    let signal = isthmus_runtime::process::shutdown_signal().await;
    tracing::info!(signal, "shutting down");
}
