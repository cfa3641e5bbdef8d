//! Process plumbing every isthmus binary shares: logging set-up, shutdown
//! signals, and Consul-style single-dash long flags.

use std::collections::HashSet;
use std::ffi::OsString;

/// Logs to stderr, level from `RUST_LOG` (default `info`), as text or JSON lines.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C) and says which.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

fn long_flags(command: &clap::Command, out: &mut HashSet<String>) {
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            out.insert(long.to_owned());
        }
        if let Some(aliases) = arg.get_all_aliases() {
            out.extend(aliases.into_iter().map(str::to_owned));
        }
    }
    for sub in command.get_subcommands() {
        long_flags(sub, out);
    }
}

/// Rewrites Go-style `-name` / `-name=value` into `--name` forms so
/// commands copied from Consul's documentation parse. Only names that
/// really are long flags somewhere in `command`'s tree are rewritten, so
/// values such as `-` (stdin) or a negative number are left alone.
pub fn normalize_go_flags(
    command: &clap::Command,
    args: impl IntoIterator<Item = OsString>,
) -> Vec<OsString> {
    let mut known = HashSet::from(["help".to_owned(), "version".to_owned()]);
    long_flags(command, &mut known);
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, arg) in args.into_iter().enumerate() {
        let Some(text) = arg.to_str().filter(|_| i > 0 && !passthrough) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        let single_dash = text.starts_with('-') && !text.starts_with("--") && text.len() > 2;
        let name = text[1..].split('=').next().unwrap_or_default();
        if single_dash && known.contains(name) {
            out.push(OsString::from(format!("-{text}")));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Raises the soft limit on open files to the hard limit (connection caps,
/// not the file limit, should refuse a flood) and logs the outcome.
pub fn raise_fd_limit() {
    match crate::listen::raise_fd_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            )
        }
        Ok((before, _)) => {
            tracing::debug!(limit = before, "open-file limit already at its hard limit")
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit (RLIMIT_NOFILE)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("x").subcommand(
            clap::Command::new("read")
                .arg(clap::Arg::new("kind").long("kind"))
                .arg(clap::Arg::new("name").long("name").alias("n2")),
        )
    }

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_go_flags(&command(), args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_flags_become_long_flags() {
        assert_eq!(
            norm(&["x", "read", "-kind", "k", "-name=y", "-n2", "z"]),
            ["x", "read", "--kind", "k", "--name=y", "--n2", "z"]
        );
        assert_eq!(norm(&["x", "-help"]), ["x", "--help"]);
    }

    #[test]
    fn values_and_unknown_dashes_are_left_alone() {
        assert_eq!(norm(&["x", "read", "-"]), ["x", "read", "-"]);
        assert_eq!(
            norm(&["x", "read", "-zzz", "-1"]),
            ["x", "read", "-zzz", "-1"]
        );
        assert_eq!(norm(&["x", "--", "-kind"]), ["x", "--", "-kind"]);
    }
}
