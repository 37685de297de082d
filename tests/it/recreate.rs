//! `odoo-db recreate` and `odoo-db restore` against the shared harness, run as the
//! least-privilege admin role (the configs the harness writes), each test on customers
//! of its own.
//!
//! Every refusal is checked with a snapshot of the database (every `pg_database` column
//! but the xid horizons, its settings, the roles around it, its rows) and of the
//! catalog taken before and after: "nothing was changed" is asserted, not assumed.
//! Crashes are provoked with failpoints (`FAILPOINTS=name=panic`, feature
//! `failpoints`) and with SIGKILL.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::ClientFiles;
use pgsandbox::PgServer;
use tempfile::TempDir;

use crate::util::{self, odoo_db, shared, OdooDb, Run};

const ROWS: i64 = 1000;

static INIT: Once = Once::new();

/// `odoo-db init` once per test run (it is idempotent; other modules may run it too).
fn init() {
    INIT.call_once(|| {
        odoo_db().arg("init").run().success();
    });
}

fn integration() -> &'static PgServer {
    shared()
        .integration
        .as_ref()
        .expect("the shared harness has an integration server")
}

fn primary() -> &'static PgServer {
    &shared().primary
}

/// A provisioned customer: its integration database (the one recreated), its
/// production twin, and directories of its own for secrets and backups.
struct Customer {
    /// The production database (and role).
    base: String,
    /// The integration database (and role): `<base>_integration`.
    name: String,
    secrets: TempDir,
    backups: TempDir,
}

impl Customer {
    fn backup_dir(&self) -> &Path {
        self.backups.path()
    }

    /// The backups of this database in its backup directory, oldest first.
    fn backup_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.backup_dir())
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.to_string_lossy().ends_with(".dump"));
        files.sort();
        files
    }

    /// `odoo-db recreate NAME --yes --backup-dir <own dir>` plus `extra`.
    fn recreate(&self, extra: &[&str]) -> OdooDb {
        odoo_db()
            .args(["recreate", &self.name, "--yes", "--backup-dir"])
            .arg(self.backup_dir())
            .args(extra)
    }

    /// The owner's password, from the secrets file provision wrote.
    fn password(&self) -> String {
        util::env_password(self.secrets.path(), "integration")
    }
}

/// Provision a fresh customer on both environments.
fn provision(tag: &str) -> Customer {
    init();
    let secrets = util::scratch_dir();
    let names = util::provision_customer(&util::unique(&format!("rc{tag}")), secrets.path(), &[]);
    assert_eq!(names.len(), 2, "{names:?}");
    Customer {
        base: names[0].clone(),
        name: names[1].clone(),
        secrets,
        backups: util::scratch_dir(),
    }
}

/// Run `sql` as the superuser inside database `db`, the session gone before returning
/// ([`util::superuser_rows`]). Returns the first column of the first row, if any.
async fn in_database(
    server: &PgServer,
    db: &str,
    sql: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let rows = util::superuser_rows(server, db, "", sql).await?;
    Ok(rows.into_iter().flatten().find_map(|v| v.parse().ok()))
}

/// Rows, ACL entries, settings of every kind, a connection limit and a comment: all
/// set the way an operator would, as odoo-db's own least-privilege role.
async fn populate(c: &Customer) -> String {
    let name = &c.name;
    let reader = format!("{}_reader", c.base);
    in_database(
        integration(),
        name,
        &format!(
            "CREATE TABLE t (i int PRIMARY KEY, s text);
             INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g;
             ALTER TABLE t OWNER TO {name};"
        ),
    )
    .await
    .unwrap();
    let admin = util::admin(integration()).await;
    admin
        .batch_execute(&format!(
            r#"CREATE ROLE {reader};
               GRANT CONNECT ON DATABASE {name} TO {reader};
               GRANT TEMPORARY ON DATABASE {name} TO {reader} WITH GRANT OPTION;
               ALTER DATABASE {name} SET work_mem = '7MB';
               ALTER DATABASE {name} SET search_path = "$user", public, "odd, name";
               ALTER ROLE {name} IN DATABASE {name} SET statement_timeout = '5min';
               ALTER DATABASE {name} CONNECTION LIMIT 17;
               COMMENT ON DATABASE {name} IS 'integration twin of {name}';"#
        ))
        .await
        .unwrap();
    reader
}

