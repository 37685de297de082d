//! The command line and config as a user meets them: exit codes, messages that name
//! the file and the key, logs on stderr and results on stdout.

use odoo_db::cmd::sandbox::ClientFiles;

use crate::util::{initialized, odoo_db, OdooDb};

fn config_with(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let harness = initialized();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odoo-db.toml");
    std::fs::write(&path, format!("{}\n{extra}", harness.config_toml())).unwrap();
    (dir, path)
}

#[test]
fn config_errors_exit_2_naming_file_and_key() {
    let (_dir, unknown_key) = config_with("[provision]\nlocale = \"C.UTF-8\"\nlocales = \"x\"\n");
    let run = OdooDb::new()
        .arg("--config")
        .arg(&unknown_key)
        .arg("list")
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains(&unknown_key.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("locales"), "{}", run.stderr);

    let (_dir, bad_duration) = config_with("[health]\ntimeout = \"30 fortnights\"\n");
    let run = OdooDb::new()
        .arg("--config")
        .arg(&bad_duration)
        .arg("list")
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("health.timeout"), "{}", run.stderr);
    assert!(run.stderr.contains("unknown time unit"), "{}", run.stderr);

    let missing = OdooDb::new()
        .args(["--config", "/nonexistent/odoo-db.toml", "list"])
        .run();
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("/nonexistent/odoo-db.toml"),
        "{}",
        missing.stderr
    );

    // ODOO_DB_CONFIG is used when --config is not given.
    let run = OdooDb::new()
        .env("ODOO_DB_CONFIG", &bad_duration)
        .arg("list")
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains(&bad_duration.display().to_string()));
}

#[test]
fn health_and_audit_report_their_own_failures_as_unknown() {
    // Nagios reads 2 as CRITICAL: a broken config or usage is odoo-db's own problem (3).
    for command in ["health", "audit"] {
        let run = OdooDb::new()
            .args(["--config", "/nonexistent/odoo-db.toml", command])
            .run();
        run.expect_code(3);
        assert!(
            run.stdout.starts_with("ODOO-DB UNKNOWN - "),
            "Nagios shows stdout: {}",
            run.stdout
        );
        let usage = OdooDb::new().args([command, "--no-such-flag"]).run();
        usage.expect_code(3);
        assert!(
            usage.stdout.starts_with("ODOO-DB UNKNOWN - "),
            "{}",
            usage.stdout
        );
    }
    let usage = OdooDb::new().args(["list", "--no-such-flag"]).run();
    usage.expect_code(2);
}

#[test]
fn results_go_to_stdout_and_json_logs_to_stderr() {
    initialized();
    let run = odoo_db()
        .args(["--log-format", "json", "-v", "list", "--format", "json"])
        .run();
    run.success();
    serde_json::from_str::<serde_json::Value>(&run.stdout).expect("stdout is only the JSON result");
    for line in run.stderr.lines() {
        let log: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line {line:?} is not JSON: {e}"));
        assert!(log.get("level").is_some(), "{line}");
    }
}

#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let run = OdooDb::new().args(["completions", shell]).run();
        run.success();
        assert!(run.stdout.contains("provision"), "{shell}");
    }
    let man = OdooDb::new().arg("man").run();
    man.success();
    assert!(
        man.stdout.starts_with(".ie") || man.stdout.contains(".TH"),
        "roff output"
    );
}

/// Issue 10, item 10: customer names outside the contract's rule are refused before
/// any connection (a config whose servers cannot be reached still exits 2, not 1), and
/// so is a `--secrets-dir` others can write; neither is created nor touched.
#[test]
fn bad_customers_and_secrets_dirs_are_refused_before_any_connection() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // free once the listener is dropped: nobody answers there
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("odoo-db.toml");
    std::fs::write(
        &config,
        format!(
            "[catalog]\ncluster = \"production\"\ndatabase = \"odoo_db\"\n\n\
             [clusters.production]\nkind = \"production\"\n\
             primary = \"postgresql://odoo_db_admin@127.0.0.1:{port}/postgres?sslmode=disable&connect_timeout=2\"\n"
        ),
    )
    .unwrap();
    let secrets = dir.path().join("secrets");
    for customer in [
        "a-", "e-", "y-", "ab", "123", "a--b", "-ab", "ab-", "Ab-c", "a_bc",
    ] {
        let run = OdooDb::new()
            .arg("--config")
            .arg(&config)
            .arg("provision")
            .arg(format!("--customer={customer}"))
            .arg("--secrets-dir")
            .arg(&secrets)
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("^[a-z0-9]+(-[a-z0-9]+)*$") && !run.stderr.contains("connect"),
            "{customer:?}: {}",
            run.stderr
        );
        let adopt = OdooDb::new()
            .arg("--config")
            .arg(&config)
            .arg("adopt")
            .arg(format!("--customer={customer}"))
            .args(["--name", "calm_owl_0001"])
            .run();
        adopt.expect_code(2);
    }
    assert!(!secrets.exists(), "no secrets directory created");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    for target in [shared.clone(), shared.join("below")] {
        let run = OdooDb::new()
            .arg("--config")
            .arg(&config)
            .args(["provision", "--customer", "acme-corp", "--secrets-dir"])
            .arg(&target)
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("writable by group or others"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);

    // A private directory of another user: whoever owns it can swap the files. The
    // harness already needs root (it runs the server tools as postgres), so this case
    // runs everywhere the suite does; without root it fails, it is never skipped.
    assert!(
        nix::unistd::geteuid().is_root(),
        "the tests run as root (chown to another user, the harness's server tools)"
    );
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let run = OdooDb::new()
        .arg("--config")
        .arg(&config)
        .args(["provision", "--customer", "acme-corp", "--secrets-dir"])
        .arg(&theirs)
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("belongs to uid 65534"),
        "{}",
        run.stderr
    );
}

