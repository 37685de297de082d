//! `odoo-db refresh` against the shared harness (production primary + streaming
//! standby + integration server): an Odoo-shaped production database made by the
//! tests (`tests/fixtures/odoo.sql`, Odoo 16 and 17), copied into its integration twin
//! and neutralized; the refusals, each with snapshots proving nothing changed; kills
//! of odoo-db between steps, the window that keeps the integration role out, the
//! rerun that converges, and `restore` back to the database before the refresh.

use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::ClientFiles;
use pgsandbox::PgServer;
use tempfile::TempDir;

use crate::util::{self, odoo_db, shared, OdooDb, Run};

fn integration() -> &'static PgServer {
    shared()
        .integration
        .as_ref()
        .expect("an integration server")
}

fn primary() -> &'static PgServer {
    &shared().primary
}

fn standby() -> &'static PgServer {
    shared().standby.as_ref().expect("a standby")
}

/// A provisioned customer with directories of its own for secrets, backups and the
/// spool.
struct Customer {
    base: String,
    name: String,
    secrets: TempDir,
    backups: TempDir,
    spool: TempDir,
}

impl Customer {
    /// `odoo-db refresh NAME` with this customer's directories, plus `extra`.
    fn refresh(&self, extra: &[&str]) -> OdooDb {
        odoo_db()
            .args(["refresh", &self.name, "--backup-dir"])
            .arg(self.backups.path())
            .arg("--spool-dir")
            .arg(self.spool.path().join("spool"))
            .args(extra)
    }

    /// The integration owner's password, from the secrets file provision wrote.
    fn password(&self) -> String {
        util::env_password(self.secrets.path(), "integration")
    }
}

fn provision(tag: &str) -> Customer {
    let secrets = util::scratch_dir();
    let names = util::provision_customer(&util::unique(&format!("rf{tag}")), secrets.path(), &[]);
    assert_eq!(names.len(), 2, "{names:?}");
    Customer {
        base: names[0].clone(),
        name: names[1].clone(),
        secrets,
        backups: util::scratch_dir(),
        spool: util::scratch_dir(),
    }
}

/// Run `sql` as the superuser in `db`, the session gone before returning
/// ([`util::superuser_rows`]); the first column of every row, as text.
async fn query(server: &PgServer, db: &str, sql: &str) -> Vec<String> {
    util::superuser_rows(server, db, "", sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} in {db} on {}: {e}", server.name))
        .into_iter()
        .map(|value| value.unwrap_or_else(|| "NULL".to_string()))
        .collect()
}

