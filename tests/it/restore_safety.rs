//! `restore` against a hostile or unlucky customer database (issue 10, items 1, 6, 17):
//! the customer's code runs during the restore without odoo-db's privileges, the
//! customer's per-database settings cannot make its verified backup unrestorable, what
//! odoo-db's role could not put back is refused at plan time, a failed restore leaves
//! the database closed and says how to finish, and no credential of odoo-db's outlives
//! a kill -9.
//!
//! Each test provisions customers of its own on the shared harness and checks what a
//! DBA would check on the server afterwards (roles, memberships, settings, rows).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgsandbox::{PgServer, ADMIN_PASSWORD, ADMIN_ROLE};
use tempfile::TempDir;

use crate::util::{self, odoo_db, OdooDb, Run};

fn integration() -> &'static PgServer {
    util::shared()
        .integration
        .as_ref()
        .expect("the shared harness has an integration server")
}

/// A provisioned customer; `name` is the integration database (and role).
struct Customer {
    base: String,
    name: String,
    password: String,
    _secrets: TempDir,
    backups: TempDir,
}

impl Customer {
    fn recreate(&self, extra: &[&str]) -> OdooDb {
        odoo_db()
            .args(["recreate", &self.name, "--yes", "--backup-dir"])
            .arg(self.backups.path())
            .args(extra)
    }

    fn restore(&self) -> OdooDb {
        odoo_db().args(["restore", &self.name, "--yes"])
    }

    fn backup_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.backups.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(".dump"))
            .collect();
        files.sort();
        files
    }

    /// A session of the customer's own role in its integration database.
    async fn session(&self) -> tokio_postgres::Client {
        util::connect_tcp(integration(), &self.name, &self.password, &self.name)
            .await
            .unwrap_or_else(|e| panic!("logging in as {}: {e}", self.name))
    }
}

fn provision(tag: &str) -> Customer {
    let secrets = util::scratch_dir();
    let backups = util::scratch_dir();
    let names = util::provision_customer(&util::unique(&format!("rs{tag}")), secrets.path(), &[]);
    assert_eq!(names.len(), 2, "{names:?}");
    let password = util::env_password(secrets.path(), "integration");
    Customer {
        base: names[0].clone(),
        name: names[1].clone(),
        password,
        _secrets: secrets,
        backups,
    }
}

/// Run `sql` as the superuser in `db` (its own settings neutralized first, since the
/// customer may have set timeouts there), the session gone before returning
/// ([`util::superuser_rows`]). Returns the first column of every row.
async fn superuser_in(db: &str, sql: &str) -> Vec<Option<String>> {
    util::superuser_rows(
        integration(),
        db,
        "-c statement_timeout=0 -c lock_timeout=0 -c default_transaction_read_only=off -c DateStyle=ISO -c IntervalStyle=postgres -c search_path=public",
        sql,
    )
    .await
    .unwrap_or_else(|e| panic!("{sql} in {db}: {e}"))
}

/// One value from the maintenance database, as the superuser.
async fn server_value(sql: &str) -> String {
    superuser_in("postgres", sql)
        .await
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_default()
}

/// pg_database and the settings of `name`, as the server shows them.
async fn properties(name: &str) -> String {
    server_value(&format!(
        "SELECT (to_jsonb(d) - 'oid' - 'datfrozenxid' - 'datminmxid' - 'datlastsysoid')::text
                || ' settings=' || coalesce((
                    SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0))::text, '*')
                                      || ':' || s.setconfig::text, ' | ' ORDER BY s.setrole)
                      FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '<none>')
           FROM pg_database d WHERE datname = '{name}'"
    ))
    .await
}

