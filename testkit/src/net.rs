//! Socket helpers for tests: an address nothing listens on, and a bounded
//! wait for the other side to close a connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::WAIT;

/// An address nothing listens on (any more).
pub async fn closed_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Waits until the other side closes `stream` (end of stream or an error;
/// data still arriving before that, such as echoes of what was sent, is
/// read and dropped), failing the test after [`WAIT`]; returns how long it
/// took.
pub async fn wait_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Duration {
    wait_closed_within(WAIT, stream).await
}

/// [`wait_closed`] with another bound.
pub async fn wait_closed_within<S: AsyncRead + Unpin>(bound: Duration, stream: &mut S) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection was not closed within {bound:?}"));
    started.elapsed()
}
