//! Finding the PostgreSQL server binaries and running them as the right OS user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Context, Error, Result};

const INSTALL_HINT: &str = "install the PostgreSQL server packages \
     (Debian/Ubuntu: `apt-get install postgresql`) or set PG_BINDIR to the directory \
     holding initdb, pg_ctl and postgres";

/// The directory holding the PostgreSQL server binaries: `$PG_BINDIR`, else
/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/<major>/bin` (by
/// numeric major version). A directory counts only if it holds `initdb`, `pg_ctl`
/// and `postgres` (Debian's `pg_config` from libpq-dev may name a directory without
/// the server). None found: a refused error naming the package to install.
pub fn find_bindir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if has_server_tools(&dir) {
            return Ok(dir);
        }
        return Err(Error::refused(format!(
            "PG_BINDIR={} does not hold initdb, pg_ctl and postgres: {INSTALL_HINT}",
            dir.display()
        )));
    }
    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server_tools(&dir) {
                return Ok(dir);
            }
        }
    }
    if let Some(dir) = newest_debian_bindir(Path::new("/usr/lib/postgresql")) {
        return Ok(dir);
    }
    Err(Error::refused(format!(
        "PostgreSQL server binaries not found (PG_BINDIR is unset, `pg_config --bindir` \
         names none, /usr/lib/postgresql/*/bin holds none): {INSTALL_HINT}"
    )))
}

/// The tools that connect to a server rather than run one. They come from
/// [`find_client_bindir`]'s directory, which may differ from the server's: an older
/// server is run with the newest client tools (`pg_dump` and `pg_basebackup` must be at
/// least the server's version), and a server-only installation has none of them.
const CLIENT_TOOLS: &[&str] = &[
    "psql",
    "pg_basebackup",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "pg_isready",
    "pg_receivewal",
];

/// The directory holding the PostgreSQL client tools (psql, pg_basebackup, pg_dump,
/// pg_restore): `$PG_CLIENT_BINDIR`, else the server's [`find_bindir`].
pub fn find_client_bindir() -> Result<PathBuf> {
    client_bindir_for(&find_bindir()?)
}

/// `$PG_CLIENT_BINDIR` (it must hold psql), else `server_bindir`.
fn client_bindir_for(server_bindir: &Path) -> Result<PathBuf> {
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
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .split('.')
            .map(|part| part.parse::<u32>().ok())
            .collect::<Option<Vec<u32>>>()
        else {
            continue;
        };
        let bin = entry.path().join("bin");
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
    use std::os::unix::fs::PermissionsExt;
    ["initdb", "pg_ctl", "postgres"].iter().all(|tool| {
        std::fs::metadata(dir.join(tool))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// The major version of the server binaries in `bindir` (`postgres --version`):
/// 15 for "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)", 18 for "18beta1".
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

fn parse_major(version_output: &str) -> Option<u32> {
    let after = version_output.split(')').nth(1)?.trim_start();
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The OS user the server tools run as: the `postgres` user when we are root
/// (PostgreSQL refuses to run as root), else ourselves (`None`).
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub(crate) fn server_user() -> Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| Error::failed(format!("looking up the `postgres` OS user: {e}")))?
        .ok_or_else(|| {
            Error::refused(
                "running as root, but there is no `postgres` OS user to run the server as \
                 (PostgreSQL refuses to run as root): install the server packages \
                 (Debian/Ubuntu: `apt-get install postgresql`, which creates it) or run as \
                 an ordinary user",
            )
        })?;
    Ok(Some(RunAs {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: user.dir,
    }))
}

/// Hands `path` to the server's OS user (a no-op when not root).
pub(crate) fn chown_to(run_as: Option<&RunAs>, path: &Path) -> Result<()> {
    if let Some(user) = run_as {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(user.uid)),
            Some(nix::unistd::Gid::from_raw(user.gid)),
        )
        .map_err(|e| {
            Error::failed(format!(
                "handing {} to the postgres OS user: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// The server binaries of one harness, and who runs them.
#[derive(Debug)]
pub(crate) struct Tools {
    /// The server binaries (initdb, pg_ctl, postgres).
    pub bindir: PathBuf,
    /// The client tools ([`CLIENT_TOOLS`]): `$PG_CLIENT_BINDIR`, else `bindir`.
    pub client_bindir: PathBuf,
    pub major: u32,
    pub run_as: Option<RunAs>,
}

impl Tools {
    pub fn discover() -> Result<Tools> {
        let bindir = find_bindir()?;
        Tools::at(bindir)
    }

    pub fn at(bindir: PathBuf) -> Result<Tools> {
        let major = pg_major(&bindir)?;
        let run_as = server_user()?;
        let client_bindir = client_bindir_for(&bindir)?;
        Ok(Tools {
            bindir,
            client_bindir,
            major,
            run_as,
        })
    }

    /// The path of `tool`: a client tool from `client_bindir`, any other from `bindir`.
    pub fn bin(&self, tool: &str) -> PathBuf {
        if CLIENT_TOOLS.contains(&tool) {
            self.client_bindir.join(tool)
        } else {
            self.bindir.join(tool)
        }
    }

    /// A server tool (initdb, pg_ctl, pg_basebackup) run as the server's OS user.
    pub fn server_command(&self, tool: &str, cwd: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = self.client_command(tool, cwd);
        if let Some(user) = &self.run_as {
            command
                .uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", "postgres")
                .env("LOGNAME", "postgres");
        }
        command
    }

    /// A client tool (psql) run as ourselves, with no `PG*` variable of ours leaking in.
    pub fn client_command(&self, tool: &str, cwd: &Path) -> Command {
        let mut command = Command::new(self.bin(tool));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                command.env_remove(key);
            }
        }
        command
            .env("LC_ALL", "C")
            .current_dir(cwd)
            .stdin(Stdio::null());
        command
    }
}

fn check_output(program: &str, what: &str, out: Output) -> Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    Err(Error::failed(format!(
        "{what}: {program} {}: {text}",
        out.status
    )))
}

fn program_name(command: &Command) -> String {
    Path::new(command.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs a command to completion; a non-zero exit is an error carrying its output.
pub(crate) fn run(mut command: Command, what: &str) -> Result<String> {
    let program = program_name(&command);
    let out = command
        .output()
        .with_context(|| format!("{what}: running {program}"))?;
    check_output(&program, what, out)
}

/// [`run`] without blocking the async runtime (so two initdb can run at once).
pub(crate) async fn run_async(command: Command, what: &str) -> Result<String> {
    let program = program_name(&command);
    let out = tokio::process::Command::from(command)
        .output()
        .await
        .with_context(|| format!("{what}: running {program}"))?;
    check_output(&program, what, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_from_version_lines() {
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)\n"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1\n"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24\n"), Some(9));
        assert_eq!(parse_major("garbage"), None);
    }

    #[test]
    fn newest_bindir_compares_numerically() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "10", "18", "notaversion"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for tool in ["initdb", "pg_ctl", "postgres"] {
                std::fs::write(bin.join(tool), "").unwrap();
                std::fs::set_permissions(bin.join(tool), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
        }
        // 19 has no server tools: ignored.
        std::fs::create_dir_all(root.path().join("19/bin")).unwrap();
        assert_eq!(
            newest_debian_bindir(root.path()),
            Some(root.path().join("18/bin"))
        );
    }
}
