//! provision, adopt-free paths, init and list as a DBA would check them afterwards:
//! on the servers (roles, owners, ACLs, logins), in the secrets files, on stdout.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use odoo_db::cmd::sandbox::ClientFiles;

use crate::util::{self, connect_tcp, initialized, odoo_db, snapshot, unique};

/// A fresh 0700 directory for one customer's secrets files.
fn secrets_dir() -> tempfile::TempDir {
    util::scratch_dir()
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
    server: &pgsandbox::PgServer,
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

fn query(server: &pgsandbox::PgServer, sql: &str) -> String {
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

fn catalog_query_on(harness: &pgsandbox::Harness, sql: &str) -> String {
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
    let harness = util::fresh(pgsandbox::HarnessOptions::default());
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
    let customer = unique("duo");
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

/// Every file and directory under `root`, with its mode, sorted: what "nothing changed
/// on disk" compares.
fn listing(root: &Path) -> Vec<String> {
    let mut entries = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let metadata = std::fs::symlink_metadata(entry.path()).unwrap();
            entries.push(format!(
                "{} {:o} {}",
                entry.path().strip_prefix(root).unwrap().display(),
                metadata.permissions().mode() & 0o7777,
                metadata.len()
            ));
            if metadata.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    entries.sort();
    entries
}

/// Issue 10, items 7, 8 and 10: refused provisions (a secrets directory others can
/// write, above or at it; a reused secrets file; customer names outside the contract's
/// rule; a `--name` holding a customer's name with `_` for `-`; a new customer whose
/// name shows in existing databases or roles) exit 2 and leave the catalog, every
/// server and the disk exactly as they were; then a provision into a missing
/// `--secrets-dir` creates it 0700.
#[test]
fn refused_provisions_leave_catalog_servers_and_disk_unchanged() {
    let harness = util::fresh(pgsandbox::HarnessOptions::default());
    let integration = harness.integration.as_ref().unwrap();
    let standby = harness.standby.as_ref().unwrap();
    let cli = || util::odoo_db_for(&harness);
    cli().arg("init").run().success();
    // Objects made by hand before odoo-db, named after would-be customers.
    harness
        .primary
        .psql_superuser("CREATE DATABASE fluxdock_legacy")
        .unwrap();
    integration
        .psql_superuser("CREATE ROLE old_wayne_ent_user LOGIN")
        .unwrap();
    // A customer provisioned normally, whose secrets directory is then reused.
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let used = root.path().join("used");
    cli()
        .args(["provision", "--customer", "pinguin-bau", "--secrets-dir"])
        .arg(&used)
        .run()
        .success();
    // A directory others can write, and a private one below it.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o770)).unwrap();
    let private = root.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let missing = root.path().join("new/secrets");

    let state = || {
        (
            snapshot(&harness.primary),
            snapshot(integration),
            snapshot(standby),
            catalog_query_on(
                &harness,
                "SELECT (SELECT string_agg(customer || '=' || base_name, ',' ORDER BY customer) FROM catalog.customers) \
                 || ' | ' || (SELECT string_agg(name || ':' || environment || ':' || state, ',' ORDER BY name) FROM catalog.databases) \
                 || ' | ' || (SELECT count(*) FROM catalog.events)",
            ),
            listing(root.path()),
        )
    };
    // The standby replays what happened so far before the first snapshot.
    util::wait_until(Duration::from_secs(60), "the standby caught up", || {
        snapshot(standby) == snapshot(&harness.primary)
    });
    let before = state();

    let refused = |customer: &str, name: Option<&str>, dir: &Path, says: &[&str]| {
        let mut command = cli().arg("provision").arg(format!("--customer={customer}"));
        if let Some(name) = name {
            command = command.args(["--name", name]);
        }
        let run = command.arg("--secrets-dir").arg(dir).run();
        run.expect_code(2);
        for said in says {
            assert!(
                run.stderr.contains(said),
                "provision --customer {customer:?} --name {name:?} --secrets-dir {}: must say {said:?}: {}",
                dir.display(),
                run.stderr
            );
        }
    };
    // The secrets directory, or one above a missing one, writable by group or others.
    refused(
        "globex-corp",
        None,
        &shared,
        &["writable by group or others"],
    );
    refused(
        "globex-corp",
        None,
        &shared.join("a/b"),
        &["writable by group or others"],
    );
    // A secrets file from another customer's provision.
    refused("globex-corp", None, &used, &["production.env"]);
    // Customer names outside ^[a-z0-9]+(-[a-z0-9]+)*$, 3-63, a letter: refused before
    // any connection (a missing directory stays missing).
    for customer in [
        "a-", "e-", "y-", "ab", "123", "a--b", "-abc", "abc-", "1-2-3",
    ] {
        refused(
            customer,
            None,
            &missing,
            &["customer", "^[a-z0-9]+(-[a-z0-9]+)*$"],
        );
    }
    // A name holding the customer's name with `_` for `-`.
    refused(
        "my-co",
        Some("my_co_db"),
        &missing,
        &["\"my_co\"", "hyphens as underscores"],
    );
    refused("ab-cd-ef", Some("x_ab_cd_ef"), &missing, &["\"ab_cd_ef\""]);
    refused(
        "ab-cd-ef",
        Some("x_abcdef"),
        &missing,
        &["without its hyphens"],
    );
    // Another customer's name in any form.
    refused(
        "globex-corp",
        Some("pinguin_bau_shop"),
        &missing,
        &["pinguin"],
    );
    // A new customer whose name shows in existing objects, on any cluster.
    refused(
        "flux-dock",
        None,
        &missing,
        &["database fluxdock_legacy on cluster production"],
    );
    refused(
        "wayne-ent",
        None,
        &private,
        &[
            "role old_wayne_ent_user on cluster integration",
            "\"wayne_ent\"",
        ],
    );

    assert_eq!(
        state(),
        before,
        "refusals changed nothing: servers, catalog, disk"
    );
    let listed = cli().args(["list", "--format", "json"]).run();
    listed.success();
    assert!(!listed.stdout.contains("provisioning"), "{}", listed.stdout);

    // A missing --secrets-dir is created, 0700 (its missing parents too).
    let run = cli()
        .args(["provision", "--customer", "globex-corp", "--secrets-dir"])
        .arg(&missing)
        .run();
    run.success();
    for dir in [root.path().join("new"), missing.clone()] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777,
            0o700,
            "{}",
            dir.display()
        );
    }
    for env in ["production", "integration"] {
        let file = missing.join(format!("{env}.env"));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
            0o600
        );
    }
    let name = production_name(&run.stdout);
    login(&harness.primary, &missing, "production", &name, &name).unwrap();
}

