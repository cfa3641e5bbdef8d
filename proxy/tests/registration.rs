//! The sidecar's catalog registration against a stub agent: it comes back
//! when it disappears, and `/ready` says not ready while it is missing.

mod support;

use isthmus_proxy::Protocol;
use support::*;

/// Polls `/ready` on `proxy`'s admin listener until it answers `status`.
async fn ready_becomes(admin: std::net::SocketAddr, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (now, body) = admin_get(admin, "/ready").await;
        if now == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready stayed {now} ({body}), expected {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The registration vanishes (an operator deregistered it, or the agent
/// removed it after its check stayed critical) while the agent refuses new
/// ones: the proxy notices, says not ready, and registers again as soon as
/// the agent accepts. It used to notice only when the agent's index went
/// backwards, and stayed out of the catalog (and ready) for good.
#[tokio::test]
async fn a_vanished_registration_is_noticed_and_made_again() {
    let ca = Ca::local();
    let stub = StubAgent::for_proxy(
        ca.leaf("backend").leaf_cert("backend"),
        view(&ca, vec![], vec![]),
    )
    .await;
    let app = HttpApp::start("backend").await;
    let proxy = start_ready(proxy_config(
        &stub,
        "backend",
        app.addr,
        Protocol::Http,
        &[],
    ))
    .await;
    let id = proxy.proxy_id().to_owned();
    stub.next_registration().await;
    assert!(stub.is_registered(&id));
    assert_eq!(admin_get(proxy.admin_addr(), "/ready").await.0, 200);

    stub.refuse_registrations(true);
    stub.drop_registration(&id);
    let body = ready_becomes(proxy.admin_addr(), 503).await;
    assert!(body.contains("regist"), "{body}");

    stub.refuse_registrations(false);
    let registration = stub.next_registration().await;
    assert_eq!(registration["ID"], id.as_str());
    ready_becomes(proxy.admin_addr(), 200).await;
    assert!(stub.is_registered(&id));

    // And again, with the agent accepting at once: back within seconds.
    stub.drop_registration(&id);
    let registration = stub.next_registration().await;
    assert_eq!(registration["ID"], id.as_str());
    ready_becomes(proxy.admin_addr(), 200).await;
    proxy.shutdown().await.unwrap();
}
