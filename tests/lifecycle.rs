//! The agent's process lifecycle: clean shutdowns, and what it leaves on disk.

use http::Method;
use isthmus_api::client::Client;
use isthmus_tests::eventually;
use isthmus_tests::process::{field, AgentProcess};

/// The status `GET path` answers on `client`, if it answers.
async fn status(client: &Client, path: &str) -> Option<u16> {
    client
        .send(Method::GET, path, None)
        .await
        .ok()
        .map(|r| r.status.as_u16())
}

/// `isthmus agent --dev` runs a mesh gateway in-process; its supervisor
/// used to await the peering listener's finished task again on about one
/// shutdown in five and panic (`JoinHandle polled after completion`). Every
/// SIGTERM must end the process cleanly, with nothing panicking inside.
#[tokio::test]
async fn sigterm_never_panics_the_dev_agent_or_its_gateway() {
    for round in 0..10 {
        let agent = AgentProcess::spawn(&["--dev"]);
        // Shut down a gateway that is fully up (view loaded, listening,
        // registered), as an operator's SIGTERM usually finds it.
        let admin = Client::new(&field(&agent.line, "gateway_admin")).unwrap();
        eventually("the in-process gateway is ready", || async {
            (status(&admin, "/ready").await == Some(200)).then_some(())
        })
        .await;
        let (status, logs) = agent.terminate_with_logs();
        assert!(
            !logs.contains("panicked"),
            "round {round}: something panicked during shutdown:\n{logs}"
        );
        assert!(
            status.success(),
            "round {round}: exit status {status}:\n{logs}"
        );
        assert!(
            logs.contains("mesh gateway stopped"),
            "round {round}: the gateway's shutdown sequence ran to its end:\n{logs}"
        );
    }
}
