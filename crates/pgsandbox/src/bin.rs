//! Finding the PostgreSQL installations of this machine: one finder for the server
//! binaries the sandbox runs and the client tools (pg_dump, pg_restore) a backup runs.
//!
//! The places searched, most explicit first: `$PG_BINDIR`, `pg_config --bindir`,
//! `/usr/lib/postgresql/<version>/bin` (Debian, Ubuntu), `/usr/pgsql-<version>/bin`
//! (RHEL, PGDG), then `$PATH`. A directory counts by the binaries really in it:
//! Debian's `pg_config` from libpq-dev may name a directory without the server, and
//! Debian's `/usr/bin/pg_dump` is a perl wrapper choosing a version by itself, so a
//! binary reached through a symlink counts in its real directory and a wrapper not at
//! all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Context, Error, Result};

/// How to get the server binaries, for every message saying they are missing.
const INSTALL_HINT: &str = "install the PostgreSQL server packages \
     (Debian/Ubuntu: `apt-get install postgresql`) or set PG_BINDIR to the directory \
     holding initdb, pg_ctl and postgres";

/// Where Debian and Ubuntu install each major version (`<root>/<version>/bin`).
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// `$PG_BINDIR`, when set and not empty.
fn env_bindir() -> Option<PathBuf> {
    std::env::var_os("PG_BINDIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// `pg_config --bindir`, when a pg_config is on the PATH and answers.
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `(entry name, <root>/<entry>/bin)` for every entry of `root` (none when `root` is
/// missing).
fn bin_dirs_under(root: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path().join("bin"),
            )
        })
        .collect()
}

