//! The agent's HTTPS API: its settings, its server certificate (issued by
//! the cluster CA for the node's addresses and renewed live, or operator
//! files) and the TLS configuration that optionally requires client
//! certificates. The listener itself is the plain one's accept loop with a
//! bounded TLS handshake in front (`isthmus_runtime::listen::serve_upgraded`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::ca::{CaError, CertificateAuthority};

/// Consul's `limits.https_handshake_timeout` default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before retrying a failed renewal.
const RENEW_RETRY: Duration = Duration::from_secs(10);
/// The shortest wait between two renewals, whatever the TTL.
const RENEW_MIN_WAIT: Duration = Duration::from_millis(500);

/// The HTTPS listener's settings; `addr: None` turns it off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    pub addr: Option<SocketAddr>,
    /// Operator-given server certificate and key (PEM); without them the
    /// cluster CA issues one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The CAs client certificates must chain to with `verify_incoming`
    /// (default: the cluster CA).
    pub ca_file: Option<PathBuf>,
    /// Require a client certificate.
    pub verify_incoming: bool,
    /// A connection's TLS handshake must complete within this.
    pub handshake_timeout: Duration,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        HttpsConfig {
            addr: None,
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify_incoming: false,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl HttpsConfig {
    /// Refuses combinations that cannot mean what the operator wanted.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(
                "cert_file and key_file go together: give both (an operator certificate) \
                 or neither (one issued by the cluster CA)"
                    .into(),
            );
        }
        if self.addr.is_none() {
            let set: Vec<&str> = [
                (self.cert_file.is_some(), "cert_file"),
                (self.key_file.is_some(), "key_file"),
                (self.ca_file.is_some(), "ca_file"),
                (self.verify_incoming, "verify_incoming"),
            ]
            .into_iter()
            .filter_map(|(on, key)| on.then_some(key))
            .collect();
            if !set.is_empty() {
                return Err(format!(
                    "{} only apply to the HTTPS API: give https_addr (--https-addr) too",
                    set.join(", ")
                ));
            }
        }
        if self.handshake_timeout < Duration::from_millis(10) {
            return Err("https_handshake_timeout must be at least 10ms".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("{what} {}: {problem}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("issuing the HTTPS API certificate: {0}")]
    Issue(#[from] CaError),
    #[error("the HTTPS API's TLS settings: {0}")]
    Tls(String),
}

/// Hands every handshake the certificate in force; renewal replaces it
/// whole, so a handshake never sees half of one.
#[derive(Debug)]
pub struct ApiCertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ApiCertResolver {
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for ApiCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the cluster CA puts in the API certificate: the node's addresses,
/// `localhost`, and the loopback addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCertNames {
    pub node_name: String,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ApiCertNames {
    /// For an agent advertising `advertise` and listening on `bound`.
    pub fn new(node_name: &str, advertise: IpAddr, bound: SocketAddr) -> ApiCertNames {
        let mut ips = vec![advertise];
        if !bound.ip().is_unspecified() {
            ips.push(bound.ip());
        }
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        ips.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let mut unique = Vec::new();
        for ip in ips {
            if !unique.contains(&ip) {
                unique.push(ip);
            }
        }
        ApiCertNames {
            node_name: node_name.to_owned(),
            dns_names: vec!["localhost".into()],
            ips: unique,
        }
    }
}

/// The HTTPS listener's TLS side, ready to accept.
pub struct ApiTls {
    pub config: Arc<ServerConfig>,
    pub resolver: Arc<ApiCertResolver>,
    /// Set when the cluster CA issued the certificate: what to renew it
    /// for, and when.
    pub renewal: Option<(ApiCertNames, tokio::time::Instant)>,
}

/// Builds the HTTPS listener's TLS configuration.
pub fn prepare(
    config: &HttpsConfig,
    ca: &CertificateAuthority,
    names: ApiCertNames,
) -> Result<ApiTls, HttpsError> {
    let (first, renewal) = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let cert_pem = read("cert_file", cert)?;
            let key_pem = read("key_file", key)?;
            let certified = isthmus_api::tls::certified_key(&cert_pem, &key_pem).map_err(|e| {
                HttpsError::File {
                    what: "cert_file",
                    path: cert.clone(),
                    problem: e.to_string(),
                }
            })?;
            (certified, None)
        }
        _ => {
            let (certified, renew_at) = issue(ca, &names)?;
            (certified, Some((names, renew_at)))
        }
    };
    let resolver = Arc::new(ApiCertResolver {
        current: ArcSwap::new(first),
    });
    let provider = isthmus_api::tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Tls(e.to_string()))?;
    let builder = if config.verify_incoming {
        let pems = match &config.ca_file {
            Some(path) => vec![read("ca_file", path)?],
            None => ca.root_pems(),
        };
        let roots = isthmus_api::tls::root_store(&pems).map_err(|e| match &config.ca_file {
            Some(path) => HttpsError::File {
                what: "ca_file",
                path: path.clone(),
                problem: e.to_string(),
            },
            None => HttpsError::Tls(e.to_string()),
        })?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| HttpsError::Tls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server = builder.with_cert_resolver(resolver.clone());
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ApiTls {
        config: Arc::new(server),
        resolver,
        renewal,
    })
}

fn read(what: &'static str, path: &Path) -> Result<String, HttpsError> {
    std::fs::read_to_string(path).map_err(|e| HttpsError::File {
        what,
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

fn issue(
    ca: &CertificateAuthority,
    names: &ApiCertNames,
) -> Result<(Arc<CertifiedKey>, tokio::time::Instant), HttpsError> {
    let cert = ca.issue_api_cert(&names.node_name, &names.dns_names, &names.ips)?;
    let certified = isthmus_api::tls::certified_key(&cert.cert_pem, &cert.key_pem)
        .map_err(|e| HttpsError::Tls(e.to_string()))?;
    Ok((certified, cert.renew_at))
}

/// Reissues the CA-issued API certificate two thirds into its life and
/// swaps it in, until `stop`; connections already open keep theirs.
pub async fn keep_renewed(
    ca: Arc<CertificateAuthority>,
    resolver: Arc<ApiCertResolver>,
    names: ApiCertNames,
    renew_at: tokio::time::Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut renew_at = renew_at;
    loop {
        let earliest = tokio::time::Instant::now() + RENEW_MIN_WAIT;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep_until(renew_at.max(earliest)) => {}
        }
        match issue(&ca, &names) {
            Ok((certified, next)) => {
                resolver.current.store(certified);
                renew_at = next;
                tracing::info!("renewed the HTTPS API certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the HTTPS API certificate failed; retrying");
                renew_at = tokio::time::Instant::now() + RENEW_RETRY;
            }
        }
    }
}

#[cfg(test)]
mod tests;
