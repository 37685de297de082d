//! Backups of integration databases: `pg_dump -Fc` before a drop, `pg_restore` after.
//!
//! A backup is only worth something if it is complete and readable, so one is written
//! to `<name>-<UTC timestamp>.dump.partial` (mode 0600 from its creation), read back
//! whole (`pg_restore -f /dev/null` decompresses every data block; `--list` would read
//! the table of contents only; the read-back runs alongside the dump, see [`dump`]),
//! synced, and only then renamed to `.dump`: a `.dump` file is always a verified one,
//! whatever moment a crash picks. The client tools are
//! the newest installed ones whose major version is at least the server's (an older
//! pg_dump refuses a newer server), found before anything changes. The password goes
//! into the child's own environment (`PGPASSWORD`, set on that one process only:
//! `/proc/<pid>/environ` is readable by the same user and root alone, who could read
//! odoo-db's memory as well), never the command line (visible in `ps`) nor a file: a
//! file outlives a kill -9 of odoo-db, an environment dies with the process.
//!
//! Retention keeps the newest `keep_backups` of each database and never deletes a
//! backup that an unfinished recreate or restore recorded.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Context, Error, Result};
use crate::output::progress::{Progress, Unit};
use crate::units::format_bytes;
use pgconn::ConnParams;

const SUFFIX: &str = ".dump";
const PARTIAL_SUFFIX: &str = ".dump.partial";
/// Milliseconds: two backups of one database a second apart must not collide, and the
/// name sorts in time order.
const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";
/// pg_dump waits this long for a table lock (an open ALTER TABLE in Odoo) before
/// failing, rather than hanging the recreate.
const LOCK_WAIT_TIMEOUT: &str = "60s";

/// pg_dump and pg_restore of one installation.
#[derive(Debug, Clone)]
pub struct Tools {
    pub bindir: PathBuf,
    pub major: u32,
    /// `pg_dump --version` as printed.
    pub version: String,
}

impl Tools {
    fn bin(&self, tool: &str) -> PathBuf {
        self.bindir.join(tool)
    }
}

/// A verified backup file.
#[derive(Debug, Clone)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    /// SHA-256 of the whole file, lowercase hex: the catalog records it, and `restore`
    /// accepts the file only while it still matches.
    pub sha256: String,
    pub duration: Duration,
}

/// Lowercase hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuse (nothing changed, nothing created) a backup directory that another user could
/// write into (or that belongs to one), existing or not: checked at plan time, before
/// the dump creates it (0700) with [`safefs::ensure_private_dir`].
pub fn check_backup_dir(dir: &Path) -> Result<()> {
    safefs::check_private_dir_or_creatable(dir, "backup directory").map_err(|error| {
        match error.class() {
            safefs::Class::Refused => Error::refused(format!("{error}; nothing was changed")),
            safefs::Class::Failed => error.into(),
        }
    })
}

/// The newest pg_dump/pg_restore pair whose major version is at least `server_major`;
/// refused (nothing changed) when none is installed.
pub fn find_tools(server_major: u32) -> Result<Tools> {
    let found: Vec<Tools> = pgsandbox::bin::installations_with("pg_dump", &["pg_restore"])
        .into_iter()
        .map(|installation| Tools {
            bindir: installation.bindir,
            major: installation.major,
            version: installation.version,
        })
        .collect();
    let seen: Vec<String> = found
        .iter()
        .map(|t| format!("{} ({})", t.major, t.bindir.display()))
        .collect();
    found
        .into_iter()
        .filter(|tools| tools.major >= server_major)
        .max_by_key(|tools| tools.major)
        .ok_or_else(|| {
            Error::refused(format!(
                "no pg_dump of PostgreSQL {server_major} or newer is installed (an older pg_dump refuses a newer server; found: {}); \
                 install the client tools (Debian/Ubuntu: apt-get install postgresql-client-{server_major}) or set PG_BINDIR; nothing was changed",
                if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
            ))
        })
}

/// Refuse (nothing changed) a `--compress` value this pg_dump cannot take: methods
/// (`lz4`, `zstd`, `gzip:9`) exist from pg_dump 16 on, before only levels 0-9.
pub fn check_compression(tools: &Tools, compression: &str) -> Result<()> {
    let level = compression.parse::<u8>().is_ok_and(|level| level <= 9);
    if level || tools.major >= 16 {
        return Ok(());
    }
    Err(Error::refused(format!(
        "[recreate] compression = {compression:?} needs pg_dump 16 or newer (lz4, zstd, method:level); \
         {} is pg_dump {}, which takes a level 0-9 only; nothing was changed",
        tools.bindir.display(),
        tools.major
    )))
}

