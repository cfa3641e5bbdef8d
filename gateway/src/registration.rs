//! The gateway's catalog registration (`mesh-gateway` kind): the agent
//! builds peering tokens' server addresses from these registrations.
//! Keeping it registered is `isthmus_dataplane::registration`.

use isthmus_api::catalog::{ServiceRegistration, KIND_MESH_GATEWAY};
use isthmus_api::gateway::SERVICE_NAME;
use isthmus_dataplane::registration::listening_check;

use crate::config::Advertise;

/// `mesh-gateway-<host>-<port>`, with anything but letters, digits, `-`,
/// `_` and `.` replaced by `-` (so never a `/`).
pub fn service_id(advertise: &Advertise) -> String {
    let raw = format!("{SERVICE_NAME}-{}-{}", advertise.host, advertise.port);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The registration body for a gateway reachable at `advertise`.
pub fn registration(advertise: &Advertise) -> ServiceRegistration {
    ServiceRegistration {
        id: Some(service_id(advertise)),
        name: SERVICE_NAME.to_owned(),
        kind: Some(KIND_MESH_GATEWAY.to_owned()),
        address: Some(advertise.host.clone()),
        port: Some(advertise.port),
        check: Some(listening_check(
            format!("Mesh gateway listening on {advertise}"),
            advertise,
        )),
        ..ServiceRegistration::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_service_ids() {
        let v4 = Advertise {
            host: "10.0.0.1".into(),
            port: 8443,
        };
        assert_eq!(service_id(&v4), "mesh-gateway-10.0.0.1-8443");
        let v6 = Advertise {
            host: "fd00::1".into(),
            port: 8443,
        };
        assert_eq!(service_id(&v6), "mesh-gateway-fd00--1-8443");
        let odd = Advertise {
            host: "gw/evil".into(),
            port: 1,
        };
        assert!(!service_id(&odd).contains('/'));
    }

    #[test]
    fn registration_shape() {
        let reg = registration(&Advertise {
            host: "fd00::1".into(),
            port: 8443,
        });
        let json = serde_json::to_value(&reg).unwrap();
        assert_eq!(json["Name"], "mesh-gateway");
        assert_eq!(json["Kind"], "mesh-gateway");
        assert_eq!(json["Address"], "fd00::1");
        assert_eq!(json["Port"], 8443);
        assert_eq!(json["Check"]["TCP"], "[fd00::1]:8443");
        assert_eq!(json["Check"]["Interval"], "10s");
        assert_eq!(json["Check"]["Status"], "passing");
        assert_eq!(json["Check"]["DeregisterCriticalServiceAfter"], "1m");
    }
}
