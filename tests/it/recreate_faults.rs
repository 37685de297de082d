//! Hardening of recreate and restore (issue 10): planted and swapped backups, private
//! backup directories, an owner changed behind odoo-db's back, a DROP DATABASE left
//! invalid, what a rerun says, and SIGKILLs of the odoo-db process itself during the
//! backup, the drop and the restore of a database large enough for them to land there.
//!
//! A child module of `recreate` (its helpers: provision, populate, snapshot, …).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::ClientFiles;
use pgsandbox::{PgServer, ADMIN_ROLE};

use super::{
    assert_recreated, assert_refused, integration, last_run, populate, primary, properties,
    provision, snapshot, Customer, ROWS,
};
use crate::util::{self, odoo_db};

/// Run `sql` as the superuser in `db` (session gone before returning,
/// [`util::superuser_rows`]); the first column of the first row, as text.
async fn text_in(server: &PgServer, db: &str, sql: &str) -> Option<String> {
    util::superuser_rows(server, db, "", sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .next()
        .flatten()
}

/// Whether odoo-db's own role is a member of `role` (directly or not).
async fn agent_is_member_of(role: &str) -> bool {
    integration()
        .superuser()
        .await
        .unwrap()
        .query_one(
            "SELECT pg_has_role($1::text::name, $2::text::name, 'MEMBER')",
            &[&ADMIN_ROLE, &role],
        )
        .await
        .unwrap()
        .get(0)
}

/// The `.dump` files in `dir`, oldest first.
fn dumps_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(".dump"));
    files.sort();
    files
}