/// Refuse (nothing changed) when the file system of `dir` has less free space than the
/// database takes: a dump that fills the disk fails late and may take the server's
/// disk with it when they share one.
pub fn check_space(dir: &Path, database_bytes: u64) -> Result<()> {
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(parent) => probe = parent.to_path_buf(),
            None => break,
        }
    }
    let stat = nix::sys::statvfs::statvfs(&probe).map_err(|error| {
        Error::refused(format!(
            "backup directory {}: cannot read the free space of {}: {error}",
            dir.display(),
            probe.display()
        ))
    })?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    if free < database_bytes {
        return Err(Error::refused(format!(
            "backup directory {} has {} free, less than the database's {}: free space there, \
             choose another --backup-dir, or (knowingly) pass --no-backup; nothing was changed",
            dir.display(),
            format_bytes(free),
            format_bytes(database_bytes)
        )));
    }
    if dir.exists() && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_err() {
        return Err(Error::refused(format!(
            "backup directory {} is not writable by this user; nothing was changed",
            dir.display()
        )));
    }
    Ok(())
}

/// `<name>-<UTC timestamp>.dump`
pub fn file_name(name: &str, at: DateTime<Utc>) -> String {
    format!("{name}-{}{SUFFIX}", at.format(TIMESTAMP_FORMAT))
}

/// The time in a backup file name of database `name`, None for any other file.
pub fn timestamp_of(name: &str, file_name: &str) -> Option<DateTime<Utc>> {
    let stamp = file_name
        .strip_prefix(name)?
        .strip_prefix('-')?
        .strip_suffix(SUFFIX)?;
    NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT)
        .ok()
        .map(|naive| naive.and_utc())
}

