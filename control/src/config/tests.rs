use super::*;

#[test]
fn gateway_cert_ttl_is_bounded() {
    let mut config = AgentConfig::dev();
    let layer = Settings {
        gateway_cert_ttl: Some("3s".into()),
        ..Settings::default()
    };
    layer.apply(&mut config, Source::Flags).unwrap();
    assert_eq!(config.gateway_cert_ttl, Duration::from_secs(3));
    assert!(config.validate().is_ok());
    config.gateway_cert_ttl = Duration::from_millis(500);
    assert!(config.validate().unwrap_err().contains("at least 1s"));
    config.gateway_cert_ttl = MAX_GATEWAY_CERT_TTL + Duration::from_secs(1);
    assert!(config.validate().unwrap_err().contains("too long"));
}

#[test]
fn etcd_settings_layer_and_are_checked() {
    let mut config = AgentConfig::dev();
    let file: Settings = hcl::from_str(
        "store = \"etcd\"\netcd_endpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n",
    )
    .unwrap();
    file.apply(&mut config, Source::File).unwrap();
    let flags = Settings {
        etcd_prefix: Some("/mesh/c1".into()),
        ..Settings::default()
    };
    flags.apply(&mut config, Source::Flags).unwrap();
    let etcd = config.etcd.clone().expect("etcd on");
    assert_eq!(etcd.endpoints.len(), 2);
    assert_eq!(etcd.prefix, "/mesh/c1");
    assert!(config.validate().is_ok());

    let mut bad = config.clone();
    bad.etcd.as_mut().unwrap().prefix = "/mesh/".into();
    assert!(bad.validate().unwrap_err().contains("must start with '/'"));
    let mut bad = config.clone();
    bad.etcd.as_mut().unwrap().endpoints = vec!["https://10.0.0.1:2379".into()];
    assert!(bad.validate().unwrap_err().contains("--etcd-ca-file"));
    let mut bad = config.clone();
    bad.etcd.as_mut().unwrap().endpoints = vec!["10.0.0.1:2379".into()];
    assert!(bad.validate().unwrap_err().contains("must be a URL"));
    let mut bad = config.clone();
    bad.etcd.as_mut().unwrap().endpoints.clear();
    assert!(bad
        .validate()
        .unwrap_err()
        .contains("needs --etcd-endpoints"));
    let mut bad = config.clone();
    bad.node_name = "a/b".into();
    assert!(bad.validate().unwrap_err().contains("cannot hold '/'"));

    // A client certificate without the CA is refused, not dropped.
    let mut with_cert = config.clone();
    Settings {
        etcd_cert_file: Some("/c.pem".into()),
        etcd_key_file: Some("/k.pem".into()),
        ..Settings::default()
    }
    .apply(&mut with_cert, Source::Flags)
    .unwrap();
    assert!(with_cert.validate().unwrap_err().contains("--etcd-ca-file"));

    // And `--store embedded` turns it off again.
    Settings {
        store: Some(StoreKind::Embedded),
        ..Settings::default()
    }
    .apply(&mut config, Source::Flags)
    .unwrap();
    assert!(config.etcd.is_none());
}

#[test]
fn hcl_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.hcl");
    std::fs::write(
        &path,
        "cluster_name = \"cluster-01\"\nhttp_addr = \"127.0.0.1:9500\"\ndefault_intention_policy = \"allow\"\nleaf_cert_ttl = \"1h\"\n",
    )
    .unwrap();
    let mut config = AgentConfig::dev();
    Settings::load(&path)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.cluster_name, "cluster-01");
    assert_eq!(config.http_addr.port(), 9500);
    assert!(config.default_allow());
    assert_eq!(config.leaf_cert_ttl, Duration::from_secs(3600));
}

#[test]
fn flags_apply_over_the_file_and_are_named_as_flags() {
    let mut config = AgentConfig::dev();
    let file = Settings {
        cluster_name: Some("from-file".into()),
        leaf_cert_ttl: Some("1h".into()),
        ..Settings::default()
    };
    file.apply(&mut config, Source::File).unwrap();
    let flags = Settings {
        cluster_name: Some("from-flags".into()),
        ..Settings::default()
    };
    flags.apply(&mut config, Source::Flags).unwrap();
    assert_eq!(config.cluster_name, "from-flags");
    assert_eq!(config.leaf_cert_ttl, Duration::from_secs(3600));

    let bad = Settings {
        peering_heartbeat: Some("soon".into()),
        ..Settings::default()
    };
    let err = bad
        .apply(&mut AgentConfig::dev(), Source::Flags)
        .unwrap_err();
    assert!(err.starts_with("--peering-heartbeat: "), "{err}");
}

#[test]
fn peering_stream_limits_come_from_the_file_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.hcl");
    std::fs::write(
        &path,
        "peering_max_message_bytes = 1048576\npeering_max_imported_services = 10\npeering_max_service_instances = 20\n",
    )
    .unwrap();
    let mut config = AgentConfig::dev();
    assert_eq!(config.peering_max_message_bytes, 16 * 1024 * 1024);
    assert_eq!(config.peering_max_imported_services, 1024);
    assert_eq!(config.peering_max_service_instances, 4096);
    Settings::load(&path)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.peering_max_message_bytes, 1024 * 1024);
    assert_eq!(config.peering_max_imported_services, 10);
    assert_eq!(config.peering_max_service_instances, 20);
    assert!(config.validate().is_ok());
    config.peering_max_message_bytes = 1024;
    assert!(config
        .validate()
        .unwrap_err()
        .contains("peering_max_message_bytes"));
}

