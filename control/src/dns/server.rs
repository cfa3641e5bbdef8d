//! The DNS listeners: one UDP socket and one TCP listener on the same
//! address and port, served by hickory-server with [`DnsHandler`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};

use super::handler::DnsHandler;

/// A TCP connection with no complete request for this long is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// With port 0, how often to retry when the free UDP port is taken on TCP.
const EPHEMERAL_ATTEMPTS: usize = 16;

/// A running DNS interface.
pub struct DnsServer {
    addr: SocketAddr,
    server: ServerFuture<DnsHandler>,
}

impl DnsServer {
    /// Binds UDP and TCP on `ip:port` (port 0: one free port for both).
    pub async fn bind(ip: IpAddr, port: u16, handler: DnsHandler) -> std::io::Result<DnsServer> {
        let (udp, tcp) = bind_pair(ip, port).await?;
        let addr = udp.local_addr()?;
        let mut server = ServerFuture::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT);
        Ok(DnsServer { addr, server })
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the listeners and waits for in-flight replies.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.server.shutdown_gracefully().await {
            tracing::debug!(%error, "dns: shutdown");
        }
    }
}

async fn bind_pair(ip: IpAddr, port: u16) -> std::io::Result<(UdpSocket, TcpListener)> {
    let attempts = if port == 0 { EPHEMERAL_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind((ip, port)).await?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // Port 0 gave a UDP port whose TCP twin is taken: try another.
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port")))
}