/// Everything recreate must preserve, as the server shows it: every `pg_database`
/// column except the oid and xid horizons, the settings, the comment.
async fn properties(server: &PgServer, name: &str) -> Option<String> {
    let client = server.superuser().await.unwrap();
    client
        .query_opt(
            "SELECT (to_jsonb(d) - 'oid' - 'datfrozenxid' - 'datminmxid' - 'datlastsysoid')::text
                    || ' comment=' || coalesce(shobj_description(d.oid, 'pg_database'), '<none>')
                    || ' settings=' || coalesce((
                        SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0))::text, '*')
                                          || ':' || s.setconfig::text, ' | ' ORDER BY s.setrole)
                          FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '<none>')
               FROM pg_database d WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

/// The whole observable state: properties, oid, rows, the roles and memberships
/// around the database, and what the catalog says.
#[derive(Debug, PartialEq)]
struct Snapshot {
    properties: Option<String>,
    oid: Option<i64>,
    rows: Option<i64>,
    roles: String,
    catalog: String,
}

async fn snapshot(server: &PgServer, name: &str, roles: &[&str]) -> Snapshot {
    let client = server.superuser().await.unwrap();
    let oid: Option<i64> = client
        .query_opt(
            "SELECT oid::bigint FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|row| row.get(0));
    let rows = if oid.is_some() {
        in_database(server, name, "SELECT count(*) FROM t")
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    let roles_text: String = client
        .query_one(
            "SELECT coalesce((SELECT string_agg(to_jsonb(r)::text, ',' ORDER BY rolname)
                                FROM pg_roles r WHERE rolname = ANY($1)), '')
                 || ' members=' || coalesce((
                    SELECT string_agg(pg_get_userbyid(roleid) || '>' || pg_get_userbyid(member), ',' ORDER BY 1)
                      FROM pg_auth_members
                     WHERE pg_get_userbyid(roleid) = ANY($1) OR pg_get_userbyid(member) = ANY($1)), '')",
            &[&roles],
        )
        .await
        .unwrap()
        .get(0);
    Snapshot {
        properties: properties(server, name).await,
        oid,
        rows,
        roles: roles_text,
        catalog: catalog_state(name).await,
    }
}

