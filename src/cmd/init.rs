//! `odoo-db init`: make the catalog and the heartbeat tables exist, pin identities.
//!
//! Safe to run any number of times: it creates what is missing, upgrades the catalog
//! schema, and checks (never silently re-pins) each cluster's system identifier.
//! Every other command relies on what it sets up.

use std::fmt::Write;

use tokio_postgres::Client;

use crate::catalog::created_concurrently;
use crate::catalog::{self, Catalog};
use crate::config::{ClusterConfig, Config};
use crate::error::{Context, Error, Result};
use crate::pg::quote::quote_ident;
use crate::servers::{self, Servers};
use pgconn::ConnParams;

const HEARTBEAT_SQL: &str = include_str!("../../sql/heartbeat/create.sql");

/// Run init; returns the summary printed on stdout.
/// The session advisory lock that serialises inits ("odoo-db init" in hex, in 8 bytes).
const INIT_LOCK: i64 = 0x6f64_6f6f_6462_0002;

pub async fn run(config: &Config) -> Result<String> {
    let servers = Servers::open(config).await?;
    let mut summary = String::new();
    // Two inits at once (two DBAs, a timer and a DBA) would race at every step: CREATE
    // DATABASE, REVOKE on the same pg_database row, the identity pins, the heartbeat
    // schema. One session lock on the catalog cluster's maintenance database makes the
    // second wait and then find everything done. Released when `init_lock_session` drops at the end of the run.
    let init_lock_session = servers
        .connect_primary(&config.catalog.cluster)
        .await
        .context("connecting to the catalog cluster to serialise init")?;
    init_lock_session
        .execute("SELECT pg_advisory_lock($1)", &[&INIT_LOCK])
        .await
        .context("waiting for another `odoo-db init` to finish")?;

    // The catalog goes only into a database odoo-db made (or an empty one made for it),
    // never into a customer's: checked before anything is created.
    check_own_database(&servers, &config.catalog.cluster, &config.catalog.database).await?;
    let (catalog, applied) = catalog::create_and_migrate(&servers).await?;
    if applied.is_empty() {
        writeln!(
            summary,
            "catalog: schema version {} (up to date)",
            catalog::SCHEMA_VERSION
        )
        .ok();
    } else {
        writeln!(
            summary,
            "catalog: applied migrations {applied:?}, schema version {}",
            catalog::SCHEMA_VERSION
        )
        .ok();
    }

    for (name, cluster) in &config.clusters {
        init_cluster(&servers, config, &catalog, name, cluster, &mut summary).await?;
    }
    catalog
        .record_event(
            "init",
            None,
            "init",
            "done",
            serde_json::json!({ "migrations": applied }),
        )
        .await?;
    Ok(summary)
}

/// One cluster: a primary, its system identifier pinned (or verified), the step
/// roles' group on integration, its standbys copies of it, and their heartbeat table.
async fn init_cluster(
    servers: &Servers,
    config: &Config,
    catalog: &Catalog,
    name: &str,
    cluster: &ClusterConfig,
    summary: &mut String,
) -> Result<()> {
    let primary = servers.connect_primary(name).await?;
    if servers::in_recovery(&primary).await? {
        return Err(Error::refused(format!(
            "cluster {name}: the server configured as primary ({}) is in recovery (a standby); point clusters.{name}.primary at the primary",
            servers.primary(name)?.label()
        )));
    }
    let identifier = servers::system_identifier(&primary)
        .await
        .with_context(|| format!("cluster {name}"))?;
    let pinned_now = catalog::pin_identity(catalog, name, cluster.kind, identifier).await?;
    writeln!(
        summary,
        "cluster {name} ({}): system identifier {identifier} {}",
        cluster.kind.as_str(),
        if pinned_now { "pinned" } else { "verified" }
    )
    .ok();

    if cluster.kind == crate::config::ClusterKind::Integration {
        // The group that pg_hba.conf admits the throwaway roles of restore steps by.
        crate::pg::steprole::ensure_group(&primary).await?;
        writeln!(
            summary,
            "  group role {} ready (pg_hba.conf: +{})",
            crate::pg::steprole::GROUP_ROLE,
            crate::pg::steprole::GROUP_ROLE
        )
        .ok();
    }

    let standbys = servers.standbys(name)?;
    for (standby, params) in &standbys {
        check_standby(name, &standby.name, params, identifier).await?;
        writeln!(
            summary,
            "  standby {}: same system identifier, in recovery",
            standby.name
        )
        .ok();
    }
    if !standbys.is_empty() {
        create_heartbeat(servers, config, name, &primary).await?;
        writeln!(
            summary,
            "  heartbeat table ready in database {}",
            config.catalog.database
        )
        .ok();
    }
    Ok(())
}

