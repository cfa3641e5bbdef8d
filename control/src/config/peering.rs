//! The config file's `peering { ... }` block: the leader's probes of the
//! peers' mesh gateways (`gateway_probe_interval`; the flag
//! `--peering-gateway-probe-interval` overrides it).

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringBlock {
    /// How often the leader probes each established peer's gateways, as a
    /// Go duration (100ms to 5m).
    pub gateway_probe_interval: Option<String>,
}
