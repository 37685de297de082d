//! Running the PostgreSQL binaries of a harness as the right OS user: the server
//! tools as `postgres` when we are root (PostgreSQL refuses to run as root), the
//! client tools as ourselves, never with our `PG*` environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::bin::{client_bindir_for, find_bindir, pg_major};
use crate::error::{Context, Error, Result};

/// The tools that connect to a server rather than run one. They come from
/// [`crate::bin::find_client_bindir`]'s directory, which may differ from the server's: an older
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
