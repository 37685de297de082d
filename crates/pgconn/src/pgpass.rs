//! The libpq password file, read by libpq's exact rules.
//!
//! Passwords are never required in odoo-db's config: DBAs keep them where `psql` finds
//! them, so odoo-db must find the same line `psql` would — same file, same escapes, same
//! wildcards, same "first match wins", and the same refusal of a file that group or
//! other can read (a password file anyone can read is a leak, not a configuration).
//! systemd services get theirs through `LoadCredential=pgpass:…`, which lands in
//! `$CREDENTIALS_DIRECTORY/pgpass`.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::params::DEFAULT_SOCKET_DIR;

/// True when `file` was handed over by systemd (`LoadCredential=`), whose permission
/// bits mean something else (see [`lookup`]).
pub(crate) fn is_credential(file: &Path, env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("CREDENTIALS_DIRECTORY")
        .filter(|dir| !dir.is_empty())
        .is_some_and(|dir| file.starts_with(dir))
}

/// Which password file applies: the `passfile` parameter (handled by the caller, which
/// only asks when it is unset), else `PGPASSFILE`, else systemd's credential if present,
/// else `~/.pgpass`. Only one file is ever read, as in libpq: a credential that lacks
/// the line does not fall back to `~/.pgpass`.
pub(crate) fn locate(env: &dyn Fn(&str) -> Option<String>, home: Option<&Path>) -> Option<PathBuf> {
    let var = |name: &str| env(name).filter(|value| !value.is_empty());
    if let Some(file) = var("PGPASSFILE") {
        return Some(PathBuf::from(file));
    }
    if let Some(dir) = var("CREDENTIALS_DIRECTORY") {
        let credential = Path::new(&dir).join("pgpass");
        if credential.exists() {
            return Some(credential);
        }
    }
    home.map(|home| home.join(".pgpass"))
}

/// The password of the first line matching this connection, or `None` (missing file,
/// unsafe file, no match). Never fails: a password file only ever adds a password.
pub(crate) fn lookup(
    file: &Path,
    credential: bool,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    if dbname.is_empty() || user.is_empty() {
        return None;
    }
    let metadata = match std::fs::metadata(file) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(file = %file.display(), "password file cannot be read, ignored: {error}");
            return None;
        }
    };
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        tracing::warn!(file = %file.display(), "password file {} is not a plain file, ignored", file.display());
        return None;
    }
    let mode = metadata.permissions().mode();
    // systemd writes a credential 0400 and, for a service that does not run as root,
    // grants it read access with a POSIX ACL entry; stat then shows the ACL mask in the
    // group bits (0440) although no group can read the file. The credential directory
    // is the service's own, so only that group-read bit is tolerated there.
    let unsafe_bits = if credential { 0o037 } else { 0o077 };
    if mode & unsafe_bits != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file {} is ignored because group or other can read it (mode {:04o}); \
             run: chmod 0600 {}",
            file.display(),
            mode & 0o7777,
            file.display()
        );
        return None;
    }
    let content = match std::fs::read(file) {
        Ok(content) => content,
        Err(error) => {
            tracing::warn!(file = %file.display(), "password file cannot be read, ignored: {error}");
            return None;
        }
    };
    let content = String::from_utf8_lossy(&content);
    find(&content, &match_host(host), &port.to_string(), dbname, user)
}

/// libpq lets `localhost` in the file stand for the default socket directory (and an
/// empty host); any other socket directory must be written as its path.
fn match_host(host: &str) -> String {
    let default_dirs = [DEFAULT_SOCKET_DIR, "/run/postgresql"];
    if host.is_empty() || default_dirs.contains(&host.trim_end_matches('/')) {
        "localhost".to_string()
    } else {
        host.to_string()
    }
}

fn find(content: &str, host: &str, port: &str, dbname: &str, user: &str) -> Option<String> {
    for line in content.split('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rest = Some(line)
            .and_then(|rest| match_field(rest, host))
            .and_then(|rest| match_field(rest, port))
            .and_then(|rest| match_field(rest, dbname))
            .and_then(|rest| match_field(rest, user));
        if let Some(password) = rest {
            return Some(unescape_password(password));
        }
    }
    None
}

