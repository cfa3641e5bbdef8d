//! The agent's DNS interface, driven the way a user does: a real
//! `isthmus agent` process on an ephemeral DNS port, services registered
//! over the HTTP API with health checks, and the real `dig` (Debian's
//! bind9-dnsutils) asking over UDP and TCP.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, put, raw};
use isthmus_tests::process::{cli, stderr, stdout, AgentProcess};
use isthmus_tests::{eventually, WAIT};
use serde_json::{json, Value};

/// One `dig` answer, its sections as whitespace-normalised record lines.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<String>,
    authority: Vec<String>,
    additional: Vec<String>,
}

impl Dig {
    /// The last field of every answer line (the address of an A record,
    /// the target of an SRV).
    fn answer_data(&self) -> BTreeSet<String> {
        self.answer
            .iter()
            .map(|line| line.rsplit(' ').next().unwrap().to_owned())
            .collect()
    }
}

/// `dig @addr -p port <args>`, one try, bounded.
async fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let mut command = tokio::process::Command::new("dig");
    command
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("dig answers in time")
        .expect("dig runs (bind9-dnsutils is installed by scripts/setup.sh)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "dig {args:?}: {text}");
    parse_dig(&text)
}

fn parse_dig(text: &str) -> Dig {
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in {text}"))
        .to_owned();
    let flags = text
        .split(";; flags: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut dig = Dig {
        status,
        flags,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    };
    let mut section: Option<&mut Vec<String>> = None;
    for line in text.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            section = Some(&mut dig.answer);
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = Some(&mut dig.authority);
        } else if line.starts_with(";; ADDITIONAL SECTION") {
            section = Some(&mut dig.additional);
        } else if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = None;
            }
        } else if let Some(records) = section.as_mut() {
            records.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    dig
}

/// Registers `web` instance `id` with a TTL check in `status`.
async fn register(
    client: &Client,
    id: &str,
    address: &str,
    port: u16,
    tags: &[&str],
    status: &str,
) {
    put(
        client,
        "/v1/agent/service/register",
        json!({
            "name": "web",
            "id": id,
            "address": address,
            "port": port,
            "tags": tags,
            "check": {"ttl": "1h", "status": status},
        }),
    )
    .await;
}

fn dns_addr(agent: &AgentProcess) -> SocketAddr {
    agent.dns_addr.expect("the agent announces dns=")
}

