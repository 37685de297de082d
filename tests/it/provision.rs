//! provision, adopt-free paths, init and list as a DBA would check them afterwards:
//! on the servers (roles, owners, ACLs, logins), in the secrets files, on stdout.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::util::{self, connect_tcp, initialized, odoo_db, snapshot, unique};

/// A fresh 0700 directory for one customer's secrets files.
fn secrets_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `DB_PASSWORD` from `<dir>/<env>.env`.
fn password(dir: &Path, env: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{env}.env")))
        .unwrap_or_else(|e| panic!("reading {env}.env: {e}"));
    text.lines()
        .find_map(|line| line.strip_prefix("export DB_PASSWORD="))
        .unwrap_or_else(|| panic!("no DB_PASSWORD in {env}.env: {text}"))
        .to_string()
}

/// Logs in over TCP with SCRAM as `role` into `db` with the password of `<env>.env`,
/// and returns `current_user`, as a customer's Odoo would connect.
fn login(
    server: &odoo_db::harness::PgServer,
    secrets: &Path,
    env: &str,
    role: &str,
    db: &str,
) -> Result<String, tokio_postgres::Error> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = connect_tcp(server, role, &password(secrets, env), db).await?;
        Ok(client
            .query_one("SELECT current_user::text", &[])
            .await?
            .get(0))
    })
}

/// The production name printed in the env blocks.
fn production_name(stdout: &str) -> String {
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("# production"), "stdout: {stdout}");
    lines
        .next()
        .and_then(|line| line.strip_prefix("export DB_USER="))
        .unwrap_or_else(|| panic!("no DB_USER line: {stdout}"))
        .to_string()
}

fn expected_blocks(name: &str, production_port: u16, integration_port: u16) -> String {
    format!(
        "# production\nexport DB_USER={name}\nexport DB_NAME={name}\nexport DB_PORT={production_port}\n\n\
         # integration\nexport DB_USER={name}_integration\nexport DB_NAME={name}_integration\nexport DB_PORT={integration_port}\n"
    )
}

fn provision(customer: &str, secrets: &Path) -> util::Run {
    odoo_db()
        .args(["provision", "--customer", customer, "--secrets-dir"])
        .arg(secrets)
        .run()
}

