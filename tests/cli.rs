//! The `isthmus` CLI as a user runs it: service definition files, Consul-
//! and GNU-style flags, exit codes, and errors on stderr.

use isthmus_tests::process::{cli, cli_in, stderr, stdout, AgentProcess};

#[test]
fn services_register_deregister_and_catalog() {
    // No in-process gateway, so the catalog holds only what the test registers.
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.hcl"),
        "service {\n  name = \"web\"\n  id = \"web-1\"\n  port = 8080\n  tags = [\"v1\"]\n  meta = { owner_team = \"payments\" }\n  check {\n    check_id = \"web-ttl\"\n    ttl = \"30s\"\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("api.json"),
        r#"{"service": {"name": "api", "port": 9090}}"#,
    )
    .unwrap();

    let registered = cli_in(
        Some(dir.path()),
        &agent.http_addr,
        &["services", "register", "web.hcl"],
        None,
    );
    assert!(registered.status.success(), "{}", stderr(&registered));
    assert_eq!(stdout(&registered), "Registered service: web\n");
    let registered = cli_in(
        Some(dir.path()),
        &agent.http_addr,
        &["services", "register", "api.json"],
        None,
    );
    assert_eq!(stdout(&registered), "Registered service: api\n");

    let listed = cli(&agent.http_addr, &["catalog", "services", "-tags"], None);
    // `consul` is the agent's own service, as Consul lists its servers.
    assert_eq!(stdout(&listed), "api     \nconsul  \nweb     v1\n");

    let deregistered = cli(
        &agent.http_addr,
        &["services", "deregister", "-id", "web-1"],
        None,
    );
    assert_eq!(stdout(&deregistered), "Deregistered service: web-1\n");
    let listed = cli(&agent.http_addr, &["catalog", "services"], None);
    assert_eq!(stdout(&listed), "api\nconsul\n");

    let unknown = cli(
        &agent.http_addr,
        &["services", "deregister", "-id", "web-1"],
        None,
    );
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("Unknown service ID"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn intention_check_exit_codes_and_info() {
    let agent = AgentProcess::spawn(&["--dev", "--cluster-name", "cluster-01"]);
    let written = cli(
        &agent.http_addr,
        &["config", "write", "-"],
        Some("Kind = \"service-intentions\"\nName = \"backend\"\nSources = [{ Name = \"web\", Action = \"allow\" }]\n"),
    );
    assert!(written.status.success(), "{}", stderr(&written));

    let allowed = cli(
        &agent.http_addr,
        &["intention", "check", "web", "backend"],
        None,
    );
    assert_eq!(
        (allowed.status.code(), stdout(&allowed)),
        (Some(0), "Allowed\n".to_owned())
    );
    let denied = cli(
        &agent.http_addr,
        &["intention", "check", "intruder", "backend"],
        None,
    );
    assert_eq!(
        (denied.status.code(), stdout(&denied)),
        (Some(2), "Denied\n".to_owned())
    );

    let info = cli(&agent.http_addr, &["info"], None);
    let text = stdout(&info);
    assert!(text.contains("cluster = cluster-01"), "{text}");
    assert!(text.contains(".isthmus"), "{text}");
    assert!(text.contains("index = "), "{text}");
    let members = cli(&agent.http_addr, &["members"], None);
    assert!(stdout(&members).starts_with("Node"), "{}", stdout(&members));
    assert!(stdout(&members).contains("alive"));
    assert!(stdout(&members).contains("cluster-01"));
}

#[test]
fn flags_in_both_spellings_and_the_http_addr_flag() {
    let agent = AgentProcess::spawn(&["--dev"]);
    // -http-addr on the command line wins over the environment.
    let output = cli(
        "127.0.0.1:1",
        &[
            "config",
            "list",
            "-kind",
            "service-intentions",
            "-http-addr",
            &agent.url(),
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let output = cli(
        "127.0.0.1:1",
        &[
            "config",
            "list",
            "--kind=service-intentions",
            "--http-addr",
            &agent.http_addr,
        ],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let missing = cli(
        &agent.http_addr,
        &["config", "read", "-kind", "service-intentions"],
        None,
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("Must specify the -name flag"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn unreachable_agent_and_help() {
    // Port 1 on loopback: nothing listens there without root privileges.
    let output = cli("127.0.0.1:1", &["catalog", "services"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot reach the isthmus agent at http://127.0.0.1:1"),
        "{}",
        stderr(&output)
    );

    let help = cli("127.0.0.1:1", &["--help"], None);
    assert!(help.status.success());
    for command in [
        "agent",
        "config",
        "services",
        "catalog",
        "intention",
        "members",
        "info",
    ] {
        assert!(stdout(&help).contains(command), "--help lists {command}");
    }
    let agent_help = cli("127.0.0.1:1", &["agent", "-help"], None);
    assert!(stdout(&agent_help).contains("--default-intention-policy"));
}
