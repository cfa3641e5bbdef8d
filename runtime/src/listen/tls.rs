//! The TLS handshake of an HTTPS listener, bounded in time: a client that
//! connects and never completes its handshake (or never sends a
//! ClientHello) is dropped and counted, so it cannot hold a connection's
//! place under the cap for longer than the handshake timeout.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{ListenerCounters, Timeout};

/// An upgrade for [`super::serve_upgraded`]: the server side of a TLS
/// handshake on `tcp`, given up after `timeout`. A failed handshake (bad
/// client certificate, plain HTTP on the TLS port) is logged at debug.
pub fn tls_handshake(
    acceptor: TlsAcceptor,
    timeout: Duration,
    counters: ListenerCounters,
) -> impl Fn(TcpStream) -> std::pin::Pin<Box<dyn Future<Output = Option<TlsStream<TcpStream>>> + Send>>
       + Clone {
    move |tcp| {
        let acceptor = acceptor.clone();
        let counters = counters.clone();
        Box::pin(async move {
            let peer = tcp.peer_addr().ok();
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::debug!(client = ?peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    counters.timed_out(Timeout::TlsHandshake);
                    None
                }
            }
        })
    }
}
