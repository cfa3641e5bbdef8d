//! Consul's ACL model: policies written in Consul's rule language, the
//! authorizer that answers "may this token do X on Y", the texts of its
//! denials, and the JSON shapes of tokens and policies.
//!
//! - [`rules`]: parsing and validating a policy's `Rules` (HCL or JSON).
//! - [`authorizer`]: merging a token's policies and service identities into
//!   one answer per resource, with Consul's precedence (exact name over the
//!   longest prefix, explicit `deny` over a grant when policies are merged,
//!   then the agent's `default_policy`).
//! - [`wire`]: `ACLToken`, `ACLPolicy`, service identities, the built-in
//!   IDs (global-management policy, anonymous token).

pub mod authorizer;
pub mod rules;
pub mod wire;

pub use authorizer::{Access, Authorizer, Denied, Resource};
pub use rules::{Rules, RulesError};
