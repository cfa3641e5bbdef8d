//! What a token may read of the catalog: the predicates that narrow
//! catalog, health and DNS answers, with Consul's rules (an instance needs
//! read on its service and on its node).

use isthmus_api::acl::{Access, Authorizer, Resource};
use isthmus_api::catalog::{CatalogService, HealthCheck, ServiceEntry};

/// Read on the service named `name` (Consul's `service:read`).
pub fn service_readable(authz: &Authorizer, name: &str) -> bool {
    authz.allows(Resource::Service, name, Access::Read)
}

/// Read on the node named `name` (Consul's `node:read`).
pub fn node_readable(authz: &Authorizer, name: &str) -> bool {
    authz.allows(Resource::Node, name, Access::Read)
}

/// A catalog row is readable with read on both its service and its node.
pub fn row_readable(authz: &Authorizer, row: &CatalogService) -> bool {
    service_readable(authz, &row.service_name) && node_readable(authz, &row.node)
}

/// A health entry is readable with read on both its service and its node.
pub fn entry_readable(authz: &Authorizer, entry: &ServiceEntry) -> bool {
    service_readable(authz, &entry.service.service) && node_readable(authz, &entry.node.node)
}

/// A check is readable with read on its node and, for a service's check,
/// on that service.
pub fn check_readable(authz: &Authorizer, check: &HealthCheck) -> bool {
    node_readable(authz, &check.node)
        && (check.service_name.is_empty() || service_readable(authz, &check.service_name))
}
