//! Certificates for the Envoy, nginx and HAProxy topologies: one CA, a server leaf
//! for the inbound hop and a client leaf for the outbound hop, each with a
//! SPIFFE URI SAN, written as PEM files into the run's scratch directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The trust domain of the bench's own CA.
pub const TRUST_DOMAIN: &str = "bench.isthmus";
/// The DNS name in the server leaf (the outbound hop's SNI and name check).
pub const SERVER_NAME: &str = "backend.bench.internal";

pub fn spiffe(service: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/dc/dc1/svc/{service}")
}

/// Paths of the PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Generates the CA and both leaves into `dir`.
pub fn generate(dir: &Path) -> Result<CertFiles> {
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "isthmus-bench CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |cn: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose| -> Result<_> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(
        "backend",
        vec![
            SanType::DnsName(SERVER_NAME.try_into()?),
            SanType::URI(spiffe("backend").as_str().try_into()?),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
    )
    .context("server leaf")?;
    let (client_cert, client_key) = leaf(
        "frontend",
        vec![SanType::URI(spiffe("frontend").as_str().try_into()?)],
        ExtendedKeyUsagePurpose::ClientAuth,
    )
    .context("client leaf")?;

    let files = CertFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    for (path, pem) in [
        (&files.ca, ca_cert.pem()),
        (&files.server_cert, server_cert),
        (&files.server_key, server_key),
        (&files.client_cert, client_cert),
        (&files.client_key, client_key),
    ] {
        std::fs::write(path, pem).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(files)
}