/// Runs `sql` (one or more statements, no result) or a query (its rows, `|`-joined
/// columns of text) as the superuser inside `database`.
fn psql_in(server: &pgsandbox::PgServer, database: &str, sql: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = server
            .superuser_in(database)
            .await
            .unwrap_or_else(|e| panic!("connecting to {database}: {e}"));
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rows: Vec<String> = messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("").to_string())
                        .collect::<Vec<_>>()
                        .join("|"),
                ),
                _ => None,
            })
            .collect();
        rows.join("\n")
    })
}

/// The built binary with `config` (TOML text, written beside the harness's files) and
/// the harness's pgpass.
fn odoo_db_with_config(harness: &pgsandbox::Harness, name: &str, config: &str) -> util::OdooDb {
    harness.write_client_files().unwrap();
    let path = harness.dir.join(name);
    std::fs::write(&path, config).unwrap();
    util::OdooDb::new()
        .env("ODOO_DB_CONFIG", &path)
        .env("PGPASSFILE", harness.pgpass_path())
}

/// Issue 10, item 9: `init` with the catalog on a cluster other than the one with
/// standbys creates the heartbeat database there (CREATE DATABASE alone, not in one
/// query string with the REVOKE); and it refuses, changing nothing, a catalog database
/// that odoo-db did not create: a customer's, one holding someone's objects, a system
/// one. An empty database a DBA made for odoo-db's role is accepted.
#[test]
fn init_keeps_its_catalog_out_of_databases_it_did_not_create() {
    let harness = util::fresh(pgsandbox::HarnessOptions::default());
    let integration = harness.integration.as_ref().unwrap();
    let standby = harness.standby.as_ref().unwrap();
    let on_integration = |database: &str| {
        harness.config_toml().replace(
            "[catalog]\ncluster = \"production\"\ndatabase = \"odoo_db\"",
            &format!("[catalog]\ncluster = \"integration\"\ndatabase = \"{database}\""),
        )
    };
    // A customer's database, with its data; a database of odoo-db's role that holds
    // someone's table; an empty one made by a DBA for odoo-db.
    integration
        .psql_superuser("CREATE ROLE shop_owner LOGIN")
        .unwrap();
    integration
        .psql_superuser("CREATE DATABASE shop_data OWNER shop_owner")
        .unwrap();
    psql_in(
        integration,
        "shop_data",
        "CREATE TABLE res_partner (id int)",
    );
    integration
        .psql_superuser("CREATE DATABASE used_db OWNER odoo_db_admin")
        .unwrap();
    psql_in(integration, "used_db", "CREATE TABLE invoices (id int)");
    integration
        .psql_superuser("CREATE DATABASE dba_made OWNER odoo_db_admin")
        .unwrap();

    let schemas = |server: &pgsandbox::PgServer, database: &str| {
        psql_in(
            server,
            database,
            "SELECT coalesce(string_agg(nspname, ',' ORDER BY nspname), '') FROM pg_namespace WHERE nspname IN ('catalog', 'heartbeat')",
        )
    };
    let state = || {
        (
            snapshot(&harness.primary),
            snapshot(integration),
            snapshot(standby),
            schemas(integration, "shop_data"),
            schemas(integration, "used_db"),
            schemas(integration, "postgres"),
        )
    };
    let before = state();
    for (database, says) in [
        ("shop_data", "owned by role shop_owner"),
        ("used_db", "invoices"),
        ("postgres", "system database"),
        ("template1", "system database"),
    ] {
        let run = odoo_db_with_config(&harness, "refused.toml", &on_integration(database))
            .arg("init")
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains(says) && run.stderr.contains("[catalog] database"),
            "{database}: {}",
            run.stderr
        );
    }
    assert_eq!(state(), before, "refused inits changed nothing");

    // The empty database made for odoo-db: the catalog goes there, and the heartbeat
    // database is created on production, the cluster with the standby.
    let config = on_integration("dba_made");
    let run = odoo_db_with_config(&harness, "odoo-db-dba.toml", &config)
        .arg("init")
        .run();
    run.success();
    assert!(
        run.stdout.contains("heartbeat table ready"),
        "{}",
        run.stdout
    );
    assert_eq!(schemas(integration, "dba_made"), "catalog");
    assert_eq!(
        harness
            .primary
            .psql_superuser("SELECT pg_get_userbyid(datdba), has_database_privilege('public', 'dba_made', 'CONNECT') FROM pg_database WHERE datname = 'dba_made'")
            .unwrap(),
        "odoo_db_admin|f"
    );
    assert_eq!(schemas(&harness.primary, "dba_made"), "heartbeat");
    // Idempotent, and health finds its heartbeat.
    odoo_db_with_config(&harness, "odoo-db-dba.toml", &config)
        .arg("init")
        .run()
        .success();
    let health = odoo_db_with_config(&harness, "odoo-db-dba.toml", &config)
        .args(["health", "--format", "json"])
        .run();
    assert!(health.code <= 1, "{}\n{}", health.stdout, health.stderr);
}