/// Backups of `name` in `dir`, oldest first.
pub fn backups_of(dir: &Path, name: &str) -> Result<Vec<(DateTime<Utc>, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(error) => return Err(Error::from(error).context(format!("reading {}", dir.display()))),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(at) = timestamp_of(name, &file_name) {
            found.push((at, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// What retention deletes from `backups` (oldest first): all but the newest `keep`,
/// except those in `protected`.
pub fn to_prune(backups: &[PathBuf], keep: usize, protected: &[PathBuf]) -> Vec<PathBuf> {
    let excess = backups.len().saturating_sub(keep);
    backups[..excess]
        .iter()
        .filter(|path| !protected.iter().any(|p| same_file(p, path)))
        .cloned()
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Keep the newest `keep` backups of `name` in `dir`; returns what was deleted.
pub fn prune(dir: &Path, name: &str, keep: usize, protected: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let backups: Vec<PathBuf> = backups_of(dir, name)?.into_iter().map(|(_, p)| p).collect();
    let doomed = to_prune(&backups, keep, protected);
    for path in &doomed {
        std::fs::remove_file(path)
            .with_context(|| format!("pruning old backup {}", path.display()))?;
        tracing::info!("pruned old backup {}", path.display());
    }
    Ok(doomed)
}

/// A libpq tool with no `PG*` variable of ours leaking in (the conninfo says it all),
/// and the password of `login` (when it carries one) in `PGPASSWORD` of this child
/// alone; killed if odoo-db dies, so no orphan keeps dumping. No credential is ever
/// written to disk for it (the contract's "Files odoo-db writes").
fn libpq_command(tools: &Tools, tool: &str, login: Option<&ConnParams>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(tools.bin(tool));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(&key);
        }
    }
    if let Some(password) = login.and_then(ConnParams::password) {
        command.env("PGPASSWORD", password);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

async fn run_tool(mut command: tokio::process::Command, what: &str) -> Result<()> {
    let out = command
        .output()
        .await
        .with_context(|| format!("starting {what}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::failed(format!(
        "{what} failed ({}): {}",
        out.status,
        stderr.trim()
    )))
}

/// Remove `.partial` files of `name` left by a killed run (the caller holds the lock,
/// so no live run is writing them).
fn remove_partials(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&format!("{name}-"))
            && file_name.ends_with(PARTIAL_SUFFIX)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            tracing::info!(
                "removed {} left by an interrupted backup",
                entry.path().display()
            );
        }
    }
}

/// Dump database `name` (`params` point at it) into `dir`, read it back whole, sync it,
/// and only then give it its final name. On failure nothing is left behind.
///
/// The read-back runs while the dump is written, not after it: pg_dump's output goes
/// through odoo-db into the file and into `pg_restore -f /dev/null` at once, which
/// hides the read-back's time behind the dump's. The file is then synced and read
/// again from the file system and must equal the stream pg_restore accepted (length
/// and SHA-256, which the catalog then records); so what is on disk is what was
/// verified. (pg_dump writing to a pipe cannot seek back to store data offsets in the
/// table of contents; pg_restore finds the blocks by scanning instead, also with `-j`.)
pub async fn dump(
    tools: &Tools,
    params: &ConnParams,
    dir: &Path,
    name: &str,
    compression: &str,
    server_major: u32,
    expected_bytes: u64,
) -> Result<Backup> {
    let started = Instant::now();
    // The customer may have given its database `statement_timeout = 1ms`, a read-only
    // default or a bad search_path: pg_dump resets most of them itself, but only after
    // its first queries, so the session overrides them from the start, as a restore's.
    let params = &params
        .with_startup_options(&restore_session_options(server_major))
        .with_application_name(PG_DUMP_APPLICATION_NAME);
    // It and its missing parents 0700 whatever the umask; an existing one that others
    // can write (or that is not ours) is refused: they could swap the dump.
    safefs::ensure_private_dir(dir, "backup directory")?;
    remove_partials(dir, name);
    let final_path = dir.join(file_name(name, Utc::now()));
    let partial = final_path.with_extension("dump.partial");
    // Created here, 0600 from the first byte (pg_dump would create it with 0644 & umask),
    // O_EXCL | O_NOFOLLOW: never through a planted file or symlink.
    let file = safefs::create_new(&partial, 0o600)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut progress = Progress::start(&format!("backup of {name}"), expected_bytes, Unit::Bytes);
    progress.watch_size(partial.clone());
    let result = async {
        let mut pg_dump = libpq_command(tools, "pg_dump", Some(params));
        pg_dump
            .arg("--format=custom")
            .arg(format!("--compress={compression}"))
            .arg(format!("--lock-wait-timeout={LOCK_WAIT_TIMEOUT}"))
            .arg("--no-password")
            .arg("--dbname")
            .arg(params.libpq_conninfo())
            .stdout(Stdio::piped());
        let mut pg_restore = libpq_command(tools, "pg_restore", None);
        pg_restore.arg("--file=/dev/null").stdin(Stdio::piped());
        let (bytes, hash) = stream_verified(pg_dump, pg_restore, file, name).await?;
        tracing::debug!(
            "{name}: dumped, read back and synced after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        let (reread_bytes, reread_hash) = digest_file(&partial).await?;
        tracing::debug!(
            "{name}: the file matches what was read back, after {:.2} s",
            started.elapsed().as_secs_f64()
        );
        if reread_bytes != bytes || reread_hash != hash {
            return Err(Error::failed(format!(
                "{} reads back {reread_bytes} bytes that differ from the {bytes} bytes pg_restore verified",
                partial.display()
            )));
        }
        safefs::rename_durably(&partial, &final_path)?;
        Ok::<_, Error>((bytes, hash))
    }
    .await;
    progress.finish();
    match result {
        Ok((bytes, sha256)) => Ok(Backup {
            path: final_path,
            bytes,
            sha256,
            duration: started.elapsed(),
        }),
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error.context(format!("backing up {name} into {}", dir.display())))
        }
    }
}

/// Collect a child's stderr while it runs, so a chatty child never blocks on a full pipe.
fn collect_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut text).await;
        }
        text
    })
}

