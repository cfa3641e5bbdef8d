//! Validation and bounds for what a peer (or an operator acting on a
//! peering) hands us before any of it is stored: peering `Meta`, mesh
//! gateway addresses (which our agent and our sidecars dial), and the
//! contents of replicated messages (service names, counts and sizes).
//!
//! Pure functions; the agent decides what a refusal means (a 400 on the
//! API, a dropped message on the replication stream).
//!
//! Gateway addresses: `host:port` (`[v6]:port` for IPv6), a nonzero port,
//! a host that is an IP address or a valid DNS name. Refused always: the
//! unspecified address (`0.0.0.0`, `::`), multicast, broadcast and
//! link-local addresses (`169.254.0.0/16` holds cloud metadata services,
//! `fe80::/10`). Loopback (`127.0.0.0/8`, `::1`, `localhost`) is refused
//! unless [`AddressPolicy::allow_loopback`]: the agent allows it only when
//! its own cluster is itself on loopback (its mesh gateways advertise
//! loopback addresses, as in tests, `agent --dev` and the demo), where a
//! peer on loopback is the only kind there can be. A DNS name is checked
//! for shape only; what it resolves to is the operator's DNS.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::catalog::ServiceEntry;

/// Consul's limits for service metadata, used for peering `Meta` too.
pub const MAX_META_KEYS: usize = 64;
pub const MAX_META_KEY_BYTES: usize = 128;
pub const MAX_META_VALUE_BYTES: usize = 512;

/// At most this many gateway addresses per peer (token, exchange, stream).
pub const MAX_GATEWAY_ADDRESSES: usize = 16;
/// A DNS name's longest text form.
const MAX_HOSTNAME_BYTES: usize = 253;

/// `Meta` (of a peering, a service instance or a node): at most 64 keys,
/// keys 1..=128 bytes, values up to 512 bytes. The error is Consul's text.
pub fn validate_meta(what: &str, meta: &BTreeMap<String, String>) -> Result<(), String> {
    if meta.len() > MAX_META_KEYS {
        return Err(format!(
            "{what} cannot contain more than {MAX_META_KEYS} key/value pairs"
        ));
    }
    for (key, value) in meta {
        let problem = if key.is_empty() {
            Some("Key cannot be blank".to_owned())
        } else if key.len() > MAX_META_KEY_BYTES {
            Some(format!(
                "Key is too long (limit: {MAX_META_KEY_BYTES} characters)"
            ))
        } else if value.len() > MAX_META_VALUE_BYTES {
            Some(format!(
                "Value is too long (limit: {MAX_META_VALUE_BYTES} characters)"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!(
                "Couldn't load metadata pair ('{}', '{}'): {problem}",
                truncated(key),
                truncated(value)
            ));
        }
    }
    Ok(())
}

/// At most 64 characters of `text`, for error messages.
fn truncated(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Which gateway addresses are acceptable beyond the shape rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Accept loopback hosts (only when this cluster is itself on loopback).
    pub allow_loopback: bool,
}

/// A gateway address split into host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayAddress<'a> {
    /// Without brackets for IPv6.
    pub host: &'a str,
    pub port: u16,
}

