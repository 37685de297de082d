//! The customer lifecycle's records (`catalog.suspensions`, `rotations`, `retirements`,
//! `tombstones`): what suspend found so resume can put it back, which secrets file a
//! rotation wrote, how far a retirement got and where its archive is, and the names a
//! retired customer leaves behind.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;

use super::Catalog;
use crate::error::{Context, Result};

/// An active suspension: the state of the role and database before suspend.
#[derive(Debug, Clone)]
pub struct Suspension {
    pub id: i64,
    pub rolcanlogin: bool,
    pub datacl: Option<String>,
    /// dbprops::DbProps as JSON.
    pub props: Value,
    pub suspended_at: DateTime<Utc>,
}

/// What suspend records before it changes anything.
pub struct NewSuspension<'a> {
    pub database: &'a str,
    pub environment: &'a str,
    pub cluster: &'a str,
    pub rolcanlogin: bool,
    pub datacl: Option<&'a str>,
    pub props: &'a Value,
}

/// The retirement of one database, as far as it got.
#[derive(Debug, Clone)]
pub struct Retirement {
    pub id: i64,
    /// planned, archived, dropped or done.
    pub step: String,
    pub archive_path: Option<String>,
    pub archive_bytes: Option<i64>,
    pub archive_sha256: Option<String>,
    pub props_path: Option<String>,
    pub role_path: Option<String>,
}

/// An active suspension as the audit checks it.
#[derive(Debug, Clone)]
pub struct ActiveSuspension {
    pub customer: String,
    pub environment: String,
    pub database: String,
    pub cluster: String,
    pub suspended_at: DateTime<Utc>,
}

/// A name a retired customer held.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub name: String,
    /// `database` or `role`.
    pub kind: String,
    pub customer: String,
    pub environment: String,
    pub cluster: String,
    pub archive_path: Option<String>,
    pub retired_at: DateTime<Utc>,
}

/// A database's lifecycle state, for `list`.
#[derive(Debug, Clone)]
pub struct LifecycleState {
    pub environment: String,
    pub name: String,
    pub suspended_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl Catalog {
    /// When a customer was retired, if it was.
    pub async fn customer_retired_at(&self, customer: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .client
            .query_opt(
                "SELECT retired_at FROM catalog.customers WHERE customer = $1",
                &[&customer],
            )
            .await?
            .and_then(|row| row.get(0)))
    }

