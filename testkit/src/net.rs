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

/// A loopback TCP relay to `target` that a test can cut (every relayed
/// connection closed, new ones refused) and restore, as a network
/// partition between one process and another would.
pub struct TcpRelay {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl TcpRelay {
    pub async fn start(target: SocketAddr) -> TcpRelay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *cut_rx.borrow() {
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        TcpRelay { addr, cut }
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}
