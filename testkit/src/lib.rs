//! Test support shared by the tests of every isthmus package (a
//! dev-dependency only, never linked into a binary):
//!
//! - [`stub_agent`]: an in-process stand-in for the agent's HTTP API that a
//!   test configures with what the gateway or the proxy under test reads
//!   (views, leaf, upstreams) and that records registrations;
//! - [`pki`]: a throwaway CA issuing SPIFFE leaves, gateway certificates and
//!   expired or foreign variants;
//! - [`metrics`]: Prometheus text exposition parsing;
//! - [`admin`]: requests to a data-plane admin listener, waits on its metrics;
//! - [`body`]: request bodies a test can keep open and feed, responses read
//!   whole;
//! - [`net`]: an address nothing listens on, waiting for a peer to close;
//! - [`wait`]: bounded waits and polling instead of sleeps;
//! - [`process`]: built binaries run as child processes (ready line, logs,
//!   signals), killed on drop;
//! - [`apps`]: toy workloads (HTTP app, TCP echo) to put behind a proxy.
#![forbid(unsafe_code)]

pub mod admin;
pub mod apps;
pub mod body;
pub mod etcd;
pub mod metrics;
pub mod net;
pub mod pki;
pub mod process;
pub mod stub_agent;
pub mod wait;

pub use wait::WAIT;
