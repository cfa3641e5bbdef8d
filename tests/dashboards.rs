//! The Grafana dashboards in configs/grafana/ against a real Prometheus:
//! `isthmus demo --keep-running` brings up both clusters and starts
//! Prometheus scraping every component; with calls going on (allowed and
//! denied), every panel's query and every variable's label query must be
//! valid PromQL and return data. promtool cannot check dashboards, so this
//! is their check: a panel naming a metric nothing exports fails here.
//! The demo also points its agents' UI at that Prometheus: the topology
//! shows live numbers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use isthmus_runtime::client::{encode, Client};
use isthmus_tests::demo::KeptDemo;
use serde_json::Value;

/// How long the panels get to all show data once Prometheus scrapes every
/// target (a few scrape intervals of 5 s).
const DATA_LIMIT: Duration = Duration::from_secs(90);
/// `$__rate_interval` as Grafana computes it for a 5 s scrape interval
/// (four intervals).
const RATE_INTERVAL: &str = "20s";
/// The data-source input every panel must use, so that the files import.
const DATA_SOURCE: &str = "${DS_PROMETHEUS}";

/// One query of a dashboard: a panel's target or a variable's label query.
#[derive(Debug, Clone)]
struct Query {
    /// `file: panel title (refId)`, for the failure message.
    origin: String,
    expr: String,
    /// The labels the legend names (`{{service}}`): the result must carry
    /// them, or the legend shows blanks.
    legend_labels: Vec<String>,
}

fn dashboard_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs/grafana")
}

fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboard_dir())
        .expect("configs/grafana exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "the two dashboards: {files:?}");
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] != "row" {
                out.push(panel);
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The template variables' values for a query over everything: multi-value
/// variables as the "All" regex, Grafana's interval as for a 5 s scrape.
fn substitute(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$cluster", ".*")
        .replace("$service", ".*")
        .replace("$peer", ".*");
    // label_replace's "$1" is PromQL's own; any other `$name` is a variable
    // this test does not know, so the query would not be what Grafana sends.
    let unknown = expr
        .match_indices('$')
        .map(|(i, _)| &expr[i..])
        .find(|rest| rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
    assert!(
        unknown.is_none(),
        "unknown variable in {expr:?}: {unknown:?}"
    );
    expr
}

/// Every panel target and variable query of every dashboard, substituted.
fn queries() -> Vec<Query> {
    let mut out = Vec::new();
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("?");
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            assert!(!targets.is_empty(), "{file}: panel {title:?} has no query");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or("");
                assert!(
                    !expr.trim().is_empty(),
                    "{file}: {title:?} has an empty query"
                );
                out.push(Query {
                    origin: format!(
                        "{file}: {title} ({})",
                        target["refId"].as_str().unwrap_or("?")
                    ),
                    expr: substitute(expr),
                    legend_labels: legend_labels(target["legendFormat"].as_str().unwrap_or("")),
                });
            }
        }
        for variable in dashboard["templating"]["list"].as_array().unwrap() {
            if variable["type"] != "query" {
                continue;
            }
            let name = variable["name"].as_str().unwrap();
            let definition = variable["definition"].as_str().unwrap();
            // label_values(<selector>, <label>): the series of the selector
            // that carry the label; Grafana lists the label's values.
            let inner = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .unwrap_or_else(|| {
                    panic!("{file}: ${name} is not label_values(...): {definition}")
                });
            let (selector, label) = inner.rsplit_once(',').unwrap();
            out.push(Query {
                origin: format!("{file}: variable ${name}"),
                expr: label_selector(&substitute(selector.trim()), label.trim()),
                legend_labels: vec![label.trim().to_owned()],
            });
        }
    }
    out
}

/// The label names in a legend format (`{{service}} ({{cluster}})`).
fn legend_labels(format: &str) -> Vec<String> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

/// `selector` restricted to series that carry `label`.
fn label_selector(selector: &str, label: &str) -> String {
    match selector.split_once('{') {
        Some((metric, rest)) => format!("{metric}{{{label}!=\"\", {rest}"),
        None => format!("{selector}{{{label}!=\"\"}}"),
    }
}

#[test]
fn the_dashboards_import_cleanly() {
    let mut uids = Vec::new();
    for (file, dashboard) in dashboards() {
        assert!(
            dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{file}: schemaVersion"
        );
        let inputs = dashboard["__inputs"].as_array().expect("__inputs");
        assert!(
            inputs
                .iter()
                .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
            "{file}: the DS_PROMETHEUS input"
        );
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
        assert_eq!(
            variable("DS_PROMETHEUS").map(|v| &v["type"]),
            Some(&Value::from("datasource")),
            "{file}: DS_PROMETHEUS is also a data-source variable (provisioning)"
        );
        for name in ["cluster", "service"] {
            let v = variable(name).unwrap_or_else(|| panic!("{file}: ${name}"));
            assert_eq!(v["allValue"], ".*", "{file}: ${name}'s All is a regex");
            assert_eq!(v["datasource"]["uid"], DATA_SOURCE, "{file}: ${name}");
        }
        for panel in panels(&dashboard) {
            assert_eq!(
                panel["datasource"]["uid"], DATA_SOURCE,
                "{file}: panel {}",
                panel["title"]
            );
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(
                    target["datasource"]["uid"], DATA_SOURCE,
                    "{file}: {}",
                    panel["title"]
                );
            }
        }
        let uid = dashboard["uid"].as_str().unwrap().to_owned();
        assert!(!uids.contains(&uid), "{file}: uid {uid} used twice");
        uids.push(uid);
    }
    // Substitution leaves no unknown variable behind.
    assert!(queries().len() > 20);
}

