//! The catalog: odoo-db's own database on the catalog cluster's primary.
//!
//! It remembers what odoo-db knows and a server cannot tell: which customer owns which
//! name, which step a provision or recreate reached (so a rerun completes it), the
//! system identifier each cluster had when `init` first saw it (so a config pointed at
//! the wrong server is refused), and an append-only log of who did what.
//!
//! The schema is applied by versioned migrations in `sql/catalog/`; a binary refuses a
//! catalog newer than itself rather than guess at its meaning.
//!
//! This module is the catalog's repository: every query on its tables is a method of
//! [`Catalog`] here, grouped by area in the submodules, named by what it means to the
//! job and returning typed rows; SQL longer than a line is in `sql/catalog/queries/`.
//! The session itself is never handed out, so no job writes catalog SQL of its own.
//! Where a job records several things together (a step, the database's state and its
//! event), one method runs them as one statement, so they are kept or lost together.

mod clusters;
mod customers;
mod databases;
mod events;
mod lifecycle;
mod recreates;
mod refreshes;
mod step_roles;

pub use clusters::{pin_identity, PinnedCluster};
pub use databases::{CatalogDatabase, ManagedDatabase};
pub use lifecycle::{ActiveSuspension, NewSuspension, Retirement, Suspension};
pub use recreates::RecordedBackup;
pub use refreshes::RefreshRecord;
pub use step_roles::LeftoverStepRole;

use tokio_postgres::Client;

use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::servers::{self, Servers};

/// Migrations in order, each with its version (the number of its file in
/// `sql/catalog/`). Versions need not be contiguous: `init` applies every one that the
/// catalog has not recorded yet, whatever their order of arrival.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../sql/catalog/0001_initial.sql")),
    (2, include_str!("../../sql/catalog/0002_recreates.sql")),
    (3, include_str!("../../sql/catalog/0003_backups.sql")),
    (4, include_str!("../../sql/catalog/0004_step_roles.sql")),
    (5, include_str!("../../sql/catalog/0005_refreshes.sql")),
    (6, include_str!("../../sql/catalog/0006_lifecycle.sql")),
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

    /// Who runs this command, for the event log: OS user@host and odoo-db's role.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Run `work` in one transaction on the catalog session: everything it records
    /// is kept together, or nothing is when it fails.
    pub async fn atomically<T, Work>(&self, work: impl FnOnce() -> Work) -> Result<T>
    where
        Work: std::future::Future<Output = Result<T>>,
    {
        self.client.batch_execute("BEGIN").await?;
        match work().await {
            Ok(value) => {
                self.client.batch_execute("COMMIT").await?;
                Ok(value)
            }
            Err(error) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                Err(error)
            }
        }
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

/// A `CREATE DATABASE` that failed because another session created the same database
/// meanwhile: 42P04 when that one had committed before ours started, 23505 on
/// `pg_database`'s unique index when both ran at once (ours waited for the other's
/// commit). Either way the database now exists, as the caller wanted.
pub(crate) fn created_concurrently(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        error.code(),
        Some(code) if *code == SqlState::DUPLICATE_DATABASE || *code == SqlState::UNIQUE_VIOLATION
    )
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
        // the race makes ours fail (see created_concurrently), which is fine.
        let statement = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'",
            postgres_protocol::escape::escape_identifier(database)
        );
        match maintenance.batch_execute(&statement).await {
            Ok(()) => {}
            Err(error) if created_concurrently(&error) => {}
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
            postgres_protocol::escape::escape_identifier(database)
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
        .batch_execute(include_str!("../../sql/catalog/queries/schema_version.sql"))
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

/// OS user@host and the database role, for the event log.
fn actor() -> String {
    let user = whoami::username();
    let host = whoami::fallible::hostname().unwrap_or_else(|_| "unknown-host".to_string());
    format!("{user}@{host}")
}
