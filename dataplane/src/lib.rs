//! What the data plane's two roles, the sidecar proxy and the mesh gateway,
//! share, so that each role keeps only what is its own.
//!
//! | module | for |
//! |---|---|
//! | `admin` | the admin listener: `/metrics`, `/ready`, `/live`, `POST /shutdown`, plus a role's own routes |
//! | `coalesce` | merging a streamed body's ready-at-once small data frames (fewer HTTP/2 frames and TLS records) without delaying any |
//! | `config` | the settings file loader, the one layering pattern (defaults < file < flags), the advertise-address rule |
//! | `drain` | graceful drain of a group of connections, and the accept loop that feeds one |
//! | `http` | hop-by-hop headers, dropped when passing requests and responses on |
//! | `io` | counted streams and splicing two streams together |
//! | `mtls` | mTLS verifiers that decide trust by SPIFFE ID |
//! | `presence` | noticing that a role's own registration left the catalog |
//! | `readiness` | what `/ready` reports: the role's prerequisites, registration, draining |
//! | `registration` | registering the role in the catalog, keeping it registered, deregistering |
//! | `retry` | backoff with jitter, logging a failure once per run |
//! | `shutdown` | the shutdown flag every long-running task watches; SIGTERM/SIGINT |
//! | `supervise` | binding listeners, the started role's handle (shutdown, wait, run until terminated), stopping the admin listener |
//! | `watcher` | one agent endpoint watched with blocking queries, backoff on errors |
#![forbid(unsafe_code)]

pub mod admin;
pub mod coalesce;
pub mod config;
pub mod drain;
pub mod http;
pub mod io;
pub mod mtls;
pub mod presence;
pub mod readiness;
pub mod registration;
pub mod retry;
pub mod shutdown;
pub mod supervise;
pub mod watcher;