#[tokio::test]
async fn services_nodes_and_unknown_names_answer_as_consul_does() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--node-name", "dns-node"]);
    let dns = dns_addr(&agent);
    let client = Client::new(&agent.http_addr).unwrap();
    // No address: the node's (127.0.0.1).
    register(&client, "web-1", "", 8081, &["v1"], "passing").await;
    register(&client, "web-2", "127.0.0.2", 8082, &["v2"], "passing").await;
    register(&client, "web-3", "127.0.0.3", 8083, &["v1"], "critical").await;
    register(&client, "web-4", "127.0.0.4", 8084, &[], "warning").await;

    // A: passing and warning instances; the critical one is left out.
    let a = dig(dns, &["web.service.consul", "A"]).await;
    assert_eq!(a.status, "NOERROR");
    assert!(a.flags.contains(&"aa".to_owned()), "{a:?}");
    assert_eq!(
        a.answer_data(),
        BTreeSet::from(["127.0.0.1", "127.0.0.2", "127.0.0.4"].map(String::from))
    );
    assert!(
        a.answer
            .iter()
            .all(|r| r.starts_with("web.service.consul. 0 IN A ")),
        "service_ttl defaults to 0: {a:?}"
    );
    // The datacenter may be named, and names are case-insensitive.
    let with_dc = dig(dns, &["WEB.service.dc1.consul", "A"]).await;
    assert_eq!(with_dc.answer_data(), a.answer_data());

    // A tag narrows the answer.
    let tagged = dig(dns, &["v1.web.service.consul", "A"]).await;
    assert_eq!(
        tagged.answer_data(),
        BTreeSet::from(["127.0.0.1".to_owned()])
    );

    // SRV, RFC 2782 form with a tag: the port, the target, its address.
    let srv = dig(dns, &["_web._v2.service.consul", "SRV"]).await;
    assert_eq!(
        srv.answer,
        ["_web._v2.service.consul. 0 IN SRV 1 1 8082 7f000002.addr.dc1.consul."]
    );
    assert_eq!(
        srv.additional,
        ["7f000002.addr.dc1.consul. 0 IN A 127.0.0.2"]
    );
    // An instance at its node's address points at the node's name.
    let srv = dig(dns, &["_web._tcp.service.consul", "SRV"]).await;
    assert_eq!(srv.answer.len(), 3, "{srv:?}");
    assert!(
        srv.answer.contains(
            &"_web._tcp.service.consul. 0 IN SRV 1 1 8081 dns-node.node.dc1.consul.".to_owned()
        ),
        "{srv:?}"
    );
    assert!(
        srv.additional
            .contains(&"dns-node.node.dc1.consul. 0 IN A 127.0.0.1".to_owned()),
        "{srv:?}"
    );
    let srv = dig(dns, &["v1.web.service.consul", "SRV"]).await;
    assert_eq!(
        srv.answer_data(),
        BTreeSet::from(["dns-node.node.dc1.consul.".to_owned()])
    );

    // The critical instance comes back once its check passes.
    put(&client, "/v1/agent/check/pass/service:web-3", json!(null)).await;
    let tagged = dig(dns, &["v1.web.service.consul", "A"]).await;
    assert_eq!(
        tagged.answer_data(),
        BTreeSet::from(["127.0.0.1", "127.0.0.3"].map(String::from))
    );

    // Over TCP too.
    let tcp = dig(dns, &["+tcp", "web.service.consul", "A"]).await;
    assert_eq!(tcp.answer_data().len(), 4, "{tcp:?}");

    // Nodes, with and without the datacenter.
    for name in ["dns-node.node.consul", "dns-node.node.dc1.consul"] {
        let node = dig(dns, &[name, "A"]).await;
        assert_eq!(node.answer, [format!("{name}. 0 IN A 127.0.0.1")]);
    }

    // Unknown names: NXDOMAIN with the domain's SOA.
    for name in [
        "nothing.service.consul",
        "web.service.dc2.consul",
        "nobody.node.consul",
        "web.service.nobody.peer.consul",
        "whatever.consul",
    ] {
        let missing = dig(dns, &[name, "A"]).await;
        assert_eq!(missing.status, "NXDOMAIN", "{name}: {missing:?}");
        assert!(missing.answer.is_empty());
        assert_eq!(missing.authority.len(), 1, "{missing:?}");
        assert!(
            missing.authority[0].starts_with("consul. 0 IN SOA ns.consul. hostmaster.consul. "),
            "{missing:?}"
        );
    }
    // The name exists but has no record of that type: NOERROR, no answer, SOA.
    let aaaa = dig(dns, &["web.service.consul", "AAAA"]).await;
    assert_eq!(
        (
            aaaa.status.as_str(),
            aaaa.answer.len(),
            aaaa.authority.len()
        ),
        ("NOERROR", 0, 1)
    );

    // No recursors: names elsewhere are refused.
    let outside = dig(dns, &["example.com", "A"]).await;
    assert_eq!(outside.status, "REFUSED");

    let metrics = get_text(&client, "/v1/agent/metrics?format=prometheus").await;
    assert!(
        metrics.contains("isthmus_dns_queries_total{result=\"nxdomain\",type=\"A\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("isthmus_dns_queries_total{result=\"refused\",type=\"A\"} 1"));
    assert!(metrics.contains("isthmus_dns_queries_total{result=\"answered\",type=\"SRV\"} 3"));
    agent.terminate();
}

async fn get_text(client: &Client, path: &str) -> String {
    let response = client.send(http::Method::GET, path, None).await.unwrap();
    assert_eq!(response.status, 200);
    String::from_utf8(response.body.to_vec()).unwrap()
}

