//! `odoo-db adopt`: bring a customer created by hand under odoo-db's management.
//!
//! Platforms that existed before odoo-db have customers whose role and database a DBA
//! made with psql. Adopt checks that what exists is what odoo-db would have made
//! (names by the platform's rules, the database owned by its same-named role), makes
//! sure odoo-db's role can act for that owner (recreate needs it), reports ACL
//! problems without changing them, and records the customer in the catalog. It never
//! creates, drops or alters a customer's database.

use std::fmt::Write;

use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::cli::AdoptArgs;
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::customer_names;
use crate::pg::membership;
use crate::servers::Servers;

/// What adopt found on one environment.
struct Found {
    kind: ClusterKind,
    cluster: String,
    name: String,
    port: u16,
    public_can_connect: bool,
    /// What odoo-db's role must grant itself to act as the owner (applied only once
    /// every environment passed its checks).
    access: membership::OwnerAccess,
}

pub async fn run(config: &Config, args: &AdoptArgs) -> Result<String> {
    names::validate_customer(&args.customer)?;
    names::validate_base_name(&args.name, &config.catalog.database)?;
    for kind in [ClusterKind::Production, ClusterKind::Integration] {
        config.cluster_of_kind(kind, "adopt")?;
    }
    let servers = Servers::open(config).await?;
    let catalog = Catalog::open(&servers).await?;

    let sessions = check_customer_name(&servers, &catalog, args).await?;
    // Every check on every environment before anything is recorded.
    let found = inspect_environments(config, &servers, &catalog, sessions, args).await?;

    // Every check passed on every environment: now the grants odoo-db gives itself on
    // roles it holds ADMIN OPTION on (none on roles a superuser must grant first).
    for (client, entry) in &found {
        entry
            .access
            .apply(client)
            .await
            .with_context(|| format!("adopting {} on cluster {}", entry.name, entry.cluster))?;
    }
    let found: Vec<Found> = found.into_iter().map(|(_, entry)| entry).collect();
    record(&catalog, &args.customer, &args.name, &found).await?;
    Ok(describe_adopted(config, args, &found))
}

/// The customer's name: the one recorded for it if any, and a new customer's must not
/// show in what the clusters hold already; returns a session on every cluster.
async fn check_customer_name(
    servers: &Servers,
    catalog: &Catalog,
    args: &AdoptArgs,
) -> Result<customer_names::Sessions> {
    let mut customers = catalog.customers().await?;
    if !customers.contains(&args.customer) {
        customers.push(args.customer.clone());
    }
    names::validate_name_for_customers(&args.name, customers.iter().map(String::as_str))?;
    crate::pg::lifecycle::refuse_tombstone(catalog, &args.name).await?;
    let recorded = recorded_name(catalog, &args.customer).await?;
    if let Some(existing) = &recorded {
        if existing != &args.name {
            return Err(Error::refused(format!(
                "customer {:?} is already recorded with the name {existing}; a customer has one name",
                args.customer
            )));
        }
    }
    // A new customer: its name must not show in what the clusters hold already.
    let sessions = customer_names::connect_all(servers).await?;
    if recorded.is_none() {
        customer_names::refuse_customer_in_existing_names(servers, &sessions, &args.customer)
            .await?;
    }
    Ok(sessions)
}

/// What each environment holds under the name, checked; refused unless production
/// holds it.
async fn inspect_environments(
    config: &Config,
    servers: &Servers,
    catalog: &Catalog,
    mut sessions: customer_names::Sessions,
    args: &AdoptArgs,
) -> Result<Vec<(Client, Found)>> {
    let mut found = Vec::new();
    for kind in [ClusterKind::Production, ClusterKind::Integration] {
        let Some((cluster, _)) = config.cluster_of_kind(kind, "adopt")? else {
            continue;
        };
        let name = match kind {
            ClusterKind::Production => args.name.clone(),
            ClusterKind::Integration => names::integration_name(&args.name),
        };
        let client = sessions
            .remove(cluster)
            .expect("connect_all opened a session on every cluster");
        catalog.verify_identity(cluster, &client).await?;
        let port = servers.primary(cluster)?.server_port();
        if let Some(entry) = inspect(&client, kind, cluster, port, &name)
            .await
            .with_context(|| format!("adopting {name} on cluster {cluster}"))?
        {
            found.push((client, entry));
        }
    }
    if !found
        .iter()
        .any(|(_, entry)| entry.kind == ClusterKind::Production)
    {
        return Err(Error::refused(format!(
            "database {0} does not exist on the production cluster: adopt registers what exists; to create it, run `odoo-db provision --customer {1} --name {0}`",
            args.name, args.customer
        )));
    }
    Ok(found)
}