/// A standby must be a copy of its primary (same identifier) and in recovery.
async fn check_standby(
    cluster: &str,
    standby: &str,
    params: &ConnParams,
    primary_identifier: u64,
) -> Result<()> {
    let client = params
        .with_dbname("postgres")
        .connect(&servers::admin_session())
        .await
        .with_context(|| format!("cluster {cluster}: standby {standby}"))?;
    let identifier = servers::system_identifier(&client).await?;
    if identifier != primary_identifier {
        return Err(Error::refused(format!(
            "cluster {cluster}: standby {standby} has system identifier {identifier}, its primary {primary_identifier}: \
             it is not a copy of this primary; fix clusters.{cluster}.standbys"
        )));
    }
    if !servers::in_recovery(&client).await? {
        return Err(Error::refused(format!(
            "cluster {cluster}: standby {standby} is not in recovery (was it promoted?); fix clusters.{cluster}.standbys"
        )));
    }
    Ok(())
}

/// The heartbeat lives in odoo-db's own database on the cluster (the catalog database
/// on the catalog cluster), in a schema of its own so a monitoring role can be given
/// exactly that table and nothing of the catalog.
async fn create_heartbeat(
    servers: &Servers,
    config: &Config,
    cluster: &str,
    primary: &Client,
) -> Result<()> {
    let database = &config.catalog.database;
    check_own_database(servers, cluster, database).await?;
    if !catalog::database_exists(primary, database).await? {
        // CREATE DATABASE cannot run in a transaction block, and several statements in
        // one simple query are one: each goes alone.
        match primary
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
                quote_ident(database)
            ))
            .await
        {
            Ok(()) => {}
            // A concurrent init made it: checked below like any other.
            Err(error) if created_concurrently(&error) => {}
            Err(error) => {
                return Err(Error::from(error).context(format!(
                    "cluster {cluster}: creating database {database} for the heartbeat"
                )))
            }
        }
    }
    // Only odoo-db (the owner) may connect, as to the catalog database.
    primary
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
            quote_ident(database)
        ))
        .await
        .with_context(|| {
            format!("cluster {cluster}: revoking PUBLIC's access to database {database}")
        })?;
    let client = servers
        .primary(cluster)?
        .with_dbname(database)
        .connect(&servers::admin_session())
        .await
        .with_context(|| format!("cluster {cluster}: connecting to {database}"))?;
    client
        .batch_execute(HEARTBEAT_SQL)
        .await
        .with_context(|| format!("cluster {cluster}: creating the heartbeat table"))?;
    if let Some(monitor) = &config.health.user {
        if !catalog::role_exists(primary, monitor).await? {
            return Err(Error::refused(format!(
                "[health] user {monitor:?} does not exist on cluster {cluster}: create it (CREATE ROLE {monitor} LOGIN IN ROLE pg_monitor) or remove the setting"
            )));
        }
        let monitor = quote_ident(monitor);
        client
            .batch_execute(&format!(
                "GRANT CONNECT ON DATABASE {db} TO {monitor};
                 GRANT USAGE ON SCHEMA heartbeat TO {monitor};
                 GRANT SELECT, UPDATE ON heartbeat.beat TO {monitor};",
                db = quote_ident(database)
            ))
            .await
            .with_context(|| {
                format!("cluster {cluster}: granting the heartbeat to the monitoring role")
            })?;
    }
    Ok(())
}

/// Databases a DBA would never hand to odoo-db as its own.
const SYSTEM_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// What a database holds, as far as deciding whether it is odoo-db's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseContents {
    /// `catalog.schema_version` or `heartbeat.beat` exists: odoo-db made it.
    pub has_marker: bool,
    /// Schemas other than the system ones, `public` and odoo-db's `heartbeat`.
    pub other_schemas: Vec<String>,
    /// Tables, views, sequences, functions and types in `public`, by name.
    pub public_objects: Vec<String>,
    /// Extensions other than `plpgsql`.
    pub extensions: Vec<String>,
}

/// Why `database` (owned by `owner`) is not odoo-db's (`agent`) to create its schemas
/// in; None when it is: owned by odoo-db's role and either marked by odoo-db (its
/// catalog or heartbeat table) or empty (made by a DBA for odoo-db, or by an init
/// interrupted right after CREATE DATABASE).
pub fn foreign_database_reason(
    database: &str,
    owner: &str,
    agent: &str,
    contents: Option<&DatabaseContents>,
) -> Option<String> {
    if SYSTEM_DATABASES.contains(&database) {
        return Some(format!("{database} is a system database"));
    }
    if owner != agent {
        return Some(format!(
            "it is owned by role {owner}, not by odoo-db's role {agent}, so odoo-db did not create it \
             (a customer's database is owned by the customer's role)"
        ));
    }
    let contents = contents?;
    if contents.has_marker {
        return None;
    }
    let mut found = Vec::new();
    if !contents.other_schemas.is_empty() {
        found.push(format!("schemas {}", contents.other_schemas.join(", ")));
    }
    if !contents.public_objects.is_empty() {
        found.push(format!(
            "objects in schema public ({})",
            contents.public_objects.join(", ")
        ));
    }
    if !contents.extensions.is_empty() {
        found.push(format!("extensions {}", contents.extensions.join(", ")));
    }
    (!found.is_empty()).then(|| {
        format!(
            "it holds no odoo-db catalog but {}, so it is somebody else's",
            found.join(" and ")
        )
    })
}

