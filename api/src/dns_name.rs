//! The names the agent's DNS interface answers, in Consul's grammar:
//! which lookup a query name asks for, before any state is read.
//!
//! Under the agent's domain (`consul` unless configured), with an optional
//! datacenter (`.<dc>` or `.<dc>.dc`) or, for services, a peer (`.<peer>.peer`)
//! before the domain:
//! - `[<tag>.]<service>.service`, and RFC 2782 `_<service>._<tag>.service`
//!   (`_tcp` in the tag's place means no tag);
//! - `<service>.connect`: the service's sidecar proxies;
//! - `<node>.node`;
//! - `<hex IP>.addr`: the targets of SRV answers for instances whose
//!   address is not their node's.
//!
//! The parser works on text the DNS library has already decoded from the
//! wire, but bounds it again itself (name length, label count and length),
//! so that it can be fuzzed and used on any string.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest name in text form without its final dot (RFC 1035: 255
/// bytes on the wire).
pub const MAX_NAME_LEN: usize = 253;
/// The longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;
/// The most labels a name of `MAX_NAME_LEN` can hold.
pub const MAX_LABELS: usize = 127;

/// Why a query name gets no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is {0} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    #[error("the name has {0} labels; at most {MAX_LABELS} are allowed")]
    TooManyLabels(usize),
    #[error("a label is {0} bytes long; at most {MAX_LABEL_LEN} are allowed")]
    LabelTooLong(usize),
    #[error("the name has an empty label")]
    EmptyLabel,
    /// Not under the agent's domain: it would need a recursor, and the
    /// agent has none (Consul answers REFUSED then).
    #[error("the name is outside the domain {0:?}")]
    OutsideDomain(String),
    /// Under the domain but not a lookup this grammar knows (NXDOMAIN).
    #[error("no such name in the domain")]
    Unknown,
}

/// Where a service lookup reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// This cluster; the datacenter as given in the name, if any.
    Local { datacenter: Option<String> },
    /// Services imported from the named peer.
    Peer(String),
}

/// A service lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceQuery {
    pub service: String,
    pub tag: Option<String>,
    pub scope: Scope,
    /// `<service>.connect`: the sidecar proxies in front of `service`.
    pub connect: bool,
    /// Asked in RFC 2782 form (`_service._tag`); the answer is the same.
    pub rfc2782: bool,
}

/// What a query name under the domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsLookup {
    /// The domain itself (its SOA and NS records).
    Apex,
    Service(ServiceQuery),
    Node {
        node: String,
        datacenter: Option<String>,
    },
    Addr {
        ip: IpAddr,
        datacenter: Option<String>,
    },
}

/// The lower-cased labels of `name` (one final dot allowed), bounded.
pub fn labels(name: &str) -> Result<Vec<String>, NameError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let count = name.split('.').count();
    if count > MAX_LABELS {
        return Err(NameError::TooManyLabels(count));
    }
    name.split('.')
        .map(|label| match label.len() {
            0 => Err(NameError::EmptyLabel),
            n if n > MAX_LABEL_LEN => Err(NameError::LabelTooLong(n)),
            _ => Ok(label.to_ascii_lowercase()),
        })
        .collect()
}

/// Parses `name` as a lookup under `domain` (e.g. `consul`, any case, a
/// final dot optional on both).
pub fn parse(name: &str, domain: &str) -> Result<DnsLookup, NameError> {
    let labels = labels(name)?;
    let domain_labels = labels_of_domain(domain);
    let inside = labels.len() >= domain_labels.len()
        && labels[labels.len() - domain_labels.len()..] == domain_labels[..];
    if !inside {
        return Err(NameError::OutsideDomain(domain_labels.join(".")));
    }
    let rest = &labels[..labels.len() - domain_labels.len()];
    if rest.is_empty() {
        return Ok(DnsLookup::Apex);
    }
    parse_relative(rest)
}

