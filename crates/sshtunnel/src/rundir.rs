//! Nothing of a run outlives it: each master's control socket, log and ssh config live
//! in a private per-run directory; closing a master (or a signal, or a later run finding
//! what a killed run left) stops every ssh process using that directory and removes it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use pgconn::{Error, Result};

use crate::bastion::Bastion;

/// Per-run control directories are named `odoo-db-ssh-<pid>-XXXXXX`.
const RUN_DIR_PREFIX: &str = "odoo-db-ssh-";
/// Longest Unix socket path (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// What the crate and ssh add to the run directory for the control socket:
/// `/.ssh-connectionXXXXXX` + `/master` + ssh's temporary `.XXXXXXXXXXXXXXXX` suffix.
const CONTROL_SOCKET_SUFFIX: usize = 22 + 7 + 17;

/// Where the per-run directories go: `ssh_control_dir`, else systemd's
/// `$RUNTIME_DIRECTORY`, else `$XDG_RUNTIME_DIR`, else `/tmp` (each run directory is a
/// fresh 0700 directory of its own).
pub(crate) fn control_base(spec: &Bastion) -> Result<PathBuf> {
    if let Some(dir) = &spec.control_dir {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    Error::failed(format!("creating ssh_control_dir {}: {e}", dir.display()))
                })?;
        }
        return Ok(dir.clone());
    }
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(|value| {
                // systemd joins several RuntimeDirectory= paths with ':'.
                let first = value
                    .as_bytes()
                    .split(|b| *b == b':')
                    .next()
                    .unwrap_or_default();
                PathBuf::from(OsStr::from_bytes(first))
            })
            .filter(|path| path.is_dir())
    };
    Ok(from_env("RUNTIME_DIRECTORY")
        .or_else(|| from_env("XDG_RUNTIME_DIR"))
        .unwrap_or_else(std::env::temp_dir))
}

pub(crate) fn create_run_dir(base: &Path) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{RUN_DIR_PREFIX}{}-", std::process::id()))
        .rand_bytes(6)
        .tempdir_in(base)
        .map_err(|e| {
            Error::failed(format!(
                "creating a control directory in {}: {e} (set ssh_control_dir to a writable directory)",
                base.display()
            ))
        })?
        .keep();
    if dir.as_os_str().len() + CONTROL_SOCKET_SUFFIX > MAX_SOCKET_PATH {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(Error::refused(format!(
            "the control directory {} is too long for ssh's Unix socket paths ({} bytes at \
             most): set ssh_control_dir to a shorter directory",
            base.display(),
            MAX_SOCKET_PATH
                - CONTROL_SOCKET_SUFFIX
                - (dir.as_os_str().len() - base.as_os_str().len())
        )));
    }
    LIVE_RUN_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.clone());
    Ok(dir)
}

/// Releases a run directory when dropped, unless disarmed (the master took it over).
pub(crate) struct RunDirGuard(pub(crate) Option<PathBuf>);

impl RunDirGuard {
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            release_run_dir(&dir);
        }
    }
}

/// Stop every process that still uses a run directory, remove it, forget it.
pub(crate) fn release_run_dir(dir: &Path) {
    let started = Instant::now();
    terminate_processes_using(dir);
    tracing::debug!(
        "SSH processes of {} ended in {} ms",
        dir.display(),
        started.elapsed().as_millis()
    );
    let _ = std::fs::remove_dir_all(dir);
    LIVE_RUN_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|live| live != dir);
}

/// Run directories of runs that died without cleaning up (SIGKILL, a crash): their
/// masters have exited by themselves or do now; the directories go.
pub(crate) fn remove_stale_run_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(RUN_DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let owned = entry
            .metadata()
            .map(|m| m.is_dir() && m.uid() == me)
            .unwrap_or(false);
        if !owned || pid == std::process::id() as i32 || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        tracing::debug!(
            "removing {}, left by a run that did not finish",
            path.display()
        );
        terminate_processes_using(&path);
        let _ = std::fs::remove_dir_all(&path);
    }
}

fn process_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Our processes (same user, not us) with an argument inside `dir`: the ssh master and,
/// after a timed-out start, the ssh that never forked.
fn processes_using(dir: &Path) -> Vec<i32> {
    let me = nix::unistd::geteuid().as_raw();
    let own = std::process::id() as i32;
    let mut prefix = dir.as_os_str().as_bytes().to_vec();
    prefix.push(b'/');
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            if pid == own || entry.metadata().ok()?.uid() != me {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg.starts_with(&prefix))
                .then_some(pid)
        })
        .collect()
}

/// SIGTERM (ssh then removes its socket and closes its forwards), SIGKILL after 1 s.
fn terminate_processes_using(dir: &Path) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pids = processes_using(dir);
    if pids.is_empty() {
        return;
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| process_alive(*p) && !is_zombie(*p))
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An exited child not reaped yet (the ssh that forked, until tokio reaps it).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Create `path` (never over an existing file or through a planted symlink) holding
/// `content`, mode 0600, written and fsynced with its directory.
pub(crate) fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    safefs::write_new(path, content, 0o600).map_err(|error| match error {
        safefs::WriteNewError::Create(e)
        | safefs::WriteNewError::Write(e)
        | safefs::WriteNewError::SyncDir(e) => e,
    })
}

// Signals.

/// Run directories of the masters alive in this process.
static LIVE_RUN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static SIGNAL_CLEANUP: AtomicBool = AtomicBool::new(false);

/// Called by the binary: on SIGINT, SIGTERM or SIGHUP, close the SSH masters of this run
/// before dying by that signal. (Libraries and tests keep the default dispositions.) The
/// handler is installed when the first master starts, so runs without a bastion keep
/// the default behaviour.
pub fn clean_up_on_signals() {
    SIGNAL_CLEANUP.store(true, Ordering::SeqCst);
}

pub(crate) fn signal_cleanup_wanted() -> bool {
    SIGNAL_CLEANUP.load(Ordering::SeqCst)
}

pub(crate) fn install_signal_cleanup() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!(
                "cannot watch for signals: a Ctrl-C would leave the SSH master to exit by itself"
            );
            return;
        };
        tokio::spawn(async move {
            let number = tokio::select! {
                _ = interrupt.recv() => libc::SIGINT,
                _ = terminate.recv() => libc::SIGTERM,
                _ = hangup.recv() => libc::SIGHUP,
            };
            let dirs =
                std::mem::take(&mut *LIVE_RUN_DIRS.lock().unwrap_or_else(|e| e.into_inner()));
            for dir in dirs {
                release_run_dir(&dir);
            }
            // Die by the signal, as without the handler, so the caller sees it.
            // SAFETY: resetting a disposition to the default and raising are
            // async-signal-safe and we are not in a signal handler.
            unsafe {
                libc::signal(number, libc::SIG_DFL);
                libc::raise(number);
            }
            std::process::exit(128 + number);
        });
    });
}