/// Parses `host:port` / `[v6]:port` and checks the shape (valid host, port
/// not 0), not the policy.
pub fn parse_gateway_address(addr: &str) -> Result<GatewayAddress<'_>, String> {
    let bad = |why: &str| format!("{addr:?} is not a valid gateway address: {why}");
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("expected [host]:port"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("the bracketed host is not an IPv6 address"));
        }
        (host, port)
    } else {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address must be written [address]:port"));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
    if port == 0 {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    if host.parse::<IpAddr>().is_err() && !valid_hostname(host) {
        return Err(bad(
            "the host is neither an IP address nor a valid DNS name",
        ));
    }
    Ok(GatewayAddress { host, port })
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-`
/// (not at either end), 1..=63 bytes each, 253 in all; one trailing dot
/// allowed; not all-numeric in the last label (that would be a malformed
/// IPv4 address).
pub fn valid_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOSTNAME_BYTES {
        return false;
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    let last_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_numeric
}

fn is_loopback_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether an IP address is a loopback address (IPv4-mapped included).
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Why an IP address is never a gateway, if it is not.
fn dangerous_ip(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() || v4.octets()[0] == 0 => {
            Some("an unspecified address")
        }
        IpAddr::V4(v4) if v4.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("an unspecified address"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        _ => None,
    }
}

/// A gateway address a peer (or a token) names, checked against the shape
/// rules and `policy`.
pub fn validate_gateway_address(addr: &str, policy: AddressPolicy) -> Result<(), String> {
    let parsed = parse_gateway_address(addr)?;
    let refused = |why: &str| format!("{addr} is not an acceptable gateway address: {why}");
    match parsed.host.parse::<IpAddr>() {
        Ok(ip) => {
            if let Some(why) = dangerous_ip(ip) {
                return Err(refused(why));
            }
            if is_loopback_ip(ip) && !policy.allow_loopback {
                return Err(refused(
                    "a loopback address (accepted only when this cluster is itself on loopback)",
                ));
            }
        }
        Err(_) => {
            if is_loopback_name(parsed.host) && !policy.allow_loopback {
                return Err(refused(
                    "a loopback name (accepted only when this cluster is itself on loopback)",
                ));
            }
        }
    }
    Ok(())
}

/// A list of gateway addresses: at most [`MAX_GATEWAY_ADDRESSES`], each valid.
pub fn validate_gateway_addresses(addrs: &[String], policy: AddressPolicy) -> Result<(), String> {
    if addrs.len() > MAX_GATEWAY_ADDRESSES {
        return Err(format!(
            "too many gateway addresses: {} (limit: {MAX_GATEWAY_ADDRESSES})",
            addrs.len()
        ));
    }
    addrs
        .iter()
        .try_for_each(|a| validate_gateway_address(a, policy))
}

/// Whether this cluster is on loopback: it has gateway addresses and every
/// one is a loopback address or name.
pub fn all_loopback(own_gateway_addresses: &[String]) -> bool {
    !own_gateway_addresses.is_empty()
        && own_gateway_addresses.iter().all(|a| {
            parse_gateway_address(a).is_ok_and(|p| match p.host.parse::<IpAddr>() {
                Ok(ip) => is_loopback_ip(ip),
                Err(_) => is_loopback_name(p.host),
            })
        })
}

/// Bounds on what a peer replicates to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Services a peer may export to us.
    pub max_services: usize,
    /// Instances of one service.
    pub max_instances: usize,
    /// Tags of one instance.
    pub max_tags: usize,
    /// Bytes of one tag.
    pub max_tag_bytes: usize,
    /// Checks of one instance (replication flattens them to one).
    pub max_checks: usize,
}

pub const DEFAULT_IMPORT_LIMITS: ImportLimits = ImportLimits {
    max_services: 1024,
    max_instances: 4096,
    max_tags: 64,
    max_tag_bytes: 256,
    max_checks: 8,
};

impl Default for ImportLimits {
    fn default() -> Self {
        DEFAULT_IMPORT_LIMITS
    }
}

/// Why a replicated message was refused: a bounded label, plus the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: InvalidReason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// A service name that is not a valid DNS label.
    ServiceName,
    /// A service the peer did not list in its exported services.
    NotExported,
    /// More services, instances, tags, checks or addresses than allowed.
    TooMany,
    /// Meta or tags too large, or an instance not of the named service.
    BadInstance,
    /// A gateway address refused by [`validate_gateway_address`].
    GatewayAddress,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 5] = [
        InvalidReason::ServiceName,
        InvalidReason::NotExported,
        InvalidReason::TooMany,
        InvalidReason::BadInstance,
        InvalidReason::GatewayAddress,
    ];

    pub fn label(self) -> &'static str {
        match self {
            InvalidReason::ServiceName => "service_name",
            InvalidReason::NotExported => "not_exported",
            InvalidReason::TooMany => "too_many",
            InvalidReason::BadInstance => "bad_instance",
            InvalidReason::GatewayAddress => "gateway_address",
        }
    }
}

fn invalid(reason: InvalidReason, detail: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        detail: detail.into(),
    }
}

/// The names of a peer's `ExportedServices` message: each a valid DNS
/// label, no more than `limits.max_services`.
pub fn validate_exported_names(names: &[String], limits: &ImportLimits) -> Result<(), Invalid> {
    if names.len() > limits.max_services {
        return Err(invalid(
            InvalidReason::TooMany,
            format!(
                "{} exported services (limit: {})",
                names.len(),
                limits.max_services
            ),
        ));
    }
    for name in names {
        crate::naming::validate_dns_label("service name", name)
            .map_err(|e| invalid(InvalidReason::ServiceName, e))?;
    }
    Ok(())
}

/// A peer's `Service` message: a valid name the peer said it exports, a
/// bounded number of instances, each an instance of that service with
/// bounded tags, meta and checks.
pub fn validate_service(
    name: &str,
    instances: &[ServiceEntry],
    exported: &[String],
    limits: &ImportLimits,
) -> Result<(), Invalid> {
    crate::naming::validate_dns_label("service name", name)
        .map_err(|e| invalid(InvalidReason::ServiceName, e))?;
    if !exported.iter().any(|e| e == name) {
        return Err(invalid(
            InvalidReason::NotExported,
            format!("service {name:?} is not among the services the peer exports to us"),
        ));
    }
    if instances.len() > limits.max_instances {
        return Err(invalid(
            InvalidReason::TooMany,
            format!(
                "service {name:?} has {} instances (limit: {})",
                instances.len(),
                limits.max_instances
            ),
        ));
    }
    for entry in instances {
        let service = &entry.service;
        let bad = |detail: String| invalid(InvalidReason::BadInstance, detail);
        if service.service != name {
            return Err(bad(format!(
                "an instance of {:?} was sent as service {name:?}",
                truncated(&service.service)
            )));
        }
        if service.tags.len() > limits.max_tags {
            return Err(invalid(
                InvalidReason::TooMany,
                format!(
                    "an instance of {name:?} has {} tags (limit: {})",
                    service.tags.len(),
                    limits.max_tags
                ),
            ));
        }
        if let Some(tag) = service.tags.iter().find(|t| t.len() > limits.max_tag_bytes) {
            return Err(bad(format!(
                "an instance of {name:?} has a tag longer than {} bytes: {:?}",
                limits.max_tag_bytes,
                truncated(tag)
            )));
        }
        if entry.checks.len() > limits.max_checks {
            return Err(invalid(
                InvalidReason::TooMany,
                format!(
                    "an instance of {name:?} has {} checks (limit: {})",
                    entry.checks.len(),
                    limits.max_checks
                ),
            ));
        }
        validate_meta("Service meta", &service.meta)
            .map_err(|e| bad(format!("an instance of {name:?}: {e}")))?;
        validate_meta("Node meta", &entry.node.meta)
            .map_err(|e| bad(format!("an instance of {name:?}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{AgentService, ServiceEntry};

    const STRICT: AddressPolicy = AddressPolicy {
        allow_loopback: false,
    };
    const LOOPBACK_OK: AddressPolicy = AddressPolicy {
        allow_loopback: true,
    };

    #[test]
    fn meta_follows_consuls_service_meta_limits() {
        let mut meta: BTreeMap<String, String> = (0..64)
            .map(|i| (format!("k{i}"), "v".repeat(512)))
            .collect();
        assert!(validate_meta("Meta", &meta).is_ok());
        meta.insert("one-too-many".into(), String::new());
        assert_eq!(
            validate_meta("Meta", &meta).unwrap_err(),
            "Meta cannot contain more than 64 key/value pairs"
        );
        let long_key = BTreeMap::from([("k".repeat(129), "v".into())]);
        let err = validate_meta("Meta", &long_key).unwrap_err();
        assert!(
            err.ends_with("Key is too long (limit: 128 characters)"),
            "{err}"
        );
        assert!(
            err.len() < 300,
            "the key is truncated in the message: {err}"
        );
        let long_value = BTreeMap::from([("k".into(), "v".repeat(513))]);
        let err = validate_meta("Meta", &long_value).unwrap_err();
        assert!(
            err.ends_with("Value is too long (limit: 512 characters)"),
            "{err}"
        );
        let blank = BTreeMap::from([(String::new(), "v".into())]);
        assert!(validate_meta("Meta", &blank)
            .unwrap_err()
            .ends_with("Key cannot be blank"));
        let huge: BTreeMap<String, String> = (0..100_000)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(validate_meta("Meta", &huge).is_err());
    }

    #[test]
    fn gateway_address_shapes() {
        for good in [
            "10.0.0.1:8443",
            "gw.example.com:443",
            "gw-1.example.com.:443",
            "[fd00::1]:8443",
            "192.168.1.20:1",
        ] {
            assert_eq!(validate_gateway_address(good, STRICT), Ok(()), "{good}");
        }
        for bad in [
            "",
            "host",
            "host:0",
            "host:x",
            "host:65536",
            ":1",
            "fd00::1:8443",
            "[fd00::1]",
            "[gw.example.com]:1",
            "a b:1",
            "gw_1.example.com:1",
            "-gw.example.com:1",
            "gw..example.com:1",
            "http://gw:1",
            "user@gw:1",
            "gw/x:1",
            "1.2.3:1",
            "999.1.1.1:1",
        ] {
            assert!(validate_gateway_address(bad, LOOPBACK_OK).is_err(), "{bad}");
        }
        let long = format!("{}.com:1", "a.".repeat(130));
        assert!(validate_gateway_address(&long, STRICT).is_err());
    }

    #[test]
    fn dangerous_targets_are_refused() {
        for bad in [
            "0.0.0.0:0",
            "0.0.0.0:8443",
            "0.1.2.3:80",
            "[::]:8443",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "224.0.0.1:80",
            "[ff02::1]:80",
            "255.255.255.255:80",
            "[::ffff:169.254.169.254]:80",
        ] {
            let err = validate_gateway_address(bad, LOOPBACK_OK).unwrap_err();
            assert!(
                err.contains("not an") || err.contains("not a valid"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn loopback_only_when_we_are_on_loopback() {
        for lo in [
            "127.0.0.1:8443",
            "127.8.0.1:8443",
            "[::1]:8443",
            "localhost:8443",
            "gw.localhost:1",
            "[::ffff:127.0.0.1]:8443",
        ] {
            let err = validate_gateway_address(lo, STRICT).unwrap_err();
            assert!(err.contains("loopback"), "{lo}: {err}");
            assert_eq!(validate_gateway_address(lo, LOOPBACK_OK), Ok(()), "{lo}");
        }
        assert!(all_loopback(&["127.0.0.1:1".into(), "localhost:2".into()]));
        assert!(!all_loopback(&["127.0.0.1:1".into(), "10.0.0.1:2".into()]));
        assert!(!all_loopback(&[]));
    }

    #[test]
    fn address_lists_are_bounded() {
        let many: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}:8443")).collect();
        assert!(validate_gateway_addresses(&many[..16], STRICT).is_ok());
        assert!(validate_gateway_addresses(&many, STRICT)
            .unwrap_err()
            .contains("too many"));
    }

    fn instance(service: &str) -> ServiceEntry {
        ServiceEntry {
            service: AgentService {
                service: service.into(),
                ..AgentService::default()
            },
            ..ServiceEntry::default()
        }
    }

    #[test]
    fn replicated_services_are_checked_against_the_exports() {
        let limits = ImportLimits::default();
        let exported = vec!["backend".to_owned()];
        assert!(validate_exported_names(&exported, &limits).is_ok());
        let reason = |r: Result<(), Invalid>| r.unwrap_err().reason;
        assert_eq!(
            reason(validate_exported_names(&["bad name".into()], &limits)),
            InvalidReason::ServiceName
        );
        assert_eq!(
            reason(validate_exported_names(&["a/../b".into()], &limits)),
            InvalidReason::ServiceName
        );
        let too_many: Vec<String> = (0..1025).map(|i| format!("s{i}")).collect();
        assert_eq!(
            reason(validate_exported_names(&too_many, &limits)),
            InvalidReason::TooMany
        );

        assert!(validate_service("backend", &[instance("backend")], &exported, &limits).is_ok());
        assert_eq!(
            reason(validate_service(
                "db",
                &[instance("db")],
                &exported,
                &limits
            )),
            InvalidReason::NotExported
        );
        assert_eq!(
            reason(validate_service("Bad.Name", &[], &exported, &limits)),
            InvalidReason::ServiceName
        );
        assert_eq!(
            reason(validate_service(
                "backend",
                &[instance("db")],
                &exported,
                &limits
            )),
            InvalidReason::BadInstance
        );
        let many = vec![instance("backend"); 4097];
        assert_eq!(
            reason(validate_service("backend", &many, &exported, &limits)),
            InvalidReason::TooMany
        );
        let mut tagged = instance("backend");
        tagged.service.tags = vec!["t".into(); 65];
        assert_eq!(
            reason(validate_service(
                "backend",
                &[tagged.clone()],
                &exported,
                &limits
            )),
            InvalidReason::TooMany
        );
        tagged.service.tags = vec!["t".repeat(257)];
        assert_eq!(
            reason(validate_service("backend", &[tagged], &exported, &limits)),
            InvalidReason::BadInstance
        );
        let mut meta = instance("backend");
        meta.service.meta = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(
            reason(validate_service("backend", &[meta], &exported, &limits)),
            InvalidReason::BadInstance
        );
    }
}
