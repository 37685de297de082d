//! `odoo-db provision`: a customer's role and database on each environment.
//!
//! The steps, each recorded so that a rerun of the same command completes an
//! interrupted provision and otherwise changes nothing:
//! 1. check every input before connecting (customer and name syntax, secrets dir);
//! 2. under a per-customer lock in the catalog, take the customer's name: the one the
//!    catalog already holds, `--name`, or a generated one free on every cluster;
//! 3. per environment (in parallel, one session per server): write the passwords to
//!    `<secrets-dir>/<env>.env` (0600, never overwritten) *before* the role exists,
//!    create the role with a client-computed SCRAM verifier, the database from
//!    template0, and the database ACL (CONNECT/TEMPORARY for the owner only);
//! 4. print the platform's env blocks (names, port; never a secret).

use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use futures_util::future::try_join_all;
use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog::{self, Catalog};
use crate::cli::{EnvSelection, ProvisionArgs, ProvisionFormat};
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::customer_names::{connect_all, refuse_customer_in_existing_names, Sessions};
use crate::pg::lifecycle;
use crate::pg::membership::act_as_owner;
use crate::pg::quote::{quote_ident, quote_literal};
use crate::secrets::{self, EnvSecrets};
use crate::servers::Servers;

/// One environment's result, as printed.
#[derive(Debug, Serialize)]
pub struct Provisioned {
    pub environment: &'static str,
    pub cluster: String,
    pub db_user: String,
    pub db_name: String,
    pub db_port: u16,
    /// `created`, `completed` (a half-done provision finished) or `existing`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets_file: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub customer: String,
    pub dry_run: bool,
    pub environments: Vec<Provisioned>,
}

/// What one environment needs, decided before anything changes.
struct EnvPlan {
    kind: ClusterKind,
    cluster: String,
    name: String,
    port: u16,
    role_exists: bool,
    database_exists: bool,
    /// The catalog's state for this environment, None when not recorded yet.
    catalog_state: Option<String>,
    /// The catalog says this environment is done.
    ready: bool,
}

pub async fn run(config: &Config, args: &ProvisionArgs) -> Result<String> {
    // Step 1: input, before any connection.
    check_input(config, args)?;
    let kinds = selected_kinds(args.env);
    for kind in &kinds {
        config.cluster_of_kind(*kind, "provision")?;
    }
    let servers = Servers::open(config).await?;
    for kind in &kinds {
        servers.cluster_of_kind(*kind, "provision")?;
    }

    // One session per cluster for the whole job, opened in parallel with the catalog's.
    let (catalog, sessions) = tokio::try_join!(Catalog::open(&servers), connect_all(&servers))?;
    // Step 2: one provision per customer at a time; a second one waits, then finds
    // the work done and prints the same names.
    let _lock = CustomerLock::acquire(&catalog, &args.customer).await?;
    let (base_name, is_new_customer) = choose_name(&servers, &sessions, &catalog, args).await?;

    let plans = try_join_all(
        kinds
            .iter()
            .map(|kind| plan_environment(&servers, &sessions, &catalog, *kind, &base_name)),
    )
    .await?;
    let needs_work = plans.iter().any(|plan| !plan.ready);
    if needs_work && !args.dry_run {
        let Some(dir) = &args.secrets_dir else {
            return Err(Error::refused(format!(
                "--secrets-dir DIR is required to provision customer {:?}: the passwords of the roles it creates are written there (DIR/<env>.env, mode 0600) and nowhere else",
                args.customer
            )));
        };
        check_secrets_files(dir, &plans)?;
    }

    if args.dry_run {
        return Ok(render_dry_run(&args.customer, &plans, args.format));
    }
    // Every check has passed: from here on, changes. The secrets directory first (it
    // receives the passwords before any role exists).
    let created_dirs = match (&args.secrets_dir, needs_work) {
        (Some(dir), true) => secrets::ensure_dir(dir)?,
        _ => Vec::new(),
    };
    if is_new_customer {
        if let Err(error) = record_customer(&catalog, args, &base_name).await {
            // Refused (the name was taken at the same moment) or failed before anything
            // was recorded: leave no directory behind either.
            secrets::remove_created(&created_dirs);
            return Err(error);
        }
    }

    // Step 3: each environment on its own server, in parallel.
    let secrets_dir = args.secrets_dir.as_deref();
    let environments = try_join_all(plans.iter().map(|plan| {
        provision_environment(
            &sessions[&plan.cluster],
            &catalog,
            config,
            &args.customer,
            plan,
            secrets_dir,
        )
    }))
    .await?;

    // Step 4.
    let report = Report {
        customer: args.customer.clone(),
        dry_run: false,
        environments,
    };
    Ok(render(&report, args.format))
}

