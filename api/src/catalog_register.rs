//! Bodies of `PUT /v1/catalog/register` and `PUT /v1/catalog/deregister`.
//!
//! Consul decodes these leniently (unknown fields are ignored), so their
//! schemas are open; known keys still match case-insensitively and in
//! snake_case.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{ProxyConfig, ServiceAddress, Weights};

/// Body of `PUT /v1/catalog/register`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogRegistration {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub node_meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub service: Option<CatalogServiceDef>,
    #[serde(default)]
    pub check: Option<CatalogCheck>,
    #[serde(default)]
    pub checks: Option<Vec<CatalogCheck>>,
    #[serde(default)]
    pub skip_node_update: bool,
}

/// The `Service` of a catalog registration (Consul's `AgentService`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogServiceDef {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub tagged_addresses: Option<BTreeMap<String, ServiceAddress>>,
    #[serde(default)]
    pub weights: Option<Weights>,
    #[serde(default)]
    pub enable_tag_override: bool,
    #[serde(default)]
    pub proxy: Option<Box<ProxyConfig>>,
}

/// A check of a catalog registration (Consul's `HealthCheck`): the catalog
/// holds its status as given, nobody runs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogCheck {
    #[serde(default)]
    pub node: String,
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub output: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(default)]
    pub r#type: String,
}

/// Body of `PUT /v1/catalog/deregister`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogDeregistration {
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
}

mod schemas {
    use super::{CatalogDeregistration, CatalogRegistration};
    use crate::consul_json::{field, value, ConsulBody, Schema, Shape};

    const SERVICE_ADDRESS: Schema = Schema::open(&[value("Address"), value("Port")]);
    const WEIGHTS: Schema = Schema::open(&[value("Passing"), value("Warning")]);
    const UPSTREAM: Schema = Schema::open(&[
        value("DestinationType"),
        value("DestinationName"),
        value("DestinationNamespace"),
        value("DestinationPeer"),
        value("LocalBindAddress"),
        value("LocalBindPort"),
        field("Config", Shape::Map),
    ]);
    const PROXY: Schema = Schema::open(&[
        value("DestinationServiceName"),
        value("DestinationServiceID"),
        value("LocalServiceAddress"),
        value("LocalServicePort"),
        value("Mode"),
        field("Upstreams", Shape::ListOf(&UPSTREAM)),
        field("Config", Shape::Map),
    ]);
    const SERVICE: Schema = Schema::open(&[
        value("ID"),
        value("Service"),
        value("Kind"),
        value("Tags"),
        value("Address"),
        value("Port"),
        field("Meta", Shape::Map),
        field("TaggedAddresses", Shape::MapOf(&SERVICE_ADDRESS)),
        field("Weights", Shape::Object(&WEIGHTS)),
        value("EnableTagOverride"),
        field("Proxy", Shape::Object(&PROXY)),
    ]);
    const CHECK: Schema = Schema::open(&[
        value("Node"),
        value("CheckID"),
        value("Name"),
        value("Status"),
        value("Notes"),
        value("Output"),
        value("ServiceID"),
        value("Type"),
        field("Definition", Shape::Map),
    ]);
    const REGISTRATION: Schema = Schema::open(&[
        value("ID"),
        value("Node"),
        value("Address"),
        value("Datacenter"),
        field("TaggedAddresses", Shape::Map),
        field("NodeMeta", Shape::Map),
        field("Service", Shape::Object(&SERVICE)),
        field("Check", Shape::Object(&CHECK)),
        field("Checks", Shape::ListOf(&CHECK)),
        value("SkipNodeUpdate"),
    ]);
    const DEREGISTRATION: Schema = Schema::open(&[
        value("Node"),
        value("Datacenter"),
        value("ServiceID"),
        value("CheckID"),
    ]);

    impl ConsulBody for CatalogRegistration {
        const SCHEMA: &'static Schema = &REGISTRATION;
    }

    impl ConsulBody for CatalogDeregistration {
        const SCHEMA: &'static Schema = &DEREGISTRATION;
    }
}