/// Throwaway step roles of `name` still on the server, and still recorded.
async fn step_roles_left(name: &str) -> (String, i64) {
    let on_server = server_value(&format!(
        "SELECT coalesce(string_agg(rolname, ','), '') FROM pg_roles
          WHERE rolname LIKE 'odoo_db\\_step\\_%'
            AND shobj_description(oid, 'pg_authid') LIKE '%of {name};%'"
    ))
    .await;
    let catalog = util::admin_in(&util::shared().primary, "odoo_db").await;
    let recorded: i64 = catalog
        .query_one(
            "SELECT count(*) FROM catalog.step_roles WHERE database = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    (on_server, recorded)
}

#[track_caller]
fn assert_stderr(run: &Run, code: i32, needles: &[&str]) {
    run.expect_code(code);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr must say {needle:?}:\n{}",
            run.stderr
        );
    }
}

/// Item 17: a customer's function in a CHECK constraint runs once per restored row; it
/// `RESET ROLE`s and tries to create a role, to grant itself (whoever it now is) a
/// built-in role, to grant one to the customer and to give the customer CREATEDB. Run
/// as odoo-db's role through SET ROLE, all of it would succeed; run as the throwaway
/// step role, none of it does, and the restore completes.
#[tokio::test]
async fn customer_code_run_by_a_restore_gets_none_of_odoo_dbs_privileges() {
    let c = provision("esc");
    let evil = format!("{}_evil", c.base);
    let customer = c.session().await;
    customer
        .batch_execute(&format!(
            r#"CREATE TABLE public.attempts (login text, acting_as text, statement text, outcome text);
               CREATE FUNCTION public.escalate(i int) RETURNS boolean LANGUAGE plpgsql AS $f$
               DECLARE
                   statement text;
               BEGIN
                   FOREACH statement IN ARRAY ARRAY[
                       'CREATE ROLE {evil} LOGIN',
                       'GRANT pg_execute_server_program TO CURRENT_USER',
                       'GRANT pg_read_server_files TO {owner}',
                       'ALTER ROLE {owner} CREATEDB',
                       'GRANT {owner} TO {evil}'
                   ] LOOP
                       BEGIN
                           RESET ROLE;
                           EXECUTE statement;
                           INSERT INTO public.attempts VALUES (session_user, current_user, statement, 'done');
                       EXCEPTION WHEN OTHERS THEN
                           INSERT INTO public.attempts VALUES (session_user, current_user, statement, SQLERRM);
                       END;
                   END LOOP;
                   RETURN true;
               END $f$;
               CREATE TABLE public.t (i int PRIMARY KEY CHECK (public.escalate(i)));
               INSERT INTO public.t SELECT generate_series(1, 3);"#,
            owner = c.name
        ))
        .await
        .unwrap();
    drop(customer);
    c.recreate(&[]).run().success();

    let run = c.restore().run();
    run.success();

    assert_eq!(
        server_value(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{evil}'"
        ))
        .await,
        "0",
        "the customer's code created a role during the restore"
    );
    assert_eq!(
        server_value(&format!(
            "SELECT pg_has_role('{ADMIN_ROLE}', 'pg_execute_server_program', 'MEMBER')"
        ))
        .await,
        "f",
        "odoo-db's role was granted pg_execute_server_program by the customer's code"
    );
    assert_eq!(
        server_value(&format!(
            "SELECT pg_has_role('{}', 'pg_read_server_files', 'MEMBER')::text || rolcreatedb::text
               FROM pg_roles WHERE rolname = '{}'",
            c.name, c.name
        ))
        .await,
        "falsefalse",
        "the customer's role gained a built-in role or CREATEDB"
    );
    // The code did run during the restore, as the throwaway role, and was refused.
    let during_restore = superuser_in(
        &c.name,
        "SELECT login || ' ' || statement || ': ' || outcome FROM attempts
          WHERE login LIKE 'odoo_db\\_step\\_%' ORDER BY 1",
    )
    .await;
    assert!(
        during_restore.len() >= 5,
        "the function ran during the restore as a throwaway role: {during_restore:?}"
    );
    for attempt in &during_restore {
        let attempt = attempt.as_deref().unwrap_or_default();
        assert!(
            !attempt.ends_with(": done"),
            "the customer's code succeeded in {attempt}"
        );
    }
    assert_eq!(
        superuser_in(&c.name, "SELECT count(*) FROM t").await,
        vec![Some("3".to_string())]
    );
    assert_eq!(
        step_roles_left(&c.name).await,
        (String::new(), 0),
        "the throwaway role is dropped and forgotten"
    );
}

