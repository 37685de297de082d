//! The customer lifecycle (issue 14) as a DBA checks it on the servers afterwards:
//! suspend and resume (LOGIN, every CONNECT grantee, sessions), rotate (the secrets
//! file before the ALTER ROLE, old password refused, new one accepted, no plaintext in
//! a `log_statement = all` log), retire (grace, confirmation, verified archives that
//! restore with every row, both clusters emptied, tombstones), and the refusals, each
//! proved to change nothing (servers, catalog, disk).
//!
//! Each test runs with a config of its own: the shared harness's plus a `[lifecycle]`
//! section with a short grace and an archive directory in the test's temporary
//! directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgsandbox::PgServer;
use tempfile::TempDir;

use crate::util::{self, connect_tcp, odoo_db, shared, OdooDb};

mod faults;

/// Grace of the tests' config: short enough to wait for, long enough to be refused
/// right after a suspend.
const GRACE_SECS: u64 = 6;

fn primary() -> &'static PgServer {
    &shared().primary
}

fn integration() -> &'static PgServer {
    shared()
        .integration
        .as_ref()
        .expect("the shared harness has an integration server")
}

/// A 0700 temporary directory.
fn private_dir() -> TempDir {
    util::scratch_dir()
}

/// A provisioned customer with a config of its own (short grace, its own archive
/// directory) and its provision's secrets directory.
struct Customer {
    customer: String,
    /// The production database and role.
    base: String,
    secrets: TempDir,
    /// Holds the config and the archive directory.
    home: TempDir,
}

impl Customer {
    fn integration(&self) -> String {
        format!("{}_integration", self.base)
    }

    fn config(&self) -> PathBuf {
        self.home.path().join("odoo-db.toml")
    }

    fn archives(&self) -> PathBuf {
        self.home.path().join("archives")
    }

    /// `odoo-db --config <own config> <args>`.
    fn odoo(&self, args: &[&str]) -> OdooDb {
        odoo_db().arg("--config").arg(self.config()).args(args)
    }

    /// `odoo-db <command> --customer <customer> <extra>`.
    fn cmd(&self, command: &str, extra: &[&str]) -> OdooDb {
        self.odoo(&[command, "--customer", &self.customer])
            .args(extra)
    }

    /// Both environments: (server, database/role name, env name).
    fn envs(&self) -> [(&'static PgServer, String, &'static str); 2] {
        [
            (primary(), self.base.clone(), "production"),
            (integration(), self.integration(), "integration"),
        ]
    }
}

impl Customer {
    /// Run odoo-db with its own config on a pseudo-terminal (util-linux `script`),
    /// typing `input`; the exit code and everything shown on the terminal.
    fn on_a_tty(&self, args: &[&str], input: &str) -> (i32, String) {
        util::on_a_tty(&self.config(), args, input)
    }
}

fn provision(tag: &str) -> Customer {
    provision_with(tag, &[])
}

/// A customer provisioned with `extra` arguments (`--env production`, say).
fn provision_with(tag: &str, extra: &[&str]) -> Customer {
    let customer = util::unique(&format!("lc{tag}"));
    let secrets = private_dir();
    let home = private_dir();
    let config = std::fs::read_to_string(util::shared_config()).expect("the shared config");
    let archives = home.path().join("archives");
    std::fs::write(
        home.path().join("odoo-db.toml"),
        format!(
            "{config}\n[lifecycle]\ngrace = \"{GRACE_SECS}s\"\narchive_dir = {}\n",
            toml_string(&archives)
        ),
    )
    .unwrap();
    let base = util::provision_customer(&customer, secrets.path(), extra).remove(0);
    Customer {
        customer,
        base,
        secrets,
        home,
    }
}

fn toml_string(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// `DB_PASSWORD` of `<dir>/<env>.env`.
fn password(dir: &Path, env: &str) -> String {
    util::env_password(dir, env)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Log in over TCP with SCRAM as `role` into `db` (as Odoo would) and run `SELECT 1`;
/// returns once the session has left the server, so that no later snapshot sees it.
fn login(server: &PgServer, role: &str, password: &str, db: &str) -> Result<(), String> {
    runtime().block_on(async {
        let client = connect_tcp(server, role, password, db)
            .await
            .map_err(|e| odoo_db::error::describe_pg_error(&e))?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        drop(client);
        util::backend_gone(server, pid).await;
        Ok(())
    })
}

/// The first column of every row of `sql`, run as the superuser in `db`.
fn column(server: &PgServer, db: &str, sql: &str) -> Vec<Option<String>> {
    runtime().block_on(async {
        let client = server.superuser_in(db).await.unwrap();
        client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).map(str::to_string))
                }
                _ => None,
            })
            .collect()
    })
}

