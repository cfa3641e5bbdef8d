//! `isthmus demo --keep-running` as a fixture: started in a directory of
//! its own, its stdout read until a marker line (by default the one saying
//! everything is up), and stopped with SIGTERM (so that it stops every
//! process it started, Prometheus included) when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::isthmus_bin;

/// The whole walkthrough may take this long (it takes well under a minute).
pub const DEMO_LIMIT: Duration = Duration::from_secs(180);
/// The line `--keep-running` prints once everything is up.
pub const ALL_UP: &str = "Press Ctrl-C to stop";
/// How long the demo gets to stop everything after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(30);

pub struct KeptDemo {
    child: Option<Child>,
    /// Every stdout line up to and including the marker.
    pub lines: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl KeptDemo {
    /// Runs the demo with `--keep-running` until it prints [`ALL_UP`].
    pub fn start() -> KeptDemo {
        Self::start_until(ALL_UP, |_| {})
    }

    /// Runs the demo with `--keep-running` (and whatever `customize` sets
    /// on the command) until a stdout line contains `marker`; fails the test
    /// with the output so far if it exits or takes longer than [`DEMO_LIMIT`].
    pub fn start_until(marker: &str, customize: impl FnOnce(&mut Command)) -> KeptDemo {
        let dir = tempfile::tempdir().expect("a directory for the demo");
        let mut command = Command::new(isthmus_bin());
        command
            .args(["demo", "--keep-running", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        customize(&mut command);
        let mut child = command.spawn().expect("spawn isthmus demo");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Drained to the end: a closed pipe would fail the demo's
            // next line (what it prints on stopping).
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut demo = KeptDemo {
            child: Some(child),
            lines: Vec::new(),
            dir,
        };
        let deadline = Instant::now() + DEMO_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(marker);
                    demo.lines.push(line);
                    if done {
                        return demo;
                    }
                }
                Err(_) => panic!(
                    "the demo did not print {marker:?} within {DEMO_LIMIT:?} (or exited); output:\n{}",
                    demo.output()
                ),
            }
        }
    }

    pub fn output(&self) -> String {
        self.lines.join("\n")
    }

    /// The word after `label` on the first line that starts with it, runs
    /// of spaces counting as one (`value_after("Prometheus:")` on
    /// `   Prometheus:   http://...   (note)` gives `http://...`).
    pub fn value_after(&self, label: &str) -> Option<String> {
        self.lines.iter().find_map(|line| {
            let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
            let rest = words.strip_prefix(label)?;
            rest.split_whitespace().next().map(str::to_owned)
        })
    }

    /// Sends SIGTERM and waits (bounded) for the demo to stop everything.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
            .unwrap_or_else(|| panic!("the demo did not exit within {STOP_LIMIT:?} of SIGTERM"))
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for KeptDemo {
    fn drop(&mut self) {
        // Even when a test failed: the demo's children run in their own
        // process groups and would outlive a killed demo.
        let _ = self.terminate();
    }
}
