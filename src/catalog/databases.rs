//! Customers' databases (`catalog.databases`): which customer owns which name, on which
//! cluster, owned by which role, and whether it is being provisioned, recreated or
//! restored.

use chrono::{DateTime, Utc};
use tokio_postgres::types::Type;

use super::Catalog;
use crate::error::{Context, Result};

/// One record of a database name (a name may be recorded once per environment).
#[derive(Debug, Clone)]
pub struct CatalogDatabase {
    pub environment: String,
    pub cluster: String,
    pub state: String,
    pub owner: String,
}

/// A database the catalog manages, as the audit compares it with the servers.
#[derive(Debug, Clone)]
pub struct ManagedDatabase {
    pub name: String,
    pub environment: String,
    pub customer: String,
    pub cluster: String,
    pub state: String,
    pub owner: String,
}

/// A database as `list` shows it.
#[derive(Debug, Clone)]
pub struct ListedDatabase {
    pub customer: String,
    pub name: String,
    pub environment: String,
    pub cluster: String,
    pub state: String,
    /// The step its unfinished recreate or restore reached, if one is unfinished.
    pub step: Option<String>,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Catalog {
    /// Every record of the database `name`, whatever its environment.
    pub async fn databases_named(&self, name: &str) -> Result<Vec<CatalogDatabase>> {
        let rows = self
            .client
            .query_typed(
                "SELECT environment, cluster, state, owner FROM catalog.databases WHERE name = $1 AND retired_at IS NULL",
                &[(&name, Type::TEXT)],
            )
            .await
            .context("looking the database up in the catalog")?;
        Ok(rows
            .iter()
            .map(|row| CatalogDatabase {
                environment: row.get(0),
                cluster: row.get(1),
                state: row.get(2),
                owner: row.get(3),
            })
            .collect())
    }

    /// The state of a database, if the catalog records it.
    pub async fn database_state(&self, environment: &str, name: &str) -> Result<Option<String>> {
        Ok(self
            .client
            .query_opt(
                "SELECT state FROM catalog.databases WHERE environment = $1 AND name = $2",
                &[&environment, &name],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// The customer a database is recorded for (it must be recorded).
    pub async fn database_customer(&self, environment: &str, name: &str) -> Result<String> {
        Ok(self
            .client
            .query_one(
                "SELECT customer FROM catalog.databases WHERE environment = $1 AND name = $2",
                &[&environment, &name],
            )
            .await?
            .get(0))
    }

    /// Record a database a provision starts; false when it was recorded already.
    pub async fn add_provisioning_database(
        &self,
        name: &str,
        environment: &str,
        customer: &str,
        cluster: &str,
    ) -> Result<bool> {
        let inserted = self
            .client
            .execute(
                include_str!("../../sql/catalog/queries/add_provisioning_database.sql"),
                &[&name, &environment, &customer, &cluster],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Record an adopted database, ready; false when it was recorded already. A
    /// customer with another database in the environment fails with SQLSTATE 23505.
    pub async fn add_adopted_database(
        &self,
        name: &str,
        environment: &str,
        customer: &str,
        cluster: &str,
    ) -> Result<bool> {
        let inserted = self
            .client
            .execute(
                include_str!("../../sql/catalog/queries/add_adopted_database.sql"),
                &[&name, &environment, &customer, &cluster],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// A provisioned database is ready.
    pub async fn mark_database_ready(&self, environment: &str, name: &str) -> Result<()> {
        self.client
            .execute(
                "UPDATE catalog.databases SET state = 'ready', updated_at = now() WHERE environment = $1 AND name = $2",
                &[&environment, &name],
            )
            .await?;
        Ok(())
    }

    /// Every database the catalog records, by name.
    pub async fn managed_databases(&self) -> Result<Vec<ManagedDatabase>> {
        let rows = self
            .client
            .query(
                "SELECT name, environment, customer, cluster, state, owner FROM catalog.databases WHERE retired_at IS NULL ORDER BY name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| ManagedDatabase {
                name: row.get(0),
                environment: row.get(1),
                customer: row.get(2),
                cluster: row.get(3),
                state: row.get(4),
                owner: row.get(5),
            })
            .collect())
    }

    /// Every database the catalog records, by customer, with its unfinished run's step.
    pub async fn database_listing(&self) -> Result<Vec<ListedDatabase>> {
        let rows = self
            .client
            .query(include_str!("../../sql/catalog/queries/listing.sql"), &[])
            .await?;
        Ok(rows
            .iter()
            .map(|row| ListedDatabase {
                customer: row.get(0),
                name: row.get(1),
                environment: row.get(2),
                cluster: row.get(3),
                state: row.get(4),
                owner: row.get(5),
                created_at: row.get(6),
                updated_at: row.get(7),
                step: row.get(8),
            })
            .collect())
    }
}
