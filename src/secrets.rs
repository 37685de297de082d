//! Passwords: generation, SCRAM verifiers, and the secrets files that hold them.
//!
//! Why this module exists: today a DBA runs `pwgen -s 20` and types
//! `CREATE ROLE … PASSWORD 'plaintext'`, which lands in the server log. odoo-db instead
//! draws passwords from the OS CSPRNG ([`generate_password`]), sends the server only a
//! SCRAM-SHA-256 verifier computed here ([`scram_verifier`]), and hands the plaintext
//! to the platform only through `DIR/<env>.env` files in its env-file format
//! ([`write_new`]): created 0600 with `O_EXCL` (never overwriting one) and fsynced
//! *before* the role exists, so no role ever has a password that nobody holds. A
//! resumed provision reads them back ([`read_existing`]).
//!
//! [`Secret`] keeps plaintext out of logs and output: its `Debug` and `Display` show
//! `Secret(***)`, and it has no serde impls.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rand::Rng;

use crate::error::{Error, Result};
use safefs::WriteNewError;

/// Length of generated passwords, as `pwgen -s 20`.
pub const PASSWORD_LEN: usize = 20;

/// The env-file key of the database role's password.
pub const DB_PASSWORD_KEY: &str = "DB_PASSWORD";
/// The env-file key of Odoo's master password.
pub const ADMIN_PASSWD_KEY: &str = "ADMIN_PASSWD";

/// Secrets files larger than this are not secrets files.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A plaintext password that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The plaintext, for the few places that must have it (verifier, secrets file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// 20 characters drawn uniformly from `[A-Za-z0-9]` with the OS CSPRNG, like
/// `pwgen -s 20` (about 119 bits).
pub fn generate_password() -> Secret {
    Secret(
        OsRng
            .sample_iter(&Alphanumeric)
            .take(PASSWORD_LEN)
            .map(char::from)
            .collect(),
    )
}

/// The SCRAM-SHA-256 verifier of `password` (random salt, 4096 iterations), computed
/// client-side: `CREATE ROLE … PASSWORD '<verifier>'` stores it as is, so the
/// plaintext never reaches the server or its logs.
pub fn scram_verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// The passwords of one environment, as its secrets file holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecrets {
    /// `DB_PASSWORD`: the password of the role DB_USER.
    pub db_password: Secret,
    /// `ADMIN_PASSWD`: Odoo's master password.
    pub admin_passwd: Secret,
}

#[cfg(test)]
impl EnvSecrets {
    /// Two fresh passwords (the unit tests' secrets).
    pub fn generate() -> Self {
        EnvSecrets {
            db_password: generate_password(),
            admin_passwd: generate_password(),
        }
    }
}

/// The secrets file of `env` in `dir`: `DIR/<env>.env`.
pub fn env_file(dir: &Path, env: &str) -> Result<PathBuf> {
    let well_formed = env.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && env
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    if !well_formed {
        return Err(Error::refused(format!(
            "environment {env:?} refused: an environment name must match ^[a-z][a-z0-9_-]*$ \
             (it names the secrets file <env>.env)"
        )));
    }
    Ok(dir.join(format!("{env}.env")))
}

/// How messages name the directory.
const WHAT: &str = "secrets directory";