/// Item 1: the settings a database owner may give its own database (and its role in
/// it) must not make its verified backup unrestorable: they come back after the data,
/// and the restore session overrides them. Both the straight restore and one killed
/// after the data and finished by a rerun.
#[tokio::test]
async fn settings_the_owner_gave_its_database_never_block_its_restore() {
    let c = provision("set");
    let customer = c.session().await;
    // A trusted extension the customer creates itself (PostgreSQL 13+): its CREATE
    // EXTENSION is what a read-only default broke first.
    let trusted: i32 = server_value("SHOW server_version_num")
        .await
        .parse()
        .unwrap();
    if trusted >= 130000 {
        customer
            .batch_execute("CREATE EXTENSION pgcrypto")
            .await
            .unwrap();
    }
    customer
        .batch_execute(&format!(
            r#"CREATE TEMPORARY TABLE scratch (i int); -- leaves a pg_temp_N schema behind
               CREATE TABLE public.t (i int PRIMARY KEY, d date, iv interval, ts timestamptz, h text);
               INSERT INTO public.t
               SELECT g, date '2024-01-31' + g, make_interval(days => -g, secs => g), timestamptz '2024-06-11 10:15:30+02' + g * interval '1 hour',
                      md5(g::text)
                 FROM generate_series(1, 2000) g;
               CREATE INDEX ON public.t (h);
               ALTER DATABASE {name} SET default_transaction_read_only = on;
               ALTER DATABASE {name} SET default_transaction_isolation = 'serializable';
               ALTER DATABASE {name} SET default_transaction_deferrable = on;
               ALTER DATABASE {name} SET statement_timeout = '1ms';
               ALTER DATABASE {name} SET lock_timeout = '1ms';
               ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '1ms';
               ALTER DATABASE {name} SET search_path = nowhere;
               ALTER DATABASE {name} SET "DateStyle" = 'SQL, DMY';
               ALTER DATABASE {name} SET "IntervalStyle" = 'sql_standard';
               ALTER DATABASE {name} SET work_mem = '64kB';
               ALTER ROLE {name} IN DATABASE {name} SET default_transaction_read_only = on;
               ALTER ROLE {name} IN DATABASE {name} SET statement_timeout = '1ms';"#,
            name = c.name
        ))
        .await
        .unwrap();
    drop(customer);
    let content = "SELECT count(*)::text || ' ' || md5(string_agg(t::text, ',' ORDER BY i)) FROM t";
    let before_data = superuser_in(&c.name, content).await;
    let before = properties(&c.name).await;
    assert!(
        before.contains("default_transaction_read_only=on"),
        "{before}"
    );

    c.recreate(&[]).run().success();
    assert_eq!(properties(&c.name).await, before, "recreate keeps them");

    let run = c.restore().run();
    run.success();
    assert_eq!(
        properties(&c.name).await,
        before,
        "every setting back, in order"
    );
    assert_eq!(superuser_in(&c.name, content).await, before_data);

    // Killed after the data, before the settings: the rerun puts them back.
    let run = c
        .restore()
        .env("FAILPOINTS", "restore-after-restore=panic")
        .run();
    assert_eq!(run.code, 101, "{}", run.stderr);
    c.restore().run().success();
    assert_eq!(properties(&c.name).await, before);
    assert_eq!(superuser_in(&c.name, content).await, before_data);
    assert_eq!(step_roles_left(&c.name).await, (String::new(), 0));
}

