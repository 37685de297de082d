//! The tour, run as a user runs it: every step succeeds, health turns CRITICAL while
//! replay is paused and OK again after, and `sandbox down` leaves nothing behind.

use crate::util::{processes_in, OdooDb};

#[test]
fn the_tour_runs_end_to_end_and_can_run_again() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("sandbox");
    let port = pgsandbox::free_port_base(3)
        .expect("three free ports")
        .to_string();
    let tour = || {
        OdooDb::new()
            .arg("demo")
            .arg("--dir")
            .arg(&dir)
            .args(["--port", &port])
            .run()
    };
    let first = tour();
    first.success();
    for expected in [
        "$ odoo-db init",
        "export DB_NAME=",
        "$ odoo-db recreate ",
        "ODOO-DB CRITICAL - ",
        "replay is paused",
        "ODOO-DB OK - ",
        "$ odoo-db audit",
    ] {
        assert!(
            first.stdout.contains(expected),
            "tour output lacks {expected:?}:\n{}",
            first.stdout
        );
    }
    let critical = first.stdout.find("ODOO-DB CRITICAL").unwrap();
    let ok_after = first.stdout.rfind("ODOO-DB OK").unwrap();
    assert!(
        ok_after > critical,
        "health is OK again after replay resumes"
    );

    // Again on the same sandbox: provision finds the customer, the rest runs the same.
    tour().success();

    let down = OdooDb::new()
        .args(["sandbox", "down", "--dir"])
        .arg(&dir)
        .run();
    down.success();
    assert!(!dir.exists(), "sandbox down removes its directory");
    assert!(processes_in(&dir).is_empty(), "no server process left");
}
