//! Refreshes (`catalog.recreates` of kind `refresh`): what a refresh records beyond a
//! recreate's journal (its source, its spool, the window it opened), read back by a
//! rerun that finishes it, by `list` and by `audit`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::Type;

use super::Catalog;
use crate::error::{Context, Result};

/// What a refresh recorded before its point of no return.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub source_database: String,
    pub source_cluster: String,
    /// `standby NAME` or `primary`.
    pub source_server: String,
    pub spool_path: String,
    /// Whether the integration role could log in before the window.
    pub role_could_login: bool,
    pub neutralized: bool,
}

/// The latest finished refresh of an integration database.
#[derive(Debug, Clone)]
pub struct FinishedRefresh {
    pub database: String,
    pub finished_at: DateTime<Utc>,
    pub source_database: Option<String>,
    pub source_server: Option<String>,
    pub neutralized: bool,
}

impl Catalog {
    /// Record a refresh's source, spool and window (with its event).
    pub async fn record_refresh(
        &self,
        id: i64,
        record: &RefreshRecord,
        detail: &Value,
    ) -> Result<()> {
        self.client
            .query_typed(
                include_str!("../../sql/catalog/queries/record_refresh.sql"),
                &[
                    (&id, Type::INT8),
                    (&record.source_database, Type::TEXT),
                    (&record.source_cluster, Type::TEXT),
                    (&record.source_server, Type::TEXT),
                    (&record.spool_path, Type::TEXT),
                    (&record.role_could_login, Type::BOOL),
                    (&record.neutralized, Type::BOOL),
                    (&self.actor, Type::TEXT),
                    (detail, Type::JSONB),
                ],
            )
            .await
            .context("recording the refresh's source and window in the catalog")?;
        Ok(())
    }

    /// What run `id` recorded as a refresh (None: it recorded nothing yet).
    pub async fn refresh_record(&self, id: i64) -> Result<Option<RefreshRecord>> {
        let row = self
            .client
            .query_typed_one(
                include_str!("../../sql/catalog/queries/unfinished_refresh.sql"),
                &[(&id, Type::INT8)],
            )
            .await
            .context("reading the interrupted refresh's record")?;
        let source_database: Option<String> = row.get(0);
        Ok(source_database.map(|source_database| RefreshRecord {
            source_database,
            source_cluster: row.get::<_, Option<String>>(1).unwrap_or_default(),
            source_server: row.get::<_, Option<String>>(2).unwrap_or_default(),
            spool_path: row.get::<_, Option<String>>(3).unwrap_or_default(),
            role_could_login: row.get::<_, Option<bool>>(4).unwrap_or(true),
            neutralized: row.get::<_, Option<bool>>(5).unwrap_or(true),
        }))
    }

    /// The latest finished refresh of every integration database.
    pub async fn finished_refreshes(&self) -> Result<Vec<FinishedRefresh>> {
        let rows = self
            .client
            .query(include_str!("../../sql/catalog/queries/refreshes.sql"), &[])
            .await
            .context("reading the refreshes from the catalog")?;
        Ok(rows
            .iter()
            .map(|row| FinishedRefresh {
                database: row.get(0),
                finished_at: row.get(1),
                source_database: row.get(2),
                source_server: row.get(3),
                neutralized: row.get(4),
            })
            .collect())
    }
}
