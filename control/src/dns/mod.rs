//! The agent's DNS interface, Consul's: `<service>.service.consul` and the
//! other names of [`isthmus_api::dns_name`], answered over UDP and TCP from
//! the agent's in-memory state.
//!
//! - [`config`] holds the settings (port, domain, TTLs, answer caps);
//! - [`lookup`] finds what a name means in one store snapshot;
//! - [`records`] writes the records of the reply;
//! - [`sizing`] applies the answer caps and the UDP size limit (TC bit);
//! - [`handler`] takes one request from question to reply;
//! - [`metrics`] counts questions (`isthmus_dns_queries_total`);
//! - [`server`] runs the UDP and TCP listeners.
//!
//! Names outside the domain are refused (the agent has no recursors).

pub mod config;
pub mod handler;
pub mod lookup;
pub mod metrics;
pub mod records;
pub mod server;
pub mod sizing;

pub use config::DnsConfig;
pub use handler::DnsHandler;
pub use metrics::DnsMetrics;
pub use server::DnsServer;