/// The config file's `ports` and `dns_config` blocks and `--domain`:
/// only passing instances, TTLs, and a UDP reply cut to 512 bytes with the
/// TC bit, complete over TCP.
#[tokio::test]
async fn the_config_file_sets_the_port_domain_health_filter_ttls_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.hcl");
    std::fs::write(
        &file,
        "ports {\n  dns = 0\n}\ndns_config {\n  only_passing = true\n  udp_answer_limit = 100\n  node_ttl = \"30s\"\n  service_ttl = {\n    \"*\" = \"5s\"\n  }\n}\n",
    )
    .unwrap();
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--node-name",
        "ttl-node",
        "--domain",
        "mesh",
        "--config-file",
        file.to_str().unwrap(),
    ]);
    let dns = dns_addr(&agent);
    let client = Client::new(&agent.http_addr).unwrap();
    for i in 1..=20u16 {
        register(
            &client,
            &format!("web-{i}"),
            &format!("127.0.1.{i}"),
            9000 + i,
            &[],
            "passing",
        )
        .await;
    }
    register(&client, "web-warn", "127.0.2.1", 9100, &[], "warning").await;

    let tcp = dig(dns, &["+tcp", "web.service.mesh", "SRV"]).await;
    assert_eq!(
        tcp.answer.len(),
        20,
        "warning is left out with only_passing: {tcp:?}"
    );
    assert!(!tcp.flags.contains(&"tc".to_owned()));
    assert!(tcp
        .answer
        .iter()
        .all(|r| r.starts_with("web.service.mesh. 5 IN SRV 1 1 ")));
    assert_eq!(tcp.additional.len(), 20);

    // UDP without EDNS: at most 512 bytes, so fewer answers and TC set
    // (+ignore: dig shows the cut reply instead of retrying over TCP).
    let udp = dig(dns, &["+noedns", "+ignore", "web.service.mesh", "SRV"]).await;
    assert!(udp.flags.contains(&"tc".to_owned()), "{udp:?}");
    assert!(!udp.answer.is_empty() && udp.answer.len() < 20, "{udp:?}");
    // Without +ignore dig retries over TCP on TC, as resolvers do.
    let retried = dig(dns, &["+noedns", "web.service.mesh", "SRV"]).await;
    assert_eq!(retried.answer.len(), 20);

    let node = dig(dns, &["ttl-node.node.mesh", "A"]).await;
    assert_eq!(node.answer, ["ttl-node.node.mesh. 30 IN A 127.0.0.1"]);
    // `consul` is not this agent's domain any more.
    assert_eq!(
        dig(dns, &["web.service.consul", "A"]).await.status,
        "REFUSED"
    );
    agent.terminate();
}

/// `-dns-port -1` turns the interface off; `--dns-port 70000` is refused.
#[tokio::test]
async fn the_dns_port_can_turn_dns_off_and_is_checked() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "-dns-port", "-1"]);
    assert_eq!(agent.dns_addr, None, "{}", agent.line);
    agent.terminate();
    let refused = AgentProcess::try_spawn(&["--dev", "--no-gateway", "--dns-port", "70000"])
        .err()
        .expect("the agent refuses the port");
    assert!(refused.contains("not a port"), "{refused}");
}

/// `<service>.connect.consul`: the sidecar proxies in front of a service.
#[tokio::test]
async fn connect_names_answer_with_the_sidecars() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--node-name", "mesh-node"]);
    let dns = dns_addr(&agent);
    let client = Client::new(&agent.http_addr).unwrap();
    register(&client, "web-1", "", 8080, &[], "passing").await;
    put(
        &client,
        "/v1/agent/service/register",
        json!({
            "Kind": "connect-proxy",
            "Name": "web-sidecar-proxy",
            "ID": "web-1-sidecar-proxy",
            "Port": 21000,
            "Proxy": {"DestinationServiceName": "web", "DestinationServiceID": "web-1"},
        }),
    )
    .await;
    let srv = dig(dns, &["web.connect.consul", "SRV"]).await;
    assert_eq!(
        srv.answer,
        ["web.connect.consul. 0 IN SRV 1 1 21000 mesh-node.node.dc1.consul."]
    );
    let missing = dig(dns, &["db.connect.consul", "SRV"]).await;
    assert_eq!(missing.status, "NXDOMAIN");
    agent.terminate();
}

