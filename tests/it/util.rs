//! Shared test utilities: one harness for the whole test run, fresh harnesses for
//! tests that break servers, admin connections, and a runner for the built
//! `odoo-db` binary.
//!
//! PostgreSQL missing makes every test that needs a server panic with the
//! harness's message (which names the package to install): tests never skip.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::ClientFiles;
use pgsandbox::{Harness, HarnessOptions, PgServer, ADMIN_PASSWORD, ADMIN_ROLE};

struct Shared {
    harness: Harness,
    config: PathBuf,
    pgpass: PathBuf,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn shared_state() -> &'static Shared {
    SHARED.get_or_init(|| {
        let harness = start_harness(HarnessOptions::default());
        let (config, pgpass) = harness
            .write_client_files()
            .unwrap_or_else(|e| panic!("writing the shared harness's client files: {e}"));
        Shared {
            harness,
            config,
            pgpass,
        }
    })
}

/// The primary + standby + integration trio shared by every test of this run,
/// started on first use. Never break its servers (use [`fresh`]); name what you
/// create uniquely, tests run concurrently. It is stopped and removed when the
/// test binary exits (see `pgsandbox` cleanup).
pub fn shared() -> &'static Harness {
    &shared_state().harness
}

/// The shared harness's config file (for tests that write a variant of it).
pub fn shared_config() -> &'static Path {
    &shared_state().config
}

/// A private (0700) scratch directory for what a test writes that holds secrets or
/// customer data (secrets directories, backups, spools, archives): inside the shared
/// harness's directory, which the harness removes when the test process ends, by its
/// watchdog when the process is killed. A plain temporary directory would outlive a
/// killed run, customers' passwords in it.
pub fn scratch_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(&shared().dir)
        .expect("a scratch directory in the shared harness's directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// A harness of its own, for tests that stop, kill or reconfigure servers;
/// stopped and removed when dropped.
pub fn fresh(options: HarnessOptions) -> Harness {
    start_harness(options)
}

/// Starts a harness on a runtime of its own thread: the shared harness must not
/// depend on the runtime of the test that happened to start it (that runtime ends
/// with its test), and a `#[tokio::test]` cannot block on another runtime itself.
fn start_harness(options: HarnessOptions) -> Harness {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building a tokio runtime for the harness");
        runtime.block_on(Harness::start(options))
    })
    .join()
    .expect("the thread starting the PostgreSQL harness panicked")
    .unwrap_or_else(|e| panic!("starting throwaway PostgreSQL servers for the tests failed: {e}"))
}

/// `odoo_db_admin` over TCP with its SCRAM password, in database `postgres`.
pub async fn admin(server: &PgServer) -> tokio_postgres::Client {
    admin_in(server, "postgres").await
}

/// `odoo_db_admin` over TCP with its SCRAM password, in database `db`.
pub async fn admin_in(server: &PgServer, db: &str) -> tokio_postgres::Client {
    connect_tcp(server, ADMIN_ROLE, ADMIN_PASSWORD, db)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to the {} server (port {}) as {ADMIN_ROLE}: {}",
                server.name,
                server.port,
                odoo_db::error::describe_pg_error(&e)
            )
        })
}

