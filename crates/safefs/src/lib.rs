//! The rules for every file and directory written where another local user could
//! interfere, in one crate so that odoo-db and its plumbing crates (the sandbox's
//! state, the SSH masters' config) apply the same ones instead of each its own
//! open/write/rename. It knows nothing of Odoo: callers name their directory
//! ("backup directory") and word their own messages around its errors.
//!
//! Why: odoo-db often runs as root and writes secrets, customer dumps and the
//! Prometheus textfile. Another local user who can write a directory on the way can
//! plant a symlink or a file under the name about to be used, or swap a file after it
//! was written. So, like OpenSSH's `StrictModes`:
//! - a directory written into must belong to this user or root and be writable by
//!   nobody else; each directory above it likewise, except that a sticky one (`/tmp`)
//!   is accepted, because there others cannot rename or delete what is not theirs;
//! - directories created here are 0700 whatever the umask;
//! - files are created with `O_EXCL | O_NOFOLLOW` and an explicit mode, under
//!   unpredictable names when temporary, and put in place by `rename` after an fsync.
//!
//! Every file goes through one of the three ways here, never a hand-rolled
//! open/write/rename: [`write_new`] for a file that must not exist yet (a secrets
//! file), [`replace_atomically`] for one that readers may hold (the Prometheus
//! textfile), and [`create_new`] then [`rename_durably`] for one streamed in (a dump).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the caller must do about an error of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A directory failed the rules (or is missing): nothing was changed; use another.
    Refused,
    /// The file system failed while inspecting, creating or writing.
    Failed,
}

/// An error of the directory checks and of [`replace_atomically`] and [`sync_dir`]: its
/// class and a message worded for a person, which names the path. (Callers map it to
/// their own error type, keeping both.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    class: Class,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn refused(message: String) -> Self {
        Error {
            class: Class::Refused,
            message,
        }
    }

    fn failed(message: String) -> Self {
        Error {
            class: Class::Failed,
            message,
        }
    }

    pub fn class(&self) -> Class {
        self.class
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Refuse (nothing changed) unless `dir` is an existing directory that only this user
/// (or root) can write, reached through directories nobody else can tamper with.
/// `what` names the directory in the message ("backup directory").
pub fn check_private_dir(dir: &Path, what: &str) -> Result<()> {
    let dir = std::path::absolute(dir)
        .map_err(|e| Error::failed(format!("{what} {}: {e}", dir.display())))?;
    let metadata = match std::fs::metadata(&dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::refused(format!(
                "{what} {} does not exist",
                dir.display()
            )))
        }
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot inspect {what} {}: {e}",
                dir.display()
            )))
        }
    };
    if !metadata.is_dir() {
        return Err(Error::refused(format!(
            "{what} {} is not a directory",
            dir.display()
        )));
    }
    check_owner_and_mode(&dir, &metadata, what, false)?;
    let mut ancestor = dir.parent();
    while let Some(parent) = ancestor {
        let metadata = std::fs::metadata(parent)
            .map_err(|e| Error::failed(format!("cannot inspect {}: {e}", parent.display())))?;
        check_owner_and_mode(parent, &metadata, what, true)?;
        ancestor = parent.parent();
    }
    Ok(())
}

fn check_owner_and_mode(
    dir: &Path,
    metadata: &std::fs::Metadata,
    what: &str,
    is_ancestor: bool,
) -> Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let owner = metadata.uid();
    let mode = metadata.mode() & 0o7777;
    let shown = dir.display();
    let role = if is_ancestor {
        format!("{shown}, a directory above the {what},")
    } else {
        format!("{what} {shown}")
    };
    if owner != me && owner != 0 {
        return Err(Error::refused(format!(
            "{role} belongs to uid {owner}, not to this user (uid {me}) or root, who could \
             replace what odoo-db writes there; use a directory of your own (mkdir -m 700)"
        )));
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(is_ancestor && sticky) {
        return Err(Error::refused(format!(
            "{role} is writable by group or others (mode {mode:04o}), who could plant or replace \
             files there; run chmod go-w {shown} or use a private directory"
        )));
    }
    Ok(())
}

/// Create `dir` and its missing parents, each 0700 whatever the umask, then check it
/// as [`check_private_dir`] does. An existing directory keeps its mode (and must pass).
pub fn ensure_private_dir(dir: &Path, what: &str) -> Result<()> {
    let dir = std::path::absolute(dir)
        .map_err(|e| Error::failed(format!("{what} {}: {e}", dir.display())))?;
    // Create from the outermost missing directory inwards, so each gets its mode now.
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut probe = Some(dir.as_path());
    while let Some(path) = probe {
        match std::fs::symlink_metadata(path) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::NotFound => missing.push(path.to_path_buf()),
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot inspect {}: {e}",
                    path.display()
                )))
            }
        }
        probe = path.parent();
    }
    for path in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            // Created meanwhile by a concurrent run: checked below like any other.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot create {what} {}: {e}",
                    path.display()
                )))
            }
        }
        // The umask may have taken bits away, never added: set the mode exactly.
        std::fs::set_permissions(path, Permissions::from_mode(0o700)).map_err(|e| {
            Error::failed(format!("cannot set mode 0700 on {}: {e}", path.display()))
        })?;
    }
    check_private_dir(&dir, what)
}

