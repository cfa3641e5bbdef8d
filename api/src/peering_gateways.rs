//! The answer of `GET /v1/internal/ui/peering-gateways`: what the leader's
//! probes of each peer's mesh gateways last found, as the CLI's
//! `peering gateways` and the web UI's Peers page show it.

use serde::{Deserialize, Serialize};

/// The agent path of the peer gateway probe report.
pub const PATH: &str = "/v1/internal/ui/peering-gateways";

/// One peering's gateways as this cluster's leader last probed them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerGateway {
    /// The peering's local name.
    pub peer: String,
    /// The peering's state (`ACTIVE`, `FAILING`, ...).
    pub state: String,
    /// Whether the last probe got an answer; `null` if never probed (not
    /// established yet, or the leader has not probed it yet).
    pub alive: Option<bool>,
    /// Services imported from the peer.
    pub services: usize,
    /// How long the last successful probe took (connect, mTLS handshake
    /// and the probe request), in milliseconds.
    pub latency_ms: Option<f64>,
    /// When the last probe finished (RFC 3339).
    pub last_probe: Option<String>,
    /// Why the last probe failed; `null` after a success.
    pub last_error: Option<String>,
    /// The peer's gateway addresses the probes dial.
    pub addresses: Vec<String>,
}

impl PeerGateway {
    /// `ALIVE` as the CLI prints it: `true`, `false` or `-` (never probed).
    pub fn alive_text(&self) -> &'static str {
        match self.alive {
            Some(true) => "true",
            Some(false) => "false",
            None => "-",
        }
    }

    /// `LATENCY` as the CLI prints it: whole milliseconds (`12ms`, `<1ms`
    /// for loopback), or `-` when unknown or the gateway is not alive.
    pub fn latency_text(&self) -> String {
        match (self.alive, self.latency_ms) {
            (Some(true), Some(ms)) if ms < 1.0 => "<1ms".to_owned(),
            (Some(true), Some(ms)) => format!("{}ms", ms.round() as u64),
            _ => "-".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PeerGateway;

    #[test]
    fn cli_texts() {
        let mut g = PeerGateway::default();
        assert_eq!((g.alive_text(), g.latency_text().as_str()), ("-", "-"));
        g.alive = Some(true);
        g.latency_ms = Some(11.6);
        assert_eq!(
            (g.alive_text(), g.latency_text().as_str()),
            ("true", "12ms")
        );
        g.latency_ms = Some(0.4);
        assert_eq!(g.latency_text(), "<1ms");
        g.alive = Some(false);
        assert_eq!((g.alive_text(), g.latency_text().as_str()), ("false", "-"));
    }

    #[test]
    fn wire_names() {
        let g = PeerGateway {
            peer: "cluster-01".into(),
            alive: Some(true),
            latency_ms: Some(2.5),
            ..PeerGateway::default()
        };
        let v = serde_json::to_value(&g).unwrap();
        for key in [
            "Peer",
            "State",
            "Alive",
            "Services",
            "LatencyMs",
            "LastProbe",
            "LastError",
            "Addresses",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
    }
}