/// A plain TCP connection (no TLS) to 127.0.0.1:port as `user` with `password`.
pub async fn connect_tcp(
    server: &PgServer,
    user: &str,
    password: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(server.port)
        .user(user)
        .password(password)
        .dbname(db)
        .connect_timeout(Duration::from_secs(10))
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs `sql` (simple protocol, several statements allowed) as the superuser in database
/// `db`, with `options` as the session's startup options (e.g. `-c statement_timeout=0`
/// against settings a customer gave its database), and returns once that session has
/// left the server: a superuser session still in a customer's database would (rightly)
/// make recreate refuse, and a dropped client of a test's runtime is only closed when
/// that runtime runs again. The first column of every row, NULL as None.
pub async fn superuser_rows(
    server: &PgServer,
    db: &str,
    options: &str,
    sql: &str,
) -> Result<Vec<Option<String>>, tokio_postgres::Error> {
    let mut config = server.superuser_config(db);
    if !options.is_empty() {
        config.options(options);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let pid = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get::<_, i32>(0);
    let result = client.simple_query(sql).await;
    drop(client);
    let _ = connection.await;
    backend_gone(server, pid).await;
    Ok(result?
        .into_iter()
        .filter_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .collect())
}

/// Returns once backend `pid` has left `server` (at most 10 s): a backend exits a moment
/// after its client closed the connection, and until then it shows in
/// `pg_stat_activity`, where a snapshot or a command's "no sessions" gate would see it.
pub async fn backend_gone(server: &PgServer, pid: i32) {
    let maintenance = server
        .superuser()
        .await
        .unwrap_or_else(|e| panic!("connecting to the {} server: {e}", server.name));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = maintenance
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub use pgsandbox::processes_in;

/// How much later than its own bound (a deadline, a connect timeout) a run may end
/// before a test calls it late: process start and exit on a loaded 2-core machine. A
/// run that ignores its bound overshoots by far more; a tighter margin only makes tests
/// fail when the machine is busy.
pub const LATE_MARGIN: Duration = Duration::from_secs(3);

/// Waits until `condition` holds, panicking with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The built `odoo-db` binary, with the shared harness's config and pgpass.
pub fn odoo_db() -> OdooDb {
    let shared = shared_state();
    OdooDb::new().with_files(&shared.config, &shared.pgpass)
}

/// The built `odoo-db` binary, with `harness`'s config and pgpass (written now).
pub fn odoo_db_for(harness: &Harness) -> OdooDb {
    let (config, pgpass) = harness
        .write_client_files()
        .unwrap_or_else(|e| panic!("writing the harness's client files: {e}"));
    OdooDb::new().with_files(&config, &pgpass)
}

/// A command line for the built `odoo-db` binary. No `PG*` variable and no
/// `ODOO_DB_CONFIG` of the developer's environment leaks in.
pub struct OdooDb {
    command: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

/// What a run of `odoo-db` did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Default for OdooDb {
    fn default() -> Self {
        OdooDb::new()
    }
}

impl OdooDb {
    /// No config and no pgpass: for tests of config errors (add `--config`).
    pub fn new() -> OdooDb {
        let mut command = Command::new(env!("CARGO_BIN_EXE_odoo-db"));
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("PG") || name == "ODOO_DB_CONFIG" || name == "CREDENTIALS_DIRECTORY"
            {
                command.env_remove(&key);
            }
        }
        OdooDb {
            command,
            stdin: None,
            timeout: Duration::from_secs(120),
        }
    }

    fn with_files(mut self, config: &Path, pgpass: &Path) -> OdooDb {
        self.command
            .env("ODOO_DB_CONFIG", config)
            .env("PGPASSFILE", pgpass);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> OdooDb {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> OdooDb
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(
        mut self,
        key: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> OdooDb {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<std::ffi::OsStr>) -> OdooDb {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> OdooDb {
        self.command.current_dir(dir);
        self
    }

    /// Text fed on stdin (default: none, stdin is /dev/null, so never a TTY).
    pub fn stdin(mut self, text: impl Into<Vec<u8>>) -> OdooDb {
        self.stdin = Some(text.into());
        self
    }

    /// Kill the run and fail the test after this long (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> OdooDb {
        self.timeout = timeout;
        self
    }

    /// Starts it in the background (stdin, stdout and stderr to /dev/null), for tests
    /// that kill the odoo-db process itself.
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let shown = format!("{:?}", self.command);
        self.command
            .spawn()
            .unwrap_or_else(|e| panic!("running {shown}: {e}"))
    }

    /// Runs to completion; panics if it cannot start, dies by a signal, or
    /// outlives its timeout.
    pub fn run(mut self) -> Run {
        use std::io::Write;
        self.command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = format!("{:?}", self.command);
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("running {shown}: {e}"));
        if let Some(input) = self.stdin.take() {
            let mut pipe = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = pipe.write_all(&input);
            });
        }
        let reader = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = reader(Box::new(child.stdout.take().expect("piped stdout")));
        let stderr = reader(Box::new(child.stderr.take().expect("piped stderr")));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for odoo-db") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{shown} still ran after {:?}; stderr so far:\n{}",
                    self.timeout,
                    stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            code: status
                .code()
                .unwrap_or_else(|| panic!("{shown} died by a signal ({status})")),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }
}

impl OdooDb {
    /// Runs with stdout and stderr both on a pipe whose reader has already gone (a
    /// `2>&1 | head` that quit): every write fails with EPIPE. Returns the exit code;
    /// panics when odoo-db dies by a signal or outlives its timeout.
    pub fn run_into_closed_pipe(mut self) -> i32 {
        let (reader, writer) = nix::unistd::pipe().expect("a pipe");
        drop(reader);
        let stderr = writer.try_clone().expect("a second descriptor of the pipe");
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(stderr));
        let shown = format!("{:?}", self.command);
        let mut child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("running {shown}: {e}"));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for odoo-db") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} still ran after {:?}", self.timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        status
            .code()
            .unwrap_or_else(|| panic!("{shown} died by a signal ({status})"))
    }
}

