//! pgsandbox: throwaway PostgreSQL servers, and the finder of PostgreSQL binaries.
//!
//! It exists so that anything needing real PostgreSQL servers for a while (the
//! integration tests of odoo-db, `odoo-db sandbox` and `odoo-db demo`) gets them from
//! the binaries already on the machine, in seconds, without touching the machine's
//! own clusters; and so that one rule finds those binaries ([`bin`]), for the servers
//! here and for the client tools (pg_dump, pg_restore) of odoo-db's backups. It knows
//! nothing of odoo-db: the roles it creates are plain PostgreSQL roles, and odoo-db
//! writes its own config file for the servers.
//!
//! [`Harness::start`] builds, from the PostgreSQL binaries of this machine
//! ([`bin::find_bindir`]; the client tools psql and pg_basebackup from
//! `$PG_CLIENT_BINDIR` when set, see [`bin::find_client_bindir`]), on free ports (or
//! `base_port`, `+1`, `+2`):
//!
//! - a **primary** (`wal_level = replica`, `log_statement = all`, WAL senders and
//!   slots, a small `wal_keep_size`), `cluster_name = 'primary'`;
//! - a **streaming standby** (`pg_basebackup -R -X stream -C -S standby`, physical
//!   slot `standby`, `hot_standby = on`, `cluster_name = 'standby'`, so its WAL
//!   receiver shows as `application_name = 'standby'` in the primary's
//!   `pg_stat_replication`), replicating over the primary's Unix socket as `postgres`;
//! - a standalone **integration** server (its own initdb: a system identifier of
//!   its own).
//!
//! Every server listens on 127.0.0.1 only. pg_hba: the superuser `postgres` is
//! trusted on the Unix socket (normal and replication connections); everyone else,
//! and everyone over TCP, authenticates with SCRAM-SHA-256. Two roles exist on every
//! server (created on the primary, replicated to the standby):
//! [`ADMIN_ROLE`] (LOGIN CREATEDB CREATEROLE, member of `pg_monitor` and
//! `pg_signal_backend`: a least-privilege administrator, never a superuser)
//! and [`MONITOR_ROLE`] (LOGIN, `pg_monitor`). Their passwords are sent as
//! SCRAM-SHA-256 verifiers computed here, so the statement log never sees them.
//!
//! Speed: `fsync = off`, `full_page_writes = off`, `initdb --no-sync`,
//! `pg_basebackup -c fast --no-sync`; both initdb run at once. Durability does not
//! matter for servers that live minutes.
//!
//! As root, the server tools run as the `postgres` OS user and the harness
//! directory is handed to it; otherwise they run as the current user.
//!
//! Layout of the harness directory (`/tmp/odoo-db-XXXXXX` by default, short so the
//! Unix socket path stays under its 107-byte limit):
//!
//! ```text
//! harness.toml            what [`Harness::open`] needs to find the servers again
//! primary/ standby/ integration/          data directories
//! primary.log standby.log integration.log server logs (pg_ctl -l)
//! sock/                   Unix sockets of all three (.s.PGSQL.<port>)
//! pgpass                  the roles' passwords (Harness::pgpass_path), written by the caller
//! ```
//!
//! Servers of a harness not started with `keep` are stopped and its directory
//! removed on drop. With the `test-support` feature (test builds only) also at
//! process exit (even for a harness in a `static`), and by a watchdog process when
//! the process dies abruptly (see `register_cleanup_at_exit`); that feature also
//! brings what only tests do to servers (kill them, run psql as the superuser, find
//! free port ranges).

pub mod bin;
#[cfg(any(test, feature = "test-support"))]
mod cleanup;
mod error;
mod server;
#[cfg(any(test, feature = "test-support"))]
mod testing;
mod tools;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "test-support"))]
pub use cleanup::{register_cleanup_at_exit, unregister_cleanup_at_exit};
pub use error::{Class, Error, Result};
#[cfg(any(test, feature = "test-support"))]
pub use server::processes_in;
pub use server::PgServer;
#[cfg(any(test, feature = "test-support"))]
pub use testing::free_port_base;

#[cfg(any(test, feature = "test-support"))]
use cleanup::ExitCleanup;
use error::Context;
use server::{append_conf, conf_value, stop_immediate_dir};
use tools::{chown_to, run_async, Tools};