/// The environment variables of each adopted database for stdout, and warnings for
/// what adopt leaves as it found it.
fn describe_adopted(config: &Config, args: &AdoptArgs, found: &[Found]) -> String {
    let mut text = String::new();
    for entry in found {
        writeln!(
            text,
            "# {}\nexport DB_USER={name}\nexport DB_NAME={name}\nexport DB_PORT={}\n",
            entry.kind.as_str(),
            entry.port,
            name = entry.name
        )
        .ok();
    }
    for entry in found.iter().filter(|entry| entry.public_can_connect) {
        tracing::warn!(
            "{} on cluster {}: PUBLIC may connect, so every role of the cluster can; odoo-db changes nothing on adopt. Fix: REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name};",
            entry.name,
            entry.cluster,
            name = entry.name
        );
    }
    if !found
        .iter()
        .any(|entry| entry.kind == ClusterKind::Integration)
        && matches!(
            config.cluster_of_kind(ClusterKind::Integration, "adopt"),
            Ok(Some(_))
        )
    {
        tracing::warn!(
            "{} does not exist on the integration cluster; create it with `odoo-db provision --customer {} --env integration --secrets-dir DIR`",
            names::integration_name(&args.name),
            args.customer
        );
    }
    text.trim_end().to_string() + "\n"
}

async fn recorded_name(catalog: &Catalog, customer: &str) -> Result<Option<String>> {
    catalog.customer_base_name(customer).await
}

/// None when neither the database nor the role exists on this cluster (an integration
/// twin not made yet); a refusal when only half exists or the owner is another role.
async fn inspect(
    client: &Client,
    kind: ClusterKind,
    cluster: &str,
    port: u16,
    name: &str,
) -> Result<Option<Found>> {
    let database = client
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text, has_database_privilege('public', oid, 'CONNECT')
             FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await?;
    let role = client
        .query_opt("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&name])
        .await?;
    let (owner, public_can_connect): (String, bool) = match (database, &role) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(Error::refused(format!(
                "role {name} exists on cluster {cluster} but database {name} does not"
            )))
        }
        (Some(_), None) => {
            return Err(Error::refused(format!(
                "database {name} exists on cluster {cluster} but role {name} does not: the platform's rule is DB_USER = DB_NAME"
            )))
        }
        (Some(row), Some(_)) => (row.get(0), row.get(1)),
    };
    if owner != name {
        return Err(Error::refused(format!(
            "database {name} on cluster {cluster} is owned by {owner}, not by role {name}: the platform's rule is DB_USER = DB_NAME = owner. \
             Fix it (ALTER DATABASE {name} OWNER TO {name}) and adopt again"
        )));
    }
    if role.is_some_and(|row| row.get::<_, bool>(0)) {
        return Err(Error::refused(format!(
            "role {name} on cluster {cluster} is a superuser: odoo-db never manages superuser roles; ALTER ROLE {name} NOSUPERUSER first"
        )));
    }
    // Refused here (nothing changed) when the role is more than a customer's, or when
    // a superuser must grant odoo-db what it needs, with the exact GRANT.
    let access = membership::plan_act_as_owner(client, name, true).await?;
    Ok(Some(Found {
        kind,
        cluster: cluster.to_string(),
        name: name.to_string(),
        port,
        public_can_connect,
        access,
    }))
}

/// One transaction: a customer is recorded with all its databases or not at all.
async fn record(catalog: &Catalog, customer: &str, base_name: &str, found: &[Found]) -> Result<()> {
    catalog
        .atomically(|| record_rows(catalog, customer, base_name, found))
        .await
}

async fn record_rows(
    catalog: &Catalog,
    customer: &str,
    base_name: &str,
    found: &[Found],
) -> Result<()> {
    catalog
        .add_customer_if_new(customer, base_name)
        .await
        .map_err(|error| {
            if error.is_sqlstate(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Error::refused(format!(
                    "the name {base_name} belongs to another customer in the catalog"
                ))
            } else {
                error
            }
        })?;
    for entry in found {
        let inserted = catalog
            .add_adopted_database(&entry.name, entry.kind.as_str(), customer, &entry.cluster)
            .await
            .map_err(|error| {
                if error.is_sqlstate(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                    Error::refused(format!(
                        "customer {customer:?} already has another {} database in the catalog",
                        entry.kind.as_str()
                    ))
                } else {
                    error
                }
            })?;
        if !inserted {
            let owner_customer = catalog
                .database_customer(entry.kind.as_str(), &entry.name)
                .await?;
            if owner_customer != customer {
                return Err(Error::refused(format!(
                    "{} is recorded for customer {owner_customer:?}, not {customer:?}",
                    entry.name
                )));
            }
        }
        catalog
            .record_event(
                "adopt",
                Some(&entry.name),
                "adopt",
                if inserted {
                    "recorded"
                } else {
                    "already recorded"
                },
                serde_json::json!({ "customer": customer, "cluster": entry.cluster }),
            )
            .await?;
    }
    Ok(())
}
