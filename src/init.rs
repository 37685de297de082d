//! `odoo-db init`: make the catalog and the heartbeat tables exist, pin identities.
//!
//! Safe to run any number of times: it creates what is missing, upgrades the catalog
//! schema, and checks (never silently re-pins) each cluster's system identifier.
//! Every other command relies on what it sets up.

use std::fmt::Write;

use tokio_postgres::Client;

use crate::catalog;
use crate::config::Config;
use crate::conn::ConnParams;
use crate::error::{Context, Error, Result};
use crate::servers::{self, quote_ident, Servers};

const HEARTBEAT_SQL: &str = include_str!("../sql/heartbeat/create.sql");

/// Run init; returns the summary printed on stdout.
pub async fn run(config: &Config) -> Result<String> {
    let servers = Servers::open(config).await?;
    let mut summary = String::new();

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
        let pinned_now = catalog::pin_identity(&catalog, name, cluster.kind, identifier).await?;
        writeln!(
            summary,
            "cluster {name} ({}): system identifier {identifier} {}",
            cluster.kind.as_str(),
            if pinned_now { "pinned" } else { "verified" }
        )
        .ok();

        if cluster.kind == crate::config::ClusterKind::Integration {
            // The group that pg_hba.conf admits the throwaway roles of restore steps by.
            crate::steprole::ensure_group(&primary).await?;
            writeln!(
                summary,
                "  group role {} ready (pg_hba.conf: +{})",
                crate::steprole::GROUP_ROLE,
                crate::steprole::GROUP_ROLE
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
            create_heartbeat(&servers, config, name, &primary).await?;
            writeln!(
                summary,
                "  heartbeat table ready in database {}",
                config.catalog.database
            )
            .ok();
        }
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
    if !catalog::database_exists(primary, database).await? {
        primary
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'; REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                quote_ident(database),
                quote_ident(database)
            ))
            .await
            .with_context(|| format!("cluster {cluster}: creating database {database} for the heartbeat"))?;
    }
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
