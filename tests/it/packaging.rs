//! The example config the Debian package installs as /etc/odoo-db/odoo-db.toml
//! (packaging/odoo-db.toml) stays true to the config code: as shipped, all commented
//! out, it is refused with the missing key named; with its settings uncommented it
//! parses, and the defaults it states are the code's.

use std::path::Path;
use std::time::Duration;

use odoo_db::config::{Config, StandbyEntry};
use odoo_db::units::Threshold;

const EXAMPLE: &str = include_str!("../../packaging/odoo-db.toml");
const PATH: &str = "/etc/odoo-db/odoo-db.toml";

/// Settings are commented out as `#key = value` and `#[table]`; prose is `# text`.
fn uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .fold(String::new(), |text, line| text + line + "\n")
}

#[test]
fn the_shipped_config_is_refused_naming_the_missing_key() {
    let error = Config::parse(EXAMPLE, Path::new(PATH)).unwrap_err();
    assert_eq!(error.class(), odoo_db::error::Class::Refused);
    let message = error.to_string();
    assert!(
        message.contains(PATH) && message.contains("catalog"),
        "{message}"
    );
}

#[test]
fn the_uncommented_example_parses_with_the_defaults_it_states() {
    let config = Config::parse(&uncommented(), Path::new(PATH))
        .unwrap_or_else(|e| panic!("{e}\n{}", uncommented()));
    let defaults = Config::parse(
        "[catalog]\ncluster = \"p\"\n[clusters.p]\nkind = \"production\"\nprimary = \"host=h\"\n",
        Path::new(PATH),
    )
    .unwrap();
    assert_eq!(config.catalog.database, defaults.catalog.database);
    assert_eq!(config.provision.locale, defaults.provision.locale);
    assert_eq!(config.recreate.backup_dir, defaults.recreate.backup_dir);
    assert_eq!(config.recreate.keep_backups, defaults.recreate.keep_backups);
    assert_eq!(config.recreate.compression, defaults.recreate.compression);
    assert_eq!(config.health.timeout, defaults.health.timeout);
    assert_eq!(config.health.timeout, Duration::from_secs(30));
    assert_eq!(config.health.lag_warn, defaults.health.lag_warn);
    assert_eq!(config.health.lag_crit, defaults.health.lag_crit);
    assert_eq!(config.health.lag_crit[0], Threshold::Bytes(256 << 20));
    assert_eq!(
        config.health.slot_retained_warn,
        defaults.health.slot_retained_warn
    );
    let (h, d) = (&config.health, &defaults.health);
    assert_eq!(
        (h.xid_age_warn, h.xid_age_crit),
        (d.xid_age_warn, d.xid_age_crit)
    );
    assert_eq!(
        (h.xmin_age_warn, h.xmin_age_crit),
        (d.xmin_age_warn, d.xmin_age_crit)
    );
    assert_eq!(
        (h.connections_warn, h.connections_crit),
        (d.connections_warn, d.connections_crit)
    );
    assert_eq!(
        (h.archive_ready_warn, h.archive_ready_crit),
        (d.archive_ready_warn, d.archive_ready_crit)
    );
    assert_eq!(
        (h.lock_wait_warn, h.lock_wait_crit),
        (d.lock_wait_warn, d.lock_wait_crit)
    );
    assert_eq!(
        (h.wal_size_warn, h.wal_size_crit),
        (d.wal_size_warn, d.wal_size_crit)
    );
    let production = &config.clusters["production"];
    assert!(production.ssh.is_some() && production.ssh_identity.is_some());
    assert!(production.ssh_known_hosts.is_some() && production.ssh_control_dir.is_some());
    assert_eq!(production.standbys.len(), 1);
    assert!(config.clusters.contains_key("integration"));
}

#[test]
fn the_table_form_of_standbys_parses_too() {
    let line = EXAMPLE
        .lines()
        .find_map(|line| line.strip_prefix("# or: standbys = "))
        .expect("the example shows standbys as tables");
    // In place of the bare-URL form.
    let text: String = uncommented()
        .lines()
        .map(|l| {
            if l.starts_with("standbys = [\"") {
                format!("standbys = {line}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let config = Config::parse(&text, Path::new(PATH)).unwrap_or_else(|e| panic!("{e}"));
    match &config.clusters["production"].standbys[0] {
        StandbyEntry::Table(table) => {
            assert_eq!(table.name.as_deref(), Some("db2"));
            assert_eq!(table.application_name.as_deref(), Some("db2"));
        }
        other => panic!("{other:?}"),
    }
}
