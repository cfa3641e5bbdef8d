//! The peering listener's TLS: a server config built from the agent's view
//! (the gateway certificate, ALPN h2 + http/1.1, TLS 1.3 and 1.2, a client
//! certificate required) and the client chain captured per connection.
//!
//! The handshake accepts any client chain whose handshake signature is
//! valid. Which roots it must chain to depends on *which* peer is calling,
//! and during establishment the agent does not know the peer's roots yet;
//! so the chain is checked per request against the peers in the current
//! view (see `peering.rs`).

use std::sync::{Arc, OnceLock};

use isthmus_api::gateway::GatewayView;
use isthmus_api::naming::SpiffeId;
use isthmus_api::tls::{certified_key, fingerprint, uri_sans, SingleCert, TlsError};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// The server config for peering connections, from the view's certificate.
pub(crate) fn server_config(view: &GatewayView) -> Result<Arc<ServerConfig>, TlsError> {
    let key = certified_key(&view.certificate_pem, &view.private_key_pem)?;
    let provider = isthmus_api::tls::provider();
    let verifier = Arc::new(AnyClientCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCert(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Requires a client certificate, offers no CA hints and checks only that
/// the client holds the certificate's key (the handshake signature).
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate chain a peering client presented.
#[derive(Debug)]
pub(crate) struct ClientChain {
    pub(crate) end_entity: CertificateDer<'static>,
    pub(crate) intermediates: Vec<CertificateDer<'static>>,
    /// SHA-256 of the end-entity certificate, lower-case hex.
    pub(crate) fingerprint: String,
    spiffe_id: OnceLock<Option<SpiffeId>>,
}

impl ClientChain {
    /// The chain of an established connection (always present: the
    /// handshake requires one).
    pub(crate) fn from_connection(conn: &rustls::ServerConnection) -> Option<ClientChain> {
        let (end_entity, intermediates) = conn.peer_certificates()?.split_first()?;
        Some(ClientChain {
            fingerprint: fingerprint(end_entity),
            end_entity: end_entity.clone(),
            intermediates: intermediates.to_vec(),
            spiffe_id: OnceLock::new(),
        })
    }

    /// The certificate's SPIFFE ID (mesh gateway or service), parsed on
    /// first use.
    pub(crate) fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id
            .get_or_init(|| {
                uri_sans(&self.end_entity)
                    .ok()?
                    .iter()
                    .find_map(|uri| SpiffeId::parse(uri).ok())
            })
            .as_ref()
    }

    /// The trust domain of the certificate's SPIFFE ID.
    pub(crate) fn trust_domain(&self) -> Option<&str> {
        self.spiffe_id().map(SpiffeId::trust_domain)
    }
}