/// The least-privilege administrator role on every harness server (the role odoo-db
/// runs as).
pub const ADMIN_ROLE: &str = "odoo_db_admin";
/// Fixed password of [`ADMIN_ROLE`]: throwaway servers listening on loopback only.
pub const ADMIN_PASSWORD: &str = "odoo_db_admin_sandbox_pw";
/// A monitoring role (`pg_monitor`), for `[health] user`.
pub const MONITOR_ROLE: &str = "odoo_db_monitor";
/// Fixed password of [`MONITOR_ROLE`].
pub const MONITOR_PASSWORD: &str = "odoo_db_monitor_sandbox_pw";

/// The physical replication slot (and `cluster_name`/application_name) of the standby.
pub const STANDBY_NAME: &str = "standby";

/// The file in the harness directory that records its servers.
pub const STATE_FILE: &str = "harness.toml";

/// What to start, and where.
#[derive(Debug, Clone)]
pub struct HarnessOptions {
    /// The harness directory: must be new or empty. `None`: a fresh
    /// `/tmp/odoo-db-XXXXXX`.
    pub dir: Option<PathBuf>,
    /// Ports `base_port` (primary), `+1` (standby), `+2` (integration), refused when
    /// taken. `None`: free ports chosen by the kernel (retried if a race takes one).
    pub base_port: Option<u16>,
    pub standby: bool,
    pub integration: bool,
    /// Extra postgresql.conf settings for the primary (the standby copies them
    /// through pg_basebackup), e.g. `("ssl", "on")`. Values are quoted for you.
    pub primary_conf: Vec<(String, String)>,
    /// Leave the servers running and the directory in place on drop (the sandbox).
    pub keep: bool,
    /// How the standby streams: its slot, application_name and cluster_name (the ways
    /// `health` must recognise a standby without configuration).
    pub standby_setup: StandbySetup,
}

/// How the standby is made and named. The default is the harness's usual standby: slot
/// `standby`, `cluster_name = 'standby'`, no application_name in primary_conninfo.
#[derive(Debug, Clone)]
pub struct StandbySetup {
    /// `application_name` in the standby's primary_conninfo (None: none, as
    /// `pg_basebackup -R` writes it).
    pub application_name: Option<String>,
    /// The standby's `cluster_name`; empty for none, so that its WAL receiver calls
    /// itself `walreceiver`.
    pub cluster_name: String,
    /// Stream through the physical slot [`STANDBY_NAME`] (`pg_basebackup -C -S`);
    /// false: no slot (`wal_keep_size` keeps the WAL).
    pub slot: bool,
}

impl Default for StandbySetup {
    fn default() -> Self {
        StandbySetup {
            application_name: None,
            cluster_name: STANDBY_NAME.to_string(),
            slot: true,
        }
    }
}

impl StandbySetup {
    /// What the standby's WAL sender is called in the primary's `pg_stat_replication`:
    /// the application_name of primary_conninfo, else cluster_name, else `walreceiver`.
    pub fn sender_name(&self) -> &str {
        match &self.application_name {
            Some(name) => name,
            None if !self.cluster_name.is_empty() => &self.cluster_name,
            None => "walreceiver",
        }
    }
}

impl Default for HarnessOptions {
    fn default() -> Self {
        HarnessOptions {
            dir: None,
            base_port: None,
            standby: true,
            integration: true,
            primary_conf: Vec::new(),
            keep: false,
            standby_setup: StandbySetup::default(),
        }
    }
}

/// A running trio of throwaway servers. See the [module docs](self).
pub struct Harness {
    pub primary: PgServer,
    pub standby: Option<PgServer>,
    pub integration: Option<PgServer>,
    /// The harness directory (absolute, canonical).
    pub dir: PathBuf,
    /// Socket directory outside `dir`, when `dir` was too long for a socket path.
    external_socket_dir: Option<PathBuf>,
    keep: bool,
    remove_dir: bool,
    stopped: bool,
    /// The at-exit and watchdog guards of a harness not kept (test builds only).
    #[cfg(any(test, feature = "test-support"))]
    cleanup: Option<ExitCleanup>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("dir", &self.dir)
            .field("primary", &self.primary.port)
            .field("standby", &self.standby.as_ref().map(|s| s.port))
            .field("integration", &self.integration.as_ref().map(|s| s.port))
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    bindir: PathBuf,
    socket_dir: PathBuf,
    /// The socket directory lives outside the harness directory (remove it too).
    external_socket_dir: bool,
    servers: Vec<ServerState>,
}

