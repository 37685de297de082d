//! `odoo-db audit` against real servers: a clean platform is OK; a database named after a
//! catalog customer, on any cluster, is CRITICAL and named; catalog drift is a WARNING.
//!
//! A harness of its own: the audit reads every database and role of a cluster, and the
//! shared harness holds whatever the other tests create at the same time.

use std::os::unix::fs::PermissionsExt;

use pgsandbox::HarnessOptions;
use serde_json::Value;

use crate::util;

#[test]
fn a_database_named_after_a_customer_is_critical_and_catalog_drift_a_warning() {
    let harness = util::fresh(HarnessOptions::default());
    util::odoo_db_for(&harness).arg("init").run().success();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = util::odoo_db_for(&harness)
        .args(["provision", "--customer", "acme-shop", "--secrets-dir"])
        .arg(secrets.path())
        .run();
    run.success();
    let name = run
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("export DB_NAME="))
        .unwrap_or_else(|| panic!("no DB_NAME in {}", run.stdout))
        .to_string();

    let audit = |format: &str| {
        util::odoo_db_for(&harness)
            .args(["audit", "--format", format])
            .run()
    };
    let run = audit("json");
    run.expect_code(0);
    let report: Value = serde_json::from_str(&run.stdout).expect("audit --format json");
    assert_eq!(report["status"], "OK", "{:#}", report["checks"]);
    assert_eq!(report["customers"], 1);

    // Someone restores a copy under a telling name on the integration server, and opens
    // the customer's production database to every role.
    let integration = harness.integration.as_ref().expect("an integration server");
    integration
        .psql_superuser("CREATE DATABASE acmeshop_copy")
        .expect("creating the telling database");
    harness
        .primary
        .psql_superuser(&format!("GRANT CONNECT ON DATABASE {name} TO PUBLIC"))
        .expect("granting CONNECT to PUBLIC");

    let run = audit("nagios");
    run.expect_code(2);
    let line = run.stdout.lines().next().unwrap_or("");
    assert!(line.starts_with("ODOO-DB AUDIT CRITICAL - "), "{line}");
    assert!(
        line.contains("integration primary: database acmeshop_copy contains \"acmeshop\", a name of customer acme-shop"),
        "{line}"
    );
    assert!(
        line.contains(&format!(
            "database {name} (customer acme-shop): PUBLIC may connect to it"
        )),
        "{line}"
    );

    let run = audit("json");
    run.expect_code(2);
    let report: Value = serde_json::from_str(&run.stdout).expect("audit --format json");
    let integration_report = report["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "integration")
        .expect("the integration cluster");
    assert_eq!(integration_report["violations"][0]["name"], "acmeshop_copy");
    assert_eq!(integration_report["violations"][0]["customer"], "acme-shop");
    assert_eq!(
        integration_report["unmanaged_databases"],
        serde_json::json!(["acmeshop_copy"])
    );
    let warnings: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "WARNING")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");

    let run = audit("prometheus");
    run.expect_code(2);
    prometheus_parse::Scrape::parse(run.stdout.lines().map(|l| Ok(l.to_string())))
        .expect("audit --format prometheus parses");
    assert!(
        run.stdout
            .contains("odoo_db_audit_violations{cluster=\"integration\"} 1\n"),
        "{}",
        run.stdout
    );
}
