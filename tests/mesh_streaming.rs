//! Streaming responses through both sidecars (real processes, mTLS between
//! them): the sidecars merge small chunks that arrive together, but must
//! never hold one back waiting for more. A backend streams server-sent
//! events, each written only after the caller has received the previous
//! one; so each event has to cross both hops while the backend still holds
//! the stream open with nothing more to send. Over HTTP/1.1 and h2c from
//! the caller; both sidecars with `--workers 1`, as the benchmark runs them.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use isthmus_testkit::body::RequestBody;
use isthmus_tests::api::put;
use isthmus_tests::apps::{http_app, request};
use isthmus_tests::eventually;
use isthmus_tests::process::AgentProcess;
use isthmus_tests::proxy_process::ProxyProcess;
use serde_json::json;

/// A failure bound, not a synchronisation: an event held by a sidecar never
/// arrives (the backend writes nothing more until it does).
const ARRIVAL_BOUND: Duration = Duration::from_secs(10);

/// The body the next `GET /events` streams: each chunk the test sends is
/// one write by the app.
type EventsSlot = Arc<Mutex<Option<RequestBody>>>;

/// The backend app: `GET /events` streams what the test puts into the
/// waiting slot's channel (`text/event-stream`, chunked); anything else
/// answers `ok`.
async fn sse_backend(slot: EventsSlot) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            // As a real event source would: no Nagle delay on small writes.
            let _ = stream.set_nodelay(true);
            let slot = slot.clone();
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let events = if request.uri().path() == "/events" {
                    slot.lock().unwrap().take()
                } else {
                    None
                };
                async move {
                    let response = match events {
                        Some(events) => http::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(events.boxed())
                            .unwrap(),
                        None => http::Response::new(
                            RequestBody::Left(Full::new(Bytes::from("ok"))).boxed(),
                        ),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Opens `GET /events` through `upstream` and checks that each event the
/// backend writes reaches the caller before the next one is written.
async fn events_flow(upstream: &str, slot: &EventsSlot, h2: bool) {
    let (writer, events) = isthmus_testkit::body::channel();
    *slot.lock().unwrap() = Some(events);
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    let client = builder.build_http::<Empty<Bytes>>();
    let request = http::Request::get(format!("http://{upstream}/events"))
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(ARRIVAL_BOUND, client.request(request))
        .await
        .expect("response headers within the bound")
        .expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    for i in 0..3 {
        let event = format!("id: {i}\ndata: event {i}\n\n");
        let written = Instant::now();
        writer.send(Bytes::from(event.clone())).await.unwrap();
        // The backend now holds the stream open with nothing more to write
        // until this event has reached the caller.
        let mut received = Vec::new();
        while received.len() < event.len() {
            let frame = tokio::time::timeout(ARRIVAL_BOUND, body.frame())
                .await
                .unwrap_or_else(|_| panic!("event {i} held back by the sidecars (h2c: {h2})"))
                .expect("the stream is still open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                received.extend_from_slice(&data);
            }
        }
        assert_eq!(String::from_utf8(received).unwrap(), event);
        eprintln!(
            "event {i} ({} bytes, h2c from the caller: {h2}) arrived {:?} after the backend wrote it",
            event.len(),
            written.elapsed()
        );
    }
    drop(writer);
    let rest = tokio::time::timeout(ARRIVAL_BOUND, body.collect())
        .await
        .expect("the stream ends once the backend closes it")
        .expect("a clean end");
    assert!(rest.to_bytes().is_empty());
}

#[tokio::test]
async fn server_sent_events_cross_both_sidecars_as_they_are_written() {
    let agent = AgentProcess::spawn(&["--dev", "--no-gateway", "--dns-port", "0"]);
    let client = isthmus_runtime::client::Client::new(&agent.http_addr).unwrap();
    put(
        &client,
        "/v1/config",
        json!({"Kind": "service-intentions", "Name": "backend",
               "Sources": [{"Name": "caller", "Action": "allow"}]}),
    )
    .await;
    let slot: EventsSlot = Arc::default();
    let backend_app = sse_backend(slot.clone()).await;
    let caller_app = http_app("caller").await.to_string();
    // One worker each, as the benchmark runs them: the coalescing's one
    // scheduler pass then shares the worker with the connection tasks.
    let one_worker = ["--workers", "1"];
    let _backend = ProxyProcess::spawn(&agent.url(), "backend", &backend_app, &[], &one_worker);
    let caller = ProxyProcess::spawn(
        &agent.url(),
        "caller",
        &caller_app,
        &["backend"],
        &one_worker,
    );
    let upstream = caller.upstream("backend").to_owned();
    eventually("the backend answers through both sidecars", || async {
        request(&upstream, "GET", "/ping", false)
            .await
            .ok()
            .filter(|(status, _, _)| *status == 200)
    })
    .await;

    events_flow(&upstream, &slot, false).await;
    events_flow(&upstream, &slot, true).await;
}
