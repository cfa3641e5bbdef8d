//! Real `isthmus` processes: agents, and CLI runs against them.

use std::path::Path;
use std::process::{Command, Output, Stdio};

pub use isthmus_testkit::process::{
    field, spawn_announcing, spawn_logged, stderr, stdout, ChildProcess, Logs,
};

use super::isthmus_bin;

/// An `isthmus agent` child process; killed on drop.
pub struct AgentProcess {
    process: ChildProcess,
    pub http_addr: String,
    /// Where the DNS interface listens (UDP and TCP), unless turned off.
    pub dns_addr: Option<std::net::SocketAddr>,
    /// Where the HTTPS API listens (`https://host:port`), when given `--https-addr`.
    pub https_url: Option<String>,
    /// The whole announcement line (`isthmus agent running: ...`).
    pub line: String,
    logs: Logs,
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
        if !args
            .iter()
            .any(|a| a.trim_start_matches('-').starts_with("dns-port"))
        {
            // Consul's 8600 would collide between the tests' agents.
            all.extend_from_slice(&["--dns-port", "0"]);
        }
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
        let dns_addr = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("dns="))
            .map(|addr| addr.parse().expect("dns= is an address"));
        let https_url = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix("https="))
            .map(str::to_owned);
        Ok(AgentProcess {
            process: child,
            http_addr,
            dns_addr,
            https_url,
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
    pub fn terminate(self) -> std::process::ExitStatus {
        self.process.terminate()
    }

    /// Sends SIGTERM, waits (bounded) for the exit, and returns the status
    /// with everything the agent wrote to stderr.
    pub fn terminate_with_logs(self) -> (std::process::ExitStatus, String) {
        let status = self.process.terminate();
        assert!(self.logs.wait_closed(), "the agent's stderr stayed open");
        (status, self.logs.text())
    }

    /// Waits (bounded) for the agent to exit by itself and returns the
    /// status with everything it wrote to stderr.
    pub fn wait_exit_with_logs(self) -> (std::process::ExitStatus, String) {
        let status = self.process.wait_exit();
        assert!(self.logs.wait_closed(), "the agent's stderr stayed open");
        (status, self.logs.text())
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Stops the process (SIGSTOP) without it noticing: it falls behind.
    pub fn freeze(&self) {
        self.process.signal("-STOP");
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.process.signal("-CONT");
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