const CONTENTS_SQL: &str = "
    SELECT to_regclass('catalog.schema_version') IS NOT NULL
               OR to_regclass('heartbeat.beat') IS NOT NULL,
           ARRAY(SELECT nspname::text FROM pg_namespace
                 WHERE nspname NOT IN ('public', 'information_schema', 'pg_catalog', 'pg_toast', 'heartbeat')
                   AND nspname !~ '^pg_(temp|toast_temp)_[0-9]+$'
                 ORDER BY 1),
           ARRAY(SELECT name FROM (
                     SELECT c.relname::text AS name FROM pg_class c
                     WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'public')
                     UNION ALL
                     SELECT p.proname::text FROM pg_proc p
                     WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'public')
                     UNION ALL
                     SELECT t.typname::text FROM pg_type t
                     WHERE t.typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = 'public')
                       AND t.typrelid = 0 AND t.typcategory <> 'A'
                 ) AS objects ORDER BY 1 LIMIT 10),
           ARRAY(SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1)";

/// Refuse (exit 2, nothing changed) to create odoo-db's schemas in an existing
/// database that odoo-db did not create: see [`foreign_database_reason`]. A missing
/// database is fine (init creates it).
async fn check_own_database(servers: &Servers, cluster: &str, database: &str) -> Result<()> {
    let maintenance = servers.connect_primary(cluster).await?;
    let row = maintenance
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text, current_user::text FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .with_context(|| format!("cluster {cluster}: looking up database {database}"))?;
    let Some(row) = row else {
        if SYSTEM_DATABASES.contains(&database) {
            // Never create (or use) a database of one of these names.
            return Err(refusal(
                cluster,
                database,
                &format!("{database} is a system database"),
            ));
        }
        return Ok(());
    };
    let (owner, agent): (String, String) = (row.get(0), row.get(1));
    if let Some(reason) = foreign_database_reason(database, &owner, &agent, None) {
        return Err(refusal(cluster, database, &reason));
    }
    let client = servers
        .primary(cluster)?
        .with_dbname(database)
        .connect(&servers::admin_session())
        .await
        .with_context(|| format!("cluster {cluster}: connecting to {database}"))?;
    let row = client
        .query_one(CONTENTS_SQL, &[])
        .await
        .with_context(|| format!("cluster {cluster}: reading what database {database} holds"))?;
    let contents = DatabaseContents {
        has_marker: row.get(0),
        other_schemas: row.get(1),
        public_objects: row.get(2),
        extensions: row.get(3),
    };
    match foreign_database_reason(database, &owner, &agent, Some(&contents)) {
        Some(reason) => Err(refusal(cluster, database, &reason)),
        None => Ok(()),
    }
}

fn refusal(cluster: &str, database: &str, reason: &str) -> Error {
    Error::refused(format!(
        "[catalog] database = {database:?} refused on cluster {cluster}: {reason}. odoo-db keeps its \
         catalog and heartbeat only in a database of its own: set [catalog] database to a name that \
         does not exist yet (init creates it), or to an empty database owned by odoo-db's role"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_odoo_dbs_own_or_empty_databases_are_used() {
        let empty = DatabaseContents::default();
        assert_eq!(
            foreign_database_reason("odoo_db", "odoo_db_admin", "odoo_db_admin", Some(&empty)),
            None
        );
        let marked = DatabaseContents {
            has_marker: true,
            public_objects: vec!["report_view".into()],
            ..DatabaseContents::default()
        };
        assert_eq!(
            foreign_database_reason("odoo_db", "odoo_db_admin", "odoo_db_admin", Some(&marked)),
            None
        );
        // A customer's database: owned by the customer's role.
        let reason =
            foreign_database_reason("calm_owl_0001", "calm_owl_0001", "odoo_db_admin", None)
                .unwrap();
        assert!(reason.contains("owned by role calm_owl_0001"), "{reason}");
        // Owned by odoo-db but holding someone's data.
        let used = DatabaseContents {
            other_schemas: vec!["sales".into()],
            public_objects: vec!["res_partner".into()],
            extensions: vec!["pg_trgm".into()],
            ..DatabaseContents::default()
        };
        let reason =
            foreign_database_reason("odoo_db", "odoo_db_admin", "odoo_db_admin", Some(&used))
                .unwrap();
        for says in ["schemas sales", "res_partner", "extensions pg_trgm"] {
            assert!(reason.contains(says), "{reason}");
        }
        for system in ["postgres", "template1"] {
            assert!(foreign_database_reason(system, "x", "x", Some(&empty)).is_some());
        }
    }
}