/// Step 1: the customer, the name asked for and the secrets directory, checked before
/// any connection.
fn check_input(config: &Config, args: &ProvisionArgs) -> Result<()> {
    names::validate_customer(&args.customer)?;
    if let Some(name) = &args.name {
        names::validate_base_name(name, &config.catalog.database)?;
    }
    if let Some(dir) = &args.secrets_dir {
        // Checked now, created (0700) only once every check has passed: a refusal
        // leaves the disk as it was.
        secrets::check_dir_for_writing(dir)?;
    }
    Ok(())
}

fn selected_kinds(selection: EnvSelection) -> Vec<ClusterKind> {
    match selection {
        EnvSelection::Production => vec![ClusterKind::Production],
        EnvSelection::Integration => vec![ClusterKind::Integration],
        EnvSelection::All => vec![ClusterKind::Production, ClusterKind::Integration],
    }
}

fn env_database_name(kind: ClusterKind, base: &str) -> String {
    match kind {
        ClusterKind::Production => base.to_string(),
        ClusterKind::Integration => names::integration_name(base),
    }
}

/// A role about to be created needs a password that someone will hold: either the
/// file of an interrupted provision, or a new file. A role that exists while its
/// provision is unfinished needs its file back.
fn check_secrets_files(dir: &Path, plans: &[EnvPlan]) -> Result<()> {
    for plan in plans.iter().filter(|plan| !plan.ready) {
        let env = plan.kind.as_str();
        let existing = secrets::read_existing(dir, env)?;
        if plan.catalog_state.is_none() && existing.is_some() {
            // Not an interrupted provision of this customer: the file belongs to
            // someone else, and its passwords must not become this customer's.
            return Err(Error::refused(format!(
                "{} exists already and odoo-db never overwrites a secrets file: use an empty directory for each customer",
                dir.join(format!("{env}.env")).display()
            )));
        }
        if plan.role_exists && existing.is_none() {
            return Err(Error::refused(format!(
                "role {name} exists on cluster {cluster} from an interrupted provision, but {file} is gone, so nobody holds its password. \
                 Either restore that file and run the same command again, or drop what was half made ({drop}) on cluster {cluster} and run the command again",
                name = plan.name,
                cluster = plan.cluster,
                file = dir.join(format!("{env}.env")).display(),
                drop = if plan.database_exists {
                    format!("DROP DATABASE {0}; DROP ROLE {0}", plan.name)
                } else {
                    format!("DROP ROLE {}", plan.name)
                },
            )));
        }
    }
    Ok(())
}

