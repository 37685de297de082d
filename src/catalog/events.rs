//! The append-only event log (`catalog.events`): who did what, when, and how it ended.

use serde_json::Value;

use super::Catalog;
use crate::error::{Context, Result};

impl Catalog {
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
                include_str!("../../sql/catalog/queries/record_event.sql"),
                &[&self.actor, &command, &database, &step, &outcome, &detail],
            )
            .await
            .context("recording an event in the catalog")?;
        Ok(())
    }
}
