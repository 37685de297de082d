//! Throwaway step roles (`catalog.step_roles`): recorded before a role is created and
//! forgotten only after it is dropped, so a killed run's roles are found and cleaned up.

use super::Catalog;
use crate::error::{Context, Result};

/// A step role a killed run left behind.
#[derive(Debug, Clone)]
pub struct LeftoverStepRole {
    pub role: String,
    /// The customer role its leftovers go to.
    pub owner: String,
}

impl Catalog {
    /// Record a step role before it is created.
    pub async fn record_step_role(
        &self,
        role: &str,
        cluster: &str,
        database: &str,
        owner: &str,
        purpose: &str,
    ) -> Result<()> {
        self.client
            .execute(
                include_str!("../../sql/catalog/queries/record_step_role.sql"),
                &[&role, &cluster, &database, &owner, &purpose, &self.actor],
            )
            .await
            .context("recording the step's throwaway role in the catalog")?;
        Ok(())
    }

    /// Forget a step role once it is dropped.
    pub async fn forget_step_role(&self, role: &str) -> Result<()> {
        self.client
            .execute("DELETE FROM catalog.step_roles WHERE role = $1", &[&role])
            .await
            .context("forgetting the dropped throwaway role in the catalog")?;
        Ok(())
    }

    /// The step roles recorded for `database` on `cluster`, oldest first.
    pub async fn step_roles_of(
        &self,
        cluster: &str,
        database: &str,
    ) -> Result<Vec<LeftoverStepRole>> {
        let rows = self
            .client
            .query(
                "SELECT role, owner FROM catalog.step_roles WHERE cluster = $1 AND database = $2 ORDER BY created_at",
                &[&cluster, &database],
            )
            .await
            .context("looking for throwaway roles left by an interrupted run")?;
        Ok(rows
            .iter()
            .map(|row| LeftoverStepRole {
                role: row.get(0),
                owner: row.get(1),
            })
            .collect())
    }
}