fn query(server: &odoo_db::harness::PgServer, sql: &str) -> String {
    server
        .psql_superuser(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn provision_creates_what_the_contract_says_on_both_environments() {
    let harness = initialized();
    let integration = harness.integration.as_ref().unwrap();
    let standby = harness.standby.as_ref().unwrap();
    let customer = unique("acme");
    let secrets = secrets_dir();

    let run = odoo_db()
        .args(["-v", "provision", "--customer", &customer, "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.success();
    let name = production_name(&run.stdout);
    let shape = regex_like_generated(&name);
    assert!(shape, "generated name {name:?} is not adjective_noun_NNNN");
    assert_eq!(
        run.stdout,
        expected_blocks(&name, harness.primary.port, integration.port)
    );

    for (server, db) in [
        (&harness.primary, name.clone()),
        (integration, format!("{name}_integration")),
    ] {
        assert_eq!(
            query(
                server,
                &format!(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles WHERE rolname = '{db}'"
                )
            ),
            "t|f|f|f|f",
            "role attributes of {db} on {}",
            server.name
        );
        assert_eq!(
            query(
                server,
                &format!("SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = '{db}'")
            ),
            format!("{db}|UTF8|C.UTF-8")
        );
        assert_eq!(
            query(
                server,
                &format!("SELECT has_database_privilege('public', '{db}', 'CONNECT'), has_database_privilege('public', '{db}', 'TEMPORARY'), has_database_privilege('{db}', '{db}', 'CONNECT')")
            ),
            "f|f|t",
            "PUBLIC must not connect to {db}"
        );
        assert!(
            query(
                server,
                &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{db}'")
            )
            .starts_with("SCRAM-SHA-256$4096:"),
            "the password of {db} is stored as a SCRAM verifier"
        );
    }

    // The standby replays the new database.
    util::wait_until(
        Duration::from_secs(20),
        "the standby shows the database",
        || {
            query(
                standby,
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
            ) == "1"
        },
    );

    // The secrets files: 0600, 20 alphanumerics, and the password logs in (SCRAM).
    for env in ["production", "integration"] {
        let mode = std::fs::metadata(secrets.path().join(format!("{env}.env")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{env}.env mode");
        let password = password(secrets.path(), env);
        assert_eq!(password.len(), 20);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    }
    let integration_name = format!("{name}_integration");
    for (server, env, db) in [
        (&harness.primary, "production", &name),
        (integration, "integration", &integration_name),
    ] {
        let user = login(server, secrets.path(), env, db, db)
            .unwrap_or_else(|e| panic!("the generated {env} password logs in: {e}"));
        assert_eq!(&user, db);
    }

    // Another customer's role cannot connect to this database.
    let other = unique("globex");
    let other_secrets = secrets_dir();
    let other_run = provision(&other, other_secrets.path());
    other_run.success();
    let other_name = production_name(&other_run.stdout);
    assert_ne!(other_name, name);
    let error = login(
        &harness.primary,
        other_secrets.path(),
        "production",
        &other_name,
        &name,
    )
    .expect_err("another customer's role must not connect");
    let code = error.as_db_error().map(|e| e.code().code().to_string());
    assert_eq!(code.as_deref(), Some("42501"), "{error}");

    // No plaintext password anywhere: server logs (log_statement=all), odoo-db's output at -v.
    for env in ["production", "integration"] {
        let secret = password(secrets.path(), env);
        for server in [&harness.primary, integration] {
            let log = server.log_contents().unwrap();
            assert!(
                log.contains("CREATE ROLE"),
                "log_statement=all logs the statements"
            );
            assert!(
                !log.contains(&secret),
                "{env} password in the {} server log",
                server.name
            );
        }
        assert!(!run.stdout.contains(&secret) && !run.stderr.contains(&secret));
    }
}

/// `adjective_noun_NNNN` without pulling a regex crate into the tests.
fn regex_like_generated(name: &str) -> bool {
    let parts: Vec<&str> = name.split('_').collect();
    parts.len() == 3
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1].chars().all(|c| c.is_ascii_lowercase())
        && parts[2].len() == 4
        && parts[2].chars().all(|c| c.is_ascii_digit())
}

#[test]
fn provisioning_again_changes_nothing_and_prints_the_same_names() {
    let harness = initialized();
    let integration = harness.integration.as_ref().unwrap();
    let customer = unique("initech");
    let secrets = secrets_dir();
    let first = provision(&customer, secrets.path());
    first.success();
    let name = production_name(&first.stdout);

    let before = (snapshot(&harness.primary), snapshot(integration));
    let files_before = std::fs::read_to_string(secrets.path().join("production.env")).unwrap();
    // Again, even without --secrets-dir: nothing to create, nothing to write.
    let second = odoo_db().args(["provision", "--customer", &customer]).run();
    second.success();
    assert_eq!(second.stdout, first.stdout);
    let third = provision(&customer, secrets.path());
    third.success();
    assert_eq!(third.stdout, first.stdout);
    // Each snapshot lists only this customer's objects in the lines that matter, but
    // other tests run concurrently: compare the lines naming this customer's objects.
    let ours = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with(&name))
            .map(String::from)
            .collect()
    };
    assert_eq!(ours(&snapshot(&harness.primary)), ours(&before.0));
    assert_eq!(ours(&snapshot(integration)), ours(&before.1));
    assert_eq!(
        std::fs::read_to_string(secrets.path().join("production.env")).unwrap(),
        files_before
    );
}

/// Runs SQL as the superuser inside the shared catalog database.
fn catalog_query(sql: &str) -> String {
    catalog_query_on(initialized(), sql)
}

fn catalog_query_on(harness: &odoo_db::harness::Harness, sql: &str) -> String {
    let mut command = std::process::Command::new(harness.primary.bin("psql"));
    command
        .args([
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "odoo_db",
            "-h",
        ])
        .arg(&harness.primary.socket_dir)
        .args(["-p", &harness.primary.port.to_string(), "-c", sql]);
    let output = command.output().expect("running psql");
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string()
}

/// Refusals on a harness of its own, so that "nothing changed" is checked against
/// whole snapshots that no concurrent test disturbs.
#[test]
fn refused_input_exits_2_and_changes_nothing_on_any_server() {
    let harness = util::fresh(odoo_db::harness::HarnessOptions::default());
    let integration = harness.integration.as_ref().unwrap();
    let cli = || util::odoo_db_for(&harness);
    cli().arg("init").run().success();
    // A customer whose tokens later names must avoid.
    let secrets = secrets_dir();
    cli()
        .args(["provision", "--customer", "pinguin-bau", "--secrets-dir"])
        .arg(secrets.path())
        .run()
        .success();

    let state = || {
        (
            snapshot(&harness.primary),
            snapshot(integration),
            catalog_query_on(&harness, "SELECT string_agg(customer || '=' || base_name, ',' ORDER BY customer) FROM catalog.customers"),
        )
    };
    let before = state();
    let empty_secrets = secrets_dir();

    // A new customer without --secrets-dir: refused, nothing created, not even a name.
    let run = cli().args(["provision", "--customer", "umbrella"]).run();
    run.expect_code(2);
    assert!(run.stderr.contains("--secrets-dir"), "{}", run.stderr);
    // A new customer whose secrets files exist already (a reused directory).
    let run = cli()
        .args(["provision", "--customer", "umbrella", "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("production.env"), "{}", run.stderr);

    let long = "a".repeat(52);
    let customers: Vec<(&str, &str)> = vec![
        ("", "empty"),
        ("Acme", "uppercase"),
        ("acme corp", "space"),
        ("acme';drop database x;--", "quote and semicolon"),
        ("$(reboot)", "shell substitution"),
        ("café", "unicode"),
        ("-acme", "leading dash"),
        ("a", "one character"),
    ];
    for (customer, why) in &customers {
        let run = cli()
            .args(["provision", "--customer", customer, "--secrets-dir"])
            .arg(empty_secrets.path())
            .run();
        run.expect_code(2);
        assert!(run.stderr.contains("customer"), "{why}: {}", run.stderr);
    }
    let names: Vec<(String, &str)> = vec![
        ("Mighty_pinguin_1337".into(), "^[a-z_][a-z0-9_]*$"),
        ("x; DROP DATABASE postgres".into(), "^[a-z_][a-z0-9_]*$"),
        ("name'with'quotes".into(), "^[a-z_][a-z0-9_]*$"),
        ("$(reboot)".into(), "^[a-z_][a-z0-9_]*$"),
        ("ｆｕｌｌ".into(), "^[a-z_][a-z0-9_]*$"),
        ("".into(), "empty"),
        (long.clone(), "63"),
        ("postgres".into(), "reserved"),
        ("template1".into(), "reserved"),
        ("odoo_db".into(), "reserved"),
        ("pg_anything".into(), "pg_"),
        ("shiny_db_integration".into(), "_integration"),
        ("happy_pinguin_0001".into(), "pinguin"),
        ("pinguinbau_x".into(), "pinguin"),
        ("big_bau_tower".into(), "ok-to-pass"),
    ];
    for (name, rule) in &names {
        if *rule == "ok-to-pass" {
            continue; // "bau" is shorter than 4 characters: not a forbidden token
        }
        let run = cli()
            .args([
                "provision",
                "--customer",
                "wayne",
                "--name",
                name,
                "--secrets-dir",
            ])
            .arg(empty_secrets.path())
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains(rule),
            "--name {name:?} must be refused naming the rule ({rule}): {}",
            run.stderr
        );
    }
    assert_eq!(
        state(),
        before,
        "refusals changed nothing on any server or in the catalog"
    );
    assert_eq!(
        std::fs::read_dir(empty_secrets.path()).unwrap().count(),
        0,
        "no secrets file written"
    );
}

#[test]
fn a_given_name_is_used_as_given() {
    let harness = initialized();
    let customer = unique("hooli");
    let secrets = secrets_dir();
    let name = "quiet_harbor_given".to_string();
    let run = odoo_db()
        .args([
            "provision",
            "--customer",
            &customer,
            "--name",
            &name,
            "--env",
            "production",
            "--secrets-dir",
        ])
        .arg(secrets.path())
        .run();
    run.success();
    assert_eq!(
        run.stdout,
        format!(
            "# production\nexport DB_USER={name}\nexport DB_NAME={name}\nexport DB_PORT={}\n",
            harness.primary.port
        )
    );
}

#[test]
fn a_provision_killed_between_steps_is_completed_by_running_it_again() {
    let harness = initialized();
    let integration = harness.integration.as_ref().unwrap();
    for failpoint in [
        "provision-after-secrets",
        "provision-after-role",
        "provision-after-database",
    ] {
        let customer = unique("crash");
        let secrets = secrets_dir();
        let crashed = odoo_db()
            .args(["provision", "--customer", &customer, "--secrets-dir"])
            .arg(secrets.path())
            .env("FAILPOINTS", format!("{failpoint}=panic"))
            .run();
        assert_ne!(crashed.code, 0, "{failpoint} must stop the provision");
        let listed = odoo_db().args(["list", "--format", "json"]).run();
        listed.success();
        assert!(
            listed.stdout.contains("\"provisioning\""),
            "{failpoint}: list shows the half-done state"
        );

        let rerun = provision(&customer, secrets.path());
        rerun.success();
        let name = production_name(&rerun.stdout);
        for (server, db) in [
            (&harness.primary, name.clone()),
            (integration, format!("{name}_integration")),
        ] {
            assert_eq!(
                query(server, &format!("SELECT pg_get_userbyid(datdba), has_database_privilege('public', '{db}', 'CONNECT') FROM pg_database WHERE datname = '{db}'")),
                format!("{db}|f"),
                "{failpoint}: {db} completed"
            );
        }
        let integration_name = format!("{name}_integration");
        for (server, env, db) in [
            (&harness.primary, "production", &name),
            (integration, "integration", &integration_name),
        ] {
            login(server, secrets.path(), env, db, db).unwrap_or_else(|e| {
                panic!("{failpoint}: the {env} password in the secrets file logs in: {e}")
            });
        }
        let state = catalog_query(&format!(
            "SELECT string_agg(state, ',') FROM catalog.databases WHERE customer = '{customer}'"
        ));
        assert_eq!(state, "ready,ready", "{failpoint}");
    }
}

#[test]
fn a_half_done_provision_whose_secrets_are_gone_is_refused_with_what_to_do() {
    initialized();
    let customer = unique("lost");
    let secrets = secrets_dir();
    let crashed = odoo_db()
        .args([
            "provision",
            "--customer",
            &customer,
            "--env",
            "production",
            "--secrets-dir",
        ])
        .arg(secrets.path())
        .env("FAILPOINTS", "provision-after-role=panic")
        .run();
    assert_ne!(crashed.code, 0);
    std::fs::remove_file(secrets.path().join("production.env")).unwrap();
    let run = odoo_db()
        .args([
            "provision",
            "--customer",
            &customer,
            "--env",
            "production",
            "--secrets-dir",
        ])
        .arg(secrets.path())
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("DROP ROLE"),
        "says what to do: {}",
        run.stderr
    );
}

#[test]
fn two_concurrent_provisions_of_one_customer_take_one_name() {
    let harness = initialized();
    let customer = unique("twin");
    let (first_dir, second_dir) = (secrets_dir(), secrets_dir());
    let spawn = |dir: std::path::PathBuf| {
        let customer = customer.clone();
        std::thread::spawn(move || provision(&customer, &dir))
    };
    let first = spawn(first_dir.path().to_path_buf());
    let second = spawn(second_dir.path().to_path_buf());
    let (first, second) = (first.join().unwrap(), second.join().unwrap());
    first.success();
    second.success();
    assert_eq!(first.stdout, second.stdout, "both print the one name");
    let name = production_name(&first.stdout);
    let count = catalog_query(&format!(
        "SELECT count(*) FROM catalog.customers WHERE customer = '{customer}'"
    ));
    assert_eq!(count, "1");
    assert_eq!(
        query(
            &harness.primary,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{name}'")
        ),
        "1"
    );
}

#[test]
fn list_shows_the_customer_environment_state_and_size() {
    initialized();
    let customer = unique("listed");
    let secrets = secrets_dir();
    let run = provision(&customer, secrets.path());
    run.success();
    let name = production_name(&run.stdout);
    let listed = odoo_db().args(["list", "--format", "json"]).run();
    listed.success();
    let entries: serde_json::Value =
        serde_json::from_str(&listed.stdout).expect("list --format json is JSON");
    let ours: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["customer"] == customer.as_str())
        .collect();
    assert_eq!(ours.len(), 2);
    assert_eq!(ours[0]["name"], name.as_str());
    assert_eq!(ours[0]["environment"], "production");
    assert_eq!(ours[1]["name"], format!("{name}_integration").as_str());
    for entry in ours {
        assert_eq!(entry["state"], "ready");
        assert_eq!(entry["present"], true);
        assert!(entry["size_bytes"].as_i64().unwrap() > 1_000_000);
    }
    let table = odoo_db().arg("list").run();
    table.success();
    assert!(table.stdout.starts_with("CUSTOMER"), "{}", table.stdout);
    assert!(table
        .stdout
        .lines()
        .any(|line| line.starts_with(&customer) && line.contains(&name)));
}

#[test]
fn init_is_idempotent_and_refuses_two_clusters_on_one_server() {
    let harness = initialized();
    let again = odoo_db().arg("init").run();
    again.success();
    assert!(again.stdout.contains("verified"), "{}", again.stdout);

    // A config whose integration cluster points at the production primary.
    let dir = tempfile::tempdir().unwrap();
    let config = harness.config_toml().replace(
        &harness.integration.as_ref().unwrap().port.to_string(),
        &harness.primary.port.to_string(),
    );
    let path = dir.path().join("odoo-db.toml");
    std::fs::write(&path, config).unwrap();
    let run = odoo_db().args(["--config"]).arg(&path).arg("init").run();
    run.expect_code(2);
    assert!(run.stderr.contains("identifier"), "{}", run.stderr);
}
