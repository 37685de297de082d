//! Audit of the copies of production: an integration database that the catalog
//! records as refreshed, or whose `database.uuid` is its production twin's (a copy
//! made by hand), must be neutralized (`database.is_neutralized`); else it can mail
//! real customers and run production's jobs. Integration databases rebuilt from
//! scratch (no uuid of production's, never refreshed) are not judged.
//!
//! The reads run inside customer databases, whose owners wrote the views and functions
//! there, so they follow the customer-code rule: each is made logged in as a throwaway
//! role that is a member of the database's owner only ([`StepRole`]), with
//! `search_path = pg_catalog` from the startup packet.

use std::collections::HashMap;

use crate::catalog::{Catalog, ManagedDatabase};
use crate::error::{Context, Result};
use crate::odoo::{self, NeutralizationState};
use crate::output::check::{Check, Status};
use crate::pg::steprole::{pinned_search_path, Connect, StepRole};
use crate::servers::{self, Servers};

/// The neutralization checks of every managed integration database.
pub(super) async fn checks(servers: &Servers) -> Vec<Check> {
    match audit(servers).await {
        Ok(checks) => checks,
        Err(error) => vec![Check {
            status: Status::Unknown,
            cluster: None,
            server: None,
            check: "neutralization",
            message: format!("the neutralization of integration copies could not be read: {error}"),
            hint: None,
        }],
    }
}

async fn audit(servers: &Servers) -> Result<Vec<Check>> {
    let catalog = Catalog::open(servers).await?;
    let managed = catalog.managed_databases().await?;
    let refreshed: HashMap<String, bool> = catalog
        .finished_refreshes()
        .await?
        .into_iter()
        .map(|r| (r.database, r.neutralized))
        .collect();
    let mut checks = Vec::new();
    for integration in managed
        .iter()
        .filter(|m| m.environment == "integration" && m.state == "ready")
    {
        let twin = managed
            .iter()
            .find(|m| m.environment == "production" && m.customer == integration.customer);
        let is_refreshed = refreshed.contains_key(&integration.name);
        // One database that cannot be read (dropped meanwhile, its server slow) is
        // UNKNOWN for that database alone; the others are still judged.
        match audit_one(servers, &catalog, integration, twin, is_refreshed).await {
            Ok(found) => checks.extend(found),
            Err(error) => checks.push(Check {
                status: Status::Unknown,
                cluster: Some(integration.cluster.clone()),
                server: None,
                check: "neutralization",
                message: format!(
                    "the neutralization of {} could not be read: {error:#}",
                    integration.name
                ),
                hint: None,
            }),
        }
    }
    Ok(checks)
}

/// The checks of one integration database: none unless it is a copy of production.
/// At most two throwaway-role sessions: the production twin's uuid (unless the catalog
/// records a refresh), then the integration database's uuid and, only when it is a copy,
/// its neutralization state.
async fn audit_one(
    servers: &Servers,
    catalog: &Catalog,
    integration: &ManagedDatabase,
    twin: Option<&ManagedDatabase>,
    is_refreshed: bool,
) -> Result<Vec<Check>> {
    let copy_of = if is_refreshed {
        CopyOf::Refreshed
    } else {
        let twin_uuid = match twin {
            Some(twin) => read(servers, catalog, twin, None)
                .await?
                .and_then(|read| read.uuid),
            None => None,
        };
        match twin_uuid {
            Some(uuid) => CopyOf::Uuid(uuid),
            // No production uuid to compare with: not a copy as far as we can tell.
            None => return Ok(Vec::new()),
        }
    };
    match read(servers, catalog, integration, Some(&copy_of)).await? {
        Some(Read {
            state: Some(state), ..
        }) => Ok(judge(integration, is_refreshed, &state)),
        _ => Ok(Vec::new()),
    }
}

/// What makes a database a copy of production.
enum CopyOf {
    /// The catalog records a refresh of it.
    Refreshed,
    /// Its `database.uuid` is this one, production's.
    Uuid(String),
}

/// What one database says, read as a throwaway member of its owner.
struct Read {
    uuid: Option<String>,
    /// Its neutralization state, read only when it is a copy of production and an
    /// Odoo database.
    state: Option<NeutralizationState>,
}

