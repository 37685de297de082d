//! `odoo-db health` beyond lag, against real servers, each condition produced for real:
//! topology (failover, split brain, a standby of another cluster), two standbys under one
//! name, wraparound, the holders of the xmin horizon, archiving, connections per server
//! and per role, lock waits, the size of pg_wal and settings waiting for a restart.
//!
//! Health runs as the `[health] user` monitoring role (pg_monitor only), as the systemd
//! timer does. The tests that change server-wide settings share one fresh harness of
//! their own ([`beyond`], one test at a time); the topology test breaks its servers and
//! has a harness to itself.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use odoo_db::cmd::sandbox::ClientFiles;
use pgsandbox::{Harness, HarnessOptions, PgServer, StandbySetup, ADMIN_PASSWORD, ADMIN_ROLE};
use serde_json::Value;

use crate::util;

/// The monitoring role health connects as, and what the tests change settings with.
const HEALTH_USER: &str = "user = \"odoo_db_monitor\"";

static BEYOND: OnceLock<Mutex<Harness>> = OnceLock::new();

/// The harness of these tests: a primary that can prepare transactions, decode logically
/// (a logical slot holds catalog_xmin) and archive, with 20 connections; a standby with
/// hot_standby_feedback and no slot (its feedback then shows on its WAL sender).
fn beyond() -> MutexGuard<'static, Harness> {
    let harness = BEYOND.get_or_init(|| {
        let conf = [
            ("max_prepared_transactions", "5"),
            ("wal_level", "logical"),
            ("hot_standby_feedback", "on"),
            ("archive_mode", "on"),
            ("archive_command", "false"),
            ("max_connections", "20"),
        ];
        let harness = util::fresh(HarnessOptions {
            integration: false,
            primary_conf: conf
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            standby_setup: StandbySetup {
                slot: false,
                ..StandbySetup::default()
            },
            ..HarnessOptions::default()
        });
        let config = config_with(&harness, "init", HEALTH_USER);
        util::odoo_db_for(&harness)
            .env("ODOO_DB_CONFIG", &config)
            .arg("init")
            .run()
            .success();
        Mutex::new(harness)
    });
    harness
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn psql(server: &PgServer, sql: &str) -> String {
    server
        .psql_superuser(sql)
        .unwrap_or_else(|e| panic!("psql on the {} server: {sql}: {e}", server.name))
}

fn standby(harness: &Harness) -> &PgServer {
    harness.standby.as_ref().expect("the harness has a standby")
}

/// The harness's config plus `[health]` `section`, written in the harness directory.
fn config_with(harness: &Harness, name: &str, section: &str) -> PathBuf {
    let path = harness.dir.join(format!("{name}.toml"));
    let text = format!("{}\n[health]\n{section}\n", harness.config_toml());
    std::fs::write(&path, text).expect("writing a config");
    path
}

/// `odoo-db health --format json` with `config`; the parsed report.
fn health(harness: &Harness, config: &PathBuf) -> Value {
    let run = util::odoo_db_for(harness)
        .env("ODOO_DB_CONFIG", config)
        .args(["health", "--format", "json"])
        .timeout(Duration::from_secs(60))
        .run();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "health printed no JSON ({e}):\n{}\n--- stderr ---\n{}",
            run.stdout, run.stderr
        )
    })
}

/// The checks of kind `check` as (status, server, message).
fn checks(report: &Value, check: &str) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| {
            let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (text("status"), text("server"), text("message"))
        })
        .collect()
}

fn has(report: &Value, status: &str, check: &str, needle: &str) -> bool {
    checks(report, check)
        .iter()
        .any(|(s, _, m)| s == status && m.contains(needle))
}

fn production(report: &Value) -> &Value {
    report["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["name"] == "production")
        .expect("cluster production")
}

async fn admin(server: &PgServer) -> tokio_postgres::Client {
    util::connect_tcp(server, ADMIN_ROLE, ADMIN_PASSWORD, "postgres")
        .await
        .expect("connecting as the admin role")
}

async fn pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pg_backend_pid()")
        .get(0)
}

