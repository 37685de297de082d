//! What only tests do with throwaway servers (the `test-support` feature): run psql
//! as the superuser, stop, restart, reload, kill and crash servers, read their logs,
//! drop files into a data directory, and find free port ranges for servers started
//! by hand. The release binary of odoo-db has none of it.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::{Context, Error, Result};
use crate::port_is_free;
use crate::server::{
    leads_group, postmaster_pid, processes_in, signal_postmaster, stop_immediate_dir, wait_gone,
    PgServer,
};
use crate::tools::{chown_to, run};

impl PgServer {
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
        // Its children too, as a power loss would: each backend leads a process group of
        // its own, and left alone it exits only once it notices the postmaster is gone,
        // a moment later, still holding the shared memory the next start checks.
        let children = processes_in(&self.data_dir);
        signal_postmaster(pid, Signal::SIGKILL, group);
        for &child in &children {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL);
        }
        if !wait_gone(pid, group, Duration::from_secs(10)) {
            return Err(Error::failed(format!(
                "killing the {} server: postmaster {pid} is still there after SIGKILL",
                self.name
            )));
        }
        // Forked between the scan and the kill: they exit on the postmaster's death.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !processes_in(&self.data_dir).is_empty() {
            if std::time::Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "killing the {} server: processes {:?} still work in {} after SIGKILL",
                    self.name,
                    processes_in(&self.data_dir),
                    self.data_dir.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
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

    /// The postmaster's PID, when it runs.
    pub fn postmaster_pid(&self) -> Option<i32> {
        postmaster_pid(&self.data_dir)
    }

    pub fn log_contents(&self) -> Result<String> {
        let bytes =
            std::fs::read(&self.log).with_context(|| format!("reading {}", self.log.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Writes a file into the data directory (e.g. a TLS key or certificate), mode
    /// 0600, owned by the server's OS user; returns its path.
    pub fn write_data_file(&self, name: &str, contents: &[u8]) -> Result<PathBuf> {
        let path = self.data_dir.join(name);
        safefs::replace_atomically(&path, contents, 0o600)?;
        chown_to(self.tools.run_as.as_ref(), &path)?;
        Ok(path)
    }
}

/// A base port N with N, N+1, …, N+count-1 all free, from 20000–29999 (below the
/// kernel's ephemeral range, so outgoing connections do not take them meanwhile).
pub fn free_port_base(count: u16) -> Result<u16> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..100 {
        let base: u16 = rng.gen_range(20000..30000 - count);
        if (base..base + count).all(port_is_free) {
            return Ok(base);
        }
    }
    Err(Error::failed(format!(
        "no {count} consecutive free ports found in 20000-29999 on 127.0.0.1"
    )))
}
