//! Making sure no throwaway server outlives the process that started it.
//!
//! A harness kept in a `static` (the tests' shared harness) is never dropped: Rust
//! runs no destructors of statics at exit. Two guards cover that:
//!
//! - **at exit**: every live harness is listed in a global registry, and a
//!   `libc::atexit` handler stops its servers (immediate shutdown) and removes its
//!   directories when the process exits normally (`main` returns or
//!   `std::process::exit`, which is how test binaries end, passed or failed);
//! - **watchdog**: a small `sh` process per harness, in its own process group, reads
//!   a pipe whose only writer is this process. When the process dies in any way
//!   (panic=abort, SIGKILL, Ctrl-C, a CI timeout), the pipe reaches end-of-file and
//!   the watchdog does the same cleanup. On a normal stop the harness tells it
//!   `done` and it exits without touching anything.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use crate::server::stop_immediate_dir;

struct Entry {
    id: u64,
    data_dirs: Vec<PathBuf>,
    remove: Vec<PathBuf>,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static INSTALL: Once = Once::new();

/// Registers servers to stop (by data directory) and directories to remove when
/// the process exits; returns an id for [`unregister_cleanup_at_exit`]. Every
/// harness not started with `keep` registers itself; this is public for tests that
/// start servers some other way.
pub fn register_cleanup_at_exit(data_dirs: Vec<PathBuf>, remove: Vec<PathBuf>) -> u64 {
    INSTALL.call_once(|| {
        // SAFETY: registering a plain `extern "C" fn` that never unwinds.
        unsafe {
            libc::atexit(run_at_exit);
        }
    });
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock().push(Entry {
        id,
        data_dirs,
        remove,
    });
    id
}

/// Forgets a registration (the harness was stopped by its owner).
pub fn unregister_cleanup_at_exit(id: u64) {
    lock().retain(|entry| entry.id != id);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

extern "C" fn run_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        // try_lock: a thread that died holding the lock must not hang the exit;
        // the watchdogs still clean up then.
        // A thread registering or forgetting a harness holds it for microseconds:
        // retry for a second before leaving the work to the watchdogs.
        let mut entries = None;
        for _ in 0..100 {
            match REGISTRY.try_lock() {
                Ok(mut guard) => entries = Some(std::mem::take(&mut *guard)),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                    entries = Some(std::mem::take(&mut *poisoned.into_inner()))
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            break;
        }
        let Some(entries) = entries else {
            return;
        };
        for entry in entries {
            clean(&entry.data_dirs, &entry.remove);
        }
    });
}

fn clean(data_dirs: &[PathBuf], remove: &[PathBuf]) {
    // The standby first would only spare it a reconnect loop; immediate shutdown
    // does not care. All are signalled before waiting to keep exit quick.
    for dir in data_dirs {
        stop_immediate_dir(dir);
    }
    for dir in remove {
        let _ = crate::remove_tree(dir);
    }
}

const WATCHDOG_SCRIPT: &str = r#"
read -r line
[ "$line" = done ] && exit 0
# Alive and not a zombie (an init that reaps slowly keeps zombies for seconds).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  case $(cat "/proc/$1/stat" 2>/dev/null) in *") Z "*|*") X "*) return 1;; esac
  return 0
}
n=$1; shift
pids=
i=0
for d in "$@"; do
  i=$((i+1)); [ "$i" -gt "$n" ] && break
  [ -f "$d/postmaster.pid" ] || continue
  pid=$(head -n 1 "$d/postmaster.pid" 2>/dev/null)
  case $pid in ''|*[!0-9]*) continue;; esac
  [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$d" ] || continue
  kill -QUIT "$pid" 2>/dev/null && pids="$pids $pid"
done
t=0
while [ -n "$pids" ] && [ "$t" -lt 100 ]; do
  left=
  for p in $pids; do alive "$p" && left="$left $p"; done
  pids=$left
  [ -n "$pids" ] && sleep 0.1
  t=$((t+1))
done
for p in $pids; do kill -KILL "$p" 2>/dev/null; done
[ -n "$pids" ] && sleep 1
shift "$n"
# Again while something still writes in the tree (see remove_tree).
t=0
while [ "$#" -gt 0 ] && ! rm -rf -- "$@" 2>/dev/null && [ "$t" -lt 30 ]; do
  sleep 0.1
  t=$((t+1))
done
exit 0
"#;

/// The watchdog process of one harness.
struct Watchdog {
    child: Child,
    stdin: ChildStdin,
}

impl Watchdog {
    fn spawn(data_dirs: &[PathBuf], remove: &[PathBuf]) -> std::io::Result<Watchdog> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("odoo-db-harness-watchdog")
            .arg(data_dirs.len().to_string())
            .args(data_dirs)
            .args(remove)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Not in our process group: a Ctrl-C that kills us must leave it to clean.
            .process_group(0);
        let mut child = command.spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        Ok(Watchdog { child, stdin })
    }

    fn disarm(mut self) {
        let _ = self.stdin.write_all(b"done\n");
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

/// Both guards for one harness; [`ExitCleanup::disarm`] when the harness stopped
/// itself.
pub(crate) struct ExitCleanup {
    id: u64,
    watchdog: Option<Watchdog>,
}

impl ExitCleanup {
    pub fn arm(data_dirs: Vec<PathBuf>, remove: Vec<PathBuf>) -> ExitCleanup {
        let watchdog = match Watchdog::spawn(&data_dirs, &remove) {
            Ok(watchdog) => Some(watchdog),
            Err(e) => {
                tracing::warn!("could not start the harness watchdog (/bin/sh): {e}");
                None
            }
        };
        let id = register_cleanup_at_exit(data_dirs, remove);
        ExitCleanup { id, watchdog }
    }

    pub fn disarm(self) {
        unregister_cleanup_at_exit(self.id);
        if let Some(watchdog) = self.watchdog {
            watchdog.disarm();
        }
    }
}
