//! The CA: roots in Consul's shape, leaf certificates that verify against
//! the root with rustls/webpki and carry the service's SPIFFE ID, caching,
//! and renewal observed through a blocking query.

use std::sync::Arc;
use std::time::Duration;

use isthmus_tests::api::get;
use isthmus_tests::TestAgent;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde_json::Value;
use x509_parser::extensions::GeneralName;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn verifier(root_pem: &str) -> Arc<dyn ClientCertVerifier> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(root_pem.as_bytes()).unwrap())
        .unwrap();
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap()
}

fn uri_sans(der: &CertificateDer<'_>) -> Vec<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("leaf has a SAN");
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

async fn leaf(agent: &TestAgent, service: &str) -> (Value, u64) {
    get(
        &agent.client,
        &format!("/v1/agent/connect/ca/leaf/{service}"),
    )
    .await
}

#[tokio::test]
async fn roots_have_consuls_shape() {
    let agent = TestAgent::start().await;
    let (roots, _) = get(&agent.client, "/v1/connect/ca/roots").await;
    let (agent_roots, _) = get(&agent.client, "/v1/agent/connect/ca/roots").await;
    assert_eq!(roots, agent_roots);
    let trust_domain = roots["TrustDomain"].as_str().unwrap();
    assert!(trust_domain.ends_with(".isthmus"), "{trust_domain}");
    let root = &roots["Roots"][0];
    assert_eq!(roots["ActiveRootID"], root["ID"]);
    assert_eq!(root["Active"], true);
    assert!(root["RootCert"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let der =
        CertificateDer::from_pem_slice(root["RootCert"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(uri_sans(&der), [format!("spiffe://{trust_domain}")]);
}

#[tokio::test]
async fn leaf_verifies_against_the_root_with_the_service_spiffe_id() {
    let agent = TestAgent::start().await;
    let (roots, _) = get(&agent.client, "/v1/connect/ca/roots").await;
    let trust_domain = roots["TrustDomain"].as_str().unwrap();
    let (leaf, _) = leaf(&agent, "web").await;

    let expected = format!("spiffe://{trust_domain}/ns/default/dc/dc1/svc/web");
    assert_eq!(leaf["Service"], "web");
    assert_eq!(leaf["ServiceURI"], expected.as_str());
    for field in ["SerialNumber", "ValidAfter", "ValidBefore", "PrivateKeyPEM"] {
        assert!(
            leaf[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}"
        );
    }

    let cert =
        CertificateDer::from_pem_slice(leaf["CertPEM"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(uri_sans(&cert), [expected]);
    verifier(roots["Roots"][0]["RootCert"].as_str().unwrap())
        .verify_client_cert(&cert, &[], UnixTime::now())
        .expect("leaf chains to the cluster root");

    // The private key belongs to the certificate.
    let key =
        PrivateKeyDer::from_pem_slice(leaf["PrivateKeyPEM"].as_str().unwrap().as_bytes()).unwrap();
    let signing_key = provider().key_provider.load_private_key(key).unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![cert.clone()], signing_key);
    certified.keys_match().expect("key matches the certificate");

    // Another cluster's root does not vouch for it.
    let other = TestAgent::start().await;
    let (other_roots, _) = get(&other.client, "/v1/connect/ca/roots").await;
    assert_ne!(other_roots["TrustDomain"], roots["TrustDomain"]);
    assert!(
        verifier(other_roots["Roots"][0]["RootCert"].as_str().unwrap())
            .verify_client_cert(&cert, &[], UnixTime::now())
            .is_err()
    );
}

#[tokio::test]
async fn leaves_are_cached_and_renewed_before_expiry() {
    let agent = TestAgent::start_with(|c| c.leaf_cert_ttl = Duration::from_secs(3)).await;
    let (first, index) = leaf(&agent, "web").await;
    let (again, _) = leaf(&agent, "web").await;
    assert_eq!(
        first["SerialNumber"], again["SerialNumber"],
        "cached until renewal"
    );

    // A blocking query on the leaf returns the replacement at ~2/3 of its life.
    let (renewed, new_index) = get(
        &agent.client,
        &format!("/v1/agent/connect/ca/leaf/web?index={index}&wait=20s"),
    )
    .await;
    assert!(new_index > index);
    assert_ne!(renewed["SerialNumber"], first["SerialNumber"]);
    assert!(renewed["ValidBefore"].as_str() > first["ValidBefore"].as_str());
}

#[tokio::test]
async fn invalid_service_names_get_no_leaf() {
    let agent = TestAgent::start().await;
    let response = agent
        .client
        .send(
            http::Method::GET,
            "/v1/agent/connect/ca/leaf/bad.name",
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, 400);
}
