//! The DNS interface's settings: what the agent runs with, and the config
//! file's `ports { dns }` and `dns_config { ... }` blocks (Consul's names)
//! that set them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// Consul's DNS port.
pub const DEFAULT_DNS_PORT: u16 = 8600;
pub const DEFAULT_DOMAIN: &str = "consul";
/// A and AAAA answers in a UDP reply to a query without EDNS (Consul's
/// `udp_answer_limit`).
pub const DEFAULT_UDP_ANSWER_LIMIT: usize = 3;

/// The DNS interface as the agent runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    /// UDP and TCP port on the HTTP API's address; `Some(0)` takes a free
    /// port, `None` turns the interface off.
    pub port: Option<u16>,
    /// The domain answered, without a final dot (`consul`).
    pub domain: String,
    /// Answer only instances whose checks all pass (by default `warning`
    /// instances are answered too, as Consul does).
    pub only_passing: bool,
    /// TTL of node records.
    pub node_ttl: Duration,
    /// TTL of service records by service name; `*` is the default and a
    /// final `*` matches a prefix (Consul's `service_ttl`).
    pub service_ttl: BTreeMap<String, Duration>,
    /// At most this many answers to any query; 0 for no cap (Consul's
    /// `a_record_limit`).
    pub a_record_limit: usize,
    /// At most this many answers in a UDP reply without EDNS.
    pub udp_answer_limit: usize,
    /// Also set the TC bit when `udp_answer_limit` dropped answers (Consul's
    /// `enable_truncate`); a reply cut to fit 512 bytes (or the EDNS size)
    /// always has it.
    pub enable_truncate: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            port: Some(DEFAULT_DNS_PORT),
            domain: DEFAULT_DOMAIN.into(),
            only_passing: false,
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            a_record_limit: 0,
            udp_answer_limit: DEFAULT_UDP_ANSWER_LIMIT,
            enable_truncate: false,
        }
    }
}

impl DnsConfig {
    /// The TTL of `service`'s records: its own entry, else the longest
    /// matching `prefix*`, else `*`, else 0.
    pub fn service_ttl(&self, service: &str) -> Duration {
        if let Some(ttl) = self.service_ttl.get(service) {
            return *ttl;
        }
        self.service_ttl
            .iter()
            .filter_map(|(pattern, ttl)| {
                let prefix = pattern.strip_suffix('*')?;
                service.starts_with(prefix).then_some((prefix.len(), *ttl))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, ttl)| ttl)
            .unwrap_or(Duration::ZERO)
    }

    pub fn validate(&self) -> Result<(), String> {
        let domain = self.domain.trim_end_matches('.');
        if domain.is_empty() {
            return Err("domain cannot be empty".into());
        }
        for label in domain.split('.') {
            isthmus_api::naming::validate_dns_label("domain label", label)?;
        }
        if domain.len() > 200 {
            return Err("domain is longer than 200 characters".into());
        }
        let too_long = Duration::from_secs(u64::from(u32::MAX));
        if self.node_ttl > too_long || self.service_ttl.values().any(|t| *t > too_long) {
            return Err("dns_config: a TTL must fit in 32 bits of seconds".into());
        }
        Ok(())
    }
}

/// The file's `ports { ... }` block; only `dns` is read from it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSettings {
    /// The DNS port; 0 takes a free port, -1 turns DNS off.
    pub dns: Option<i64>,
}

/// The file's `dns_config { ... }` block, Consul's keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    pub only_passing: Option<bool>,
    pub node_ttl: Option<String>,
    pub service_ttl: Option<BTreeMap<String, String>>,
    pub a_record_limit: Option<usize>,
    pub udp_answer_limit: Option<usize>,
    pub enable_truncate: Option<bool>,
}

/// Reads a port setting: 1-65535, 0 for a free port, -1 for off.
pub fn port_setting(key: &str, value: i64) -> Result<Option<u16>, String> {
    match value {
        -1 => Ok(None),
        0..=65535 => Ok(Some(value as u16)),
        _ => Err(format!(
            "{key}: {value} is not a port (1-65535, 0 for any free port, -1 to turn DNS off)"
        )),
    }
}

