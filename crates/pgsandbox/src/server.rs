//! One throwaway PostgreSQL server: its data directory, port, socket, log, starting
//! it, connecting as its superuser, and stopping it at once (which every harness
//! needs, also at exit). The verbs only tests use are in `testing.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::tools::{chown_to, run, run_async, Tools};
use crate::{ADMIN_ROLE, MONITOR_ROLE};

/// A PostgreSQL server of a [`crate::Harness`].
///
/// Its data directory is `<harness dir>/<name>`, its log `<harness dir>/<name>.log`
/// (written by `pg_ctl -l`), its Unix socket in `socket_dir`. The superuser is
/// `postgres`, trusted on the Unix socket only; over TCP (127.0.0.1) everyone
/// authenticates with SCRAM-SHA-256.
#[derive(Debug, Clone)]
pub struct PgServer {
    /// `primary`, `standby` or `integration`.
    pub name: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) tools: Arc<Tools>,
}

impl PgServer {
    pub(crate) fn new(
        name: &str,
        port: u16,
        dir: &Path,
        socket_dir: &Path,
        tools: Arc<Tools>,
    ) -> Self {
        PgServer {
            name: name.to_string(),
            port,
            data_dir: dir.join(name),
            socket_dir: socket_dir.to_path_buf(),
            log: dir.join(format!("{name}.log")),
            tools,
        }
    }

    /// `postgresql://odoo_db_admin@127.0.0.1:PORT/postgres?sslmode=disable`
    pub fn admin_url(&self) -> String {
        self.url_for(ADMIN_ROLE)
    }

    /// `postgresql://odoo_db_monitor@127.0.0.1:PORT/postgres?sslmode=disable`
    pub fn monitor_url(&self) -> String {
        self.url_for(MONITOR_ROLE)
    }

    fn url_for(&self, role: &str) -> String {
        format!(
            "postgresql://{role}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The directory of the PostgreSQL binaries this server runs from.
    pub fn bindir(&self) -> &Path {
        &self.tools.bindir
    }

    /// The path of one PostgreSQL binary: a server tool of this server's version, a
    /// client tool (`psql`, `pg_dump`, …) from `$PG_CLIENT_BINDIR` when that is set.
    pub fn bin(&self, tool: &str) -> PathBuf {
        self.tools.bin(tool)
    }

    /// The server's major version (12 … 18).
    pub fn major(&self) -> u32 {
        self.tools.major
    }

    /// tokio-postgres settings for the superuser over the Unix socket.
    pub fn superuser_config(&self, db: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .application_name("odoo-db-harness")
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// The superuser `postgres` over the Unix socket, in database `postgres`.
    pub async fn superuser(&self) -> Result<tokio_postgres::Client> {
        self.superuser_in("postgres").await
    }

    /// The superuser `postgres` over the Unix socket, in database `db`. The
    /// connection task runs on the caller's runtime.
    pub async fn superuser_in(&self, db: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) = self
            .superuser_config(db)
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| {
                format!(
                    "connecting to the {} server (port {}) as postgres in {db}",
                    self.name, self.port
                )
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    pub(crate) fn pg_ctl(&self, verb: &str) -> std::process::Command {
        let mut command = self.tools.server_command("pg_ctl", self.harness_dir());
        command.arg(verb).arg("-D").arg(&self.data_dir).arg("-s");
        command
    }

    fn harness_dir(&self) -> &Path {
        self.data_dir.parent().unwrap_or(Path::new("/"))
    }

    fn start_command(&self) -> std::process::Command {
        let mut command = self.pg_ctl("start");
        command.arg("-l").arg(&self.log).args(["-w", "-t", "60"]);
        command
    }

    /// Starts the server (`pg_ctl start -w`); nothing to do when it runs.
    pub fn start(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.ensure_socket_dir()?;
        let log_offset = self.log_len();
        run(self.start_command(), &self.what("starting"))
            .map_err(|e| self.with_log_tail(e, log_offset))?;
        Ok(())
    }

    /// A socket directory in /tmp may have been cleaned since (a reboot).
    fn ensure_socket_dir(&self) -> Result<()> {
        if !self.socket_dir.exists() {
            std::fs::create_dir_all(&self.socket_dir)
                .with_context(|| format!("creating {}", self.socket_dir.display()))?;
            chown_to(self.tools.run_as.as_ref(), &self.socket_dir)?;
        }
        Ok(())
    }

    pub(crate) async fn start_async(&self) -> Result<()> {
        let log_offset = self.log_len();
        run_async(self.start_command(), &self.what("starting"))
            .await
            .map_err(|e| self.with_log_tail(e, log_offset))?;
        Ok(())
    }

    /// True when a live postmaster owns the data directory.
    pub fn is_running(&self) -> bool {
        postmaster_pid(&self.data_dir).is_some()
    }

    /// The server log (`pg_ctl -l`), outside the data directory.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Appends `name = 'value'` to postgresql.conf (the last setting wins); takes
    /// effect on reload or restart. A value already in single quotes is kept as is.
    pub fn set_conf(&self, name: &str, value: &str) -> Result<()> {
        append_conf(&self.data_dir, &[(name.to_string(), value.to_string())])
    }

    pub(crate) fn what(&self, verb: &str) -> String {
        format!("{verb} the {} server (port {})", self.name, self.port)
    }

    pub(crate) fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The log written since `offset`.
    pub(crate) fn log_since(&self, offset: u64) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let start = (offset as usize).min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }

    pub(crate) fn log_offset(&self) -> u64 {
        self.log_len()
    }

    pub(crate) fn with_log_tail(&self, error: Error, offset: u64) -> Error {
        let text = self.log_since(offset);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        if tail.is_empty() {
            error
        } else {
            Error::failed(format!(
                "{error}\n--- {} (last lines) ---\n{tail}",
                self.log.display()
            ))
        }
    }
}

/// Appends settings to `data_dir/postgresql.conf`; later lines override earlier ones.
pub(crate) fn append_conf(data_dir: &Path, settings: &[(String, String)]) -> Result<()> {
    let path = data_dir.join("postgresql.conf");
    let mut text = String::from("\n# odoo-db harness\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = {}\n", conf_value(value)));
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A postgresql.conf value: quoted (quotes doubled) unless already quoted.
pub(crate) fn conf_value(value: &str) -> String {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// The PID of the live postmaster owning `data_dir`, from `postmaster.pid`. On
/// Linux the PID must also be a live (non-zombie) process whose working directory
/// is that data directory, so a stale file naming a reused PID is never trusted.
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 || !alive(pid) {
        return None;
    }
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
        let want = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        if cwd != want {
            return None;
        }
    }
    Some(pid)
}

/// The live processes (zombies left out) whose working directory is `data_dir` or
/// inside it (a removed one shows as `DIR (deleted)`), from /proc: every process of a
/// PostgreSQL server works in its data directory. Backends lead process groups of
/// their own (PostgreSQL calls `setsid` in each child), so this, not the postmaster's
/// group, finds them all.
#[cfg(any(test, feature = "test-support"))]
pub fn processes_in(data_dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_string_lossy().parse().ok()?;
            let cwd = std::fs::read_link(entry.path().join("cwd")).ok()?;
            let cwd = cwd.to_string_lossy().into_owned();
            let dir = data_dir.to_string_lossy();
            let inside = cwd == *dir
                || cwd.starts_with(&format!("{dir}/"))
                || cwd.starts_with(&format!("{dir} "));
            (inside && alive(pid)).then_some(pid)
        })
        .collect()
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "123 (postgres) S ...".
        Ok(stat) => !matches!(
            stat.rsplit_once(") ")
                .map(|(_, rest)| rest.as_bytes().first()),
            Some(Some(b'Z')) | Some(Some(b'X'))
        ),
        Err(_) => true,
    }
}

