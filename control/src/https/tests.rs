use super::*;
use crate::store::Store;

const TD: &str = "11111111-2222-3333-4444-555555555555.isthmus";

fn ca_with_leaf_ttl(ttl: Duration) -> Arc<CertificateAuthority> {
    let store = Store::in_memory().unwrap();
    Arc::new(crate::ca::open(&store, TD, "dc1", ttl, Duration::from_secs(3600)).unwrap())
}

fn names() -> ApiCertNames {
    ApiCertNames::new(
        "node-1",
        "10.1.2.3".parse().unwrap(),
        "127.0.0.2:8501".parse().unwrap(),
    )
}

fn https_on() -> HttpsConfig {
    HttpsConfig {
        addr: Some("127.0.0.1:0".parse().unwrap()),
        ..HttpsConfig::default()
    }
}

#[test]
fn settings_that_cannot_work_are_refused_with_a_reason() {
    assert!(HttpsConfig::default().validate().is_ok());
    assert!(https_on().validate().is_ok());
    let half = HttpsConfig {
        cert_file: Some("/c.pem".into()),
        ..https_on()
    };
    assert!(half
        .validate()
        .unwrap_err()
        .contains("cert_file and key_file go together"));
    let without_addr = HttpsConfig {
        verify_incoming: true,
        ca_file: Some("/ca.pem".into()),
        ..HttpsConfig::default()
    };
    let e = without_addr.validate().unwrap_err();
    assert!(
        e.contains("ca_file, verify_incoming only apply to the HTTPS API"),
        "{e}"
    );
    let fast = HttpsConfig {
        handshake_timeout: Duration::ZERO,
        ..https_on()
    };
    assert!(fast
        .validate()
        .unwrap_err()
        .contains("https_handshake_timeout"));
}

#[test]
fn the_ca_issued_certificate_names_the_node_addresses_localhost_and_loopback() {
    let ca = ca_with_leaf_ttl(Duration::from_secs(3600));
    let tls = prepare(&https_on(), &ca, names()).unwrap();
    let der = tls.resolver.current().cert[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap().value;
    let text = format!("{:?}", sans.general_names);
    for expected in [
        "localhost",
        "[10, 1, 2, 3]",
        "[127, 0, 0, 2]",
        "[127, 0, 0, 1]",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(tls.renewal.is_some());
}

#[test]
fn unreadable_operator_files_are_refused_naming_the_file() {
    let ca = ca_with_leaf_ttl(Duration::from_secs(3600));
    let config = HttpsConfig {
        cert_file: Some("/nonexistent/api.pem".into()),
        key_file: Some("/nonexistent/api-key.pem".into()),
        ..https_on()
    };
    let e = prepare(&config, &ca, names()).err().unwrap().to_string();
    assert!(e.starts_with("cert_file /nonexistent/api.pem:"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let config = HttpsConfig {
        verify_incoming: true,
        ca_file: Some(junk),
        ..https_on()
    };
    let e = prepare(&config, &ca, names()).err().unwrap().to_string();
    assert!(e.starts_with("ca_file "), "{e}");
}

#[test]
fn operator_files_are_served_as_given_and_never_renewed() {
    let ca = ca_with_leaf_ttl(Duration::from_secs(3600));
    let issued = ca
        .issue_api_cert("n", &["api.example.com".into()], &[])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let config = HttpsConfig {
        cert_file: Some(cert),
        key_file: Some(key),
        ..https_on()
    };
    let tls = prepare(&config, &ca, names()).unwrap();
    assert!(tls.renewal.is_none());
    let served = tls.resolver.current().cert[0].clone();
    let given = isthmus_api::tls::certs_from_pem(&issued.cert_pem).unwrap();
    assert_eq!(served, given[0]);
}

#[tokio::test(start_paused = true)]
async fn the_ca_issued_certificate_is_renewed_two_thirds_in_and_swapped_live() {
    let ca = ca_with_leaf_ttl(Duration::from_secs(30));
    let tls = prepare(&https_on(), &ca, names()).unwrap();
    let first = tls.resolver.current().cert[0].clone();
    let (names, renew_at) = tls.renewal.unwrap();
    let due = renew_at - tokio::time::Instant::now();
    assert!(
        due > Duration::from_secs(19) && due <= Duration::from_secs(20),
        "{due:?}"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(keep_renewed(
        ca.clone(),
        tls.resolver.clone(),
        names,
        renew_at,
        stopped,
    ));
    tokio::time::sleep(due - Duration::from_secs(1)).await;
    assert_eq!(tls.resolver.current().cert[0], first, "renewed too early");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(
        tls.resolver.current().cert[0],
        first,
        "not renewed when due"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[test]
fn the_file_keys_and_the_flags_set_the_https_listener() {
    use crate::config::{AgentConfig, Settings, Source};
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.hcl");
    std::fs::write(
        &path,
        "https_addr = \"0.0.0.0:8501\"\ncert_file = \"/etc/isthmus/api.pem\"\n\
         key_file = \"/etc/isthmus/api-key.pem\"\nverify_incoming = true\n\
         limits {\n  https_handshake_timeout = \"2s\"\n}\n",
    )
    .unwrap();
    let mut config = AgentConfig::dev();
    Settings::load(&path)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.https.addr, Some("0.0.0.0:8501".parse().unwrap()));
    assert!(config.https.verify_incoming);
    assert_eq!(config.https.handshake_timeout, Duration::from_secs(2));
    config.validate().unwrap();

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: Settings,
    }
    let flags = Flags::parse_from([
        "agent",
        "--https-addr",
        "127.0.0.1:9501",
        "--verify-incoming=false",
        "--ca-file",
        "/ca.pem",
    ]);
    flags.settings.apply(&mut config, Source::Flags).unwrap();
    assert_eq!(config.https.addr, Some("127.0.0.1:9501".parse().unwrap()));
    assert!(!config.https.verify_incoming);
    assert_eq!(config.https.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    let bare = Flags::parse_from(["agent", "--verify-incoming", "--https-addr", "127.0.0.1:0"]);
    assert_eq!(bare.settings.verify_incoming, Some(true));
    let mut off = AgentConfig::dev();
    Flags::parse_from(["agent", "--cert-file", "/c.pem", "--key-file", "/k.pem"])
        .settings
        .apply(&mut off, Source::Flags)
        .unwrap();
    assert!(off.validate().unwrap_err().contains("give https_addr"));
}
