//! One throwaway PostgreSQL server: its data directory, port, socket, log, and
//! the pg_ctl verbs the tests need.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::tools::{chown_to, run, run_async, Tools};
use super::{ADMIN_ROLE, MONITOR_ROLE};
use crate::error::{Context, Error, Result};

/// A PostgreSQL server of a [`super::Harness`].
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

    /// Runs `sql` with `psql -X -At -v ON_ERROR_STOP=1` as the superuser over the
    /// Unix socket; returns its output without the final newline.
    pub fn psql_superuser(&self, sql: &str) -> Result<String> {
        let mut command = self.tools.client_command("psql", &self.socket_dir);
        command
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql);
        let out = run(command, &format!("psql on the {} server", self.name))?;
        Ok(out.strip_suffix('\n').unwrap_or(&out).to_string())
    }

    fn pg_ctl(&self, verb: &str) -> std::process::Command {
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

    /// Stops the server (`pg_ctl stop -m fast`); nothing to do when it is down.
    pub fn stop(&self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let mut command = self.pg_ctl("stop");
        command.args(["-m", "fast", "-w", "-t", "60"]);
        run(command, &self.what("stopping"))?;
        Ok(())
    }

    /// Stops the server at once (SIGQUIT to the postmaster, as `pg_ctl stop -m
    /// immediate`), waiting until it is gone; a crash restart replays WAL.
    pub fn stop_immediate(&self) -> Result<()> {
        stop_immediate_dir(&self.data_dir);
        if self.is_running() {
            return Err(Error::failed(format!(
                "{}: the postmaster survived SIGQUIT and SIGKILL",
                self.what("stopping")
            )));
        }
        Ok(())
    }

    /// `pg_ctl restart -m fast`.
    pub fn restart(&self) -> Result<()> {
        let log_offset = self.log_len();
        let mut command = self.pg_ctl("restart");
        command
            .arg("-l")
            .arg(&self.log)
            .args(["-m", "fast", "-w", "-t", "60"]);
        run(command, &self.what("restarting")).map_err(|e| self.with_log_tail(e, log_offset))?;
        Ok(())
    }

    /// `pg_ctl reload` (SIGHUP): re-reads postgresql.conf and pg_hba.conf.
    pub fn reload(&self) -> Result<()> {
        run(self.pg_ctl("reload"), &self.what("reloading"))?;
        Ok(())
    }

    /// Crashes the server: SIGKILL to the postmaster and every process of its
    /// process group (pg_ctl makes the postmaster a session leader), as a power
    /// loss would; waits until they are gone. `start` then runs crash recovery.
    pub fn kill(&self) -> Result<()> {
        let Some(pid) = postmaster_pid(&self.data_dir) else {
            return Err(Error::failed(format!(
                "killing the {} server: it is not running",
                self.name
            )));
        };
        let group = leads_group(pid);
        signal_postmaster(pid, Signal::SIGKILL, group);
        if !wait_gone(pid, group, Duration::from_secs(10)) {
            return Err(Error::failed(format!(
                "killing the {} server: postmaster {pid} is still there after SIGKILL",
                self.name
            )));
        }
        // Its lock files still name it, and until an init that reaps slowly has
        // reaped the zombie, the next postmaster would take it for a live one (as
        // after a power loss, nothing of the old server runs any more).
        for lock in [
            self.data_dir.join("postmaster.pid"),
            self.socket_dir.join(format!(".s.PGSQL.{}.lock", self.port)),
        ] {
            let names_it = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|text| text.lines().next().map(|l| l.trim() == pid.to_string()))
                .unwrap_or(false);
            if names_it {
                std::fs::remove_file(&lock)
                    .with_context(|| format!("removing the stale {}", lock.display()))?;
            }
        }
        Ok(())
    }

    /// True when a live postmaster owns the data directory.
    pub fn is_running(&self) -> bool {
        postmaster_pid(&self.data_dir).is_some()
    }

    /// The postmaster's PID, when it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        postmaster_pid(&self.data_dir)
    }

    /// The server log (`pg_ctl -l`), outside the data directory.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    pub fn log_contents(&self) -> Result<String> {
        let bytes =
            std::fs::read(&self.log).with_context(|| format!("reading {}", self.log.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Appends `name = 'value'` to postgresql.conf (the last setting wins); takes
    /// effect on reload or restart. A value already in single quotes is kept as is.
    pub fn set_conf(&self, name: &str, value: &str) -> Result<()> {
        append_conf(&self.data_dir, &[(name.to_string(), value.to_string())])
    }

    /// Writes a file into the data directory (e.g. a TLS key or certificate), mode
    /// 0600, owned by the server's OS user; returns its path.
    pub fn write_data_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.data_dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.write_all(contents)
            .with_context(|| format!("writing {}", path.display()))?;
        chown_to(self.tools.run_as.as_ref(), &path)?;
        Ok(path)
    }

    fn what(&self, verb: &str) -> String {
        format!("{verb} the {} server (port {})", self.name, self.port)
    }

    fn log_len(&self) -> u64 {
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

    fn with_log_tail(&self, error: Error, offset: u64) -> Error {
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

fn leads_group(pid: i32) -> bool {
    nix::unistd::getpgid(Some(Pid::from_raw(pid))) == Ok(Pid::from_raw(pid))
}

/// Sends `signal` to the postmaster, or to its whole process group when `group`.
fn signal_postmaster(pid: i32, signal: Signal, group: bool) {
    if group {
        let _ = killpg(Pid::from_raw(pid), signal);
    } else {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// Waits until the postmaster (and, with `group`, every process of its process
/// group) is gone.
fn wait_gone(pid: i32, group: bool, timeout: Duration) -> bool {
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
