//! `/v1/connect/intentions` against a real `isthmus agent --dev` process,
//! called the way Consul client libraries call it (lowercase keys, no
//! Content-Type): exact upserts and deletes, the legacy ID-based API, match
//! ordering, and the service-intentions config entries they are stored as.

use std::net::SocketAddr;

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::api::{get, raw_json, send, text};
use isthmus_tests::process::AgentProcess;
use serde_json::{json, Value};

struct Agent {
    _process: AgentProcess,
    addr: SocketAddr,
    client: Client,
}

fn start() -> Agent {
    let process = AgentProcess::spawn(&["--dev"]);
    let addr: SocketAddr = process.http_addr.parse().unwrap();
    let client = Client::new(&process.http_addr).unwrap();
    Agent {
        _process: process,
        addr,
        client,
    }
}

fn sources(entry: &Value) -> Vec<(String, String)> {
    entry["Sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["Name"].as_str().unwrap().to_owned(),
                s["Action"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn exact_writes_are_the_destinations_config_entry() {
    let agent = start();
    for (source, action) in [("web", "allow"), ("*", "deny"), ("api", "allow")] {
        let (status, body) = raw_json(
            agent.addr,
            "PUT",
            &format!("/v1/connect/intentions/exact?source={source}&destination=db"),
            &json!({"action": action, "description": format!("from {source}")}),
        )
        .await;
        assert_eq!((status, body.trim()), (200, "true"));
    }

    // One entry for the destination, its sources ordered by precedence.
    let (entry, _) = get(&agent.client, "/v1/config/service-intentions/db").await;
    assert_eq!(
        sources(&entry),
        [
            ("web".to_owned(), "allow".to_owned()),
            ("api".to_owned(), "allow".to_owned()),
            ("*".to_owned(), "deny".to_owned())
        ]
    );

    let (one, _) = get(
        &agent.client,
        "/v1/connect/intentions/exact?source=web&destination=db",
    )
    .await;
    assert_eq!(one["SourceName"], "web");
    assert_eq!(one["DestinationName"], "db");
    assert_eq!(one["SourceNS"], "default");
    assert_eq!(one["Action"], "allow");
    assert_eq!(one["Precedence"], 9);
    assert_eq!(one["SourceType"], "consul");
    assert_eq!(one["Description"], "from web");
    assert_eq!(one["ID"], "");
    assert_eq!(one["CreateIndex"], entry["CreateIndex"]);
    assert_eq!(one["ModifyIndex"], entry["ModifyIndex"]);

    // The list: highest precedence first, ties by source name.
    let (list, index) = get(&agent.client, "/v1/connect/intentions").await;
    let listed: Vec<(&str, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["SourceName"].as_str().unwrap(),
                i["Precedence"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("api", 9), ("web", 9), ("*", 8)]);

    // A config write shows through the intention API at once, and a
    // blocking list wakes for it.
    let waiter = {
        let client = agent.client.clone();
        tokio::spawn(async move {
            get(
                &client,
                &format!("/v1/connect/intentions?index={index}&wait=30s"),
            )
            .await
        })
    };
    let (status, _) = raw_json(
        agent.addr,
        "PUT",
        "/v1/config",
        &json!({"kind": "service-intentions", "name": "payments",
                "sources": [{"name": "web", "action": "deny"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (woken, new_index) = tokio::time::timeout(isthmus_tests::WAIT, waiter)
        .await
        .expect("the blocking list answers")
        .unwrap();
    assert!(new_index > index);
    assert_eq!(woken.as_array().unwrap().len(), 4);

    // A peer's source, written as a config entry, read by `peer:<peer>/<name>`.
    let (status, _) = raw_json(
        agent.addr,
        "PUT",
        "/v1/config",
        &json!({"Kind": "service-intentions", "Name": "ledger",
                "Sources": [{"Name": "web", "Peer": "east", "Action": "allow"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let (peered, _) = get(
        &agent.client,
        "/v1/connect/intentions/exact?source=peer:east/web&destination=ledger",
    )
    .await;
    assert_eq!(peered["SourcePeer"], "east");
    assert_eq!(peered["SourceName"], "web");
    let local = send(
        &agent.client,
        Method::GET,
        "/v1/connect/intentions/exact?source=web&destination=ledger",
        None,
    )
    .await;
    assert_eq!(local.status.as_u16(), 404, "a local web is another source");

    // Deleting by source and destination; the last source takes the entry.
    for source in ["web", "api", "*"] {
        let response = send(
            &agent.client,
            Method::DELETE,
            &format!("/v1/connect/intentions/exact?source={source}&destination=db"),
            None,
        )
        .await;
        assert_eq!(response.status, 200, "{}", text(&response));
    }
    let gone = send(
        &agent.client,
        Method::GET,
        "/v1/config/service-intentions/db",
        None,
    )
    .await;
    assert_eq!(gone.status, 404);
    let missing = send(
        &agent.client,
        Method::GET,
        "/v1/connect/intentions/exact?source=web&destination=db",
        None,
    )
    .await;
    assert_eq!(
        (missing.status.as_u16(), text(&missing).as_str()),
        (404, "Intention not found")
    );
}

#[tokio::test]
async fn match_lists_what_applies_by_precedence() {
    let agent = start();
    for entry in [
        json!({"Kind": "service-intentions", "Name": "db", "Sources": [
            {"Name": "web", "Action": "allow"}, {"Name": "*", "Action": "deny"}]}),
        json!({"Kind": "service-intentions", "Name": "*", "Sources": [
            {"Name": "web", "Action": "deny"}, {"Name": "*", "Action": "allow"}]}),
    ] {
        let (status, _) = raw_json(agent.addr, "PUT", "/v1/config", &entry).await;
        assert_eq!(status, 200);
    }
    let (by_destination, _) = get(
        &agent.client,
        "/v1/connect/intentions/match?by=destination&name=db&name=other",
    )
    .await;
    let pairs = |list: &Value| -> Vec<(String, String, u64)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["SourceName"].as_str().unwrap().to_owned(),
                    i["DestinationName"].as_str().unwrap().to_owned(),
                    i["Precedence"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let own = |s: &str, d: &str, p: u64| (s.to_owned(), d.to_owned(), p);
    assert_eq!(
        pairs(&by_destination["db"]),
        [
            own("web", "db", 9),
            own("*", "db", 8),
            own("web", "*", 6),
            own("*", "*", 5)
        ]
    );
    assert_eq!(
        pairs(&by_destination["other"]),
        [own("web", "*", 6), own("*", "*", 5)]
    );
    let (by_source, _) = get(
        &agent.client,
        "/v1/connect/intentions/match?by=source&name=web",
    )
    .await;
    assert_eq!(
        pairs(&by_source["web"]),
        [
            own("web", "db", 9),
            own("*", "db", 8),
            own("web", "*", 6),
            own("*", "*", 5)
        ]
    );

    for (path, expected) in [
        (
            "/v1/connect/intentions/match?name=db",
            "required query parameter 'by' not set",
        ),
        (
            "/v1/connect/intentions/match?by=sideways&name=db",
            "'by' parameter must be one of 'source' or 'destination'",
        ),
        (
            "/v1/connect/intentions/match?by=source",
            "required query parameter 'name' not set",
        ),
        (
            "/v1/connect/intentions/exact?destination=db",
            "required query parameter 'source' not set",
        ),
        (
            "/v1/connect/intentions/exact?source=a/b/c/d&destination=db",
            "source \"a/b/c/d\" is invalid: input can contain at most two '/'",
        ),
    ] {
        let response = send(&agent.client, Method::GET, path, None).await;
        assert_eq!(
            (response.status.as_u16(), text(&response).as_str()),
            (400, expected),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_legacy_id_api_creates_reads_updates_and_deletes() {
    let agent = start();
    let (status, body) = raw_json(
        agent.addr,
        "POST",
        "/v1/connect/intentions",
        &json!({"source_name": "web", "destination_name": "db", "action": "allow",
                "meta": {"team": "a"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["ID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let (read, _) = get(&agent.client, &format!("/v1/connect/intentions/{id}")).await;
    assert_eq!(read["ID"], id.as_str());
    assert_eq!(read["Meta"], json!({"team": "a"}));
    assert_eq!(read["Action"], "allow");
    let created_at = read["CreatedAt"].as_str().unwrap().to_owned();
    assert!(created_at.starts_with("20"), "{created_at}");

    // Stored as the destination's entry, with the legacy fields.
    let (entry, _) = get(&agent.client, "/v1/config/service-intentions/db").await;
    assert_eq!(entry["Sources"][0]["LegacyID"], id.as_str());

    let (status, body) = raw_json(
        agent.addr,
        "PUT",
        &format!("/v1/connect/intentions/{id}"),
        &json!({"SourceName": "web", "DestinationName": "db", "Action": "deny"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (read, _) = get(&agent.client, &format!("/v1/connect/intentions/{id}")).await;
    assert_eq!(read["Action"], "deny");
    assert_eq!(read["CreatedAt"].as_str().unwrap(), created_at);

    // Consul's validation texts.
    let (status, body) = raw_json(
        agent.addr,
        "POST",
        "/v1/connect/intentions",
        &json!({"SourceName": "web"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "2 errors occurred:\n\t* DestinationName must be set\n\t* Action must be set to 'allow' or 'deny'\n\n"
    );
    let (status, body) = raw_json(
        agent.addr,
        "POST",
        "/v1/connect/intentions",
        &json!({"SourceName": "web", "DestinationName": "db", "Action": "allow"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body, "Sources[1] defines \"web\" more than once");

    let response = send(
        &agent.client,
        Method::DELETE,
        &format!("/v1/connect/intentions/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (response.status.as_u16(), text(&response).trim()),
        (200, "true")
    );
    let gone = send(
        &agent.client,
        Method::GET,
        &format!("/v1/connect/intentions/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (gone.status.as_u16(), text(&gone).as_str()),
        (404, "Intention not found")
    );
    let again = send(
        &agent.client,
        Method::DELETE,
        &format!("/v1/connect/intentions/{id}"),
        None,
    )
    .await;
    assert_eq!(
        text(&again),
        format!("Cannot delete non-existent intention: '{id}'")
    );
}

#[tokio::test]
async fn the_cli_creates_gets_lists_matches_and_deletes_like_consuls() {
    use isthmus_tests::process::{cli, stderr, stdout};
    let agent = start();
    let addr = agent.addr.to_string();

    let empty = cli(&addr, &["intention", "list"], None);
    assert_eq!(empty.status.code(), Some(2));
    assert_eq!(stderr(&empty).trim(), "There are no intentions.");

    let created = cli(&addr, &["intention", "create", "-allow", "web", "db"], None);
    assert!(created.status.success(), "{}", stderr(&created));
    assert_eq!(stdout(&created), "Created: web => db (allow)\n");
    let denied = cli(&addr, &["intention", "create", "-deny", "*", "db"], None);
    assert_eq!(stdout(&denied), "Created: * => db (deny)\n");
    let duplicate = cli(&addr, &["intention", "create", "web", "db"], None);
    assert_eq!(duplicate.status.code(), Some(1));
    assert!(
        stderr(&duplicate).contains("Error creating intention \"web => db (allow)\""),
        "{}",
        stderr(&duplicate)
    );
    let replaced = cli(
        &addr,
        &["intention", "create", "-deny", "-replace", "web", "db"],
        None,
    );
    assert!(replaced.status.success(), "{}", stderr(&replaced));

    let shown = cli(&addr, &["intention", "get", "web", "db"], None);
    let shown = stdout(&shown);
    assert!(
        shown
            .starts_with("Source:       web\nDestination:  db\nAction:       deny\nID:           "),
        "{shown}"
    );
    assert!(shown.contains("\nCreated At:   "), "{shown}");

    let listed = stdout(&cli(&addr, &["intention", "list"], None));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(lines[0].starts_with("ID"), "{listed}");
    assert!(
        lines[0].ends_with("Source  Action  Destination  Precedence"),
        "{listed}"
    );
    assert!(
        lines[1].contains("web     deny    db           9"),
        "{listed}"
    );
    assert!(
        lines[2].contains("*       deny    db           8"),
        "{listed}"
    );
    let matched = stdout(&cli(&addr, &["intention", "match", "db"], None));
    assert_eq!(matched, "web => db (deny)\n* => db (deny)\n");
    // By source, a `*` source applies to web too.
    let matched = stdout(&cli(&addr, &["intention", "match", "-source", "web"], None));
    assert_eq!(matched, "web => db (deny)\n* => db (deny)\n");
    let id = lines[1].split_whitespace().next().unwrap().to_owned();
    let by_id = stdout(&cli(&addr, &["intention", "get", &id], None));
    assert!(by_id.contains(&format!("ID:           {id}")), "{by_id}");

    let deleted = cli(&addr, &["intention", "delete", &id], None);
    assert_eq!(stdout(&deleted), "Intention deleted.\n");
    let deleted = cli(&addr, &["intention", "delete", "*", "db"], None);
    assert_eq!(stdout(&deleted), "Intention deleted.\n");
    let missing = cli(&addr, &["intention", "get", "web", "db"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        stderr(&missing).trim(),
        "Intention not found with source \"web\" and destination \"db\""
    );
}