/// The catalog's view of a database: state, and its recreate/restore runs.
async fn catalog_state(name: &str) -> String {
    let catalog = util::admin_in(primary(), "odoo_db").await;
    catalog
        .query_one(
            "SELECT coalesce((SELECT string_agg(environment || ':' || state, ',') FROM catalog.databases WHERE name = $1), '<none>')
                 || ' runs=' || (SELECT count(*) FROM catalog.recreates WHERE database = $1)",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

/// The newest run of `name` in the catalog: (kind, step, outcome).
async fn last_run(name: &str) -> Option<(String, String, Option<String>)> {
    let catalog = util::admin_in(primary(), "odoo_db").await;
    catalog
        .query_opt(
            "SELECT kind, step, outcome FROM catalog.recreates WHERE database = $1 ORDER BY id DESC LIMIT 1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
}

/// Rows of `t` in a backup: restored (as the superuser) into a scratch database.
async fn rows_in_backup(backup: &Path) -> i64 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let server = integration();
    let scratch = format!(
        "scratch_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let client = server.superuser().await.unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {scratch}"))
        .await
        .unwrap();
    // pg_restore writes the script and psql runs it: the one preamble line that
    // pg_restore 17+ writes and older servers reject is left out (see
    // odoo_db::backup), so this works whatever client and server versions meet.
    let script = Command::new(server.bin("pg_restore"))
        .args(["--no-owner", "--no-privileges", "-f", "-"])
        .arg(backup)
        .output()
        .unwrap();
    assert!(
        script.status.success(),
        "pg_restore of {}: {}",
        backup.display(),
        String::from_utf8_lossy(&script.stderr)
    );
    let text = String::from_utf8(script.stdout).unwrap();
    let filtered: String = text
        .split_inclusive('\n')
        .filter(|line| *line != "SET transaction_timeout = 0;\n")
        .collect();
    let mut psql = Command::new(server.bin("psql"))
        .arg("-h")
        .arg(&server.socket_dir)
        .args([
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-d",
            &scratch,
        ])
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        psql.stdin
            .take()
            .unwrap()
            .write_all(filtered.as_bytes())
            .unwrap();
    }
    let out = psql.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "restoring {} into {scratch}: {}",
        backup.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = in_database(server, &scratch, "SELECT count(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    client
        .batch_execute(&format!("DROP DATABASE {scratch}"))
        .await
        .unwrap();
    rows
}

/// The database was recreated faithfully: same properties, new oid, empty, open.
async fn assert_recreated(name: &str, before: &str, old_oid: Option<i64>) {
    let after = properties(integration(), name)
        .await
        .expect("the database exists");
    assert_eq!(
        after, before,
        "properties of {name} differ after the recreate"
    );
    assert!(after.contains("\"datallowconn\": true"), "{after}");
    let snap = snapshot(integration(), name, &[]).await;
    assert_ne!(snap.oid, old_oid, "{name} was not recreated (same oid)");
    assert_eq!(snap.rows, None, "the old table must be gone from {name}");
    assert!(
        snap.catalog.starts_with("integration:ready"),
        "{}",
        snap.catalog
    );
}

#[track_caller]
fn assert_refused(run: &Run, needle: &str) {
    run.expect_code(2);
    assert!(
        run.stderr.contains(needle),
        "the refusal must say {needle:?}; stderr:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("nothing was changed"),
        "stderr:\n{}",
        run.stderr
    );
}

/// The shared harness's config with `edit` applied, written to a file of its own.
fn config_with(dir: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let path = dir.join("odoo-db.toml");
    std::fs::write(&path, edit(shared().config_toml())).unwrap();
    path
}

fn odoo_db_with_config(config: &Path) -> OdooDb {
    OdooDb::new()
        .env("ODOO_DB_CONFIG", config)
        .env("PGPASSFILE", shared().pgpass_path())
}

#[tokio::test]
async fn production_and_malformed_names_are_refused_whatever_the_flags() {
    let c = provision("prod");
    populate(&c).await;
    let roles = [c.base.as_str(), c.name.as_str()];
    let production_before = snapshot(primary(), &c.base, &roles).await;
    let integration_before = snapshot(integration(), &c.name, &roles).await;

    for args in [
        vec!["recreate", c.base.as_str(), "--yes", "--no-backup"],
        vec!["recreate", c.base.as_str(), "--yes"],
        vec!["restore", c.base.as_str(), "--yes"],
    ] {
        let run = odoo_db().args(&args).run();
        assert_refused(&run, "production databases can never be dropped");
    }
    for bad in [
        "_integration",
        "Bad_integration",
        "postgres_integration",
        "pg_x_integration",
        "x_integration_integration",
    ] {
        let run = odoo_db()
            .args(["recreate", bad, "--yes", "--no-backup"])
            .run();
        run.expect_code(2);
    }
    assert_eq!(
        snapshot(primary(), &c.base, &roles).await,
        production_before
    );
    assert_eq!(
        snapshot(integration(), &c.name, &roles).await,
        integration_before
    );
}

#[tokio::test]
async fn databases_unknown_to_the_catalog_are_refused() {
    init();
    let name = format!("stray_{}_integration", std::process::id());
    let superuser = integration().superuser().await.unwrap();
    superuser
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let before = snapshot(integration(), &name, &[]).await;
    let run = odoo_db()
        .args(["recreate", &name, "--yes", "--no-backup"])
        .run();
    assert_refused(&run, "unknown to the catalog");
    let run = odoo_db().args(["restore", &name, "--yes"]).run();
    assert_refused(&run, "unknown to the catalog");
    assert_eq!(snapshot(integration(), &name, &[]).await, before);
    superuser
        .batch_execute(&format!("DROP DATABASE {name}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cluster_whose_kind_is_not_integration_is_refused() {
    let c = provision("kind");
    populate(&c).await;
    let dir = tempfile::tempdir().unwrap();
    // The two clusters swap kinds: the catalog's cluster "integration" is now
    // configured as production.
    let config = config_with(dir.path(), |text| {
        text.replace("kind = \"production\"", "kind = \"@\"")
            .replace("kind = \"integration\"", "kind = \"production\"")
            .replace("kind = \"@\"", "kind = \"integration\"")
    });
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let run = odoo_db_with_config(&config)
        .args(["recreate", &c.name, "--yes", "--no-backup"])
        .run();
    assert_refused(&run, "whose kind in the config is production");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
}

#[tokio::test]
async fn a_config_pointing_integration_at_production_refuses_every_recreate() {
    let c = provision("ident");
    populate(&c).await;
    // A database of that very name on production, which must survive.
    primary()
        .superuser()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE DATABASE {}", c.name))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let integration_url = integration().admin_url();
    let production_url = primary().admin_url();
    let config = config_with(dir.path(), |text| {
        text.replace(&integration_url, &production_url)
    });
    let on_production = snapshot(primary(), &c.name, &[&c.name]).await;
    let on_integration = snapshot(integration(), &c.name, &[&c.name]).await;
    for args in [
        vec!["recreate", c.name.as_str(), "--yes", "--no-backup"],
        vec!["recreate", c.name.as_str(), "--yes"],
        vec!["recreate", c.name.as_str(), "--dry-run"],
        vec!["restore", c.name.as_str(), "--yes"],
    ] {
        let run = odoo_db_with_config(&config).args(&args).run();
        assert_refused(&run, "production cluster production");
    }
    assert_eq!(
        snapshot(primary(), &c.name, &[&c.name]).await,
        on_production
    );
    assert_eq!(
        snapshot(integration(), &c.name, &[&c.name]).await,
        on_integration
    );
    primary()
        .superuser()
        .await
        .unwrap()
        .batch_execute(&format!("DROP DATABASE {}", c.name))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_in_recovery_is_refused() {
    let c = provision("recov");
    let dir = tempfile::tempdir().unwrap();
    let standby_url = shared().standby.as_ref().expect("standby").admin_url();
    let integration_url = integration().admin_url();
    let config = config_with(dir.path(), |text| {
        // Only the integration cluster's primary line moves to the standby.
        text.replace(
            &format!("kind = \"integration\"\nprimary = \"{integration_url}\""),
            &format!("kind = \"integration\"\nprimary = \"{standby_url}\""),
        )
    });
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains(&standby_url));
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let run = odoo_db_with_config(&config)
        .args(["recreate", &c.name, "--yes", "--no-backup"])
        .run();
    assert_refused(&run, "is in recovery");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
}

#[tokio::test]
async fn a_setting_the_agent_could_not_restore_is_refused_before_anything_changes() {
    let c = provision("suset");
    populate(&c).await;
    integration()
        .superuser()
        .await
        .unwrap()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET log_min_duration_statement = 0",
            c.name
        ))
        .await
        .unwrap();
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    for args in [&["--no-backup"][..], &[][..], &["--dry-run"][..]] {
        let run = c.recreate(args).run();
        assert_refused(&run, "log_min_duration_statement");
        assert!(run.stderr.contains("superuser"), "{}", run.stderr);
    }
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
    assert!(
        c.backup_files().is_empty(),
        "no backup may be written before a refusal"
    );
}

#[tokio::test]
async fn a_superuser_session_the_agent_cannot_end_is_refused() {
    let c = provision("susess");
    populate(&c).await;
    let server = integration();
    let mut session = Command::new(server.bin("psql"))
        .arg("-h")
        .arg(&server.socket_dir)
        .args([
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-d",
            &c.name,
            "-X",
            "-c",
            "select pg_sleep(60)",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_session(&c.name, "postgres").await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let run = c.recreate(&["--no-backup"]).run();
    assert_refused(&run, "superuser");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
    let _ = session.kill();
    let _ = session.wait();
}

#[tokio::test]
async fn without_a_tty_yes_is_required_and_a_wrong_answer_on_a_tty_changes_nothing() {
    let c = provision("tty");
    populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;

    let run = odoo_db().args(["recreate", &c.name, "--no-backup"]).run();
    assert_refused(&run, "pass --yes");
    assert!(
        run.stdout.contains("plan: recreate"),
        "the plan comes first:\n{}",
        run.stdout
    );
    let run = odoo_db().args(["restore", &c.name]).run();
    run.expect_code(2);

    let (code, output) = on_a_tty(&["recreate", &c.name, "--no-backup"], "not-the-name\n");
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("is not the database's name"), "{output}");
    let (code, output) = on_a_tty(
        &["recreate", &c.name, "--no-backup"],
        &format!("{} \n", c.name),
    );
    assert_eq!(code, 2, "a trailing space is not the name: {output}");

    let run = odoo_db().args(["recreate", &c.name, "--dry-run"]).run();
    run.success();
    assert!(run.stdout.contains("dry run"), "{}", run.stdout);
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);

    // The right name typed on a TTY goes ahead.
    let (code, output) = on_a_tty(
        &["recreate", &c.name, "--no-backup"],
        &format!("{}\n", c.name),
    );
    assert_eq!(code, 0, "{output}");
    assert_recreated(&c.name, before.properties.as_deref().unwrap(), before.oid).await;
}

/// Run odoo-db with the shared config on a pseudo-terminal, typing `input`.
fn on_a_tty(args: &[&str], input: &str) -> (i32, String) {
    util::on_a_tty(&shared().config_path(), args, input)
}

#[tokio::test]
async fn an_unreachable_catalog_fails_before_anything_is_touched() {
    let c = provision("nocat");
    populate(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let closed = pgsandbox::free_port_base(1).unwrap();
    let production_url = primary().admin_url();
    let config = config_with(dir.path(), |text| {
        text.replace(
            &production_url,
            &production_url.replace(&format!(":{}/", primary().port), &format!(":{closed}/")),
        )
    });
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let run = odoo_db_with_config(&config)
        .args(["recreate", &c.name, "--yes"])
        .arg("--backup-dir")
        .arg(c.backup_dir())
        .run();
    run.expect_code(1);
    assert!(run.stderr.contains("catalog"), "{}", run.stderr);
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
    assert!(c.backup_files().is_empty());
}

/// Wait until `user` has a session in database `name`.
async fn wait_for_session(name: &str, user: &str) {
    let client = integration().superuser().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                &[&name, &user],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no session of {user} in {name} after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn recreate_with_a_session_open_keeps_every_property_and_the_backup_holds_the_data() {
    let c = provision("full");
    populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    assert_eq!(before.rows, Some(ROWS));

    // Odoo, as the owner, in the middle of a long query.
    let server = integration();
    let mut odoo = Command::new(server.bin("psql"))
        .arg(format!(
            "host=127.0.0.1 port={} user={name} dbname={name} sslmode=disable",
            server.port,
            name = c.name
        ))
        .args(["-X", "-c", "select pg_sleep(60)"])
        .env("PGPASSWORD", c.password())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_session(&c.name, &c.name).await;

    let run = c.recreate(&[]).run();
    run.success();
    assert!(run.stdout.contains("plan: recreate"), "{}", run.stdout);
    assert!(run.stdout.contains("recreated"), "{}", run.stdout);

    // The session was ended, not waited for.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = odoo.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the open session was not ended");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the session must have been terminated");

    assert_recreated(&c.name, before.properties.as_deref().unwrap(), before.oid).await;

    let backups = c.backup_files();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = &backups[0];
    let file_name = backup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file_name.starts_with(&format!("{}-", c.name)) && file_name.ends_with("Z.dump"),
        "{file_name}"
    );
    assert_eq!(
        std::fs::metadata(backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        run.stdout.contains(&backup.to_string_lossy().into_owned()),
        "the summary names the backup"
    );
    assert_eq!(rows_in_backup(backup).await, ROWS);

    // Every step is in the event log, and the run is finished.
    let catalog = util::admin_in(primary(), "odoo_db").await;
    let steps: Vec<String> = catalog
        .query(
            "SELECT step FROM catalog.events WHERE database = $1 AND command = 'recreate' ORDER BY id",
            &[&c.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        steps,
        [
            "planned",
            "backed_up",
            "blocking",
            "dropped",
            "created",
            "done"
        ]
    );
    assert_eq!(
        last_run(&c.name).await,
        Some(("recreate".into(), "done".into(), Some("done".into())))
    );
}

/// Crash a recreate at `failpoint` (panic), check the in-between state is visible,
/// run it again, check the result and that the first backup is kept.
async fn crash_then_finish(tag: &str, failpoint: &str, step: &str, present: bool) {
    let c = provision(tag);
    populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;

    let run = c
        .recreate(&[])
        .env("FAILPOINTS", format!("{failpoint}=panic"))
        .run();
    assert_eq!(
        run.code, 101,
        "the failpoint must stop the run\n{}",
        run.stderr
    );
    let first_backups = c.backup_files();
    assert_eq!(
        first_backups.len(),
        1,
        "the backup was made before {failpoint}"
    );

    // `list` tells the truth about the in-between state.
    let list = odoo_db().args(["list", "--format", "json"]).run();
    list.success();
    let entries: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let entry = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == c.name.as_str())
        .expect("the database is listed");
    assert_eq!(entry["state"], "recreating", "{entry}");
    assert_eq!(entry["step"], step, "{entry}");
    assert_eq!(entry["present"], present, "{entry}");
    assert_eq!(
        last_run(&c.name).await,
        Some(("recreate".into(), step.into(), None))
    );

    let run = c.recreate(&[]).run();
    run.success();
    if step != "backed_up" {
        assert!(
            run.stdout.contains("interrupted recreate"),
            "{}",
            run.stdout
        );
    }
    assert_recreated(&c.name, before.properties.as_deref().unwrap(), before.oid).await;
    let backups = c.backup_files();
    assert!(
        backups.contains(&first_backups[0]),
        "the first run's backup is kept"
    );
    // Past the point of no return nothing is dumped again (it would be the empty copy).
    let expected = if step == "backed_up" { 2 } else { 1 };
    assert_eq!(backups.len(), expected, "{backups:?}");
    assert_eq!(rows_in_backup(&first_backups[0]).await, ROWS);
    assert_eq!(
        last_run(&c.name).await.map(|r| r.2),
        Some(Some("done".into()))
    );
}

#[tokio::test]
async fn killed_after_the_backup_then_rerun() {
    crash_then_finish("kbak", "recreate-after-backup", "backed_up", true).await;
}

#[tokio::test]
async fn killed_after_blocking_connections_then_rerun() {
    crash_then_finish("kblk", "recreate-after-block", "blocking", true).await;
}

#[tokio::test]
async fn killed_after_the_drop_then_rerun() {
    crash_then_finish("kdrop", "recreate-after-drop", "dropped", false).await;
}

#[tokio::test]
async fn killed_after_the_create_then_rerun() {
    crash_then_finish("kcre", "recreate-after-create", "created", true).await;
}

#[tokio::test]
async fn sigkill_while_blocked_then_rerun() {
    let c = provision("sigkill");
    populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_odoo-db"))
        .args(["recreate", &c.name, "--yes", "--backup-dir"])
        .arg(c.backup_dir())
        .env("ODOO_DB_CONFIG", shared().config_path())
        .env("PGPASSFILE", shared().pgpass_path())
        .env("FAILPOINTS", "recreate-after-block=sleep(60000)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let blocked = properties(integration(), &c.name)
            .await
            .is_some_and(|p| p.contains("\"datallowconn\": false"));
        if blocked {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "odoo-db ended before blocking connections"
        );
        assert!(Instant::now() < deadline, "connections were never blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The lock died with the process; the rerun finishes from the recorded plan.
    let run = c.recreate(&[]).run();
    run.success();
    assert!(
        run.stdout.contains("interrupted recreate"),
        "{}",
        run.stdout
    );
    assert_recreated(&c.name, before.properties.as_deref().unwrap(), before.oid).await;
    assert_eq!(
        c.backup_files().len(),
        1,
        "the first run's backup, and no second dump"
    );
}

#[tokio::test]
async fn two_recreates_at_once_one_runs_the_other_is_refused_at_once() {
    let c = provision("twice");
    populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_odoo-db"))
            .args(["recreate", &c.name, "--yes", "--backup-dir"])
            .arg(c.backup_dir())
            .env("ODOO_DB_CONFIG", shared().config_path())
            .env("PGPASSFILE", shared().pgpass_path())
            // The holder keeps the lock for 3 s, so the two surely overlap.
            .env("FAILPOINTS", "recreate-after-lock=sleep(3000)")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let started = Instant::now();
    let waiters: Vec<_> = [spawn(), spawn()]
        .into_iter()
        .map(|child| {
            std::thread::spawn(move || {
                let out = child.wait_with_output().unwrap();
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    let mut results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    results.sort_by_key(|(code, _, _)| *code);
    let (winner, loser) = (&results[0], &results[1]);
    assert_eq!(winner.0, Some(0), "one completes: {}", winner.1);
    assert_eq!(loser.0, Some(2), "the other is refused: {}", loser.1);
    assert!(loser.1.contains("in progress"), "{}", loser.1);
    // Had it waited for the lock, it would have ended after the holder (3 s asleep).
    assert!(
        loser.2 < winner.2,
        "the refused one must not wait for the lock: refused after {:?}, the other done after {:?}",
        loser.2,
        winner.2
    );

    // A restore meanwhile is refused the same way.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_odoo-db"))
        .args(["recreate", &c.name, "--yes", "--no-backup"])
        .env("ODOO_DB_CONFIG", shared().config_path())
        .env("PGPASSFILE", shared().pgpass_path())
        .env("FAILPOINTS", "recreate-after-lock=sleep(4000)")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let catalog = util::admin_in(primary(), "odoo_db").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let holding: i64 = catalog
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&format!("odoo-db recreate {}", c.name)],
            )
            .await
            .unwrap()
            .get(0);
        if holding > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first run never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = odoo_db().args(["restore", &c.name, "--yes"]).run();
    assert_refused(&run, "in progress");
    assert!(holder.wait().unwrap().success());

    assert_recreated(&c.name, before.properties.as_deref().unwrap(), before.oid).await;
}

#[tokio::test]
async fn retention_keeps_exactly_keep_backups_private_files() {
    let c = provision("keep");
    populate(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let config = config_with(dir.path(), |text| {
        let cut = text
            .find("\n[recreate]")
            .expect("the harness config has [recreate]");
        format!(
            "{}\n[recreate]\nbackup_dir = {}\nkeep_backups = 2\n",
            &text[..cut],
            toml_string(&backups.to_string_lossy())
        )
    });
    let mut made = Vec::new();
    for _ in 0..4 {
        let run = odoo_db_with_config(&config)
            .args(["recreate", &c.name, "--yes"])
            .run();
        run.success();
        let path = run
            .stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("backup")
                    .map(|r| r.trim().split(' ').next().unwrap().to_string())
            })
            .expect("the summary names the backup");
        made.push(PathBuf::from(path));
    }
    let mut kept: Vec<PathBuf> = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        made[2..].to_vec(),
        "exactly the newest keep_backups = 2"
    );
    for file in &kept {
        assert_eq!(
            std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
    }
    assert_eq!(
        std::fs::metadata(&backups).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[tokio::test]
async fn restore_after_recreate_brings_the_rows_back_with_owner_and_acl() {
    let c = provision("rest");
    let reader = populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name, &reader]).await;
    // A grant inside the database too: it must come back with the data.
    in_database(
        integration(),
        &c.name,
        &format!("GRANT SELECT ON t TO {reader}"),
    )
    .await
    .unwrap();
    c.recreate(&[]).run().success();

    // The recreate used --backup-dir; restore finds that backup through the catalog.
    let run = odoo_db().args(["restore", &c.name, "--yes"]).run();
    run.success();
    assert!(run.stdout.contains("restored"), "{}", run.stdout);
    let after = snapshot(integration(), &c.name, &[&c.name, &reader]).await;
    assert_eq!(after.rows, Some(ROWS));
    assert_eq!(
        after.properties, before.properties,
        "owner, ACL, settings as recorded"
    );
    assert_eq!(after.roles, before.roles);
    let owned = in_database(
        integration(),
        &c.name,
        &format!("SELECT count(*) FROM pg_class WHERE relname = 't' AND pg_get_userbyid(relowner) = '{}'", c.name),
    )
    .await
    .unwrap();
    assert_eq!(owned, Some(1), "objects belong to the customer's role");
    let granted = in_database(
        integration(),
        &c.name,
        &format!("SELECT count(*) FROM pg_class WHERE relname = 't' AND has_table_privilege('{reader}', oid, 'SELECT')"),
    )
    .await
    .unwrap();
    assert_eq!(granted, Some(1), "grants inside the database come back");
    assert_eq!(
        last_run(&c.name).await,
        Some(("restore".into(), "done".into(), Some("done".into())))
    );

    // Another database's backup is never restored here.
    let other = provision("rest2");
    let foreign = c.backup_files().pop().unwrap();
    let before_other = snapshot(integration(), &other.name, &[]).await;
    let run = odoo_db()
        .args(["restore", &other.name, "--yes", "--backup"])
        .arg(&foreign)
        .run();
    assert_refused(&run, "is a backup of database");
    assert_eq!(
        snapshot(integration(), &other.name, &[]).await,
        before_other
    );
}

#[tokio::test]
async fn a_restore_killed_after_the_data_is_finished_by_a_rerun() {
    let c = provision("krest");
    populate(&c).await;
    let before = properties(integration(), &c.name).await.unwrap();
    c.recreate(&[]).run().success();
    let backup = c.backup_files().pop().unwrap();

    for failpoint in ["recreate-after-create", "restore-after-restore"] {
        let run = odoo_db()
            .args(["restore", &c.name, "--yes", "--backup"])
            .arg(&backup)
            .env("FAILPOINTS", format!("{failpoint}=panic"))
            .run();
        assert_eq!(run.code, 101, "{failpoint}: {}", run.stderr);
        let run = odoo_db().args(["restore", &c.name, "--yes"]).run();
        run.success();
        assert!(run.stdout.contains("interrupted restore"), "{}", run.stdout);
        assert_eq!(
            properties(integration(), &c.name).await.as_deref(),
            Some(before.as_str()),
            "{failpoint}"
        );
        assert_eq!(
            snapshot(integration(), &c.name, &[]).await.rows,
            Some(ROWS),
            "{failpoint}"
        );
    }
}

/// Hardening (issue 10) and SIGKILL fault tests, using the helpers above.
#[path = "recreate_faults.rs"]
mod faults;
