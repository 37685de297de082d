//! The audit of suspended customers: a suspension is only as good as what is still on
//! the server. A suspended customer whose role can log in again, or whose database
//! someone opened again (CONNECT granted to anyone but odoo-db), had part of its
//! suspend undone behind odoo-db's back: WARNING, so the monitoring sees it before
//! `retire` (which re-verifies and refuses) or the customer does.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::catalog::{ActiveSuspension, Catalog};
use crate::output::check::{Check, Status};
use crate::servers::Servers;

const SUSPENSION_SQL: &str = include_str!("../../../sql/audit/suspension.sql");

/// What the server shows of one suspended database.
struct Found {
    /// None: the role is gone.
    can_login: Option<bool>,
    holders: Vec<String>,
}

/// The checks of every active suspension; none when there is nothing wrong. A
/// catalog or cluster that cannot be read here is reported by the audit's other
/// checks, so it only logs.
pub(crate) async fn checks(servers: &Servers, timeout: Duration) -> Vec<Check> {
    match tokio::time::timeout(timeout, read_and_judge(servers)).await {
        Ok(Ok(checks)) => checks,
        Ok(Err(error)) => {
            tracing::warn!("suspended customers not audited: {error}");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("suspended customers not audited: the audit's deadline came first");
            Vec::new()
        }
    }
}

async fn read_and_judge(servers: &Servers) -> crate::error::Result<Vec<Check>> {
    let catalog = Catalog::open(servers).await?;
    let suspensions = catalog.active_suspensions().await?;
    let mut checks = Vec::new();
    for suspension in &suspensions {
        let client = match servers.connect_primary(&suspension.cluster).await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(
                    "cluster {}: suspensions not audited: {error}",
                    suspension.cluster
                );
                continue;
            }
        };
        let row = client
            .query_typed_opt(SUSPENSION_SQL, &[(&suspension.database, Type::TEXT)])
            .await?;
        let found = Found {
            can_login: row.as_ref().map(|row| row.get(0)),
            holders: row.map(|row| row.get(1)).unwrap_or_default(),
        };
        checks.extend(judge(suspension, &found));
    }
    Ok(checks)
}

/// WARNING when the role can log in or someone but odoo-db holds CONNECT.
fn judge(suspension: &ActiveSuspension, found: &Found) -> Option<Check> {
    let mut undone = Vec::new();
    if found.can_login == Some(true) {
        undone.push("its role can log in".to_string());
    }
    if !found.holders.is_empty() {
        undone.push(format!("CONNECT is held by {}", found.holders.join(", ")));
    }
    if undone.is_empty() {
        return None;
    }
    Some(Check {
        status: Status::Warning,
        cluster: Some(suspension.cluster.clone()),
        server: Some("primary".to_string()),
        check: "suspension",
        message: format!(
            "{} database {} (customer {}) is suspended since {} but {}",
            suspension.environment,
            suspension.database,
            suspension.customer,
            suspension.suspended_at.format("%Y-%m-%d %H:%M UTC"),
            undone.join(" and ")
        ),
        hint: Some(format!(
            "someone undid part of the suspend: run `odoo-db suspend --customer {}` again, or `odoo-db resume` if the customer is back",
            suspension.customer
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suspension() -> ActiveSuspension {
        ActiveSuspension {
            customer: "flux-dock".to_string(),
            environment: "production".to_string(),
            database: "calm_owl_0042".to_string(),
            cluster: "production".to_string(),
            suspended_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_suspension_still_in_place_is_fine() {
        let found = Found {
            can_login: Some(false),
            holders: Vec::new(),
        };
        assert!(judge(&suspension(), &found).is_none());
    }

    #[test]
    fn a_role_that_logs_in_again_or_an_open_database_is_a_warning() {
        let found = Found {
            can_login: Some(true),
            holders: vec!["PUBLIC".to_string()],
        };
        let check = judge(&suspension(), &found).expect("a finding");
        assert_eq!(check.status, Status::Warning);
        assert!(
            check.message.contains("its role can log in"),
            "{}",
            check.message
        );
        assert!(
            check.message.contains("CONNECT is held by PUBLIC"),
            "{}",
            check.message
        );
        assert!(check
            .hint
            .unwrap()
            .contains("odoo-db suspend --customer flux-dock"));
    }
}