/// What Prometheus answered for a query: an error (invalid query), or
/// its result series.
async fn query(prometheus: &Client, expr: &str) -> Result<Vec<Value>, String> {
    let response = prometheus
        .send(
            http::Method::GET,
            &format!("/api/v1/query?query={}", encode(expr)),
            None,
        )
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let answer: Value = serde_json::from_slice(&response.body)
        .map_err(|e| format!("{} answered non-JSON: {e}", response.status))?;
    if answer["status"] != "success" {
        return Err(format!(
            "{} {}: {}",
            response.status, answer["errorType"], answer["error"]
        ));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A result holds data when at least one series has a number (not NaN:
/// a ratio or quantile over no traffic at all).
fn has_data(series: &[Value]) -> bool {
    series.iter().any(|s| {
        s["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

#[test]
fn every_panel_query_returns_data_from_a_real_prometheus() {
    let queries = queries();
    let demo = KeptDemo::start();
    let out = demo.output();
    let prometheus = demo.value_after("Prometheus:").unwrap_or_else(|| {
        panic!("the demo started no Prometheus (apt-get install prometheus):\n{out}")
    });
    assert!(prometheus.starts_with("http://"), "Prometheus URL: {out}");
    let calls: Vec<String> = ["frontend", "intruder (denied by intentions)"]
        .iter()
        .map(|caller| {
            let url = demo
                .value_after(&format!("call backend@cluster-01 as {caller}: curl"))
                .unwrap_or_else(|| panic!("no call example for {caller} in:\n{out}"));
            url.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Calls all along, so that rates, ratios and quantiles have data:
        // frontend's allowed ones, intruder's denied ones.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let traffic = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            while !*stopped.borrow() {
                tick.tick().await;
                for addr in &calls {
                    let _ = isthmus_tests::apps::get(addr, "/hello").await;
                }
            }
        });
        let client = Client::new(&prometheus).unwrap();
        let deadline = Instant::now() + DATA_LIMIT;
        let mut pending = queries.clone();
        loop {
            let mut still = Vec::new();
            for q in pending {
                match query(&client, &q.expr).await {
                    Ok(series) if has_data(&series) => {
                        for label in &q.legend_labels {
                            assert!(
                                series.iter().any(|s| s["metric"].get(label).is_some()),
                                "{}: the legend names {{{{{label}}}}}, which no series of {:?} has: {series:?}",
                                q.origin,
                                q.expr
                            );
                        }
                    }
                    Ok(series) => still.push((q, format!("no data: {series:?}"))),
                    Err(e) => panic!("{}: Prometheus refused {:?}: {e}", q.origin, q.expr),
                }
            }
            if still.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                let report: Vec<String> = still
                    .iter()
                    .map(|(q, why)| format!("{}\n    {}\n    {why}", q.origin, q.expr))
                    .collect();
                panic!(
                    "{} of {} queries have no data after {DATA_LIMIT:?}:\n{}",
                    report.len(),
                    queries.len(),
                    report.join("\n")
                );
            }
            pending = still.into_iter().map(|(q, _)| q).collect();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        // The figures mean what the panels say: backend in cluster-01
        // serves requests, and intruder's calls are being denied.
        let served = query(
            &client,
            &format!("sum(rate(request_total{{direction=\"inbound\", cluster=\"cluster-01\", service=\"backend\"}}[{RATE_INTERVAL}]))"),
        )
        .await
        .unwrap();
        let denied = query(
            &client,
            &format!("sum(rate(inbound_authorization_total{{decision=\"deny\", cluster=\"cluster-01\", service=\"backend\"}}[{RATE_INTERVAL}]))"),
        )
        .await
        .unwrap();
        for (what, series) in [("backend's request rate", served), ("backend's denials", denied)] {
            let value: f64 = series[0]["value"][1].as_str().unwrap().parse().unwrap();
            assert!(value > 0.0, "{what}: {value}");
        }

        // The demo points its agents' UI at the same Prometheus: cluster-01's
        // topology shows cluster-02's frontend calling backend, live.
        let api = demo
            .value_after("HTTP API")
            .unwrap_or_else(|| panic!("no HTTP API line in:\n{out}"));
        let token = std::fs::read_to_string(demo.dir.path().join("cluster-01-management.token"))
            .expect("the demo keeps cluster-01's management token");
        let agent = Client::with_credentials(
            &api,
            &isthmus_runtime::client::Credentials {
                token: Some(token.trim().to_owned()),
                ..Default::default()
            },
        )
        .unwrap();
        let deadline = Instant::now() + DATA_LIMIT;
        loop {
            let (topology, _) = agent
                .get_json::<Value>("/v1/internal/ui/topology")
                .await
                .unwrap();
            assert_eq!(topology["MetricsProvider"], "prometheus", "{topology}");
            let rate = topology["Edges"].as_array().into_iter().flatten().find_map(|e| {
                let from_frontend = e["Source"]["Name"] == "frontend"
                    && e["Source"]["Peer"] == "cluster-02"
                    && e["Destination"]["Name"] == "backend"
                    && e["Destination"]["Peer"] == "";
                from_frontend.then(|| e["Metrics"]["RequestRate"].as_f64()).flatten()
            });
            if topology["MetricsStatus"] == "ok" && rate.is_some_and(|r| r > 0.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no live frontend (cluster-02) -> backend rate in cluster-01's topology after {DATA_LIMIT:?}: {topology}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }

        let _ = stop.send(true);
        traffic.await.unwrap();
    });
    let status = demo.stop();
    assert!(status.success(), "the demo exits 0 after SIGTERM: {status}");
}
