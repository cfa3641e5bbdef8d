//! Finding (or installing, via bench/setup.sh) the comparison peers and the
//! isthmus release binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn find(name: &str) -> Option<PathBuf> {
    let venv = crate::bench_dir().join(".venv/bin").join(name);
    if venv.exists() {
        return Some(venv);
    }
    on_path(name)
}

/// The peer's binary, running `setup.sh --<name>` once if it is missing
/// (unless `no_setup`). Err holds the reason it is skipped.
pub fn locate(name: &str, no_setup: bool) -> Result<PathBuf, String> {
    if let Some(found) = find(name) {
        return Ok(found);
    }
    if no_setup {
        return Err(format!("{name} not installed (run bench/setup.sh)"));
    }
    let setup = crate::bench_dir().join("setup.sh");
    println!("{name} not found: running {} --{name}", setup.display());
    match Command::new("bash")
        .arg(&setup)
        .arg(format!("--{name}"))
        .status()
    {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("{name}: bench/setup.sh --{name} failed ({status})")),
        Err(e) => return Err(format!("{name}: cannot run bench/setup.sh: {e}")),
    }
    find(name).ok_or_else(|| format!("{name} still missing after bench/setup.sh"))
}

/// Makes sure `isthmus` and `isthmus-proxy` release binaries sit next to
/// this binary: runs `cargo build --release -p isthmus -p
/// isthmus-proxy --bins` into the same target directory (a no-op when they
/// are up to date).
pub fn ensure_isthmus(bin_dir: &Path) -> Result<()> {
    let workspace = crate::bench_dir().join("..");
    let target_dir = bin_dir.parent().context("bin dir has no parent")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "-p",
            "isthmus",
            "-p",
            "isthmus-proxy",
            "--bins",
            "--target-dir",
        ])
        .arg(target_dir)
        .status();
    let missing = ["isthmus", "isthmus-proxy"]
        .into_iter()
        .filter(|b| !bin_dir.join(b).exists())
        .collect::<Vec<_>>();
    match status {
        Ok(s) if s.success() && missing.is_empty() => Ok(()),
        _ if missing.is_empty() => {
            println!("warning: cargo build failed; using the existing binaries in {}", bin_dir.display());
            Ok(())
        }
        _ => bail!(
            "{missing:?} missing from {} and `cargo build --release -p isthmus -p isthmus-proxy --bins` failed",
            bin_dir.display()
        ),
    }
}
