//! The catalog: odoo-db's own database on the catalog cluster's primary.
//!
//! It remembers what odoo-db knows and a server cannot tell: which customer owns which
//! name, which step a provision or recreate reached (so a rerun completes it), the
//! system identifier each cluster had when `init` first saw it (so a config pointed at
//! the wrong server is refused), and an append-only log of who did what.
//!
//! The schema is applied by versioned migrations in `sql/catalog/`; a binary refuses a
//! catalog newer than itself rather than guess at its meaning.

use serde_json::Value;
use tokio_postgres::Client;

use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::servers::{self, Servers};

/// Migrations in order, each with its version (the number of its file in
/// `sql/catalog/`). Versions need not be contiguous: `init` applies every one that the
/// catalog has not recorded yet, whatever their order of arrival.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../sql/catalog/0001_initial.sql")),
    (2, include_str!("../sql/catalog/0002_recreates.sql")),
    (3, include_str!("../sql/catalog/0003_backups.sql")),
    (4, include_str!("../sql/catalog/0004_step_roles.sql")),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i32 = newest_version();

const fn newest_version() -> i32 {
    let mut newest = 0;
    let mut index = 0;
    while index < MIGRATIONS.len() {
        if MIGRATIONS[index].0 > newest {
            newest = MIGRATIONS[index].0;
        }
        index += 1;
    }
    newest
}

/// Serializes concurrent `init`s while they migrate (pg_advisory_xact_lock key).
const MIGRATION_LOCK: i64 = 0x6f64_6f6f_6462_0001;

const RUN_INIT: &str = "run `odoo-db init` first";

/// A session on the catalog database.
pub struct Catalog {
    client: Client,
    actor: String,
}

impl Catalog {
    /// Connect to the catalog and check its schema version; says to run `init` when
    /// the catalog does not exist yet.
    pub async fn open(servers: &Servers) -> Result<Catalog> {
        let client = connect(servers, servers.config()).await?;
        let version = current_version(&client).await?;
        match version {
            None => {
                return Err(Error::refused(format!(
                    "the catalog database has no odoo-db schema: {RUN_INIT}"
                )))
            }
            Some(version) if version > SCHEMA_VERSION => {
                return Err(newer_schema(version));
            }
            Some(version) if version < SCHEMA_VERSION => {
                return Err(Error::refused(format!(
                    "the catalog has schema version {version}, this odoo-db needs {SCHEMA_VERSION}: run `odoo-db init` to upgrade it"
                )));
            }
            Some(_) => {}
        }
        let missing = missing_versions(&client).await?;
        if !missing.is_empty() {
            return Err(Error::refused(format!(
                "the catalog lacks migration(s) {missing:?} that this odoo-db needs: run `odoo-db init` to apply them"
            )));
        }
        Ok(Catalog {
            client,
            actor: actor(),
        })
    }

    /// Open a catalog that `init` has just created or migrated.
    pub(crate) fn from_client(client: Client) -> Catalog {
        Catalog {
            client,
            actor: actor(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Who runs this command, for the event log: OS user@host and odoo-db's role.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Append one event to the log.
    pub async fn record_event(
        &self,
        command: &str,
        database: Option<&str>,
        step: &str,
        outcome: &str,
        detail: Value,
    ) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO catalog.events (actor, command, database, step, outcome, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&self.actor, &command, &database, &step, &outcome, &detail],
            )
            .await
            .context("recording an event in the catalog")?;
        Ok(())
    }

    /// The identifier `init` pinned for a cluster.
    pub async fn pinned_identifier(&self, cluster: &str) -> Result<Option<u64>> {
        let row = self
            .client
            .query_opt(
                "SELECT system_identifier::text FROM catalog.clusters WHERE name = $1",
                &[&cluster],
            )
            .await?;
        row.map(|row| {
            let text: String = row.get(0);
            text.parse::<u64>()
                .map_err(|_| Error::failed(format!("catalog holds a bad identifier {text:?}")))
        })
        .transpose()
    }

    /// Refuse a server that is not the one `init` pinned for this cluster.
    pub async fn verify_identity(&self, cluster: &str, server: &Client) -> Result<u64> {
        let actual = servers::system_identifier(server).await?;
        match self.pinned_identifier(cluster).await? {
            None => Err(Error::refused(format!(
                "cluster {cluster} has no pinned identity in the catalog: {RUN_INIT}"
            ))),
            Some(pinned) if pinned != actual => Err(Error::refused(format!(
                "cluster {cluster}: the server's system identifier is {actual}, but init pinned {pinned} for this cluster; \
                 the config now points at another server. Fix the config (or, if the cluster was really rebuilt, \
                 delete its row from catalog.clusters and run `odoo-db init`)"
            ))),
            Some(pinned) => Ok(pinned),
        }
    }

    /// Names of every customer in the catalog.
    pub async fn customers(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT customer FROM catalog.customers ORDER BY customer",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// Connect to the catalog database; a missing database means "run init".
async fn connect(servers: &Servers, config: &Config) -> Result<Client> {
    let params = servers
        .primary(&config.catalog.cluster)?
        .with_dbname(&config.catalog.database);
    match params.connect(&servers::admin_session()).await {
        Ok(client) => Ok(client),
        Err(error) if error.is_sqlstate(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {
            Err(Error::refused(format!(
                "the catalog database {:?} does not exist on cluster {}: {RUN_INIT}",
                config.catalog.database, config.catalog.cluster
            )))
        }
        Err(error) => Err(Error::from(error).context(format!(
            "connecting to the catalog ({} on cluster {})",
            config.catalog.database, config.catalog.cluster
        ))),
    }
}

async fn current_version(client: &Client) -> Result<Option<i32>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('catalog.schema_version') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_one("SELECT max(version) FROM catalog.schema_version", &[])
        .await?
        .get(0))
}

/// Known migrations the catalog has not recorded (a migration numbered below the
/// newest applied one can arrive later).
async fn missing_versions(client: &Client) -> Result<Vec<i32>> {
    let applied: Vec<i32> = client
        .query_one(
            "SELECT coalesce(array_agg(version), '{}') FROM catalog.schema_version",
            &[],
        )
        .await?
        .get(0);
    Ok(MIGRATIONS
        .iter()
        .map(|(version, _)| *version)
        .filter(|version| !applied.contains(version))
        .collect())
}

fn newer_schema(version: i32) -> Error {
    Error::refused(format!(
        "the catalog has schema version {version}, newer than this odoo-db knows ({SCHEMA_VERSION}): \
         upgrade odoo-db on this host before using it against this catalog"
    ))
}

/// Create the catalog database if missing and apply pending migrations.
/// Returns the catalog and the versions applied now.
pub async fn create_and_migrate(servers: &Servers) -> Result<(Catalog, Vec<i32>)> {
    let config = servers.config();
    let cluster = &config.catalog.cluster;
    let maintenance = servers.connect_primary(cluster).await?;
    let database = &config.catalog.database;
    let exists = database_exists(&maintenance, database).await?;
    if !exists {
        // CREATE DATABASE cannot run in a transaction; a concurrent init that wins
        // the race makes ours fail with 42P04, which is fine.
        let statement = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
            servers::quote_ident(database)
        );
        match maintenance.batch_execute(&statement).await {
            Ok(()) => {}
            Err(error)
                if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(error) => {
                return Err(Error::from(error).context(format!(
                    "creating the catalog database {database} on cluster {cluster}"
                )))
            }
        }
        tracing::info!("created the catalog database {database} on cluster {cluster}");
    }
    // Only odoo-db (the owner) may connect; customers can list databases, not enter this one.
    maintenance
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
            servers::quote_ident(database)
        ))
        .await
        .context("revoking PUBLIC's access to the catalog database")?;

    let mut client = connect(servers, config).await?;
    let applied = migrate(&mut client).await?;
    Ok((Catalog::from_client(client), applied))
}

