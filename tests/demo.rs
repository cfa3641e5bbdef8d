//! `isthmus demo`, run as a user runs it: the walkthrough passes and says
//! so; `--keep-running` leaves a working pair of clusters up until SIGTERM
//! and then stops every process it started; a missing binary fails clearly.

use std::process::{Command, Stdio};
use std::time::Duration;

use isthmus_tests::demo::KeptDemo;
use isthmus_tests::isthmus_bin;
use isthmus_tests::process::{stderr, stdout};

/// The whole demo may take this long (it takes a few seconds).
const DEMO_LIMIT: Duration = Duration::from_secs(120);

fn run_demo(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(isthmus_bin())
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn isthmus demo");
    let deadline = std::time::Instant::now() + DEMO_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("isthmus demo did not finish within {DEMO_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn the_demo_walks_through_peering_and_passes() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_demo(&["--dir", dir.path().to_str().unwrap()]);
    let out = stdout(&output);
    assert!(
        output.status.success(),
        "demo failed:\n{out}\n{}",
        stderr(&output)
    );
    for line in [
        "[cluster-01]$ isthmus peering generate-token -name cluster-02",
        "[cluster-02]$ isthmus peering establish -name cluster-01 -peering-token \"$TOKEN\"",
        "Successfully established peering connection with cluster-01",
        "✓ cluster-01 sees the peering cluster-02 ACTIVE",
        "✓ cluster-02 sees the peering cluster-01 ACTIVE",
        "✓ backend is exported to cluster-02",
        "✓ cluster-02 lists cluster-01 as ACTIVE with 1 imported service",
        "✓ one passing backend instance, from peer cluster-01",
        "200 hello from backend in cluster-01: GET /hello from spiffe://",
        "✓ backend answered, and saw the caller as cluster-02's frontend",
        "✓ intruder did not reach backend",
        "✓ backend's sidecar counted denied callers",
        "isthmus_peering_healthy{peer=\"cluster-01\"} 1",
        "Demo complete: all",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains('✗'), "a check failed:\n{out}");
    // --dir keeps the files: the entries written and every process's log.
    for file in [
        "exported-services.hcl",
        "backend-intentions.hcl",
        "logs/cluster-01-agent.log",
        "logs/backend-sidecar.log",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} kept");
    }
}

#[test]
fn keep_running_leaves_the_clusters_up_until_sigterm() {
    // Stopped (SIGTERM, then everything it started) even if a check fails.
    let demo = KeptDemo::start();
    let ui = demo.value_after("web UI");
    let frontend_call = demo.value_after("call backend@cluster-01 as frontend: curl");
    let seen = demo.lines.clone();
    let seen = seen.join("\n");
    assert!(seen.contains("✓ intruder did not reach backend"), "{seen}");
    // Prometheus is installed here (promtool below comes with it): the
    // demo runs one, scraping everything.
    assert!(seen.contains("Prometheus:   http://127.0.0.1:"), "{seen}");
    assert!(seen.contains("/ui/#/topology"), "{seen}");
    assert!(!seen.contains('✗'), "a check failed:\n{seen}");
    let prometheus = demo.dir.path().join("prometheus.yml");
    let checked = Command::new("promtool")
        .args(["check", "config"])
        .arg(&prometheus)
        .output()
        .expect("promtool (apt-get install prometheus) checks the demo's Prometheus config");
    assert!(
        checked.status.success(),
        "promtool check config {}: {}{}",
        prometheus.display(),
        stdout(&checked),
        stderr(&checked)
    );
    let ui = ui.unwrap_or_else(|| panic!("no web UI address in:\n{seen}"));
    let call = frontend_call.unwrap_or_else(|| panic!("no call example in:\n{seen}"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ui_status, call_status, call_body) = runtime.block_on(async {
        let ui = isthmus_tests::apps::get(
            ui.trim_start_matches("http://").split('/').next().unwrap(),
            "/ui/",
        )
        .await;
        let (base, path) = call.trim_start_matches("http://").split_once('/').unwrap();
        let called = isthmus_tests::apps::get(base, &format!("/{path}"))
            .await
            .unwrap();
        (ui.map(|(s, _, _)| s), called.0, called.1)
    });
    assert_eq!(
        call_status, 200,
        "the still-running frontend reaches backend: {call_body}"
    );
    assert!(call_body.contains("hello from backend"), "{call_body}");
    assert_eq!(ui_status, Ok(200), "the UI is served");

    let status = demo.stop();
    assert!(status.success(), "the demo exits 0 after SIGTERM: {status}");
    // Every process it started is gone: nothing listens on the agents' API any more.
    let agent = ui
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        std::net::TcpStream::connect(&agent).is_err(),
        "the agent at {agent} was stopped"
    );
}

#[test]
fn a_used_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cluster-01")).unwrap();
    let output = run_demo(&["--dir", dir.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("is not empty: give --dir an empty or new directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written"
    );
}

#[test]
fn a_missing_binary_fails_with_the_build_command() {
    let empty = tempfile::tempdir().unwrap();
    let output = run_demo(&["--bin-dir", empty.path().to_str().unwrap()]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("Demo FAILED"), "{err}");
    assert!(err.contains("isthmus not found in"), "{err}");
    assert!(err.contains("cargo build --workspace --bins"), "{err}");
}

#[test]
fn keep_running_without_prometheus_says_how_to_install_it() {
    let no_programs = tempfile::tempdir().unwrap();
    let demo = KeptDemo::start_until("Prometheus is not installed", |command| {
        command.env("PATH", no_programs.path());
    });
    let out = demo.output();
    assert!(out.contains("sudo apt-get install prometheus"), "{out}");
    assert!(out.contains("Going on without it."), "{out}");
    // Interrupted in the middle of the walkthrough: it stops what it started.
    let status = demo.stop();
    assert!(
        !status.success(),
        "an interrupted demo does not report success"
    );
}