/// `<service>.service.<peer>.peer.consul`: instances imported from a peer.
#[tokio::test]
async fn peer_names_answer_with_imported_instances() {
    let c1 = AgentProcess::spawn(&[
        "--dev",
        "--cluster-name",
        "cluster-01",
        "--peering-heartbeat",
        "200ms",
    ]);
    let c2 = AgentProcess::spawn(&[
        "--dev",
        "--cluster-name",
        "cluster-02",
        "--peering-heartbeat",
        "200ms",
    ]);
    let client1 = Client::new(&c1.http_addr).unwrap();
    let client2 = Client::new(&c2.http_addr).unwrap();
    register(&client2, "web-1", "127.0.0.9", 8080, &[], "passing").await;
    put(
        &client2,
        "/v1/config",
        json!({"Kind": "exported-services", "Name": "default",
               "Services": [{"Name": "web", "Consumers": [{"Peer": "cluster-01"}]}]}),
    )
    .await;
    let token = eventually("dev gateway registered", || async {
        let output = cli(
            &c2.http_addr,
            &["peering", "generate-token", "-name", "cluster-01"],
            None,
        );
        output
            .status
            .success()
            .then(|| stdout(&output).trim().to_owned())
    })
    .await;
    let established = cli(
        &c1.http_addr,
        &[
            "peering",
            "establish",
            "-name",
            "cluster-02",
            "-peering-token",
            &token,
        ],
        None,
    );
    assert!(established.status.success(), "{}", stderr(&established));
    eventually("web imported from cluster-02", || async {
        let (entries, _) = get(&client1, "/v1/health/service/web?peer=cluster-02").await;
        (entries.as_array().is_some_and(|a| !a.is_empty())).then_some(())
    })
    .await;
    // The address the imported instance carries, as the HTTP API shows it.
    let (entries, _) = get(&client1, "/v1/health/service/web?peer=cluster-02").await;
    let entry: &Value = &entries[0];
    let address = match entry["Service"]["Address"].as_str() {
        Some(a) if !a.is_empty() => a.to_owned(),
        _ => entry["Node"]["Address"].as_str().unwrap().to_owned(),
    };
    let dns = dns_addr(&c1);
    let a = dig(dns, &["web.service.cluster-02.peer.consul", "A"]).await;
    assert_eq!(
        a.answer,
        [format!(
            "web.service.cluster-02.peer.consul. 0 IN A {address}"
        )],
        "{a:?}"
    );
    // Not a local service of cluster-01.
    assert_eq!(
        dig(dns, &["web.service.consul", "A"]).await.status,
        "NXDOMAIN"
    );
    c1.terminate();
    c2.terminate();
}

/// DNS requests carry no token: with ACLs on and default deny they get the
/// anonymous token's rights, so a service exists in DNS only once the
/// operator lets the anonymous token read it (Consul's recipe).
#[tokio::test]
async fn with_acls_dns_answers_what_the_anonymous_token_may_read() {
    const MANAGEMENT: &str = "3c1d5e2a-7b4f-4e0a-8c6d-1a2b3c4d5e6f";
    let agent = AgentProcess::spawn(&[
        "--dev",
        "--no-gateway",
        "--node-name",
        "dns-node",
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        MANAGEMENT,
    ]);
    let dns = dns_addr(&agent);
    let addr: SocketAddr = agent.http_addr.parse().unwrap();
    let token = [format!("X-Consul-Token: {MANAGEMENT}")];
    let manage = |method: &'static str, path: &'static str, body: serde_json::Value| {
        let token = token.clone();
        async move {
            let answer = raw(addr, method, path, &token, Some(&body)).await;
            assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
            if answer.body.is_empty() {
                Value::Null
            } else {
                answer.json()
            }
        }
    };
    manage(
        "PUT",
        "/v1/agent/service/register",
        json!({"name": "web", "port": 8081, "address": "127.0.0.9"}),
    )
    .await;

    let hidden = dig(dns, &["web.service.consul", "A"]).await;
    assert_eq!(
        (hidden.status.as_str(), hidden.answer.len()),
        ("NXDOMAIN", 0)
    );
    let node = dig(dns, &["dns-node.node.consul", "A"]).await;
    assert_eq!(node.status, "NXDOMAIN");

    let policy = manage(
        "PUT",
        "/v1/acl/policy",
        json!({"Name": "dns-read",
               "Rules": "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}),
    )
    .await;
    manage(
        "PUT",
        "/v1/acl/token/00000000-0000-0000-0000-000000000002",
        json!({"Policies": [{"ID": policy["ID"]}]}),
    )
    .await;

    let shown = dig(dns, &["web.service.consul", "A"]).await;
    assert_eq!(shown.status, "NOERROR");
    assert_eq!(
        shown.answer_data(),
        BTreeSet::from(["127.0.0.9".to_owned()])
    );
    let node = dig(dns, &["dns-node.node.consul", "A"]).await;
    assert_eq!(node.status, "NOERROR");
}