/// The customer's base name: from the catalog, from `--name`, or generated; and
/// whether the customer is new (its name not recorded yet).
async fn choose_name(
    servers: &Servers,
    sessions: &Sessions,
    catalog: &Catalog,
    args: &ProvisionArgs,
) -> Result<(String, bool)> {
    if let Some(at) = catalog.customer_retired_at(&args.customer).await? {
        return Err(Error::refused(format!(
            "customer {:?} was retired on {}: its names are tombstones and its record stays as it was; \
             a returning customer is provisioned under a new customer name",
            args.customer,
            at.format("%Y-%m-%d %H:%M UTC")
        )));
    }
    let existing = catalog.customer_base_name(&args.customer).await?;
    if let Some(base_name) = existing {
        if let Some(requested) = &args.name {
            if requested != &base_name {
                return Err(Error::refused(format!(
                    "customer {:?} already has the name {base_name}; --name {requested} would give it a second one",
                    args.customer
                )));
            }
        }
        return Ok((base_name, false));
    }

    // A new customer: its name must not show in what the clusters hold already, or
    // the audit would turn CRITICAL for someone else.
    refuse_customer_in_existing_names(servers, sessions, &args.customer).await?;
    let mut customers = catalog.customers().await?;
    customers.push(args.customer.clone());
    let customer_refs: Vec<&str> = customers.iter().map(String::as_str).collect();
    let taken = names_in_use(sessions, catalog).await?;
    let base_name = match &args.name {
        Some(name) => {
            names::validate_name_for_customers(name, customer_refs.iter().copied())?;
            lifecycle::refuse_tombstone(catalog, name).await?;
            for candidate in [name.clone(), names::integration_name(name)] {
                if taken.contains(&candidate) {
                    return Err(Error::refused(format!(
                        "name {name:?} refused: {candidate} already exists as a database or role on a configured cluster, or in the catalog; choose another --name or let odoo-db generate one"
                    )));
                }
            }
            name.clone()
        }
        // `taken` holds the catalog's tombstones too: a retired name is never drawn.
        None => names::generate(&mut rand::rngs::OsRng, &customer_refs, |candidate| {
            names::is_taken(candidate, &taken)
        })?,
    };
    Ok((base_name, true))
}

/// Record a new customer's name; the unique constraint settles a race between two
/// provisions of different customers that drew the same name.
async fn record_customer(catalog: &Catalog, args: &ProvisionArgs, base_name: &str) -> Result<()> {
    catalog
        .add_customer(&args.customer, base_name)
        .await
        .map_err(|error| {
            if error.is_sqlstate(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Error::refused(format!(
                    "the name {base_name} was taken by another provision at the same moment; run the command again"
                ))
            } else {
                error.context("recording the customer in the catalog")
            }
        })?;
    catalog
        .record_event(
            "provision",
            Some(base_name),
            "name",
            "taken",
            serde_json::json!({ "customer": args.customer, "given": args.name.is_some() }),
        )
        .await?;
    Ok(())
}

/// Every database and role name on every configured cluster, and every name in the
/// catalog: a new name must collide with none.
async fn names_in_use(sessions: &Sessions, catalog: &Catalog) -> Result<HashSet<String>> {
    let mut taken = HashSet::new();
    let per_cluster = try_join_all(sessions.iter().map(|(cluster, client)| async move {
        let rows = client
            .query(
                "SELECT datname::text FROM pg_database UNION SELECT rolname::text FROM pg_roles",
                &[],
            )
            .await
            .with_context(|| format!("cluster {cluster}: listing databases and roles"))?;
        Ok::<_, Error>(
            rows.iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>(),
        )
    }))
    .await?;
    taken.extend(per_cluster.into_iter().flatten());
    taken.extend(catalog.names_in_use().await?);
    Ok(taken)
}

async fn plan_environment(
    servers: &Servers,
    sessions: &Sessions,
    catalog: &Catalog,
    kind: ClusterKind,
    base_name: &str,
) -> Result<EnvPlan> {
    let (cluster, _) = servers.cluster_of_kind(kind, "provision")?;
    let name = env_database_name(kind, base_name);
    let client = &sessions[cluster];
    catalog.verify_identity(cluster, client).await?;
    let state = catalog.database_state(kind.as_str(), &name).await?;
    Ok(EnvPlan {
        kind,
        cluster: cluster.to_string(),
        port: servers.primary(cluster)?.server_port(),
        role_exists: catalog::role_exists(client, &name).await?,
        database_exists: catalog::database_exists(client, &name).await?,
        // recreating/restoring also count as provisioned: those jobs own the database now.
        ready: state
            .as_deref()
            .is_some_and(|state| state != "provisioning"),
        catalog_state: state,
        name,
    })
}

