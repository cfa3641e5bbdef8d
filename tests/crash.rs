//! Crash safety: a real `isthmus agent --data-dir` is killed with SIGKILL in
//! the middle of concurrent writes (service registrations and config
//! entries), restarted on the same data directory, and every write it had
//! acknowledged (a 2xx received before the kill) must still be there.
//!
//! Where the kill lands is random: a seeded generator picks, for every round,
//! after how many acknowledged writes to kill. The seed is printed; set
//! `ISTHMUS_CRASH_SEED` to replay a run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::Method;
use isthmus_runtime::client::Client;
use isthmus_tests::process::AgentProcess;
use isthmus_tests::{eventually, WAIT};
use serde_json::{json, Value};

const WRITERS: usize = 6;
const ROUNDS: usize = 5;

/// xorshift64*: enough randomness for kill points, reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    if let Some(seed) = std::env::var("ISTHMUS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (nanos ^ u64::from(std::process::id())) | 1
}

/// What the agent acknowledged.
#[derive(Clone, Default)]
struct Acked {
    /// Service ID → the `seq` in its Meta (services are also re-registered).
    services: BTreeMap<String, u64>,
    /// service-intentions entry name → the allowed source it was written with.
    entries: BTreeMap<String, String>,
}

/// One write, retried never: either the agent answers 2xx (acknowledged) or
/// the writer stops (the agent is gone).
async fn write(client: &Client, method: Method, path: &str, body: Value) -> Result<(), String> {
    let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap());
    match tokio::time::timeout(WAIT, client.send(method, path, Some(body))).await {
        Ok(Ok(response)) if response.status.is_success() => Ok(()),
        Ok(Ok(response)) => Err(format!(
            "{path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )),
        Ok(Err(e)) => Err(format!("{path}: {e}")),
        Err(_) => Err(format!("{path}: no answer within {WAIT:?}")),
    }
}

/// Writes until the agent stops answering. Each step is one of: register a
/// new service, re-register this writer's counter service with the next
/// sequence number, write a new service-intentions entry.
async fn writer(
    round: usize,
    id: usize,
    client: Client,
    acked: Arc<Mutex<Acked>>,
    count: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) -> Vec<String> {
    let mut refused = Vec::new();
    let counter_id = format!("counter-{id}");
    for step in 0u64.. {
        let outcome = match step % 3 {
            0 => {
                let service = format!("svc-{round}-{id}-{step}");
                write(
                    &client,
                    Method::PUT,
                    "/v1/agent/service/register",
                    json!({"ID": service, "Name": format!("svc-{id}"), "Port": 1000 + step, "Meta": {"seq": step.to_string()}}),
                )
                .await
                .map(|()| {
                    acked.lock().unwrap().services.insert(service, step);
                })
            }
            1 => write(
                &client,
                Method::PUT,
                "/v1/agent/service/register",
                json!({"ID": counter_id, "Name": "counter", "Port": 2000 + id, "Meta": {"seq": (round as u64 * 1_000_000 + step).to_string()}}),
            )
            .await
            .map(|()| {
                acked
                    .lock()
                    .unwrap()
                    .services
                    .insert(counter_id.clone(), round as u64 * 1_000_000 + step);
            }),
            _ => {
                let name = format!("dest-{round}-{id}-{step}");
                let source = format!("src-{step}");
                write(
                    &client,
                    Method::PUT,
                    "/v1/config",
                    json!({"Kind": "service-intentions", "Name": name, "Sources": [{"Name": source, "Action": "allow"}]}),
                )
                .await
                .map(|()| {
                    acked.lock().unwrap().entries.insert(name, source);
                })
            }
        };
        match outcome {
            Ok(()) => {
                count.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                // Before the kill every write must succeed.
                if !killed.load(Ordering::SeqCst) {
                    refused.push(e);
                }
                break;
            }
        }
    }
    refused
}

/// Everything acknowledged so far is on the (restarted) agent.
async fn check(client: &Client, acked: &Acked, round: usize) {
    let (services, _): (Value, _) = client
        .get_json("/v1/agent/services")
        .await
        .expect("agent services");
    for (id, seq) in &acked.services {
        let service = services
            .get(id)
            .unwrap_or_else(|| panic!("round {round}: acknowledged service {id} is gone"));
        let stored: u64 = service["Meta"]["seq"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("round {round}: {id} has no seq: {service}"));
        // A later write may have landed without its answer arriving.
        assert!(
            stored >= *seq,
            "round {round}: service {id} went back from acknowledged seq {seq} to {stored}"
        );
    }
    let (entries, _): (Value, _) = client
        .get_json("/v1/config/service-intentions")
        .await
        .expect("config entries");
    let by_name: BTreeMap<&str, &Value> = entries
        .as_array()
        .expect("a list of entries")
        .iter()
        .map(|e| (e["Name"].as_str().unwrap(), e))
        .collect();
    for (name, source) in &acked.entries {
        let entry = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("round {round}: acknowledged entry {name} is gone"));
        assert_eq!(
            entry["Sources"][0]["Name"], *source,
            "round {round}: entry {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let seed = seed();
    println!("crash test seed: {seed} (ISTHMUS_CRASH_SEED={seed} replays it)");
    eprintln!("crash test seed: {seed} (ISTHMUS_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let args = ["--data-dir", data, "--cluster-name", "crash"];
    let acked = Arc::new(Mutex::new(Acked::default()));

    let mut agent = AgentProcess::spawn(&args);
    for round in 0..ROUNDS {
        let client = Client::new(&agent.http_addr).unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let kill_after = 10 + rng.below(150) as usize;
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(
                    round,
                    id,
                    client.clone(),
                    acked.clone(),
                    count.clone(),
                    killed.clone(),
                ))
            })
            .collect();
        eventually(&format!("{kill_after} acknowledged writes"), || {
            let done = count.load(Ordering::SeqCst) >= kill_after;
            async move { done.then_some(()) }
        })
        .await;
        // Writes are still in flight on every writer here.
        killed.store(true, Ordering::SeqCst);
        agent.kill();
        for task in writers {
            let refused = tokio::time::timeout(WAIT, task)
                .await
                .expect("writers stop once the agent is gone")
                .unwrap();
            assert!(
                refused.is_empty(),
                "round {round}: writes refused before the kill: {refused:?}"
            );
        }
        let acked_now = count.load(Ordering::SeqCst);
        agent = AgentProcess::spawn(&args);
        let client = Client::new(&agent.http_addr).unwrap();
        let acked_so_far = acked.lock().unwrap().clone();
        check(&client, &acked_so_far, round).await;
        println!(
            "round {round}: killed after {acked_now} acknowledged writes (target {kill_after}); {} services and {} entries acknowledged so far, all present after restart",
            acked_so_far.services.len(),
            acked_so_far.entries.len()
        );
    }
    // One more check after a clean stop, so the last round's state also
    // survives an orderly shutdown.
    assert!(agent.terminate().success());
    let agent = AgentProcess::spawn(&args);
    let client = Client::new(&agent.http_addr).unwrap();
    let acked = acked.lock().unwrap().clone();
    check(&client, &acked, ROUNDS).await;
}