/// True while a live (non-zombie) process of process group `pgid` remains. Zombies
/// do not count: an init that reaps slowly keeps them for seconds.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return matches!(
            killpg(Pid::from_raw(pgid), None),
            Ok(()) | Err(Errno::EPERM)
        );
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ..."
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(pgid) && state != "Z" && state != "X"
    })
}

pub(crate) fn leads_group(pid: i32) -> bool {
    nix::unistd::getpgid(Some(Pid::from_raw(pid))) == Ok(Pid::from_raw(pid))
}

/// Sends `signal` to the postmaster, or to its whole process group when `group`.
pub(crate) fn signal_postmaster(pid: i32, signal: Signal, group: bool) {
    if group {
        let _ = killpg(Pid::from_raw(pid), signal);
    } else {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Waits until the postmaster (and, with `group`, every process of its process
/// group) is gone.
pub(crate) fn wait_gone(pid: i32, group: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !(alive(pid) || (group && group_alive(pid))) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Immediate shutdown of whatever postmaster owns `data_dir`: SIGQUIT (the
/// postmaster stops its children and waits for them), SIGKILL to its process group
/// after 10 s. Blocking and free of locks, so it also runs at process exit.
pub(crate) fn stop_immediate_dir(data_dir: &Path) {
    let Some(pid) = postmaster_pid(data_dir) else {
        return;
    };
    let group = leads_group(pid);
    signal_postmaster(pid, Signal::SIGQUIT, false);
    // The postmaster exits only after all its children: waiting for it is enough.
    if wait_gone(pid, false, Duration::from_secs(10)) {
        return;
    }
    signal_postmaster(pid, Signal::SIGKILL, group);
    wait_gone(pid, group, Duration::from_secs(5));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_values_are_quoted_once() {
        assert_eq!(conf_value("on"), "'on'");
        assert_eq!(conf_value("'on'"), "'on'");
        assert_eq!(conf_value("it's"), "'it''s'");
        assert_eq!(conf_value("/tmp/a b"), "'/tmp/a b'");
    }

    #[test]
    fn no_postmaster_without_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
        // A stale file naming a live process that is not a postmaster of this dir.
        std::fs::write(
            dir.path().join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), dir.path().display()),
        )
        .unwrap();
        assert_eq!(postmaster_pid(dir.path()), None);
    }
}