/// `odoo-db health 2>&1 | head -3` once panicked (exit 101, "failed printing to stderr:
/// Broken pipe"): with stdout and stderr both closed, every command keeps its exit code.
#[test]
fn a_closed_stdout_and_stderr_keep_the_exit_code() {
    initialized();
    let dir = tempfile::tempdir().unwrap();
    let unreachable = dir.path().join("unreachable.toml");
    std::fs::write(
        &unreachable,
        "[catalog]\ncluster = \"production\"\n[clusters.production]\nkind = \"production\"\n\
         primary = \"postgresql://nobody@127.0.0.1:1/postgres?sslmode=disable\"\n",
    )
    .unwrap();
    let cases: Vec<(&str, OdooDb, i32)> = vec![
        // -v: plenty of log lines to write into the closed stderr.
        ("health OK", odoo_db().args(["-v", "health"]), 0),
        (
            "health OK, json",
            odoo_db().args(["health", "--format", "json"]),
            0,
        ),
        (
            "health CRITICAL",
            OdooDb::new()
                .arg("--config")
                .arg(&unreachable)
                .args(["-v", "health"]),
            2,
        ),
        (
            "health UNKNOWN (broken config)",
            OdooDb::new().args(["--config", "/nonexistent/odoo-db.toml", "health"]),
            3,
        ),
        ("list", odoo_db().args(["-v", "list"]), 0),
        (
            "list, broken config",
            OdooDb::new().args(["--config", "/nonexistent/odoo-db.toml", "list"]),
            2,
        ),
        (
            "usage error",
            OdooDb::new().args(["list", "--no-such-flag"]),
            2,
        ),
        (
            "usage error, health",
            OdooDb::new().args(["health", "--no-such-flag"]),
            3,
        ),
        ("help", OdooDb::new().arg("--help"), 0),
        (
            "completions",
            OdooDb::new().args(["completions", "bash"]),
            0,
        ),
        ("man page", OdooDb::new().arg("man"), 0),
    ];
    for (what, command, expected) in cases {
        assert_eq!(command.run_into_closed_pipe(), expected, "{what}");
    }
    // audit: the same verdict as with open streams.
    let open = odoo_db().arg("audit").run().code;
    assert!((0..=3).contains(&open), "audit exited with {open}");
    let closed = odoo_db().args(["-v", "audit"]).run_into_closed_pipe();
    if closed != open {
        // Another test may have changed what audit finds in between: ask again.
        let again = odoo_db().arg("audit").run().code;
        assert_eq!(closed, again, "audit with closed streams");
    }
}

/// A platform with several production clusters monitors them all from one config;
/// the commands that work on *the* production cluster refuse it (exit 2, nothing
/// changed) rather than pick one.
#[test]
fn several_production_clusters_are_all_checked_and_provision_refuses_them() {
    let harness = initialized();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odoo-db.toml");
    let text = harness
        .config_toml()
        .replace("kind = \"integration\"", "kind = \"production\"");
    std::fs::write(&path, text).unwrap();

    let health = odoo_db()
        .arg("--config")
        .arg(&path)
        .args(["health", "--format", "json"])
        .run();
    assert_ne!(health.code, 2, "{}", health.stderr);
    for cluster in ["\"production\"", "\"integration\""] {
        assert!(
            health.stdout.contains(cluster),
            "{cluster}: {}",
            health.stdout
        );
    }

    let before: Vec<String> = harness.servers().map(crate::util::snapshot).collect();
    let secrets = tempfile::tempdir().unwrap();
    let run = odoo_db()
        .arg("--config")
        .arg(&path)
        .args(["provision", "--customer", "acme-fleet", "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "clusters integration, production have kind production; provision works on one production cluster"
        ),
        "{}",
        run.stderr
    );
    let after: Vec<String> = harness.servers().map(crate::util::snapshot).collect();
    assert_eq!(before, after);
    assert_eq!(std::fs::read_dir(secrets.path()).unwrap().count(), 0);
}
