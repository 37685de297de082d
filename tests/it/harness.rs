//! The throwaway servers themselves (`pgsandbox`) and `odoo-db sandbox`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::{self, ClientFiles};
use pgsandbox::{
    Harness, HarnessOptions, PgServer, ADMIN_PASSWORD, ADMIN_ROLE, MONITOR_PASSWORD, MONITOR_ROLE,
};

use crate::util::{self, fresh, processes_in, shared, wait_until};

#[tokio::test]
async fn admin_role_reaches_all_three_over_tcp_with_scram_and_is_not_superuser() {
    let harness = shared();
    assert_eq!(
        harness.servers().count(),
        3,
        "primary, standby, integration"
    );
    for server in harness.servers() {
        let client = util::admin(server).await;
        let row = client
            .query_one(
                "SELECT current_user::text, rolsuper, rolcreatedb, rolcreaterole, rolreplication,
                        rolbypassrls,
                        pg_has_role('pg_monitor', 'MEMBER'),
                        pg_has_role('pg_signal_backend', 'MEMBER'),
                        inet_server_addr()::text
                   FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap();
        let who = format!("{} server", server.name);
        assert_eq!(row.get::<_, String>(0), ADMIN_ROLE, "{who}");
        assert!(
            !row.get::<_, bool>(1),
            "{who}: the admin role must not be superuser"
        );
        assert!(row.get::<_, bool>(2), "{who}: CREATEDB");
        assert!(row.get::<_, bool>(3), "{who}: CREATEROLE");
        assert!(!row.get::<_, bool>(4), "{who}: no REPLICATION");
        assert!(!row.get::<_, bool>(5), "{who}: no BYPASSRLS");
        assert!(row.get::<_, bool>(6), "{who}: member of pg_monitor");
        assert!(row.get::<_, bool>(7), "{who}: member of pg_signal_backend");
        assert_eq!(row.get::<_, String>(8), "127.0.0.1/32", "{who}: over TCP");

        // The stored password is a SCRAM verifier, and TCP really checks it.
        let superuser = server.superuser().await.unwrap();
        for role in [ADMIN_ROLE, MONITOR_ROLE] {
            let verifier: String = superuser
                .query_one(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                    &[&role],
                )
                .await
                .unwrap()
                .get(0);
            assert!(
                verifier.starts_with("SCRAM-SHA-256$4096:"),
                "{who}: {role} {verifier}"
            );
        }
        let wrong = util::connect_tcp(server, ADMIN_ROLE, "not-the-password", "postgres").await;
        let Err(error) = wrong else {
            panic!("{who}: a wrong password must be refused over TCP");
        };
        assert_eq!(
            error.as_db_error().map(|e| e.code().code()),
            Some("28P01"),
            "{who}: {error}"
        );
        let monitor = util::connect_tcp(server, MONITOR_ROLE, MONITOR_PASSWORD, "postgres")
            .await
            .unwrap_or_else(|e| panic!("{who}: {MONITOR_ROLE}: {e}"));
        let row = monitor
            .query_one(
                "SELECT rolsuper, rolcreaterole, pg_has_role('pg_monitor', 'MEMBER')
                   FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap();
        assert!(!row.get::<_, bool>(0) && !row.get::<_, bool>(1) && row.get::<_, bool>(2));
    }
}

#[tokio::test]
async fn the_standby_streams_and_is_in_recovery() {
    let harness = shared();
    let standby = harness.standby.as_ref().expect("a standby");
    let integration = harness.integration.as_ref().expect("an integration server");

    let primary = harness.primary.superuser().await.unwrap();
    let row = primary
        .query_one(
            "SELECT state, application_name FROM pg_stat_replication
              WHERE application_name = 'standby'",
            &[],
        )
        .await
        .expect("the standby's WAL sender in pg_stat_replication");
    assert_eq!(row.get::<_, String>(0), "streaming");
    let slot = primary
        .query_one(
            "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = 'standby'",
            &[],
        )
        .await
        .expect("the physical slot `standby`");
    assert_eq!(slot.get::<_, String>(0), "physical");
    assert!(slot.get::<_, bool>(1), "slot in use");

    for (server, in_recovery) in [
        (&harness.primary, false),
        (standby, true),
        (integration, false),
    ] {
        let client = util::admin(server).await;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, bool>(0), in_recovery, "{} server", server.name);
    }

    // A copy of the primary; the integration server is a cluster of its own.
    let mut system_ids = Vec::new();
    for server in [&harness.primary, standby, integration] {
        let client = server.superuser().await.unwrap();
        let id: i64 = client
            .query_one("SELECT system_identifier FROM pg_control_system()", &[])
            .await
            .unwrap()
            .get(0);
        system_ids.push(id);
    }
    assert_eq!(system_ids[0], system_ids[1]);
    assert_ne!(system_ids[0], system_ids[2]);

    // What the primary writes reaches the standby.
    let lsn: String = primary
        .query_one(
            "SELECT pg_current_wal_insert_lsn()::text FROM pg_switch_wal()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let standby_client = standby.superuser().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool = standby_client
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay up to {lsn}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn statements_are_logged_but_no_password_is() {
    let harness = shared();
    let log = harness.primary.log_contents().unwrap();
    assert!(
        log.contains("CREATE ROLE odoo_db_admin"),
        "log_statement = all"
    );
    assert!(log.contains("SCRAM-SHA-256$"), "the role got a verifier");
    for server in harness.servers() {
        let log = server.log_contents().unwrap();
        assert!(
            !log.contains(ADMIN_PASSWORD) && !log.contains(MONITOR_PASSWORD),
            "{}",
            server.name
        );
    }
}

#[test]
fn psql_and_config_files_of_the_shared_harness() {
    let harness = shared();
    assert_eq!(harness.primary.psql_superuser("SELECT 1 + 1").unwrap(), "2");
    let config = harness.config_toml();
    let parsed: toml::Value = toml::from_str(&config).unwrap();
    assert_eq!(parsed["catalog"]["cluster"].as_str(), Some("production"));
    let production = &parsed["clusters"]["production"];
    assert_eq!(
        production["primary"].as_str(),
        Some(harness.primary.admin_url().as_str())
    );
    let standby = &production["standbys"][0];
    assert_eq!(standby["name"].as_str(), Some("standby"));
    assert_eq!(standby["application_name"].as_str(), Some("standby"));
    assert_eq!(
        parsed["clusters"]["integration"]["kind"].as_str(),
        Some("integration")
    );
    assert!(
        parsed.get("health").is_none(),
        "[health] user is not set by default"
    );
    assert_eq!(
        harness.primary.admin_url(),
        format!(
            "postgresql://odoo_db_admin@127.0.0.1:{}/postgres?sslmode=disable",
            harness.primary.port
        )
    );
}

#[test]
fn dropping_a_fresh_harness_leaves_no_process_and_no_directory() {
    let started = Instant::now();
    let harness = fresh(HarnessOptions::default());
    // A benchmark figure for the README, not an assertion: the machine decides it.
    eprintln!(
        "harness trio (primary, streaming standby, integration) started in {:?}",
        started.elapsed()
    );
    let dir = harness.dir.clone();
    let pids: Vec<i32> = harness
        .servers()
        .map(|s| s.postmaster_pid().expect("every server runs"))
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(!processes_in(&dir).is_empty());
    assert!(dir.starts_with("/tmp") || dir.starts_with(std::env::temp_dir()));

    drop(harness);
    assert!(!dir.exists(), "{} must be removed", dir.display());
    assert_eq!(
        processes_in(&dir),
        Vec::<i32>::new(),
        "no process left in {}",
        dir.display()
    );
    for pid in pids {
        // Gone, or a zombie that init has not reaped yet.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "postmaster {pid} is gone: {stat}"
        );
    }
}

#[test]
fn server_control_stop_start_restart_reload_kill() {
    let harness = fresh(HarnessOptions {
        standby: false,
        integration: false,
        ..HarnessOptions::default()
    });
    let primary = &harness.primary;
    assert!(harness.standby.is_none() && harness.integration.is_none());
    assert!(primary.is_running());

    primary.set_conf("work_mem", "7MB").unwrap();
    primary.reload().unwrap();
    wait_until(Duration::from_secs(10), "the reload took effect", || {
        primary.psql_superuser("SHOW work_mem").unwrap() == "7MB"
    });

    let before = primary.postmaster_pid().unwrap();
    primary.restart().unwrap();
    let after = primary.postmaster_pid().expect("running after restart");
    assert_ne!(before, after);

    primary.stop().unwrap();
    assert!(!primary.is_running());
    primary.stop().unwrap(); // stopping a stopped server is nothing to do
    primary.start().unwrap();
    primary.start().unwrap(); // nor is starting a running one
    assert_eq!(primary.psql_superuser("SELECT 1").unwrap(), "1");

    primary.kill().unwrap();
    assert!(!primary.is_running());
    let left = processes_in(&primary.data_dir);
    let described: Vec<String> = left
        .iter()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
        .collect();
    assert!(left.is_empty(), "SIGKILL took every backend: {described:?}");
    primary.start().unwrap(); // crash recovery
    assert_eq!(primary.psql_superuser("SELECT 1").unwrap(), "1");
    assert!(primary
        .log_contents()
        .unwrap()
        .contains("database system was interrupted"));
}

/// Runs this test binary again as a child that starts a harness in a `static` and
/// then ends as `mode` says; returns the child's harness directory.
fn run_child(mode: &str) -> PathBuf {
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--ignored",
            "harness::child_process_body",
            "--test-threads=1",
            "--quiet",
        ])
        .env("ODOO_DB_HARNESS_CHILD", mode)
        .env("ODOO_DB_HARNESS_CHILD_OUT", out.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(out.path()).unwrap();
    assert!(
        !text.is_empty(),
        "the child ({mode}) wrote nothing; it ended with {status}"
    );
    PathBuf::from(text.trim())
}

/// The body of the child processes of the tests below, which run it with `--ignored`.
#[test]
#[ignore = "the body of the harness tests' child processes, not a test of its own"]
fn child_process_body() {
    let (Ok(mode), Ok(out)) = (
        std::env::var("ODOO_DB_HARNESS_CHILD"),
        std::env::var("ODOO_DB_HARNESS_CHILD_OUT"),
    ) else {
        return;
    };
    if mode == "bindir" {
        let error = pgsandbox::bin::find_bindir().expect_err("PG_BINDIR names no PostgreSQL");
        std::fs::write(out, format!("{:?}: {error}", error.class())).unwrap();
        return;
    }
    static KEPT: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    let harness = KEPT.get_or_init(|| {
        fresh(HarnessOptions {
            integration: false,
            ..HarnessOptions::default()
        })
    });
    std::fs::write(&out, harness.dir.to_string_lossy().as_bytes()).unwrap();
    match mode.as_str() {
        // The test binary then exits normally; no destructor runs for the static.
        "exit" => {}
        // As a CI timeout or the OOM killer would: no atexit handler either.
        "kill" => {
            nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn a_harness_in_a_static_is_stopped_and_removed_at_exit() {
    let dir = run_child("exit");
    // The atexit handler ran before the child's exit completed: nothing to wait for.
    assert!(!dir.exists(), "{} must be removed at exit", dir.display());
    assert_eq!(processes_in(&dir), Vec::<i32>::new());
}

#[test]
fn a_killed_test_process_leaves_nothing_behind() {
    let dir = run_child("kill");
    wait_until(Duration::from_secs(30), "the watchdog cleaned up", || {
        !dir.exists() && processes_in(&dir).is_empty()
    });
}

#[test]
fn a_missing_postgresql_names_the_package() {
    // In a child process: PG_BINDIR must not change under this process's other tests.
    let out = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--ignored",
            "harness::child_process_body",
            "--test-threads=1",
            "--quiet",
        ])
        .env("ODOO_DB_HARNESS_CHILD", "bindir")
        .env("ODOO_DB_HARNESS_CHILD_OUT", out.path())
        .env("PG_BINDIR", "/nonexistent/postgresql/bin")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(out.path()).unwrap();
    assert!(text.starts_with("Refused"), "{text}");
    assert!(text.contains("apt-get install postgresql"), "{text}");
    assert!(text.contains("/nonexistent/postgresql/bin"), "{text}");
}

fn psql_as_admin(server_port: u16, pgpass: &Path, sql: &str) -> String {
    let psql = pgsandbox::bin::find_client_bindir().unwrap().join("psql");
    let mut command = Command::new(psql);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    let out = command
        .args([
            "-X",
            "-At",
            "-w",
            "-h",
            "127.0.0.1",
            "-U",
            ADMIN_ROLE,
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(server_port.to_string())
        .arg("-c")
        .arg(sql)
        .env("PGPASSFILE", pgpass)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql -p {server_port} as {ADMIN_ROLE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn open_server(dir: &Path, name: &str) -> PgServer {
    let harness = Harness::open(dir).unwrap();
    let server = harness.servers().find(|s| s.name == name).unwrap().clone();
    server
}

#[tokio::test]
async fn sandbox_up_status_down() {
    let parent = tempfile::Builder::new()
        .prefix("odoo-db-sb-")
        .tempdir_in("/tmp")
        .unwrap();
    // As root the servers run as `postgres`, which must be able to enter it.
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = parent.path().join("state/sandbox");
    // The sandbox is kept by design (no stop on drop): should this test fail midway,
    // its servers are still stopped when the test binary exits.
    pgsandbox::register_cleanup_at_exit(
        ["primary", "standby", "integration"]
            .iter()
            .map(|name| dir.join(name))
            .collect(),
        vec![parent.path().to_path_buf()],
    );
    let base = pgsandbox::free_port_base(3).unwrap();

    let out = sandbox::up(&dir, Some(base)).await.unwrap();
    let dir = dir.canonicalize().unwrap();
    let config = dir.join("odoo-db.toml");
    let pgpass = dir.join("pgpass");
    let exports = format!(
        "export ODOO_DB_CONFIG={}\nexport PGPASSFILE={}\n",
        config.display(),
        pgpass.display()
    );
    assert!(out.ends_with(&exports), "{out}");
    assert!(out.starts_with("# odoo-db sandbox started"), "{out}");
    assert_eq!(
        std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&config).unwrap();
    for port in base..base + 3 {
        assert!(text.contains(&format!("127.0.0.1:{port}/")), "{text}");
    }

    // psql with the printed settings reaches all three as the admin role.
    assert_eq!(
        psql_as_admin(base, &pgpass, "SELECT current_user, pg_is_in_recovery()"),
        "odoo_db_admin|f"
    );
    assert_eq!(
        psql_as_admin(
            base + 1,
            &pgpass,
            "SELECT current_user, pg_is_in_recovery()"
        ),
        "odoo_db_admin|t"
    );
    assert_eq!(
        psql_as_admin(
            base + 2,
            &pgpass,
            "SELECT current_user, pg_is_in_recovery()"
        ),
        "odoo_db_admin|f"
    );
    assert_eq!(
        psql_as_admin(
            base,
            &pgpass,
            "SELECT state FROM pg_stat_replication WHERE application_name = 'standby'"
        ),
        "streaming"
    );

    let status = sandbox::status(&dir).await.unwrap();
    for (name, port) in [
        ("primary", base),
        ("standby", base + 1),
        ("integration", base + 2),
    ] {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{status}"));
        assert!(
            line.contains(&port.to_string()) && line.contains("running"),
            "{line}"
        );
    }
    assert!(status.contains("streaming from primary"), "{status}");

    // Twice is harmless: same exports.
    let again = sandbox::up(&dir, None).await.unwrap();
    assert!(again.contains("already running"), "{again}");
    assert!(again.ends_with(&exports), "{again}");

    // A stopped server is started again.
    open_server(&dir, "standby").stop().unwrap();
    let status = sandbox::status(&dir).await.unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("standby") && l.contains("stopped")),
        "{status}"
    );
    let again = sandbox::up(&dir, Some(base)).await.unwrap();
    assert!(again.contains("started again (standby)"), "{again}");
    assert!(again.ends_with(&exports), "{again}");
    assert_eq!(
        psql_as_admin(base + 1, &pgpass, "SELECT pg_is_in_recovery()"),
        "t"
    );

    // Other ports for a running sandbox: refused, nothing changed.
    let error = sandbox::up(&dir, Some(base + 10)).await.unwrap_err();
    assert_eq!(error.class(), odoo_db::error::Class::Refused, "{error}");

    // down refuses a directory that holds no sandbox, and never deletes it.
    let error = sandbox::down(parent.path()).await.unwrap_err();
    assert_eq!(error.class(), odoo_db::error::Class::Refused, "{error}");
    assert!(dir.exists());
    let error = sandbox::up(&parent.path().join("state"), None)
        .await
        .unwrap_err();
    assert_eq!(error.class(), odoo_db::error::Class::Refused, "{error}");

    let out = sandbox::down(&dir).await.unwrap();
    assert!(out.contains("stopped and removed"), "{out}");
    assert!(!dir.exists());
    assert_eq!(processes_in(&dir), Vec::<i32>::new());
    let out = sandbox::down(&dir).await.unwrap();
    assert!(out.contains("nothing to do"), "{out}");
    let status = sandbox::status(&dir).await.unwrap();
    assert!(status.starts_with("no sandbox"), "{status}");
}
