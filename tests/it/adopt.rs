//! adopt: existing, hand-made customers brought under management, checked on the
//! servers and in the catalog.

use crate::util::{initialized, odoo_db, unique};

/// Makes role + database `name` as a DBA would have by hand (PUBLIC may connect).
fn make_by_hand(server: &pgsandbox::PgServer, name: &str, owner: &str) {
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
    let customer = unique("zenyth");
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
        // made, and needs ADMIN OPTION to ALTER or DROP it later; adopt refuses,
        // records nothing, and names the one GRANT to run.
        let refused = adopt();
        refused.expect_code(2);
        let grant = format!(
            "GRANT \"{name}\" TO \"odoo_db_admin\" WITH ADMIN OPTION, INHERIT TRUE, SET TRUE"
        );
        assert!(refused.stderr.contains(&grant), "{}", refused.stderr);
        let listed = odoo_db().args(["list", "--format", "json"]).run();
        assert!(!listed.stdout.contains(&customer), "nothing recorded");
        // A plain membership (what 15 needed) is not enough on 16+: still refused.
        harness
            .primary
            .psql_superuser(&format!("GRANT {name} TO odoo_db_admin"))
            .unwrap();
        let refused = adopt();
        refused.expect_code(2);
        assert!(refused.stderr.contains(&grant), "{}", refused.stderr);
        harness.primary.psql_superuser(&grant).unwrap();
        integration
            .psql_superuser(&format!(
                "GRANT {name}_integration TO odoo_db_admin WITH ADMIN OPTION, INHERIT TRUE, SET TRUE"
            ))
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

/// The last line of defence against privilege escalation through ownership: odoo-db
/// never grants itself a role that is more than a customer's (issue 10, item 3).
#[test]
fn adopt_refuses_owners_with_privileges_and_never_grants_itself_them() {
    let harness = initialized();
    let cases = [
        // A role that may create roles.
        ("slate_ridge_adopt", "CREATE ROLE slate_ridge_adopt LOGIN CREATEROLE", "has CREATEROLE"),
        // A role that reads any server file, through a group in between.
        (
            "tidal_grove_adopt",
            "CREATE ROLE tidal_grove_files NOLOGIN; GRANT pg_read_server_files TO tidal_grove_files; \
             CREATE ROLE tidal_grove_adopt LOGIN IN ROLE tidal_grove_files",
            "member of pg_read_server_files (directly or through other roles), which is a built-in role",
        ),
        ("amber_vale_adopt", "CREATE ROLE amber_vale_adopt LOGIN CREATEDB", "has CREATEDB"),
        ("frost_cove_adopt", "CREATE ROLE frost_cove_adopt LOGIN BYPASSRLS", "has BYPASSRLS"),
    ];
    for (name, create, why) in cases {
        let customer = unique("grnit");
        harness.primary.psql_superuser(create).unwrap();
        harness
            .primary
            .psql_superuser(&format!("CREATE DATABASE {name} OWNER {name}"))
            .unwrap();
        let run = odoo_db()
            .args(["adopt", "--customer", &customer, "--name", name])
            .run();
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("refuses to act as role {name}"))
                && run.stderr.contains(why),
            "{name}: {}",
            run.stderr
        );
        assert_eq!(
            harness
                .primary
                .psql_superuser(&format!(
                    "SELECT pg_has_role('odoo_db_admin', '{name}', 'MEMBER'), \
                            pg_has_role('odoo_db_admin', 'pg_read_server_files', 'MEMBER'), \
                            (SELECT count(*) FROM pg_auth_members WHERE member = 'odoo_db_admin'::regrole AND roleid = '{name}'::regrole)"
                ))
                .unwrap(),
            "f|f|0",
            "{name}: odoo-db's role gained no membership"
        );
        let listed = odoo_db().args(["list", "--format", "json"]).run();
        listed.success();
        assert!(
            !listed.stdout.contains(&customer),
            "{name}: nothing recorded"
        );
    }
}

/// adopt checks every environment before it grants anything: a production role it could
/// act for, and an integration twin it must refuse, leave odoo-db's role without either.
#[test]
fn adopt_grants_nothing_when_another_environment_is_refused() {
    let harness = initialized();
    let integration = harness.integration.as_ref().unwrap();
    let customer = unique("mixd");
    let name = "russet_quay_adopt";
    make_by_hand(&harness.primary, name, name);
    integration
        .psql_superuser(&format!("CREATE ROLE {name}_integration LOGIN CREATEROLE"))
        .unwrap();
    integration
        .psql_superuser(&format!(
            "CREATE DATABASE {name}_integration OWNER {name}_integration"
        ))
        .unwrap();
    let run = odoo_db()
        .args(["adopt", "--customer", &customer, "--name", name])
        .run();
    run.expect_code(2);
    if harness.primary.major() < 16 {
        // Up to 15 odoo-db could grant itself the production role: the integration
        // twin's CREATEROLE is what refuses, after production was checked.
        assert!(
            run.stderr
                .contains(&format!("role {name}_integration has CREATEROLE")),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        harness
            .primary
            .psql_superuser(&format!(
                "SELECT pg_has_role('odoo_db_admin', '{name}', 'MEMBER')"
            ))
            .unwrap(),
        "f",
        "no grant on production"
    );
    assert_eq!(
        integration
            .psql_superuser(&format!(
                "SELECT pg_has_role('odoo_db_admin', '{name}_integration', 'MEMBER')"
            ))
            .unwrap(),
        "f",
        "no grant on integration"
    );
    let listed = odoo_db().args(["list", "--format", "json"]).run();
    assert!(!listed.stdout.contains(&customer), "nothing recorded");
}
