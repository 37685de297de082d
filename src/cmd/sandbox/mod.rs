//! `odoo-db sandbox up|down|status`: a local primary, streaming standby and
//! integration server for trying odoo-db without a cluster, built by
//! [`crate::harness`] from the PostgreSQL binaries of this machine.
//!
//! - Ports N (primary), N+1 (standby), N+2 (integration); `--port N`, default the
//!   first free range among 54320, 54330, … 54410.
//! - Directory (`--dir`): by default `$XDG_STATE_HOME/odoo-db/sandbox`, else
//!   `~/.local/state/odoo-db/sandbox` (the XDG base-directory home for state that
//!   outlives a run but is not worth backing up). As root the default is
//!   `/var/lib/odoo-db/sandbox` instead: the servers run as the `postgres` OS user,
//!   which cannot enter `/root`, and the directory is handed to that user.
//! - `up` writes `DIR/odoo-db.toml` and `DIR/pgpass` (0600) and prints the `export`
//!   lines to use them; run again, it starts whatever was stopped and prints the same.
//! - `down` stops the servers and removes DIR entirely, but only a DIR holding a
//!   sandbox (`DIR/harness.toml`): it never deletes a directory it did not make.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::harness::{Harness, HarnessOptions, PgServer, STANDBY_NAME, STATE_FILE};

pub(crate) mod demo;

/// The default base port, and how many ranges of ten above it `up` tries.
pub(crate) const DEFAULT_PORT: u16 = 54320;
const PORT_RANGES: u16 = 10;

/// The sandbox directory when `--dir` is not given (see the module docs).
pub(crate) fn default_dir() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/odoo-db/sandbox"));
    }
    let state_home = match std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state"),
            None => return Err(Error::refused(
                "neither XDG_STATE_HOME nor HOME is set: give the sandbox a directory with --dir",
            )),
        },
    };
    Ok(state_home.join("odoo-db/sandbox"))
}

/// Starts the sandbox in `dir` (or starts again what is stopped) and writes its
/// client files; returns the stdout text: a comment line saying what happened and
/// the `export ODOO_DB_CONFIG=…` / `export PGPASSFILE=…` lines.
pub async fn up(dir: &Path, port: Option<u16>) -> Result<String> {
    let dir = absolute(dir)?;
    let (harness, what) = if dir.join(STATE_FILE).exists() {
        let harness = Harness::open(&dir)?;
        if let Some(port) = port.filter(|p| *p != harness.primary.port) {
            return Err(Error::refused(format!(
                "the sandbox in {} uses ports {}-{}, not {port}: run `odoo-db sandbox down` \
                 first to move it",
                harness.dir.display(),
                harness.primary.port,
                harness.primary.port + 2
            )));
        }
        let mut started = Vec::new();
        for server in harness.servers() {
            if !server.is_running() {
                server.start().map_err(|e| {
                    e.context(format!(
                        "the sandbox in {} is broken (`odoo-db sandbox down` removes it)",
                        harness.dir.display()
                    ))
                })?;
                started.push(server.name.clone());
            }
        }
        if harness.standby.is_some() && !started.is_empty() {
            harness.wait_streaming(Duration::from_secs(60)).await?;
        }
        let what = if started.is_empty() {
            "already running".to_string()
        } else {
            format!("started again ({})", started.join(", "))
        };
        (harness, what)
    } else {
        if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
            return Err(Error::refused(format!(
                "{} exists and is not an odoo-db sandbox (no {STATE_FILE}): choose another --dir",
                dir.display()
            )));
        }
        let base = match port {
            Some(port) => port,
            None => default_base_port()?,
        };
        let harness = Harness::start(HarnessOptions {
            dir: Some(dir.clone()),
            base_port: Some(base),
            standby: true,
            integration: true,
            primary_conf: Vec::new(),
            keep: true,
            ..HarnessOptions::default()
        })
        .await?;
        (harness, "started".to_string())
    };
    let (config, pgpass) = harness.write_client_files()?;
    Ok(format!(
        "# odoo-db sandbox {what} in {}: {}\n\
         export ODOO_DB_CONFIG={}\n\
         export PGPASSFILE={}\n",
        harness.dir.display(),
        ports_summary(&harness),
        shell_quote(&config.to_string_lossy()),
        shell_quote(&pgpass.to_string_lossy()),
    ))
}

