//! Cluster identities (`catalog.clusters`): the system identifier `init` pinned for each
//! configured cluster, so a config later pointed at another server is refused.

use tokio_postgres::Client;

use super::{Catalog, RUN_INIT};
use crate::config::ClusterKind;
use crate::error::{Context, Error, Result};
use crate::servers;

/// A cluster as `init` pinned it.
#[derive(Debug, Clone)]
pub struct PinnedCluster {
    pub name: String,
    /// `production` or `integration`, as pinned.
    pub kind: String,
    /// The system identifier, as text (it does not fit an `i64`).
    pub system_identifier: String,
}

impl Catalog {
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

    /// Every cluster `init` pinned.
    pub async fn pinned_clusters(&self) -> Result<Vec<PinnedCluster>> {
        let rows = self
            .client
            .query_typed(
                "SELECT name, kind, system_identifier::text FROM catalog.clusters",
                &[],
            )
            .await
            .context("reading the pinned clusters from the catalog")?;
        Ok(rows
            .iter()
            .map(|row| PinnedCluster {
                name: row.get(0),
                kind: row.get(1),
                system_identifier: row.get(2),
            })
            .collect())
    }
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
        .client
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
        .client
        .query_opt(
            "SELECT system_identifier::text, kind FROM catalog.clusters WHERE name = $1",
            &[&cluster],
        )
        .await?;
    match existing {
        None => {
            catalog
                .client
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
