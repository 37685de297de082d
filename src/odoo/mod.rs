//! What odoo-db knows of Odoo databases, below the commands that need it (`refresh`
//! neutralizes a copy of production, `audit` judges one): whether a database is
//! Odoo's, its major version and installed modules, the neutralization each module
//! needs in each version, and the facts that show a copy is neutralized.
//!
//! Every read runs in a session whose `search_path` is `pg_catalog` and names its
//! tables `public.…`, so no function a customer put in its schemas is called by them.

pub(crate) mod neutralize;

use tokio_postgres::Client;

use crate::error::{Context, Result};

/// An Odoo database as its module table describes it.
#[derive(Debug, Clone)]
pub(crate) struct OdooFacts {
    /// From `base`'s `latest_version` (e.g. `17.0.1.3` → 17).
    pub major: u32,
    /// Installed modules (`state = 'installed'`), sorted.
    pub installed: Vec<String>,
}

/// The facts of the database `client` is in; None when it is no Odoo database (it has
/// no `ir_module_module`).
pub(crate) async fn inspect(client: &Client) -> Result<Option<OdooFacts>> {
    let is_odoo: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.ir_module_module') IS NOT NULL",
            &[],
        )
        .await
        .context("looking for Odoo's module table")?
        .get(0);
    if !is_odoo {
        return Ok(None);
    }
    let rows = client
        .query(include_str!("../../sql/odoo/installed_modules.sql"), &[])
        .await
        .context("reading Odoo's installed modules")?;
    let mut installed = Vec::new();
    let mut major = 0;
    for row in rows {
        let (name, version): (String, String) = (row.get(0), row.get(1));
        if name == "base" {
            major = major_of(&version);
        }
        installed.push(name);
    }
    Ok(Some(OdooFacts { major, installed }))
}

/// `17.0.1.3` → 17; 0 when unreadable.
fn major_of(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|major| major.trim().parse().ok())
        .unwrap_or(0)
}

/// The distinct object-store buckets the database's attachments point at.
pub(crate) async fn buckets(client: &Client) -> Result<Vec<String>> {
    let exists: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.ir_attachment') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    Ok(client
        .query(include_str!("../../sql/odoo/buckets.sql"), &[])
        .await
        .context("reading the buckets the attachments point at")?
        .iter()
        .filter_map(|row| row.get::<_, Option<String>>(0))
        .collect())
}

/// What shows whether a copy of production is neutralized.
#[derive(Debug, Clone)]
pub(crate) struct NeutralizationState {
    pub is_neutralized: bool,
    /// Active outgoing mail servers other than the neutralization's dummy.
    pub real_mail_servers: i64,
    /// Active scheduled jobs other than `base.autovacuum_job`.
    pub active_crons: i64,
}

/// The neutralization state of the Odoo database `client` is in.
pub(crate) async fn neutralization_state(client: &Client) -> Result<NeutralizationState> {
    let row = client
        .query_one(include_str!("../../sql/odoo/neutralization_state.sql"), &[])
        .await
        .context("reading the neutralization state")?;
    Ok(NeutralizationState {
        is_neutralized: row.get::<_, Option<String>>(0).as_deref() == Some("true"),
        real_mail_servers: row.get(1),
        active_crons: row.get(2),
    })
}

/// The uuid of the Odoo database `client` is in (None: not Odoo's, or none set).
pub(crate) async fn database_uuid(client: &Client) -> Result<Option<String>> {
    let exists: bool = client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.ir_config_parameter') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client
        .query_opt(
            "SELECT value FROM public.ir_config_parameter WHERE key = 'database.uuid'",
            &[],
        )
        .await
        .context("reading database.uuid")?
        .and_then(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_major_version() {
        assert_eq!(super::major_of("17.0.1.3"), 17);
        assert_eq!(super::major_of("saas~16.3.1.0"), 0);
        assert_eq!(super::major_of(""), 0);
    }
}
