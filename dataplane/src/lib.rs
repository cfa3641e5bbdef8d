//! What the data plane's two roles, the sidecar proxy and the mesh gateway,
//! share: mTLS configurations, retry with backoff, and watching that a
//! role's own registration is still in the catalog.
#![forbid(unsafe_code)]

pub mod mtls;
pub mod presence;
pub mod retry;