/// Refuse (nothing changed) a `--secrets-dir` that odoo-db must not write into: an
/// existing one must pass [`safefs::check_private_dir`] (a directory of this user or
/// root that nobody else can write, reached through directories nobody else can
/// tamper with); a missing one will be created by [`ensure_dir`], so the directories
/// above it must pass the same rules (a sticky one such as `/tmp` is fine). Creates
/// nothing: callers check every input first, then call [`ensure_dir`].
pub fn check_dir_for_writing(dir: &Path) -> Result<()> {
    let absolute = std::path::absolute(dir)
        .map_err(|e| Error::failed(format!("{WHAT} {}: {e}", dir.display())))?;
    match std::fs::symlink_metadata(&absolute) {
        Ok(_) => return Ok(safefs::check_private_dir(&absolute, WHAT)?),
        // ENOTDIR: a file on the way, refused below by name.
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {}
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot inspect {WHAT} {}: {e}",
                absolute.display()
            )))
        }
    }
    // Missing: every existing directory above it must be safe to create it in.
    let me = nix::unistd::geteuid().as_raw();
    let mut ancestor = absolute.parent();
    while let Some(parent) = ancestor {
        match std::fs::metadata(parent) {
            Ok(metadata) => {
                let shown = parent.display();
                if !metadata.is_dir() {
                    return Err(Error::refused(format!(
                        "{WHAT} {} cannot be created: {shown} is not a directory; pass another \
                         --secrets-dir",
                        absolute.display()
                    )));
                }
                let owner = metadata.uid();
                let mode = metadata.mode() & 0o7777;
                if owner != me && owner != 0 {
                    return Err(Error::refused(format!(
                        "{shown}, a directory above the {WHAT} {}, belongs to uid {owner}, not \
                         to this user (uid {me}) or root, who could replace what odoo-db writes \
                         there; use a directory of your own (mkdir -m 700)",
                        absolute.display()
                    )));
                }
                if mode & 0o022 != 0 && mode & 0o1000 == 0 {
                    return Err(Error::refused(format!(
                        "{shown}, a directory above the {WHAT} {}, is writable by group or \
                         others (mode {mode:04o}), who could plant or replace files there; run \
                         chmod go-w {shown} or use a private directory",
                        absolute.display()
                    )));
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::failed(format!(
                    "cannot inspect {}: {e}",
                    parent.display()
                )))
            }
        }
        ancestor = parent.parent();
    }
    Ok(())
}

/// Create `dir` (and missing parents) 0700 whatever the umask, or check an existing
/// one; see [`safefs::ensure_private_dir`]. Call after [`check_dir_for_writing`] and
/// every other check of the command: this is a change on disk. Returns the
/// directories created now, innermost first, so that a command refused later (a race
/// lost) can [`remove_created`] them and leave the disk as it found it.
pub fn ensure_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let absolute = std::path::absolute(dir)
        .map_err(|e| Error::failed(format!("{WHAT} {}: {e}", dir.display())))?;
    let mut missing = Vec::new();
    let mut probe = Some(absolute.as_path());
    while let Some(path) = probe {
        if std::fs::symlink_metadata(path).is_ok() {
            break;
        }
        missing.push(path.to_path_buf());
        probe = path.parent();
    }
    safefs::ensure_private_dir(&absolute, WHAT)?;
    if !missing.is_empty() {
        tracing::info!("created {WHAT} {} (mode 0700)", absolute.display());
    }
    Ok(missing)
}

