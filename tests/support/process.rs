//! Real `isthmus` processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{isthmus_bin, WAIT};

/// An `isthmus agent` child process; killed on drop.
pub struct AgentProcess {
    child: Option<Child>,
    pub http_addr: String,
}

impl AgentProcess {
    /// Starts `isthmus agent <args> --http-addr 127.0.0.1:0` and waits for
    /// the line announcing where it listens.
    pub fn spawn(args: &[&str]) -> AgentProcess {
        Self::try_spawn(args).unwrap_or_else(|e| panic!("agent did not start: {e}"))
    }

    /// Like `spawn`, but returns the agent's stderr if it exits instead.
    pub fn try_spawn(args: &[&str]) -> Result<AgentProcess, String> {
        let mut child = Command::new(isthmus_bin())
            .arg("agent")
            .args(args)
            .args(["--http-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn isthmus agent");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("http=http://").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(WAIT) {
            Ok(http_addr) => Ok(AgentProcess {
                child: Some(child),
                http_addr,
            }),
            Err(_) => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("collect agent output");
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
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
                "agent did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
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