#[derive(Serialize, Deserialize)]
struct ServerState {
    name: String,
    port: u16,
}

/// Longest Unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

impl Harness {
    /// Starts the servers `options` asks for and creates the roles; returns once
    /// the standby streams. On failure nothing is left running and a directory
    /// this call created is removed.
    pub async fn start(options: HarnessOptions) -> Result<Harness> {
        let tools = Arc::new(Tools::discover()?);
        if options.standby && !tools.bin("pg_basebackup").exists() {
            return Err(Error::refused(format!(
                "{} has no pg_basebackup, which the standby needs: install the PostgreSQL \
                 client tools (Debian/Ubuntu: `apt-get install postgresql`)",
                tools.client_bindir.display()
            )));
        }
        // Ports first: a refusal must change nothing.
        let (ports, fixed) = choose_ports(options.base_port)?;
        let (dir, created) = prepare_dir(options.dir.as_deref(), &tools)?;
        let result = Self::build(&options, tools, &dir, ports, fixed).await;
        if result.is_err() {
            if created {
                let _ = remove_tree(&dir);
            } else if let Ok(entries) = std::fs::read_dir(&dir) {
                // Leave the directory the caller gave us empty, as we found it.
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
        result
    }

    async fn build(
        options: &HarnessOptions,
        tools: Arc<Tools>,
        dir: &Path,
        ports: [u16; 3],
        fixed: bool,
    ) -> Result<Harness> {
        // The socket directory: inside dir unless that makes the path too long.
        let inside = dir.join("sock");
        let (socket_dir, external_socket_dir) =
            if inside.as_os_str().len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH {
                std::fs::create_dir(&inside)
                    .with_context(|| format!("creating {}", inside.display()))?;
                (inside, None)
            } else {
                let outside = tempfile::Builder::new()
                    .prefix("odoo-db-sock-")
                    .tempdir_in("/tmp")
                    .context("creating a socket directory in /tmp")?
                    .keep();
                (outside.clone(), Some(outside))
            };
        chown_to(tools.run_as.as_ref(), &socket_dir)?;

        let primary = PgServer::new("primary", ports[0], dir, &socket_dir, tools.clone());
        let standby = options
            .standby
            .then(|| PgServer::new(STANDBY_NAME, ports[1], dir, &socket_dir, tools.clone()));
        let integration = options
            .integration
            .then(|| PgServer::new("integration", ports[2], dir, &socket_dir, tools.clone()));

        let mut harness = Harness {
            primary,
            standby,
            integration,
            dir: dir.to_path_buf(),
            external_socket_dir,
            keep: options.keep,
            // A directory we made, or any directory when not kept.
            remove_dir: !options.keep,
            stopped: false,
            #[cfg(any(test, feature = "test-support"))]
            cleanup: None,
        };
        #[cfg(any(test, feature = "test-support"))]
        if !options.keep {
            let mut remove = vec![harness.dir.clone()];
            remove.extend(harness.external_socket_dir.clone());
            let data_dirs = harness.servers().map(|s| s.data_dir.clone()).collect();
            harness.cleanup = Some(ExitCleanup::arm(data_dirs, remove));
        }
        match harness.bring_up(options, fixed).await {
            Ok(()) => Ok(harness),
            Err(e) => {
                // Stop what started; remove what we made. Drop then has nothing to do.
                for server in harness.servers() {
                    stop_immediate_dir(&server.data_dir);
                }
                if let Some(outside) = &harness.external_socket_dir {
                    let _ = std::fs::remove_dir_all(outside);
                }
                #[cfg(any(test, feature = "test-support"))]
                if let Some(cleanup) = harness.cleanup.take() {
                    cleanup.disarm();
                }
                harness.stopped = true;
                Err(e)
            }
        }
    }

    async fn bring_up(&mut self, options: &HarnessOptions, fixed_ports: bool) -> Result<()> {
        let started = Instant::now();
        // Recorded before anything starts, so that an interrupted start can still
        // be found and stopped (`sandbox down`); again at the end (ports may move).
        self.write_state()?;
        let locale = pick_locale();
        let Harness {
            primary,
            standby,
            integration,
            ..
        } = self;
        // The SCRAM verifiers meanwhile, off the critical path.
        let verifiers = tokio::task::spawn_blocking(verifiers);
        let major = primary.major();
        let mut primary_settings = base_settings(primary, major);
        primary_settings.extend(options.primary_conf.iter().cloned());

        // Two independent chains at once (initdb is mostly one busy CPU, the base
        // backup mostly file writes): primary then standby, and integration.
        let primary_chain = async {
            initdb(primary, &locale).await?;
            configure(primary, &primary_settings)?;
            start_new(primary, fixed_ports).await?;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "primary up"
            );
            create_roles(primary).await?;
            if let Some(standby) = standby.as_mut() {
                make_standby(primary, standby, fixed_ports, &options.standby_setup).await?;
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "standby up"
                );
            }
            Ok::<(), Error>(())
        };
        let integration_chain = async {
            if let Some(server) = integration.as_mut() {
                initdb(server, &locale).await?;
                configure(server, &base_settings(server, major))?;
                start_new(server, fixed_ports).await?;
                create_roles(server).await?;
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "integration up"
                );
            }
            Ok::<(), Error>(())
        };
        let (primary_done, integration_done, verifiers_done) =
            tokio::join!(primary_chain, integration_chain, verifiers);
        primary_done?;
        integration_done?;
        verifiers_done.map_err(|e| Error::failed(format!("computing the SCRAM verifiers: {e}")))?;
        if self.standby.is_some() {
            self.wait_streaming_as(options.standby_setup.sender_name(), Duration::from_secs(60))
                .await?;
        }
        self.write_state()?;
        tracing::debug!(
            dir = %self.dir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "harness started"
        );
        Ok(())
    }

    /// Finds the servers of a harness directory again (the sandbox between two
    /// commands). The result is kept: dropping it stops nothing.
    pub fn open(dir: &Path) -> Result<Harness> {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("opening the harness directory {}", dir.display()))?;
        let state_path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| {
            Error::refused(format!(
                "{} holds no harness ({}: {e})",
                dir.display(),
                state_path.display()
            ))
        })?;
        let state: State = toml::from_str(&text)
            .map_err(|e| Error::failed(format!("{}: {e}", state_path.display())))?;
        let tools = Arc::new(Tools::at(state.bindir)?);
        let server = |name: &str| {
            state
                .servers
                .iter()
                .find(|s| s.name == name)
                .map(|s| PgServer::new(name, s.port, &dir, &state.socket_dir, tools.clone()))
        };
        let primary = server("primary").ok_or_else(|| {
            Error::failed(format!(
                "{}: no primary server listed",
                state_path.display()
            ))
        })?;
        Ok(Harness {
            primary,
            standby: server(STANDBY_NAME),
            integration: server("integration"),
            external_socket_dir: state.external_socket_dir.then(|| state.socket_dir.clone()),
            dir,
            keep: true,
            remove_dir: false,
            stopped: false,
            #[cfg(any(test, feature = "test-support"))]
            cleanup: None,
        })
    }

    fn write_state(&self) -> Result<()> {
        let state = State {
            bindir: self.primary.tools.bindir.clone(),
            socket_dir: self.primary.socket_dir.clone(),
            external_socket_dir: self.external_socket_dir.is_some(),
            servers: self
                .servers()
                .map(|s| ServerState {
                    name: s.name.clone(),
                    port: s.port,
                })
                .collect(),
        };
        let text = toml::to_string(&state)
            .map_err(|e| Error::failed(format!("serialising the harness state: {e}")))?;
        Ok(safefs::replace_atomically(
            &self.dir.join(STATE_FILE),
            text.as_bytes(),
            0o644,
        )?)
    }

    /// The servers of this harness: primary, standby, integration (those present).
    pub fn servers(&self) -> impl Iterator<Item = &PgServer> {
        std::iter::once(&self.primary)
            .chain(self.standby.as_ref())
            .chain(self.integration.as_ref())
    }

    /// Waits until the primary's `pg_stat_replication` shows the standby
    /// (`application_name = 'standby'`) in state `streaming`.
    pub async fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        self.wait_streaming_as(STANDBY_NAME, timeout).await
    }

    /// Waits until the primary's `pg_stat_replication` shows a WAL sender named
    /// `application_name` in state `streaming`.
    pub async fn wait_streaming_as(&self, application_name: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let client = self.primary.superuser().await?;
        let mut last = String::from("no WAL sender for it");
        loop {
            let row = client
                .query_opt(
                    "SELECT state FROM pg_stat_replication WHERE application_name = $1",
                    &[&application_name],
                )
                .await
                .context("reading pg_stat_replication on the primary")?;
            if let Some(row) = row {
                let state: Option<String> = row.get(0);
                if state.as_deref() == Some("streaming") {
                    return Ok(());
                }
                last = format!("state {}", state.as_deref().unwrap_or("NULL"));
            }
            if Instant::now() >= deadline {
                let log = self
                    .standby
                    .as_ref()
                    .map(|s| s.log_path().display().to_string())
                    .unwrap_or_default();
                return Err(Error::failed(format!(
                    "the standby is not streaming after {timeout:?} ({last}); see {log}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pgpass text: [`ADMIN_ROLE`] and [`MONITOR_ROLE`] on every server's port,
    /// for host `127.0.0.1` and `localhost` (which libpq also matches for Unix
    /// sockets).
    pub fn pgpass(&self) -> String {
        let mut text = String::new();
        for server in self.servers() {
            for host in ["127.0.0.1", "localhost"] {
                for (role, password) in [
                    (ADMIN_ROLE, ADMIN_PASSWORD),
                    (MONITOR_ROLE, MONITOR_PASSWORD),
                ] {
                    text.push_str(&format!("{host}:{}:*:{role}:{password}\n", server.port));
                }
            }
        }
        text
    }

    pub fn pgpass_path(&self) -> PathBuf {
        self.dir.join("pgpass")
    }

    /// Stops every server (immediate shutdown) and, unless the harness was started
    /// with `keep` or [opened](Harness::open), removes its directory.
    pub fn stop(&mut self) -> Result<()> {
        let remove = self.remove_dir;
        self.shut_down(remove)
    }

    /// Stops every server and removes the harness directory, whatever the options
    /// (`sandbox down`).
    pub fn destroy(mut self) -> Result<()> {
        self.shut_down(true)
    }

    fn shut_down(&mut self, remove: bool) -> Result<()> {
        let mut survivors = Vec::new();
        // Standby first: it would only retry its connection to a stopped primary.
        let servers: Vec<&PgServer> = self
            .standby
            .iter()
            .chain(std::iter::once(&self.primary))
            .chain(self.integration.iter())
            .collect();
        for server in servers {
            stop_immediate_dir(&server.data_dir);
            if server.is_running() {
                survivors.push(server.name.clone());
            }
        }
        if !survivors.is_empty() {
            return Err(Error::failed(format!(
                "stopping the harness in {}: still running: {}",
                self.dir.display(),
                survivors.join(", ")
            )));
        }
        if remove {
            remove_dir(&self.dir)?;
            if let Some(outside) = &self.external_socket_dir {
                remove_dir(outside)?;
            }
        }
        #[cfg(any(test, feature = "test-support"))]
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.disarm();
        }
        self.stopped = true;
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !self.keep && !self.stopped {
            if let Err(e) = self.stop() {
                tracing::warn!("dropping the harness: {e}");
            }
        }
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    remove_tree(dir).map_err(|e| Error::failed(format!("removing {}: {e}", dir.display())))
}

/// `remove_dir_all`, tried again for a few seconds when something still writes in the
/// tree (a server process finishing its exit, an orphaned client tool of a killed test
/// process): one failed attempt would leave the harness's client file, with the admin
/// password, behind. A tree that is already gone is removed.
pub(crate) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if attempts >= 30 => return Err(e),
            Err(_) => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Creates (or checks) the harness directory; returns its canonical path and
/// whether this call created it.
fn prepare_dir(dir: Option<&Path>, tools: &Tools) -> Result<(PathBuf, bool)> {
    let (dir, created) = match dir {
        None => {
            let tmp = std::env::temp_dir();
            // A short base keeps the Unix socket path short.
            let base = if tmp.as_os_str().len() <= 40 {
                tmp
            } else {
                PathBuf::from("/tmp")
            };
            let dir = tempfile::Builder::new()
                .prefix("odoo-db-")
                .tempdir_in(&base)
                .with_context(|| format!("creating a harness directory in {}", base.display()))?
                .keep();
            (dir, true)
        }
        Some(dir) => {
            let existed = dir.exists();
            if existed {
                let mut entries =
                    std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
                if entries.next().is_some() {
                    return Err(Error::refused(format!(
                        "{} is not empty: a harness needs a new or empty directory",
                        dir.display()
                    )));
                }
            } else {
                // Refuse before creating anything (a refusal changes nothing).
                if let Some(user) = &tools.run_as {
                    let absolute = std::path::absolute(dir)
                        .with_context(|| format!("resolving {}", dir.display()))?;
                    check_reachable(&absolute, user.uid, user.gid)?;
                }
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("setting the mode of {}", dir.display()))?;
            }
            (dir.to_path_buf(), !existed)
        }
    };
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    if let Some(user) = &tools.run_as {
        if let Err(e) = check_reachable(&dir, user.uid, user.gid) {
            if created {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    }
    share_with_server_user(tools.run_as.as_ref(), &dir)?;
    Ok((dir, created))
}

/// As root, the harness directory stays root's and is shared with the server's OS
/// user through its group, sticky (mode 1770, like `/tmp` for one group): the servers
/// create their data directories, logs and sockets in it, and odoo-db, which refuses to
/// write below a directory that belongs to another user (the contract's "Files odoo-db
/// writes"), can still keep its backups and secrets under it (a sticky directory above
/// is accepted, as `/tmp` is). A no-op when not root.
fn share_with_server_user(run_as: Option<&tools::RunAs>, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(user) = run_as {
        nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(user.gid))).map_err(|e| {
            Error::failed(format!(
                "sharing {} with the postgres OS user's group: {e}",
                dir.display()
            ))
        })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1770))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    Ok(())
}

/// As root the servers run as `postgres`, which must be able to enter every
/// directory above `dir` (`/root` is usually 0700).
fn check_reachable(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors().skip(1) {
        let meta = match std::fs::metadata(ancestor) {
            Ok(meta) => meta,
            // Created later by us, with the usual 0755.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::failed(format!(
                    "checking {}: {e}",
                    ancestor.display()
                )))
            }
        };
        let mode = meta.mode();
        let ok = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(Error::refused(format!(
                "the servers run as the `postgres` OS user, which cannot enter {} \
                 (mode {:o}): choose a directory it can reach (e.g. under /tmp or \
                 /var/lib) or allow it (`chmod o+x {}`)",
                ancestor.display(),
                mode & 0o7777,
                ancestor.display()
            )));
        }
    }
    Ok(())
}

