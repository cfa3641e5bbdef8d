//! Mutual TLS between workloads: verifiers that decide trust by SPIFFE ID.
//!
//! A client certificate is checked only against the roots of the trust
//! domain its own SPIFFE ID names: a peer's CA cannot vouch for an identity
//! in our trust domain (or another peer's), which a single merged root
//! store would allow. A server must chain to the expected trust domain's
//! roots *and* carry exactly the expected SPIFFE ID.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use isthmus_api::naming::SpiffeId;
use isthmus_api::tls::{provider, root_store, uri_sans, TlsError};

/// Who may be trusted, by trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    pub local_trust_domain: String,
    domains: HashMap<String, TrustDomain>,
}

#[derive(Debug, Clone)]
struct TrustDomain {
    /// The peering's name, or `None` for our own trust domain.
    peer: Option<String>,
    roots: Arc<RootCertStore>,
}

impl TrustBundle {
    /// Our own trust domain and roots; add peers with [`TrustBundle::add_peer`].
    pub fn new(
        local_trust_domain: &str,
        local_root_pems: &[String],
    ) -> Result<TrustBundle, TlsError> {
        let mut domains = HashMap::new();
        domains.insert(
            local_trust_domain.to_owned(),
            TrustDomain {
                peer: None,
                roots: Arc::new(root_store(local_root_pems)?),
            },
        );
        Ok(TrustBundle {
            local_trust_domain: local_trust_domain.to_owned(),
            domains,
        })
    }

    pub fn add_peer(
        &mut self,
        peer: &str,
        trust_domain: &str,
        root_pems: &[String],
    ) -> Result<(), TlsError> {
        if trust_domain == self.local_trust_domain {
            return Err(TlsError(format!(
                "peer {peer} claims our own trust domain {trust_domain}"
            )));
        }
        self.domains.insert(
            trust_domain.to_owned(),
            TrustDomain {
                peer: Some(peer.to_owned()),
                roots: Arc::new(root_store(root_pems)?),
            },
        );
        Ok(())
    }

    /// The roots of `trust_domain`, if trusted.
    pub fn roots(&self, trust_domain: &str) -> Option<Arc<RootCertStore>> {
        self.domains.get(trust_domain).map(|d| d.roots.clone())
    }

    /// `Some(None)` for our own trust domain, `Some(Some(peer))` for a
    /// peer's, `None` for an unknown one.
    pub fn peer_of(&self, trust_domain: &str) -> Option<Option<&str>> {
        self.domains.get(trust_domain).map(|d| d.peer.as_deref())
    }
}

/// The single SPIFFE ID in a certificate's URI SANs.
pub fn spiffe_id_of(der: &CertificateDer<'_>) -> Result<SpiffeId, TlsError> {
    let uris: Vec<String> = uri_sans(der)?
        .into_iter()
        .filter(|u| u.starts_with("spiffe://"))
        .collect();
    match uris.as_slice() {
        [one] => SpiffeId::parse(one).map_err(|e| TlsError(e.to_string())),
        [] => Err(TlsError("certificate has no SPIFFE ID".into())),
        _ => Err(TlsError("certificate has more than one SPIFFE ID".into())),
    }
}

