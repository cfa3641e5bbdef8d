//! `isthmus acl ...` as an operator runs it against a real `isthmus agent
//! --dev` with ACLs on and default deny: bootstrap once, policies from a
//! rules file, tokens with policies and service identities, `-self`,
//! `-format json`, Consul's output and denial texts, and the token taken
//! from the environment (`ISTHMUS_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`).

use std::process::{Command, Output, Stdio};

use isthmus_tests::isthmus_bin;
use isthmus_tests::process::{stderr, stdout, AgentProcess};
use serde_json::Value;

/// The CLI against `agent`, with `token` (if any) in `ISTHMUS_HTTP_TOKEN`
/// and no token inherited from the test's own environment.
fn acl(agent: &AgentProcess, token: Option<&str>, args: &[&str]) -> Output {
    acl_env(agent, &[("ISTHMUS_HTTP_TOKEN", token.unwrap_or(""))], args)
}

fn acl_env(agent: &AgentProcess, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(isthmus_bin());
    command
        .arg("acl")
        .args(args)
        .env("ISTHMUS_HTTP_ADDR", &agent.http_addr)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .env_remove("ISTHMUS_HTTP_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("isthmus CLI runs")
}

/// The value of a `Label:   value` line of Consul's pretty output.
fn field(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no {label} in {output}"))
        .trim()
        .to_owned()
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", stdout(output));
    stderr(output)
}

fn agent() -> AgentProcess {
    AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
    ])
}

