//! Test support for the proxy: the views the stub agent serves it
//! (intentions, peers, upstreams), a proxy started on loopback, and
//! clients that call it the way a workload or another sidecar would; the
//! PKI, the stub agent, the toy applications and metric parsing come from
//! the shared test kit.
#![allow(dead_code, unused_imports)]

pub mod clients;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use isthmus_api::config_entry::{ConfigEntry, ServiceIntentions};
use isthmus_api::proxy::{PeerTrust, ProxyView, UpstreamView};
use isthmus_proxy::{Protocol, ProxyConfig, RunningProxy, UpstreamSpec};

pub use clients::*;
pub use isthmus_testkit::admin::{admin_get, admin_metrics, wait_for_metric};
pub use isthmus_testkit::apps::{HttpApp, TcpEcho};
pub use isthmus_testkit::metrics::parse_prometheus;
pub use isthmus_testkit::net::{closed_addr, wait_closed};
pub use isthmus_testkit::pki::{Ca, Leaf, CLUSTER, PEER, PEER_TD, TD};
pub use isthmus_testkit::process::{ready_line, sigterm_and_wait};
pub use isthmus_testkit::stub_agent::StubAgent;
pub use isthmus_testkit::wait::eventually;
pub use isthmus_testkit::WAIT;

/// The proxy view's entry for a peer cluster whose CA is `self` (what the
/// agent's peers list says about that cluster).
pub trait PeerTrustExt {
    /// `backend` exported to the peer `name`.
    fn as_peer(&self, name: &str) -> PeerTrust;
    /// The given services exported to the peer (and its identity allowed
    /// to connect to them).
    fn as_peer_exporting(&self, name: &str, exported: &[&str]) -> PeerTrust;
    /// The given services exported to the peer, whose identity may view
    /// them but not connect to them (no `can_connect`).
    fn as_peer_viewing(&self, name: &str, exported: &[&str]) -> PeerTrust;
}

impl PeerTrustExt for Ca {
    fn as_peer(&self, name: &str) -> PeerTrust {
        self.as_peer_exporting(name, &["backend"])
    }

    fn as_peer_exporting(&self, name: &str, exported: &[&str]) -> PeerTrust {
        let mut peer = self.as_peer_viewing(name, exported);
        peer.connectable_services = peer.exported_services.clone();
        peer
    }

    fn as_peer_viewing(&self, name: &str, exported: &[&str]) -> PeerTrust {
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
        protocol: None,
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

/// The proxy's metrics, parsed.
pub async fn metrics(proxy: &RunningProxy) -> HashMap<String, f64> {
    admin_metrics(proxy.admin_addr()).await
}

/// The proxy's `/config`, as JSON.
pub async fn config_json(proxy: &RunningProxy) -> serde_json::Value {
    let (status, text) = admin_get(proxy.admin_addr(), "/config").await;
    assert_eq!(status, 200);
    serde_json::from_str(&text).unwrap()
}