#[test]
fn wraparound_names_the_oldest_database_with_the_servers_own_age() {
    let harness = beyond();
    let config = config_with(
        &harness,
        "wraparound",
        &format!("{HEALTH_USER}\nxid_age_warn = 0.000000001\nxid_age_crit = 0.75"),
    );
    // Compared with what the server says right after; retried in the rare case that a
    // transaction or a vacuum moved the ages in between.
    for attempt in 1..=5 {
        let report = health(&harness, &config);
        let expected = psql(
            &harness.primary,
            "SELECT datname || ' ' || age(datfrozenxid) FROM pg_database ORDER BY age(datfrozenxid) DESC, datname LIMIT 1",
        );
        let (database, age) = expected.split_once(' ').expect("name and age");
        let age: i64 = age.parse().expect("an age");
        let w = &production(&report)["primary"]["wraparound"];
        if w["xid_database"] != database || w["xid_age"] != age {
            assert!(attempt < 5, "{w:#} vs the server's {expected}");
            continue;
        }
        assert_eq!(
            w["xid_fraction"].as_f64(),
            Some(age as f64 / 2_147_483_648.0)
        );
        let message = format!("oldest datfrozenxid: database {database:?}, age {age} (");
        assert!(
            has(&report, "WARNING", "wraparound", &message),
            "{:?}",
            checks(&report, "wraparound")
        );
        return;
    }
}

/// A runtime whose workers drive the tests' sessions while the test blocks on a run.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn each_holder_of_the_xmin_horizon_is_named() {
    let harness = beyond();
    runtime().block_on(xmin_holders(&harness));
}

