//! A real single-member etcd (Debian's `etcd-server`) on ephemeral loopback
//! ports, in a directory the test owns; killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{ChildProcess, PROCESS_WAIT};

pub struct EtcdProcess {
    process: ChildProcess,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

/// A port nobody listens on right now (the OS's pick); etcd cannot be told
/// to pick one itself and report it, so a start that loses the race retries.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl EtcdProcess {
    /// Starts etcd with its data in `dir/etcd` and waits until it is healthy.
    pub fn start(dir: &Path) -> EtcdProcess {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(dir, free_port(), free_port()) {
                Ok(etcd) => return etcd,
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    fn try_start(dir: &Path, client_port: u16, peer_port: u16) -> Result<EtcdProcess, String> {
        let data_dir = dir.join("etcd");
        let log = dir.join(format!("etcd-{client_port}.log"));
        let process = spawn(&data_dir, &log, client_port, peer_port)?;
        let etcd = EtcdProcess {
            process,
            endpoint: format!("http://127.0.0.1:{client_port}"),
            client_port,
            peer_port,
            data_dir,
            log,
        };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    /// Stops etcd (SIGKILL), as losing its machine would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = spawn(&self.data_dir, &self.log, self.client_port, self.peer_port)
            .expect("etcd restarts");
        self.wait_healthy().expect("etcd healthy after restart");
    }

    /// Compacts etcd's history up to its newest revision, so a watch that
    /// had fallen behind must read the whole state again.
    pub fn compact_all(&self) {
        let revision = self.revision();
        let status = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.endpoint,
                "compaction",
                &revision.to_string(),
            ])
            .stdout(Stdio::null())
            .status()
            .expect("etcdctl runs (Debian's etcd-client)");
        assert!(status.success(), "etcdctl compaction failed");
    }

    /// etcd's current revision.
    pub fn revision(&self) -> i64 {
        let body = self.request("POST", "/v3/kv/range", r#"{"key":"AA=="}"#);
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("etcd range {body:?}: {e}"));
        json["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("etcd reports its revision")
    }

    fn wait_healthy(&self) -> Result<(), String> {
        let deadline = Instant::now() + PROCESS_WAIT;
        while Instant::now() < deadline {
            if self
                .try_request("GET", "/health", "")
                .is_some_and(|body| body.contains("\"health\":\"true\""))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    fn request(&self, method: &str, path: &str, body: &str) -> String {
        self.try_request(method, path, body)
            .unwrap_or_else(|| panic!("etcd did not answer {method} {path}"))
    }

    /// One HTTP/1.0 request to etcd's JSON gateway; the body of a 200.
    fn try_request(&self, method: &str, path: &str, body: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.client_port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
    }
}

fn spawn(
    data_dir: &Path,
    log: &Path,
    client_port: u16,
    peer_port: u16,
) -> Result<ChildProcess, String> {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let child = Command::new("etcd")
        .args(["--name", "test", "--data-dir"])
        .arg(data_dir)
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("test={peer}")])
        // isthmus writes one transaction per change, and a peering's
        // import can touch many rows at once.
        .args(["--max-txn-ops", "10000", "--max-request-bytes", "16777216"])
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("starting etcd (scripts/setup.sh installs it): {e}"))?;
    Ok(ChildProcess::new(child))
}