/// Issue 10, item 16: without `createrole_self_grant` on odoo-db's role (PostgreSQL 16+
/// gives the creator of a role ADMIN OPTION only), provision grants odoo-db's role SET
/// and INHERIT on the roles it creates, and recreate acts as the owner. On 15 and older
/// the setting does not exist and this is the ordinary path.
#[test]
fn provision_and_recreate_work_without_createrole_self_grant() {
    let harness = util::fresh(pgsandbox::HarnessOptions {
        standby: false,
        ..pgsandbox::HarnessOptions::default()
    });
    let integration = harness.integration.as_ref().unwrap();
    let major = harness.primary.major();
    if major >= 16 {
        for server in [&harness.primary, integration] {
            server
                .psql_superuser("ALTER ROLE odoo_db_admin RESET createrole_self_grant")
                .unwrap();
            assert_eq!(
                server
                    .psql_superuser("SELECT count(*) FROM pg_db_role_setting WHERE setrole = 'odoo_db_admin'::regrole")
                    .unwrap(),
                "0",
                "the setting is gone on the {} server",
                server.name
            );
        }
    }
    let cli = || util::odoo_db_for(&harness);
    cli().arg("init").run().success();
    let secrets = secrets_dir();
    let run = cli()
        .args(["provision", "--customer", "initech-labs", "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.success();
    let name = production_name(&run.stdout);
    let integration_name = format!("{name}_integration");
    for (server, db) in [(&harness.primary, &name), (integration, &integration_name)] {
        assert_eq!(
            query(
                server,
                &format!(
                    "SELECT pg_get_userbyid(datdba), pg_has_role('odoo_db_admin', '{db}', 'USAGE'), pg_has_role('odoo_db_admin', '{db}', 'MEMBER') FROM pg_database WHERE datname = '{db}'"
                )
            ),
            format!("{db}|t|t"),
            "{db} on the {} server",
            server.name
        );
        if major >= 16 {
            assert_eq!(
                query(
                    server,
                    &format!(
                        "SELECT bool_or(set_option), bool_or(inherit_option), bool_or(admin_option) FROM pg_auth_members WHERE roleid = '{db}'::regrole AND member = 'odoo_db_admin'::regrole"
                    )
                ),
                "t|t|t"
            );
        }
    }
    login(&harness.primary, secrets.path(), "production", &name, &name).unwrap();
    let recreate = cli()
        .args(["recreate", &integration_name, "--yes", "--no-backup"])
        .run();
    recreate.success();
    assert_eq!(
        query(
            integration,
            &format!("SELECT pg_get_userbyid(datdba), has_database_privilege('public', '{integration_name}', 'CONNECT') FROM pg_database WHERE datname = '{integration_name}'")
        ),
        format!("{integration_name}|f")
    );
}

/// Issue 10, item 3: a superuser hands an integration database to a built-in role (or
/// to a role that holds one through a group); recreate refuses (exit 2) and odoo-db's
/// role never becomes a member of it, the database left in place.
#[test]
fn recreate_never_grants_odoo_db_a_privileged_owner() {
    let harness = initialized();
    let integration = harness.integration.as_ref().unwrap();
    integration
        .psql_superuser(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wide_files_group') THEN \
             CREATE ROLE wide_files_group NOLOGIN; GRANT pg_read_server_files TO wide_files_group; \
             CREATE ROLE wide_files_user LOGIN IN ROLE wide_files_group; END IF; END $$",
        )
        .unwrap();
    for owner in ["pg_execute_server_program", "wide_files_user"] {
        let customer = unique("escal");
        let secrets = secrets_dir();
        let run = provision(&customer, secrets.path());
        run.success();
        let db = format!("{}_integration", production_name(&run.stdout));
        integration
            .psql_superuser(&format!("ALTER DATABASE {db} OWNER TO {owner}"))
            .unwrap();
        let recreate = odoo_db()
            .args(["recreate", &db, "--yes", "--no-backup"])
            .run();
        recreate.expect_code(2);
        assert!(recreate.stderr.contains(owner), "{}", recreate.stderr);
        assert_eq!(
            query(
                integration,
                &format!(
                    "SELECT pg_has_role('odoo_db_admin', '{owner}', 'MEMBER'), \
                            pg_has_role('odoo_db_admin', 'pg_execute_server_program', 'MEMBER'), \
                            pg_has_role('odoo_db_admin', 'pg_read_server_files', 'MEMBER'), \
                            (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}')"
                )
            ),
            format!("f|f|f|{owner}"),
            "odoo-db's role gained nothing; {db} is still there"
        );
    }
}

/// Two inits at once on a new cluster (two timers, two DBAs, two test modules) once
/// made one fail: both sent CREATE DATABASE, and the loser got SQLSTATE 23505 on
/// pg_database's unique index, not the 42P04 that init accepted. Every one succeeds now.
#[test]
fn concurrent_inits_on_a_new_cluster_all_succeed() {
    let harness = util::fresh(pgsandbox::HarnessOptions::default());
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| util::odoo_db_for(&harness).arg("init").run()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.success();
    }
    let again = util::odoo_db_for(&harness).arg("init").run();
    again.success();
    assert!(again.stdout.contains("verified"), "{}", again.stdout);
    // The catalog database exists once, closed to PUBLIC.
    let acl = harness
        .primary
        .psql_superuser("SELECT datacl FROM pg_database WHERE datname = 'odoo_db'")
        .unwrap();
    assert!(!acl.contains("=c/") && !acl.contains("=Tc/"), "{acl}");
}
