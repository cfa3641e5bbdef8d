//! The demo's narration: numbered steps, each shown as the command a user
//! would type (`isthmus ...` or `curl ...`), really run, with its output and
//! what was checked.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use http::Method;
use isthmus_runtime::client::Client;

/// How long one command or request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Output longer than this many lines is cut in the narration.
const MAX_SHOWN_LINES: usize = 24;

/// A cluster as the narration addresses it.
pub struct Target {
    pub name: &'static str,
    /// The agent's HTTP API, `http://127.0.0.1:<port>`.
    pub api: String,
    /// The cluster's management token: the operator's commands run with it
    /// (`ISTHMUS_HTTP_TOKEN`), as ACLs are on with default deny.
    pub token: String,
}

impl Target {
    /// A client of this cluster's agent carrying the management token.
    pub fn client(&self) -> anyhow::Result<Client> {
        client_with_token(&self.api, Some(&self.token))
    }
}

/// A client of `base` sending `token` (none: the anonymous token).
pub fn client_with_token(base: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let credentials = isthmus_runtime::client::Credentials {
        token: token.map(str::to_owned),
        ..Default::default()
    };
    Ok(Client::with_credentials(base, &credentials)?)
}

/// What an HTTP call answered.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub error_header: Option<String>,
}

pub struct Script {
    isthmus: PathBuf,
    step: usize,
    title: String,
    checks: usize,
}

impl Script {
    pub fn new(isthmus: PathBuf) -> Script {
        Script {
            isthmus,
            step: 0,
            title: String::new(),
            checks: 0,
        }
    }

    pub fn steps(&self) -> usize {
        self.step
    }

    pub fn checks(&self) -> usize {
        self.checks
    }

    /// The current step, for an error message.
    pub fn current(&self) -> String {
        format!("step {} ({})", self.step, self.title)
    }

    pub fn step(&mut self, title: &str) {
        self.step += 1;
        self.title = title.to_owned();
        println!("\n── Step {}. {title}", self.step);
    }

    /// Prints a note under the current step.
    pub fn say(&self, text: &str) {
        println!("   {text}");
    }

    /// Prints a block of text (a file's contents, a command's output).
    pub fn show(&self, text: &str) {
        let lines: Vec<&str> = text.trim_end().lines().collect();
        for line in lines.iter().take(MAX_SHOWN_LINES) {
            println!("     {line}");
        }
        if lines.len() > MAX_SHOWN_LINES {
            println!("     … ({} more lines)", lines.len() - MAX_SHOWN_LINES);
        }
    }

    /// Records a check: prints it when it holds, fails the step otherwise.
    pub fn check(&mut self, holds: bool, what: &str) -> anyhow::Result<()> {
        if !holds {
            println!("   ✗ {what}");
            bail!("{what}: not so");
        }
        self.checks += 1;
        println!("   ✓ {what}");
        Ok(())
    }

    /// Runs `isthmus <args>` against `target`'s agent, printing it as
    /// `shown` (defaults to the arguments) and its output; fails unless it
    /// exits 0. Returns stdout.
    pub async fn isthmus(
        &self,
        target: &Target,
        args: &[&str],
        shown: Option<&str>,
    ) -> anyhow::Result<String> {
        self.isthmus_quoting(target, args, shown, |out| self.show(out))
            .await
    }

    /// Like [`Script::isthmus`], with stdout shown by `show_stdout` (to
    /// shorten a token, say).
    pub async fn isthmus_quoting(
        &self,
        target: &Target,
        args: &[&str],
        shown: Option<&str>,
        show_stdout: impl FnOnce(&str),
    ) -> anyhow::Result<String> {
        let shown = shown.map_or_else(|| args.join(" "), str::to_owned);
        println!("   [{}]$ isthmus {shown}", target.name);
        let run = tokio::process::Command::new(&self.isthmus)
            .args(args)
            .env("ISTHMUS_HTTP_ADDR", &target.api)
            .env("ISTHMUS_HTTP_TOKEN", &target.token)
            .stdin(std::process::Stdio::null())
            .output();
        let output = tokio::time::timeout(CALL_TIMEOUT, run)
            .await
            .map_err(|_| anyhow!("`isthmus {shown}` did not finish within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("running {}", self.isthmus.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        show_stdout(&stdout);
        self.show(&stderr);
        if !output.status.success() {
            bail!(
                "`isthmus {shown}` failed ({}): {}",
                output.status,
                stderr.trim()
            );
        }
        Ok(stdout)
    }

    /// GETs `base` + `path`, printed as a `curl` command.
    pub async fn curl(&self, label: &str, base: &str, path: &str) -> anyhow::Result<Answer> {
        println!("   [{label}]$ curl -s '{base}{path}'");
        let answer = get(base, path, None).await?;
        Ok(answer)
    }

    /// Like [`Script::curl`], sending `token` (shown by `shown_as`).
    pub async fn curl_with_token(
        &self,
        label: &str,
        base: &str,
        path: &str,
        token: &str,
        shown_as: &str,
    ) -> anyhow::Result<Answer> {
        println!("   [{label}]$ curl -s -H \"X-Consul-Token: {shown_as}\" '{base}{path}'");
        get(base, path, Some(token)).await
    }
}

/// A plain GET with an optional token, without narration.
pub async fn get(base: &str, path: &str, token: Option<&str>) -> anyhow::Result<Answer> {
    let client = client_with_token(base, token)?;
    let response = tokio::time::timeout(CALL_TIMEOUT, client.send(Method::GET, path, None))
        .await
        .map_err(|_| anyhow!("GET {base}{path} did not answer within {CALL_TIMEOUT:?}"))?
        .with_context(|| format!("GET {base}{path}"))?;
    Ok(Answer {
        status: response.status.as_u16(),
        body: String::from_utf8_lossy(&response.body).into_owned(),
        error_header: response
            .headers
            .get("x-isthmus-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    })
}

/// Polls `attempt` every 100 ms until it yields a value, for at most
/// `limit`; the error names `what` and the last reason.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match attempt().await {
            Ok(value) => return Ok(value),
            Err(reason) => reason,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