/// Row-level security is the customer's to turn on in its own database. Its policies do
/// not restrict the table's owner, and odoo-db's role, which inherits the owner's
/// privileges, counts as the owner: recreate's backup holds every row and restore brings
/// them back, policy included. Forced on the owner too, the policies would hide rows
/// from any dump (pg_dump's `row_security = off` refuses the table): the backup fails
/// with PostgreSQL's hint and nothing is dropped.
#[tokio::test]
async fn row_level_security_the_customer_turned_on_hides_no_row_from_its_backup() {
    let c = provision("rls");
    let customer = c.session().await;
    customer
        .batch_execute(
            "CREATE TABLE public.secret (i int PRIMARY KEY, h text);
             INSERT INTO public.secret SELECT g, md5(g::text) FROM generate_series(1, 500) g;
             ALTER TABLE public.secret ENABLE ROW LEVEL SECURITY;
             CREATE POLICY nobody ON public.secret USING (false);",
        )
        .await
        .unwrap();
    drop(customer);
    let content =
        "SELECT count(*)::text || ' ' || md5(string_agg(s::text, ',' ORDER BY i)) FROM secret s";
    let security = "SELECT relrowsecurity::text || ' ' || relforcerowsecurity::text || ' '
                           || (SELECT string_agg(polname, ',') FROM pg_policy WHERE polrelid = c.oid)
                      FROM pg_class c WHERE oid = 'public.secret'::regclass";
    let before_data = superuser_in(&c.name, content).await;
    assert!(
        before_data[0].as_deref().unwrap().starts_with("500 "),
        "{before_data:?}"
    );
    let before_security = superuser_in(&c.name, security).await;
    assert_eq!(before_security, [Some("true false nobody".to_string())]);

    c.recreate(&[]).run().success();
    c.restore().run().success();
    assert_eq!(superuser_in(&c.name, content).await, before_data);
    assert_eq!(superuser_in(&c.name, security).await, before_security);

    // Forced on the owner: no dump can see the rows, so none is taken.
    c.session()
        .await
        .batch_execute("ALTER TABLE public.secret FORCE ROW LEVEL SECURITY")
        .await
        .unwrap();
    let backups_before = c.backup_files();
    let run = c.recreate(&[]).run();
    assert_stderr(
        &run,
        1,
        &[
            "row-level security",
            "NO FORCE ROW LEVEL SECURITY",
            "nothing was dropped",
        ],
    );
    assert_eq!(superuser_in(&c.name, content).await, before_data);
    assert_eq!(c.backup_files(), backups_before);
}