/// Server side of inbound mTLS: requires a client certificate and checks it
/// against the roots of the trust domain it claims.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    verifiers: HashMap<String, Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl SpiffeClientVerifier {
    pub fn new(bundle: &TrustBundle) -> Result<Arc<SpiffeClientVerifier>, TlsError> {
        let provider = provider();
        let mut verifiers = HashMap::new();
        for (trust_domain, domain) in &bundle.domains {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(domain.roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| TlsError(format!("roots of {trust_domain}: {e}")))?;
            verifiers.insert(trust_domain.clone(), verifier);
        }
        Ok(Arc::new(SpiffeClientVerifier {
            verifiers,
            provider,
        }))
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id = spiffe_id_of(end_entity).map_err(|e| rustls::Error::General(e.0))?;
        let verifier = self.verifiers.get(id.trust_domain()).ok_or_else(|| {
            rustls::Error::General(format!("trust domain {} is not trusted", id.trust_domain()))
        })?;
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client side of outbound mTLS: the server must chain to `roots` and carry
/// exactly `expected` as its SPIFFE ID (the server name is not used).
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    pub fn new(roots: Arc<RootCertStore>, expected: &SpiffeId) -> Arc<SpiffeServerVerifier> {
        Arc::new(SpiffeServerVerifier {
            roots,
            expected: expected.to_string(),
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = spiffe_id_of(end_entity).map_err(|e| rustls::Error::General(e.0))?;
        if id.to_string() != self.expected {
            return Err(rustls::Error::General(format!(
                "server identity {id} is not the expected {}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Inbound server config: our leaf, SPIFFE-checked client certificates,
/// TLS 1.3 and 1.2, ALPN h2 and http/1.1.
pub fn inbound_server_config(
    identity: Arc<rustls::sign::CertifiedKey>,
    bundle: &TrustBundle,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(SpiffeClientVerifier::new(bundle)?)
        .with_cert_resolver(Arc::new(isthmus_api::tls::SingleCert(identity)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Outbound client config: our leaf as the client certificate, the
/// upstream's expected identity checked; `alpn` as the protocol needs.
pub fn outbound_client_config(
    identity: Arc<rustls::sign::CertifiedKey>,
    roots: Arc<RootCertStore>,
    expected: &SpiffeId,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(SpiffeServerVerifier::new(roots, expected))
        .with_client_cert_resolver(Arc::new(isthmus_api::tls::SingleCert(identity)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(trust_domain: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}").try_into().unwrap(),
        )];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, uri: &str) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn bundle(local: &Ca, peer: &Ca) -> TrustBundle {
        let mut bundle =
            TrustBundle::new("local.isthmus", std::slice::from_ref(&local.pem)).unwrap();
        bundle
            .add_peer(
                "cluster-02",
                "peer.isthmus",
                std::slice::from_ref(&peer.pem),
            )
            .unwrap();
        bundle
    }

    #[test]
    fn clients_are_checked_against_their_own_trust_domains_roots() {
        let (local, peer) = (ca("local.isthmus"), ca("peer.isthmus"));
        let verifier = SpiffeClientVerifier::new(&bundle(&local, &peer)).unwrap();
        let now = UnixTime::now();
        let ok = |cert: &CertificateDer<'_>| verifier.verify_client_cert(cert, &[], now).is_ok();
        assert!(ok(&leaf(
            &local,
            "spiffe://local.isthmus/ns/default/dc/c1/svc/web"
        )));
        assert!(ok(&leaf(
            &peer,
            "spiffe://peer.isthmus/ns/default/dc/c2/svc/web"
        )));
        // A peer's CA cannot vouch for an identity in our trust domain...
        assert!(!ok(&leaf(
            &peer,
            "spiffe://local.isthmus/ns/default/dc/c1/svc/web"
        )));
        // ...nor ours for the peer's, nor anyone for an unknown domain.
        assert!(!ok(&leaf(
            &local,
            "spiffe://peer.isthmus/ns/default/dc/c2/svc/web"
        )));
        assert!(!ok(&leaf(
            &local,
            "spiffe://other.isthmus/ns/default/dc/c3/svc/web"
        )));
        assert!(!ok(&leaf(
            &ca("local.isthmus"),
            "spiffe://local.isthmus/ns/default/dc/c1/svc/web"
        )));
    }

    #[test]
    fn servers_must_carry_the_expected_identity() {
        let local = ca("local.isthmus");
        let roots = Arc::new(root_store(std::slice::from_ref(&local.pem)).unwrap());
        let expected = SpiffeId::service("local.isthmus", "c1", "backend");
        let verifier = SpiffeServerVerifier::new(roots, &expected);
        let name = ServerName::try_from("backend.default.c1.internal.local.isthmus").unwrap();
        let check = |cert: &CertificateDer<'_>| {
            verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
        };
        assert!(check(&leaf(
            &local,
            "spiffe://local.isthmus/ns/default/dc/c1/svc/backend"
        ))
        .is_ok());
        let other = check(&leaf(
            &local,
            "spiffe://local.isthmus/ns/default/dc/c1/svc/intruder",
        ))
        .unwrap_err();
        assert!(other.to_string().contains("is not the expected"), "{other}");
        assert!(check(&leaf(
            &ca("local.isthmus"),
            "spiffe://local.isthmus/ns/default/dc/c1/svc/backend"
        ))
        .is_err());
    }

    #[test]
    fn a_peer_cannot_claim_our_trust_domain() {
        let local = ca("local.isthmus");
        let mut bundle =
            TrustBundle::new("local.isthmus", std::slice::from_ref(&local.pem)).unwrap();
        assert!(bundle
            .add_peer("evil", "local.isthmus", &[ca("x").pem])
            .is_err());
        assert_eq!(bundle.peer_of("local.isthmus"), Some(None));
        assert_eq!(bundle.peer_of("nope"), None);
    }
}
