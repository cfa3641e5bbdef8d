//! SPIFFE identities and names shared by every component.
//!
//! Service: `spiffe://<trust-domain>/ns/<ns>/dc/<cluster>/svc/<service>`.
//! Mesh gateway: `spiffe://<trust-domain>/gateway/mesh/dc/<cluster>`.
//! Trust domain: `<cluster-uuid>.isthmus`.

use std::fmt;

/// Suffix of every isthmus trust domain.
pub const TRUST_DOMAIN_SUFFIX: &str = "isthmus";
pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_PARTITION: &str = "default";

/// The trust domain of a cluster with the given ID.
pub fn trust_domain(cluster_id: &str) -> String {
    format!("{cluster_id}.{TRUST_DOMAIN_SUFFIX}")
}

/// A workload or gateway identity carried in a certificate's URI SAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiffeId {
    Service {
        trust_domain: String,
        namespace: String,
        datacenter: String,
        service: String,
    },
    MeshGateway {
        trust_domain: String,
        datacenter: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SPIFFE ID {uri:?}: {problem}")]
pub struct SpiffeIdError {
    pub uri: String,
    pub problem: &'static str,
}

impl SpiffeId {
    pub fn service(trust_domain: &str, datacenter: &str, service: &str) -> SpiffeId {
        SpiffeId::Service {
            trust_domain: trust_domain.to_owned(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            datacenter: datacenter.to_owned(),
            service: service.to_owned(),
        }
    }

    pub fn trust_domain(&self) -> &str {
        match self {
            SpiffeId::Service { trust_domain, .. } | SpiffeId::MeshGateway { trust_domain, .. } => {
                trust_domain
            }
        }
    }

    /// Parses the URI forms above; anything else is rejected rather than
    /// guessed at, because identities decide authorization.
    pub fn parse(uri: &str) -> Result<SpiffeId, SpiffeIdError> {
        let err = |problem| SpiffeIdError {
            uri: uri.to_owned(),
            problem,
        };
        let rest = uri
            .strip_prefix("spiffe://")
            .ok_or_else(|| err("scheme must be spiffe://"))?;
        let (trust_domain, path) = rest
            .split_once('/')
            .ok_or_else(|| err("missing path after the trust domain"))?;
        if trust_domain.is_empty() {
            return Err(err("empty trust domain"));
        }
        let segments: Vec<&str> = path.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(err("empty path segment"));
        }
        match segments.as_slice() {
            ["ns", ns, "dc", dc, "svc", svc] => Ok(SpiffeId::Service {
                trust_domain: trust_domain.to_owned(),
                namespace: (*ns).to_owned(),
                datacenter: (*dc).to_owned(),
                service: (*svc).to_owned(),
            }),
            ["gateway", "mesh", "dc", dc] => Ok(SpiffeId::MeshGateway {
                trust_domain: trust_domain.to_owned(),
                datacenter: (*dc).to_owned(),
            }),
            _ => Err(err(
                "path must be /ns/<ns>/dc/<dc>/svc/<service> or /gateway/mesh/dc/<dc>",
            )),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpiffeId::Service {
                trust_domain,
                namespace,
                datacenter,
                service,
            } => write!(
                f,
                "spiffe://{trust_domain}/ns/{namespace}/dc/{datacenter}/svc/{service}"
            ),
            SpiffeId::MeshGateway {
                trust_domain,
                datacenter,
            } => write!(f, "spiffe://{trust_domain}/gateway/mesh/dc/{datacenter}"),
        }
    }
}

/// A name usable as a cluster (datacenter) or service name inside
/// SPIFFE IDs and SNI: DNS-label-like, so it can never smuggle a `/` or `.`.
pub fn validate_dns_label(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} cannot be empty"));
    }
    if name.len() > 63 {
        return Err(format!("{what} {name:?} is longer than 63 characters"));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "{what} {name:?} must consist of letters, digits, '-' or '_', and must not start or end with '-'"
        ));
    }
    Ok(())
}

/// SNI for a service exported to a peer, as the importer dials it:
/// `<svc>.<ns>.<partition>.<peer>.external.<trust-domain>`, where `peer` is
/// the exporter's name for the importer and the trust domain the exporter's.
pub fn peered_sni(service: &str, peer: &str, exporter_trust_domain: &str) -> String {
    format!(
        "{service}.{DEFAULT_NAMESPACE}.{DEFAULT_PARTITION}.{peer}.external.{exporter_trust_domain}"
    )
}

/// SNI for a service inside one cluster: `<svc>.<ns>.<dc>.internal.<td>`.
pub fn local_sni(service: &str, datacenter: &str, trust_domain: &str) -> String {
    format!("{service}.{DEFAULT_NAMESPACE}.{datacenter}.internal.{trust_domain}")
}

/// The parts of a peered SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeredSni<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    pub partition: &'a str,
    pub peer: &'a str,
    pub trust_domain: &'a str,
}

/// Parses `<svc>.<ns>.<partition>.<peer>.external.<trust-domain>`.
pub fn parse_peered_sni(sni: &str) -> Option<PeeredSni<'_>> {
    let (head, trust_domain) = sni.split_once(".external.")?;
    let mut parts = head.split('.');
    let (service, namespace, partition, peer) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || [service, namespace, partition, peer, trust_domain]
            .iter()
            .any(|p| p.is_empty())
    {
        return None;
    }
    Some(PeeredSni {
        service,
        namespace,
        partition,
        peer,
        trust_domain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_id_round_trips() {
        let id = SpiffeId::service("abc.isthmus", "dc1", "web");
        let uri = id.to_string();
        assert_eq!(uri, "spiffe://abc.isthmus/ns/default/dc/dc1/svc/web");
        assert_eq!(SpiffeId::parse(&uri).unwrap(), id);
    }

    #[test]
    fn gateway_id_parses() {
        let id = SpiffeId::parse("spiffe://td.isthmus/gateway/mesh/dc/c1").unwrap();
        assert_eq!(
            id,
            SpiffeId::MeshGateway {
                trust_domain: "td.isthmus".into(),
                datacenter: "c1".into()
            }
        );
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "http://td/ns/default/dc/d/svc/s",
            "spiffe://td",
            "spiffe:///ns/default/dc/d/svc/s",
            "spiffe://td/ns/default/dc/d/svc/",
            "spiffe://td/ns/default/dc/d/svc/s/extra",
            "spiffe://td/ns//dc/d/svc/s",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn peered_sni_round_trips() {
        let sni = peered_sni("backend", "cluster-02", "abc.isthmus");
        assert_eq!(
            sni,
            "backend.default.default.cluster-02.external.abc.isthmus"
        );
        let parsed = parse_peered_sni(&sni).unwrap();
        assert_eq!(
            (parsed.service, parsed.peer, parsed.trust_domain),
            ("backend", "cluster-02", "abc.isthmus")
        );
        assert!(parse_peered_sni("server.c1.peering.abc.isthmus").is_none());
        assert!(parse_peered_sni("a.b.c.external.td").is_none());
        assert!(parse_peered_sni("a.b.c.d.e.external.td").is_none());
    }

    #[test]
    fn dns_labels() {
        assert!(validate_dns_label("cluster name", "cluster-01").is_ok());
        assert!(validate_dns_label("cluster name", "").is_err());
        assert!(validate_dns_label("cluster name", "a.b").is_err());
        assert!(validate_dns_label("cluster name", "-a").is_err());
    }
}
