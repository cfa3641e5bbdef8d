//! Test support: a throwaway PKI (rcgen), a stub agent (axum) serving the
//! leaf, the proxy view and upstream views as blocking queries, local
//! applications (HTTP echo with slow and upgrade endpoints, TCP echo), and
//! clients that call a proxy the way a workload or another sidecar would.
#![allow(dead_code)]

pub mod apps;
pub mod clients;
pub mod stub;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use isthmus_api::ca::LeafCert;
use isthmus_api::config_entry::{ConfigEntry, ServiceIntentions};
use isthmus_api::proxy::{PeerTrust, ProxyView, UpstreamView};
use isthmus_proxy::{Protocol, ProxyConfig, RunningProxy, UpstreamSpec};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};

pub use apps::*;
pub use clients::*;
pub use stub::*;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

pub const CLUSTER: &str = "cluster-01";
pub const TD: &str = "aaaa.isthmus";
pub const PEER: &str = "cluster-02";
pub const PEER_TD: &str = "bbbb.isthmus";

/// A CA that can issue SPIFFE leaves.
pub struct Ca {
    pub pem: String,
    pub trust_domain: String,
    pub cluster: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct TestLeaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: String,
    pub uri: String,
}

static SERIAL: AtomicU64 = AtomicU64::new(1000);

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

    pub fn local() -> Ca {
        Ca::new(TD, CLUSTER)
    }

    pub fn peer() -> Ca {
        Ca::new(PEER_TD, PEER)
    }

    pub fn service_uri(&self, service: &str) -> String {
        format!(
            "spiffe://{}/ns/default/dc/{}/svc/{service}",
            self.trust_domain, self.cluster
        )
    }

    /// A leaf for `service`, valid now.
    pub fn leaf(&self, service: &str) -> TestLeaf {
        self.leaf_for_uri(&self.service_uri(service), false)
    }

    /// A leaf for `service` that expired long ago.
    pub fn expired_leaf(&self, service: &str) -> TestLeaf {
        self.leaf_for_uri(&self.service_uri(service), true)
    }

    pub fn leaf_for_uri(&self, uri: &str, expired: bool) -> TestLeaf {
        let key = KeyPair::generate().unwrap();
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "test leaf");
        params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
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
        TestLeaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: format!("{serial:x}"),
            uri: uri.into(),
        }
    }

    /// What the agent's peers list says about this CA's cluster; `backend`
    /// is exported to it.
    pub fn as_peer(&self, name: &str) -> PeerTrust {
        self.as_peer_exporting(name, &["backend"])
    }

    /// Like [`Ca::as_peer`], with the given services exported to the peer
    /// (and its identity allowed to connect to them).
    pub fn as_peer_exporting(&self, name: &str, exported: &[&str]) -> PeerTrust {
        let mut peer = self.as_peer_viewing(name, exported);
        peer.connectable_services = peer.exported_services.clone();
        peer
    }

    /// The given services exported to the peer, whose identity may view
    /// them but not connect to them (no `can_connect`).
    pub fn as_peer_viewing(&self, name: &str, exported: &[&str]) -> PeerTrust {
        PeerTrust {
            name: name.into(),
            trust_domain: self.trust_domain.clone(),
            datacenter: self.cluster.clone(),
            root_pems: vec![self.pem.clone()],
            exported_services: exported.iter().map(|s| s.to_string()).collect(),
            connectable_services: Vec::new(),
        }
    }
}

impl TestLeaf {
    /// The agent's leaf answer for `service`.
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

/// A `service-intentions` entry from its JSON form.
pub fn intentions(json: serde_json::Value) -> ServiceIntentions {
    match ConfigEntry::from_json(json).unwrap() {
        ConfigEntry::ServiceIntentions(entry) => entry,
        other => panic!("not service-intentions: {other:?}"),
    }
}

/// `destination` allows (or denies) each of `sources` at L4.
pub fn l4(destination: &str, sources: &[(&str, &str)]) -> ServiceIntentions {
    let sources: Vec<_> = sources
        .iter()
        .map(|(name, action)| serde_json::json!({ "Name": name, "Action": action }))
        .collect();
    intentions(serde_json::json!({
        "Kind": "service-intentions",
        "Name": destination,
        "Sources": sources,
    }))
}

/// The local cluster's view: its CA, the given peers, the intentions, default deny.
pub fn view(ca: &Ca, peers: Vec<PeerTrust>, entries: Vec<ServiceIntentions>) -> ProxyView {
    ProxyView {
        cluster: ca.cluster.clone(),
        trust_domain: ca.trust_domain.clone(),
        default_allow: false,
        local_root_pems: vec![ca.pem.clone()],
        peers,
        intentions: entries,
    }
}

/// How to reach `service` (served by a sidecar with `ca`'s identities) at `endpoints`.
pub fn upstream_view(ca: &Ca, service: &str, endpoints: &[SocketAddr]) -> UpstreamView {
    UpstreamView {
        service: service.into(),
        peer: None,
        trust_domain: ca.trust_domain.clone(),
        sni: isthmus_api::naming::local_sni(service, &ca.cluster, &ca.trust_domain),
        spiffe_id: ca.service_uri(service),
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        reason: String::new(),
    }
}

/// A proxy for `service` in front of `app`, with all listeners on
/// ephemeral loopback ports and a short drain.
pub fn proxy_config(
    stub: &StubAgent,
    service: &str,
    app: SocketAddr,
    protocol: Protocol,
    upstreams: &[&str],
) -> ProxyConfig {
    let mut config = ProxyConfig::loopback(stub.url(), service, app);
    config.protocol = protocol;
    config.drain_timeout = Duration::from_secs(2);
    config.upstreams = upstreams
        .iter()
        .map(|u| u.parse::<UpstreamSpec>().unwrap())
        .collect();
    config
}

/// Starts a proxy and waits until it is ready.
pub async fn start_ready(config: ProxyConfig) -> RunningProxy {
    let proxy = isthmus_proxy::start(config).await.unwrap();
    tokio::time::timeout(WAIT, proxy.ready())
        .await
        .expect("the proxy did not become ready")
        .unwrap();
    proxy
}

/// Parses Prometheus text exposition into `series -> value`, failing on
/// any line that is not a comment or `name{labels} value`.
pub fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let metric = name.split('{').next().unwrap();
        assert!(
            !metric.is_empty()
                && metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let labels = &name[metric.len()..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line:?}"
        );
        series.insert(name.to_owned(), value);
    }
    series
}

/// GET on a proxy's admin listener: status and body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let client = isthmus_runtime::client::Client::new(&admin.to_string()).unwrap();
    let response = tokio::time::timeout(WAIT, client.send(http::Method::GET, path, None))
        .await
        .expect("admin hung")
        .unwrap();
    (
        response.status.as_u16(),
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

pub async fn metrics(proxy: &RunningProxy) -> HashMap<String, f64> {
    let (status, text) = admin_get(proxy.admin_addr(), "/metrics").await;
    assert_eq!(status, 200);
    parse_prometheus(&text)
}

pub async fn config_json(proxy: &RunningProxy) -> serde_json::Value {
    let (status, text) = admin_get(proxy.admin_addr(), "/config").await;
    assert_eq!(status, 200);
    serde_json::from_str(&text).unwrap()
}