async fn provision_environment(
    client: &Client,
    catalog: &Catalog,
    config: &Config,
    customer: &str,
    plan: &EnvPlan,
    secrets_dir: Option<&Path>,
) -> Result<Provisioned> {
    let env = plan.kind.as_str();
    let mut result = Provisioned {
        environment: env,
        cluster: plan.cluster.clone(),
        db_user: plan.name.clone(),
        db_name: plan.name.clone(),
        db_port: plan.port,
        outcome: "existing",
        secrets_file: None,
    };
    if plan.ready {
        return Ok(result);
    }
    let secrets_dir = secrets_dir.expect("checked before any change");
    let context = || provisioning_context(plan);
    let inserted = catalog
        .add_provisioning_database(&plan.name, env, customer, &plan.cluster)
        .await
        .with_context(context)?;
    result.outcome = if inserted { "created" } else { "completed" };

    if !plan.role_exists {
        create_role_with_secrets(client, catalog, config, plan, secrets_dir).await?;
    }
    result.secrets_file = Some(secrets_dir.join(format!("{env}.env")));
    fail::fail_point!("provision-after-role");
    act_as_owner(client, &plan.name)
        .await
        .with_context(context)?;
    if !plan.database_exists {
        create_database_recorded(client, catalog, config, plan).await?;
    }
    fail::fail_point!("provision-after-database");
    restrict_connect(client, &plan.name)
        .await
        .with_context(context)?;
    catalog.mark_database_ready(env, &plan.name).await?;
    catalog
        .record_event(
            "provision",
            Some(&plan.name),
            "ready",
            "done",
            serde_json::json!({ "customer": customer, "cluster": plan.cluster }),
        )
        .await?;
    tracing::info!(
        "{env}: role and database {} ready on cluster {}",
        plan.name,
        plan.cluster
    );
    Ok(result)
}

/// What a failure while provisioning `plan` was doing.
fn provisioning_context(plan: &EnvPlan) -> String {
    format!(
        "provisioning {} on cluster {} ({})",
        plan.name,
        plan.cluster,
        plan.kind.as_str()
    )
}

/// The role with its password, the secrets file written first: a crash after CREATE
/// ROLE must leave a password someone holds.
async fn create_role_with_secrets(
    client: &Client,
    catalog: &Catalog,
    config: &Config,
    plan: &EnvPlan,
    secrets_dir: &Path,
) -> Result<()> {
    let env = plan.kind.as_str();
    let context = || provisioning_context(plan);
    // The file first: a crash after CREATE ROLE must leave a password someone holds.
    let secrets = match secrets::read_existing(secrets_dir, env)? {
        Some(secrets) => secrets,
        None => {
            let secrets = EnvSecrets {
                db_password: secrets::generate_password(),
                admin_passwd: secrets::generate_password(),
            };
            secrets::write_new(secrets_dir, env, &secrets)?;
            secrets
        }
    };
    fail::fail_point!("provision-after-secrets");
    create_role(
        client,
        &plan.name,
        &secrets,
        config.provision.connection_limit,
    )
    .await
    .with_context(context)?;
    catalog
        .record_event(
            "provision",
            Some(&plan.name),
            "role",
            "created",
            serde_json::json!({ "cluster": plan.cluster }),
        )
        .await?;
    Ok(())
}