    /// The customer's last database retired: its name no longer restricts new names.
    pub async fn mark_customer_retired(&self, customer: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.customers SET retired_at = coalesce(retired_at, now()) WHERE customer = $1",
                &[&customer],
            )
            .await
            .context("recording the customer as retired")?;
        Ok(())
    }

    /// The active suspension of a database, if any.
    pub async fn active_suspension(
        &self,
        environment: &str,
        database: &str,
    ) -> Result<Option<Suspension>> {
        let row = self
            .client
            .query_typed_opt(
                include_str!("../../sql/catalog/queries/active_suspension.sql"),
                &[(&environment, Type::TEXT), (&database, Type::TEXT)],
            )
            .await
            .context("looking up the suspension in the catalog")?;
        Ok(row.map(|row| Suspension {
            id: row.get(0),
            rolcanlogin: row.get(1),
            datacl: row.get(2),
            props: row.get(3),
            suspended_at: row.get(4),
        }))
    }

    /// Every active suspension (of a database not retired).
    pub async fn active_suspensions(&self) -> Result<Vec<ActiveSuspension>> {
        let rows = self
            .client
            .query(
                include_str!("../../sql/catalog/queries/active_suspensions.sql"),
                &[],
            )
            .await
            .context("reading the suspensions from the catalog")?;
        Ok(rows
            .iter()
            .map(|row| ActiveSuspension {
                customer: row.get(0),
                environment: row.get(1),
                database: row.get(2),
                cluster: row.get(3),
                suspended_at: row.get(4),
            })
            .collect())
    }

    /// Record what suspend found, unless a suspension is active already (whose record
    /// holds the state from before the first suspend). True when recorded now.
    pub async fn record_suspension(&self, new: &NewSuspension<'_>) -> Result<bool> {
        let inserted = self
            .client
            .execute(
                include_str!("../../sql/catalog/queries/record_suspension.sql"),
                &[
                    &new.database,
                    &new.environment,
                    &new.cluster,
                    &new.database,
                    &new.rolcanlogin,
                    &new.datacl,
                    new.props,
                    &self.actor,
                ],
            )
            .await
            .context("recording the suspension in the catalog")?;
        Ok(inserted == 1)
    }

    /// resume put back what the suspension recorded.
    pub async fn end_suspension(&self, id: i64) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.suspensions SET resumed_at = now(), resumed_by = $2 WHERE id = $1 AND resumed_at IS NULL",
                &[&id, &self.actor],
            )
            .await
            .context("recording the resume in the catalog")?;
        Ok(())
    }

    /// Every suspended or retired database, for `list`.
    pub async fn lifecycle_states(&self) -> Result<Vec<LifecycleState>> {
        let rows = self
            .client
            .query(
                include_str!("../../sql/catalog/queries/lifecycle_states.sql"),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| LifecycleState {
                environment: row.get(0),
                name: row.get(1),
                suspended_at: row.get(2),
                retired_at: row.get(3),
            })
            .collect())
    }

    /// The newest rotation recorded for `file` of a database: its id and whether it
    /// was applied.
    pub async fn rotation_of_file(
        &self,
        environment: &str,
        database: &str,
        file: &str,
    ) -> Result<Option<(i64, bool)>> {
        let row = self
            .client
            .query_typed_opt(
                include_str!("../../sql/catalog/queries/rotation_of_file.sql"),
                &[
                    (&environment, Type::TEXT),
                    (&database, Type::TEXT),
                    (&file, Type::TEXT),
                ],
            )
            .await
            .context("looking up the rotation in the catalog")?;
        Ok(row.map(|row| (row.get(0), row.get::<_, Option<DateTime<Utc>>>(1).is_some())))
    }

    /// A new password was written to `file` (before any role has it).
    pub async fn record_rotation(
        &self,
        environment: &str,
        database: &str,
        cluster: &str,
        file: &str,
    ) -> Result<i64> {
        Ok(self
            .client
            .query_one(
                include_str!("../../sql/catalog/queries/record_rotation.sql"),
                &[&database, &environment, &cluster, &file, &self.actor],
            )
            .await
            .context("recording the rotation in the catalog")?
            .get(0))
    }

    /// The role has the file's password now.
    pub async fn mark_rotation_applied(&self, id: i64, sessions_ended: Option<i32>) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.rotations SET applied_at = now(), sessions_ended = $2 WHERE id = $1",
                &[&id, &sessions_ended],
            )
            .await
            .context("recording the rotation as applied")?;
        Ok(())
    }

    /// Start the retirement of a database, or find the one a killed run started.
    pub async fn begin_retirement(
        &self,
        customer: &str,
        environment: &str,
        database: &str,
        cluster: &str,
    ) -> Result<Retirement> {
        let row = self
            .client
            .query_one(
                include_str!("../../sql/catalog/queries/begin_retirement.sql"),
                &[&customer, &database, &environment, &cluster, &self.actor],
            )
            .await
            .context("recording the retirement in the catalog")?;
        Ok(Retirement {
            id: row.get(0),
            step: row.get(1),
            archive_path: row.get(2),
            archive_bytes: row.get(3),
            archive_sha256: row.get(4),
            props_path: row.get(5),
            role_path: row.get(6),
        })
    }

    /// The retirement of a database, if one was started.
    pub async fn retirement_step(
        &self,
        environment: &str,
        database: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .client
            .query_opt(
                "SELECT step FROM catalog.retirements WHERE environment = $1 AND database = $2",
                &[&environment, &database],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// The properties and role definition files written beside the archive.
    pub async fn record_retirement_files(
        &self,
        id: i64,
        props_path: &str,
        role_path: &str,
    ) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.retirements SET props_path = $2, role_path = $3, updated_at = now() WHERE id = $1",
                &[&id, &props_path, &role_path],
            )
            .await
            .context("recording the retirement's files")?;
        Ok(())
    }

    /// The verified archive, with the step `archived`.
    pub async fn record_archive(
        &self,
        id: i64,
        path: &str,
        bytes: i64,
        sha256: &str,
    ) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/record_archive.sql"),
                &[&id, &path, &bytes, &sha256],
            )
            .await
            .context("recording the archive in the catalog")?;
        Ok(())
    }

    /// The database is dropped (the role may not be yet).
    pub async fn record_retirement_dropped(&self, id: i64) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.retirements SET step = 'dropped', updated_at = now() WHERE id = $1",
                &[&id],
            )
            .await
            .context("recording the drop in the catalog")?;
        Ok(())
    }

    /// Database and role gone: tombstones, the retirement done, the database retired.
    pub async fn finish_retirement(
        &self,
        id: i64,
        customer: &str,
        environment: &str,
        database: &str,
        cluster: &str,
        archive_path: Option<&str>,
    ) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/finish_retirement.sql"),
                &[
                    &id,
                    &customer,
                    &environment,
                    &database,
                    &cluster,
                    &archive_path,
                ],
            )
            .await
            .context("recording the tombstones in the catalog")?;
        Ok(())
    }

    /// Every tombstone, oldest first.
    pub async fn tombstones(&self) -> Result<Vec<Tombstone>> {
        let rows = self
            .client
            .query(
                include_str!("../../sql/catalog/queries/tombstones.sql"),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Tombstone {
                name: row.get(0),
                kind: row.get(1),
                customer: row.get(2),
                environment: row.get(3),
                cluster: row.get(4),
                archive_path: row.get(5),
                retired_at: row.get(6),
            })
            .collect())
    }
}