async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS catalog;
             CREATE TABLE IF NOT EXISTS catalog.schema_version (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .context("creating the catalog's schema_version table")?;
    let current: i32 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM catalog.schema_version",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(newer_schema(current));
    }
    let recorded: Vec<i32> = transaction
        .query_one(
            "SELECT coalesce(array_agg(version), '{}') FROM catalog.schema_version",
            &[],
        )
        .await?
        .get(0);
    let mut applied = Vec::new();
    for &(version, sql) in MIGRATIONS {
        if recorded.contains(&version) {
            continue;
        }
        transaction
            .batch_execute(sql)
            .await
            .with_context(|| format!("applying catalog migration {version}"))?;
        transaction
            .execute(
                "INSERT INTO catalog.schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        applied.push(version);
    }
    transaction.commit().await?;
    Ok(applied)
}

pub async fn database_exists(client: &Client, name: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

pub async fn role_exists(client: &Client, name: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

/// Pin a cluster's identity on first sight; later, refuse a different one.
/// Returns true when pinned now.
pub async fn pin_identity(
    catalog: &Catalog,
    cluster: &str,
    kind: ClusterKind,
    identifier: u64,
) -> Result<bool> {
    let identifier_text = identifier.to_string();
    let clashing: Option<String> = catalog
        .client()
        .query_opt(
            "SELECT name FROM catalog.clusters WHERE system_identifier = $1::text::numeric AND name <> $2",
            &[&identifier_text, &cluster],
        )
        .await?
        .map(|row| row.get(0));
    if let Some(other) = clashing {
        return Err(Error::refused(format!(
            "cluster {cluster} is the same server as cluster {other} (system identifier {identifier}): \
             the config points two clusters at one server; fix clusters.{cluster} in the config"
        )));
    }
    let existing = catalog
        .client()
        .query_opt(
            "SELECT system_identifier::text, kind FROM catalog.clusters WHERE name = $1",
            &[&cluster],
        )
        .await?;
    match existing {
        None => {
            catalog
                .client()
                .execute(
                    "INSERT INTO catalog.clusters (name, kind, system_identifier) VALUES ($1, $2, $3::text::numeric)",
                    &[&cluster, &kind.as_str(), &identifier_text],
                )
                .await
                .context("pinning the cluster's identity")?;
            Ok(true)
        }
        Some(row) => {
            let pinned: String = row.get(0);
            let pinned_kind: String = row.get(1);
            if pinned != identifier_text {
                return Err(Error::refused(format!(
                    "cluster {cluster}: the server's system identifier is {identifier}, but init pinned {pinned}; \
                     the config now points at another server. Fix the config (or, if the cluster was really rebuilt, \
                     delete its row from catalog.clusters and run init again)"
                )));
            }
            if pinned_kind != kind.as_str() {
                return Err(Error::refused(format!(
                    "cluster {cluster} was pinned as {pinned_kind}, the config now says {}: a cluster does not change kind; fix the config",
                    kind.as_str()
                )));
            }
            Ok(false)
        }
    }
}

/// OS user@host and the database role, for the event log.
fn actor() -> String {
    let user = whoami::username();
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "unknown-host".to_string());
    format!("{user}@{host}")
}
