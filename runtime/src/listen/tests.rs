use super::*;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_millis(300);
/// Bound on every wait in these tests.
const BOUND: Duration = Duration::from_secs(10);

fn limits(max_conns: usize, per_client: usize) -> Limits {
    Limits {
        header_read_timeout: SHORT,
        idle_timeout: SHORT,
        max_conns,
        max_conns_per_client: per_client,
    }
}

/// A server answering `ok` (after `delay` when the path is `/slow`).
async fn start(limits: Limits) -> (SocketAddr, ListenerCounters, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = ListenerCounters::detached();
    let limiter = ConnLimiter::new("test", &limits, counters.clone());
    let (stop, mut stopped) = watch::channel(false);
    let make = |_remote: SocketAddr| {
        hyper::service::service_fn(|request: Request<Incoming>| async move {
            if request.uri().path() == "/slow" {
                tokio::time::sleep(SHORT * 3).await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    };
    let c = counters.clone();
    tokio::spawn(async move {
        serve(listener, limiter, limits, c, make, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await;
    });
    (addr, counters, stop)
}

/// Sends one request on `tcp` and reads the response head and body.
async fn request(tcp: &mut TcpStream, path: &str) -> String {
    let text = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    tcp.write_all(text.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(BOUND, async {
        while !answer.ends_with(b"ok") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("an answer");
    String::from_utf8(answer).unwrap()
}

/// Waits (bounded) until the server closes `tcp`; returns how long it took.
async fn closed(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    tokio::time::timeout(BOUND, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    started.elapsed()
}

#[tokio::test]
async fn partial_requests_are_closed_at_the_header_timeout_and_others_served() {
    let (addr, counters, _stop) = start(limits(100, 0)).await;
    let mut partial = Vec::new();
    for i in 0..20 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            tcp.write_all(b"GET /v1/agent/self HT").await.unwrap();
        }
        partial.push(tcp);
    }
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert!(request(&mut client, "/").await.starts_with("HTTP/1.1 200"));
    // Gone before it could idle out itself (only the flood is counted).
    drop(client);
    for tcp in &mut partial {
        closed(tcp).await;
    }
    assert_eq!(counters.timed_out_count(Timeout::HeaderRead), 20);
}

#[tokio::test]
async fn an_http2_preface_alone_is_closed_at_the_header_timeout() {
    let (addr, counters, _stop) = start(limits(100, 0)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed(&mut tcp).await;
    assert_eq!(counters.timed_out_count(Timeout::HeaderRead), 1);
}

#[tokio::test]
async fn idle_keep_alive_is_closed_but_a_slow_request_is_not() {
    let (addr, counters, _stop) = start(limits(100, 0)).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // In flight for three times the idle timeout: not idle.
    assert!(request(&mut tcp, "/slow").await.starts_with("HTTP/1.1 200"));
    assert!(request(&mut tcp, "/").await.starts_with("HTTP/1.1 200"));
    closed(&mut tcp).await;
    assert_eq!(
        counters.timed_out_count(Timeout::Idle) + counters.timed_out_count(Timeout::HeaderRead),
        1
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let (addr, counters, _stop) = start(Limits {
        header_read_timeout: BOUND,
        idle_timeout: BOUND,
        max_conns: 4,
        max_conns_per_client: 0,
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // Answered, so admitted, before the next one connects.
        assert!(request(&mut tcp, "/").await.starts_with("HTTP/1.1 200"));
        held.push(tcp);
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    let waited = closed(&mut over).await;
    assert!(waited < BOUND / 2, "{waited:?}");
    assert_eq!(counters.refused_count(Refusal::MaxConns), 1);
    // A place frees up when a connection closes.
    drop(held.pop());
    let mut next = None;
    for _ in 0..100 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        if matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {
            next = Some(tcp);
            break;
        }
    }
    assert!(next.is_some(), "a freed place is reused");
}

#[test]
fn the_per_client_cap_lets_other_clients_through() {
    let counters = ListenerCounters::detached();
    let limiter = ConnLimiter::new("test", &limits(10, 2), counters.clone());
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let first = limiter.admit(a).unwrap();
    let _second = limiter.admit(a).unwrap();
    assert!(limiter.admit(a).is_none());
    assert_eq!(counters.refused_count(Refusal::MaxConnsPerClient), 1);
    let _other = limiter.admit(b).unwrap();
    drop(first);
    let _again = limiter.admit(a).unwrap();
    assert_eq!(limiter.open(), 3);
    let all: Vec<_> = (0..7).filter_map(|_| limiter.admit(b)).collect();
    assert_eq!(all.len(), 1, "per client cap of b");
}

#[test]
fn the_burst_log_speaks_once_per_interval() {
    let log = BurstLog::default();
    assert_eq!(log.should_log(), Some(1));
    assert_eq!(log.should_log(), None);
    assert_eq!(log.should_log(), None);
}

#[test]
fn the_fd_limit_can_be_raised_to_the_hard_limit() {
    let (before, after) = raise_fd_limit().unwrap();
    assert!(after >= before);
}

#[test]
fn the_cap_fits_the_open_file_limit() {
    let mut limits = Limits::with_max_conns(usize::MAX);
    limits.fit_fd_limit("test");
    let current = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match current {
        Some(limit) => assert_eq!(limits.max_conns as u64, (limit / 4 * 3).max(1)),
        None => assert_eq!(limits.max_conns, usize::MAX),
    }
    let mut small = Limits::with_max_conns(10);
    small.fit_fd_limit("test");
    assert_eq!(small.max_conns, 10);
}
