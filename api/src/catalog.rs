//! Catalog and health shapes of the Consul-compatible HTTP API.
//!
//! Field names and casing follow Consul's JSON exactly so that existing
//! Consul clients parse isthmus's answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Check status values, worst last.
pub const STATUS_PASSING: &str = "passing";
pub const STATUS_WARNING: &str = "warning";
pub const STATUS_CRITICAL: &str = "critical";
pub const STATUS_MAINTENANCE: &str = "maintenance";

/// Service kinds a registration may carry; empty means a typical service.
pub const KIND_CONNECT_PROXY: &str = "connect-proxy";
pub const KIND_MESH_GATEWAY: &str = "mesh-gateway";

/// Orders statuses so the worst can be chosen: maintenance > critical > warning > passing.
pub fn status_severity(status: &str) -> u8 {
    match status {
        STATUS_PASSING => 0,
        STATUS_WARNING => 1,
        STATUS_CRITICAL => 2,
        STATUS_MAINTENANCE => 3,
        _ => 2,
    }
}

/// Body of `PUT /v1/agent/service/register`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ServiceRegistration {
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub enable_tag_override: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Weights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Box<ProxyConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckDefinition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDefinition>,
    /// `Connect.SidecarService` asks the agent to register a sidecar proxy
    /// for this service along with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectDefinition>,
    /// Accepted for compatibility with clients that always send them; only
    /// `default` is meaningful in an isthmus cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

/// `Connect` of a service registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ConnectDefinition {
    /// A Connect-native application (it speaks mTLS itself). Accepted as
    /// Consul accepts it; isthmus registers no sidecar for it.
    #[serde(default)]
    pub native: bool,
    /// The sidecar proxy to register with the service; every field may be
    /// left out (the agent fills in Consul's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_service: Option<Box<ServiceRegistration>>,
}

