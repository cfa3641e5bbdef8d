//! The mesh's shared vocabulary.
//!
//! Everything the control plane, the sidecar proxy and the mesh gateway must
//! agree on lives here: the JSON shapes of the Consul-compatible HTTP API,
//! config entries and their validation, intention evaluation, SPIFFE and SNI
//! naming, and certificate helpers. No sockets, tasks or processes (those are
//! `isthmus-runtime`). The proxy and the gateway
//! depend on this crate, never on the control plane's internals.
#![forbid(unsafe_code)]

pub mod acl;
pub mod auth;
pub mod ca;
pub mod catalog;
pub mod catalog_register;
pub mod config_entry;
pub mod connect_intention;
pub mod consul_json;
pub mod dns_name;
pub mod duration;
pub mod filter;
pub mod gateway;
pub mod http_path;
pub mod intentions;
pub mod naming;
pub mod peering;
pub mod peering_framing;
pub mod peering_gateways;
pub mod peering_limits;
pub mod promql;
pub mod proxy;
pub mod tls;
pub mod topology;