/// Run pg_dump into `file` and into pg_restore's stdin at once; both must succeed.
/// Returns the length and SHA-256 (hex) of the stream, and leaves the file synced.
///
/// Three tasks joined by bounded queues (reading pg_dump, writing the file, feeding
/// pg_restore), and pipes enlarged to 1 MiB: with one task taking turns, each process
/// would wait for the slowest of the others at every 64 KiB, doubling the time.
async fn stream_verified(
    mut pg_dump: tokio::process::Command,
    mut pg_restore: tokio::process::Command,
    file: std::fs::File,
    name: &str,
) -> Result<(u64, String)> {
    let mut dumper = pg_dump.spawn().context("starting pg_dump")?;
    let mut reader = pg_restore
        .spawn()
        .context("starting pg_restore to read the backup back")?;
    let dump_errors = collect_stderr(&mut dumper);
    let read_errors = collect_stderr(&mut reader);
    let output = dumper.stdout.take().expect("piped");
    let verifier = reader.stdin.take().expect("piped");
    enlarge_pipe(&output);
    enlarge_pipe(&verifier);

    let (to_file, file_queue) = tokio::sync::mpsc::channel::<Arc<Vec<u8>>>(QUEUED_CHUNKS);
    let (to_verifier, verifier_queue) = tokio::sync::mpsc::channel::<Arc<Vec<u8>>>(QUEUED_CHUNKS);
    let file_writer = spawn_file_writer(file, file_queue);
    let verifier_feeder = spawn_verifier_feeder(verifier, verifier_queue);
    let (pumped, verifier_open) = pump(output, to_file, to_verifier).await;
    let written = file_writer
        .await
        .map_err(|error| Error::failed(format!("writing the backup file: {error}")))?;
    let fed = verifier_feeder.await.unwrap_or(false);
    let dump_status = dumper.wait().await.context("waiting for pg_dump")?;
    let read_status = reader.wait().await.context("waiting for pg_restore")?;
    let dump_errors = dump_errors.await.unwrap_or_default();
    let read_errors = read_errors.await.unwrap_or_default();
    if !dump_status.success() {
        return Err(Error::failed(format!(
            "pg_dump of {name} failed ({dump_status}): {}",
            dump_errors.trim()
        )));
    }
    pumped?;
    let (bytes, hash) = written.context("writing the backup file")?;
    if !read_status.success() || !fed || !verifier_open {
        return Err(Error::failed(format!(
            "the backup of {name} does not read back whole: pg_restore {read_status}: {}",
            read_errors.trim()
        )));
    }
    Ok((bytes, hash))
}

/// How much of pg_dump's output is read at once, and how many such chunks may wait for
/// the file's writer or for the reader.
const CHUNK: usize = 1 << 20;
const QUEUED_CHUNKS: usize = 16;

/// The file's writer also hashes what it writes: off the path pg_dump waits on. Ends
/// when its queue closes, with the bytes written and their SHA-256, after an fsync.
fn spawn_file_writer(
    mut file: std::fs::File,
    mut queue: tokio::sync::mpsc::Receiver<Arc<Vec<u8>>>,
) -> tokio::task::JoinHandle<std::io::Result<(u64, String)>> {
    tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = queue.blocking_recv() {
            file.write_all(&chunk)?;
            hasher.update(&chunk[..]);
            bytes += chunk.len() as u64;
        }
        file.sync_all()?;
        Ok((bytes, hex(&hasher.finalize())))
    })
}

/// Feeds pg_restore what it reads back; false when it stopped taking it. A reader that
/// quits early has failed (its exit status says why): its queue closes and the dump goes
/// on into the file alone.
fn spawn_verifier_feeder(
    mut verifier: tokio::process::ChildStdin,
    mut queue: tokio::sync::mpsc::Receiver<Arc<Vec<u8>>>,
) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        while let Some(chunk) = queue.recv().await {
            if verifier.write_all(&chunk).await.is_err() {
                return false;
            }
        }
        true
    })
}

/// Reads pg_dump's output to its end into both queues, then closes them. The second
/// value: whether the reader's queue stayed open all along.
async fn pump(
    mut output: tokio::process::ChildStdout,
    to_file: tokio::sync::mpsc::Sender<Arc<Vec<u8>>>,
    to_verifier: tokio::sync::mpsc::Sender<Arc<Vec<u8>>>,
) -> (Result<()>, bool) {
    let mut verifier_open = true;
    let pumped: Result<()> = async {
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            let n = output
                .read_buf(&mut chunk)
                .await
                .context("reading pg_dump's output")?;
            if n == 0 {
                return Ok(());
            }
            let chunk = Arc::new(chunk);
            if verifier_open && to_verifier.send(chunk.clone()).await.is_err() {
                verifier_open = false;
            }
            if to_file.send(chunk).await.is_err() {
                return Err(Error::failed("the backup file writer stopped"));
            }
        }
    }
    .await;
    (pumped, verifier_open)
}

/// 1 MiB pipe buffers (the kernel's default maximum) instead of 64 KiB; best effort.
fn enlarge_pipe(pipe: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a file descriptor we own; failure only leaves the default size.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Length and SHA-256 (hex) of a file as the file system returns it now (not through a
/// symlink: a backup is a regular file).
pub async fn digest_file(path: &Path) -> Result<(u64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("reading back {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            bytes += n as u64;
        }
        Ok((bytes, hex(&hasher.finalize())))
    })
    .await
    .map_err(|error| Error::failed(format!("reading the backup back: {error}")))?
}

/// Read an archive back completely: every data block is decompressed and turned into
/// SQL, which goes to /dev/null. A truncated or corrupt file fails here.
pub async fn verify(tools: &Tools, path: &Path) -> Result<()> {
    let mut command = libpq_command(tools, "pg_restore", None);
    command.arg("--file=/dev/null").arg(path);
    run_tool(command, &format!("reading back {}", path.display())).await
}