/// Three ports: `base`, `base+1`, `base+2` (each must be free), or three free
/// ports from the kernel. The bool says whether they were fixed by the caller.
fn choose_ports(base: Option<u16>) -> Result<([u16; 3], bool)> {
    match base {
        Some(base) => {
            if !(1024..=u16::MAX - 2).contains(&base) {
                return Err(Error::refused(format!(
                    "port {base}: the three servers use N, N+1, N+2; choose N between 1024 and 65533"
                )));
            }
            let ports = [base, base + 1, base + 2];
            for port in ports {
                if !port_is_free(port) {
                    return Err(Error::refused(format!(
                        "port {port} on 127.0.0.1 is in use: choose other ports with --port \
                         (the servers use N, N+1 and N+2)"
                    )));
                }
            }
            Ok((ports, true))
        }
        None => {
            // Hold all three listeners at once so the kernel hands out distinct ports.
            let listeners = (0..3)
                .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
                .collect::<std::io::Result<Vec<_>>>()
                .context("finding free ports on 127.0.0.1")?;
            let mut ports = [0u16; 3];
            for (slot, listener) in ports.iter_mut().zip(&listeners) {
                *slot = listener.local_addr().context("finding free ports")?.port();
            }
            Ok((ports, false))
        }
    }
}

/// True when nothing listens on 127.0.0.1:`port` (nor on 0.0.0.0:`port`).
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn pick_free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