impl Run {
    /// Panics, showing both streams, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "odoo-db exited with {} instead of {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the exit code is 0.
    #[track_caller]
    pub fn success(&self) -> &Run {
        self.expect_code(0)
    }
}

/// The shared harness after one `odoo-db init` (catalog, pinned identities,
/// heartbeat tables): what every job's tests start from.
pub fn initialized() -> &'static Harness {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        odoo_db().arg("init").run().success();
    });
    shared()
}

/// A name unique within this test run (and across runs), for customers and files.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // One alphanumeric token mixing letters and digits, ending in a letter: it never
    // appears inside a generated `adjective_noun_NNNN` name nor inside another test's
    // customer, so the rule "a new customer named in existing objects is refused" never
    // fires by chance (a `-`-separated pid could match a name's NNNN).
    let prefix: String = prefix.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("{prefix}{}x{n}z", std::process::id() % 100_000)
}

/// Runs odoo-db with `config` (and the shared harness's pgpass) on a pseudo-terminal
/// (util-linux `script`), typing `input`: the exit code and everything shown on the
/// terminal.
pub fn on_a_tty(config: &Path, args: &[&str], input: &str) -> (i32, String) {
    use std::io::Write;
    let command = [env!("CARGO_BIN_EXE_odoo-db"), "--config"]
        .into_iter()
        .chain(std::iter::once(
            config.to_str().expect("a UTF-8 config path"),
        ))
        .chain(args.iter().copied())
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("PGPASSFILE", shared().pgpass_path())
        .env_remove("ODOO_DB_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running `script` (util-linux) to get a TTY");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Provisions `customer` on the shared harness (initialized first), its secrets in
/// `secrets`, with `extra` arguments (`--env production`, say); the databases provision
/// printed, production's first.
pub fn provision_customer(customer: &str, secrets: &Path, extra: &[&str]) -> Vec<String> {
    initialized();
    let run = odoo_db()
        .args(["provision", "--customer", customer, "--secrets-dir"])
        .arg(secrets)
        .args(extra)
        .run();
    run.success();
    let names: Vec<String> = run
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("export DB_NAME="))
        .map(str::to_string)
        .collect();
    assert!(!names.is_empty(), "provision output:\n{}", run.stdout);
    names
}

/// `DB_PASSWORD` of `<dir>/<env>.env`, as provision wrote it.
pub fn env_password(dir: &Path, env: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{env}.env")))
        .unwrap_or_else(|e| panic!("reading {env}.env: {e}"));
    text.lines()
        .find_map(|line| line.strip_prefix("export DB_PASSWORD="))
        .unwrap_or_else(|| panic!("no DB_PASSWORD in {env}.env"))
        .trim_matches(|c| c == '\'' || c == '"')
        .to_string()
}

/// Everything a user would compare to prove "nothing changed" on a server:
/// databases with owner, ACL and connection settings; roles with attributes.
pub fn snapshot(server: &PgServer) -> String {
    server
        .psql_superuser(
            "SELECT string_agg(format('%s|%s|%s|%s|%s', datname, pg_get_userbyid(datdba), datacl, datconnlimit, datallowconn), E'\\n' ORDER BY datname) FROM pg_database;
             SELECT string_agg(format('%s|%s|%s|%s|%s', rolname, rolsuper, rolcanlogin, rolcreatedb, rolconnlimit), E'\\n' ORDER BY rolname) FROM pg_roles;",
        )
        .unwrap_or_else(|e| panic!("snapshot of the {} server: {e}", server.name))
}