/// A pg_dump archive of database `name` as it is now, written by the superuser's tools
/// (not by odoo-db) to `to`: what an attacker who can read the database would plant.
fn foreign_dump(name: &str, to: &Path) {
    let server = integration();
    let out = Command::new(server.bin("pg_dump"))
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
        .arg(to)
        .arg(name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn restore(c: &Customer, extra: &[&str]) -> util::OdooDb {
    odoo_db().args(["restore", &c.name, "--yes"]).args(extra)
}

#[tokio::test]
async fn restore_takes_only_a_recorded_backup_whose_digest_matches_in_a_private_directory() {
    let c = provision("plant");
    populate(&c).await;
    let run = c.recreate(&[]).run();
    run.success();
    let written = dumps_in(c.backup_dir());
    assert_eq!(written.len(), 1, "{written:?}");
    let genuine = written[0].clone();
    let genuine_bytes = std::fs::read(&genuine).unwrap();

    // A planted archive of this very database (a table `planted`, no rows of t), named
    // as odoo-db names its backups and newer than the genuine one.
    text_in(
        integration(),
        &c.name,
        &format!(
            "CREATE TABLE planted (i int); ALTER TABLE planted OWNER TO {}",
            c.name
        ),
    )
    .await;
    let planted = c
        .backup_dir()
        .join(format!("{}-29991231T235959.999Z.dump", c.name));
    foreign_dump(&c.name, &planted);
    text_in(integration(), &c.name, "DROP TABLE planted").await;
    // The default (newest recorded) is the genuine backup, not the newer planted file.
    let run = restore(&c, &[]).run();
    run.success();
    assert!(
        run.stdout.contains(&*genuine.to_string_lossy()),
        "{}",
        run.stdout
    );
    let after = snapshot(integration(), &c.name, &[]).await;
    assert_eq!(after.rows, Some(ROWS));
    let planted_tables = text_in(
        integration(),
        &c.name,
        "SELECT count(*) FROM pg_class WHERE relname = 'planted'",
    )
    .await;
    assert_eq!(planted_tables.as_deref(), Some("0"));

    // The catalog holds its path, size and SHA-256 (computed here independently).
    let catalog = util::admin_in(primary(), "odoo_db").await;
    let row = catalog
        .query_one(
            "SELECT database, bytes, sha256 FROM catalog.backups WHERE path = $1",
            &[&genuine.to_string_lossy().into_owned()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), c.name);
    assert_eq!(row.get::<_, i64>(1), genuine_bytes.len() as i64);
    let sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&genuine_bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(row.get::<_, String>(2), sha);

    let before = snapshot(integration(), &c.name, &[&c.name]).await;

    // Named explicitly: refused, nothing changed.
    let run = restore(&c, &["--backup"]).arg(&planted).run();
    assert_refused(&run, "is not a backup that odoo-db wrote");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);

    // The genuine one swapped for other bytes (same name): refused, nothing changed.
    std::fs::copy(&planted, &genuine).unwrap();
    for extra in [&[][..], &["--backup", &genuine.to_string_lossy()][..]] {
        let run = restore(&c, extra).run();
        assert_refused(&run, "is not the file odoo-db wrote");
        assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
    }
    // Same size, one byte changed: the digest, not only the size, is checked.
    let mut flipped = genuine_bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    std::fs::write(&genuine, &flipped).unwrap();
    let run = restore(&c, &[]).run();
    assert_refused(&run, "SHA-256");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
    std::fs::write(&genuine, &genuine_bytes).unwrap();

    // A backup directory others can write: refused for restore and for recreate alike.
    std::fs::set_permissions(c.backup_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = restore(&c, &[]).run();
    assert_refused(&run, "writable by group or others");
    let run = c.recreate(&[]).run();
    assert_refused(&run, "writable by group or others");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
    assert_eq!(
        dumps_in(c.backup_dir()),
        vec![genuine.clone(), planted.clone()]
    );
    std::fs::set_permissions(c.backup_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // A backup recorded before digests were (catalog schema 2): refused with the way
    // out, and --backup cannot vouch for it.
    catalog
        .execute(
            "DELETE FROM catalog.backups WHERE path = $1",
            &[&genuine.to_string_lossy().into_owned()],
        )
        .await
        .unwrap();
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let run = restore(&c, &["--backup"]).arg(&genuine).run();
    assert_refused(
        &run,
        "written before odoo-db recorded backups' size and SHA-256",
    );
    assert!(
        run.stderr.contains("pg_restore --no-owner"),
        "{}",
        run.stderr
    );
    let run = restore(&c, &[]).run();
    assert_refused(&run, "written before odoo-db recorded backups' SHA-256");
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
}

#[tokio::test]
async fn backup_directories_are_created_0700_whatever_the_umask() {
    let c = provision("umask");
    populate(&c).await;
    let nested = c.backup_dir().join("a/b/c");
    let out = unsafe {
        Command::new(env!("CARGO_BIN_EXE_odoo-db"))
            .args(["recreate", &c.name, "--yes", "--backup-dir"])
            .arg(&nested)
            .env("ODOO_DB_CONFIG", super::shared().config_path())
            .env("PGPASSFILE", super::shared().pgpass_path())
            .pre_exec(|| {
                libc::umask(0);
                Ok(())
            })
            .output()
            .unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in ["a", "a/b", "a/b/c"] {
        let mode = std::fs::metadata(c.backup_dir().join(dir))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o700, "{dir}");
    }
    let dumps = dumps_in(&nested);
    assert_eq!(dumps.len(), 1);
    assert_eq!(
        std::fs::metadata(&dumps[0]).unwrap().permissions().mode() & 0o7777,
        0o600
    );

    // A missing --backup-dir below a directory others can write (not sticky): refused
    // before anything changes, and nothing is created there.
    let shared_dir = c.backup_dir().join("shared");
    std::fs::create_dir(&shared_dir).unwrap();
    std::fs::set_permissions(&shared_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let before = snapshot(integration(), &c.name, &[&c.name]).await;
    let run = odoo_db()
        .args(["recreate", &c.name, "--yes", "--backup-dir"])
        .arg(shared_dir.join("x/y"))
        .run();
    assert_refused(&run, "writable by group or others");
    assert!(!shared_dir.join("x").exists());
    assert_eq!(snapshot(integration(), &c.name, &[&c.name]).await, before);
}

#[tokio::test]
async fn an_owner_changed_behind_odoo_dbs_back_is_refused_and_nothing_is_granted() {
    let c = provision("owner");
    populate(&c).await;
    let superuser = integration().superuser().await.unwrap();
    for owner in ["pg_execute_server_program", "pg_read_server_files"] {
        superuser
            .batch_execute(&format!("ALTER DATABASE {} OWNER TO {owner}", c.name))
            .await
            .unwrap();
        assert!(!agent_is_member_of(owner).await);
        // (Not odoo-db's own role: concurrent tests add to its memberships. Its
        // membership in the owner is checked by itself, below.)
        let roles = [c.name.as_str(), owner];
        let before = snapshot(integration(), &c.name, &roles).await;
        for run in [
            c.recreate(&[]).run(),
            c.recreate(&["--no-backup"]).run(),
            restore(&c, &[]).run(),
        ] {
            assert_refused(&run, "but the catalog recorded owner");
            assert!(run.stderr.contains(owner), "{}", run.stderr);
        }
        assert!(
            !agent_is_member_of(owner).await,
            "odoo-db granted itself {owner}"
        );
        let after = snapshot(integration(), &c.name, &roles).await;
        assert_eq!(after, before);
        assert_eq!(after.rows, Some(ROWS), "the data is still there");
        assert!(dumps_in(c.backup_dir()).is_empty());
    }
    // Set back by a DBA: recreate goes ahead.
    superuser
        .batch_execute(&format!("ALTER DATABASE {0} OWNER TO {0}", c.name))
        .await
        .unwrap();
    c.recreate(&[]).run().success();
    assert!(!agent_is_member_of("pg_execute_server_program").await);
}

/// Stop a run at `recreate-after-block` (connections blocked, step `blocking`), then
/// make the database what an interrupted DROP DATABASE leaves on PostgreSQL 11.21,
/// 12.16, 13.12, 14.9, 15.4, 16 and later: invalid (`datconnlimit = -2`).
async fn stop_blocked_then_invalidate(c: &Customer, command: &str) {
    let run = odoo_db()
        .args([command, &c.name, "--yes"])
        .args(if command == "recreate" {
            vec![
                "--backup-dir".to_string(),
                c.backup_dir().to_string_lossy().into_owned(),
            ]
        } else {
            vec![]
        })
        .env("FAILPOINTS", "recreate-after-block=panic")
        .run();
    assert_eq!(run.code, 101, "{}", run.stderr);
    assert_eq!(
        last_run(&c.name).await,
        Some((command.to_string(), "blocking".into(), None))
    );
    integration()
        .superuser()
        .await
        .unwrap()
        .batch_execute(&format!(
            "UPDATE pg_database SET datconnlimit = -2 WHERE datname = '{}'",
            c.name
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_left_invalid_by_an_interrupted_drop_is_dropped_again() {
    let c = provision("invalid");
    populate(&c).await;
    let before = snapshot(integration(), &c.name, &[&c.name]).await;

    stop_blocked_then_invalidate(&c, "recreate").await;
    let run = c.recreate(&[]).run();
    run.success();
    assert!(
        run.stdout.contains("interrupted recreate"),
        "{}",
        run.stdout
    );
    assert_recreated(&c.name, before.properties.as_deref().unwrap(), before.oid).await;
    assert_eq!(dumps_in(c.backup_dir()).len(), 1, "no second dump");

    // The same for restore: stopped blocked, left invalid, finished by `restore`.
    stop_blocked_then_invalidate(&c, "restore").await;
    let run = restore(&c, &[]).run();
    run.success();
    assert!(run.stdout.contains("interrupted restore"), "{}", run.stdout);
    let after = snapshot(integration(), &c.name, &[&c.name]).await;
    assert_eq!(after.rows, Some(ROWS));
    assert_eq!(after.properties, before.properties);
}

#[tokio::test]
async fn finishing_an_interrupted_restore_says_what_happened() {
    let c = provision("say");
    populate(&c).await;
    c.recreate(&[]).run().success();
    let backup = dumps_in(c.backup_dir()).pop().unwrap();
    let run = restore(&c, &[])
        .env("FAILPOINTS", "recreate-after-create=panic")
        .run();
    assert_eq!(run.code, 101, "{}", run.stderr);

    // recreate (without --no-backup) finishes it as an empty database.
    let run = c.recreate(&[]).run();
    run.success();
    assert!(
        !run.stdout.contains("--no-backup"),
        "no --no-backup was given:\n{}",
        run.stdout
    );
    let said = format!("finished an interrupted restore of {}", backup.display());
    assert!(run.stdout.contains(&said), "{}", run.stdout);
    assert!(!run.stdout.contains("restored from"), "{}", run.stdout);
    assert_eq!(snapshot(integration(), &c.name, &[]).await.rows, None);
    assert_eq!(dumps_in(c.backup_dir()), vec![backup]);
}

// --- SIGKILL of the odoo-db process at many points, on a large database ---

/// Rows of the large table: ~130 MB on disk, so that the dump, the drop and the restore
/// each take long enough for a kill to land inside them.
const BIG_ROWS: i64 = 1_200_000;

/// Count and a checksum of every row of `big` (and of `t`).
async fn fingerprint(name: &str) -> String {
    text_in(
        integration(),
        name,
        "SELECT (SELECT count(*) FROM big) || ':' || (SELECT sum(hashtext(g::text || s)::bigint) FROM big)
                || ':' || (SELECT count(*) FROM t) || ':' || (SELECT sum(hashtext(s)::bigint) FROM t)",
    )
    .await
    .unwrap()
}

fn spawn(args: &[&str], dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_odoo-db"))
        .args(args)
        .arg("--yes")
        .args(if args[0] == "recreate" {
            vec!["--backup-dir".into(), dir.to_string_lossy().into_owned()]
        } else {
            vec![]
        })
        .env("ODOO_DB_CONFIG", super::shared().config_path())
        .env("PGPASSFILE", super::shared().pgpass_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Poll (never a fixed sleep) until `landed` says the run is where the kill must land,
/// then SIGKILL the odoo-db process itself. Returns what `landed` saw.
async fn kill_when<F, Fut>(mut child: Child, what: &str, mut landed: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(seen) = landed().await {
            child.kill().unwrap(); // SIGKILL, on odoo-db's own pid
            child.wait().unwrap();
            eprintln!("killed odoo-db {what}: {seen}");
            return seen;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("odoo-db ended ({status}) before the kill {what}");
        }
        assert!(Instant::now() < deadline, "never reached: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The step the unfinished run of `name` recorded.
async fn unfinished_step(catalog: &tokio_postgres::Client, name: &str) -> Option<String> {
    catalog
        .query_opt(
            "SELECT step FROM catalog.recreates WHERE database = $1 AND finished_at IS NULL",
            &[&name],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

/// An active statement on the integration server matching `pattern` (LIKE), in
/// database `datname` (None: any). Other tests run meanwhile: patterns name the database.
async fn active(server: &tokio_postgres::Client, pattern: &str, datname: Option<&str>) -> bool {
    server
        .query_one(
            "SELECT count(*) > 0 FROM pg_stat_activity
              WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()
                AND ($2::text IS NULL OR datname = $2)",
            &[&pattern, &datname],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sigkill_during_the_backup_the_drop_and_the_restore_then_reruns_converge() {
    let c = provision("faults");
    populate(&c).await;
    text_in(
        integration(),
        &c.name,
        &format!(
            "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS s
               FROM generate_series(1, {BIG_ROWS}) g;
             ALTER TABLE big OWNER TO {}",
            c.name
        ),
    )
    .await;
    let original = fingerprint(&c.name).await;
    let props = properties(integration(), &c.name).await.unwrap();
    let catalog = util::admin_in(primary(), "odoo_db").await;
    let server = integration().superuser().await.unwrap();
    let dir = c.backup_dir().to_path_buf();

    // 1. recreate, killed while pg_dump writes the backup (the .partial grows).
    let child = spawn(&["recreate", &c.name], &dir);
    kill_when(child, "during the backup", || {
        let dir = dir.clone();
        async move {
            std::fs::read_dir(&dir).ok()?.flatten().find_map(|entry| {
                let partial = entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".dump.partial");
                let len = entry.metadata().ok()?.len();
                (partial && len > 4 << 20).then(|| format!("{len} bytes of .partial written"))
            })
        }
    })
    .await;
    // Nothing dropped, no backup claimed; the database is whole.
    assert_eq!(fingerprint(&c.name).await, original);
    assert!(dumps_in(&dir).is_empty());
    assert_eq!(
        unfinished_step(&catalog, &c.name).await.as_deref(),
        Some("planned")
    );

    // 2. recreate again, killed in the drop (the DROP DATABASE statement, or at worst
    //    the step recorded right before it).
    let dropping = format!("DROP DATABASE%{}%", c.name);
    let child = spawn(&["recreate", &c.name], &dir);
    kill_when(child, "during the drop", || async {
        if active(&server, &dropping, None).await {
            return Some("DROP DATABASE running".to_string());
        }
        match unfinished_step(&catalog, &c.name).await.as_deref() {
            Some(step @ ("blocking" | "dropped" | "created")) => {
                Some(format!("step {step} recorded"))
            }
            _ => None,
        }
    })
    .await;
    let made = dumps_in(&dir);
    assert_eq!(made.len(), 1, "the second run's verified backup: {made:?}");
    // The rerun finishes the recreate from the recorded plan; nothing is dumped again.
    let run = c.recreate(&[]).run();
    run.success();
    assert!(
        run.stdout.contains("interrupted recreate"),
        "{}",
        run.stdout
    );
    assert_eq!(dumps_in(&dir), made, "no second dump, the .partial is gone");
    assert_eq!(
        properties(integration(), &c.name).await.as_deref(),
        Some(props.as_str())
    );

    // 3. restore, killed in its drop of the (empty) database.
    let child = spawn(&["restore", &c.name], &dir);
    kill_when(child, "during the restore's drop", || async {
        if active(&server, &dropping, None).await {
            return Some("DROP DATABASE running".to_string());
        }
        match unfinished_step(&catalog, &c.name).await.as_deref() {
            Some(step @ ("blocking" | "dropped" | "created")) => {
                Some(format!("step {step} recorded"))
            }
            _ => None,
        }
    })
    .await;

    // 4. restore again, killed while pg_restore copies the rows in.
    let child = spawn(&["restore", &c.name], &dir);
    kill_when(child, "during pg_restore", || async {
        active(&server, "COPY %", Some(&c.name))
            .await
            .then(|| "COPY running".to_string())
    })
    .await;

    // 5. The rerun converges: every row is back, with the recorded properties.
    let run = restore(&c, &[]).run();
    run.success();
    assert!(run.stdout.contains("interrupted restore"), "{}", run.stdout);
    assert_eq!(fingerprint(&c.name).await, original);
    assert_eq!(
        properties(integration(), &c.name).await.as_deref(),
        Some(props.as_str())
    );
    assert_eq!(
        last_run(&c.name).await,
        Some(("restore".into(), "done".into(), Some("done".into())))
    );
    assert_eq!(dumps_in(&dir), made);
}

/// The real thing behind an invalid database: the server process running DROP DATABASE
/// dies (SIGKILL, a crash of the server) after PostgreSQL marked the database invalid and
/// while it removes its files; odoo-db dies too. On a harness of its own (the server
/// restarts after the crash). Where the kill lands is reported, not asserted: the rerun
/// must converge in every case, and never ALTER the database it finds.
#[tokio::test]
async fn a_drop_whose_server_process_is_killed_is_finished_by_a_rerun() {
    let harness = util::fresh(odoo_db_harness_options());
    let server = harness.integration.as_ref().expect("integration server");
    util::odoo_db_for(&harness).arg("init").run().success();
    let secrets = util::scratch_dir();
    let run = util::odoo_db_for(&harness)
        .args(["provision", "--customer", "crash-drop", "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.success();
    let name = run
        .stdout
        .lines()
        .filter_map(|line| line.strip_prefix("export DB_NAME="))
        .nth(1)
        .expect("the integration name")
        .to_string();
    // Many files, so that removing them takes a while: the window the kill aims at.
    text_in(
        server,
        &name,
        &format!(
            "CREATE TABLE big AS SELECT g, md5(g::text) AS s FROM generate_series(1, 300000) g;
             ALTER TABLE big OWNER TO {name};
             DO $$ BEGIN FOR i IN 1..800 LOOP
                 EXECUTE format('CREATE TABLE f%s (i int PRIMARY KEY, s text)', i);
                 EXECUTE format('ALTER TABLE f%s OWNER TO {name}', i);
             END LOOP; END $$;"
        ),
    )
    .await;
    let props = properties(server, &name).await;

    let child = Command::new(env!("CARGO_BIN_EXE_odoo-db"))
        .args(["recreate", &name, "--yes", "--no-backup"])
        .env("ODOO_DB_CONFIG", harness.config_path())
        .env("PGPASSFILE", harness.pgpass_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let watcher = server.superuser().await.unwrap();
    let pattern = format!("DROP DATABASE%{name}%");
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(60);
    let landed = loop {
        let pid: Option<i32> = watcher
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1",
                &[&pattern],
            )
            .await
            .unwrap()
            .map(|row| row.get(0));
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(Instant::now() < deadline, "the drop never began");
    };
    // A server process killed by a signal makes the postmaster end every other one (our
    // watcher's too) and recover: wait for that, then until it accepts connections again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while landed && watcher.simple_query("SELECT 1").await.is_ok() {
        assert!(Instant::now() < deadline, "the server never restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(watcher);
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok(client) = server.superuser().await {
            if client.simple_query("SELECT 1").await.is_ok() {
                break client;
            }
        }
        assert!(Instant::now() < deadline, "the server did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let left: Option<(i32, bool)> = client
        .query_opt(
            "SELECT datconnlimit, datallowconn FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|row| (row.get(0), row.get(1)));
    eprintln!(
        "server process killed during DROP DATABASE: {landed}; left behind: {}",
        match left {
            Some((-2, _)) => "an invalid database (datconnlimit = -2)".to_string(),
            Some((limit, allow)) =>
                format!("a database, datconnlimit {limit}, datallowconn {allow}"),
            None => "nothing".to_string(),
        }
    );

    let run = util::odoo_db_for(&harness)
        .args(["recreate", &name, "--yes"])
        .run();
    run.success();
    assert!(
        run.stdout.contains("interrupted recreate"),
        "{}",
        run.stdout
    );
    // The recorded properties (a valid database again: datconnlimit -1), empty.
    assert_eq!(properties(server, &name).await, props);
    let tables = text_in(
        server,
        &name,
        "SELECT count(*) FROM pg_class WHERE relname IN ('big', 'f1')",
    )
    .await;
    assert_eq!(tables.as_deref(), Some("0"));
}

fn odoo_db_harness_options() -> pgsandbox::HarnessOptions {
    pgsandbox::HarnessOptions {
        standby: false,
        ..Default::default()
    }
}