/// `C.UTF-8` when the C library has it (glibc ≥ 2.35, Debian, Ubuntu), else `C`.
fn pick_locale() -> String {
    let has_c_utf8 = std::process::Command::new("locale")
        .arg("-a")
        .stderr(std::process::Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.eq_ignore_ascii_case("C.UTF-8") || l.eq_ignore_ascii_case("C.utf8"))
        })
        .unwrap_or(false);
    if has_c_utf8 { "C.UTF-8" } else { "C" }.to_string()
}

async fn initdb(server: &PgServer, locale: &str) -> Result<()> {
    let mut command = server
        .tools
        .server_command("initdb", server.data_dir.parent().unwrap());
    command
        .arg("-D")
        .arg(&server.data_dir)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .arg(format!("--locale={locale}"));
    run_async(command, &format!("initdb of the {} server", server.name)).await?;
    Ok(())
}

/// The postgresql.conf settings of every harness server.
fn base_settings(server: &PgServer, major: u32) -> Vec<(String, String)> {
    let mut settings: Vec<(&str, String)> = vec![
        ("listen_addresses", "127.0.0.1".into()),
        ("port", server.port.to_string()),
        (
            "unix_socket_directories",
            server.socket_dir.to_string_lossy().into_owned(),
        ),
        ("cluster_name", server.name.clone()),
        ("password_encryption", "scram-sha-256".into()),
        ("wal_level", "replica".into()),
        ("max_wal_senders", "10".into()),
        ("max_replication_slots", "10".into()),
        ("hot_standby", "on".into()),
        ("shared_buffers", "32MB".into()),
        ("fsync", "off".into()),
        ("full_page_writes", "off".into()),
        ("logging_collector", "off".into()),
        ("log_statement", "all".into()),
        ("log_line_prefix", "%m [%p] %q%u@%d ".into()),
        ("lc_messages", "C".into()),
    ];
    if major >= 13 {
        settings.push(("wal_keep_size", "64MB".into()));
    } else {
        settings.push(("wal_keep_segments", "4".into()));
    }
    settings
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

const PG_HBA: &str = "\
# odoo-db harness: superuser trusted on the Unix socket only; SCRAM everywhere else.
# TYPE  DATABASE     USER      ADDRESS        METHOD
local   all          postgres                 trust
local   replication  postgres                 trust
local   all          all                      scram-sha-256
host    all          all       127.0.0.1/32   scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
";

fn configure(server: &PgServer, settings: &[(String, String)]) -> Result<()> {
    append_conf(&server.data_dir, settings)?;
    let hba = server.data_dir.join("pg_hba.conf");
    std::fs::write(&hba, PG_HBA).with_context(|| format!("writing {}", hba.display()))?;
    Ok(())
}

/// Starts a new server; with kernel-chosen ports, a port taken since it was chosen
/// is replaced by another and the start retried.
async fn start_new(server: &mut PgServer, fixed_port: bool) -> Result<()> {
    let mut attempt = 0;
    loop {
        let offset = server.log_offset();
        match server.start_async().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let port_taken = server.log_since(offset).contains("Address already in use");
                attempt += 1;
                if fixed_port || !port_taken || attempt >= 5 {
                    return Err(e);
                }
                let port = pick_free_port()?;
                tracing::debug!(server = %server.name, old = server.port, new = port, "port taken, retrying");
                server.set_conf("port", &port.to_string())?;
                server.port = port;
            }
        }
    }
}