/// Each server of the sandbox in `dir`: port, role, running or not, and whether the
/// standby streams.
pub async fn status(dir: &Path) -> Result<String> {
    let dir = absolute(dir)?;
    if !dir.join(STATE_FILE).exists() {
        return Ok(format!(
            "no sandbox in {} (start one with `odoo-db sandbox up`)\n",
            dir.display()
        ));
    }
    let harness = Harness::open(&dir)?;
    let mut text = format!(
        "odoo-db sandbox in {} (PostgreSQL {}, {})\n",
        harness.dir.display(),
        harness.primary.major(),
        harness.primary.bindir().display()
    );
    let mut rows = vec![[
        "SERVER".to_string(),
        "PORT".to_string(),
        "ROLE".to_string(),
        "STATE".to_string(),
        "DETAIL".to_string(),
    ]];
    let streaming = standby_state(&harness).await;
    for server in harness.servers() {
        let running = server.is_running();
        let (role, detail) = if !running {
            (role_of(server), String::new())
        } else {
            match recovery(server).await {
                Ok(true) if server.name == STANDBY_NAME => {
                    ("standby".to_string(), streaming.clone())
                }
                Ok(true) => ("standby".to_string(), "in recovery".to_string()),
                Ok(false) => (role_of(server), "accepts writes".to_string()),
                Err(e) => (role_of(server), format!("unreachable: {e}")),
            }
        };
        rows.push([
            server.name.clone(),
            server.port.to_string(),
            role,
            if running { "running" } else { "stopped" }.to_string(),
            detail,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    text.push_str(&format!(
        "config: {}\npgpass: {}\n",
        harness.config_path().display(),
        harness.pgpass_path().display()
    ));
    Ok(text)
}

/// Stops the sandbox in `dir` and removes the directory. A directory without a
/// sandbox is refused (never deleted); a missing one is nothing to do.
pub async fn down(dir: &Path) -> Result<String> {
    let dir = absolute(dir)?;
    if !dir.exists() {
        return Ok(format!(
            "# no sandbox in {}: nothing to do\n",
            dir.display()
        ));
    }
    if !dir.join(STATE_FILE).exists() {
        return Err(Error::refused(format!(
            "{} holds no odoo-db sandbox (no {STATE_FILE}): not removing it",
            dir.display()
        )));
    }
    let harness = Harness::open(&dir)?;
    let shown = harness.dir.display().to_string();
    harness.destroy()?;
    Ok(format!(
        "# odoo-db sandbox in {shown} stopped and removed\n"
    ))
}

fn role_of(server: &PgServer) -> String {
    server.name.clone()
}

async fn recovery(server: &PgServer) -> Result<bool> {
    let client = server.superuser().await?;
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await?;
    Ok(row.get(0))
}

/// How the standby replicates, as the primary sees it.
async fn standby_state(harness: &Harness) -> String {
    let result = async {
        let client = harness.primary.superuser().await?;
        let row = client
            .query_opt(
                "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint \
                 FROM pg_stat_replication WHERE application_name = $1",
                &[&STANDBY_NAME],
            )
            .await?;
        Ok::<_, Error>(row.map(|row| {
            let state: Option<String> = row.get(0);
            let lag: Option<i64> = row.get(1);
            (state.unwrap_or_default(), lag)
        }))
    }
    .await;
    match result {
        Ok(Some((state, Some(lag)))) if state == "streaming" => {
            format!("streaming from primary (replay lag {lag} bytes)")
        }
        Ok(Some((state, _))) => format!("not streaming (WAL sender state: {state})"),
        Ok(None) => "not streaming (no WAL sender on the primary)".to_string(),
        Err(_) => "not streaming (primary unreachable)".to_string(),
    }
}

fn ports_summary(harness: &Harness) -> String {
    harness
        .servers()
        .map(|s| format!("{} {}", s.name, s.port))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first base port among 54320, 54330, … with all three ports free.
fn default_base_port() -> Result<u16> {
    (0..PORT_RANGES)
        .map(|i| DEFAULT_PORT + 10 * i)
        .find(|&base| (base..base + 3).all(crate::harness::port_is_free))
        .ok_or_else(|| {
            Error::refused(format!(
                "no three free ports found at {DEFAULT_PORT}-{}: choose a base port with --port",
                DEFAULT_PORT + 10 * PORT_RANGES
            ))
        })
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    std::path::absolute(dir)
        .map_err(|e| Error::refused(format!("sandbox directory {}: {e}", dir.display())))
}

/// Quotes a word for POSIX sh when it needs it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("/tmp/a/odoo-db.toml"), "/tmp/a/odoo-db.toml");
        assert_eq!(shell_quote("/tmp/a b/x"), "'/tmp/a b/x'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