/// The database (creating the role cannot have created it: the plan still holds),
/// and its event.
async fn create_database_recorded(
    client: &Client,
    catalog: &Catalog,
    config: &Config,
    plan: &EnvPlan,
) -> Result<()> {
    let context = || provisioning_context(plan);
    create_database(client, &plan.name, &config.provision.locale)
        .await
        .with_context(context)?;
    catalog
        .record_event(
            "provision",
            Some(&plan.name),
            "database",
            "created",
            serde_json::json!({ "cluster": plan.cluster }),
        )
        .await?;
    Ok(())
}

/// The password travels only as a SCRAM verifier computed here: the plaintext never
/// reaches the server, its logs (log_statement=all) or pg_stat_activity.
async fn create_role(
    client: &Client,
    name: &str,
    secrets: &EnvSecrets,
    connection_limit: Option<i32>,
) -> Result<()> {
    let verifier = secrets::scram_verifier(&secrets.db_password);
    let limit = connection_limit
        .map(|limit| format!(" CONNECTION LIMIT {limit}"))
        .unwrap_or_default();
    client
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION{limit} PASSWORD {}",
            quote_ident(name),
            quote_literal(&verifier)
        ))
        .await
        .context("creating the role")?;
    Ok(())
}

async fn create_database(client: &Client, name: &str, locale: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "CREATE DATABASE {name} OWNER {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE {locale} LC_CTYPE {locale}",
            name = quote_ident(name),
            locale = quote_literal(locale)
        ))
        .await
        .context("creating the database")
}

/// Clients can connect to every database whose CONNECT PUBLIC holds (the default):
/// only the owner may.
pub async fn restrict_connect(client: &Client, name: &str) -> Result<()> {
    let name = quote_ident(name);
    client
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC;
             GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name};"
        ))
        .await
        .context("restricting CONNECT to the owner")
}

fn render(report: &Report, format: ProvisionFormat) -> String {
    match format {
        ProvisionFormat::Json => {
            serde_json::to_string_pretty(report).expect("report serializes") + "\n"
        }
        ProvisionFormat::Env => {
            let blocks: Vec<String> = report
                .environments
                .iter()
                .map(|env| {
                    format!(
                        "# {}\nexport DB_USER={}\nexport DB_NAME={}\nexport DB_PORT={}\n",
                        env.environment, env.db_user, env.db_name, env.db_port
                    )
                })
                .collect();
            blocks.join("\n")
        }
    }
}

fn render_dry_run(customer: &str, plans: &[EnvPlan], format: ProvisionFormat) -> String {
    let report = Report {
        customer: customer.to_string(),
        dry_run: true,
        environments: plans
            .iter()
            .map(|plan| Provisioned {
                environment: plan.kind.as_str(),
                cluster: plan.cluster.clone(),
                db_user: plan.name.clone(),
                db_name: plan.name.clone(),
                db_port: plan.port,
                outcome: if plan.ready {
                    "existing"
                } else {
                    "would create"
                },
                secrets_file: None,
            })
            .collect(),
    };
    match format {
        ProvisionFormat::Json => render(&report, format),
        ProvisionFormat::Env => {
            let mut text = String::new();
            for env in &report.environments {
                writeln!(
                    text,
                    "# dry run: {} {} on cluster {}: {}",
                    env.environment, env.db_name, env.cluster, env.outcome
                )
                .ok();
            }
            text
        }
    }
}

/// A session advisory lock on the catalog connection, per customer: held until the
/// connection closes (end of the command, or the process's death), so a crash never
/// leaves it behind.
struct CustomerLock;

impl CustomerLock {
    async fn acquire(catalog: &Catalog, customer: &str) -> Result<CustomerLock> {
        catalog
            .lock_customer_provision(customer)
            .await
            .map_err(|error| {
                if error.is_sqlstate(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                    Error::refused(format!(
                        "another provision of customer {customer:?} is in progress; wait for it and run the command again"
                    ))
                } else {
                    error.context("taking the provision lock")
                }
            })?;
        Ok(CustomerLock)
    }
}