/// SCRAM-SHA-256 verifiers of [`ADMIN_PASSWORD`] and [`MONITOR_PASSWORD`], computed
/// once per process (4096 PBKDF2 rounds each are slow in a debug build).
fn verifiers() -> &'static (String, String) {
    static VERIFIERS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    VERIFIERS.get_or_init(|| {
        (
            postgres_protocol::password::scram_sha_256(ADMIN_PASSWORD.as_bytes()),
            postgres_protocol::password::scram_sha_256(MONITOR_PASSWORD.as_bytes()),
        )
    })
}

/// Creates [`ADMIN_ROLE`] and [`MONITOR_ROLE`] with SCRAM verifiers computed here.
async fn create_roles(server: &PgServer) -> Result<()> {
    let client = server.superuser().await?;
    let (admin, monitor) = verifiers();
    let mut sql = format!(
        "CREATE ROLE {ADMIN_ROLE} LOGIN CREATEDB CREATEROLE PASSWORD '{admin}';\n\
         GRANT pg_monitor, pg_signal_backend TO {ADMIN_ROLE};\n\
         GRANT EXECUTE ON FUNCTION pg_control_system() TO {ADMIN_ROLE};\n\
         CREATE ROLE {MONITOR_ROLE} LOGIN PASSWORD '{monitor}';\n\
         GRANT pg_monitor TO {MONITOR_ROLE};\n"
    );
    if server.major() >= 16 {
        // As the README recommends: roles the admin creates are granted back to it.
        sql.push_str(&format!(
            "ALTER ROLE {ADMIN_ROLE} SET createrole_self_grant = 'set, inherit';\n"
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .with_context(|| format!("creating the roles on the {} server", server.name))?;
    Ok(())
}

/// `pg_basebackup -R -X stream -C -S standby` (without `-C -S` for a standby without
/// slot) from the primary's Unix socket, then the standby's own settings, then start.
async fn make_standby(
    primary: &PgServer,
    standby: &mut PgServer,
    fixed_ports: bool,
    setup: &StandbySetup,
) -> Result<()> {
    let mut command = standby
        .tools
        .server_command("pg_basebackup", standby.data_dir.parent().unwrap());
    command
        .arg("-D")
        .arg(&standby.data_dir)
        .arg("-h")
        .arg(&primary.socket_dir)
        .arg("-p")
        .arg(primary.port.to_string())
        .args(["-U", "postgres", "-R", "-X", "stream"])
        .args(["-c", "fast", "--no-sync"]);
    if setup.slot {
        command.args(["-C", "-S", STANDBY_NAME]);
    }
    run_async(command, "pg_basebackup of the standby").await?;
    write_primary_conninfo(primary, standby, setup.application_name.as_deref())?;
    append_conf(
        &standby.data_dir,
        &[
            ("port".to_string(), standby.port.to_string()),
            ("cluster_name".to_string(), setup.cluster_name.clone()),
            ("hot_standby".to_string(), "on".to_string()),
        ],
    )?;
    start_new(standby, fixed_ports).await
}

/// Replaces the `primary_conninfo` that `pg_basebackup -R` wrote into the standby's
/// postgresql.auto.conf with the few options the harness needs. pg_basebackup writes
/// every option its own libpq knows, and with newer client tools than the server
/// (scripts/pg-matrix) the standby's older libpq refuses them: PostgreSQL 12 fails with
/// `invalid connection option "channel_binding"` and never streams.
fn write_primary_conninfo(
    primary: &PgServer,
    standby: &PgServer,
    application_name: Option<&str>,
) -> Result<()> {
    let path = standby.data_dir.join("postgresql.auto.conf");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let socket_dir = primary.socket_dir.display().to_string();
    let socket_dir = socket_dir.replace('\\', "\\\\").replace('\'', "\\'");
    let mut conninfo = format!("host='{socket_dir}' port={} user=postgres", primary.port);
    if let Some(name) = application_name {
        let name = name.replace('\\', "\\\\").replace('\'', "\\'");
        conninfo.push_str(&format!(" application_name='{name}'"));
    }
    let mut kept: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("primary_conninfo"))
        .map(|line| format!("{line}\n"))
        .collect();
    kept.push_str(&format!("primary_conninfo = {}\n", conf_value(&conninfo)));
    std::fs::write(&path, kept).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ports_must_fit() {
        assert!(choose_ports(Some(65534)).is_err());
        assert!(choose_ports(Some(80)).is_err());
        let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let error = choose_ports(Some(port - 1)).unwrap_err();
        assert!(error.to_string().contains("in use"), "{error}");
    }

    #[test]
    fn free_ports_are_distinct() {
        let (ports, fixed) = choose_ports(None).unwrap();
        assert!(!fixed);
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
    }
}
