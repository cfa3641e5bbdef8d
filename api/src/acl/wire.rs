//! SKELETON (helper B replaces it): the JSON shapes of Consul's ACL API.

/// The global-management policy every cluster has.
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// The token a request without a token is treated as.
pub const ANONYMOUS_TOKEN_ACCESSOR_ID: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_TOKEN_SECRET_ID: &str = "anonymous";
