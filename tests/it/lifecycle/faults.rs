//! retire killed between its steps (a panic at a failpoint, exit 101: no line of the
//! job's own cleanup runs past it) and run again: it converges, never dumps a second
//! time once the archive is recorded, and the archive stays intact (its SHA-256 the
//! recorded one, and it restores with every row).
//!
//! A child module of `lifecycle` (its helpers: provision, populate, assert_retired, …).

use std::time::Duration;

use super::{archive_files, assert_retired, populate, provision, recorded_archives, GRACE_SECS};

/// Suspend, wait out the grace, kill retire at `failpoint`, check what is left, rerun.
fn kill_then_finish(tag: &str, failpoint: &str) {
    let c = provision(tag);
    populate(&c);
    c.cmd("suspend", &["--yes"]).run().success();
    std::thread::sleep(Duration::from_secs(GRACE_SECS + 1));
    let run = c
        .cmd("retire", &["--yes"])
        .env("FAILPOINTS", format!("{failpoint}=panic"))
        .run();
    assert_eq!(run.code, 101, "{failpoint} stops the run:\n{}", run.stderr);
    // The production archive was written and recorded before the failpoint.
    let recorded = recorded_archives(&c);
    assert!(
        recorded.first().is_some_and(|(path, _)| !path.is_empty()),
        "{failpoint}: the archive is recorded: {recorded:?}"
    );
    let dumps_before = archive_files(&c)
        .iter()
        .filter(|f| f.to_string_lossy().ends_with(".dump"))
        .count();
    assert_eq!(dumps_before, 1, "{failpoint}: one archive so far");
    // `list` still shows the customer, not retired.
    let list = c.odoo(&["list"]).run();
    list.success();
    assert!(list.stdout.contains(&c.base), "{}", list.stdout);

    let again = c.cmd("retire", &["--yes"]).run();
    again.success();
    assert_retired(&c);
    assert_eq!(
        recorded_archives(&c)[0],
        recorded[0],
        "{failpoint}: the production archive was not made again"
    );
}

#[test]
fn retire_killed_after_the_archive_is_finished_by_a_rerun() {
    kill_then_finish("karch", "retire-after-archive");
}

#[test]
fn retire_killed_after_the_drop_of_the_database_is_finished_by_a_rerun() {
    kill_then_finish("kdrop", "retire-after-drop-database");
}

#[test]
fn retire_killed_after_the_drop_of_the_role_is_finished_by_a_rerun() {
    kill_then_finish("krole", "retire-after-drop-role");
}

#[test]
fn retire_refuses_a_customer_whose_integration_database_has_an_unfinished_run() {
    let c = provision("kunf");
    c.cmd("suspend", &["--yes"]).run().success();
    std::thread::sleep(Duration::from_secs(GRACE_SECS + 1));
    // A recreate killed after its backup: an unfinished run of the integration name.
    let backups = super::private_dir();
    let run = c
        .odoo(&["recreate", &c.integration(), "--yes", "--backup-dir"])
        .arg(backups.path())
        .env("FAILPOINTS", "recreate-after-backup=panic")
        .run();
    assert_eq!(run.code, 101, "{}", run.stderr);
    super::assert_refused(
        &c,
        c.cmd("retire", &["--yes"]),
        Some(&c.archives()),
        "unfinished recreate",
    );
    // Finished, the retire goes through.
    c.odoo(&["recreate", &c.integration(), "--yes", "--backup-dir"])
        .arg(backups.path())
        .run()
        .success();
    c.cmd("retire", &["--yes"]).run().success();
    assert_eq!(
        archive_files(&c)
            .iter()
            .filter(|f| f.to_string_lossy().ends_with(".dump"))
            .count(),
        2
    );
}

#[test]
fn retire_sigkilled_while_it_writes_the_archive_is_finished_by_a_rerun() {
    let c = provision("ksig");
    // Enough rows that the dump takes a moment to write.
    super::runtime().block_on(async {
        let client = crate::util::connect_tcp(
            super::primary(),
            &c.base,
            &super::password(c.secrets.path(), "production"),
            &c.base,
        )
        .await
        .unwrap();
        client
            .batch_execute(
                "CREATE TABLE orders AS SELECT i, md5(i::text) || md5((i + 1)::text) AS label
                   FROM generate_series(1, 400000) AS i",
            )
            .await
            .unwrap();
    });
    c.cmd("suspend", &["--yes"]).run().success();
    std::thread::sleep(Duration::from_secs(GRACE_SECS + 1));
    let mut child = c.cmd("retire", &["--yes"]).spawn();
    let partial = || {
        archive_files(&c)
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".partial"))
    };
    crate::util::wait_until(
        Duration::from_secs(60),
        "the archive is being written",
        || partial() || child.try_wait().unwrap().is_some(),
    );
    child.kill().unwrap(); // SIGKILL, on odoo-db's own pid
    let status = child.wait().unwrap();
    assert!(
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        "the kill landed while the archive was written ({status})"
    );
    // Nothing dropped.
    assert_eq!(
        super::one(
            super::primary(),
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{}'",
                c.base
            )
        )
        .as_deref(),
        Some("1")
    );
    let again = c.cmd("retire", &["--yes"]).run();
    again.success();
    assert!(
        !partial(),
        "the partial archive is gone: {:?}",
        archive_files(&c)
    );
    let dumps = archive_files(&c)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".dump"))
        .count();
    assert_eq!(dumps, 2, "{:?}", archive_files(&c));
    let (path, sha) = &recorded_archives(&c)[0];
    assert_eq!(&super::sha256_of(std::path::Path::new(path)), sha);
    assert_eq!(
        super::restored_rows(super::primary(), std::path::Path::new(path)),
        400_000
    );
}