fn one(server: &PgServer, db: &str, sql: &str) -> Option<String> {
    column(server, db, sql).into_iter().next().flatten()
}

/// `datacl` and `rolcanlogin` of a customer's database and role on a server.
fn access(server: &PgServer, name: &str) -> (Option<String>, Option<String>) {
    (
        one(
            server,
            "postgres",
            &format!("SELECT datacl::text FROM pg_database WHERE datname = '{name}'"),
        ),
        one(
            server,
            "postgres",
            &format!("SELECT rolcanlogin::text FROM pg_roles WHERE rolname = '{name}'"),
        ),
    )
}

/// What the catalog records about the customer `c` (lifecycle tables, its databases,
/// its events).
fn catalog_snapshot(c: &Customer) -> String {
    column(
        primary(),
        "odoo_db",
        &format!(
            "SELECT concat_ws(' | ',
            'events: ' || (SELECT count(*) FROM catalog.events WHERE database LIKE '{b}%' OR detail->>'customer' = '{cu}') || E'\\n',
            (SELECT string_agg(concat_ws(',', id, database, resumed_at), ';' ORDER BY id) FROM catalog.suspensions WHERE database LIKE '{b}%'),
            (SELECT string_agg(concat_ws(',', id, database, applied_at), ';' ORDER BY id) FROM catalog.rotations WHERE database LIKE '{b}%'),
            (SELECT string_agg(concat_ws(',', id, database, step), ';' ORDER BY id) FROM catalog.retirements WHERE database LIKE '{b}%'),
            (SELECT count(*) FROM catalog.tombstones WHERE name LIKE '{b}%'),
            (SELECT string_agg(concat_ws(',', customer, retired_at), ';') FROM catalog.customers WHERE customer = '{cu}'),
            (SELECT string_agg(concat_ws(',', name, state, retired_at), ';' ORDER BY name) FROM catalog.databases WHERE name LIKE '{b}%'))",
            b = c.base,
            cu = c.customer
        ),
    )
    .into_iter()
    .flatten()
    .collect()
}

/// The customer's databases, roles (passwords included) and catalog records, and the
/// files of a directory, as they are now.
fn everything(c: &Customer, dir: Option<&Path>) -> String {
    let files = dir
        .map(|dir| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names.join(",")
        })
        .unwrap_or_default();
    let server_state = |server: &PgServer| {
        server
            .psql_superuser(&format!(
                "SELECT string_agg(format('%s|%s|%s|%s|%s', datname, pg_get_userbyid(datdba), datacl, datconnlimit, datallowconn), E'\\n' ORDER BY datname) FROM pg_database WHERE datname LIKE '{b}%';
                 SELECT string_agg(format('%s|%s|%s|%s', rolname, rolcanlogin, rolconnlimit, rolpassword), E'\\n' ORDER BY rolname) FROM pg_authid WHERE rolname LIKE '{b}%';
                 SELECT count(*) FROM pg_stat_activity WHERE datname LIKE '{b}%' OR usename LIKE '{b}%';",
                b = c.base
            ))
            .unwrap()
    };
    format!(
        "{}\n{}\n{}\n{files}",
        server_state(primary()),
        server_state(integration()),
        catalog_snapshot(c)
    )
}

/// A refusal: exit 2, and nothing changed anywhere.
#[track_caller]
fn assert_refused(c: &Customer, run: OdooDb, dir: Option<&Path>, says: &str) {
    let before = everything(c, dir);
    let result = run.run();
    result.expect_code(2);
    assert!(
        result.stderr.contains(says),
        "the refusal should say {says:?}:\n{}",
        result.stderr
    );
    assert_eq!(before, everything(c, dir), "a refusal changed something");
}

/// audit's `suspension` finding about customer `c`, if any (a suspend someone undid in
/// part, or one that never finished).
fn suspension_finding(c: &Customer) -> Option<serde_json::Value> {
    let audit = c.odoo(&["audit", "--format", "json"]).run();
    let report: serde_json::Value =
        serde_json::from_str(&audit.stdout).unwrap_or_else(|e| panic!("{e}: {}", audit.stdout));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| {
            check["check"] == "suspension"
                && check["message"].as_str().unwrap_or("").contains(&c.base)
        })
        .cloned()
}

/// A third grantee (a reporting role, with grant option) and PUBLIC's CONNECT, as
/// adopted databases often have them.
fn add_grants(server: &PgServer, name: &str) -> String {
    let reporting = format!("{name}_rep");
    server
        .psql_superuser(&format!(
            "CREATE ROLE {reporting} LOGIN PASSWORD 'rep0rting';
             GRANT CONNECT ON DATABASE {name} TO PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {reporting} WITH GRANT OPTION;"
        ))
        .unwrap();
    reporting
}

