//! A real headless Chromium driven over WebDriver (chromedriver +
//! fantoccini), for the UI tests.
//!
//! chromedriver runs on an ephemeral port in its own process group; the
//! browser it starts is its child and uses a fresh profile directory. A
//! guard kills the whole group (and anything still using that profile) on
//! every exit path, a panicking test included.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use fantoccini::error::CmdError;
use fantoccini::wd::{Capabilities, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use isthmus_tests::WAIT;
use serde_json::{json, Value};
use tokio::time::Instant;

const INSTALL_HINT: &str = "install them with `apt-get install chromium chromium-driver`";
/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(50);
/// chromedriver could lose its port to another process between our probe
/// and its bind; it is started again on a new port this many times.
const DRIVER_ATTEMPTS: usize = 5;

fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Kills chromedriver's process group and any process still running with
/// our profile directory (a browser that left the group), when dropped.
struct ProcessGuard {
    driver: Option<Child>,
    profile: PathBuf,
}

impl ProcessGuard {
    fn kill_all(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            // The driver leads its own group (process_group(0)): the
            // browser and its helpers are in it too.
            let group = format!("-{}", driver.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            let _ = driver.kill();
            let _ = driver.wait();
        }
        for pid in processes_using(&self.profile) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Processes whose command line mentions `profile` (ours: the directory is
/// a fresh temporary one).
fn processes_using(profile: &Path) -> Vec<u32> {
    let needle = profile.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let mut cmdline = Vec::new();
            std::fs::File::open(entry.path().join("cmdline"))
                .ok()?
                .read_to_end(&mut cmdline)
                .ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

/// One WebDriver session on a headless Chromium.
pub struct Browser {
    client: Client,
    /// The window commands currently go to.
    current: Mutex<Option<WindowHandle>>,
    guard: ProcessGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a session. Fails the test, naming the
    /// packages to install, if Chromium or chromedriver is missing.
    pub async fn start() -> Browser {
        let chromium = program("ISTHMUS_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("ISTHMUS_CHROMEDRIVER", "/usr/bin/chromedriver");
        for (what, path) in [("Chromium", &chromium), ("chromedriver", &chromedriver)] {
            assert!(
                path.exists(),
                "the UI tests need {what} at {}: {INSTALL_HINT}",
                path.display()
            );
        }
        let profile = tempfile::tempdir().expect("temporary profile directory");
        let mut guard = ProcessGuard {
            driver: None,
            profile: profile.path().to_owned(),
        };
        let mut failures = Vec::new();
        let mut url = None;
        for _ in 0..DRIVER_ATTEMPTS {
            match start_driver(&chromedriver).await {
                Ok((child, driver_url)) => {
                    guard.driver = Some(child);
                    url = Some(driver_url);
                    break;
                }
                Err(e) => failures.push(e),
            }
        }
        let url = url.unwrap_or_else(|| {
            panic!(
                "chromedriver did not start ({}); {INSTALL_HINT}",
                failures.join("; ")
            )
        });

        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,860",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let session = tokio::time::timeout(
            WAIT,
            ClientBuilder::rustls()
                .expect("rustls connector")
                .capabilities(capabilities)
                .connect(&url),
        )
        .await;
        let client = match session {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("could not start Chromium through chromedriver: {e}"),
            Err(_) => panic!("no browser session within {WAIT:?}"),
        };
        Browser {
            client,
            current: Mutex::new(None),
            guard,
            _profile: profile,
        }
    }

    /// The session's first window.
    pub async fn first_window(&self) -> Window<'_> {
        let handle = self.client.window().await.expect("current window");
        *self.current.lock().unwrap() = Some(handle.clone());
        Window {
            browser: self,
            handle,
        }
    }

    /// Another top-level window in the same session.
    pub async fn new_window(&self) -> Window<'_> {
        let handle = self
            .client
            .new_window(false)
            .await
            .expect("new window")
            .handle;
        Window {
            browser: self,
            handle,
        }
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = tokio::time::timeout(WAIT, client.close()).await;
        self.guard.kill_all();
    }
}

/// Starts chromedriver on a free port; returns it once `/status` says ready.
async fn start_driver(chromedriver: &Path) -> Result<(Child, String), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let mut child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", chromedriver.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("ISTHMUS_UI_DEBUG").is_some() {
                    eprintln!("[chromedriver] {line}");
                }
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let kill = |mut child: Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(why)
    };
    // chromedriver says on which port it listens, or that it could not bind.
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("bind() failed") || line.contains("Port not available") => {
                return kill(child, format!("port {port} taken: {line}"));
            }
            Ok(line) if line.contains("started successfully") => break,
            Ok(line) => seen.push(line),
            Err(_) => {
                return kill(
                    child,
                    format!(
                        "chromedriver did not announce its port: {}",
                        seen.join(" | ")
                    ),
                );
            }
        }
    }
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in rx {});
    let url = format!("http://127.0.0.1:{port}");
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, Empty<bytes::Bytes>>(HttpConnector::new());
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = async {
            let response = http.get(format!("{url}/status").parse().ok()?).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            let status: Value = serde_json::from_slice(&body).ok()?;
            status["value"]["ready"].as_bool()
        }
        .await;
        if ready == Some(true) {
            return Ok((child, url));
        }
        if let Ok(Some(exit)) = child.try_wait() {
            return Err(format!("chromedriver exited with {exit}"));
        }
        if Instant::now() >= deadline {
            return kill(child, format!("chromedriver on {url} never became ready"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it returns `Ok`, failing after `WAIT` with what it
/// saw last.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {WAIT:?} waiting for {what}; last seen: {seen}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// `[data-testid="<id>"]`.
/// Where a test writes a screenshot named `file` for people to look at
/// (never compared): `target/tmp/ui-screenshots/<file>`, created on demand.
pub fn screenshot_path(file: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir.join(file).to_string_lossy().into_owned()
}

pub fn tid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// One browser window; every call switches the session to it first.
pub struct Window<'a> {
    browser: &'a Browser,
    handle: WindowHandle,
}

impl Window<'_> {
    async fn client(&self) -> &Client {
        let client = &self.browser.client;
        let switch = self.browser.current.lock().unwrap().as_ref() != Some(&self.handle);
        if switch {
            client
                .switch_to_window(self.handle.clone())
                .await
                .expect("switch window");
            *self.browser.current.lock().unwrap() = Some(self.handle.clone());
        }
        client
    }

    pub async fn goto(&self, url: &str) {
        let client = self.client().await;
        client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn url(&self) -> String {
        self.client()
            .await
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    pub async fn screenshot(&self, path: &str) {
        let png = self.client().await.screenshot().await.expect("screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {path}: {e}"));
    }

    /// The visible text of the element `css`, if it is there and shown.
    pub async fn text(&self, css: &str) -> Result<String, String> {
        let client = self.client().await;
        let element = client
            .find(Locator::Css(css))
            .await
            .map_err(|e| format!("no {css}: {}", short(&e)))?;
        if !element.is_displayed().await.map_err(|e| short(&e))? {
            return Err(format!("{css} is hidden"));
        }
        element.text().await.map_err(|e| short(&e))
    }

    /// Waits until the element `css` is shown with text that satisfies `ok`.
    pub async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let ok = &ok;
        wait_for(css, || async move {
            let text = self.text(css).await?;
            if ok(&text) {
                Ok(text)
            } else {
                Err(format!("text {text:?}"))
            }
        })
        .await
    }

    /// Waits until the element `css` shows exactly `expected`.
    pub async fn wait_text_eq(&self, css: &str, expected: &str) -> String {
        self.wait_text(css, |t| t == expected).await
    }

    /// Waits until nothing matches `css` (or only hidden elements do).
    pub async fn wait_gone(&self, css: &str) {
        wait_for(&format!("{css} to go"), || async move {
            match self.text(css).await {
                Ok(text) => Err(format!("still shown: {text:?}")),
                Err(_) => Ok(()),
            }
        })
        .await
    }

    /// Clicks `css` once it is shown and enabled.
    pub async fn click(&self, css: &str) {
        wait_for(&format!("{css} to be clickable"), || async move {
            let client = self.client().await;
            let element = client
                .find(Locator::Css(css))
                .await
                .map_err(|e| short(&e))?;
            if !element.is_displayed().await.map_err(|e| short(&e))? {
                return Err("hidden".into());
            }
            if !element.is_enabled().await.map_err(|e| short(&e))? {
                return Err("disabled".into());
            }
            element.click().await.map_err(|e| short(&e))
        })
        .await
    }

    /// Replaces the contents of the input or textarea `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let client = self.client().await;
        let element = wait_for(&format!("{css} to be shown"), || async move {
            let element = client
                .find(Locator::Css(css))
                .await
                .map_err(|e| short(&e))?;
            match element.is_displayed().await {
                Ok(true) => Ok(element),
                Ok(false) => Err("hidden".into()),
                Err(e) => Err(short(&e)),
            }
        })
        .await;
        element.clear().await.expect("clear field");
        element.send_keys(text).await.expect("type into field");
        let value = element.prop("value").await.expect("field value");
        assert_eq!(value.as_deref(), Some(text), "{css} holds what was typed");
    }

    /// The `value` property of the form field `css`.
    pub async fn value(&self, css: &str) -> Option<String> {
        let client = self.client().await;
        let element = client.find(Locator::Css(css)).await.ok()?;
        element.prop("value").await.ok().flatten()
    }
}

fn short(e: &CmdError) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}