/// Every directory that may hold PostgreSQL binaries, most explicit first (see the
/// module docs), each once (compared by their canonical paths).
pub fn candidate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env_bindir().into_iter().chain(pg_config_bindir()).collect();
    dirs.extend(
        bin_dirs_under(Path::new(DEBIAN_ROOT))
            .into_iter()
            .map(|(_, bin)| bin),
    );
    // RHEL/PGDG layout: /usr/pgsql-16/bin
    dirs.extend(
        bin_dirs_under(Path::new("/usr"))
            .into_iter()
            .filter(|(name, _)| name.starts_with("pgsql-"))
            .map(|(_, bin)| bin),
    );
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut seen = Vec::new();
    dirs.retain(|dir| {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    dirs
}

/// One installation holding a given tool: its real directory and the tool's version.
#[derive(Debug, Clone)]
pub struct Installation {
    pub bindir: PathBuf,
    pub major: u32,
    /// `<tool> --version` as printed, e.g. "pg_dump (PostgreSQL) 15.14 (Debian …)".
    pub version: String,
}

/// Every installation among [`candidate_dirs`] whose `tool` is a real executable
/// (symlinks resolved, wrappers of another name skipped) with each of `companions`
/// beside it, and whose `tool --version` names a PostgreSQL version; in the order
/// found, each binary once.
pub fn installations_with(tool: &str, companions: &[&str]) -> Vec<Installation> {
    installations_among(candidate_dirs(), tool, companions)
}

/// [`installations_with`] among the directories `dirs`, in their order.
fn installations_among(dirs: Vec<PathBuf>, tool: &str, companions: &[&str]) -> Vec<Installation> {
    let mut found = Vec::new();
    let mut binaries = Vec::new();
    for dir in dirs {
        let Ok(binary) = std::fs::canonicalize(dir.join(tool)) else {
            continue;
        };
        let Some(dir) = binary.parent().map(Path::to_path_buf) else {
            continue;
        };
        if binary.file_name() != Some(std::ffi::OsStr::new(tool))
            || binaries.contains(&binary)
            || !executable(&binary)
            || !companions.iter().all(|other| executable(&dir.join(other)))
        {
            continue;
        }
        binaries.push(binary);
        let Ok(out) = Command::new(dir.join(tool))
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
        else {
            continue;
        };
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if let Some(major) = parse_major(&version) {
            found.push(Installation {
                bindir: dir,
                major,
                version,
            });
        }
    }
    found
}

/// The directory holding the PostgreSQL server binaries: `$PG_BINDIR`, else
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/<major>/bin` (by
/// numeric major version). A directory counts only if it holds `initdb`, `pg_ctl`
/// and `postgres`. None found: a refused error naming the package to install.
pub fn find_bindir() -> Result<PathBuf> {
    if let Some(dir) = env_bindir() {
        if has_server_tools(&dir) {
            return Ok(dir);
        }
        return Err(Error::refused(format!(
            "PG_BINDIR={} does not hold initdb, pg_ctl and postgres: {INSTALL_HINT}",
            dir.display()
        )));
    }
    if let Some(dir) = pg_config_bindir().filter(|dir| has_server_tools(dir)) {
        return Ok(dir);
    }
    if let Some(dir) = newest_debian_bindir(Path::new(DEBIAN_ROOT)) {
        return Ok(dir);
    }
    Err(Error::refused(format!(
        "PostgreSQL server binaries not found (PG_BINDIR is unset, `pg_config --bindir` \
         names none, {DEBIAN_ROOT}/*/bin holds none): {INSTALL_HINT}"
    )))
}

/// The directory holding the PostgreSQL client tools (psql, pg_basebackup, pg_dump,
/// pg_restore): `$PG_CLIENT_BINDIR`, else the server's [`find_bindir`].
pub fn find_client_bindir() -> Result<PathBuf> {
    client_bindir_for(&find_bindir()?)
}

/// `$PG_CLIENT_BINDIR` (it must hold psql), else `server_bindir`.
pub(crate) fn client_bindir_for(server_bindir: &Path) -> Result<PathBuf> {
    match std::env::var_os("PG_CLIENT_BINDIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.join("psql").is_file() {
                Ok(dir)
            } else {
                Err(Error::refused(format!(
                    "PG_CLIENT_BINDIR={} does not hold psql: set it to the directory of the \
                     PostgreSQL client tools (psql, pg_basebackup, pg_dump), or unset it to \
                     take them from the server's directory",
                    dir.display()
                )))
            }
        }
        None => Ok(server_bindir.to_path_buf()),
    }
}

/// The newest `<root>/<version>/bin` with the server tools, comparing versions
/// numerically (`9.6` < `10` < `18`).
fn newest_debian_bindir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for (name, bin) in bin_dirs_under(root) {
        let Some(version) = name
            .split('.')
            .map(|part| part.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
        else {
            continue;
        };
        if !has_server_tools(&bin) {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

fn has_server_tools(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|tool| executable(&dir.join(tool)))
}

/// A regular file with an execute bit.
pub fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The major version of the server binaries in `bindir` (`postgres --version`).
pub fn pg_major(bindir: &Path) -> Result<u32> {
    let postgres = bindir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} --version", postgres.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_major(&text).ok_or_else(|| {
        Error::failed(format!(
            "{} --version printed {:?}: no PostgreSQL version in it",
            postgres.display(),
            text.trim()
        ))
    })
}

/// The major version in what a PostgreSQL binary prints for `--version`: 15 for
/// "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)", 18 for "pg_dump
/// (PostgreSQL) 18beta1".
pub fn parse_major(version_output: &str) -> Option<u32> {
    let after = version_output.split(')').nth(1)?.trim_start();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn make_executable(path: &Path, contents: &str) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn major_from_version_lines() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1\n"), Some(18));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24\n"), Some(9));
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn newest_bindir_compares_numerically() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "10", "18", "notaversion"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in ["initdb", "pg_ctl", "postgres"] {
                make_executable(&bin.join(tool), "");
            }
        }
        // 19 has no server tools: ignored.
        std::fs::create_dir_all(root.path().join("19/bin")).unwrap();
        assert_eq!(
            newest_debian_bindir(root.path()),
            Some(root.path().join("18/bin"))
        );
    }

    #[test]
    fn wrappers_are_skipped_and_symlinks_count_in_their_real_directory() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("lib/postgresql/16/bin");
        let wrapped = root.path().join("bin");
        let linked = root.path().join("linked");
        for dir in [&real, &wrapped, &linked] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let dump = "#!/bin/sh\necho 'pg_dump (PostgreSQL) 16.4'\n";
        make_executable(&real.join("pg_dump"), dump);
        make_executable(&real.join("pg_restore"), "");
        // Debian's /usr/bin/pg_dump: a link to a wrapper of another name.
        make_executable(&root.path().join("pg_wrapper"), dump);
        std::os::unix::fs::symlink(root.path().join("pg_wrapper"), wrapped.join("pg_dump"))
            .unwrap();
        make_executable(&wrapped.join("pg_restore"), "");
        // A link to the real binary counts once, in the real directory.
        std::os::unix::fs::symlink(real.join("pg_dump"), linked.join("pg_dump")).unwrap();
        let found = installations_among(
            vec![wrapped.clone(), linked, real.clone()],
            "pg_dump",
            &["pg_restore"],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].bindir, std::fs::canonicalize(&real).unwrap());
        assert_eq!(found[0].major, 16);
        assert_eq!(found[0].version, "pg_dump (PostgreSQL) 16.4");
    }

    #[test]
    fn the_machines_postgresql_is_found_by_both_rules() {
        // The server finder and the client-tool finder agree on the installation that
        // holds everything (this machine's PostgreSQL, which the tests need anyway).
        let server = find_bindir().expect("PostgreSQL is installed for the tests");
        let major = pg_major(&server).unwrap();
        let dumps = installations_with("pg_dump", &["pg_restore"]);
        assert!(
            dumps.iter().any(|found| found.major >= major),
            "a pg_dump of PostgreSQL {major} or newer among {dumps:?}"
        );
    }
}