/// Match one `:`-terminated field against `token`, returning what follows the `:`.
/// As libpq: a field of exactly `*` matches anything; `\` makes the next character
/// literal (so `\:` and `\\` and `\*` match `:`, `\` and `*`).
fn match_field<'a>(field: &'a str, token: &str) -> Option<&'a str> {
    if let Some(rest) = field.strip_prefix("*:") {
        return Some(rest);
    }
    let mut expected = token.chars();
    let mut chars = field.char_indices();
    while let Some((index, c)) = chars.next() {
        let (c, escaped) = if c == '\\' {
            (chars.next()?.1, true)
        } else {
            (c, false)
        };
        // An unescaped `:` ends the field only once the token is used up; before that
        // it matches a `:` in the token, which is how libpq reads `::1` unescaped.
        if c == ':' && !escaped && expected.as_str().is_empty() {
            return Some(&field[index + 1..]);
        }
        if expected.next() != Some(c) {
            return None;
        }
    }
    None
}

/// The rest of the line up to an unescaped `:`, with backslash escapes removed.
fn unescape_password(rest: &str) -> String {
    let mut password = String::with_capacity(rest.len());
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => match chars.next() {
                Some(escaped) => password.push(escaped),
                None => password.push('\\'),
            },
            c => password.push(c),
        }
    }
    password
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn file_with(content: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn exact_match_and_first_match_wins() {
        let (_dir, file) = file_with(
            "db1:5432:postgres:admin:first\ndb1:5432:postgres:admin:second\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, false, "db1", 5432, "postgres", "admin").as_deref(),
            Some("first")
        );
        assert_eq!(lookup(&file, false, "db1", 5433, "postgres", "admin"), None);
        assert_eq!(lookup(&file, false, "db2", 5432, "postgres", "admin"), None);
        assert_eq!(lookup(&file, false, "db1", 5432, "other", "admin"), None);
        assert_eq!(lookup(&file, false, "db1", 5432, "postgres", "other"), None);
    }

    #[test]
    fn wildcards_and_order() {
        let (_dir, file) = file_with(
            "db1:*:*:monitor:mon\n*:5432:*:*:catchall\ndb1:5432:*:admin:unreachable\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, false, "db1", 6000, "x", "monitor").as_deref(),
            Some("mon")
        );
        assert_eq!(
            lookup(&file, false, "db1", 5432, "x", "admin").as_deref(),
            Some("catchall")
        );
        assert_eq!(lookup(&file, false, "db9", 6000, "x", "admin"), None);
    }

    #[test]
    fn star_is_a_wildcard_only_as_the_whole_field() {
        let (_dir, file) = file_with("db*:5432:*:u:prefix\n\\*:5432:*:u:literal\n", 0o600);
        assert_eq!(lookup(&file, false, "db1", 5432, "d", "u"), None);
        assert_eq!(
            lookup(&file, false, "db*", 5432, "d", "u").as_deref(),
            Some("prefix")
        );
        assert_eq!(
            lookup(&file, false, "*", 5432, "d", "u").as_deref(),
            Some("literal")
        );
    }

    #[test]
    fn escapes_in_fields_and_password() {
        let (_dir, file) = file_with(
            "db1:5432:we\\:ird\\\\db:admin:pa\\:ss\\\\word:ignored\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, false, "db1", 5432, "we:ird\\db", "admin").as_deref(),
            Some("pa:ss\\word")
        );
    }

    #[test]
    fn ipv6_host_escaped_or_not() {
        let (_dir, file) = file_with("::1:5432:*:a:plain\n\\:\\:2:5432:*:a:escaped\n", 0o600);
        assert_eq!(
            lookup(&file, false, "::1", 5432, "d", "a").as_deref(),
            Some("plain")
        );
        assert_eq!(
            lookup(&file, false, "::2", 5432, "d", "a").as_deref(),
            Some("escaped")
        );
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let (_dir, file) = file_with(
            "# db1:5432:*:admin:commented\n\n   \r\ndb1:5432:*:admin:real\r\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, false, "db1", 5432, "d", "admin").as_deref(),
            Some("real")
        );
    }

    #[test]
    fn line_without_password_gives_empty_password() {
        let (_dir, file) = file_with("db1:5432:*:admin", 0o600);
        assert_eq!(
            lookup(&file, false, "db1", 5432, "d", "admin"),
            None,
            "4 fields: no match"
        );
        let (_dir, file) = file_with("db1:5432:*:admin:", 0o600);
        assert_eq!(
            lookup(&file, false, "db1", 5432, "d", "admin").as_deref(),
            Some("")
        );
    }

    #[test]
    fn localhost_matches_the_default_socket_directory_only() {
        let (_dir, file) = file_with(
            "localhost:5432:*:admin:local\n/tmp/sockets:5432:*:admin:bypath\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, false, "localhost", 5432, "d", "admin").as_deref(),
            Some("local")
        );
        assert_eq!(
            lookup(&file, false, "/var/run/postgresql", 5432, "d", "admin").as_deref(),
            Some("local")
        );
        assert_eq!(
            lookup(&file, false, "/run/postgresql/", 5432, "d", "admin").as_deref(),
            Some("local")
        );
        assert_eq!(
            lookup(&file, false, "/tmp/sockets", 5432, "d", "admin").as_deref(),
            Some("bypath")
        );
        assert_eq!(lookup(&file, false, "/tmp/other", 5432, "d", "admin"), None);
    }

    #[test]
    fn group_or_world_readable_file_is_ignored() {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o700 | 0o010] {
            let (_dir, file) = file_with("*:*:*:*:secret\n", mode);
            assert_eq!(
                lookup(&file, false, "h", 5432, "d", "u"),
                None,
                "mode {mode:o}"
            );
        }
        for mode in [0o600, 0o400] {
            let (_dir, file) = file_with("*:*:*:*:secret\n", mode);
            assert_eq!(
                lookup(&file, false, "h", 5432, "d", "u").as_deref(),
                Some("secret"),
                "mode {mode:o}"
            );
        }
    }

    #[test]
    fn systemd_credential_may_show_the_acl_mask_as_group_read() {
        let (_dir, file) = file_with("*:*:*:*:secret\n", 0o440);
        assert_eq!(lookup(&file, false, "h", 5432, "d", "u"), None);
        assert_eq!(
            lookup(&file, true, "h", 5432, "d", "u").as_deref(),
            Some("secret")
        );
        for mode in [0o444, 0o460, 0o404] {
            let (_dir, file) = file_with("*:*:*:*:secret\n", mode);
            assert_eq!(
                lookup(&file, true, "h", 5432, "d", "u"),
                None,
                "mode {mode:o}"
            );
        }
        let env = |name: &str| {
            (name == "CREDENTIALS_DIRECTORY").then(|| "/run/credentials/x.service".to_string())
        };
        assert!(is_credential(
            Path::new("/run/credentials/x.service/pgpass"),
            &env
        ));
        assert!(!is_credential(Path::new("/root/.pgpass"), &env));
        assert!(!is_credential(
            Path::new("/run/credentials/x.service/pgpass"),
            &|_| None
        ));
    }

    #[test]
    fn missing_file_and_directory_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            lookup(&dir.path().join("absent"), false, "h", 5432, "d", "u"),
            None
        );
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o700)).unwrap();
        assert_eq!(lookup(dir.path(), false, "h", 5432, "d", "u"), None);
    }

    #[test]
    fn file_order_passfile_env_then_credentials_then_home() {
        let home = tempfile::tempdir().unwrap();
        let credentials = tempfile::tempdir().unwrap();
        let cred_dir = credentials.path().to_string_lossy().into_owned();
        let env_with = |pgpassfile: Option<&str>| {
            let cred_dir = cred_dir.clone();
            let pgpassfile = pgpassfile.map(str::to_string);
            move |name: &str| match name {
                "PGPASSFILE" => pgpassfile.clone(),
                "CREDENTIALS_DIRECTORY" => Some(cred_dir.clone()),
                _ => None,
            }
        };
        // No credential file yet: ~/.pgpass.
        assert_eq!(
            locate(&env_with(None), Some(home.path())),
            Some(home.path().join(".pgpass"))
        );
        std::fs::write(credentials.path().join("pgpass"), "").unwrap();
        assert_eq!(
            locate(&env_with(None), Some(home.path())),
            Some(credentials.path().join("pgpass"))
        );
        assert_eq!(
            locate(&env_with(Some("/etc/explicit")), Some(home.path())),
            Some(PathBuf::from("/etc/explicit"))
        );
        assert_eq!(locate(&|_| None, None), None);
    }
}
