//! The isthmus control plane: agent, HTTP API, store, CA and the CLI.
#![forbid(unsafe_code)]

pub mod acl;
pub mod acl_filter;
pub mod agent;
pub mod agent_checks;
pub mod agent_lifecycle;
pub mod auth;
pub mod ca;
pub mod catalog;
pub mod catalog_nodes;
pub mod catalog_remote;
pub mod catalog_tables;
pub mod check_kind;
pub mod checks;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod config_definitions;
pub mod config_entries;
pub mod demo;
pub mod dns;
pub mod gateway_services;
pub mod http;
pub mod https;
pub mod intentions;
pub mod leader;
pub mod liveness;
pub mod membership;
pub mod metrics;
pub mod peering;
pub mod sidecar;
pub mod store;
pub mod topology;
pub mod ttl_timers;
pub mod ui_metrics;
pub mod upstream_chain;