/// Remove what [`ensure_dir`] created, innermost first, as long as each is still
/// empty (never a file in it).
pub fn remove_created(created: &[PathBuf]) {
    for dir in created {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

fn is_password_text(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Create `DIR/<env>.env` holding `secrets` in the platform's env-file format
/// (`export DB_PASSWORD=…` / `export ADMIN_PASSWD=…`): `O_CREAT|O_EXCL`, mode 0600
/// whatever the umask, then the file and the directory fsynced, so once this returns
/// a crash cannot lose the passwords. Never overwrites: an existing file is refused.
pub fn write_new(dir: &Path, env: &str, secrets: &EnvSecrets) -> Result<PathBuf> {
    let path = env_file(dir, env)?;
    safefs::check_private_dir(dir, WHAT)?;
    for (key, secret) in [
        (DB_PASSWORD_KEY, &secrets.db_password),
        (ADMIN_PASSWD_KEY, &secrets.admin_passwd),
    ] {
        // Anything else could break the line format or inject shell when sourced.
        if !is_password_text(secret.expose()) {
            return Err(Error::refused(format!(
                "{key} refused: a password in a secrets file must be non-empty ASCII letters \
                 and digits"
            )));
        }
    }
    let content = format!(
        "export {DB_PASSWORD_KEY}={}\nexport {ADMIN_PASSWD_KEY}={}\n",
        secrets.db_password.expose(),
        secrets.admin_passwd.expose()
    );
    create_exclusive(dir, &path, &content)?;
    Ok(path)
}

/// `content` into the new file `path` (0600, `O_EXCL`, fsynced with its directory);
/// an existing file is refused, never overwritten.
fn create_exclusive(dir: &Path, path: &Path, content: &str) -> Result<()> {
    let shown = path.display();
    match safefs::write_new(path, content.as_bytes(), 0o600) {
        Ok(()) => {}
        Err(WriteNewError::Create(e)) if e.kind() == ErrorKind::AlreadyExists => {
            return Err(Error::refused(format!(
                "secrets file {shown} already exists and odoo-db never overwrites a secrets file: \
                 it may hold the passwords of an existing role; if this job was \
                 interrupted, run the same command again (the file is read back), otherwise \
                 move the file somewhere safe or pass another --secrets-dir"
            )))
        }
        Err(WriteNewError::Create(e)) => {
            return Err(Error::failed(format!(
                "cannot create secrets file {shown}: {e}"
            )))
        }
        // The file was created here (O_EXCL) and no role uses it yet: it is gone again.
        Err(WriteNewError::Write(e)) => {
            return Err(Error::failed(format!(
                "cannot write secrets file {shown}: {e}"
            )))
        }
        Err(WriteNewError::SyncDir(e)) => {
            return Err(Error::failed(format!(
                "wrote {shown} but cannot fsync its directory {}: {e}",
                dir.display()
            )))
        }
    }
    Ok(())
}

/// Read `DIR/<env>.env` back: `None` when it does not exist. A file that group or
/// others can access, that another user (not root) owns, that is not a regular file
/// (a symlink included), or that does not hold exactly one
/// well-formed `export DB_PASSWORD=…` and `export ADMIN_PASSWD=…` is refused (other
/// `export KEY=value` lines, comments and blank lines are allowed). Messages never
/// quote the file's content.
pub fn read_existing(dir: &Path, env: &str) -> Result<Option<EnvSecrets>> {
    let Some((path, content)) = read_checked(dir, env)? else {
        return Ok(None);
    };
    parse(&content)
        .map(Some)
        .map_err(|problem| malformed(&path, &problem))
}

/// The refusal of a secrets file that does not hold what odoo-db wrote.
fn malformed(path: &Path, problem: &str) -> Error {
    Error::refused(format!(
        "secrets file {} is malformed: {problem}; it must hold the lines \
         `export {DB_PASSWORD_KEY}=…` (and, as provision writes it, `export {ADMIN_PASSWD_KEY}=…`) \
         of letters and digits as odoo-db wrote it: restore it from where you keep secrets, or if the \
         passwords are lost, set new ones for the role and rewrite the file",
        path.display()
    ))
}

/// Create `DIR/<env>.env` for a rotation: the new `DB_PASSWORD` only, and a comment
/// saying that ADMIN_PASSWD (Odoo's master password, no database credential) is not
/// rotated. Same rules as [`write_new`]: 0600, `O_EXCL`, file and directory fsynced
/// before this returns; an existing file is refused.
pub fn write_new_db_password(dir: &Path, env: &str, password: &Secret) -> Result<PathBuf> {
    let path = env_file(dir, env)?;
    safefs::check_private_dir(dir, WHAT)?;
    if !is_password_text(password.expose()) {
        return Err(Error::refused(format!(
            "{DB_PASSWORD_KEY} refused: a password in a secrets file must be non-empty ASCII \
             letters and digits"
        )));
    }
    let content = format!(
        "# odoo-db rotate: the new {DB_PASSWORD_KEY} of this environment's role.\n\
         # {ADMIN_PASSWD_KEY} (Odoo's master password, not a database credential) is not \
         rotated: keep the one the stack has.\n\
         export {DB_PASSWORD_KEY}={}\n",
        password.expose()
    );
    create_exclusive(dir, &path, &content)?;
    Ok(path)
}

/// Read back the `DB_PASSWORD` of `DIR/<env>.env` (a rotation's file, or a
/// provision's): `None` when the file does not exist; the same checks as
/// [`read_existing`].
pub fn read_db_password(dir: &Path, env: &str) -> Result<Option<Secret>> {
    let Some((path, content)) = read_checked(dir, env)? else {
        return Ok(None);
    };
    match parse_fields(&content) {
        Ok((Some(password), _)) => Ok(Some(password)),
        Ok((None, _)) => Err(malformed(&path, &format!("{DB_PASSWORD_KEY} is missing"))),
        Err(problem) => Err(malformed(&path, &problem)),
    }
}

/// `DIR/<env>.env` read after the checks of [`read_existing`]; `None` when missing.
fn read_checked(dir: &Path, env: &str) -> Result<Option<(PathBuf, String)>> {
    let path = env_file(dir, env)?;
    let shown = path.display();
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::refused(format!(
                "secrets file {shown} is a symbolic link; odoo-db reads only regular files: \
                 replace it with the file itself"
            )))
        }
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot open secrets file {shown}: {e}"
            )))
        }
    };
    let metadata = file
        .metadata()
        .map_err(|e| Error::failed(format!("cannot inspect secrets file {shown}: {e}")))?;
    if !metadata.is_file() {
        return Err(Error::refused(format!(
            "secrets file {shown} is not a regular file; move it away or pass another \
             --secrets-dir"
        )));
    }
    let owner = metadata.uid();
    let me = nix::unistd::geteuid().as_raw();
    if owner != me && owner != 0 {
        // Someone else could have planted it to choose the role's password.
        return Err(Error::refused(format!(
            "secrets file {shown} belongs to uid {owner}, not to this user (uid {me}) or root; \
             check where it comes from, then chown it or pass another --secrets-dir"
        )));
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::refused(format!(
            "secrets file {shown} has mode {mode:04o}, so group or others can access it; run \
             chmod 600 {shown} (and change the passwords if someone else may have read them)"
        )));
    }
    let mut content = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut content)
        .map_err(|e| Error::failed(format!("cannot read secrets file {shown}: {e}")))?;
    if content.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::refused(format!(
            "secrets file {shown} is larger than {MAX_FILE_BYTES} bytes, which no secrets file \
             is; move it away or pass another --secrets-dir"
        )));
    }
    Ok(Some((path, content)))
}

