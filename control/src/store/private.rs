//! Owner-only storage on disk.
//!
//! The data directory holds the CA's private key, the mesh gateway's key
//! and every peering's stream secret (all inside the redb file). Nobody but
//! the agent's user may read them: the directory is `0700` and the files
//! in it `0600`, whatever the umask, and an existing directory or file with
//! looser permissions is tightened (and the agent says so).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file the agent keeps in it.
pub const FILE_MODE: u32 = 0o600;

/// The bits no one but the owner may have.
const GROUP_OTHER: u32 = 0o077;
/// Set on shared directories such as `/tmp`, which must not be made private.
const STICKY: u32 = 0o1000;

/// Why the data directory or a file in it could not be made private.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error("creating {path}: {source}")]
    Create { path: String, source: io::Error },
    #[error(
        "{path} is a shared directory (sticky bit set); give the agent a data directory of its own"
    )]
    Shared { path: String },
    #[error("restricting {path} to mode {mode:04o}: {source}")]
    Restrict {
        path: String,
        mode: u32,
        source: io::Error,
    },
}

/// Creates `dir` (and any missing parent) with mode `0700`; an existing
/// `dir` that others can read, write or enter is changed to `0700`.
pub fn create_private_dir(dir: &Path) -> Result<(), PrivateError> {
    let path = || dir.display().to_string();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| PrivateError::Create {
            path: path(),
            source,
        })?;
    let mode = std::fs::metadata(dir)
        .map_err(|source| PrivateError::Create {
            path: path(),
            source,
        })?
        .permissions()
        .mode();
    if mode & STICKY != 0 {
        return Err(PrivateError::Shared { path: path() });
    }
    restrict(dir, mode, DIR_MODE, "data directory")
}

/// Opens `path` for reading and writing, creating it with mode `0600`; an
/// existing file that others can access is changed to `0600`.
pub fn open_private_file(path: &Path) -> Result<File, PrivateError> {
    let display = || path.display().to_string();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|source| PrivateError::Create {
            path: display(),
            source,
        })?;
    let mode = file
        .metadata()
        .map_err(|source| PrivateError::Create {
            path: display(),
            source,
        })?
        .permissions()
        .mode();
    restrict(path, mode, FILE_MODE, "state file")?;
    Ok(file)
}

/// Sets `wanted` on `path` if its current `mode` lets anyone but the owner in.
fn restrict(path: &Path, mode: u32, wanted: u32, what: &str) -> Result<(), PrivateError> {
    if mode & GROUP_OTHER == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted)).map_err(|source| {
        PrivateError::Restrict {
            path: path.display().to_string(),
            mode: wanted,
            source,
        }
    })?;
    tracing::warn!(
        path = %path.display(),
        was = %format!("{:04o}", mode & 0o7777),
        now = %format!("{wanted:04o}"),
        "the {what} was readable by others; restricted it to its owner"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_and_tightens() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);

        let file = dir.join("f");
        drop(open_private_file(&file).unwrap());
        assert_eq!(mode(&file), FILE_MODE);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_private_file(&file).unwrap());
        assert_eq!(mode(&file), FILE_MODE);
    }

    #[test]
    fn refuses_a_shared_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(matches!(
            create_private_dir(tmp.path()),
            Err(PrivateError::Shared { .. })
        ));
    }
}