impl DnsSettings {
    /// Applies the block over `config`; `key` names a setting in errors.
    pub fn apply(self, config: &mut DnsConfig, key: impl Fn(&str) -> String) -> Result<(), String> {
        let duration = |name: &str, value: &str| {
            isthmus_api::duration::parse(value).map_err(|e| format!("{}: {e}", key(name)))
        };
        if let Some(v) = self.only_passing {
            config.only_passing = v;
        }
        if let Some(v) = self.node_ttl {
            config.node_ttl = duration("node_ttl", &v)?;
        }
        if let Some(map) = self.service_ttl {
            config.service_ttl = map
                .into_iter()
                .map(|(service, ttl)| Ok((service, duration("service_ttl", &ttl)?)))
                .collect::<Result<_, String>>()?;
        }
        if let Some(v) = self.a_record_limit {
            config.a_record_limit = v;
        }
        if let Some(v) = self.udp_answer_limit {
            config.udp_answer_limit = v;
        }
        if let Some(v) = self.enable_truncate {
            config.enable_truncate = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ttls_match_exactly_then_by_prefix_then_star() {
        let mut config = DnsConfig::default();
        assert_eq!(config.service_ttl("web"), Duration::ZERO);
        config.service_ttl = [("*", 5), ("we*", 7), ("web", 9), ("w*", 3)]
            .into_iter()
            .map(|(k, s)| (k.to_owned(), Duration::from_secs(s)))
            .collect();
        assert_eq!(config.service_ttl("web"), Duration::from_secs(9));
        assert_eq!(config.service_ttl("webs"), Duration::from_secs(7));
        assert_eq!(config.service_ttl("wall"), Duration::from_secs(3));
        assert_eq!(config.service_ttl("db"), Duration::from_secs(5));
    }

    #[test]
    fn the_file_and_flags_set_the_dns_settings() {
        use crate::config::{AgentConfig, Settings, Source};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.hcl");
        std::fs::write(
            &path,
            "domain = \"mesh\"\nports {\n  dns = 0\n}\ndns_config {\n  only_passing = true\n  node_ttl = \"10s\"\n  service_ttl = {\n    \"*\" = \"5s\"\n  }\n  a_record_limit = 4\n  udp_answer_limit = 9\n  enable_truncate = true\n}\n",
        )
        .unwrap();
        let mut config = AgentConfig::dev();
        assert_eq!(config.dns, DnsConfig::default());
        assert_eq!(config.dns.port, Some(DEFAULT_DNS_PORT));
        Settings::load(&path)
            .unwrap()
            .apply(&mut config, Source::File)
            .unwrap();
        let dns = &config.dns;
        assert_eq!((dns.port, dns.domain.as_str()), (Some(0), "mesh"));
        assert!(dns.only_passing && dns.enable_truncate);
        assert_eq!(dns.node_ttl, Duration::from_secs(10));
        assert_eq!(dns.service_ttl("web"), Duration::from_secs(5));
        assert_eq!((dns.a_record_limit, dns.udp_answer_limit), (4, 9));
        config.validate().unwrap();

        let flags = Settings {
            dns_port: Some(-1),
            ..Settings::default()
        };
        flags.apply(&mut config, Source::Flags).unwrap();
        assert_eq!(config.dns.port, None);
        let bad = Settings {
            dns_port: Some(-2),
            ..Settings::default()
        };
        let err = bad.apply(&mut config, Source::Flags).unwrap_err();
        assert!(err.starts_with("--dns-port: "), "{err}");
        std::fs::write(&path, "dns_config {\n  only_pasing = true\n}\n").unwrap();
        assert!(Settings::load(&path).unwrap_err().contains("only_pasing"));
    }

    #[test]
    fn ports_and_domains_are_checked() {
        assert_eq!(port_setting("dns", -1), Ok(None));
        assert_eq!(port_setting("dns", 0), Ok(Some(0)));
        assert!(port_setting("dns", 70000)
            .unwrap_err()
            .contains("not a port"));
        let mut config = DnsConfig {
            domain: "mesh.internal.".into(),
            ..DnsConfig::default()
        };
        config.validate().unwrap();
        config.domain = "bad domain".into();
        assert!(config.validate().is_err());
        config.domain = String::new();
        assert!(config.validate().is_err());
    }
}
