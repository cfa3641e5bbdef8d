//! The seam through which `agent --dev` runs a mesh gateway in its own
//! process, so one command gives a cluster that can peer.
//!
//! The control plane library does not depend on the gateway: the `isthmus`
//! binary crate composes the two and hands [`cli::main`](super::main) a
//! [`DevGatewayStarter`]. Without one, `--dev` runs no gateway.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// Where the in-process gateway listens and which agent it serves.
#[derive(Debug, Clone)]
pub struct DevGatewaySettings {
    /// The peering listener (`--gateway-bind`).
    pub bind: SocketAddr,
    /// The admin listener (`--gateway-admin-bind`).
    pub admin_bind: SocketAddr,
    /// The address put into peering tokens (`--gateway-advertise`).
    pub advertise: Option<String>,
    /// The agent's HTTP API, `http://host:port`.
    pub agent_url: String,
    /// With ACLs on: a token the agent minted for it (the `mesh-gateway`
    /// service identity, nothing more).
    pub token: Option<String>,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A running in-process gateway, as the agent command needs to see it.
pub trait DevGateway: Send {
    /// Its catalog service ID (hidden from the dev agent's local services).
    fn service_id(&self) -> &str;
    /// The address peers dial, as advertised in peering tokens.
    fn advertise_addr(&self) -> String;
    /// Its admin listener.
    fn admin_addr(&self) -> SocketAddr;
    /// Drains and stops it.
    fn shutdown(self: Box<Self>) -> BoxFuture<Result<(), String>>;
}

/// Starts a gateway for a dev agent; the error says what failed.
pub type DevGatewayStarter =
    fn(DevGatewaySettings) -> BoxFuture<Result<Box<dyn DevGateway>, String>>;