/// The verdicts on one copy of production.
fn judge(db: &ManagedDatabase, refreshed: bool, state: &NeutralizationState) -> Vec<Check> {
    let check = |status, message: String, hint: &str| Check {
        status,
        cluster: Some(db.cluster.clone()),
        server: None,
        check: "neutralization",
        message,
        hint: Some(hint.to_string()),
    };
    let mut checks = Vec::new();
    if !state.is_neutralized {
        checks.push(check(
            Status::Critical,
            format!(
                "{} is a copy of production ({}) and is NOT neutralized (database.is_neutralized is not true): \
                 it can send mail to real customers and run production's scheduled jobs",
                db.name,
                if refreshed { "refreshed" } else { "database.uuid equals its production twin's" }
            ),
            "stop its Odoo, then `odoo-db refresh` it (neutralized), or `odoo-db recreate` it",
        ));
    } else if refreshed && (state.real_mail_servers > 0 || state.active_crons > 0) {
        checks.push(check(
            Status::Warning,
            format!(
                "{} was refreshed and neutralized, but has {} active real mail server(s) and {} active \
                 scheduled job(s) other than the autovacuum since",
                db.name, state.real_mail_servers, state.active_crons
            ),
            "someone re-enabled them in the integration copy: check that they point at no real recipient",
        ));
    }
    checks
}

/// Read `db`'s uuid and, when it is a copy (`copy_of`; None: only the uuid is wanted),
/// its neutralization state, in one session as a throwaway member of its owner; None
/// when the database is not there to read.
async fn read(
    servers: &Servers,
    catalog: &Catalog,
    db: &ManagedDatabase,
    copy_of: Option<&CopyOf>,
) -> Result<Option<Read>> {
    let admin = servers.primary(&db.cluster)?;
    let server = servers.connect_primary(&db.cluster).await?;
    if !open_to_its_owner(&server, &db.name, &db.owner).await? || !is_odoo(&admin, &db.name).await?
    {
        return Ok(None);
    }
    // CONNECT through the owner: the audit changes no database's ACL, not even for a
    // moment (a suspend or recreate running meanwhile records it).
    let role = StepRole::create(
        &server,
        catalog,
        &db.cluster,
        &db.name,
        &db.owner,
        "audit",
        Connect::ThroughOwner,
    )
    .await?;
    let read = async {
        let client = pinned_search_path(&role.login(&admin))
            .connect(&servers::admin_session())
            .await
            .with_context(|| format!("connecting to {} as {}", db.name, role.name))?;
        let uuid = odoo::database_uuid(&client).await?;
        let copy = match copy_of {
            None => false,
            Some(CopyOf::Refreshed) => true,
            Some(CopyOf::Uuid(production)) => uuid.as_deref() == Some(production.as_str()),
        };
        let state = if copy && odoo::inspect(&client).await?.is_some() {
            Some(odoo::neutralization_state(&client).await?)
        } else {
            None
        };
        Ok::<_, crate::error::Error>(Read { uuid, state })
    }
    .await;
    role.drop(&server, catalog, &admin).await?;
    read.map(Some)
}

/// Whether `database` exists and its owner may connect to it. A database closed to
/// connections (mid-recreate) or whose owner lost CONNECT (suspended) cannot act as
/// production, nobody's Odoo reaches it, and a throwaway member of the owner could not
/// read it either: it is not judged.
async fn open_to_its_owner(
    server: &tokio_postgres::Client,
    database: &str,
    owner: &str,
) -> Result<bool> {
    let row = server
        .query_opt(
            "SELECT datallowconn AND pg_catalog.has_database_privilege($2::name, oid, 'CONNECT') \
               FROM pg_catalog.pg_database WHERE datname = $1",
            &[&database, &owner],
        )
        .await
        .with_context(|| format!("reading whether {owner} may connect to {database}"))?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// Whether `database` has Odoo's parameter table, read from the system catalogs only
/// (odoo-db's own session, `search_path = pg_catalog`: no customer object is used), so
/// that no throwaway role is made for databases that are not Odoo's.
async fn is_odoo(admin: &pgconn::ConnParams, database: &str) -> Result<bool> {
    let client = pinned_search_path(&admin.with_dbname(database))
        .connect(&servers::admin_session())
        .await
        .with_context(|| format!("connecting to {database}"))?;
    Ok(client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.ir_config_parameter') IS NOT NULL",
            &[],
        )
        .await?
        .get(0))
}