async fn one(server: &PgServer, db: &str, sql: &str) -> String {
    query(server, db, sql)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// The Odoo-shaped fixture for Odoo `major`, owned by the production role, with a
/// reader role of production's in the tables' ACL; `extra` runs after it.
async fn load_odoo(c: &Customer, major: u32, extra: &str) {
    let mut sql = include_str!("../fixtures/odoo.sql").replace("{major}", &major.to_string());
    if major >= 17 {
        sql.push_str(
            "ALTER TABLE ir_act_server ADD COLUMN webhook_url varchar;
             UPDATE ir_act_server SET webhook_url = 'https://hooks.example.com/crm' WHERE state = 'webhook';",
        );
    }
    let reader = format!("{}_reader", c.base);
    let script = format!(
        "SET ROLE {base}; {sql} {extra}; RESET ROLE;
         CREATE ROLE {reader}; GRANT SELECT ON res_partner TO {reader};",
        base = c.base
    );
    query(primary(), &c.base, &script).await;
    wait_for_standby(&c.base, "SELECT count(*) FROM res_partner", "1000").await;
}

/// Wait until the standby shows what the primary has.
async fn wait_for_standby(db: &str, sql: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = async {
            let (client, connection) = standby()
                .superuser_config(db)
                .connect(tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(connection);
            let row = client.simple_query(sql).await.ok()?;
            row.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
        }
        .await;
        if seen.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby never showed {sql} = {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sessions ever opened to `db` on `server` (pg_stat_database.sessions).
async fn sessions(server: &PgServer, db: &str) -> i64 {
    let client = server.superuser().await.unwrap();
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    client
        .query_one(
            "SELECT coalesce((SELECT sessions FROM pg_stat_database WHERE datname = $1), 0)",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

/// What the tests compare to prove a server unchanged: the database `db` and the
/// roles named like it (other tests run concurrently), and in it every table's owner,
/// ACL and row count, the crons and the parameters.
async fn state(server: &PgServer, db: Option<&str>) -> String {
    let db = db.expect("a database");
    let mut text = query(
        server,
        "postgres",
        &format!(
            "SELECT format('%s|%s|%s|%s|%s', datname, pg_get_userbyid(datdba), datacl, datconnlimit, datallowconn)
               FROM pg_database WHERE datname = '{db}'
             UNION ALL
             SELECT * FROM (SELECT format('%s|%s|%s', rolname, rolcanlogin, rolvaliduntil) FROM pg_roles
                             WHERE rolname LIKE '{base}%' ORDER BY rolname) r",
            base = db.trim_end_matches("_integration")
        ),
    )
    .await
    .join("\n");
    if let Some(db) = Some(db) {
        let tables = query(
            server,
            db,
            "SELECT string_agg(format('%s|%s|%s', c.relname, pg_get_userbyid(c.relowner), c.relacl), ',' ORDER BY c.relname)
               FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'",
        )
        .await;
        text.push_str(&tables.join(""));
        if query(
            server,
            db,
            "SELECT to_regclass('public.ir_cron') IS NOT NULL",
        )
        .await
            == ["t"]
        {
            text.push_str(
                &query(
                    server,
                    db,
                    "SELECT format('%s %s %s', (SELECT count(*) FROM res_partner),
                            (SELECT string_agg(active::text, ',' ORDER BY id) FROM ir_cron),
                            (SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM ir_config_parameter))",
                )
                .await
                .join(""),
            );
        }
    }
    text
}

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

/// A table in the integration database before the refresh, to tell the copies apart.
async fn mark_integration(c: &Customer) {
    query(
        integration(),
        &c.name,
        &format!("SET ROLE {name}; CREATE TABLE before_refresh (i int); INSERT INTO before_refresh VALUES (42);", name = c.name),
    )
    .await;
}

/// Every neutralization the fixture calls for, as the copy shows it.
/// Odoo 16's shapes for sms, calendar sync, OAuth mail servers, payment_adyen, a
/// carrier, a payment terminal, cloud storage and bank synchronization, installed, with production's endpoints and tokens
/// in them (for the happy path).
const SYNC_AND_ADYEN: &str = "
    UPDATE ir_module_module SET state = 'installed', latest_version = '16.0.1.0' WHERE name = 'google_calendar';
    INSERT INTO ir_module_module (name, state, latest_version) VALUES
        ('sms', 'installed', '16.0.2.0'), ('payment_adyen', 'installed', '16.0.2.0');
    INSERT INTO ir_config_parameter (key, value) VALUES ('sms.endpoint', 'https://iap-sms.odoo.com');
    CREATE TABLE res_users_settings (id serial PRIMARY KEY, user_id integer, google_calendar_rtoken varchar,
                                     google_calendar_token varchar, google_synchronization_stopped boolean);
    INSERT INTO res_users_settings (user_id, google_calendar_rtoken, google_calendar_token, google_synchronization_stopped)
    VALUES (2, 'g-rtoken', 'g-token', false), (3, NULL, NULL, NULL);
    ALTER TABLE payment_provider ADD COLUMN adyen_merchant_account varchar, ADD COLUMN adyen_api_key varchar;
    INSERT INTO payment_provider (name, code, state, adyen_merchant_account, adyen_api_key)
    VALUES ('Adyen', 'adyen', 'enabled', 'FluxdockECOM', 'AQE-live-key');
    INSERT INTO ir_module_module (name, state, latest_version) VALUES
        ('microsoft_calendar', 'installed', '16.0.1.0'), ('google_gmail', 'installed', '16.0.1.0'),
        ('microsoft_outlook', 'installed', '16.0.1.0'), ('delivery_fedex', 'installed', '16.0.1.0'),
        ('pos_adyen', 'installed', '16.0.1.0');
    CREATE TABLE res_users (id serial PRIMARY KEY, login varchar, microsoft_calendar_token varchar,
                            microsoft_calendar_rtoken varchar);
    INSERT INTO res_users (login, microsoft_calendar_token, microsoft_calendar_rtoken) VALUES ('admin', 'm-token', 'm-rtoken');
    ALTER TABLE ir_mail_server ADD COLUMN google_gmail_refresh_token varchar,
        ADD COLUMN microsoft_outlook_refresh_token varchar, ADD COLUMN microsoft_outlook_access_token varchar;
    ALTER TABLE fetchmail_server ADD COLUMN google_gmail_refresh_token varchar,
        ADD COLUMN microsoft_outlook_refresh_token varchar, ADD COLUMN microsoft_outlook_access_token varchar;
    UPDATE ir_mail_server SET google_gmail_refresh_token = 'gm-rtoken' WHERE id = 1;
    UPDATE ir_mail_server SET microsoft_outlook_refresh_token = 'ol-rtoken', microsoft_outlook_access_token = 'ol-token' WHERE id = 2;
    UPDATE fetchmail_server SET google_gmail_refresh_token = 'gm-in', microsoft_outlook_refresh_token = 'ol-in';
    CREATE TABLE delivery_carrier (id serial PRIMARY KEY, name varchar, delivery_type varchar,
                                   prod_environment boolean, active boolean);
    INSERT INTO delivery_carrier (name, delivery_type, prod_environment, active) VALUES
        ('FedEx', 'fedex', true, true), ('Local', 'fixed', false, true);
    CREATE TABLE pos_payment_method (id serial PRIMARY KEY, name varchar, use_payment_terminal varchar, active boolean);
    INSERT INTO pos_payment_method (name, use_payment_terminal, active) VALUES
        ('Card', 'adyen', true), ('Cash', NULL, true);
    INSERT INTO ir_module_module (name, state, latest_version) VALUES
        ('cloud_storage_google', 'installed', '16.0.1.0'),
        ('account_online_synchronization', 'installed', '16.0.2.0');
    INSERT INTO ir_config_parameter (key, value) VALUES
        ('cloud_storage_google_bucket_name', 'fluxdock-prod'), ('cloud_storage_google_account_info', '{}'),
        ('cloud_storage_googlex', 'kept');
    CREATE TABLE account_online_link (id serial PRIMARY KEY, name varchar, client_id varchar);
    INSERT INTO account_online_link (name, client_id) VALUES ('Bank', 'prod-client-1')";

/// What [`SYNC_AND_ADYEN`] brought is neutralized.
async fn assert_sync_and_adyen_neutralized(c: &Customer) {
    for (sql, expected) in [
        (
            "SELECT value FROM ir_config_parameter WHERE key = 'sms.endpoint'",
            "https://iap-services-test.odoo.com",
        ),
        (
            "SELECT string_agg(concat_ws(' ', coalesce(google_calendar_rtoken, 'null'), \
             coalesce(google_calendar_token, 'null'), google_synchronization_stopped), ',' ORDER BY id) \
             FROM res_users_settings",
            "null null t,null null t",
        ),
        (
            "SELECT concat_ws(' ', state, coalesce(adyen_merchant_account, 'null'), \
             coalesce(adyen_api_key, 'null')) FROM payment_provider WHERE code = 'adyen'",
            "disabled null null",
        ),
        (
            "SELECT concat_ws(' ', coalesce(microsoft_calendar_token, 'null'), \
             coalesce(microsoft_calendar_rtoken, 'null')) FROM res_users",
            "null null",
        ),
        (
            "SELECT count(*) FROM ir_mail_server WHERE google_gmail_refresh_token IS NOT NULL \
             OR microsoft_outlook_refresh_token IS NOT NULL OR microsoft_outlook_access_token IS NOT NULL",
            "0",
        ),
        (
            "SELECT count(*) FROM fetchmail_server WHERE google_gmail_refresh_token IS NOT NULL \
             OR microsoft_outlook_refresh_token IS NOT NULL",
            "0",
        ),
        (
            "SELECT string_agg(concat_ws(' ', name, prod_environment, active), ',' ORDER BY id) \
             FROM delivery_carrier",
            "FedEx f f,Local f t",
        ),
        (
            "SELECT string_agg(concat_ws(' ', name, active), ',' ORDER BY id) FROM pos_payment_method",
            "Card f,Cash t",
        ),
        (
            "SELECT string_agg(key, ',') FROM ir_config_parameter WHERE key LIKE 'cloud_storage%'",
            "cloud_storage_googlex",
        ),
        ("SELECT client_id FROM account_online_link", "duplicate"),
    ] {
        assert_eq!(one(integration(), &c.name, sql).await, expected, "{sql}");
    }
}

async fn assert_neutralized(c: &Customer, major: u32) {
    let db = &c.name;
    let server = integration();
    let check = |sql: &'static str, expected: &'static str| async move {
        assert_eq!(one(server, db, sql).await, expected, "{sql}");
    };
    check(
        "SELECT string_agg(smtp_host || ':' || active, ',' ORDER BY id) FROM ir_mail_server",
        "smtp.example.com:false,smtp2.example.com:false,invalid:true",
    )
    .await;
    check(
        "SELECT string_agg(id || ':' || active, ',' ORDER BY id) FROM ir_cron",
        "1:true,2:false,3:false,4:false",
    )
    .await;
    check("SELECT count(*) FROM cron_audit", "0").await;
    check(
        "SELECT string_agg(tgenabled::text, ',') FROM pg_trigger WHERE tgname = 'ir_cron_changed'",
        "O",
    )
    .await;
    check(
        "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'",
        "true",
    )
    .await;
    check(
        "SELECT count(*) FROM ir_config_parameter WHERE key = 'database.enterprise_code'",
        "0",
    )
    .await;
    check("SELECT count(*) FROM ir_config_parameter WHERE key IN ('database.uuid', 'database.secret')
              AND value NOT IN ('8f4e3a6c-6f8e-11ee-b962-0242ac120002', 'd7c9b1f2-6f8e-11ee-b962-0242ac120002')", "2").await;
    check(
        "SELECT value FROM ir_config_parameter WHERE key = 'web.base.url'",
        "https://erp.example.com",
    )
    .await;
    check(
        "SELECT count(*) FROM mail_template WHERE mail_server_id IS NOT NULL",
        "0",
    )
    .await;
    check(
        "SELECT string_agg(state, ',' ORDER BY id) FROM mail_mail",
        "cancel,cancel,cancel,sent,exception",
    )
    .await;
    check(
        "SELECT string_agg(state, ',' ORDER BY id) FROM payment_provider WHERE code IN ('stripe', 'transfer')",
        "disabled,test",
    )
    .await;
    check(
        "SELECT string_agg(account_token, ',' ORDER BY id) FROM iap_account",
        "tok-123+disabled,tok-456+disabled",
    )
    .await;
    check(
        "SELECT format('%s %s', coalesce(domain, 'none'), cdn_activated) FROM website",
        "none f",
    )
    .await;
    check("SELECT count(*) FROM res_partner", "1000").await;
    // Attachments keep pointing at production's objects: the plan warns, nothing changes.
    check(
        "SELECT count(*) FROM ir_attachment WHERE store_fname LIKE 's3://fluxdock-odoo-prod/%'",
        "2",
    )
    .await;
    if major >= 17 {
        check(
            "SELECT count(*) FROM ir_act_server WHERE webhook_url IS NOT NULL",
            "0",
        )
        .await;
        check(
            "SELECT string_agg(active::text || coalesce(password, '-'), ',') FROM fetchmail_server",
            "false-",
        )
        .await;
    } else {
        // fetchmail_server belongs to `fetchmail` before 16 and to `mail` from 16 on.
        check(
            "SELECT string_agg(active::text || coalesce(password, '-'), ',') FROM fetchmail_server",
            "false-",
        )
        .await;
    }
    // Every object the integration role's, no production role in any ACL.
    check(
        "SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
            AND pg_get_userbyid(c.relowner) <> current_database()",
        "0",
    )
    .await;
    assert_eq!(
        one(server, db, &format!(
            "SELECT count(*) FROM pg_class WHERE relacl::text LIKE '%{}%' AND relacl::text NOT LIKE '%{}%'",
            c.base, c.name
        )).await,
        "0"
    );
    check(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'before_refresh'",
        "0",
    )
    .await;
}

/// Whether the integration role can connect to its database now.
async fn integration_role_connects(c: &Customer) -> bool {
    util::connect_tcp(integration(), &c.name, &c.password(), &c.name)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_copies_production_from_the_standby_and_neutralizes_it_odoo16() {
    let c = provision("happy");
    load_odoo(&c, 16, SYNC_AND_ADYEN).await;
    mark_integration(&c).await;
    assert!(integration_role_connects(&c).await);
    let production_before = state(primary(), Some(&c.base)).await;
    // pg_stat_database counts sessions from PostgreSQL 14 on.
    let counts_sessions = one(primary(), "postgres", "SHOW server_version_num")
        .await
        .parse::<i32>()
        .unwrap()
        >= 140000;
    let standby_sessions = if counts_sessions {
        sessions(standby(), &c.base).await
    } else {
        0
    };

    let dry = c.refresh(&["--dry-run"]).run();
    dry.success();
    for needle in [
        "source",
        "standby",
        "Odoo 16",
        "x_fluxdock_reports",
        "[base] UPDATE public.ir_cron",
        "s3://fluxdock-odoo-prod",
        "max_standby_streaming_delay",
        "dry run",
    ] {
        assert!(
            dry.stdout.contains(needle),
            "the plan must say {needle:?}:\n{}",
            dry.stdout
        );
    }

    // While it runs: which server's pg_stat_activity shows odoo-db's pg_dump.
    let running = tokio::task::spawn_blocking({
        let refresh = c.refresh(&["--yes", "--jobs", "2"]);
        move || refresh.run()
    });
    let (on_primary, on_standby) = (
        primary().superuser().await.unwrap(),
        standby().superuser().await.unwrap(),
    );
    let dumping =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'odoo-db pg_dump'";
    let (mut seen_on_primary, mut seen_on_standby) = (false, false);
    while !running.is_finished() {
        seen_on_primary |= on_primary
            .query_one(dumping, &[&c.base])
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0;
        seen_on_standby |= on_standby
            .query_one(dumping, &[&c.base])
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let run = running.await.unwrap();
    run.success();
    assert!(run.stdout.contains("refreshed"), "{}", run.stdout);
    assert!(
        seen_on_standby,
        "the standby's pg_stat_activity never showed pg_dump"
    );
    assert!(
        !seen_on_primary,
        "the primary's pg_stat_activity showed pg_dump"
    );
    assert_neutralized(&c, 16).await;
    assert_sync_and_adyen_neutralized(&c).await;
    assert!(
        integration_role_connects(&c).await,
        "the role's login is back"
    );
    // The spool is gone, the backup of the database before is there.
    assert!(!c
        .spool
        .path()
        .join("spool")
        .join(format!("{}.production", c.name))
        .exists());
    assert_eq!(std::fs::read_dir(c.backups.path()).unwrap().count(), 1);
    // Production untouched; the dump came from the standby, not the primary (above, from
    // pg_stat_activity; and the standby's session count grew). The primary's count is
    // not compared: other tests' `audit` runs, in parallel on the shared harness, read
    // each production twin's uuid from the primary.
    if counts_sessions {
        assert!(
            sessions(standby(), &c.base).await > standby_sessions,
            "the standby served the dump"
        );
    }
    assert_eq!(state(primary(), Some(&c.base)).await, production_before);

    // `list` shows it; `restore` brings back the database as it was before.
    let list = odoo_db().arg("list").run();
    list.success();
    assert!(list.stdout.contains("refreshed"), "{}", list.stdout);
    odoo_db()
        .args(["restore", &c.name, "--yes"])
        .run()
        .success();
    assert_eq!(
        one(integration(), &c.name, "SELECT i FROM before_refresh").await,
        "42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_from_the_primary_of_an_odoo17_database() {
    let c = provision("primary");
    load_odoo(&c, 17, "").await;
    let run = c
        .refresh(&["--yes", "--source", "primary", "--no-backup"])
        .run();
    run.success();
    assert_neutralized(&c, 17).await;
    assert!(run.stdout.contains("(primary, cluster"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing_anywhere() {
    let c = provision("refuse");
    load_odoo(&c, 16, "").await;
    mark_integration(&c).await;
    let before = (
        state(primary(), Some(&c.base)).await,
        state(integration(), Some(&c.name)).await,
    );
    // A production name as target.
    let run = odoo_db().args(["refresh", &c.base, "--yes"]).run();
    assert_refused(&run, "does not end in \"_integration\"");
    // No TTY and no --yes.
    assert_refused(&c.refresh(&[]).run(), "pass --yes");
    // A module that Odoo neutralizes and odoo-db does not.
    query(
        primary(),
        &c.base,
        "UPDATE ir_module_module SET state = 'installed' WHERE name = 'social_twitter'",
    )
    .await;
    wait_for_standby(
        &c.base,
        "SELECT state FROM ir_module_module WHERE name = 'social_twitter'",
        "installed",
    )
    .await;
    let run = c.refresh(&["--yes"]).run();
    assert_refused(&run, "social_twitter");
    query(
        primary(),
        &c.base,
        "UPDATE ir_module_module SET state = 'uninstalled' WHERE name = 'social_twitter'",
    )
    .await;
    let after = (
        state(primary(), Some(&c.base)).await,
        state(integration(), Some(&c.name)).await,
    );
    assert_eq!(after, before);
    assert!(std::fs::read_dir(c.backups.path())
        .unwrap()
        .next()
        .is_none());
    assert!(!c.spool.path().join("spool").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_odoos_is_refused_unless_no_neutralize() {
    let c = provision("plain");
    query(primary(), &c.base, &format!("SET ROLE {}; CREATE TABLE res_partner (i int); INSERT INTO res_partner SELECT generate_series(1, 1000);", c.base)).await;
    wait_for_standby(&c.base, "SELECT count(*) FROM res_partner", "1000").await;
    let before = (
        state(primary(), Some(&c.base)).await,
        state(integration(), Some(&c.name)).await,
    );
    assert_refused(&c.refresh(&["--yes"]).run(), "no ir_module_module");
    assert_eq!(
        (
            state(primary(), Some(&c.base)).await,
            state(integration(), Some(&c.name)).await
        ),
        before
    );
    c.refresh(&["--yes", "--no-neutralize"]).run().success();
    assert_eq!(
        one(integration(), &c.name, "SELECT count(*) FROM res_partner").await,
        "1000"
    );
}

/// Kill odoo-db (a failpoint's panic ends the process between two steps) at `point`;
/// then the integration role cannot connect to an un-neutralized copy, recreate and
/// restore refuse the name, and the rerun converges.
async fn killed_at(point: &str, tag: &str) {
    let c = provision(tag);
    load_odoo(&c, 16, "").await;
    mark_integration(&c).await;
    let run = c
        .refresh(&["--yes"])
        .env("FAILPOINTS", format!("{point}=panic"))
        .run();
    assert_ne!(run.code, 0, "{point}: {}", run.stderr);
    if point == "refresh-after-dump" {
        // The production dump waits for the rerun: 0700, its files 0600.
        use std::os::unix::fs::PermissionsExt;
        let spool = c
            .spool
            .path()
            .join("spool")
            .join(format!("{}.production", c.name));
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(spool.parent().unwrap()), 0o700);
        assert_eq!(mode(&spool), 0o700);
        for entry in std::fs::read_dir(&spool).unwrap() {
            assert_eq!(mode(&entry.unwrap().path()), 0o600);
        }
    } else {
        assert!(
            !integration_role_connects(&c).await,
            "{point}: the integration role got in"
        );
    }
    // `list` says which kind of run was interrupted, and where.
    let list = odoo_db().args(["list", "--format", "json"]).run();
    list.success();
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let entry = listed
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["name"] == c.name.as_str()))
        .unwrap_or_else(|| panic!("{} is not listed: {}", c.name, list.stdout));
    assert_eq!(entry["state"], "refreshing", "{point}: {entry}");
    assert!(entry["step"].is_string(), "{point}: {entry}");
    let recreate = odoo_db()
        .args(["recreate", &c.name, "--yes", "--backup-dir"])
        .arg(c.backups.path())
        .run();
    assert_refused(&recreate, "refresh");
    let restore = odoo_db().args(["restore", &c.name, "--yes"]).run();
    assert_refused(&restore, "refresh");
    c.refresh(&["--yes"]).run().success();
    assert_neutralized(&c, 16).await;
    assert!(integration_role_connects(&c).await);
    odoo_db()
        .args(["restore", &c.name, "--yes"])
        .run()
        .success();
    assert_eq!(
        one(integration(), &c.name, "SELECT i FROM before_refresh").await,
        "42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_dump() {
    killed_at("refresh-after-dump", "kdump").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_create_before_the_restore() {
    killed_at("recreate-after-create", "kcreate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_restore_before_the_neutralization() {
    killed_at("restore-after-restore", "krestore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_neutralization_committed() {
    killed_at("refresh-after-neutralize", "kneutral").await;
}

/// The audit's neutralization checks that name `db`.
fn audit_checks(db: &str) -> Vec<(String, String)> {
    let run = odoo_db().args(["audit", "--format", "json"]).run();
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["check"] == "neutralization")
        .filter(|check| check["message"].as_str().unwrap_or("").contains(db))
        .map(|check| {
            (
                check["status"].as_str().unwrap().to_string(),
                check["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_judges_the_copies_of_production() {
    let c = provision("audit");
    load_odoo(&c, 16, "").await;
    c.refresh(&["--yes", "--no-backup"]).run().success();
    assert_eq!(audit_checks(&c.name), []);
    query(
        integration(),
        &c.name,
        "UPDATE ir_cron SET active = true WHERE id = 2",
    )
    .await;
    let checks = audit_checks(&c.name);
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].0, "WARNING", "{checks:?}");
    query(
        integration(),
        &c.name,
        "UPDATE ir_config_parameter SET value = 'false' WHERE key = 'database.is_neutralized'",
    )
    .await;
    let checks = audit_checks(&c.name);
    assert_eq!(checks[0].0, "CRITICAL", "{checks:?}");
    assert!(checks[0].1.contains("NOT neutralized"), "{checks:?}");

    // A copy made by hand: its uuid is production's, the catalog knows no refresh.
    let d = provision("handcopy");
    load_odoo(&d, 16, "").await;
    let sql = include_str!("../fixtures/odoo.sql").replace("{major}", "16");
    query(
        integration(),
        &d.name,
        &format!("SET ROLE {}; {sql}", d.name),
    )
    .await;
    // The audit reads production's uuid as a throwaway member of the owner, connecting
    // through the owner's CONNECT: production's ACL does not change, not even while the
    // audit runs (a suspend or recreate running meanwhile would record the change).
    let name = d.name.clone();
    let audit = std::thread::spawn(move || audit_checks(&name));
    let on_primary = primary().superuser().await.unwrap();
    let mut acls = std::collections::BTreeSet::new();
    while !audit.is_finished() {
        let acl: Option<String> = on_primary
            .query_one(
                "SELECT datacl::text FROM pg_database WHERE datname = $1",
                &[&d.base],
            )
            .await
            .unwrap()
            .get(0);
        acls.insert(acl);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        acls.len(),
        1,
        "the ACL of production changed during the audit: {acls:?}"
    );
    let checks = audit.join().unwrap();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0].0, "CRITICAL", "{checks:?}");
    assert!(
        checks[0].1.contains("equals its production twin's"),
        "{checks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dump_brings_no_event_trigger_and_no_publication() {
    let c = provision("contents");
    load_odoo(&c, 16, "").await;
    query(
        primary(),
        &c.base,
        &format!(
            "SET ROLE {}; CREATE PUBLICATION leak FOR TABLE res_partner;",
            c.base
        ),
    )
    .await;
    wait_for_standby(&c.base, "SELECT count(*) FROM pg_publication", "1").await;
    let dry = c.refresh(&["--dry-run"]).run();
    dry.success();
    assert!(dry.stdout.contains("publication leak"), "{}", dry.stdout);
    query(
        primary(),
        &c.base,
        "CREATE FUNCTION public.noop() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$;
         CREATE EVENT TRIGGER watcher ON ddl_command_start EXECUTE FUNCTION public.noop();",
    )
    .await;
    wait_for_standby(&c.base, "SELECT count(*) FROM pg_event_trigger", "1").await;
    let before = state(integration(), Some(&c.name)).await;
    assert_refused(&c.refresh(&["--yes"]).run(), "event trigger watcher");
    assert_eq!(state(integration(), Some(&c.name)).await, before);
    query(primary(), &c.base, "DROP EVENT TRIGGER watcher").await;
    wait_for_standby(&c.base, "SELECT count(*) FROM pg_event_trigger", "0").await;
    c.refresh(&["--yes", "--no-backup"]).run().success();
    assert_eq!(
        one(
            integration(),
            &c.name,
            "SELECT count(*) FROM pg_publication"
        )
        .await,
        "0"
    );
}

/// A harness of its own (for tests that reconfigure or pause its standby) with odoo-db
/// initialized on it (its config plus `extra_toml`) and one customer provisioned.
struct OwnHarness {
    harness: pgsandbox::Harness,
    config: std::path::PathBuf,
    pgpass: std::path::PathBuf,
    base: String,
    name: String,
    secrets: TempDir,
    spool: TempDir,
}

impl OwnHarness {
    fn start(customer: &str, extra_toml: &str) -> OwnHarness {
        let harness = util::fresh(pgsandbox::HarnessOptions::default());
        let (config, pgpass) = harness.write_client_files().unwrap();
        let mut toml = std::fs::read_to_string(&config).unwrap();
        toml.push_str(extra_toml);
        std::fs::write(&config, toml).unwrap();
        let mut own = OwnHarness {
            harness,
            config,
            pgpass,
            base: String::new(),
            name: String::new(),
            secrets: util::scratch_dir(),
            spool: util::scratch_dir(),
        };
        own.tool().arg("init").run().success();
        let run = own
            .tool()
            .args(["provision", "--customer", customer, "--secrets-dir"])
            .arg(own.secrets.path())
            .run();
        run.success();
        own.base = run
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("export DB_NAME="))
            .unwrap()
            .to_string();
        own.name = format!("{}_integration", own.base);
        own
    }

    fn tool(&self) -> OdooDb {
        OdooDb::new()
            .env("ODOO_DB_CONFIG", &self.config)
            .env("PGPASSFILE", &self.pgpass)
    }

    /// `refresh NAME --yes --no-backup` with this harness's spool, plus `extra`.
    fn refresh(&self, extra: &[&str]) -> OdooDb {
        self.tool()
            .args(["refresh", &self.name, "--yes", "--no-backup", "--spool-dir"])
            .arg(self.spool.path().join("spool"))
            .args(extra)
    }

    fn standby(&self) -> &PgServer {
        self.harness.standby.as_ref().expect("a standby")
    }

    fn integration(&self) -> &PgServer {
        self.harness
            .integration
            .as_ref()
            .expect("an integration server")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_standby_or_a_failed_identity_pin_is_refused() {
    let own = OwnHarness::start("stale-shop", "\n[refresh]\nmax_source_lag = \"1s\"\n");
    let (base, name) = (own.base.as_str(), own.name.as_str());
    let primary = &own.harness.primary;
    let standby = own.standby();
    let integration = own.integration();
    let refresh = |extra: &[&str]| own.refresh(extra).run();
    let sql = include_str!("../fixtures/odoo.sql").replace("{major}", "16");
    query(primary, base, &format!("SET ROLE {base}; {sql}")).await;
    let before = (
        state(primary, Some(base)).await,
        state(integration, Some(name)).await,
    );

    // Replay paused: the heartbeat never shows within 1 s.
    standby
        .psql_superuser("SELECT pg_wal_replay_pause()")
        .unwrap();
    assert_refused(&refresh(&[]), "too far behind");
    assert_eq!(
        (
            state(primary, Some(base)).await,
            state(integration, Some(name)).await
        ),
        before
    );
    standby
        .psql_superuser("SELECT pg_wal_replay_resume()")
        .unwrap();

    // The production cluster's pin no longer matches its server.
    query(
        primary,
        "odoo_db",
        "UPDATE catalog.clusters SET system_identifier = 42 WHERE kind = 'production'",
    )
    .await;
    assert_refused(&refresh(&["--source", "primary"]), "init pinned 42");
    assert_eq!(
        (
            state(primary, Some(base)).await,
            state(integration, Some(name)).await
        ),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_the_neutralization_transaction() {
    killed_at("refresh-in-neutralization", "kintx").await;
}

/// SIGKILL of the odoo-db process itself once `application` (pg_dump or pg_restore)
/// copies rows of `db` on `server` (a `COPY` there); then the window holds and the
/// rerun converges.
async fn sigkilled_during(application: &str, on_standby: bool, tag: &str) {
    let c = provision(tag);
    // Enough data (~40 MB) for the kill to land while the tool runs.
    load_odoo(
        &c,
        16,
        &format!(
            "CREATE TABLE mail_message (id serial PRIMARY KEY, body text);
             INSERT INTO mail_message (body) SELECT repeat(md5(g::text), 6) FROM generate_series(1, 150000) g;
             ALTER TABLE mail_message OWNER TO {}",
            c.base
        ),
    )
    .await;
    wait_for_standby(&c.base, "SELECT count(*) FROM mail_message", "150000").await;
    mark_integration(&c).await;
    let (server, db) = if on_standby {
        (standby(), c.base.clone())
    } else {
        (integration(), c.name.clone())
    };
    // The backup's COPY … TO stdout in the integration database is not the restore.
    let pattern = if on_standby {
        "COPY % TO stdout%"
    } else {
        "COPY % FROM stdin%"
    };
    let watcher = server.superuser().await.unwrap();
    let mut child = c
        .refresh(&["--yes", "--jobs", "2"])
        .timeout(Duration::from_secs(300))
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND datname = $2",
                &[&pattern, &db],
            )
            .await
            .unwrap()
            .get(0);
        if seen > 0 {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("odoo-db ended ({status}) before {application} started");
        }
        assert!(Instant::now() < deadline, "{application} never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if !on_standby {
        assert!(
            !integration_role_connects(&c).await,
            "the integration role got into the un-neutralized copy"
        );
    }
    c.refresh(&["--yes"]).run().success();
    assert_neutralized(&c, 16).await;
    assert_eq!(
        one(integration(), &c.name, "SELECT count(*) FROM mail_message").await,
        "150000"
    );
    assert!(integration_role_connects(&c).await);
    odoo_db()
        .args(["restore", &c.name, "--yes"])
        .run()
        .success();
    assert_eq!(
        one(integration(), &c.name, "SELECT i FROM before_refresh").await,
        "42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_dump() {
    sigkilled_during("pg_dump", true, "sdump").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_restore() {
    sigkilled_during("pg_restore", false, "srestore").await;
}

/// A standby that cancels queries in conflict with replay at once
/// (`max_standby_streaming_delay = 0`, no `hot_standby_feedback`): production takes an
/// ACCESS EXCLUSIVE lock while the dump holds its locks on the standby, replay cancels
/// pg_dump, and the refresh fails (exit 1) saying so with the standby's settings,
/// leaving the integration database as it was; a rerun from the primary then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_cancelled_by_a_recovery_conflict_says_why_and_changes_nothing() {
    let own = OwnHarness::start("conflict-shop", "");
    let (base, name) = (own.base.as_str(), own.name.as_str());
    let primary = &own.harness.primary;
    let standby = own.standby();
    let integration = own.integration();
    standby
        .set_conf("max_standby_streaming_delay", "0")
        .expect("setting max_standby_streaming_delay on the standby");
    standby.reload().expect("reloading the standby");
    let sql = include_str!("../fixtures/odoo.sql").replace("{major}", "16");
    query(
        primary,
        base,
        &format!(
            "SET ROLE {base}; {sql}
             CREATE TABLE mail_message (id serial PRIMARY KEY, body text);
             INSERT INTO mail_message (body) SELECT repeat(md5(g::text), 6) FROM generate_series(1, 300000) g;"
        ),
    )
    .await;
    let written = query(primary, "postgres", "SELECT pg_current_wal_lsn()").await;
    let replayed = || async {
        query(
            standby,
            "postgres",
            &format!("SELECT pg_last_wal_replay_lsn() >= '{}'", written[0]),
        )
        .await
            == ["t"]
            && query(standby, "postgres", "SHOW max_standby_streaming_delay").await == ["0"]
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replayed().await {
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = state(integration, Some(name)).await;

    let refresh = |extra: &[&str]| {
        own.refresh(&[&["--jobs", "2"], extra].concat())
            .timeout(Duration::from_secs(300))
    };
    let running = tokio::task::spawn_blocking({
        let refresh = refresh(&[]);
        move || refresh.run()
    });
    // Production locks a table that the plan does not read and pg_dump locks for its
    // whole run, again and again until the run ends: replaying the lock conflicts with
    // pg_dump's whenever pg_dump runs.
    let locker = primary.superuser_in(base).await.unwrap();
    while !running.is_finished() {
        locker
            .batch_execute("BEGIN; LOCK TABLE mail_message IN ACCESS EXCLUSIVE MODE; COMMIT;")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = running.await.unwrap();
    run.expect_code(1);
    for needle in ["a retry restarts the whole dump", "nothing was dropped"] {
        assert!(
            run.stderr.contains(needle),
            "{needle:?} in:\n{}",
            run.stderr
        );
    }
    // Replay cancels pg_dump's sessions, or (when a worker asks for its table's lock
    // while replay holds it) a worker gives up at once: either is explained.
    assert!(
        run.stderr.contains(
            "the standby cancelled it (recovery conflict; max_standby_streaming_delay = 0 ms, \
             hot_standby_feedback = off)"
        ) || run
            .stderr
            .contains("a table was locked ACCESS EXCLUSIVE during the dump (DDL, TRUNCATE or VACUUM FULL on production, which the standby replays)"),
        "{}",
        run.stderr
    );
    assert_eq!(state(integration, Some(name)).await, before);

    // From the primary, which cancels nothing: the copy is made and neutralized.
    refresh(&["--source", "primary"]).run().success();
    assert_eq!(
        query(integration, name, "SELECT count(*) FROM mail_message").await,
        ["300000"]
    );
    assert_eq!(
        query(
            integration,
            name,
            "SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'"
        )
        .await,
        ["true"]
    );
}