/// The database an archive was dumped from (its table of contents says).
pub async fn archive_database(tools: &Tools, path: &Path) -> Result<String> {
    let text = table_of_contents(tools, path).await?;
    text.lines()
        .find_map(|line| line.trim_start_matches(';').trim().strip_prefix("dbname:"))
        .map(|name| name.trim().to_string())
        .ok_or_else(|| {
            Error::refused(format!(
                "{} names no database in its table of contents",
                path.display()
            ))
        })
}

/// The extensions an archive creates (`EXTENSION` entries of its table of contents).
pub async fn archive_extensions(tools: &Tools, path: &Path) -> Result<Vec<String>> {
    Ok(extensions_in_toc(&table_of_contents(tools, path).await?))
}

/// An archive's table of contents (`pg_restore --list`); refused when it is no
/// readable pg_dump archive.
async fn table_of_contents(tools: &Tools, path: &Path) -> Result<String> {
    let out = libpq_command(tools, "pg_restore", None)
        .arg("--list")
        .arg(path)
        .stdout(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("reading the table of contents of {}", path.display()))?;
    if !out.status.success() {
        return Err(Error::refused(format!(
            "{} is not a readable pg_dump archive: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The entries of an archive's table of contents that a copy of another database must
/// not bring: event triggers (a superuser's), foreign servers and user mappings (their
/// options carry the other side's credentials).
pub async fn archive_foreign_entries(tools: &Tools, path: &Path) -> Result<Vec<String>> {
    Ok(foreign_entries_in_toc(
        &table_of_contents(tools, path).await?,
    ))
}

fn foreign_entries_in_toc(toc: &str) -> Vec<String> {
    toc.lines()
        .filter(|line| !line.starts_with(';'))
        .filter(|line| {
            [" EVENT TRIGGER ", " SERVER ", " USER MAPPING "]
                .iter()
                .any(|kind| line.contains(kind))
        })
        .map(|line| line.trim().to_string())
        .collect()
}

/// `3; 3079 16385 EXTENSION - file_fdw ` → `file_fdw` (comment lines start with `;`).
fn extensions_in_toc(toc: &str) -> Vec<String> {
    toc.lines()
        .filter(|line| !line.starts_with(';'))
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [_, _, _, "EXTENSION", "-", name, ..] => Some(name.to_string()),
                _ => None,
            }
        })
        .collect()
}

/// pg_restore 17 and newer begin every session with `SET transaction_timeout = 0`, a
/// setting servers before 17 do not know, and fail on it. The newest pg_dump (which
/// the backup must use) then needs a detour to restore into those servers.
fn needs_script_detour(tools: &Tools, server_major: u32) -> bool {
    tools.major >= 17 && server_major < 17
}

/// Refuse (nothing changed) when these tools cannot restore into this server: the
/// detour needs the installation's psql.
pub fn check_restore_tools(tools: &Tools, server_major: u32) -> Result<()> {
    if needs_script_detour(tools, server_major) && !pgsandbox::bin::executable(&tools.bin("psql")) {
        return Err(Error::refused(format!(
            "pg_restore {} restores into a PostgreSQL {server_major} server only through psql, and {} \
             has no psql; install the client tools of that version; nothing was changed",
            tools.major,
            tools.bindir.display()
        )));
    }
    Ok(())
}

/// Settings a database owner can give its database (`ALTER DATABASE … SET`) that would
/// make a backup or a restore fail or stop, overridden for their sessions from the startup
/// packet (a startup option beats a per-database or per-role setting). The settings
/// themselves are put back only after the data; this also covers a rerun that finds
/// them in place.
pub fn restore_session_options(server_major: u32) -> Vec<&'static str> {
    let mut switches = vec![
        "-c default_transaction_read_only=off",
        "-c default_transaction_deferrable=off",
        "-c default_transaction_isolation=read\\ committed",
        "-c statement_timeout=0",
        "-c lock_timeout=0",
        "-c idle_in_transaction_session_timeout=0",
        "-c search_path=pg_catalog",
        "-c DateStyle=ISO",
        "-c IntervalStyle=postgres",
    ];
    if server_major >= 14 {
        switches.push("-c idle_session_timeout=0");
    }
    if server_major >= 17 {
        switches.push("-c transaction_timeout=0");
    }
    switches
}

/// What `pg_stat_activity` shows for odoo-db's pg_dump sessions: a DBA (and health's
/// xmin horizon check) sees which of odoo-db's sessions is the dump.
pub const PG_DUMP_APPLICATION_NAME: &str = "odoo-db pg_dump";

/// Whether this server's parallel workers may refuse the restore. A regression of some
/// minor releases (seen on 12.22, fixed in 13.19, 14.16, 15.11, 16.7 and 17.3; 12 had no
/// release after 12.22) makes a parallel worker check CONNECT as the role the session
/// acts as, not as the one that logged in. The restore acts as the owner, who has no
/// CONNECT while the database is closed to all but odoo-db, so a parallel scan or index
/// build fails: "permission denied for database … CONTEXT: parallel worker". On every
/// release older than the fix, the restore runs without parallel workers (slower index
/// builds, the same result).
fn parallel_workers_check_connect_as_the_current_role(server_version_num: u32) -> bool {
    match server_version_num / 10000 {
        ..=12 => true,
        13 => server_version_num < 130019,
        14 => server_version_num < 140016,
        15 => server_version_num < 150011,
        16 => server_version_num < 160007,
        17 => server_version_num < 170003,
        _ => false,
    }
}

/// How a restore goes in: a backup of the database itself (one transaction, with its
/// ACL), or a copy of another database (production's, for a refresh: in parallel,
/// without its ACL, publications or subscriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// `--single-transaction`: a failure leaves the database empty.
    OneTransaction,
    /// `--jobs N --no-acl --no-publications --no-subscriptions`: not one transaction,
    /// so the caller records its completion.
    CopyInParallel(u32),
}

