//! TLS identity helpers shared by the agent, the gateway and the proxy:
//! PEM loading, fingerprints, SPIFFE SANs, and verifiers that pin a
//! certificate or check a chain against a specific set of roots.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// The crypto provider every isthmus TLS config uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// SHA-256 of a DER certificate, lower-case hex: the pinned fingerprint.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every certificate in a PEM bundle; at least one.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("invalid certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError("no certificate found in PEM".into()));
    }
    Ok(certs)
}

pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError(format!("invalid private key PEM: {e}")))
}

/// A root store holding every certificate of every PEM given.
pub fn root_store<'a>(
    pems: impl IntoIterator<Item = &'a String>,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for pem in pems {
        for cert in certs_from_pem(pem)? {
            roots
                .add(cert)
                .map_err(|e| TlsError(format!("unusable CA certificate: {e}")))?;
        }
    }
    Ok(roots)
}

/// A certificate chain and key for presenting in handshakes.
pub fn certified_key(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let chain = certs_from_pem(cert_pem)?;
    let key = provider()
        .key_provider
        .load_private_key(key_from_pem(key_pem)?)
        .map_err(|e| TlsError(format!("unusable private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, key);
    certified
        .keys_match()
        .map_err(|e| TlsError(format!("private key does not match the certificate: {e}")))?;
    Ok(Arc::new(certified))
}

/// The URI SANs of a certificate (SPIFFE IDs).
pub fn uri_sans(der: &[u8]) -> Result<Vec<String>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError(format!("invalid certificate: {e}")))?;
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| TlsError(format!("invalid SAN extension: {e}")))?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect())
}

/// Verifies that `end_entity` (with `intermediates`) chains to `roots` and
/// is valid for client authentication now.
pub fn verify_client_chain(
    roots: Arc<RootCertStore>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), TlsError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError(format!("building verifier: {e}")))?;
    verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| TlsError(format!("client certificate rejected: {e}")))
}

/// Verifies a server against the given roots and server name *and* pins the
/// exact certificate by its SHA-256 fingerprint: a peering token names both,
/// so a certificate that merely chains to the CA is not enough.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    fingerprint: String,
}

impl PinnedServerVerifier {
    pub fn new(
        root_pems: &[String],
        fingerprint: &str,
    ) -> Result<Arc<PinnedServerVerifier>, TlsError> {
        let roots = Arc::new(root_store(root_pems)?);
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| TlsError(format!("building verifier: {e}")))?;
        Ok(Arc::new(PinnedServerVerifier {
            inner,
            fingerprint: fingerprint.to_ascii_lowercase(),
        }))
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if fingerprint(end_entity) != self.fingerprint {
            return Err(rustls::Error::General(format!(
                "the gateway's certificate (SHA-256 {}) does not match the token's fingerprint {}",
                fingerprint(end_entity),
                self.fingerprint
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Client config for dialing a peer's gateway: pinned server verification,
/// our gateway certificate as the client certificate, HTTP/2.
pub fn peering_client_config(
    root_pems: &[String],
    fingerprint: &str,
    client: Arc<rustls::sign::CertifiedKey>,
) -> Result<rustls::ClientConfig, TlsError> {
    let verifier = PinnedServerVerifier::new(root_pems, fingerprint)?;
    let resolver = Arc::new(SingleCert(client));
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Client config for an established peering: the server must chain to the
/// peer's pinned roots and present the peering server name (no fingerprint
/// pin, so the peer may renew its gateway certificate); HTTP/2.
pub fn peer_client_config(
    root_pems: &[String],
    client: Arc<rustls::sign::CertifiedKey>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = Arc::new(root_store(root_pems)?);
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCert(client)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Always presents one certificate.
#[derive(Debug)]
pub struct SingleCert(pub Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for SingleCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for SingleCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}
