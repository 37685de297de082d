//! `odoo_db::conn` against a real TLS-enabled PostgreSQL: every sslmode, host-name
//! checks through hostaddr and `via()`, passwords from a password file, the whole-attempt
//! connect timeout, session options given at startup, and error wording.
//!
//! The server is started once for this module by the small self-contained helper at the
//! bottom (its certificate is made here with rcgen: a test CA, and a server certificate
//! for `localhost`, `db.example` and 127.0.0.1 — deliberately not 127.0.0.2, which also
//! reaches the server, so a name mismatch can be provoked on a working address).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use odoo_db::error::{Class, Error};
use pgconn::{ConnParams, SessionOptions};

pub(crate) const ADMIN: &str = "odoo_db_admin";
pub(crate) const ADMIN_PASSWORD: &str = "admin-secret";
/// Accepted only over TLS (pg_hba rejects it on plain connections).
const TLS_ONLY: &str = "tls_only";
const TLS_ONLY_PASSWORD: &str = "tls-secret";
/// A password with the characters the password file must escape.
const PGPASS_USER: &str = "pgpass_user";
const PGPASS_PASSWORD: &str = r"pa:ss\word";

/// Resolve with an environment holding only an empty HOME, so the machine's own
/// ~/.pgpass, ~/.postgresql/root.crt and PG* variables cannot change the outcome.
fn resolve(conninfo: &str, extra_env: &[(&str, &str)]) -> ConnParams {
    let server = server();
    let extra: Vec<(String, String)> = extra_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let home = server.empty_home.to_string_lossy().into_owned();
    ConnParams::parse(conninfo)
        .unwrap()
        .resolve_with(&move |name| {
            if name == "HOME" {
                return Some(home.clone());
            }
            extra
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
}

fn admin(extra: &str) -> ConnParams {
    let s = server();
    resolve(
        &format!(
            "host=127.0.0.1 port={} user={ADMIN} password={ADMIN_PASSWORD} dbname=postgres {extra}",
            s.port
        ),
        &[],
    )
}

async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn connect(params: &ConnParams) -> Result<tokio_postgres::Client, Error> {
    params
        .connect(&SessionOptions::default())
        .await
        .map_err(Error::from)
}

#[tokio::test]
async fn weak_sslmodes_succeed_against_a_self_signed_tls_server() {
    for (mode, encrypted) in [
        ("disable", false),
        ("allow", false),
        ("prefer", true),
        ("require", true),
    ] {
        let params = admin(&format!("sslmode={mode}"));
        let client = connect(&params)
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert_eq!(uses_tls(&client).await, encrypted, "sslmode={mode}");
    }
}

#[tokio::test]
async fn allow_switches_to_tls_when_the_server_refuses_plain() {
    let s = server();
    let base = format!(
        "host=127.0.0.1 port={} user={TLS_ONLY} password={TLS_ONLY_PASSWORD} dbname=postgres",
        s.port
    );
    let client = connect(&resolve(&format!("{base} sslmode=allow"), &[]))
        .await
        .unwrap();
    assert!(uses_tls(&client).await);
    let error = connect(&resolve(&format!("{base} sslmode=disable"), &[]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("SQLSTATE 28000"), "{error}");
}

#[tokio::test]
async fn verify_ca_checks_the_chain_not_the_name() {
    let s = server();
    let ca = s.ca_pem.display();
    let wrong = s.wrong_ca_pem.display();
    // 127.0.0.2 is not in the certificate: verify-ca does not care.
    let params = resolve(
        &format!(
            "host=127.0.0.2 port={} user={ADMIN} password={ADMIN_PASSWORD} dbname=postgres \
             sslmode=verify-ca sslrootcert={ca}",
            s.port
        ),
        &[],
    );
    let client = connect(&params).await.unwrap();
    assert!(uses_tls(&client).await);

    let error = connect(&admin(&format!("sslmode=verify-ca sslrootcert={wrong}")))
        .await
        .unwrap_err();
    assert_eq!(error.class(), Class::Failed);
    let text = error.to_string();
    assert!(text.contains("TLS"), "{text}");
    assert!(text.contains("not signed by a CA in"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{} as {ADMIN}", s.port)),
        "{text}"
    );

    // libpq's rule: require with a root certificate verifies like verify-ca.
    let error = connect(&admin(&format!("sslmode=require sslrootcert={wrong}")))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
    connect(&admin(&format!("sslmode=require sslrootcert={ca}")))
        .await
        .unwrap();
}

#[tokio::test]
async fn verify_full_checks_dns_names_and_ip_addresses() {
    let s = server();
    let ca = s.ca_pem.display();
    let with = |host: &str, hostaddr: Option<&str>| {
        let hostaddr = hostaddr
            .map(|a| format!("hostaddr={a}"))
            .unwrap_or_default();
        resolve(
            &format!(
                "host={host} {hostaddr} port={} user={ADMIN} password={ADMIN_PASSWORD} \
                 dbname=postgres sslmode=verify-full sslrootcert={ca}",
                s.port
            ),
            &[],
        )
    };
    for (host, hostaddr) in [
        ("localhost", None),
        ("127.0.0.1", None),
        ("db.example", Some("127.0.0.1")),
    ] {
        let client = connect(&with(host, hostaddr))
            .await
            .unwrap_or_else(|e| panic!("host={host} hostaddr={hostaddr:?}: {e}"));
        assert!(uses_tls(&client).await);
    }
    for (host, hostaddr) in [("127.0.0.2", None), ("other.example", Some("127.0.0.1"))] {
        let error = connect(&with(host, hostaddr)).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!("certificate must name \"{host}\"")),
            "host={host}: {text}"
        );
    }
}

#[tokio::test]
async fn via_connects_to_the_forward_but_verifies_the_real_name() {
    let s = server();
    let ca = s.ca_pem.display();
    let real = |host: &str| {
        resolve(
            &format!(
                "postgresql://{ADMIN}:{ADMIN_PASSWORD}@{host}:5432/postgres\
                 ?sslmode=verify-full&sslrootcert={ca}"
            ),
            &[],
        )
    };
    let local = "127.0.0.1".parse().unwrap();
    let params = real("db.example").via(local, s.port);
    assert_eq!(params.label(), "db.example:5432");
    let client = connect(&params).await.unwrap();
    assert!(uses_tls(&client).await);

    let error = connect(&real("wrong.example").via(local, s.port))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("wrong.example:5432"), "{text}");
    assert!(
        text.contains(&format!("through 127.0.0.1:{}", s.port)),
        "{text}"
    );
    assert!(text.contains("certificate must name"), "{text}");
}

#[tokio::test]
async fn password_comes_from_the_password_file() {
    use std::os::unix::fs::PermissionsExt;
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    let escaped = PGPASS_PASSWORD.replace('\\', r"\\").replace(':', r"\:");
    std::fs::write(
        &file,
        format!(
            "# odoo-db test\n127.0.0.1:{}:postgres:{PGPASS_USER}:{escaped}\n*:*:*:*:wrong\n",
            s.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conninfo = format!(
        "host=127.0.0.1 port={} user={PGPASS_USER} dbname=postgres",
        s.port
    );
    let file_str = file.to_string_lossy().into_owned();
    let params = resolve(&conninfo, &[("PGPASSFILE", &file_str)]);
    assert!(params.has_password());
    let client = connect(&params).await.unwrap();
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, PGPASS_USER);

    // A file that group or other can read is ignored, as libpq does.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let params = resolve(&conninfo, &[("PGPASSFILE", &file_str)]);
    assert!(!params.has_password());
    let error = connect(&params).await.unwrap_err();
    assert!(error.to_string().contains("PGPASSWORD"), "{error}");

    // A wrong password from the file says where it came from.
    std::fs::write(&file, format!("*:{}:*:{PGPASS_USER}:wrong\n", s.port)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let params = resolve(&conninfo, &[("PGPASSFILE", &file_str)]);
    let error = connect(&params).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("SQLSTATE 28P01"), "{text}");
    assert!(
        text.contains(&format!("password retrieved from file {file_str}")),
        "{text}"
    );
}

#[tokio::test]
async fn connect_timeout_bounds_tls_and_authentication_too() {
    // The kernel completes the TCP handshake for a listener nobody accepts from: the
    // server "answers" the connect and then never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // The three attempts run side by side: each must end on its own clock.
    let attempts: Vec<_> = ["prefer", "disable", "verify-full"]
        .into_iter()
        .map(|mode| {
            let params = resolve(
                &format!(
                    "host=127.0.0.1 port={port} user={ADMIN} password=x dbname=postgres \
                     connect_timeout=2 sslmode={mode} sslrootcert={}",
                    server().ca_pem.display()
                ),
                &[],
            );
            tokio::spawn(async move {
                let started = Instant::now();
                let error = connect(&params).await.unwrap_err();
                (mode, started.elapsed(), error)
            })
        })
        .collect();
    for attempt in attempts {
        let (mode, elapsed, error) = attempt.await.unwrap();
        assert!(
            elapsed >= Duration::from_millis(1900)
                && elapsed < Duration::from_secs(2) + crate::util::LATE_MARGIN,
            "sslmode={mode}: took {elapsed:?}"
        );
        assert_eq!(error.class(), Class::Failed);
        assert_eq!(
            error.to_string(),
            format!(
                "connecting to 127.0.0.1:{port} as {ADMIN}: timed out after 2s \
                 (TCP, TLS and authentication)"
            )
        );
    }

    drop(listener);
}

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn session_options_and_application_name_are_in_effect() {
    let session = SessionOptions {
        statement_timeout: Some(Duration::from_secs(1)),
        lock_timeout: Some(Duration::from_millis(500)),
    };
    let client = admin("sslmode=require").connect(&session).await.unwrap();
    assert_eq!(show(&client, "statement_timeout").await, "1s");
    assert_eq!(show(&client, "lock_timeout").await, "500ms");
    assert_eq!(show(&client, "application_name").await, "odoo-db");
    let error: Error = client
        .execute("SELECT pg_sleep(3)", &[])
        .await
        .unwrap_err()
        .into();
    assert!(
        error.is_sqlstate(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{error}"
    );
}

#[tokio::test]
async fn server_errors_show_their_sqlstate_and_the_server() {
    let s = server();
    let client = connect(&admin("")).await.unwrap();
    let error: Error = client
        .query_one("SELECT 1/0", &[])
        .await
        .unwrap_err()
        .into();
    assert!(error.to_string().starts_with("SQLSTATE 22012"), "{error}");
    assert!(error.is_sqlstate(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO));

    let wrong = resolve(
        &format!(
            "host=127.0.0.1 port={} user={ADMIN} password=wrong dbname=postgres",
            s.port
        ),
        &[],
    );
    let error = connect(&wrong).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "connecting to 127.0.0.1:{} as {ADMIN}: SQLSTATE 28P01",
            s.port
        )),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the password must not be echoed: {text}"
    );

    let error = connect(&admin("").with_dbname("no_such_db"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("SQLSTATE 3D000"), "{error}");
}

#[tokio::test]
async fn unix_sockets_never_use_tls() {
    let s = server();
    // libpq skips TLS on sockets whatever sslmode says; so does odoo-db.
    let params = resolve(
        &format!(
            "host={} port={} user=postgres dbname=postgres sslmode=verify-full",
            s.socket_dir.display(),
            s.port
        ),
        &[],
    );
    let client = connect(&params).await.unwrap();
    assert!(!uses_tls(&client).await);
}

#[tokio::test]
async fn verify_modes_without_a_root_certificate_are_refused() {
    let error = connect(&admin("sslmode=verify-full")).await.unwrap_err();
    assert_eq!(error.class(), Class::Refused);
    let text = error.to_string();
    assert!(text.contains(".postgresql/root.crt"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

// ---------------------------------------------------------------------------------------
// A throwaway TLS server for this module (to move into the shared harness later; the
// SSH tests use it too, through the bastion).

pub(crate) struct TlsServer {
    pub(crate) port: u16,
    socket_dir: PathBuf,
    pub(crate) ca_pem: PathBuf,
    wrong_ca_pem: PathBuf,
    empty_home: PathBuf,
}

static SERVER: std::sync::OnceLock<TlsServer> = std::sync::OnceLock::new();

pub(crate) fn server() -> &'static TlsServer {
    SERVER.get_or_init(|| {
        start_tls_server().unwrap_or_else(|e| panic!("starting the test server: {e}"))
    })
}

pub(crate) fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (or set PG_BINDIR)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL with initdb found").1
}

/// The client tools (psql): `$PG_CLIENT_BINDIR` (scripts/pg-matrix runs an older
/// server with the newest client tools), else [`pg_bindir`].
pub(crate) fn pg_client_bindir() -> PathBuf {
    match std::env::var_os("PG_CLIENT_BINDIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => pg_bindir(),
    }
}

/// Run a server tool as `postgres` when we are root (PostgreSQL refuses to run as root).
fn as_server_user(program: PathBuf, dir: &Path) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(program);
    command.current_dir(dir);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGSSLMODE",
    ] {
        command.env_remove(var);
    }
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("a postgres OS user");
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    command
}