#[test]
fn acl_bootstrap_policies_and_tokens_through_the_cli() {
    let agent = agent();
    let dir = tempfile::tempdir().unwrap();

    // Without a token the anonymous token is refused, in Consul's words.
    let refused = failed(&acl(&agent, None, &["token", "list"]));
    assert_eq!(
        refused.trim(),
        "Failed to retrieve the token list: Unexpected response code: 403 (Permission denied: anonymous token lacks permission 'acl:read'. The anonymous token is used implicitly when a request does not specify a token.)"
    );

    let bootstrap = succeeded(&acl(&agent, None, &["bootstrap"]));
    let management = field(&bootstrap, "SecretID");
    assert_eq!(
        field(&bootstrap, "Description"),
        "Bootstrap Token (Global Management)"
    );
    assert!(
        bootstrap.contains("Local:            false\n"),
        "{bootstrap}"
    );
    assert!(
        bootstrap
            .ends_with("Policies:\n   00000000-0000-0000-0000-000000000001 - global-management\n"),
        "{bootstrap}"
    );
    let create_time = field(&bootstrap, "Create Time");
    assert!(create_time.ends_with(" +0000 UTC"), "{create_time}");
    let again = failed(&acl(&agent, None, &["bootstrap"]));
    assert!(
        again.starts_with("Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{again}"
    );

    // A policy from a rules file (-rules @FILE), then read back by name.
    let rules =
        "service \"web\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"read\" }\n";
    let rules_file = dir.path().join("web.hcl");
    std::fs::write(&rules_file, rules).unwrap();
    let rules_arg = format!("@{}", rules_file.display());
    let created = succeeded(&acl(
        &agent,
        Some(&management),
        &[
            "policy",
            "create",
            "-name",
            "web-write",
            "-description",
            "Web writes",
            "-rules",
            &rules_arg,
        ],
    ));
    let policy_id = field(&created, "ID");
    assert_eq!(field(&created, "Name"), "web-write");
    assert_eq!(field(&created, "Description"), "Web writes");
    assert!(created.ends_with(&format!("Rules:\n{rules}")), "{created}");

    let bad = failed(&acl(
        &agent,
        Some(&management),
        &[
            "policy",
            "create",
            "-name",
            "bad",
            "-rules",
            "service \"x\" { policy = \"all\" }",
        ],
    ));
    assert!(
        bad.starts_with("Failed to create new policy: Unexpected response code: 400 ("),
        "{bad}"
    );
    assert!(bad.contains("Invalid service policy"), "{bad}");
    assert!(failed(&acl(
        &agent,
        Some(&management),
        &["policy", "create", "-rules", "acl = \"read\""]
    ))
    .contains("Missing require '-name' flag"));

    let read = succeeded(&acl(
        &agent,
        Some(&management),
        &["policy", "read", "-name", "web-write", "-format", "json"],
    ));
    assert!(read.starts_with("{\n    \""), "four-space JSON: {read}");
    let read: Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read["ID"], policy_id.as_str());
    assert_eq!(read["Rules"], rules);
    let listed = succeeded(&acl(&agent, Some(&management), &["policy", "list"]));
    assert!(
        listed.contains(&format!(
            "web-write:\n   ID:           {policy_id}\n   Description:  Web writes\n"
        )),
        "{listed}"
    );
    assert!(listed.contains("global-management:\n"), "{listed}");

    // A token with the policy and a service identity.
    let token = succeeded(&acl(
        &agent,
        Some(&management),
        &[
            "token",
            "create",
            "-description",
            "web token",
            "-policy-name",
            "web-write",
            "-service-identity",
            "api",
        ],
    ));
    let accessor = field(&token, "AccessorID");
    let secret = field(&token, "SecretID");
    assert!(
        token.contains(&format!("Policies:\n   {policy_id} - web-write\nService Identities:\n   api (Datacenters: all)\n")),
        "{token}"
    );

    // The token reads itself, but may not read the ACL system.
    let own = succeeded(&acl(&agent, Some(&secret), &["token", "read", "-self"]));
    assert_eq!(field(&own, "AccessorID"), accessor);
    assert_eq!(field(&own, "Description"), "web token");
    let denied = failed(&acl(&agent, Some(&secret), &["token", "list"]));
    assert_eq!(
        denied.trim(),
        format!("Failed to retrieve the token list: Unexpected response code: 403 (Permission denied: token with AccessorID '{accessor}' lacks permission 'acl:read')")
    );

    // Management lists and reads it, in both formats.
    let tokens = succeeded(&acl(
        &agent,
        Some(&management),
        &["token", "list", "-format", "json"],
    ));
    let tokens: Vec<Value> = serde_json::from_str(&tokens).unwrap();
    assert!(tokens.iter().any(|t| t["AccessorID"] == accessor.as_str()));
    assert!(tokens
        .iter()
        .any(|t| t["AccessorID"] == "00000000-0000-0000-0000-000000000002"));
    let pretty = succeeded(&acl(&agent, Some(&management), &["token", "list"]));
    assert!(
        pretty.contains(&format!("AccessorID:       {accessor}\n")),
        "{pretty}"
    );
    let by_id = succeeded(&acl(
        &agent,
        Some(&management),
        &["token", "read", "-id", &accessor, "-meta"],
    ));
    assert_eq!(field(&by_id, "SecretID"), secret);
    assert!(by_id.contains("Create Index:     "), "{by_id}");
    assert!(failed(&acl(&agent, Some(&management), &["token", "read"]))
        .contains("Must specify the -id parameter"));

    // The token file of the environment works as well as the variable.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{management}\n")).unwrap();
    let via_file = acl_env(
        &agent,
        &[("CONSUL_HTTP_TOKEN_FILE", token_file.to_str().unwrap())],
        &["policy", "list"],
    );
    assert!(succeeded(&via_file).contains("web-write:"));

    // Deletes, then the deleted token no longer works.
    let deleted = succeeded(&acl(
        &agent,
        Some(&management),
        &["token", "delete", "-id", &accessor],
    ));
    assert_eq!(
        deleted,
        format!("Token \"{accessor}\" deleted successfully\n")
    );
    let gone = failed(&acl(&agent, Some(&secret), &["token", "read", "-self"]));
    assert!(
        gone.starts_with("Error reading token: Unexpected response code: 4"),
        "{gone}"
    );
    let deleted = succeeded(&acl(
        &agent,
        Some(&management),
        &["policy", "delete", "-name", "web-write"],
    ));
    assert_eq!(
        deleted,
        format!("Policy \"{policy_id}\" deleted successfully\n")
    );
    let missing = failed(&acl(
        &agent,
        Some(&management),
        &["policy", "read", "-id", &policy_id],
    ));
    assert!(
        missing.starts_with(&format!("Error reading policy \"{policy_id}\": ")),
        "{missing}"
    );
}