/// A health check as registered: TTL, HTTP, TCP or an alias of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CheckDefinition {
    #[serde(rename = "CheckID", default, skip_serializing_if = "Option::is_none")]
    pub check_id: Option<String>,
    /// Some Consul clients send `ID` instead of `CheckID`.
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Initial status; Consul starts checks `critical` unless told otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "TTL", default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(rename = "HTTP", default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(rename = "TCP", default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    /// An alias check: healthy as long as this service (on this node) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregister_critical_service_after: Option<String>,
    #[serde(rename = "ServiceID", default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// `Proxy` block of a `connect-proxy` (sidecar) or gateway registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_service_name: String,
    #[serde(
        rename = "DestinationServiceID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub destination_service_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_service_address: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub local_service_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<Upstream>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
}

fn is_zero(port: &u16) -> bool {
    *port == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Upstream {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_type: Option<String>,
    pub destination_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_peer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_bind_address: Option<String>,
    #[serde(default)]
    pub local_bind_port: u16,
    /// Opaque per-upstream settings for the proxy, e.g. `{"protocol": "http2"}`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// A node as the catalog shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// A service instance as `/v1/agent/services` and `/v1/health/service` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    #[serde(default)]
    pub weights: Weights,
    #[serde(default)]
    pub enable_tag_override: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Box<ProxyConfig>>,
    /// `{"Native": true}` for a Connect-native instance; absent otherwise
    /// (a sidecar asked for at registration is a service of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<AgentServiceConnect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datacenter: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// `Connect` of an instance as the agent shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentServiceConnect {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
}

/// One health check's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub service_name: String,
    #[serde(default)]
    pub service_tags: Vec<String>,
    /// `ttl`, `http` or `tcp`.
    #[serde(default)]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<String>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// One element of `/v1/health/service/<name>` and `/v1/health/connect/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntry {
    pub node: Node,
    pub service: AgentService,
    pub checks: Vec<HealthCheck>,
}

impl ServiceEntry {
    /// The worst status among the entry's checks (`passing` when it has none).
    pub fn aggregate_status(&self) -> &str {
        self.checks
            .iter()
            .map(|c| c.status.as_str())
            .max_by_key(|s| status_severity(s))
            .unwrap_or(STATUS_PASSING)
    }
}

/// One element of `/v1/catalog/service/<name>`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogService {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    #[serde(default)]
    pub tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    pub node_meta: BTreeMap<String, String>,
    #[serde(default)]
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    #[serde(default)]
    pub service_tags: Vec<String>,
    #[serde(default)]
    pub service_address: String,
    #[serde(default)]
    pub service_meta: BTreeMap<String, String>,
    #[serde(default)]
    pub service_port: u16,
    #[serde(default)]
    pub service_weights: Weights,
    #[serde(default)]
    pub service_enable_tag_override: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_proxy: Option<Box<ProxyConfig>>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

/// Body of `POST /v1/agent/connect/authorize`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthorizeRequest {
    /// Defaults so a missing field gets the API's own message, not serde's.
    #[serde(default)]
    pub target: String,
    #[serde(rename = "ClientCertURI", default)]
    pub client_cert_uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_cert_serial: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AuthorizeResponse {
    pub authorized: bool,
    pub reason: String,
}

mod schemas {
    //! The request bodies' key schemas (see [`crate::consul_json`]); each
    //! lists exactly the fields its type decodes.
    use crate::consul_json::{field, value, ConsulBody, Schema, Shape};

    use super::{AuthorizeRequest, CheckDefinition, ServiceRegistration};

    const SERVICE_ADDRESS: Schema = Schema::closed(&[value("Address"), value("Port")]);

    const WEIGHTS: Schema = Schema::closed(&[value("Passing"), value("Warning")]);

    pub(super) const CHECK: Schema = Schema::closed(&[
        value("CheckID"),
        value("ID"),
        value("Name"),
        value("Notes"),
        value("Status"),
        value("TTL"),
        value("HTTP"),
        value("Method"),
        field("Header", Shape::Map),
        value("TCP"),
        value("AliasService"),
        value("Interval"),
        value("Timeout"),
        value("DeregisterCriticalServiceAfter"),
        value("ServiceID"),
    ]);

    const UPSTREAM: Schema = Schema::closed(&[
        value("DestinationType"),
        value("DestinationName"),
        value("DestinationNamespace"),
        value("DestinationPeer"),
        value("LocalBindAddress"),
        value("LocalBindPort"),
        field("Config", Shape::Map),
    ]);

    const PROXY: Schema = Schema::closed(&[
        value("DestinationServiceName"),
        value("DestinationServiceID"),
        value("LocalServiceAddress"),
        value("LocalServicePort"),
        value("Mode"),
        field("Upstreams", Shape::ListOf(&UPSTREAM)),
        field("Config", Shape::Map),
    ]);

    /// A sidecar's registration: a service's fields without `Connect` (a
    /// sidecar has no sidecar of its own).
    const SIDECAR_SERVICE: Schema = Schema::closed(&[
        value("ID"),
        value("Name"),
        value("Kind"),
        value("Tags"),
        value("Address"),
        value("Port"),
        field("TaggedAddresses", Shape::MapOf(&SERVICE_ADDRESS)),
        field("Meta", Shape::Map),
        value("EnableTagOverride"),
        field("Weights", Shape::Object(&WEIGHTS)),
        field("Proxy", Shape::Object(&PROXY)),
        field("Check", Shape::Object(&CHECK)),
        field("Checks", Shape::ListOf(&CHECK)),
        value("Namespace"),
        value("Partition"),
    ]);

    const CONNECT: Schema = Schema::closed(&[
        value("Native"),
        field("SidecarService", Shape::Object(&SIDECAR_SERVICE)),
    ]);

    const SERVICE_REGISTRATION: Schema = Schema::closed(&[
        value("ID"),
        value("Name"),
        value("Kind"),
        value("Tags"),
        value("Address"),
        value("Port"),
        field("TaggedAddresses", Shape::MapOf(&SERVICE_ADDRESS)),
        field("Meta", Shape::Map),
        value("EnableTagOverride"),
        field("Weights", Shape::Object(&WEIGHTS)),
        field("Proxy", Shape::Object(&PROXY)),
        field("Check", Shape::Object(&CHECK)),
        field("Checks", Shape::ListOf(&CHECK)),
        field("Connect", Shape::Object(&CONNECT)),
        value("Namespace"),
        value("Partition"),
    ]);

    impl ConsulBody for ServiceRegistration {
        const SCHEMA: &'static Schema = &SERVICE_REGISTRATION;
    }

    impl ConsulBody for CheckDefinition {
        const SCHEMA: &'static Schema = &CHECK;
    }

    /// Open: the type ignores unknown fields, as Consul does for this body.
    const AUTHORIZE: Schema = Schema::open(&[
        value("Target"),
        value("ClientCertURI"),
        value("ClientCertSerial"),
    ]);

    impl ConsulBody for AuthorizeRequest {
        const SCHEMA: &'static Schema = &AUTHORIZE;
    }
}