async fn xmin_holders(harness: &Harness) {
    let config = config_with(
        harness,
        "xmin",
        &format!("{HEALTH_USER}\nxmin_age_warn = \"1s\"\nxmin_age_crit = \"1h\""),
    );
    // An inactive logical slot (catalog_xmin), made first: making it waits for
    // running transactions.
    psql(
        &harness.primary,
        "SELECT pg_create_logical_replication_slot('h13_slot', 'pgoutput')",
    );
    // A session idle in transaction with a snapshot, and a prepared transaction.
    let idle = admin(&harness.primary).await;
    let idle_pid = pid(&idle).await;
    // The application names itself with the Nagios perfdata separator.
    idle.batch_execute("SET application_name = 'odoo|worker'; BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current()")
        .await
        .unwrap();
    let preparer = admin(&harness.primary).await;
    preparer
        .batch_execute("BEGIN; SELECT txid_current(); PREPARE TRANSACTION 'h13_holder'")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = health(harness, &config);
    let found = checks(&report, "xmin_horizon");
    for needle in [
        format!("xmin horizon held by session pid {idle_pid} idle in transaction (user {ADMIN_ROLE}, database postgres, application \"odoo|worker\")"),
        "xmin horizon held by prepared transaction \"h13_holder\" (owner odoo_db_admin, database postgres)".to_string(),
        "xmin horizon held by replication slot \"h13_slot\" (inactive)".to_string(),
    ] {
        assert!(
            found.iter().any(|(s, _, m)| s == "WARNING" && m.starts_with(&needle)),
            "{needle}\nin {found:#?}"
        );
    }
    // In Nagios, the name never starts the perfdata early.
    let run = util::odoo_db_for(harness)
        .env("ODOO_DB_CONFIG", &config)
        .args(["health", "--format", "nagios"])
        .run();
    let line = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(line.matches(" | ").count(), 1, "{line}");
    assert!(line.contains("application \"odoo/worker\""), "{line}");
    idle.batch_execute("ROLLBACK").await.unwrap();
    preparer
        .batch_execute("ROLLBACK PREPARED 'h13_holder'")
        .await
        .unwrap();
    psql(
        &harness.primary,
        "SELECT pg_drop_replication_slot('h13_slot')",
    );

    // A long query on the standby, fed back to the primary by hot_standby_feedback.
    let on_standby = standby(harness).superuser().await.unwrap();
    let query_pid = pid(&on_standby).await;
    on_standby
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pg_class")
        .await
        .unwrap();
    for _ in 0..3 {
        psql(&harness.primary, "SELECT txid_current()");
    }
    util::wait_until(
        Duration::from_secs(30),
        "the standby's feedback holds the primary's horizon",
        || {
            psql(
                &harness.primary,
                "SELECT count(*) FROM pg_stat_replication WHERE age(backend_xmin) >= 3",
            ) == "1"
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = health(harness, &config);
    assert!(
        has(
            &report,
            "WARNING",
            "xmin_horizon",
            "xmin horizon held by hot_standby_feedback of standby \"standby\" (WAL sender pid "
        ) && has(
            &report,
            "WARNING",
            "xmin_horizon",
            "its standby's oldest query running for "
        ),
        "{:#?}",
        checks(&report, "xmin_horizon")
    );
    assert!(
        has(
            &report,
            "WARNING",
            "oldest_query",
            &format!("oldest query that can delay replay: transaction of pid {query_pid}, idle in transaction (user postgres")
        ),
        "{:#?}",
        checks(&report, "oldest_query")
    );
    on_standby.batch_execute("ROLLBACK").await.unwrap();
}

#[test]
fn a_failing_archive_command_is_critical_and_a_working_one_ok() {
    let harness = beyond();
    let primary = &harness.primary;
    let config = config_with(&harness, "archiving", HEALTH_USER);
    psql(primary, "ALTER SYSTEM SET archive_command = 'false'");
    psql(primary, "SELECT pg_reload_conf()");
    psql(
        primary,
        "CREATE TABLE IF NOT EXISTS h13_archived (x int); INSERT INTO h13_archived VALUES (1); SELECT pg_switch_wal()",
    );
    util::wait_until(Duration::from_secs(30), "archive_command failed", || {
        psql(
            primary,
            "SELECT last_failed_time > coalesce(last_archived_time, '-infinity') FROM pg_stat_archiver",
        ) == "t"
    });
    let report = health(&harness, &config);
    assert!(
        has(
            &report,
            "CRITICAL",
            "archiving",
            "archiving fails: the last failure ("
        ),
        "{:?}",
        checks(&report, "archiving")
    );
    assert_eq!(production(&report)["primary"]["archiver"]["failing"], true);

    // A working archive_command: a directory of the harness the server's user owns.
    let archive = harness.dir.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&primary.data_dir).unwrap());
    std::os::unix::fs::chown(&archive, Some(owner), None).unwrap();
    psql(
        primary,
        &format!(
            "ALTER SYSTEM SET archive_command = 'test ! -f {0}/%f && cp %p {0}/%f'",
            archive.display()
        ),
    );
    psql(primary, "SELECT pg_reload_conf()");
    psql(
        primary,
        "INSERT INTO h13_archived VALUES (2); SELECT pg_switch_wal()",
    );
    util::wait_until(Duration::from_secs(60), "archiving works again", || {
        psql(
            primary,
            "SELECT last_archived_time > last_failed_time FROM pg_stat_archiver",
        ) == "t"
    });
    let report = health(&harness, &config);
    let found = checks(&report, "archiving");
    assert!(
        found.iter().any(|(s, server, m)| s == "OK"
            && server.starts_with("primary")
            && m.starts_with("last archived 0000000")),
        "{found:?}"
    );
    assert_eq!(production(&report)["primary"]["archiver"]["failing"], false);
}

#[test]
fn connections_role_limits_lock_waits_and_pg_wal_are_warned() {
    let harness = beyond();
    runtime().block_on(connections(&harness));
}

