//! Process plumbing every isthmus binary shares (the agent and CLI, the
//! mesh gateway, the sidecar proxy): HTTP listeners with connection caps and
//! timeouts, logging and shutdown signals, each component's Prometheus
//! registry, and a small client for the agent's HTTP API.
//!
//! Wire types and pure logic live in `isthmus-api`; this crate is where
//! sockets, tasks and processes come in.
#![forbid(unsafe_code)]

pub mod client;
pub mod listen;
pub mod metrics;
pub mod process;