/// Item 1: what odoo-db's role could not create again from the backup (an extension
/// that is not trusted, created by a superuser; an object owned by another role) is
/// refused at plan time, named, with nothing changed; `--no-backup` goes ahead.
#[tokio::test]
async fn what_the_restore_could_not_recreate_is_refused_at_plan_time() {
    let c = provision("ext");
    let other = format!("{}_other", c.base);
    superuser_in(
        &c.name,
        &format!(
            "CREATE EXTENSION file_fdw;
             CREATE TABLE public.kept (i int);
             ALTER TABLE public.kept OWNER TO {owner};
             CREATE ROLE {other};
             CREATE TABLE public.theirs (i int);
             ALTER TABLE public.theirs OWNER TO {other};",
            owner = c.name
        ),
    )
    .await;
    let before = properties(&c.name).await;
    let oid = server_value(&format!(
        "SELECT oid FROM pg_database WHERE datname = '{}'",
        c.name
    ))
    .await;

    let run = c.recreate(&[]).run();
    assert_stderr(
        &run,
        2,
        &[
            "file_fdw",
            "not trusted",
            "public.theirs",
            &other,
            "--no-backup",
            "nothing was changed",
        ],
    );
    assert!(
        !run.stderr.contains("public.kept"),
        "the owner's own table is fine:\n{}",
        run.stderr
    );
    assert_eq!(properties(&c.name).await, before);
    assert_eq!(
        server_value(&format!(
            "SELECT oid FROM pg_database WHERE datname = '{}'",
            c.name
        ))
        .await,
        oid
    );
    assert!(c.backup_files().is_empty(), "no backup was written");
    let catalog = util::admin_in(&util::shared().primary, "odoo_db").await;
    let runs: i64 = catalog
        .query_one(
            "SELECT count(*) FROM catalog.recreates WHERE database = $1",
            &[&c.name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 0, "nothing recorded in the catalog");

    // A backup made outside odoo-db (pg_dump as the superuser) holds file_fdw: restore
    // refuses it before dropping anything.
    let foreign = c.backups.path().join(format!("{}-by-hand.dump", c.name));
    let server = integration();
    let out = std::process::Command::new(server.bin("pg_dump"))
        .arg("-h")
        .arg(&server.socket_dir)
        .args([
            "-p",
            &server.port.to_string(),
            "-U",
            "postgres",
            "-Fc",
            "-f",
        ])
        .arg(&foreign)
        .arg(&c.name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // restore takes only backups the catalog recorded (issue 10, item 2): record this
    // one as odoo-db would have, so that what is refused here is its content.
    std::fs::set_permissions(
        &foreign,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let bytes = std::fs::read(&foreign).unwrap();
    let digest: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    catalog
        .execute(
            "INSERT INTO catalog.backups (path, database, bytes, sha256) VALUES ($1, $2, $3, $4)",
            &[
                &foreign.to_string_lossy().into_owned(),
                &c.name,
                &(bytes.len() as i64),
                &digest,
            ],
        )
        .await
        .unwrap();

    // Without a backup there is nothing to restore, so nothing to refuse.
    c.recreate(&["--no-backup"]).run().success();
    let emptied = server_value(&format!(
        "SELECT oid FROM pg_database WHERE datname = '{}'",
        c.name
    ))
    .await;
    let run = odoo_db()
        .args(["restore", &c.name, "--yes", "--backup"])
        .arg(&foreign)
        .run();
    assert_stderr(&run, 2, &["file_fdw", "not trusted", "nothing was changed"]);
    assert_eq!(
        server_value(&format!(
            "SELECT oid FROM pg_database WHERE datname = '{}'",
            c.name
        ))
        .await,
        emptied,
        "the database was not dropped"
    );
    assert_eq!(
        superuser_in(
            &c.name,
            "SELECT count(*) FROM pg_extension WHERE extname = 'file_fdw'"
        )
        .await,
        vec![Some("0".to_string())]
    );
    superuser_in("postgres", &format!("DROP ROLE {other}")).await;
}

/// Item 1: a restore that fails anyway (here the customer's own code refuses to be
/// restored) leaves the database empty and closed, the backup untouched and no
/// throwaway role, names the object, and prints the command that finishes the job.
#[tokio::test]
async fn a_failed_restore_leaves_the_database_closed_and_says_how_to_finish() {
    let c = provision("fail");
    let customer = c.session().await;
    customer
        .batch_execute(
            r#"CREATE FUNCTION public.refuse(i int) RETURNS boolean LANGUAGE plpgsql AS $f$
               BEGIN
                   IF session_user::text LIKE 'odoo_db\_step\_%' THEN
                       RAISE EXCEPTION 'row % refuses to be restored', i;
                   END IF;
                   RETURN true;
               END $f$;
               CREATE TABLE public.picky (i int CHECK (public.refuse(i)));
               INSERT INTO public.picky VALUES (1);"#,
        )
        .await
        .unwrap();
    drop(customer);
    c.recreate(&[]).run().success();
    let backup = c.backup_files().pop().unwrap();
    let digest = std::fs::read(&backup).unwrap();

    for attempt in 0..2 {
        let run = c.restore().run();
        assert_stderr(
            &run,
            1,
            &[
                "refuses to be restored",
                "picky",
                "closed",
                &format!(
                    "odoo-db restore {} --backup {} --yes",
                    c.name,
                    backup.display()
                ),
            ],
        );
        assert_eq!(
            server_value(&format!(
                "SELECT datallowconn FROM pg_database WHERE datname = '{}'",
                c.name
            ))
            .await,
            "f",
            "attempt {attempt}: the database is left closed"
        );
        assert_eq!(std::fs::read(&backup).unwrap(), digest, "backup untouched");
        assert_eq!(step_roles_left(&c.name).await, (String::new(), 0));
    }
}

/// Files under `dir` (recursively, not following symlinks) whose content contains
/// `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if metadata.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Where a leaked copy of odoo-db's password could be: `tmpdir` (the killed run's
/// TMPDIR, where every temporary file it makes goes: the `tempfile` crate and
/// `std::env::temp_dir` follow TMPDIR), the backup directory, /dev/shm and /var/tmp.
/// /tmp itself is checked after the whole test suite by
/// `scripts/check-no-leaked-password` (during the suite it holds the harnesses' own
/// client files, which the tests write for odoo-db on purpose).
fn leaked_password(tmpdir: &Path, backups: &Path) -> Vec<PathBuf> {
    let needle = ADMIN_PASSWORD.as_bytes();
    let mut found = Vec::new();
    for dir in [
        tmpdir,
        backups,
        Path::new("/dev/shm"),
        Path::new("/var/tmp"),
    ] {
        found.extend(files_containing(dir, needle));
    }
    found
}

/// Wait until `condition` (a query on the integration server) is true.
async fn wait_for(what: &str, sql: &str, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if server_value(sql).await == "t" {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("odoo-db ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 6: odoo-db killed with SIGKILL while pg_dump runs and while pg_restore runs
/// leaves its password in no file (the child got it in its environment), and the
/// reruns finish the jobs and drop the throwaway role the killed restore left.
#[tokio::test]
async fn a_kill_during_backup_or_restore_leaves_no_password_on_disk() {
    let c = provision("kill");
    let hold = format!("{}_hold", c.base);
    let tmpdir = tempfile::tempdir().unwrap();
    let customer = c.session().await;
    // The restore sleeps in the customer's code while the role `hold` exists.
    customer
        .batch_execute(&format!(
            r#"CREATE FUNCTION public.slow(i int) RETURNS boolean LANGUAGE plpgsql AS $f$
               BEGIN
                   IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '{hold}') THEN
                       PERFORM pg_catalog.pg_sleep(60);
                   END IF;
                   RETURN true;
               END $f$;
               CREATE TABLE public.t (i int CHECK (public.slow(i)));
               INSERT INTO public.t SELECT generate_series(1, 100);"#
        ))
        .await
        .unwrap();

    // During the backup: the customer holds a lock pg_dump waits for.
    customer
        .batch_execute("BEGIN; LOCK TABLE public.t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut run = c.recreate(&[]).env("TMPDIR", tmpdir.path()).spawn();
    wait_for(
        "pg_dump waits for the customer's lock",
        &format!(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = '{}' AND usename = '{ADMIN_ROLE}' AND wait_event_type = 'Lock')",
            c.name
        ),
        &mut run,
    )
    .await;
    run.kill().unwrap();
    run.wait().unwrap();
    let leaked = leaked_password(tmpdir.path(), c.backups.path());
    assert!(leaked.is_empty(), "the password is on disk in {leaked:?}");
    customer.batch_execute("ROLLBACK").await.unwrap();
    drop(customer);
    c.recreate(&[]).run().success();

    // During the restore: pg_restore, logged in as the throwaway role, sleeps in the
    // customer's code.
    superuser_in("postgres", &format!("CREATE ROLE {hold}")).await;
    let mut run = c.restore().env("TMPDIR", tmpdir.path()).spawn();
    wait_for(
        "pg_restore runs the customer's code",
        &format!(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = '{}' AND usename LIKE 'odoo_db\\_step\\_%' AND wait_event = 'PgSleep')",
            c.name
        ),
        &mut run,
    )
    .await;
    run.kill().unwrap();
    run.wait().unwrap();
    let leaked = leaked_password(tmpdir.path(), c.backups.path());
    assert!(leaked.is_empty(), "the password is on disk in {leaked:?}");
    let (left, recorded) = step_roles_left(&c.name).await;
    assert!(
        !left.is_empty() && recorded == 1,
        "the killed restore's role is still there, recorded: {left:?} {recorded}"
    );

    superuser_in("postgres", &format!("DROP ROLE {hold}")).await;
    let run = c.restore().run();
    run.success();
    assert_eq!(
        superuser_in(&c.name, "SELECT count(*) FROM t").await,
        vec![Some("100".to_string())]
    );
    assert_eq!(
        step_roles_left(&c.name).await,
        (String::new(), 0),
        "the rerun dropped the killed run's throwaway role"
    );
    let leaked = leaked_password(tmpdir.path(), c.backups.path());
    assert!(leaked.is_empty(), "the password is on disk in {leaked:?}");
}

/// Item 17: every throwaway role joins the group role `odoo_db_step` (which `init`
/// creates, NOLOGIN and without rights), so whatever the group has, customer code gets.
/// A group that was given a built-in role, or LOGIN, is refused before anything changes;
/// made harmless again, the restore goes through. On a harness of its own: the group is
/// shared by every restore of a server.
#[tokio::test]
async fn a_step_group_role_with_any_right_is_refused_before_anything_changes() {
    let harness = util::fresh(pgsandbox::HarnessOptions {
        standby: false,
        ..Default::default()
    });
    let server = harness.integration.as_ref().unwrap();
    let psql = |sql: &str| {
        server
            .psql_superuser(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .trim()
            .to_string()
    };
    util::odoo_db_for(&harness).arg("init").run().success();
    assert_eq!(
        psql(
            "SELECT rolcanlogin::text || rolsuper::text || rolcreaterole::text
               FROM pg_roles WHERE rolname = 'odoo_db_step'"
        ),
        "falsefalsefalse",
        "init creates the group role without rights"
    );

    let secrets = util::scratch_dir();
    let backups = util::scratch_dir();
    let run = util::odoo_db_for(&harness)
        .args(["provision", "--customer", "group-check", "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.success();
    let name = run
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("export DB_NAME="))
        .nth(1)
        .expect("the integration database's name")
        .to_string();
    let in_db = |sql: &str| {
        let out = std::process::Command::new(server.bin("psql"))
            .arg("-h")
            .arg(&server.socket_dir)
            .args([
                "-p",
                &server.port.to_string(),
                "-U",
                "postgres",
                "-d",
                &name,
            ])
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    in_db(&format!(
        "CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 10); ALTER TABLE t OWNER TO {name}"
    ));
    util::odoo_db_for(&harness)
        .args(["recreate", &name, "--yes", "--backup-dir"])
        .arg(backups.path())
        .run()
        .success();
    in_db(&format!(
        "CREATE TABLE marker (i int); ALTER TABLE marker OWNER TO {name}"
    ));
    let state = || {
        psql(&format!(
            "SELECT d.oid::text || ' ' || d.datallowconn::text || ' ' || coalesce(d.datacl::text, '')
                    || ' ' || (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'odoo_db\\_step\\_%')
               FROM pg_database d WHERE datname = '{name}'"
        ))
    };
    let catalog_runs = || async {
        util::admin_in(&harness.primary, "odoo_db")
            .await
            .query_one("SELECT count(*) FROM catalog.recreates", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    for (poison, cure) in [
        (
            "GRANT pg_read_server_files TO odoo_db_step",
            "REVOKE pg_read_server_files FROM odoo_db_step",
        ),
        (
            "ALTER ROLE odoo_db_step LOGIN",
            "ALTER ROLE odoo_db_step NOLOGIN",
        ),
    ] {
        psql(poison);
        let before = (state(), catalog_runs().await);
        let run = util::odoo_db_for(&harness)
            .args(["restore", &name, "--yes"])
            .run();
        assert_stderr(&run, 2, &["odoo_db_step", "nothing was changed"]);
        assert_eq!((state(), catalog_runs().await), before, "{poison}");
        assert_eq!(in_db("SELECT count(*) FROM marker"), "0", "{poison}");
        psql(cure);
    }
    util::odoo_db_for(&harness)
        .args(["restore", &name, "--yes"])
        .run()
        .success();
    assert_eq!(in_db("SELECT count(*) FROM t"), "10");
}