/// The two passwords of an env file; the error says what is wrong without quoting
/// any content.
fn parse(content: &str) -> std::result::Result<EnvSecrets, String> {
    match parse_fields(content)? {
        (Some(db_password), Some(admin_passwd)) => Ok(EnvSecrets {
            db_password,
            admin_passwd,
        }),
        (None, _) => Err(format!("{DB_PASSWORD_KEY} is missing")),
        (_, None) => Err(format!("{ADMIN_PASSWD_KEY} is missing")),
    }
}

/// `DB_PASSWORD` and `ADMIN_PASSWD` of an env file, each if present.
fn parse_fields(content: &str) -> std::result::Result<(Option<Secret>, Option<Secret>), String> {
    let mut db_password = None;
    let mut admin_passwd = None;
    for (index, line) in content.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line
            .strip_prefix("export ")
            .and_then(|assignment| assignment.trim_start().split_once('='))
        else {
            return Err(format!("line {number} is not `export KEY=value`"));
        };
        let slot = match key {
            DB_PASSWORD_KEY => &mut db_password,
            ADMIN_PASSWD_KEY => &mut admin_passwd,
            _ if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                continue
            }
            _ => return Err(format!("line {number} has no valid variable name")),
        };
        if slot.is_some() {
            return Err(format!("{key} is set twice (line {number})"));
        }
        if !is_password_text(value) {
            return Err(format!(
                "the value of {key} on line {number} is not a non-empty string of letters and \
                 digits"
            ));
        }
        *slot = Some(Secret::new(value));
    }
    Ok((db_password, admin_passwd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Class;
    use std::collections::HashSet;
    use std::fs::Permissions;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn refused(result: Result<impl fmt::Debug>, says: &str) -> String {
        let error = result.expect_err("must be refused");
        assert_eq!(error.class(), Class::Refused, "{error}");
        let message = error.to_string();
        assert!(message.contains(says), "{message:?} does not say {says:?}");
        message
    }

    #[test]
    fn passwords_are_20_alphanumerics_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let password = generate_password();
            let text = password.expose();
            assert_eq!(text.len(), PASSWORD_LEN);
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()), "{text}");
            assert!(seen.insert(text.to_string()), "{text} drawn twice");
        }
        // Uniform over 62 symbols: all of them show up in 20 000 draws.
        let symbols: HashSet<char> = seen.iter().flat_map(|p| p.chars()).collect();
        assert_eq!(symbols.len(), 62);
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let secret = Secret::new("hunter2hunter2hunter");
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{secret:#?}"),
            format!(
                "{:?}",
                EnvSecrets {
                    db_password: secret.clone(),
                    admin_passwd: secret.clone()
                }
            ),
        ] {
            assert!(!shown.contains("hunter"), "{shown}");
            assert!(shown.contains("Secret(***)"), "{shown}");
        }
        assert_eq!(secret.expose(), "hunter2hunter2hunter");
    }

    #[test]
    fn scram_verifier_hides_the_password() {
        let password = generate_password();
        let verifier = scram_verifier(&password);
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
        assert!(!verifier.contains(password.expose()));
        // Random salt: the same password never gives the same verifier twice.
        assert_ne!(verifier, scram_verifier(&password));
        // Safe to put between single quotes in SQL.
        assert!(
            !verifier.contains('\'') && !verifier.contains('\\'),
            "{verifier}"
        );
    }

    #[test]
    fn written_file_is_0600_and_reads_back() {
        let dir = private_dir();
        let secrets = EnvSecrets::generate();
        let path = write_new(dir.path(), "production", &secrets).unwrap();
        assert_eq!(path, dir.path().join("production.env"));
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "export DB_PASSWORD={}\nexport ADMIN_PASSWD={}\n",
                secrets.db_password.expose(),
                secrets.admin_passwd.expose()
            )
        );
        assert_eq!(
            read_existing(dir.path(), "production").unwrap(),
            Some(secrets)
        );
        assert_eq!(read_existing(dir.path(), "integration").unwrap(), None);
    }

    #[test]
    fn existing_file_is_never_overwritten() {
        let dir = private_dir();
        let first = EnvSecrets::generate();
        let path = write_new(dir.path(), "production", &first).unwrap();
        let before = std::fs::read(&path).unwrap();
        let message = refused(
            write_new(dir.path(), "production", &EnvSecrets::generate()),
            "never overwrites",
        );
        assert!(message.contains("production.env"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert_eq!(
            read_existing(dir.path(), "production").unwrap(),
            Some(first)
        );

        // Not even through a dangling symlink planted where the file goes.
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("integration.env")).unwrap();
        refused(
            write_new(dir.path(), "integration", &EnvSecrets::generate()),
            "never overwrites",
        );
        assert!(!target.exists());
        refused(read_existing(dir.path(), "integration"), "symbolic link");
    }

    #[test]
    fn bad_directories_are_refused() {
        let dir = private_dir();
        let secrets = EnvSecrets::generate();
        refused(
            write_new(&dir.path().join("missing"), "production", &secrets),
            "does not exist",
        );
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        refused(write_new(&file, "production", &secrets), "not a directory");
        for mode in [0o777, 0o1777, 0o770] {
            std::fs::set_permissions(dir.path(), Permissions::from_mode(mode)).unwrap();
            refused(write_new(dir.path(), "production", &secrets), "chmod go-w");
        }
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        write_new(dir.path(), "production", &secrets).unwrap();
    }

    #[test]
    fn a_missing_directory_is_checked_without_being_created_then_made_0700() {
        let root = private_dir();
        let missing = root.path().join("customer/secrets");
        check_dir_for_writing(&missing).unwrap();
        assert!(
            !root.path().join("customer").exists(),
            "checking created it"
        );
        let created = ensure_dir(&missing).unwrap();
        assert_eq!(created, [missing.clone(), root.path().join("customer")]);
        for dir in [root.path().join("customer"), missing.clone()] {
            assert_eq!(mode_of(&dir), 0o700, "{}", dir.display());
        }
        // Undone while empty.
        remove_created(&created);
        assert!(!root.path().join("customer").exists());
        let created = ensure_dir(&missing).unwrap();
        write_new(&missing, "production", &EnvSecrets::generate()).unwrap();
        // Existing now: checked as a directory of its own; a file in it is never removed.
        check_dir_for_writing(&missing).unwrap();
        assert!(ensure_dir(&missing).unwrap().is_empty());
        remove_created(&created);
        assert!(missing.join("production.env").exists());

        // Below a directory others can write: refused, and nothing is created.
        let shared = root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, Permissions::from_mode(0o777)).unwrap();
        let below = shared.join("a/b");
        refused(check_dir_for_writing(&below), "writable by group or others");
        assert!(!shared.join("a").exists());
        // A sticky one (like /tmp) is fine above, never as the directory itself.
        std::fs::set_permissions(&shared, Permissions::from_mode(0o1777)).unwrap();
        check_dir_for_writing(&below).unwrap();
        refused(check_dir_for_writing(&shared), "chmod go-w");
        // Below a plain file: refused.
        let file = root.path().join("plain");
        std::fs::write(&file, "").unwrap();
        refused(check_dir_for_writing(&file.join("x")), "not a directory");
        refused(check_dir_for_writing(&file), "not a directory");
    }

    #[test]
    fn bad_environment_names_are_refused() {
        let dir = private_dir();
        for env in ["", "../production", "a/b", ".hidden", "Prod", "prod env"] {
            refused(
                write_new(dir.path(), env, &EnvSecrets::generate()),
                "environment",
            );
            refused(read_existing(dir.path(), env), "environment");
        }
    }

    #[test]
    fn secrets_that_would_break_the_file_are_refused() {
        let dir = private_dir();
        let bad = EnvSecrets {
            db_password: Secret::new("abc\nexport PATH=/tmp"),
            admin_passwd: generate_password(),
        };
        refused(write_new(dir.path(), "production", &bad), "DB_PASSWORD");
        assert!(!dir.path().join("production.env").exists());
    }

    #[test]
    fn group_or_world_readable_file_is_refused() {
        let dir = private_dir();
        let path = write_new(dir.path(), "production", &EnvSecrets::generate()).unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
            refused(read_existing(dir.path(), "production"), "chmod 600");
        }
    }

    #[test]
    fn file_of_another_user_is_refused() {
        let dir = private_dir();
        let path = write_new(dir.path(), "production", &EnvSecrets::generate()).unwrap();
        // Only root can give a file away; like the integration tests, this needs root
        // and fails without it rather than passing without checking anything.
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test gives a file to another user: run the tests as root"
        );
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        refused(
            read_existing(dir.path(), "production"),
            "belongs to uid 65534",
        );
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        assert!(read_existing(dir.path(), "production").unwrap().is_some());
    }

    #[test]
    fn malformed_files_are_refused_without_quoting_them() {
        let dir = private_dir();
        let path = dir.path().join("production.env");
        let cases = [
            ("", "DB_PASSWORD is missing"),
            ("export DB_PASSWORD=Abc123\n", "ADMIN_PASSWD is missing"),
            ("export ADMIN_PASSWD=Abc123\n", "DB_PASSWORD is missing"),
            (
                "DB_PASSWORD=Sekr3tSekr3t\nexport ADMIN_PASSWD=x1\n",
                "line 1",
            ),
            (
                "export DB_PASSWORD=\nexport ADMIN_PASSWD=x1\n",
                "DB_PASSWORD on line 1",
            ),
            (
                "export DB_PASSWORD='Sekr3tSekr3t'\nexport ADMIN_PASSWD=x1\n",
                "line 1",
            ),
            (
                "export DB_PASSWORD=Sekr3tSekr3t\nexport DB_PASSWORD=Sekr3tSekr3t\n",
                "set twice",
            ),
            ("garbage Sekr3tSekr3t\n", "line 1"),
        ];
        for (content, says) in cases {
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
            let message = refused(read_existing(dir.path(), "production"), says);
            assert!(message.contains("malformed"), "{message}");
            assert!(!message.contains("Sekr3t"), "{message}");
        }
        // Comments, blank lines, CRLF and other variables are fine.
        std::fs::write(
            &path,
            "# production\r\n\r\nexport DB_USER=calm_owl_0042\r\nexport DB_PASSWORD=Abc123\r\n\
             export ADMIN_PASSWD=Xyz789\r\n",
        )
        .unwrap();
        let secrets = read_existing(dir.path(), "production").unwrap().unwrap();
        assert_eq!(secrets.db_password.expose(), "Abc123");
        assert_eq!(secrets.admin_passwd.expose(), "Xyz789");
    }
}
