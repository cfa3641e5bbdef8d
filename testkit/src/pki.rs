//! A throwaway PKI: one CA per (trust domain, cluster) issuing the
//! certificates the mesh's identities use (service leaves with a SPIFFE URI
//! SAN, mesh gateway certificates with the peering server name), plus
//! expired and arbitrary-URI variants for the refusal tests. Another
//! cluster's CA, or a second CA for the same cluster, is an unknown CA.

use std::sync::atomic::{AtomicU64, Ordering};

use isthmus_api::ca::LeafCert;
use isthmus_api::naming::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

/// The local cluster of the tests.
pub const CLUSTER: &str = "cluster-01";
/// The local cluster's trust domain.
pub const TD: &str = "aaaa.isthmus";
/// The peer cluster of the tests.
pub const PEER: &str = "cluster-02";
/// The peer cluster's trust domain.
pub const PEER_TD: &str = "bbbb.isthmus";

/// Serial numbers unique within a test binary, so a rotated leaf differs
/// from the one it replaces.
static SERIAL: AtomicU64 = AtomicU64::new(1000);

/// A CA of one cluster that can issue certificates.
pub struct Ca {
    pub pem: String,
    pub trust_domain: String,
    pub cluster: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM, with what tests compare it by.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the DER, as the mesh prints fingerprints.
    pub fingerprint: String,
    /// Hex, as the agent's leaf answer carries it.
    pub serial: String,
    /// The URI SAN (a SPIFFE ID).
    pub uri: String,
}

impl Ca {
    pub fn new(trust_domain: &str, cluster: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("test CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}").try_into().unwrap(),
        )];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            trust_domain: trust_domain.into(),
            cluster: cluster.into(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A CA of the local cluster ([`CLUSTER`], [`TD`]).
    pub fn local() -> Ca {
        Ca::new(TD, CLUSTER)
    }

    /// A CA of the peer cluster ([`PEER`], [`PEER_TD`]).
    pub fn peer() -> Ca {
        Ca::new(PEER_TD, PEER)
    }

    /// The SPIFFE ID of `service` in this CA's cluster.
    pub fn service_uri(&self, service: &str) -> String {
        SpiffeId::service(&self.trust_domain, &self.cluster, service).to_string()
    }

    /// The peering server name of this CA's cluster (its gateway's DNS SAN).
    pub fn server_name(&self) -> String {
        isthmus_api::peering::server_name(&self.cluster, &self.trust_domain)
    }

    /// A leaf for `service`, valid now.
    pub fn leaf(&self, service: &str) -> Leaf {
        self.leaf_for_uri(&self.service_uri(service), false)
    }

    /// A leaf for `service` that expired long ago.
    pub fn expired_leaf(&self, service: &str) -> Leaf {
        self.leaf_for_uri(&self.service_uri(service), true)
    }

    /// A leaf for `service` that also carries `dns_names`, so a plain
    /// webpki client can check a server name against it.
    pub fn leaf_with_dns_names(&self, service: &str, dns_names: &[&str]) -> Leaf {
        let uri = self.service_uri(service);
        let dns = dns_names.iter().map(|name| (*name).to_owned()).collect();
        self.issue(&uri, dns, false)
    }

    /// This cluster's mesh gateway certificate: DNS SAN = the peering
    /// server name, URI SAN = the gateway's SPIFFE ID.
    pub fn gateway_leaf(&self) -> Leaf {
        let uri = format!(
            "spiffe://{}/gateway/mesh/dc/{}",
            self.trust_domain, self.cluster
        );
        self.issue(&uri, vec![self.server_name()], false)
    }

    /// A leaf with `uri` as its only SAN, valid now or expired long ago.
    pub fn leaf_for_uri(&self, uri: &str, expired: bool) -> Leaf {
        self.issue(uri, Vec::new(), expired)
    }

    /// A certificate for a host at `ip` (an IP SAN and `localhost`), good
    /// for both ends of TLS, as etcd's server and its clients use.
    pub fn host_leaf(&self, ip: std::net::IpAddr) -> Leaf {
        let sans = vec![
            SanType::IpAddress(ip),
            SanType::DnsName("localhost".try_into().unwrap()),
        ];
        self.issue_with_sans(String::new(), sans, false)
    }

    fn issue(&self, uri: &str, dns_names: Vec<String>, expired: bool) -> Leaf {
        let mut sans = vec![SanType::URI(uri.try_into().unwrap())];
        for name in dns_names {
            sans.push(SanType::DnsName(name.try_into().unwrap()));
        }
        self.issue_with_sans(uri.to_owned(), sans, expired)
    }

    fn issue_with_sans(&self, uri: String, sans: Vec<SanType>, expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "test leaf");
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(SerialNumber::from(serial));
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            fingerprint: isthmus_api::tls::fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: format!("{serial:x}"),
            uri,
        }
    }
}

impl Leaf {
    /// The agent's leaf answer for `service`, carrying this certificate.
    pub fn leaf_cert(&self, service: &str) -> LeafCert {
        LeafCert {
            serial_number: self.serial.clone(),
            cert_pem: self.cert_pem.clone(),
            private_key_pem: self.key_pem.clone(),
            service: service.into(),
            service_uri: self.uri.clone(),
            valid_after: "2000-01-01T00:00:00Z".into(),
            valid_before: "2099-01-01T00:00:00Z".into(),
            create_index: 1,
            modify_index: 1,
        }
    }
}