/// [`check_private_dir`] for a directory that may not exist yet: an existing one must
/// pass; for a missing one, the nearest existing directory above it must be one that
/// [`ensure_private_dir`] can create it in (this user's or root's, writable by nobody
/// else unless sticky, and likewise above). Creates nothing: a job checks this before
/// it changes anything, and creates the directory later.
pub fn check_private_dir_or_creatable(dir: &Path, what: &str) -> Result<()> {
    let dir = std::path::absolute(dir)
        .map_err(|e| Error::failed(format!("{what} {}: {e}", dir.display())))?;
    let mut probe = Some(dir.as_path());
    while let Some(path) = probe {
        match std::fs::symlink_metadata(path) {
            Ok(_) if path == dir => return check_private_dir(&dir, what),
            Ok(_) => {
                let metadata = std::fs::metadata(path).map_err(|e| {
                    Error::failed(format!("cannot inspect {}: {e}", path.display()))
                })?;
                if !metadata.is_dir() {
                    return Err(Error::refused(format!(
                        "{what} {}: {} is not a directory",
                        dir.display(),
                        path.display()
                    )));
                }
                let mut ancestor = Some(path);
                while let Some(parent) = ancestor {
                    let metadata = std::fs::metadata(parent).map_err(|e| {
                        Error::failed(format!("cannot inspect {}: {e}", parent.display()))
                    })?;
                    check_owner_and_mode(parent, &metadata, what, true)?;
                    ancestor = parent.parent();
                }
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::NotFound => probe = path.parent(),
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot inspect {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(())
}

/// Create a new file at `path` with `mode` (whatever the umask): `O_EXCL`, so an
/// existing file or a planted symlink makes it fail with `AlreadyExists`; `O_NOFOLLOW`.
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    let file = open_exclusive(path, mode)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    Ok(file)
}

/// `O_CREAT | O_EXCL | O_NOFOLLOW` with `mode`, which the umask may still narrow.
fn open_exclusive(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Which step of [`write_new`] failed, so that each caller words its own message.
#[derive(Debug)]
pub enum WriteNewError {
    /// Creating the file; `AlreadyExists` for an existing file or a planted symlink.
    Create(std::io::Error),
    /// Setting its mode, writing or fsyncing it; the file was removed again.
    Write(std::io::Error),
    /// fsyncing its directory; the file itself is written and fsynced.
    SyncDir(std::io::Error),
}

/// Create `path` holding `contents` for good: created as [`create_new`] does (never
/// over an existing file), written, fsynced, then its directory fsynced, so once this
/// returns a crash cannot lose it. A file that could not be written whole is removed:
/// it was created here, so nobody else relies on it.
pub fn write_new(
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> std::result::Result<(), WriteNewError> {
    let mut file = open_exclusive(path, mode).map_err(WriteNewError::Create)?;
    let written = file
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(WriteNewError::Write(e));
    }
    File::open(parent_dir(path))
        .and_then(|dir| dir.sync_all())
        .map_err(WriteNewError::SyncDir)
}

/// Give a written and fsynced file its final name: rename `from` to `to`, then fsync
/// the directory of `to`, so the new name survives a crash.
pub fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    File::open(parent_dir(to))?.sync_all()
}

/// The directory a file name is in; "." for a bare name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Replace `path` atomically with `contents` and `mode`: a temporary file with an
/// unpredictable name (`O_EXCL`) in the same directory, written, fsynced, renamed over
/// `path`, and the directory fsynced. A reader sees the old file or the new one, never
/// a half-written one. The directory must pass [`check_private_dir`] first (callers
/// decide what a refusal means for them).
pub fn replace_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let shown = path.display();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| {
            Error::failed(format!(
                "cannot create a temporary file beside {shown}: {e}"
            ))
        })?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| temp.write_all(contents))
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| Error::failed(format!("cannot write {shown}: {e}")))?;
    temp.persist(path)
        .map_err(|e| Error::failed(format!("cannot rename into {shown}: {}", e.error)))?;
    sync_dir(dir)
}

/// fsync a directory, so a rename or a creation in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::failed(format!("cannot fsync directory {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_missing_directories_0700() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), Permissions::from_mode(0o700)).unwrap();
        // (The umask is process-wide, so this test leaves it alone; the mode is set
        // explicitly after each mkdir.)
        let target = root.path().join("a/b/c");
        ensure_private_dir(&target, "backup directory").unwrap();
        for dir in ["a", "a/b", "a/b/c"] {
            let mode = std::fs::metadata(root.path().join(dir)).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{dir}");
        }
    }

    #[test]
    fn refuses_a_directory_others_can_write() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), Permissions::from_mode(0o700)).unwrap();
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, Permissions::from_mode(0o777)).unwrap();
        let error = check_private_dir(&shared, "backup directory").unwrap_err();
        assert_eq!(error.class(), Class::Refused);
        assert!(
            error.to_string().contains("writable by group or others"),
            "{error}"
        );
        // Below it too: whoever writes the parent can swap the child.
        let inner = shared.join("inner");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, Permissions::from_mode(0o700)).unwrap();
        assert!(check_private_dir(&inner, "backup directory").is_err());
        // A sticky parent (like /tmp) is fine.
        std::fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
        check_private_dir(&inner, "backup directory").unwrap();
        // But never the directory itself.
        assert!(check_private_dir(&shared, "backup directory").is_err());
    }

    #[test]
    fn create_new_refuses_planted_symlinks_and_replace_is_atomic() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let planted = root.path().join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let error = create_new(&planted, 0o600).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");

        let target = root.path().join("metrics.prom");
        replace_atomically(&target, b"one\n", 0o644).unwrap();
        replace_atomically(&target, b"two\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "two\n");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o7777, 0o644);
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn write_new_never_overwrites_and_rename_durably_moves() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("prod.env");
        write_new(&path, b"first\n", 0o600).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        match write_new(&path, b"second\n", 0o600) {
            Err(WriteNewError::Create(e)) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\n");

        let moved = root.path().join("moved.env");
        rename_durably(&path, &moved).unwrap();
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "first\n");
    }
}