/// Restore an archive into the (new, empty) database that `login` points at, logged in
/// as `login`'s role (a throwaway member of `owner`, see [`crate::pg::steprole`]: the
/// customer's code that the restore runs, in CHECK constraints, generated columns,
/// index expressions or triggers, gets nothing more than the customer has) and acting
/// as `owner` (`--role`), so every object is created by and belongs to the customer's
/// role, whatever role made the dump. The session overrides the settings that would
/// stop it ([`restore_session_options`]).
pub async fn restore(
    tools: &Tools,
    login: &ConnParams,
    path: &Path,
    owner: &str,
    server_version_num: u32,
    mode: RestoreMode,
) -> Result<()> {
    let server_major = server_version_num / 10000;
    let mut options = restore_session_options(server_major);
    if parallel_workers_check_connect_as_the_current_role(server_version_num) {
        options.extend([
            "-c max_parallel_workers_per_gather=0",
            "-c max_parallel_maintenance_workers=0",
        ]);
    }
    let login = crate::pg::steprole::with_startup_options(login, &options);
    if needs_script_detour(tools, server_major) {
        return restore_through_psql(tools, &login, path, owner, mode).await;
    }
    let items = table_of_contents(tools, path)
        .await
        .map(|toc| {
            toc.lines()
                .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                .count()
        })
        .unwrap_or(0);
    let mut command = libpq_command(tools, "pg_restore", Some(&login));
    command
        .args(restore_command_args(owner, mode))
        .arg("--verbose")
        .arg("--no-password")
        .arg("--dbname")
        .arg(login.libpq_conninfo())
        .arg(path);
    let progress = Progress::start("restore", items as u64, Unit::Items);
    let restored = run_counting_items(
        command,
        &format!("pg_restore of {}", path.display()),
        progress.counter(),
    )
    .await;
    progress.finish();
    restored
}