#[test]
fn suspend_then_resume_puts_back_exactly_what_was_there() {
    let c = provision("susp");
    let reporting = add_grants(primary(), &c.base);
    let before: Vec<_> = c.envs().iter().map(|(s, n, _)| access(s, n)).collect();
    let prod_password = password(c.secrets.path(), "production");
    let int_password = password(c.secrets.path(), "integration");
    login(primary(), &c.base, &prod_password, &c.base).expect("the customer logs in before");

    // A session of the customer's Odoo, open across the suspend.
    let rt = runtime();
    let session = rt
        .block_on(connect_tcp(primary(), &c.base, &prod_password, &c.base))
        .unwrap();
    rt.block_on(session.simple_query("SELECT 1")).unwrap();

    let run = c.cmd("suspend", &["--yes"]).run();
    run.success();
    assert!(run.stdout.contains("production:"), "{}", run.stdout);
    assert!(run.stdout.contains("suspended"), "{}", run.stdout);

    // The role cannot log in, nobody but odoo-db can connect, the session is gone.
    for (server, name, _) in c.envs() {
        let (acl, can_login) = access(server, &name);
        assert_eq!(can_login.as_deref(), Some("false"), "{name}");
        let holders = one(
            server,
            "postgres",
            &format!(
                "SELECT string_agg(coalesce(g.rolname, 'PUBLIC'), ',') FROM pg_database d, aclexplode(d.datacl) a
                  LEFT JOIN pg_roles g ON g.oid = a.grantee
                 WHERE d.datname = '{name}' AND a.privilege_type = 'CONNECT'"
            ),
        );
        assert_eq!(
            holders.as_deref(),
            Some(pgsandbox::ADMIN_ROLE),
            "{name}: CONNECT holders ({acl:?})"
        );
    }
    assert!(login(primary(), &c.base, &prod_password, &c.base).is_err());
    assert!(login(
        integration(),
        &c.integration(),
        &int_password,
        &c.integration()
    )
    .is_err());
    assert!(login(primary(), &reporting, "rep0rting", &c.base).is_err());
    assert!(
        rt.block_on(session.simple_query("SELECT 1")).is_err(),
        "the customer's session was ended"
    );

    // A second suspend changes nothing and says so.
    let state = everything(&c, None);
    let again = c.cmd("suspend", &["--yes"]).run();
    again.success();
    assert!(
        again.stdout.contains("already suspended since"),
        "{}",
        again.stdout
    );
    // Only the event log grows.
    let but_events = |s: &str| {
        s.lines()
            .filter(|line| !line.starts_with("events: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(but_events(&state), but_events(&everything(&c, None)));

    // `list` says since when.
    let list = c.odoo(&["list"]).run();
    list.success();
    assert!(list.stdout.contains("suspended since"), "{}", list.stdout);

    // Someone undoes part of the suspend: the audit says so (WARNING).
    assert!(
        suspension_finding(&c).is_none(),
        "a suspension in place is no finding"
    );
    primary()
        .psql_superuser(&format!("ALTER ROLE {} LOGIN", c.base))
        .unwrap();
    let finding = suspension_finding(&c).expect("a suspended role that can log in is reported");
    assert_eq!(finding["status"], "WARNING", "{finding}");
    assert!(
        finding["message"].as_str().unwrap().contains("can log in"),
        "{finding}"
    );

    // resume: exactly what was there, and the same password logs in.
    c.cmd("resume", &[]).run().success();
    let resumed: Vec<_> = c.envs().iter().map(|(s, n, _)| access(s, n)).collect();
    assert_eq!(
        before, resumed,
        "datacl and rolcanlogin as before the suspend"
    );
    login(primary(), &c.base, &prod_password, &c.base).expect("logs in again");
    login(
        integration(),
        &c.integration(),
        &int_password,
        &c.integration(),
    )
    .expect("logs in again");
    login(primary(), &reporting, "rep0rting", &c.base).expect("the reporting role too");
    // A second resume has nothing to do.
    let again = c.cmd("resume", &[]).run();
    again.success();
    assert!(again.stdout.contains("not suspended"), "{}", again.stdout);
}

#[test]
fn suspend_of_a_database_with_the_default_acl_comes_back_equivalent() {
    let c = provision("dflt");
    // An adopted database often has a NULL ACL: PUBLIC may connect.
    primary()
        .psql_superuser(&format!(
            "UPDATE pg_database SET datacl = NULL WHERE datname = '{}'",
            c.base
        ))
        .unwrap();
    c.cmd("suspend", &["--env", "production", "--yes"])
        .run()
        .success();
    assert_eq!(
        one(
            primary(),
            "postgres",
            &format!(
                "SELECT has_database_privilege('public', '{}', 'CONNECT')::text",
                c.base
            )
        )
        .as_deref(),
        Some("false")
    );
    c.cmd("resume", &["--env", "production"]).run().success();
    let (acl, login) = access(primary(), &c.base);
    assert_eq!(login.as_deref(), Some("true"));
    assert_eq!(
        acl.as_deref(),
        Some(format!("{{=Tc/{0},{0}=CTc/{0}}}", c.base).as_str()),
        "the default ACL, written out"
    );
}

#[test]
fn suspend_refusals_change_nothing() {
    let c = provision("sref");
    // Production needs confirmation: no TTY and no --yes.
    assert_refused(&c, c.cmd("suspend", &[]), None, "pass --yes");
    // An unknown customer.
    assert_refused(
        &c,
        c.odoo(&["suspend", "--customer", "nobody-here-at-all", "--yes"]),
        None,
        "unknown customer",
    );
    // A customer name that is not one.
    assert_refused(
        &c,
        c.odoo(&["suspend", "--customer", "Bad_Name", "--yes"]),
        None,
        "",
    );
    // Integration only needs no confirmation; resume of a never suspended customer is
    // nothing to do.
    c.cmd("suspend", &["--env", "integration"]).run().success();
    assert_eq!(
        access(primary(), &c.base).1.as_deref(),
        Some("true"),
        "production untouched"
    );
    assert_eq!(
        access(integration(), &c.integration()).1.as_deref(),
        Some("false")
    );
    // --dry-run changes nothing.
    let before = everything(&c, None);
    let run = c.cmd("suspend", &["--dry-run"]).run();
    run.success();
    assert!(run.stdout.contains("dry run"), "{}", run.stdout);
    assert_eq!(before, everything(&c, None));
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `log_statement = all` on both servers (ALTER SYSTEM, reloaded), or back to the
/// harness's own setting (`None`: RESET).
fn log_statement(value: Option<&str>) {
    for server in [primary(), integration()] {
        let statement = match value {
            Some(value) => format!("ALTER SYSTEM SET log_statement = '{value}'"),
            None => "ALTER SYSTEM RESET log_statement".to_string(),
        };
        server.psql_superuser(&statement).unwrap();
        server.psql_superuser("SELECT pg_reload_conf()").unwrap();
    }
}

#[test]
fn rotate_writes_the_file_first_then_only_the_new_password_logs_in() {
    let c = provision("rot");
    let old_prod = password(c.secrets.path(), "production");
    let old_int = password(c.secrets.path(), "integration");
    let rt = runtime();
    // An old session of the customer, and one of odoo-db's own role in the same
    // database: --end-sessions ends the first only.
    let customer_session = rt
        .block_on(connect_tcp(primary(), &c.base, &old_prod, &c.base))
        .unwrap();
    let own_session = rt.block_on(util::admin_in(primary(), &c.base));
    log_statement(Some("all"));

    let home = private_dir();
    let dir = home.path().join("rotated");
    let run = c
        .cmd("rotate", &["--end-sessions", "--secrets-dir"])
        .arg(&dir)
        .run();
    log_statement(None);
    run.success();
    assert_eq!(
        mode_of(&dir),
        0o700,
        "the secrets directory is created 0700"
    );
    let new_prod = password(&dir, "production");
    let new_int = password(&dir, "integration");
    for (env, new) in [("production", &new_prod), ("integration", &new_int)] {
        let file = dir.join(format!("{env}.env"));
        assert_eq!(mode_of(&file), 0o600, "{env}.env");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("ADMIN_PASSWD="),
            "ADMIN_PASSWD is not rotated:\n{text}"
        );
        assert!(
            text.contains("# ADMIN_PASSWD"),
            "the file says why:\n{text}"
        );
        assert_eq!(new.len(), 20);
        assert!(!run.stdout.contains(new.as_str()) && !run.stderr.contains(new.as_str()));
        // No plaintext in the servers' logs (log_statement = all).
        for server in [primary(), integration()] {
            let log = std::fs::read_to_string(server.log_path()).unwrap_or_default();
            assert!(
                !log.contains(new.as_str()),
                "{env}'s new password is in a server log"
            );
        }
    }
    // The log does hold the statement, with the verifier only.
    let log = std::fs::read_to_string(primary().log_path()).unwrap();
    assert!(
        log.lines().any(|line| line.contains(&format!(
            "ALTER ROLE \"{}\" PASSWORD 'SCRAM-SHA-256$",
            c.base
        ))),
        "the primary's log shows the ALTER ROLE with a verifier"
    );
    assert!(run.stdout.contains("production.env"), "{}", run.stdout);
    assert_ne!(new_prod, old_prod);
    // The old password fails, the new one logs in (SCRAM).
    assert!(login(primary(), &c.base, &old_prod, &c.base).is_err());
    assert!(login(integration(), &c.integration(), &old_int, &c.integration()).is_err());
    login(primary(), &c.base, &new_prod, &c.base).expect("the new production password");
    login(integration(), &c.integration(), &new_int, &c.integration())
        .expect("the new integration password");
    assert!(
        rt.block_on(customer_session.simple_query("SELECT 1"))
            .is_err(),
        "the customer's old session was ended"
    );
    rt.block_on(own_session.simple_query("SELECT 1"))
        .expect("odoo-db's own session is left alone");

    // A rerun applies the file's password again: nothing else changes.
    let again = c.cmd("rotate", &["--secrets-dir"]).arg(&dir).run();
    again.success();
    assert_eq!(password(&dir, "production"), new_prod);
    login(primary(), &c.base, &new_prod, &c.base).expect("still the file's password");
}

#[test]
fn rotate_prepare_then_apply_at_deploy_time() {
    let c = provision("prep");
    let old = password(c.secrets.path(), "production");
    let home = private_dir();
    let dir = home.path().join("next");
    let run = c
        .cmd(
            "rotate",
            &["--env", "production", "--prepare", "--secrets-dir"],
        )
        .arg(&dir)
        .run();
    run.success();
    assert!(run.stdout.contains("--apply"), "{}", run.stdout);
    let new = password(&dir, "production");
    assert!(!dir.join("integration.env").exists());
    // Prepared only: the old password still works, the new one not yet.
    login(primary(), &c.base, &old, &c.base).expect("old password until --apply");
    assert!(login(primary(), &c.base, &new, &c.base).is_err());
    // Preparing again changes nothing.
    let again = c
        .cmd(
            "rotate",
            &["--env", "production", "--prepare", "--secrets-dir"],
        )
        .arg(&dir)
        .run();
    again.success();
    assert!(
        again.stdout.contains("prepared already"),
        "{}",
        again.stdout
    );
    assert_eq!(password(&dir, "production"), new);

    c.cmd(
        "rotate",
        &["--env", "production", "--apply", "--secrets-dir"],
    )
    .arg(&dir)
    .run()
    .success();
    login(primary(), &c.base, &new, &c.base).expect("the prepared password");
    assert!(login(primary(), &c.base, &old, &c.base).is_err());
}

#[test]
fn rotate_refusals_change_nothing() {
    let c = provision("rref");
    // The provision's directory already holds production.env and integration.env.
    assert_refused(
        &c,
        c.cmd("rotate", &["--secrets-dir"]).arg(c.secrets.path()),
        Some(c.secrets.path()),
        "already exists",
    );
    // --apply with nothing prepared.
    let empty = private_dir();
    assert_refused(
        &c,
        c.cmd("rotate", &["--apply", "--secrets-dir"])
            .arg(empty.path()),
        Some(empty.path()),
        "--prepare",
    );
    // An unknown customer.
    assert_refused(
        &c,
        c.odoo(&[
            "rotate",
            "--customer",
            "nobody-here-at-all",
            "--secrets-dir",
        ])
        .arg(empty.path()),
        Some(empty.path()),
        "unknown customer",
    );
    // A directory others can write.
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_refused(
        &c,
        c.cmd("rotate", &["--secrets-dir"]).arg(open.path()),
        Some(open.path()),
        "",
    );
    login(
        primary(),
        &c.base,
        &password(c.secrets.path(), "production"),
        &c.base,
    )
    .expect("the password is unchanged");
}

#[test]
fn rotate_killed_between_the_file_and_alter_role_is_finished_by_a_rerun() {
    let c = provision("rkill");
    let old = password(c.secrets.path(), "production");
    let home = private_dir();
    let dir = home.path().join("rot");
    let run = c
        .cmd("rotate", &["--env", "production", "--secrets-dir"])
        .arg(&dir)
        .env("FAILPOINTS", "rotate-after-secrets=panic")
        .run();
    assert_eq!(
        run.code, 101,
        "the failpoint stops the run:\n{}",
        run.stderr
    );
    // The file exists (0600) before the role has its password.
    let new = password(&dir, "production");
    assert_eq!(mode_of(&dir.join("production.env")), 0o600);
    login(primary(), &c.base, &old, &c.base).expect("the role still has the old password");
    // The rerun applies the file's password.
    c.cmd("rotate", &["--env", "production", "--secrets-dir"])
        .arg(&dir)
        .run()
        .success();
    assert_eq!(password(&dir, "production"), new);
    login(primary(), &c.base, &new, &c.base).expect("the file's password");
    assert!(login(primary(), &c.base, &old, &c.base).is_err());
}

/// suspend killed after its record (nothing changed on the servers yet), or after
/// NOLOGIN and the revokes (a session still open): the customer is reported by audit
/// while it can still log in, the rerun finishes the suspend keeping the first record,
/// and resume (itself killed once, then run again) puts back exactly what was there
/// before the first run.
#[test]
fn suspend_killed_anywhere_is_finished_by_a_rerun_and_resumes_exactly() {
    for (point, tag) in [
        ("suspend-after-record", "skrec"),
        ("suspend-after-revoke", "skrev"),
    ] {
        let c = provision(tag);
        add_grants(primary(), &c.base);
        let before: Vec<_> = c.envs().iter().map(|(s, n, _)| access(s, n)).collect();
        let prod_password = password(c.secrets.path(), "production");
        // An open session of the customer's (as its Odoo would hold).
        let session_runtime = runtime();
        let session = session_runtime
            .block_on(connect_tcp(primary(), &c.base, &prod_password, &c.base))
            .unwrap();
        let run = c
            .cmd("suspend", &["--yes"])
            .env("FAILPOINTS", format!("{point}=panic"))
            .run();
        assert_eq!(
            run.code, 101,
            "{point}: the failpoint stops the run:\n{}",
            run.stderr
        );
        if point == "suspend-after-record" {
            assert_eq!(
                c.envs()[0..1]
                    .iter()
                    .map(|(s, n, _)| access(s, n))
                    .collect::<Vec<_>>(),
                before[0..1],
                "{point}: nothing changed on the server yet"
            );
            // Recorded as suspended but able to log in: the monitoring hears of it.
            let finding = suspension_finding(&c)
                .unwrap_or_else(|| panic!("{point}: audit says nothing of {}", c.base));
            assert_eq!(finding["status"], "WARNING", "{finding}");
        } else {
            assert_eq!(access(primary(), &c.base).1.as_deref(), Some("false"));
        }
        c.cmd("suspend", &["--yes"]).run().success();
        for (server, name, _) in c.envs() {
            assert_eq!(
                access(server, &name).1.as_deref(),
                Some("false"),
                "{point}: {name}"
            );
            assert_eq!(
                one(
                    server,
                    "postgres",
                    &format!("SELECT has_database_privilege('{name}', '{name}', 'CONNECT')::text")
                )
                .as_deref(),
                Some("false"),
                "{point}: {name}'s role may not connect"
            );
        }
        assert!(
            session_runtime
                .block_on(session.simple_query("SELECT 1"))
                .is_err(),
            "{point}: the customer's session was ended"
        );
        drop(session);
        drop(session_runtime);
        // resume killed after giving access back, before closing the record: the rerun
        // finds nothing left to give and closes it.
        let run = c
            .cmd("resume", &[])
            .env("FAILPOINTS", "resume-after-grants=panic")
            .run();
        assert_eq!(run.code, 101, "resume-after-grants:\n{}", run.stderr);
        c.cmd("resume", &[]).run().success();
        let list = c.odoo(&["list"]).run();
        list.success();
        assert!(
            list.stdout
                .lines()
                .filter(|l| l.contains(&c.base))
                .all(|l| l.contains("ready")),
            "{point}: resumed everywhere:\n{}",
            list.stdout
        );
        let resumed: Vec<_> = c.envs().iter().map(|(s, n, _)| access(s, n)).collect();
        assert_eq!(before, resumed, "{point}: datacl and rolcanlogin as before");
        login(primary(), &c.base, &prod_password, &c.base)
            .unwrap_or_else(|e| panic!("{point}: logs in again: {e}"));
    }
}

/// Rows the archive must hold.
const ROWS: i64 = 1000;

/// A table of the customer's in each database, written as the customer.
fn populate(c: &Customer) {
    for (server, name, env) in c.envs() {
        runtime().block_on(async {
            let client = connect_tcp(server, &name, &password(c.secrets.path(), env), &name)
                .await
                .unwrap();
            client
                .batch_execute(&format!(
                    "CREATE TABLE orders AS SELECT i, md5(i::text) AS label FROM generate_series(1, {ROWS}) AS i"
                ))
                .await
                .unwrap();
            // Gone before anything counts the customer's sessions (a refusal's
            // before-and-after snapshot, retire's "no sessions" gate).
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            drop(client);
            util::backend_gone(server, pid).await;
        });
    }
}

/// The files of the archive directory, sorted.
fn archive_files(c: &Customer) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(c.archives())
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// `pg_restore` of `archive` into a new scratch database on `server` (as a DBA would,
/// README), and the rows of its `orders` table; the scratch database is dropped.
fn restored_rows(server: &PgServer, archive: &Path) -> i64 {
    let scratch = util::unique("scratch");
    server
        .psql_superuser(&format!("CREATE DATABASE {scratch}"))
        .unwrap();
    // As a script through psql: pg_restore 17+ sets transaction_timeout, which older
    // servers do not know (odoo-db's own restore takes the same detour).
    let script = std::process::Command::new(server.bin("pg_restore"))
        .args(["--no-owner", "--no-acl", "--file=-"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        script.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&script.stderr)
    );
    let script: String = String::from_utf8(script.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("SET transaction_timeout"))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut psql = std::process::Command::new(server.bin("psql"))
        .arg("-h")
        .arg(&server.socket_dir)
        .args([
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &scratch,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        psql.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
    }
    let out = psql.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = one(server, &scratch, "SELECT count(*) FROM orders")
        .unwrap()
        .parse()
        .unwrap();
    server
        .psql_superuser(&format!("DROP DATABASE {scratch}"))
        .unwrap();
    rows
}

/// SHA-256 (hex) of a file.
fn sha256_of(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The archives and digests the catalog recorded for the customer's retirements.
fn recorded_archives(c: &Customer) -> Vec<(String, String)> {
    column(
        primary(),
        "odoo_db",
        &format!(
            "SELECT archive_path || ' ' || archive_sha256 FROM catalog.retirements
              WHERE customer = '{}' ORDER BY environment DESC",
            c.customer
        ),
    )
    .into_iter()
    .flatten()
    .map(|line| {
        let (path, sha) = line.split_once(' ').unwrap();
        (path.to_string(), sha.to_string())
    })
    .collect()
}

/// What a finished retire leaves: nothing of the customer on either cluster, one
/// verified archive per database that restores with every row, and beside each the
/// properties and the role's definition.
fn assert_retired(c: &Customer) {
    for (server, name, _) in c.envs() {
        assert_eq!(
            one(
                server,
                "postgres",
                &format!(
                    "SELECT (SELECT count(*) FROM pg_database WHERE datname = '{name}') + (SELECT count(*) FROM pg_roles WHERE rolname = '{name}')"
                )
            )
            .as_deref(),
            Some("0"),
            "{name} is gone"
        );
    }
    assert_eq!(mode_of(&c.archives()), 0o700);
    let files = archive_files(c);
    let dumps: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".dump"))
        .collect();
    assert_eq!(dumps.len(), 2, "one archive per database: {files:?}");
    for file in &files {
        assert_eq!(mode_of(file), 0o600, "{}", file.display());
    }
    let recorded = recorded_archives(c);
    assert_eq!(recorded.len(), 2);
    for (path, sha) in &recorded {
        assert_eq!(&sha256_of(Path::new(path)), sha, "{path} is as recorded");
        let stem = path.strip_suffix(".dump").unwrap();
        let role = std::fs::read_to_string(format!("{stem}.role.sql")).unwrap();
        assert!(role.contains("CREATE ROLE"), "{role}");
        let props = std::fs::read_to_string(format!("{stem}.properties.json")).unwrap();
        assert!(props.contains("\"owner\""), "{props}");
    }
    for (path, _) in &recorded {
        let server = if path.contains("_integration-") {
            integration()
        } else {
            primary()
        };
        assert_eq!(restored_rows(server, Path::new(path)), ROWS, "{path}");
    }
}

#[test]
fn retire_after_the_grace_archives_drops_and_leaves_tombstones() {
    let c = provision("ret");
    populate(&c);
    let archives = c.archives();
    // Never suspended.
    assert_refused(
        &c,
        c.cmd("retire", &["--yes"]),
        Some(&archives),
        "not suspended",
    );
    assert_refused(
        &c,
        c.odoo(&["retire", "--customer", "nobody-here-at-all", "--yes"]),
        Some(&archives),
        "unknown customer",
    );
    c.cmd("suspend", &["--yes"]).run().success();
    // Within the grace period: the refusal says when it becomes possible.
    assert_refused(
        &c,
        c.cmd("retire", &["--yes"]),
        Some(&archives),
        "retire becomes possible on",
    );
    std::thread::sleep(Duration::from_secs(GRACE_SECS + 1));
    // No TTY and no --yes.
    assert_refused(&c, c.cmd("retire", &[]), Some(&archives), "pass --yes");
    // Someone undid part of the suspend: re-verified at run time.
    primary()
        .psql_superuser(&format!("GRANT CONNECT ON DATABASE {} TO PUBLIC", c.base))
        .unwrap();
    assert_refused(
        &c,
        c.cmd("retire", &["--yes"]),
        Some(&archives),
        "CONNECT is held by PUBLIC",
    );
    primary()
        .psql_superuser(&format!(
            "REVOKE CONNECT ON DATABASE {} FROM PUBLIC",
            c.base
        ))
        .unwrap();
    // Given to another role behind odoo-db's back: retire would end that role's database.
    primary()
        .psql_superuser(&format!(
            "CREATE ROLE {0}_other; ALTER DATABASE {0} OWNER TO {0}_other",
            c.base
        ))
        .unwrap();
    assert_refused(
        &c,
        c.cmd("retire", &["--yes"]),
        Some(&archives),
        "now owned by",
    );
    primary()
        .psql_superuser(&format!(
            "ALTER DATABASE {0} OWNER TO {0}; DROP ROLE {0}_other",
            c.base
        ))
        .unwrap();
    let dry = c.cmd("retire", &["--dry-run"]).run();
    dry.success();
    assert!(archive_files(&c).is_empty(), "a dry run writes nothing");

    // On a TTY the customer's name is typed: a wrong answer changes nothing.
    let before = everything(&c, Some(&archives));
    let retire = ["retire", "--customer", c.customer.as_str()];
    let (code, shown) = c.on_a_tty(&retire, &format!("{}\n", c.base));
    assert_eq!(code, 2, "{shown}");
    assert!(shown.contains("Type the customer name"), "{shown}");
    assert_eq!(before, everything(&c, Some(&archives)));
    let (code, shown) = c.on_a_tty(&retire, &format!("{}\n", c.customer));
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("retired"), "{shown}");
    assert_retired(&c);

    // list shows the state, list --all the tombstones with their archives.
    let list = c.odoo(&["list"]).run();
    list.success();
    assert!(
        list.stdout
            .lines()
            .any(|l| l.contains(&c.base) && l.contains("retired")),
        "{}",
        list.stdout
    );
    // Its database is gone by design: no alarm word in the size column.
    assert!(
        list.stdout
            .lines()
            .filter(|l| l.contains(&c.base))
            .all(|l| !l.contains("MISSING")),
        "{}",
        list.stdout
    );
    let all = c.odoo(&["list", "--all"]).run();
    all.success();
    for (path, _) in recorded_archives(&c) {
        assert!(all.stdout.contains(&path), "{}", all.stdout);
    }

    // A rerun has nothing to do.
    let again = c.cmd("retire", &["--yes"]).run();
    again.success();
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);

    // The names are never accepted again.
    let secrets = private_dir();
    for name in [c.base.clone(), c.integration()] {
        let run = odoo_db()
            .args([
                "provision",
                "--customer",
                &util::unique("newco"),
                "--name",
                &name,
                "--secrets-dir",
            ])
            .arg(secrets.path())
            .run();
        run.expect_code(2);
        assert!(
            run.stderr.contains("never given again") || run.stderr.contains("_integration"),
            "{}",
            run.stderr
        );
    }
    // Nor adopted, when someone makes them again by hand.
    primary()
        .psql_superuser(&format!("CREATE ROLE {0} LOGIN", c.base))
        .unwrap();
    primary()
        .psql_superuser(&format!("CREATE DATABASE {0} OWNER {0}", c.base))
        .unwrap();
    let adopt = odoo_db()
        .args([
            "adopt",
            "--customer",
            &util::unique("adopter"),
            "--name",
            &c.base,
        ])
        .run();
    adopt.expect_code(2);
    assert!(
        adopt.stderr.contains("never given again"),
        "{}",
        adopt.stderr
    );
    primary()
        .psql_superuser(&format!("DROP DATABASE {0}", c.base))
        .unwrap();
    primary()
        .psql_superuser(&format!("DROP ROLE {0}", c.base))
        .unwrap();
    // The retired customer's own name no longer restricts new names.
    let token_name = format!("{}_shop", c.customer);
    odoo_db()
        .args([
            "provision",
            "--customer",
            &util::unique("heir"),
            "--name",
            &token_name,
            "--secrets-dir",
        ])
        .arg(secrets.path())
        .run()
        .success();
    // The retired customer itself cannot come back under the same customer name.
    let back = odoo_db()
        .args(["provision", "--customer", &c.customer, "--secrets-dir"])
        .arg(private_dir().path())
        .run();
    back.expect_code(2);
}

#[test]
fn a_customer_with_production_only_is_suspended_and_retired_in_the_environment_it_has() {
    let c = provision_with("prodonly", &["--env", "production"]);
    // An environment asked for by name that the customer does not have is refused.
    assert_refused(
        &c,
        c.cmd("suspend", &["--env", "integration", "--yes"]),
        None,
        "not in the catalog",
    );
    let run = c.cmd("suspend", &["--yes"]).run();
    run.success();
    assert!(!run.stdout.contains("integration:"), "{}", run.stdout);
    assert_eq!(access(primary(), &c.base).1.as_deref(), Some("false"));
    std::thread::sleep(Duration::from_secs(GRACE_SECS + 1));
    c.cmd("retire", &["--yes"]).run().success();
    assert_eq!(
        one(
            primary(),
            "postgres",
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{}'", c.base)
        )
        .as_deref(),
        Some("0")
    );
    let dumps = archive_files(&c)
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".dump"))
        .count();
    assert_eq!(dumps, 1);
}
