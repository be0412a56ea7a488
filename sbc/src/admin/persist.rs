//! Writing the configuration file for a live change, so that a failure at any point leaves the
//! old file as it was and the new one, when it lands, is the same kind of file as the old.
//!
//! The text goes to a temporary file in the same directory (a rename is only atomic within one
//! file system), created with no access for anyone else, then given the old file's mode and
//! owner, written, fsynced, renamed over the old name, and the directory is fsynced so the
//! rename survives a crash. The old file is never opened for writing. On any error — a full
//! file system (ENOSPC), a quota, an owner that cannot be kept — the temporary file is removed
//! and the error says which step failed; the caller then leaves the running configuration
//! unchanged. A symbolic link at the configured path is followed: the file it names is the one
//! replaced, and the link stays.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use axum::http::StatusCode;

/// Mode and owner of a configuration file that does not exist yet: it may hold tokens and
/// passwords, so only its owner may read it.
const NEW_FILE_MODE: u32 = 0o600;

/// Why the configuration file could not be replaced. The old file is intact in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The configured path names something other than a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The new file could not be given the old one's owner (the SBC runs as another user and
    /// may not give files away): writing it anyway would change who owns the configuration.
    #[error("cannot give the new {path} the owner {uid}:{gid} of the old one: {source}")]
    Owner {
        /// The file.
        path: PathBuf,
        /// The owner to keep.
        uid: u32,
        /// The group to keep.
        gid: u32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file system operation failed (no space, quota, read-only, permissions, I/O).
    #[error("cannot write {path}: {step} failed: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The step that failed.
        step: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl PersistError {
    /// The HTTP status of the refused change: 409 when the file's own state is in the way
    /// (not a file, an owner the SBC cannot keep), 500 when the file system failed (ENOSPC
    /// included): nothing in the request could have avoided it.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotAFile { .. } | Self::Owner { .. } => StatusCode::CONFLICT,
            Self::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Removes the temporary file when dropped, unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a temporary config file");
        }
    }
}

/// Replaces the file at `path` with `text`, keeping its mode and owner (see the module
/// documentation).
pub fn replace(path: &Path, text: &[u8]) -> Result<(), PersistError> {
    let io = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Io { path, step, source }
    };
    // Follow a symbolic link to the file it names; a file that is gone is written anew.
    let target = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(io("resolving the path", path)(e)),
    };
    let old = match std::fs::metadata(&target) {
        Ok(m) if !m.is_file() => return Err(PersistError::NotAFile { path: target }),
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("reading the file's mode and owner", &target)(e)),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map_or_else(|| "sbc.toml".into(), |n| n.to_string_lossy().into_owned());
    // Unique per process and write, and created exclusively: a stale or planted file of the
    // same name makes this write fail instead of being written through.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp_path = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(io("creating the temporary file", &tmp_path))?;
    let mut tmp = TempFile {
        path: tmp_path,
        armed: true,
    };
    let mode = old
        .as_ref()
        .map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777);
    if let Some(m) = &old {
        std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid())).map_err(|source| {
            PersistError::Owner {
                path: target.clone(),
                uid: m.uid(),
                gid: m.gid(),
                source,
            }
        })?;
    }
    // After the chown, which clears set-id bits.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("setting the mode", &tmp.path))?;
    file.write_all(text)
        .map_err(io("writing the temporary file", &tmp.path))?;
    file.sync_all()
        .map_err(io("syncing the temporary file", &tmp.path))?;
    drop(file);
    std::fs::rename(&tmp.path, &target).map_err(io("renaming into place", &target))?;
    tmp.armed = false;
    // The new name is visible; syncing the directory makes it survive a crash. A failure
    // here does not undo the change, so it is logged rather than reported as a refusal.
    if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), error = %e, "config written but the directory could not be synced");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_mode_and_owner_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sbc.toml");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let before = std::fs::metadata(&path).expect("stat");
        replace(&path, b"new").expect("replace");
        let after = std::fs::metadata(&path).expect("stat");
        assert_eq!(after.permissions().mode() & 0o7777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        assert_ne!(after.ino(), before.ino(), "a new file, renamed into place");
        assert_eq!(std::fs::read(&path).expect("read"), b"new");
        assert_eq!(entries(dir.path()), ["sbc.toml"]);
    }

    #[test]
    fn a_missing_file_is_created_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sbc.toml");
        replace(&path, b"new").expect("replace");
        let m = std::fs::metadata(&path).expect("stat");
        assert_eq!(m.permissions().mode() & 0o7777, NEW_FILE_MODE);
    }

    #[test]
    fn a_symlink_is_followed_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.toml");
        let link = dir.path().join("sbc.toml");
        std::fs::write(&real, "old").expect("write");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        replace(&link, b"new").expect("replace");
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("lstat")
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).expect("read"), b"new");
        assert_eq!(entries(dir.path()), ["real.toml", "sbc.toml"]);
    }

    #[test]
    fn a_directory_is_refused_with_409() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = replace(dir.path(), b"new").expect_err("a directory");
        assert!(matches!(e, PersistError::NotAFile { .. }), "{e}");
        assert_eq!(e.status(), StatusCode::CONFLICT);
    }

    #[test]
    fn an_unwritable_directory_fails_cleanly() {
        let e = replace(Path::new("/proc/sbc-no-such-dir/sbc.toml"), b"new").expect_err("no dir");
        assert!(matches!(e, PersistError::Io { .. }), "{e}");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