/// Run pg_restore `--verbose`, counting the items it reports done into `done`; its
/// other lines (errors, warnings) make the error message.
async fn run_counting_items(
    mut command: tokio::process::Command,
    what: &str,
    done: Arc<std::sync::atomic::AtomicU64>,
) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stderr = child.stderr.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut kept = String::new();
    while let Some(line) = lines
        .next_line()
        .await
        .context("reading pg_restore's messages")?
    {
        if is_item_done(&line) {
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else if !is_verbose_chatter(&line) {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let status = child
        .wait()
        .await
        .with_context(|| format!("waiting for {what}"))?;
    if status.success() {
        return Ok(());
    }
    Err(Error::failed(format!(
        "{what} failed ({status}): {}",
        kept.trim()
    )))
}

/// A `--verbose` line that says an item of the table of contents is done.
fn is_item_done(line: &str) -> bool {
    [
        "pg_restore: creating ",
        "pg_restore: processing data for table ",
        "pg_restore: finished item ",
    ]
    .iter()
    .any(|prefix| line.starts_with(prefix))
}

/// The rest of `--verbose`'s own lines (connecting, launching, …): not errors; anything
/// else (errors, the TOC entry an error is about, warnings) is kept for the message.
fn is_verbose_chatter(line: &str) -> bool {
    const CHATTER: &[&str] = &[
        "connecting",
        "launching",
        "executing",
        "entering",
        "processing item",
        "processing missed item",
        "setting owner",
        "implied data-only",
        "skipping",
        "reducing dependencies",
        "transferring dependency",
        "finished main parallel loop",
        "waiting for",
        "disabling triggers",
        "enabling triggers",
    ];
    line.strip_prefix("pg_restore: ")
        .is_some_and(|rest| CHATTER.iter().any(|prefix| rest.starts_with(prefix)))
}

/// pg_restore's switches for a restore as `owner`.
fn restore_command_args(owner: &str, mode: RestoreMode) -> Vec<String> {
    let mut args = vec![
        "--no-owner".to_string(),
        format!("--role={owner}"),
        "--exit-on-error".to_string(),
    ];
    match mode {
        RestoreMode::OneTransaction => args.push("--single-transaction".to_string()),
        RestoreMode::CopyInParallel(jobs) => args.extend([
            format!("--jobs={jobs}"),
            "--no-acl".to_string(),
            "--no-publications".to_string(),
            "--no-subscriptions".to_string(),
        ]),
    }
    args
}

/// Dump database `params` points at (production's, for a refresh) into the directory
/// `dir` (which must not exist: pg_dump creates it 0700, its files 0600) with `jobs`
/// parallel workers on one synchronized snapshot (also on a standby), leaving out
/// publications and subscriptions. Returns the bytes written.
pub async fn dump_directory(
    tools: &Tools,
    params: &ConnParams,
    dir: &Path,
    jobs: u32,
    server_major: u32,
    expected_bytes: u64,
) -> Result<u64> {
    let params = &params
        .with_startup_options(&restore_session_options(server_major))
        .with_application_name(PG_DUMP_APPLICATION_NAME);
    let mut pg_dump = libpq_command(tools, "pg_dump", Some(params));
    pg_dump
        .arg("--format=directory")
        .arg(format!("--jobs={jobs}"))
        .arg("--compress=1")
        .arg(format!("--lock-wait-timeout={LOCK_WAIT_TIMEOUT}"))
        .arg("--no-publications")
        .arg("--no-subscriptions")
        .arg("--no-password")
        .arg("--file")
        .arg(dir)
        .arg("--dbname")
        .arg(params.libpq_conninfo());
    // pg_dump creates the directory 0700 but its files with the umask's mode: 0600.
    // SAFETY: umask is async-signal-safe and touches no memory of the parent.
    unsafe {
        pg_dump.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let mut progress = Progress::start("dump of production", expected_bytes, Unit::Bytes);
    progress.watch_size(dir.to_path_buf());
    let dumped = run_tool(pg_dump, &format!("pg_dump into {}", dir.display())).await;
    progress.finish();
    dumped?;
    Ok(directory_bytes(dir))
}

/// The bytes of the files directly in `dir` (a directory-format dump).
pub fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}

/// pg_restore writes the script, odoo-db drops the one preamble line the older server
/// rejects (never a line of COPY data), psql of the same installation runs the rest in
/// one transaction and stops at the first error.
async fn restore_through_psql(
    tools: &Tools,
    login: &ConnParams,
    path: &Path,
    owner: &str,
    mode: RestoreMode,
) -> Result<()> {
    let mut script = libpq_command(tools, "pg_restore", None);
    script
        .arg("--file=-")
        .arg("--no-owner")
        .arg(format!("--role={owner}"));
    if mode != RestoreMode::OneTransaction {
        script.args(["--no-acl", "--no-publications", "--no-subscriptions"]);
    }
    script.arg(path).stdout(Stdio::piped());
    let mut psql = libpq_command(tools, "psql", Some(login));
    psql.args([
        "--no-psqlrc",
        "--quiet",
        "--set",
        "ON_ERROR_STOP=1",
        "--single-transaction",
        "--no-password",
        "--dbname",
    ])
    .arg(login.libpq_conninfo())
    .stdin(Stdio::piped());
    let mut writer = script.spawn().context("starting pg_restore")?;
    let mut runner = psql.spawn().context("starting psql")?;
    let writer_errors = collect_stderr(&mut writer);
    let runner_errors = collect_stderr(&mut runner);
    let output = writer.stdout.take().expect("piped");
    let input = runner.stdin.take().expect("piped");
    let pumped = filter_script(output, input).await;
    let writer_status = writer.wait().await.context("waiting for pg_restore")?;
    let runner_status = runner.wait().await.context("waiting for psql")?;
    let writer_errors = writer_errors.await.unwrap_or_default();
    let runner_errors = runner_errors.await.unwrap_or_default();
    if !writer_status.success() {
        return Err(Error::failed(format!(
            "pg_restore of {} failed ({writer_status}): {}",
            path.display(),
            writer_errors.trim()
        )));
    }
    if !runner_status.success() || pumped.is_err() {
        return Err(Error::failed(format!(
            "restoring {} through psql failed ({runner_status}): {}",
            path.display(),
            runner_errors.trim()
        )));
    }
    Ok(())
}

/// Copy the script, without `SET transaction_timeout = 0;` lines outside COPY data.
async fn filter_script(
    from: tokio::process::ChildStdout,
    to: tokio::process::ChildStdin,
) -> std::io::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::with_capacity(1 << 20, from);
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, to);
    let mut line = Vec::new();
    let mut in_copy_data = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if in_copy_data {
            in_copy_data = line != b"\\.\n";
        } else if line == b"SET transaction_timeout = 0;\n" {
            continue;
        } else if line.starts_with(b"COPY ") && line.ends_with(b" FROM stdin;\n") {
            in_copy_data = true;
        }
        writer.write_all(&line).await?;
    }
    writer.flush().await?;
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_do_not_match_other_databases() {
        let at = DateTime::parse_from_rfc3339("2024-06-11T10:15:30.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = file_name("a_integration", at);
        assert_eq!(name, "a_integration-20240611T101530.123Z.dump");
        assert_eq!(timestamp_of("a_integration", &name), Some(at));
        assert_eq!(timestamp_of("b_a_integration", &name), None);
        assert_eq!(timestamp_of("a", &name), None);
        assert_eq!(
            timestamp_of("a_integration", &format!("{name}.partial")),
            None
        );
    }

    #[test]
    fn retention_keeps_the_newest_and_what_unfinished_runs_need() {
        let files: Vec<PathBuf> = (1..=5)
            .map(|i| PathBuf::from(format!("/b/x-{i}.dump")))
            .collect();
        assert_eq!(to_prune(&files, 3, &[]), files[..2].to_vec());
        assert_eq!(
            to_prune(&files, 3, &[files[0].clone()]),
            vec![files[1].clone()]
        );
        assert!(to_prune(&files, 5, &[]).is_empty());
        assert!(to_prune(&files[..1], 1, &[]).is_empty());
    }

    #[test]
    fn parallel_workers_are_off_for_a_restore_on_releases_older_than_the_fix() {
        for affected in [120022, 130018, 140015, 150010, 160006, 170002, 170000] {
            assert!(
                parallel_workers_check_connect_as_the_current_role(affected),
                "{affected}"
            );
        }
        for fixed in [
            130019, 140016, 150011, 150020, 160007, 170003, 180000, 180004,
        ] {
            assert!(
                !parallel_workers_check_connect_as_the_current_role(fixed),
                "{fixed}"
            );
        }
    }

    #[test]
    fn the_restore_session_overrides_only_what_the_server_knows() {
        let twelve = restore_session_options(12);
        assert!(twelve.contains(&"-c default_transaction_read_only=off"));
        assert!(twelve.contains(&"-c statement_timeout=0"));
        assert!(!twelve.iter().any(|s| s.contains("idle_session_timeout")));
        assert!(!twelve.iter().any(|s| s.contains("transaction_timeout=")));
        let eighteen = restore_session_options(18);
        assert!(eighteen.contains(&"-c idle_session_timeout=0"));
        assert!(eighteen.contains(&"-c transaction_timeout=0"));
    }

    #[test]
    fn finds_what_a_copy_must_not_bring() {
        let toc = "; Archive created at 2026-11-29\n\
                   3; 3079 16385 EXTENSION - plpgsql\n\
                   4; 1417 16390 SERVER - prod_fdw alice\n\
                   5; 1418 16391 USER MAPPING - USER MAPPING alice SERVER prod_fdw alice\n\
                   6; 3466 16392 EVENT TRIGGER - watcher postgres\n\
                   215; 1259 16400 TABLE public t x_integration\n";
        assert_eq!(super::foreign_entries_in_toc(toc).len(), 3);
    }

    #[test]
    fn finds_the_extensions_of_a_table_of_contents() {
        let toc = ";\n; Archive created at 2024-06-11\n;     dbname: x_integration\n\
                   2; 3079 16385 EXTENSION - file_fdw \n\
                   3340; 0 0 COMMENT - EXTENSION file_fdw \n\
                   3; 3079 16390 EXTENSION - pgcrypto \n\
                   215; 1259 16400 TABLE public t x_integration\n";
        assert_eq!(extensions_in_toc(toc), vec!["file_fdw", "pgcrypto"]);
    }
}