async fn connections(harness: &Harness) {
    let primary = &harness.primary;
    let config = config_with(
        harness,
        "connections",
        &format!("{HEALTH_USER}\nlock_wait_warn = \"1s\"\nwal_size_warn = \"1MB\""),
    );
    psql(
        primary,
        "DROP ROLE IF EXISTS h13_customer; CREATE ROLE h13_customer LOGIN PASSWORD 'h13_pw' CONNECTION LIMIT 5; \
         CREATE TABLE IF NOT EXISTS h13_locked (x int); GRANT ALL ON h13_locked TO odoo_db_admin",
    );
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(
            util::connect_tcp(primary, "h13_customer", "h13_pw", "postgres")
                .await
                .expect("connecting as h13_customer"),
        );
    }
    // A lock held, and a session waiting for it.
    let holder = admin(primary).await;
    let holder_pid = pid(&holder).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE h13_locked")
        .await
        .unwrap();
    let waiter = admin(primary).await;
    let waiter_pid = pid(&waiter).await;
    let waiting = tokio::spawn(async move {
        let _ = waiter.batch_execute("SELECT * FROM h13_locked").await;
        waiter
    });
    // 20 connections minus 3 reserved: 14 client sessions are past 80 %.
    while sessions.len() < 14 - 2 {
        sessions.push(admin(primary).await);
    }
    util::wait_until(Duration::from_secs(10), "the waiter waits", || {
        psql(
            primary,
            &format!("SELECT wait_event_type FROM pg_stat_activity WHERE pid = {waiter_pid}"),
        ) == "Lock"
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let report = health(harness, &config);
    assert!(
        has(
            &report,
            "WARNING",
            "connections",
            " of 17 client connections used ("
        ),
        "{:?}",
        checks(&report, "connections")
    );
    assert!(
        has(
            &report,
            "WARNING",
            "role_connections",
            "role \"h13_customer\": 4 of its CONNECTION LIMIT 5 sessions (80 %)"
        ),
        "{:?}",
        checks(&report, "role_connections")
    );
    let found = checks(&report, "lock_wait");
    assert!(
        found.iter().any(|(s, _, m)| s == "WARNING"
            && m.starts_with(&format!(
                "pid {waiter_pid} (user {ADMIN_ROLE}, database postgres) waits for a lock for "
            ))
            && m.contains(&format!(
                "blocked by pid {holder_pid} (user {ADMIN_ROLE}, idle in transaction"
            ))),
        "{found:?}"
    );
    assert!(
        has(&report, "WARNING", "wal_size", "pg_wal holds "),
        "{:?}",
        checks(&report, "wal_size")
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    let waiter = waiting.await.unwrap();
    drop((waiter, holder, sessions));
    util::wait_until(
        Duration::from_secs(10),
        "h13_customer's sessions ended",
        || {
            psql(
                primary,
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'h13_customer'",
            ) == "0"
        },
    );
    psql(primary, "DROP ROLE h13_customer");
}

#[test]
fn a_setting_waiting_for_a_restart_is_named() {
    let harness = beyond();
    let primary = &harness.primary;
    let config = config_with(&harness, "pending", HEALTH_USER);
    let value = if psql(primary, "SHOW shared_buffers") == "24MB" {
        "32MB"
    } else {
        "24MB"
    };
    psql(
        primary,
        &format!("ALTER SYSTEM SET shared_buffers = '{value}'"),
    );
    psql(primary, "SELECT pg_reload_conf()");
    util::wait_until(
        Duration::from_secs(10),
        "shared_buffers waits for a restart",
        || {
            psql(
                primary,
                "SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers'",
            ) == "t"
        },
    );
    let report = health(&harness, &config);
    psql(primary, "ALTER SYSTEM RESET shared_buffers");
    psql(primary, "SELECT pg_reload_conf()");
    let found = checks(&report, "pending_restart");
    assert!(
        found.iter().any(|(s, server, m)| s == "WARNING"
            && server.starts_with("primary")
            && m == "settings changed but waiting for a restart: shared_buffers"),
        "{found:?}"
    );
}

#[test]
fn two_standbys_under_one_name_are_an_ambiguity_not_ok() {
    let harness = beyond();
    let url = standby(&harness).admin_url();
    let quoted = toml::Value::String(url.clone()).to_string();
    let path = harness.dir.join("ambiguous.toml");
    let text = harness.config_toml();
    let line = text
        .lines()
        .find(|l| l.starts_with("standbys = "))
        .expect("the standbys line")
        .to_string();
    // The one standby twice, as two standbys that both stream as "standby" (their
    // cluster_name) would look: one WAL sender for two names.
    let text = text.replace(
        &line,
        &format!("standbys = [{{ name = \"db2\", url = {quoted} }}, {{ name = \"db3\", url = {quoted} }}]"),
    );
    std::fs::write(&path, format!("{text}\n[health]\n{HEALTH_USER}\n")).unwrap();
    let report = health(&harness, &path);
    let found = checks(&report, "pg_stat_replication");
    for name in ["standby db2", "standby db3"] {
        assert!(
            found.iter().any(|(s, server, m)| s == "CRITICAL"
                && server == name
                && m.starts_with("cannot tell whether this standby is connected: 2 configured standbys go by the name \"standby\"")),
            "{name}: {found:?}"
        );
    }
}

#[test]
fn failover_switchover_split_brain_and_a_foreign_standby_are_critical() {
    let harness = util::fresh(HarnessOptions::default());
    let config = config_with(&harness, "topology", HEALTH_USER);
    util::odoo_db_for(&harness)
        .env("ODOO_DB_CONFIG", &config)
        .arg("init")
        .run()
        .success();
    let standby = standby(&harness);
    let sysid = psql(
        &harness.primary,
        "SELECT system_identifier FROM pg_control_system()",
    );

    // Healthy: one system identifier, one timeline.
    let report = health(&harness, &config);
    assert!(
        has(
            &report,
            "OK",
            "topology",
            &format!("one primary; system identifier {sysid}, timeline 1 on all 2 servers")
        ),
        "{:?}",
        checks(&report, "topology")
    );
    assert_eq!(
        production(&report)["standbys"][0]["system_identifier"],
        sysid
    );

    // A standby of another cluster: the integration server in its place.
    let integration = harness.integration.as_ref().expect("an integration server");
    let theirs = psql(
        integration,
        "SELECT system_identifier FROM pg_control_system()",
    );
    let foreign = harness.dir.join("foreign.toml");
    std::fs::write(
        &foreign,
        config_text_with_standby(&harness, &integration.admin_url()),
    )
    .unwrap();
    let report = health(&harness, &foreign);
    assert!(
        has(
            &report,
            "CRITICAL",
            "topology",
            &format!(
                "belongs to another cluster: system identifier {theirs}, the primary's is {sysid}"
            )
        ),
        "{:?}",
        checks(&report, "topology")
    );

    // Failover: the primary stopped, the standby promoted.
    harness.primary.stop().expect("stopping the primary");
    psql(standby, "SELECT pg_promote()");
    util::wait_until(Duration::from_secs(30), "the standby is promoted", || {
        psql(standby, "SELECT pg_is_in_recovery()") == "f"
    });
    let report = health(&harness, &config);
    let address = format!("127.0.0.1:{}", standby.port);
    assert!(
        has(&report, "CRITICAL", "topology", &format!("failover: standby standby ({address}) was promoted and accepts writes; the configured primary")),
        "{:?}",
        checks(&report, "topology")
    );
    assert_eq!(report["status"], "CRITICAL");

    // A switchover completed: the old primary (shut down cleanly before the promotion)
    // follows the promoted server as its standby. The roles swapped: one event.
    let conninfo = psql(standby, "SHOW primary_conninfo");
    assert!(
        !conninfo.is_empty(),
        "the promoted standby kept its primary_conninfo"
    );
    let conninfo = conninfo.replace(
        &format!("port={}", harness.primary.port),
        &format!("port={}", standby.port),
    );
    harness
        .primary
        .set_conf("primary_conninfo", &conninfo)
        .expect("pointing the old primary at the new one");
    let signal = harness.primary.data_dir.join("standby.signal");
    std::fs::write(&signal, "").unwrap();
    let owner =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&harness.primary.data_dir).unwrap());
    std::os::unix::fs::chown(&signal, Some(owner), None).unwrap();
    harness
        .primary
        .start()
        .expect("starting the old primary as a standby");
    util::wait_until(
        Duration::from_secs(30),
        "the old primary streams from the new one",
        || {
            psql(
                &harness.primary,
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            ) == "1"
        },
    );
    let report = health(&harness, &config);
    assert!(
        has(&report, "CRITICAL", "topology", &format!("roles swapped (a switchover or failover): standby standby ({address}) accepts writes and is the primary now; the configured primary ")),
        "{:?}",
        checks(&report, "topology")
    );
    assert!(
        has(
            &report,
            "CRITICAL",
            "primary_role",
            "is in recovery, streaming from standby standby: the roles are swapped"
        ),
        "{:?}",
        checks(&report, "primary_role")
    );

    // The old primary promoted too: two servers accept writes.
    psql(&harness.primary, "SELECT pg_promote()");
    util::wait_until(
        Duration::from_secs(30),
        "the old primary is promoted",
        || psql(&harness.primary, "SELECT pg_is_in_recovery()") == "f",
    );
    let report = health(&harness, &config);
    assert!(
        has(
            &report,
            "CRITICAL",
            "topology",
            "split brain: 2 servers of this cluster accept writes: primary "
        ),
        "{:?}",
        checks(&report, "topology")
    );
}

