//! Customers (`catalog.customers`): each customer's one base name, and the per-customer
//! lock that serializes provisions of the same customer.

use super::Catalog;
use crate::error::Result;

impl Catalog {
    /// Names of every customer in the catalog but the retired ones (a retired
    /// customer's name no longer restricts new names).
    pub async fn customers(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT customer FROM catalog.customers WHERE retired_at IS NULL ORDER BY customer",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The base name recorded for a customer, if the customer is known.
    pub async fn customer_base_name(&self, customer: &str) -> Result<Option<String>> {
        Ok(self
            .client
            .query_opt(
                "SELECT base_name FROM catalog.customers WHERE customer = $1",
                &[&customer],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// Record a new customer with its base name. A name or customer already recorded
    /// fails with SQLSTATE 23505 (the unique constraint settles races).
    pub async fn add_customer(&self, customer: &str, base_name: &str) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO catalog.customers (customer, base_name) VALUES ($1, $2)",
                &[&customer, &base_name],
            )
            .await?;
        Ok(())
    }

    /// Record a customer unless it is recorded already; a base name that another
    /// customer holds fails with SQLSTATE 23505.
    pub async fn add_customer_if_new(&self, customer: &str, base_name: &str) -> Result<()> {
        self.client
            .execute(
                "INSERT INTO catalog.customers (customer, base_name) VALUES ($1, $2) ON CONFLICT (customer) DO NOTHING",
                &[&customer, &base_name],
            )
            .await?;
        Ok(())
    }

    /// Every name the catalog holds: customers' base names, databases' names and the
    /// tombstones of retired customers.
    pub async fn names_in_use(&self) -> Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT base_name FROM catalog.customers UNION SELECT name FROM catalog.databases
                 UNION SELECT name FROM catalog.tombstones",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Take the session advisory lock of a customer's provision: held until this
    /// catalog session closes (end of the command, or the process's death), so a crash
    /// never leaves it behind.
    pub async fn lock_customer_provision(&self, customer: &str) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_advisory_lock(hashtextextended('odoo-db provision ' || $1, 0))",
                &[&customer],
            )
            .await?;
        Ok(())
    }
}
