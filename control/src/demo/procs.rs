//! The demo's child processes: agents, gateways and sidecars, each started
//! from the binaries next to `isthmus`, logging to its own file, and all
//! stopped (SIGTERM, then SIGKILL after a grace period) when the demo ends.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rustix::process::{kill_process, Pid, Signal};
use tokio::sync::oneshot;

/// How long a process may take to announce that it is running.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopped processes get to drain before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the binaries are and where the logs go.
pub struct Launcher {
    bin_dir: PathBuf,
    log_dir: PathBuf,
}

/// A running child and the line it announced itself with.
struct Running {
    name: String,
    child: Child,
}

/// Every process the demo started; stopped in reverse start order on drop,
/// so sidecars leave before gateways and gateways before agents.
#[derive(Default)]
pub struct Processes {
    running: Vec<Running>,
}

impl Launcher {
    pub fn new(bin_dir: PathBuf, log_dir: PathBuf) -> anyhow::Result<Launcher> {
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating the log directory {}", log_dir.display()))?;
        Ok(Launcher { bin_dir, log_dir })
    }

    /// The path of `binary`, or an error that says how to build it.
    pub fn binary(&self, binary: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(binary);
        if !path.is_file() {
            bail!(
                "{binary} not found in {}: build every binary first with \
                 `cargo build --workspace --bins`, or pass --bin-dir",
                self.bin_dir.display()
            );
        }
        Ok(path)
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// Starts `binary args` (from the binary directory) as `name` and
    /// waits (bounded) for the stdout line containing `marker`, which it
    /// returns. Output goes to `<log dir>/<name>.log`.
    pub async fn start(
        &self,
        processes: &mut Processes,
        name: &str,
        binary: &str,
        args: &[String],
        marker: &str,
    ) -> anyhow::Result<String> {
        let program = self.binary(binary)?;
        self.start_program(processes, name, &program, args, marker, Announces::OnStdout)
            .await
    }

    /// Like [`Launcher::start`], for any program, announcing itself on
    /// the stream `announces`.
    pub async fn start_program(
        &self,
        processes: &mut Processes,
        name: &str,
        program: &Path,
        args: &[String],
        marker: &str,
        announces: Announces,
    ) -> anyhow::Result<String> {
        let log_path = self.log_path(name);
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let other = log
            .try_clone()
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C in the terminal reaches only
            // the demo, which then stops everything in order.
            .process_group(0);
        match announces {
            Announces::OnStdout => command.stdout(Stdio::piped()).stderr(other),
            Announces::OnStderr => command.stdout(other).stderr(Stdio::piped()),
        };
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let announcing: Box<dyn Read + Send> = match announces {
            Announces::OnStdout => Box::new(child.stdout.take().expect("stdout is piped")),
            Announces::OnStderr => Box::new(child.stderr.take().expect("stderr is piped")),
        };
        processes.running.push(Running {
            name: name.to_owned(),
            child,
        });

        let (announced, announcement) = oneshot::channel();
        let marker = marker.to_owned();
        std::thread::spawn(move || copy_announcing(announcing, log, &marker, announced));
        match tokio::time::timeout(START_TIMEOUT, announcement).await {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(_)) => Err(anyhow!(
                "{name} exited before it was ready; see {}",
                log_path.display()
            )),
            Err(_) => Err(anyhow!(
                "{name} did not report ready within {START_TIMEOUT:?}; see {}",
                log_path.display()
            )),
        }
    }
}

/// Which output stream a program announces that it is running on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announces {
    OnStdout,
    /// Prometheus logs everything, its listening address too, on stderr.
    OnStderr,
}

/// Copies a child's announcing stream into its log, handing over the first
/// line that contains `marker`.
fn copy_announcing(
    stdout: impl Read,
    mut log: File,
    marker: &str,
    announced: oneshot::Sender<String>,
) {
    let mut announced = Some(announced);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(log, "{line}");
        if line.contains(marker) {
            if let Some(sender) = announced.take() {
                let _ = sender.send(line);
            }
        }
    }
}

/// The value after `key=` in an announcement line
/// (`isthmus agent running: cluster=.. http=http://..`).
pub fn field(line: &str, key: &str) -> anyhow::Result<String> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {key}= in the line {line:?}"))
}

impl Processes {
    /// Names of processes that have exited on their own.
    pub fn exited(&mut self) -> Vec<String> {
        self.running
            .iter_mut()
            .filter_map(|r| match r.child.try_wait() {
                Ok(Some(_)) => Some(r.name.clone()),
                _ => None,
            })
            .collect()
    }

    /// Stops everything: SIGTERM in reverse start order, a grace period,
    /// then SIGKILL for whatever is left. Returns the names of processes
    /// that had to be killed.
    pub fn stop_all(&mut self) -> Vec<String> {
        for running in self.running.iter().rev() {
            if let Some(pid) = Pid::from_raw(running.child.id() as i32) {
                let _ = kill_process(pid, Signal::TERM);
            }
        }
        let deadline = std::time::Instant::now() + STOP_GRACE;
        let mut killed = Vec::new();
        for mut running in self.running.drain(..).rev() {
            loop {
                match running.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = running.child.kill();
                        let _ = running.child.wait();
                        killed.push(running.name);
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        killed
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The directory of the running `isthmus` binary, where cargo also puts
/// `isthmus-gateway` and `isthmus-proxy`.
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the isthmus binary")?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))
}
