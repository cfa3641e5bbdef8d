//! Built binaries run as child processes: find them next to the test
//! binary, start one and wait (bounded) for the stdout line announcing it
//! is ready, keep its stderr (echoed, so a failing test shows the logs of
//! the processes it ran), signal it, and kill it when the test drops it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a real process gets to start, exit or close its stderr; longer
/// than [`crate::WAIT`] because it starts cold on a loaded machine.
pub const PROCESS_WAIT: Duration = Duration::from_secs(20);

/// The directory holding the workspace's built binaries. The README's test
/// command builds them first; `ISTHMUS_BIN_DIR` overrides.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ISTHMUS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The built binary `name`, failing the test if it is not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// Every stderr line a child printed so far (its logs).
#[derive(Clone, Default)]
pub struct Logs {
    lines: Arc<Mutex<Vec<String>>>,
    /// Set once the child's stderr reached its end.
    closed: Arc<(Mutex<bool>, Condvar)>,
}

impl Logs {
    /// The lines so far, joined.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (bounded by [`PROCESS_WAIT`]) until the child's stderr is
    /// closed, so that [`Logs::text`] holds everything it printed; true if
    /// it closed.
    pub fn wait_closed(&self) -> bool {
        let (closed, changed) = &*self.closed;
        let guard = closed.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, PROCESS_WAIT, |closed| !*closed)
            .unwrap();
        *guard
    }

    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
    }

    fn close(&self) {
        let (closed, changed) = &*self.closed;
        *closed.lock().unwrap() = true;
        changed.notify_all();
    }
}

/// Starts `program args`, and waits (bounded) for a stdout line containing
/// `marker`; returns the child and that line, or the child's stderr if it
/// exits or stays silent.
pub fn spawn_announcing(
    program: &Path,
    args: &[&str],
    marker: &str,
) -> Result<(ChildProcess, String), String> {
    spawn_logged(program, args, marker).map(|(child, line, _)| (child, line))
}

/// Like [`spawn_announcing`], also keeping the child's stderr lines.
pub fn spawn_logged(
    program: &Path,
    args: &[&str],
    marker: &str,
) -> Result<(ChildProcess, String, Logs), String> {
    let mut child = Command::new(program)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let marker = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&marker) {
                let _ = tx.send(line);
            }
        }
    });
    // Keep stderr flowing (a full pipe would block the child); echo it so
    // a failing test shows the logs of the processes it ran.
    let logs = Logs::default();
    let kept = logs.clone();
    let name = program
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{name}] {line}");
            kept.push(line);
        }
        kept.close();
    });
    match rx.recv_timeout(PROCESS_WAIT) {
        Ok(line) => Ok((ChildProcess::new(child), line, logs)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            logs.wait_closed();
            Err(logs.text())
        }
    }
}

/// The value after `key=` in an announcement line.
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= missing from {line:?}"))
        .to_owned()
}

/// A child process that is killed (SIGKILL) when dropped, unless it was
/// terminated or killed before.
pub struct ChildProcess {
    child: Option<Child>,
}

impl ChildProcess {
    pub fn new(child: Child) -> ChildProcess {
        ChildProcess { child: Some(child) }
    }

    /// Sends SIGTERM and waits (bounded) for the child to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + PROCESS_WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the child to exit by itself, as after a request
    /// to leave.
    pub fn wait_exit(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("process running");
        let deadline = std::time::Instant::now() + PROCESS_WAIT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process did not exit by itself"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (as `kill` takes it, e.g. `-STOP`) to the running process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("process running");
        send_signal(child.id(), signal);
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` (as `kill` takes it, e.g. `-TERM`) to the process `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {signal} failed");
}

/// Sends SIGTERM to a child started with tokio and waits for its exit,
/// failing the test after [`crate::WAIT`].
pub async fn sigterm_and_wait(child: &mut tokio::process::Child) -> ExitStatus {
    send_signal(child.id().expect("the child is running"), "-TERM");
    tokio::time::timeout(crate::WAIT, child.wait())
        .await
        .expect("the child did not exit after SIGTERM")
        .unwrap()
}

/// A tokio child's stdout, line by line.
pub type StdoutLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Takes a tokio child's (piped) stdout and waits, failing the test after
/// [`crate::WAIT`], for its first line: the one a binary prints once it is
/// ready. Returns that line and the rest of stdout.
pub async fn ready_line(child: &mut tokio::process::Child) -> (String, StdoutLines) {
    use tokio::io::AsyncBufReadExt;

    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(crate::WAIT, lines.next_line())
        .await
        .expect("no ready line")
        .unwrap()
        .expect("stdout closed");
    (line, lines)
}

/// The stdout of a finished command, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The stderr of a finished command, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
