//! The TLS settings of the agent API client: whom to trust (a CA file or
//! the system's trust store) and which certificate to present.

use std::path::Path;
use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt;
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{ClientError, Credentials};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client's TLS configuration. For a plain http address the files are
/// not read (nothing would use them) and nothing is trusted.
pub(super) fn client_config(
    https: bool,
    credentials: &Credentials,
) -> Result<ClientConfig, ClientError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Settings(format!("TLS: {e}")))?;
    if !https {
        return Ok(builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth());
    }
    let builder = match &credentials.ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path, "CA file")? {
                roots.add(cert).map_err(|e| {
                    ClientError::Settings(format!("CA file {}: {e}", path.display()))
                })?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_native_roots().map_err(|e| {
            ClientError::Settings(format!(
                "no CA certificates to verify the agent with: {e} (give -ca-file or CONSUL_CACERT)"
            ))
        })?,
    };
    match (&credentials.client_cert, &credentials.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ClientError::Settings(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Settings(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bad = |e: String| ClientError::Settings(format!("{what} {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certs)
}
