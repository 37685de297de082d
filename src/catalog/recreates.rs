//! Recreate and restore runs (`catalog.recreates`) and the backups they wrote
//! (`catalog.backups`). A run records its plan before it blocks connections and every
//! step it reaches, each together with its event (and the database's state where it
//! changes) in one statement, so a killed run is finished from this record.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;

use super::Catalog;
use crate::error::{Context, Result};

/// The unfinished run of a database, as recorded.
#[derive(Debug, Clone)]
pub struct UnfinishedRun {
    pub id: i64,
    /// `recreate` or `restore`.
    pub kind: String,
    /// The last step it reached.
    pub step: String,
    /// The properties the new database gets, as recorded.
    pub plan: Value,
    pub backup_path: Option<String>,
    pub backup_bytes: Option<i64>,
    pub restore_path: Option<String>,
    pub actor: String,
    pub started_at: DateTime<Utc>,
}

/// A backup file as recorded when it was written.
#[derive(Debug, Clone)]
pub struct RecordedBackup {
    pub database: String,
    pub bytes: i64,
    pub sha256: String,
}

impl Catalog {
    /// The unfinished run of `database`, if any.
    pub async fn unfinished_run(&self, database: &str) -> Result<Option<UnfinishedRun>> {
        let row = self
            .client
            .query_typed_opt(
                include_str!("../../sql/catalog/queries/unfinished_run.sql"),
                &[(&database, Type::TEXT)],
            )
            .await
            .context("looking for an unfinished recreate or restore in the catalog")?;
        Ok(row.map(|row| UnfinishedRun {
            id: row.get(0),
            kind: row.get(1),
            step: row.get(2),
            plan: row.get(3),
            backup_path: row.get(4),
            backup_bytes: row.get(5),
            restore_path: row.get(6),
            actor: row.get(7),
            started_at: row.get(8),
        }))
    }

    /// Mark the unfinished run of `database` superseded (it stopped before anything
    /// was dropped; a new run starts over).
    pub async fn supersede_unfinished_run(&self, database: &str) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/supersede_unfinished.sql"),
                &[&database],
            )
            .await
            .context("recording in the catalog that the earlier run is superseded")?;
        Ok(())
    }

    /// Record a new run's plan, the database's `state` and the event, in one
    /// statement. Returns the run's id.
    #[allow(clippy::too_many_arguments)]
    pub async fn begin_run(
        &self,
        database: &str,
        cluster: &str,
        kind: &str,
        plan: &Value,
        restore_path: Option<&str>,
        state: &str,
        detail: &Value,
    ) -> Result<i64> {
        let row = self
            .client
            .query_typed_one(
                include_str!("../../sql/catalog/queries/begin_run.sql"),
                &[
                    (&database, Type::TEXT),
                    (&cluster, Type::TEXT),
                    (&kind, Type::TEXT),
                    (plan, Type::JSONB),
                    (&restore_path, Type::TEXT),
                    (&self.actor, Type::TEXT),
                    (&state, Type::TEXT),
                    (detail, Type::JSONB),
                ],
            )
            .await
            .context("recording the plan in the catalog")?;
        Ok(row.get(0))
    }

    /// Record that run `id` is being finished by a run of `kind`, the database's
    /// `state` and the event, in one statement.
    pub async fn take_over_run(
        &self,
        id: i64,
        kind: &str,
        restore_path: Option<&str>,
        state: &str,
        detail: &Value,
    ) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/take_over_run.sql"),
                &[&id, &kind, &restore_path, &state, &self.actor, detail],
            )
            .await
            .context("recording in the catalog that the interrupted run is being finished")?;
        Ok(())
    }

    /// Record that run `id` reached `step`, with its event, in one statement.
    pub async fn record_step(&self, id: i64, step: &str, detail: &Value) -> Result<()> {
        self.client
            .query_typed(
                include_str!("../../sql/catalog/queries/record_step.sql"),
                &[
                    (&id, Type::INT8),
                    (&step, Type::TEXT),
                    (&self.actor, Type::TEXT),
                    (detail, Type::JSONB),
                ],
            )
            .await
            .with_context(|| format!("recording step {step} in the catalog"))?;
        Ok(())
    }

    /// Record run `id` abandoned after `step` (nothing dropped): the database is ready
    /// again; with the event, in one statement.
    pub async fn abandon_run(&self, id: i64, step: &str, detail: &Value) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/abandon_run.sql"),
                &[&id, &self.actor, &step, detail],
            )
            .await?;
        Ok(())
    }

    /// Record the backup run `id` wrote (path, size, SHA-256) with step `backed_up`
    /// and the event, in one statement.
    pub async fn record_backup(
        &self,
        id: i64,
        path: &str,
        bytes: i64,
        sha256: &str,
        detail: &Value,
    ) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/record_backup.sql"),
                &[&id, &path, &bytes, &self.actor, detail, &sha256],
            )
            .await
            .context("recording the backup in the catalog")?;
        Ok(())
    }

    /// Record that retention deleted these backup files.
    pub async fn mark_backups_pruned(&self, paths: &[String]) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.backups SET pruned_at = now() WHERE path = ANY($1) AND pruned_at IS NULL",
                &[&paths],
            )
            .await
            .context("recording the pruned backups in the catalog")?;
        Ok(())
    }

    /// Backup files that unfinished runs still need (retention never deletes them).
    pub async fn protected_backups(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                include_str!("../../sql/catalog/queries/protected_backups.sql"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Record run `id` done and the database ready, with the event, in one statement.
    pub async fn finish_run(&self, id: i64, detail: &Value) -> Result<()> {
        self.client
            .query_typed(
                include_str!("../../sql/catalog/queries/finish_run.sql"),
                &[
                    (&id, Type::INT8),
                    (&self.actor, Type::TEXT),
                    (detail, Type::JSONB),
                ],
            )
            .await
            .context("recording the end in the catalog")?;
        Ok(())
    }

    /// The plan a run of `database` recorded: of the run whose backup is
    /// `backup_path`, else of the newest run.
    pub async fn recorded_plan(
        &self,
        database: &str,
        backup_path: Option<&str>,
    ) -> Result<Option<Value>> {
        Ok(self
            .client
            .query_opt(
                include_str!("../../sql/catalog/queries/recorded_plan.sql"),
                &[&database, &backup_path],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// The backups of `database` recorded with their size and SHA-256 and not pruned,
    /// newest first.
    pub async fn backups_of(&self, database: &str) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                include_str!("../../sql/catalog/queries/backups_of.sql"),
                &[&database],
            )
            .await
            .context("looking up the recorded backups in the catalog")?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// What was recorded of the backup file `path` when it was written.
    pub async fn backup_record(&self, path: &str) -> Result<Option<RecordedBackup>> {
        let row = self
            .client
            .query_opt(
                "SELECT database, bytes, sha256 FROM catalog.backups WHERE path = $1",
                &[&path],
            )
            .await
            .context("looking the backup up in the catalog")?;
        Ok(row.map(|row| RecordedBackup {
            database: row.get(0),
            bytes: row.get(1),
            sha256: row.get(2),
        }))
    }

    /// Backup paths of `database` that runs recorded before the catalog kept
    /// backups' digests (schema 3), newest first.
    pub async fn undigested_backups_of(&self, database: &str) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                include_str!("../../sql/catalog/queries/undigested_backups.sql"),
                &[&database],
            )
            .await
            .context("looking up the backups recorded without a digest")?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
