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
    /// `http://127.0.0.1:<port>` (`https://` with TLS).
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    tls: Option<EtcdTlsFiles>,
}

/// The PEM files of an etcd that requires TLS with client certificates:
/// the CA of both ends, and a client certificate it accepts.
#[derive(Clone, Debug)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

impl EtcdTlsFiles {
    /// A fresh CA, a server certificate for 127.0.0.1 and a client one,
    /// written under `dir`.
    fn write(dir: &Path) -> EtcdTlsFiles {
        let ca = crate::pki::Ca::new("etcd.test", "etcd");
        let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
        let server = ca.host_leaf(localhost);
        let client = ca.host_leaf(localhost);
        let write = |name: &str, pem: &str| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        EtcdTlsFiles {
            ca: write("etcd-ca.pem", &ca.pem),
            client_cert: write("etcd-client.pem", &client.cert_pem),
            client_key: write("etcd-client-key.pem", &client.key_pem),
            server_cert: write("etcd-server.pem", &server.cert_pem),
            server_key: write("etcd-server-key.pem", &server.key_pem),
        }
    }
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
        Self::start_with(dir, None)
    }

    /// Starts an etcd that serves only TLS and requires a client
    /// certificate signed by its CA (`--client-cert-auth`).
    pub fn start_tls(dir: &Path) -> (EtcdProcess, EtcdTlsFiles) {
        let files = EtcdTlsFiles::write(dir);
        (Self::start_with(dir, Some(files.clone())), files)
    }

    fn start_with(dir: &Path, tls: Option<EtcdTlsFiles>) -> EtcdProcess {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(dir, free_port(), free_port(), tls.clone()) {
                Ok(etcd) => return etcd,
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    fn try_start(
        dir: &Path,
        client_port: u16,
        peer_port: u16,
        tls: Option<EtcdTlsFiles>,
    ) -> Result<EtcdProcess, String> {
        let data_dir = dir.join("etcd");
        let log = dir.join(format!("etcd-{client_port}.log"));
        let process = spawn(&data_dir, &log, client_port, peer_port, tls.as_ref())?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let etcd = EtcdProcess {
            process,
            endpoint: format!("{scheme}://127.0.0.1:{client_port}"),
            client_port,
            peer_port,
            data_dir,
            log,
            tls,
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
        self.process = spawn(
            &self.data_dir,
            &self.log,
            self.client_port,
            self.peer_port,
            self.tls.as_ref(),
        )
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
            let healthy = match &self.tls {
                None => self
                    .try_request("GET", "/health", "")
                    .is_some_and(|body| body.contains("\"health\":\"true\"")),
                Some(files) => Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &self.endpoint, "endpoint", "health"])
                    .arg("--cacert")
                    .arg(&files.ca)
                    .arg("--cert")
                    .arg(&files.client_cert)
                    .arg("--key")
                    .arg(&files.client_key)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
            };
            if healthy {
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
    tls: Option<&EtcdTlsFiles>,
) -> Result<ChildProcess, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let client = format!("{scheme}://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log_file = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut command = Command::new("etcd");
    if let Some(files) = tls {
        command
            .arg("--cert-file")
            .arg(&files.server_cert)
            .arg("--key-file")
            .arg(&files.server_key)
            .arg("--trusted-ca-file")
            .arg(&files.ca)
            .arg("--client-cert-auth");
    }
    let child = command
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
