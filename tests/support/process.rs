//! Real `isthmus` processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use super::{isthmus_bin, WAIT};

/// An `isthmus agent` child process; killed on drop.
pub struct AgentProcess {
    child: Option<Child>,
    pub http_addr: String,
    /// The whole announcement line (`isthmus agent running: ...`).
    pub line: String,
    logs: Logs,
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

    /// Waits (bounded by `WAIT`) until the child's stderr is closed, so
    /// that [`Logs::text`] holds everything it printed; true if it closed.
    pub fn wait_closed(&self) -> bool {
        let (closed, changed) = &*self.closed;
        let guard = closed.lock().unwrap();
        let (guard, _) = changed
            .wait_timeout_while(guard, WAIT, |closed| !*closed)
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
) -> Result<(Child, String), String> {
    spawn_logged(program, args, marker).map(|(child, line, _)| (child, line))
}

/// Like [`spawn_announcing`], also keeping the child's stderr lines.
pub fn spawn_logged(
    program: &Path,
    args: &[&str],
    marker: &str,
) -> Result<(Child, String, Logs), String> {
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
    match rx.recv_timeout(WAIT) {
        Ok(line) => Ok((child, line, logs)),
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

/// Sends SIGTERM and waits (bounded) for the child to exit.
pub fn terminate_child(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + WAIT;
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

impl AgentProcess {
    /// Starts `isthmus agent <args> --http-addr 127.0.0.1:0` and waits for
    /// the line announcing where it listens.
    pub fn spawn(args: &[&str]) -> AgentProcess {
        Self::try_spawn(args).unwrap_or_else(|e| panic!("agent did not start: {e}"))
    }

    /// Like `spawn`, but returns the agent's stderr if it exits instead.
    pub fn try_spawn(args: &[&str]) -> Result<AgentProcess, String> {
        Self::try_spawn_with_umask(None, args)
    }

    /// Like `spawn`, with the process's umask set to `umask` (octal, e.g.
    /// `"022"`, the usual default) rather than inherited from the tests.
    pub fn spawn_with_umask(umask: &str, args: &[&str]) -> AgentProcess {
        Self::try_spawn_with_umask(Some(umask), args)
            .unwrap_or_else(|e| panic!("agent did not start: {e}"))
    }

    fn try_spawn_with_umask(umask: Option<&str>, args: &[&str]) -> Result<AgentProcess, String> {
        let mut all = vec!["agent"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--http-addr", "127.0.0.1:0"]);
        if args.contains(&"--dev") {
            // The in-process gateway must not collide with other tests' either.
            all.extend_from_slice(&[
                "--gateway-bind",
                "127.0.0.1:0",
                "--gateway-admin-bind",
                "127.0.0.1:0",
            ]);
        }
        let isthmus = isthmus_bin();
        let (child, line, logs) = match umask {
            None => spawn_logged(&isthmus, &all, "isthmus agent running:")?,
            Some(umask) => {
                // The shell sets the umask and then becomes the agent
                // (exec), so signals and the exit status are the agent's.
                let script = format!("umask {umask} && exec \"$0\" \"$@\"");
                let mut with_shell = vec!["-c", script.as_str(), isthmus.to_str().unwrap()];
                with_shell.extend_from_slice(&all);
                spawn_logged(Path::new("/bin/sh"), &with_shell, "isthmus agent running:")?
            }
        };
        let http_addr = field(&line, "http")
            .trim_start_matches("http://")
            .to_owned();
        Ok(AgentProcess {
            child: Some(child),
            http_addr,
            line,
            logs,
        })
    }

    /// The agent's stderr so far.
    pub fn logs(&self) -> Logs {
        self.logs.clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate_child(self.child.take().unwrap())
    }

    /// Sends SIGTERM, waits (bounded) for the exit, and returns the status
    /// with everything the agent wrote to stderr.
    pub fn terminate_with_logs(mut self) -> (std::process::ExitStatus, String) {
        let status = terminate_child(self.child.take().unwrap());
        assert!(self.logs.wait_closed(), "the agent's stderr stayed open");
        (status, self.logs.text())
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the CLI against `http_addr` (via ISTHMUS_HTTP_ADDR) with optional stdin.
pub fn cli(http_addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    cli_in(None, http_addr, args, stdin)
}

pub fn cli_in(dir: Option<&Path>, http_addr: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(isthmus_bin());
    command
        .args(args)
        .env("ISTHMUS_HTTP_ADDR", http_addr)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command.spawn().expect("spawn isthmus");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("isthmus CLI runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
