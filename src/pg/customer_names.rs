//! Customer names as the clusters show them: a session on every configured primary,
//! and the refusal of a new customer whose name already shows in a database or role
//! there. Provision and adopt both record customers, so both check this first.

use std::collections::{HashMap, HashSet};

use futures_util::future::try_join_all;
use tokio_postgres::Client;

use crate::error::{Context, Error, Result};
use crate::names;
use crate::servers::Servers;

/// A session on each configured cluster's primary, by cluster name.
pub(crate) type Sessions = HashMap<String, Client>;

/// Refuse a new customer whose name, in any of its forms ([`names::customer_tokens`]),
/// shows in a database or role that already exists on a configured cluster: every
/// client can list those, and once the customer is recorded the audit would report
/// them CRITICAL. The same objects the audit judges: not the system databases, the
/// catalog database, `pg_*` roles, `postgres` nor the roles odoo-db logs in as.
pub(crate) async fn refuse_customer_in_existing_names(
    servers: &Servers,
    sessions: &Sessions,
    customer: &str,
) -> Result<()> {
    let config = servers.config();
    let mut own_roles: HashSet<String> = HashSet::new();
    for cluster in config.clusters.keys() {
        own_roles.insert(servers.primary(cluster)?.user().to_string());
        for (_, params) in servers.standbys(cluster)? {
            own_roles.insert(params.user().to_string());
        }
    }
    own_roles.extend(config.health.user.clone());
    let mut clusters: Vec<&String> = sessions.keys().collect();
    clusters.sort();
    let listed = try_join_all(clusters.iter().map(|cluster| async move {
        let rows = sessions[cluster.as_str()]
            .query(
                "SELECT 'database', datname::text FROM pg_database
                 UNION ALL SELECT 'role', rolname::text FROM pg_roles ORDER BY 1, 2",
                &[],
            )
            .await
            .with_context(|| format!("cluster {cluster}: listing databases and roles"))?;
        Ok::<_, Error>(
            rows.iter()
                .map(|row| {
                    (
                        cluster.to_string(),
                        row.get::<_, String>(0),
                        row.get::<_, String>(1),
                    )
                })
                .collect::<Vec<_>>(),
        )
    }))
    .await?;
    let mut hits = Vec::new();
    for (cluster, kind, object) in listed.into_iter().flatten() {
        let judged = match kind.as_str() {
            "database" => {
                !["postgres", "template0", "template1"].contains(&object.as_str())
                    && object != config.catalog.database
            }
            _ => !object.starts_with("pg_") && object != "postgres" && !own_roles.contains(&object),
        };
        if !judged {
            continue;
        }
        if let Some((_, token)) = names::find_customer_in_name(&object, [customer]) {
            hits.push(format!(
                "{kind} {object} on cluster {cluster} (contains {token:?})"
            ));
        }
    }
    if hits.is_empty() {
        return Ok(());
    }
    let shown = hits.len().min(20);
    let more = if hits.len() > shown {
        format!(" and {} more", hits.len() - shown)
    } else {
        String::new()
    };
    Err(Error::refused(format!(
        "customer {customer:?} refused: its name already shows in {}{more}; every client of a \
         cluster can list those names, so recording this customer would make the audit report \
         them as giving a customer away. Choose another customer name, or rename those objects first",
        hits[..shown].join(", ")
    )))
}

pub(crate) async fn connect_all(servers: &Servers) -> Result<Sessions> {
    let clusters: Vec<String> = servers.config().clusters.keys().cloned().collect();
    let clients = try_join_all(
        clusters
            .iter()
            .map(|cluster| servers.connect_primary(cluster)),
    )
    .await?;
    Ok(clusters.into_iter().zip(clients).collect())
}