fn labels_of_domain(domain: &str) -> Vec<String> {
    domain
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

const KINDS: [&str; 4] = ["service", "connect", "node", "addr"];

/// `rest`: the labels before the domain, at least one.
fn parse_relative(rest: &[String]) -> Result<DnsLookup, NameError> {
    let n = rest.len();
    // The kind label is last, or followed by a datacenter (`<dc>` or
    // `<dc>.dc`) or a peer (`<peer>.peer`).
    let (kind_at, suffix) = if KINDS.contains(&rest[n - 1].as_str()) {
        (n - 1, Suffix::None)
    } else if n >= 3 && (rest[n - 1] == "dc" || rest[n - 1] == "peer") {
        let suffix = if rest[n - 1] == "dc" {
            Suffix::Datacenter(rest[n - 2].clone())
        } else {
            Suffix::Peer(rest[n - 2].clone())
        };
        (n - 3, suffix)
    } else if n >= 2 {
        (n - 2, Suffix::Datacenter(rest[n - 1].clone()))
    } else {
        return Err(NameError::Unknown);
    };
    let head = &rest[..kind_at];
    if head.is_empty() {
        return Err(NameError::Unknown);
    }
    let datacenter = match &suffix {
        Suffix::None => None,
        Suffix::Datacenter(dc) => Some(dc.clone()),
        Suffix::Peer(_) => None,
    };
    match rest[kind_at].as_str() {
        "service" => Ok(DnsLookup::Service(service_query(head, suffix)?)),
        "connect" if head.len() == 1 && !matches!(suffix, Suffix::Peer(_)) => {
            Ok(DnsLookup::Service(ServiceQuery {
                service: head[0].clone(),
                tag: None,
                scope: Scope::Local { datacenter },
                connect: true,
                rfc2782: false,
            }))
        }
        "node" if !matches!(suffix, Suffix::Peer(_)) => Ok(DnsLookup::Node {
            // Node names may hold dots (Consul joins the labels).
            node: head.join("."),
            datacenter,
        }),
        "addr" if head.len() == 1 && !matches!(suffix, Suffix::Peer(_)) => Ok(DnsLookup::Addr {
            ip: decode_addr(&head[0]).ok_or(NameError::Unknown)?,
            datacenter,
        }),
        _ => Err(NameError::Unknown),
    }
}

enum Suffix {
    None,
    Datacenter(String),
    Peer(String),
}

fn service_query(head: &[String], suffix: Suffix) -> Result<ServiceQuery, NameError> {
    let scope = match suffix {
        Suffix::None => Scope::Local { datacenter: None },
        Suffix::Datacenter(dc) => Scope::Local {
            datacenter: Some(dc),
        },
        Suffix::Peer(peer) => Scope::Peer(peer),
    };
    let rfc2782 = head.len() == 2 && head[0].len() > 1 && head[1].len() > 1;
    let rfc2782 = rfc2782 && head[0].starts_with('_') && head[1].starts_with('_');
    if rfc2782 {
        let tag = &head[1][1..];
        return Ok(ServiceQuery {
            service: head[0][1..].to_owned(),
            tag: (tag != "tcp").then(|| tag.to_owned()),
            scope,
            connect: false,
            rfc2782: true,
        });
    }
    let (service, tag) = head.split_last().expect("head is not empty");
    Ok(ServiceQuery {
        service: service.clone(),
        tag: (!tag.is_empty()).then(|| tag.join(".")),
        scope,
        connect: false,
        rfc2782: false,
    })
}

/// `7f000001` → 127.0.0.1; 32 hex digits → an IPv6 address.
fn decode_addr(label: &str) -> Option<IpAddr> {
    if !label.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match label.len() {
        8 => u32::from_str_radix(label, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        32 => u128::from_str_radix(label, 16)
            .ok()
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        _ => None,
    }
}

/// The `.addr.` label of `ip` (lower-case hex, as Consul writes it).
pub fn encode_addr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

impl DnsLookup {
    /// The query name (with its final dot) that [`parse`] reads back as
    /// this lookup.
    pub fn to_name(&self, domain: &str) -> String {
        let domain = labels_of_domain(domain).join(".");
        let dc = |datacenter: &Option<String>| match datacenter {
            Some(dc) => format!(".{dc}.dc"),
            None => String::new(),
        };
        match self {
            DnsLookup::Apex => format!("{domain}."),
            DnsLookup::Node { node, datacenter } => {
                format!("{node}.node{}.{domain}.", dc(datacenter))
            }
            DnsLookup::Addr { ip, datacenter } => {
                format!("{}.addr{}.{domain}.", encode_addr(*ip), dc(datacenter))
            }
            DnsLookup::Service(q) => {
                let scope = match &q.scope {
                    Scope::Local { datacenter } => dc(datacenter),
                    Scope::Peer(peer) => format!(".{peer}.peer"),
                };
                let kind = if q.connect { "connect" } else { "service" };
                let head = match (&q.tag, q.rfc2782) {
                    (tag, true) => format!("_{}._{}", q.service, tag.as_deref().unwrap_or("tcp")),
                    (Some(tag), false) => format!("{tag}.{}", q.service),
                    (None, false) => q.service.clone(),
                };
                format!("{head}.{kind}{scope}.{domain}.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn service(service: &str, tag: Option<&str>, scope: Scope) -> DnsLookup {
        DnsLookup::Service(ServiceQuery {
            service: service.into(),
            tag: tag.map(Into::into),
            scope,
            connect: false,
            rfc2782: false,
        })
    }

    fn local(dc: Option<&str>) -> Scope {
        Scope::Local {
            datacenter: dc.map(Into::into),
        }
    }

    #[test]
    fn consuls_name_forms_parse() {
        let p = |name: &str| parse(name, "consul.").unwrap();
        assert_eq!(p("web.service.consul."), service("web", None, local(None)));
        assert_eq!(p("WEB.Service.CONSUL"), service("web", None, local(None)));
        assert_eq!(
            p("v1.web.service.consul."),
            service("web", Some("v1"), local(None))
        );
        assert_eq!(
            p("web.service.dc1.consul."),
            service("web", None, local(Some("dc1")))
        );
        assert_eq!(
            p("web.service.dc1.dc.consul."),
            service("web", None, local(Some("dc1")))
        );
        assert_eq!(
            p("web.service.cluster-02.peer.consul."),
            service("web", None, Scope::Peer("cluster-02".into()))
        );
        let DnsLookup::Service(q) = p("_web._tcp.service.consul.") else {
            panic!()
        };
        assert_eq!((q.service.as_str(), q.tag, q.rfc2782), ("web", None, true));
        let DnsLookup::Service(q) = p("_web._v1.service.consul.") else {
            panic!()
        };
        assert_eq!(q.tag.as_deref(), Some("v1"));
        let DnsLookup::Service(q) = p("web.connect.consul.") else {
            panic!()
        };
        assert!(q.connect);
        assert_eq!(
            p("node-1.node.consul."),
            DnsLookup::Node {
                node: "node-1".into(),
                datacenter: None
            }
        );
        assert_eq!(
            p("7f000001.addr.dc1.consul."),
            DnsLookup::Addr {
                ip: "127.0.0.1".parse().unwrap(),
                datacenter: Some("dc1".into())
            }
        );
        assert_eq!(p("consul."), DnsLookup::Apex);
    }

    #[test]
    fn other_names_are_unknown_or_outside() {
        let p = |name: &str| parse(name, "consul");
        assert!(matches!(
            p("example.com."),
            Err(NameError::OutsideDomain(_))
        ));
        assert!(matches!(p("."), Err(NameError::OutsideDomain(_))));
        for unknown in [
            "service.consul.",
            "web.consul.",
            "web.query.consul.",
            "a.b.connect.consul.",
            "zz.addr.consul.",
            "n.node.p.peer.consul.",
        ] {
            assert_eq!(p(unknown), Err(NameError::Unknown), "{unknown}");
        }
        assert_eq!(p("a..consul."), Err(NameError::EmptyLabel));
        let long_label = format!("{}.service.consul.", "a".repeat(64));
        assert_eq!(p(&long_label), Err(NameError::LabelTooLong(64)));
        let long_name = format!("{}consul.", "a.".repeat(124));
        assert_eq!(p(&long_name), Err(NameError::TooLong(254)));
    }

    #[test]
    fn addresses_round_trip_through_their_label() {
        for ip in ["10.1.2.3", "::1", "2001:db8::7"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(decode_addr(&encode_addr(ip)), Some(ip));
        }
    }

    fn label() -> impl Strategy<Value = String> + Clone {
        "[a-z0-9][a-z0-9-]{0,20}"
    }

    fn lookup() -> impl Strategy<Value = DnsLookup> {
        let datacenter = proptest::option::of(label());
        let scope = prop_oneof![
            datacenter
                .clone()
                .prop_map(|datacenter| Scope::Local { datacenter }),
            label().prop_map(Scope::Peer),
        ];
        prop_oneof![
            Just(DnsLookup::Apex),
            (label(), proptest::option::of(label()), scope, any::<bool>()).prop_map(
                |(service, tag, scope, rfc2782)| {
                    DnsLookup::Service(ServiceQuery {
                        service,
                        // `_tcp` in RFC 2782 form is no tag at all.
                        tag: tag.filter(|t| !(rfc2782 && t == "tcp")),
                        scope,
                        connect: false,
                        rfc2782,
                    })
                }
            ),
            (label(), datacenter.clone()).prop_map(|(service, datacenter)| {
                DnsLookup::Service(ServiceQuery {
                    service,
                    tag: None,
                    scope: Scope::Local { datacenter },
                    connect: true,
                    rfc2782: false,
                })
            }),
            (label(), datacenter.clone())
                .prop_map(|(node, datacenter)| DnsLookup::Node { node, datacenter }),
            (any::<u32>(), datacenter).prop_map(|(v4, datacenter)| DnsLookup::Addr {
                ip: IpAddr::V4(Ipv4Addr::from(v4)),
                datacenter
            }),
        ]
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking_within_bounds(name in "\\PC{0,300}", domain in "[a-zA-Z]{1,6}(\\.[a-zA-Z]{1,6})?") {
            if let Ok(lookup) = parse(&name, &domain) {
                prop_assert!(name.trim_end_matches('.').len() <= MAX_NAME_LEN);
                // What is accepted reads back the same from its own name.
                if let DnsLookup::Service(q) = &lookup {
                    if q.tag.as_deref().is_some_and(|t| t.starts_with('_')) || q.service.starts_with('_') {
                        return Ok(());
                    }
                }
                prop_assert_eq!(parse(&lookup.to_name(&domain), &domain), Ok(lookup));
            }
        }

        #[test]
        fn lookups_round_trip_through_their_name(lookup in lookup(), domain in "[a-z]{1,8}(\\.[a-z]{1,8})?") {
            let name = lookup.to_name(&domain);
            prop_assert_eq!(parse(&name, &domain), Ok(lookup.clone()));
            prop_assert_eq!(parse(&name.to_ascii_uppercase(), &domain.to_ascii_uppercase()), Ok(lookup));
        }
    }
}
