//! adopt: existing, hand-made customers brought under management, checked on the
//! servers and in the catalog.

use crate::util::{initialized, odoo_db, unique};

/// Makes role + database `name` as a DBA would have by hand (PUBLIC may connect).
fn make_by_hand(server: &odoo_db::harness::PgServer, name: &str, owner: &str) {
    server
        .psql_superuser(&format!("CREATE ROLE {name} LOGIN"))
        .unwrap();
    server
        .psql_superuser(&format!("CREATE DATABASE {name} OWNER {owner}"))
        .unwrap();
}

#[test]
fn adopt_registers_hand_made_databases_and_reports_acl_problems() {
    let harness = initialized();
    let integration = harness.integration.as_ref().unwrap();
    let customer = unique("zenith");
    let name = "amber_orchard_adopt";
    make_by_hand(&harness.primary, name, name);
    make_by_hand(
        integration,
        &format!("{name}_integration"),
        &format!("{name}_integration"),
    );

    let adopt = || {
        odoo_db()
            .args(["adopt", "--customer", &customer, "--name", name])
            .run()
    };
    if harness.primary.major() >= 16 {
        // PostgreSQL 16+: a CREATEROLE role cannot grant itself a role a superuser
        // made; adopt refuses, records nothing, and names the GRANT to run.
        let refused = adopt();
        refused.expect_code(2);
        let grant = format!("GRANT \"{name}\" TO \"odoo_db_admin\"");
        assert!(refused.stderr.contains(&grant), "{}", refused.stderr);
        let listed = odoo_db().args(["list", "--format", "json"]).run();
        assert!(!listed.stdout.contains(&customer), "nothing recorded");
        harness.primary.psql_superuser(&grant).unwrap();
        integration
            .psql_superuser(&format!("GRANT {name}_integration TO odoo_db_admin"))
            .unwrap();
    }
    let run = adopt();
    run.success();
    assert_eq!(
        run.stdout,
        format!(
            "# production\nexport DB_USER={name}\nexport DB_NAME={name}\nexport DB_PORT={}\n\n\
             # integration\nexport DB_USER={name}_integration\nexport DB_NAME={name}_integration\nexport DB_PORT={}\n",
            harness.primary.port, integration.port
        )
    );
    assert!(run.stderr.contains("PUBLIC may connect"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!(
        "REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC"
    )));
    // adopt changed nothing on the database: PUBLIC still may connect.
    assert_eq!(
        harness
            .primary
            .psql_superuser(&format!("SELECT has_database_privilege('public', '{name}', 'CONNECT'), pg_has_role('odoo_db_admin', '{name}', 'MEMBER')"))
            .unwrap(),
        "t|t",
        "ACL untouched; odoo-db's role can act for the owner"
    );

    let listed = odoo_db().args(["list", "--format", "json"]).run();
    listed.success();
    let entries: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let ours: Vec<_> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["customer"] == customer.as_str())
        .collect();
    assert_eq!(ours.len(), 2);
    assert!(ours
        .iter()
        .all(|e| e["state"] == "ready" && e["present"] == true));

    // Again: nothing new, same output.
    let again = adopt();
    again.success();
    assert_eq!(again.stdout, run.stdout);
}

#[test]
fn adopt_refuses_a_database_owned_by_another_role_and_records_nothing() {
    let harness = initialized();
    let customer = unique("vortex");
    let name = "cobalt_meadow_adopt";
    make_by_hand(&harness.primary, name, "postgres");
    let run = odoo_db()
        .args(["adopt", "--customer", &customer, "--name", name])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("owned by postgres"), "{}", run.stderr);
    let listed = odoo_db().args(["list", "--format", "json"]).run();
    assert!(
        !listed.stdout.contains(&customer),
        "nothing recorded: {}",
        listed.stdout
    );

    let missing = odoo_db()
        .args([
            "adopt",
            "--customer",
            &customer,
            "--name",
            "no_such_database_here",
        ])
        .run();
    missing.expect_code(2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}
