//! Child processes the bench starts: killed (SIGKILL, then reaped) when
//! their guard drops, so an error or Ctrl-C leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub const WAIT: Duration = Duration::from_secs(20);

/// A running child; killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    stderr_tail: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last stderr:\n{}",
                self.name,
                self.stderr_tail.lock().unwrap().join("\n")
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    /// SIGTERM first (nginx's master then stops its workers), SIGKILL after
    /// a short grace, and SIGKILL for any descendant still left: a worker
    /// whose master was killed outright would otherwise live on.
    fn drop(&mut self) {
        let tree = crate::measure::tree(self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let rest: Vec<String> = tree[1..]
            .iter()
            .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
            .map(u32::to_string)
            .collect();
        if !rest.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&rest)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Starts `program args` with piped output. If `marker` is given, waits
/// (bounded) for a stdout line containing it and returns that line.
pub fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    marker: Option<&str>,
) -> Result<(Proc, Option<String>)> {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {}", program.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    let want = marker.map(str::to_owned);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if want.as_deref().is_some_and(|m| line.contains(m)) {
                let _ = tx.send(line);
            }
        }
    });
    let tail = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tail_writer = tail.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut tail = tail_writer.lock().unwrap();
            if tail.len() >= 40 {
                tail.remove(0);
            }
            tail.push(line);
        }
    });
    let mut proc = Proc {
        name: name.to_owned(),
        child,
        stderr_tail: tail,
    };
    let line = match marker {
        None => None,
        Some(marker) => match rx.recv_timeout(WAIT) {
            Ok(line) => Some(line),
            Err(_) => {
                proc.check_alive()?;
                bail!("{name} did not print {marker:?} within {WAIT:?}");
            }
        },
    };
    Ok((proc, line))
}

/// The value after `key=` in an announcement line.
pub fn field(line: &str, key: &str) -> Result<String> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .with_context(|| format!("{key}= missing from {line:?}"))
}

/// A free loopback port (bound and released; good enough on a quiet host).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `addr` accepts TCP connections, checking `proc` stays alive.
pub async fn wait_port(proc: &mut Proc, addr: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        proc.check_alive()?;
        if Instant::now() > deadline {
            bail!("{} did not listen on {addr}", proc.name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first line `program args` prints (stdout or stderr), for the report.
pub fn version(program: &Path, args: &[&str]) -> String {
    let Ok(output) = Command::new(program).args(args).output() else {
        return "unknown".into();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}
