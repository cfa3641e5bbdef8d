//! `/v1/catalog/gateway-services/:gateway`: the services a gateway fronts.
//!
//! In isthmus the only gateway is the mesh gateway, and what it exposes is
//! what the exported-services entry exports to peers (`*` expanded to every
//! typical service, as Consul marks with `FromWildcard`). A name that is not
//! a registered mesh gateway has no gateway services: `[]`, as Consul answers.

use isthmus_api::config_entry::{ConfigEntry, KIND_EXPORTED_SERVICES};
use serde::Serialize;

use isthmus_api::catalog::AgentService;

use crate::catalog;
use crate::config_entries;
use crate::store::{Reads, StoreError, Table};

const KIND_MESH_GATEWAY: &str = "mesh-gateway";

/// Consul's `ServiceName` as it appears in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamedService {
    pub name: String,
}

/// One row of Consul's `GatewayService`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GatewayService {
    pub gateway: NamedService,
    pub service: NamedService,
    pub gateway_kind: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_wildcard: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The services `gateway` exposes, sorted by name; empty when `gateway`
/// names no mesh gateway.
pub fn gateway_services(r: &impl Reads, gateway: &str) -> Result<Vec<GatewayService>, StoreError> {
    let instances: Vec<AgentService> = r.lookup(Table::Services, catalog::BY_NAME, gateway)?;
    if !instances
        .iter()
        .any(|s| s.kind.as_deref() == Some(KIND_MESH_GATEWAY))
    {
        return Ok(Vec::new());
    }
    let Some(ConfigEntry::ExportedServices(exports)) =
        config_entries::get(r, KIND_EXPORTED_SERVICES, "default")?
    else {
        return Ok(Vec::new());
    };
    let row = |service: String, from_wildcard: bool| GatewayService {
        gateway: NamedService {
            name: gateway.to_owned(),
        },
        service: NamedService { name: service },
        gateway_kind: KIND_MESH_GATEWAY,
        from_wildcard,
        create_index: exports.create_index,
        modify_index: exports.modify_index,
    };
    let mut rows: Vec<GatewayService> = Vec::new();
    for exported in &exports.services {
        if exported.consumers.is_empty() {
            continue;
        }
        if exported.name == "*" {
            for name in r.index_values(Table::Services, catalog::TYPICAL_BY_NAME)? {
                rows.push(row(name, true));
            }
        } else {
            rows.push(row(exported.name.clone(), false));
        }
    }
    // An explicit export wins over the wildcard's copy of the same service.
    rows.sort_by(|a, b| {
        a.service
            .name
            .cmp(&b.service.name)
            .then(a.from_wildcard.cmp(&b.from_wildcard))
    });
    rows.dedup_by(|later, earlier| later.service.name == earlier.service.name);
    Ok(rows)
}