#[test]
fn limits_come_from_the_limits_block_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.hcl");
    std::fs::write(
        &path,
        "limits {\n  http_max_conns_per_client = 20\n  http_header_read_timeout = \"5s\"\n}\nhttp_allowed_hosts = [\"consul.example\"]\n",
    )
    .unwrap();
    let mut config = AgentConfig::dev();
    Settings::load(&path)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.http_limits.max_conns_per_client, 20);
    assert_eq!(config.http_limits.max_conns, DEFAULT_HTTP_MAX_CONNS);
    assert_eq!(
        config.http_limits.header_read_timeout,
        Duration::from_secs(5)
    );
    assert_eq!(config.http_allowed_hosts, ["consul.example"]);
    config.validate().unwrap();

    let json = dir.path().join("agent.json");
    std::fs::write(&json, r#"{"limits": {"http_idle_timeout": "2m"}}"#).unwrap();
    Settings::load(&json)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.http_limits.idle_timeout, Duration::from_secs(120));
    std::fs::write(&json, r#"{"limits": {"http_max_con": 1}}"#).unwrap();
    assert!(Settings::load(&json).unwrap_err().contains("http_max_con"));
}

#[test]
fn service_and_check_definitions_come_from_blocks_or_lists() {
    let dir = tempfile::tempdir().unwrap();
    let hcl = dir.path().join("agent.hcl");
    std::fs::write(
        &hcl,
        "service {\n  name = \"web\"\n  port = 8080\n  check {\n    ttl = \"30s\"\n  }\n}\n\
         service {\n  name = \"api\"\n  tags = [\"v1\"]\n}\n\
         check {\n  name = \"disk\"\n  ttl = \"1m\"\n}\n",
    )
    .unwrap();
    let mut config = AgentConfig::dev();
    Settings::load(&hcl)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "api"]);
    assert_eq!(config.checks.len(), 1);

    let json = dir.path().join("agent.json");
    std::fs::write(
        &json,
        r#"{"services": [{"name": "db", "port": 5432}], "check": {"name": "x", "ttl": "5s"}}"#,
    )
    .unwrap();
    let mut config = AgentConfig::dev();
    Settings::load(&json)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.services[0].name, "db");
    assert_eq!(config.checks.len(), 1);

    std::fs::write(&json, r#"{"service": {"name": "db", "prot": 1}}"#).unwrap();
    let refused = Settings::load(&json)
        .unwrap()
        .apply(&mut AgentConfig::dev(), Source::File)
        .unwrap_err();
    assert!(
        refused.starts_with("services[0]: unknown field `prot`"),
        "{refused}"
    );
}

#[test]
fn the_example_config_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/agent.hcl");
    let mut config = AgentConfig::dev();
    Settings::load(&path)
        .unwrap()
        .apply(&mut config, Source::File)
        .unwrap();
    assert_eq!(config.peering_max_message_bytes, 16 * 1024 * 1024);
    assert_eq!(config.peering_max_imported_services, 1024);
    assert_eq!(config.peering_max_service_instances, 4096);
    assert_eq!(config.http_limits, default_http_limits());
    assert_eq!(config.dns, crate::dns::DnsConfig::default());
    config.validate().unwrap();
}

#[test]
fn certificate_lifetimes_are_bounded_by_the_roots() {
    let mut config = AgentConfig::dev();
    config.leaf_cert_ttl = MAX_GATEWAY_CERT_TTL + Duration::from_secs(1);
    let err = config.validate().unwrap_err();
    assert!(
        err.contains("leaf_cert_ttl") && err.contains("too long"),
        "{err}"
    );
    config.leaf_cert_ttl = Duration::from_secs(u64::MAX / 4);
    assert!(config.validate().is_err());
}

#[test]
fn unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.json");
    std::fs::write(&path, r#"{"cluster_nme": "x"}"#).unwrap();
    let err = Settings::load(&path).unwrap_err();
    assert!(err.contains("cluster_nme"), "{err}");
}

#[test]
fn the_gateway_probe_interval_comes_from_the_peering_block_or_the_flag_and_is_bounded() {
    let mut config = AgentConfig::dev();
    assert_eq!(
        config.peering_gateway_probe_interval,
        Duration::from_secs(5)
    );
    let file: Settings =
        hcl::from_str("peering {\n  gateway_probe_interval = \"2s\"\n}\n").unwrap();
    file.apply(&mut config, Source::File).unwrap();
    assert_eq!(
        config.peering_gateway_probe_interval,
        Duration::from_secs(2)
    );
    let flags = Settings {
        peering_gateway_probe_interval: Some("200ms".into()),
        ..Settings::default()
    };
    flags.apply(&mut config, Source::Flags).unwrap();
    assert_eq!(
        config.peering_gateway_probe_interval,
        Duration::from_millis(200)
    );

    let too_fast: Settings =
        hcl::from_str("peering {\n  gateway_probe_interval = \"10ms\"\n}\n").unwrap();
    let err = too_fast
        .apply(&mut AgentConfig::dev(), Source::File)
        .unwrap_err();
    assert!(
        err.starts_with("peering.gateway_probe_interval: 10ms is out of range"),
        "{err}"
    );
    let too_slow = Settings {
        peering_gateway_probe_interval: Some("1h".into()),
        ..Settings::default()
    };
    let err = too_slow
        .apply(&mut AgentConfig::dev(), Source::Flags)
        .unwrap_err();
    assert!(
        err.starts_with("--peering-gateway-probe-interval: 1h0m0s is out of range"),
        "{err}"
    );
    assert!(hcl::from_str::<Settings>("peering {\n  probe = 1\n}\n").is_err());
}