/// The harness's config with its production standby replaced by `url`.
fn config_text_with_standby(harness: &Harness, url: &str) -> String {
    let text = harness.config_toml();
    let line = text
        .lines()
        .find(|l| l.starts_with("standbys = "))
        .expect("the standbys line")
        .to_string();
    let quoted = toml::Value::String(url.to_string()).to_string();
    let text = text.replace(
        &line,
        &format!("standbys = [{{ name = \"standby\", url = {quoted} }}]"),
    );
    format!("{text}\n[health]\n{HEALTH_USER}\n")
}

/// Every `odoo_db_*` name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for (at, _) in text.match_indices("odoo_db_") {
        if at > 0 && text.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

/// The alerting rules and the Grafana dashboard name only metrics health emits: each
/// is a family of the exposition of a real run (scripts/check-alerts runs this).
#[test]
fn every_metric_in_the_rules_and_the_dashboard_is_emitted() {
    let harness = beyond();
    let config = config_with(&harness, "metrics", HEALTH_USER);
    let run = util::odoo_db_for(&harness)
        .env("ODOO_DB_CONFIG", &config)
        .args(["health", "--format", "prometheus"])
        .run();
    let scrape = prometheus_parse::Scrape::parse(run.stdout.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    let families: std::collections::BTreeSet<String> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "packaging/prometheus/odoo-db.rules.yml",
        "packaging/grafana/odoo-db.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let names = metric_names(&text);
        assert!(names.len() > 15, "{file}: {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !families.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics health does not emit: {missing:?}"
        );
    }
    // The checks beyond lag have samples from these servers, not just declarations.
    for name in [
        "odoo_db_wraparound_xid_age_ratio",
        "odoo_db_connections_used_ratio",
        "odoo_db_wal_size_bytes",
        "odoo_db_archiver_failing",
        "odoo_db_recovery_conflicts_total",
        "odoo_db_health_check_status",
        "odoo_db_server_timeline",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "no sample of {name}:\n{}",
            run.stdout
        );
    }
}