fn run(mut command: std::process::Command) -> Result<(), String> {
    let output = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn give_to_server_user(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
}

fn start_tls_server() -> Result<TlsServer, String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use std::os::unix::fs::PermissionsExt;

    let bindir = pg_bindir();
    let dir = tempfile::Builder::new()
        .prefix("odoo-db-conn-test-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    give_to_server_user(&dir);
    let data = dir.join("data");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();

    let mut initdb = as_server_user(bindir.join("initdb"), &dir);
    initdb.args([
        "-D",
        data.to_str().unwrap(),
        "-U",
        "postgres",
        "-A",
        "trust",
        "-N",
    ]);
    run(initdb)?;

    // A CA, a server certificate it signs, and an unrelated CA for the negative tests.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "odoo-db test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec![
        "localhost".to_string(),
        "db.example".to_string(),
        "127.0.0.1".to_string(),
    ])
    .unwrap()
    .signed_by(&server_key, &ca, &ca_key)
    .unwrap();
    let wrong_key = KeyPair::generate().unwrap();
    let mut wrong_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    wrong_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    wrong_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "unrelated CA");
    let wrong_ca = wrong_params.self_signed(&wrong_key).unwrap();

    let write = |path: &Path, content: &str, mode: u32| {
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        give_to_server_user(path);
    };
    write(&data.join("server.crt"), &server_cert.pem(), 0o644);
    write(&data.join("server.key"), &server_key.serialize_pem(), 0o600);
    let ca_pem = dir.join("ca.pem");
    let wrong_ca_pem = dir.join("wrong-ca.pem");
    write(&ca_pem, &ca.pem(), 0o644);
    write(&wrong_ca_pem, &wrong_ca.pem(), 0o644);

    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        format!(
            "\nlisten_addresses = '127.0.0.1,127.0.0.2'\nport = {port}\n\
             unix_socket_directories = '{}'\nssl = on\nssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\nfsync = off\nmax_connections = 40\n\
             password_encryption = 'scram-sha-256'\n",
            dir.display()
        )
        .as_bytes(),
    )
    .unwrap();
    std::fs::write(
        data.join("pg_hba.conf"),
        format!(
            "local all all trust\n\
             hostnossl all {TLS_ONLY} 127.0.0.0/8 reject\n\
             hostssl all all 127.0.0.0/8 scram-sha-256\n\
             host all all 127.0.0.0/8 scram-sha-256\n"
        ),
    )
    .unwrap();

    let mut pg_ctl = as_server_user(bindir.join("pg_ctl"), &dir);
    pg_ctl.args([
        "-D",
        data.to_str().unwrap(),
        "-l",
        dir.join("server.log").to_str().unwrap(),
        "-w",
        "-t",
        "60",
        "start",
    ]);
    if let Err(error) = run(pg_ctl) {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        return Err(format!("{error}\n{log}"));
    }

    // Stop and remove the server when this test process ends, however it ends.
    let mut watchdog = as_server_user(PathBuf::from("/bin/sh"), &dir);
    watchdog
        .arg("-c")
        .arg(format!(
            "while [ -d /proc/{pid} ]; do sleep 0.5; done; \
             '{pg_ctl}' -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = bindir.join("pg_ctl").display(),
            data = data.display(),
            dir = dir.display(),
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
    watchdog
        .spawn()
        .map_err(|e| format!("starting the cleanup watchdog: {e}"))?;

    let mut psql = as_server_user(pg_client_bindir().join("psql"), &dir);
    psql.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        dir.to_str().unwrap(),
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
    ])
    .arg(format!(
        "CREATE ROLE {ADMIN} LOGIN CREATEDB CREATEROLE PASSWORD '{ADMIN_PASSWORD}'; \
             CREATE ROLE {TLS_ONLY} LOGIN PASSWORD '{TLS_ONLY_PASSWORD}'; \
             CREATE ROLE {PGPASS_USER} LOGIN PASSWORD '{PGPASS_PASSWORD}';"
    ));
    run(psql)?;

    let empty_home = dir.join("empty-home");
    std::fs::create_dir(&empty_home).unwrap();
    Ok(TlsServer {
        port,
        socket_dir: dir,
        ca_pem,
        wrong_ca_pem,
        empty_home,
    })
}
