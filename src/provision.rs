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

use std::collections::{HashMap, HashSet};
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
use crate::secrets::{self, EnvSecrets};
use crate::servers::{quote_ident, quote_literal, Servers};

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
    names::validate_customer(&args.customer)?;
    if let Some(name) = &args.name {
        names::validate_base_name(name, &config.catalog.database)?;
    }
    if let Some(dir) = &args.secrets_dir {
        // Checked now, created (0700) only once every check has passed: a refusal
        // leaves the disk as it was.
        secrets::check_dir_for_writing(dir)?;
    }
    let kinds = selected_kinds(args.env);
    let servers = Servers::open(config).await?;
    for kind in &kinds {
        servers.cluster_of_kind(*kind)?;
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
    let existing: Option<String> = catalog
        .client()
        .query_opt(
            "SELECT base_name FROM catalog.customers WHERE customer = $1",
            &[&args.customer],
        )
        .await?
        .map(|row| row.get(0));
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
            for candidate in [name.clone(), names::integration_name(name)] {
                if taken.contains(&candidate) {
                    return Err(Error::refused(format!(
                        "name {name:?} refused: {candidate} already exists as a database or role on a configured cluster, or in the catalog; choose another --name or let odoo-db generate one"
                    )));
                }
            }
            name.clone()
        }
        None => names::generate(&mut rand::rngs::OsRng, &customer_refs, |candidate| {
            taken.contains(candidate) || taken.contains(&names::integration_name(candidate))
        })?,
    };
    Ok((base_name, true))
}

/// Record a new customer's name; the unique constraint settles a race between two
/// provisions of different customers that drew the same name.
async fn record_customer(catalog: &Catalog, args: &ProvisionArgs, base_name: &str) -> Result<()> {
    catalog
        .client()
        .execute(
            "INSERT INTO catalog.customers (customer, base_name) VALUES ($1, $2)",
            &[&args.customer, &base_name],
        )
        .await
        .map_err(Error::from)
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
    let rows = catalog
        .client()
        .query(
            "SELECT base_name FROM catalog.customers UNION SELECT name FROM catalog.databases",
            &[],
        )
        .await?;
    taken.extend(rows.iter().map(|row| row.get::<_, String>(0)));
    Ok(taken)
}

async fn plan_environment(
    servers: &Servers,
    sessions: &Sessions,
    catalog: &Catalog,
    kind: ClusterKind,
    base_name: &str,
) -> Result<EnvPlan> {
    let (cluster, _) = servers.cluster_of_kind(kind)?;
    let name = env_database_name(kind, base_name);
    let client = &sessions[cluster];
    catalog.verify_identity(cluster, client).await?;
    let state: Option<String> = catalog
        .client()
        .query_opt(
            "SELECT state FROM catalog.databases WHERE environment = $1 AND name = $2",
            &[&kind.as_str(), &name],
        )
        .await?
        .map(|row| row.get(0));
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
    let context = || {
        format!(
            "provisioning {} on cluster {} ({env})",
            plan.name, plan.cluster
        )
    };

    let inserted = catalog
        .client()
        .execute(
            "INSERT INTO catalog.databases (name, environment, customer, cluster, state, owner)
             VALUES ($1, $2, $3, $4, 'provisioning', $1)
             ON CONFLICT (environment, name) DO NOTHING",
            &[&plan.name, &env, &customer, &plan.cluster],
        )
        .await
        .with_context(context)?;
    result.outcome = if inserted == 1 {
        "created"
    } else {
        "completed"
    };

    if !plan.role_exists {
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
    }
    result.secrets_file = Some(secrets_dir.join(format!("{env}.env")));
    fail::fail_point!("provision-after-role");
    act_as_owner(client, &plan.name)
        .await
        .with_context(context)?;
    // Creating the role cannot have created the database: the plan still holds.
    if !plan.database_exists {
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
    }
    fail::fail_point!("provision-after-database");
    restrict_connect(client, &plan.name)
        .await
        .with_context(context)?;
    catalog
        .client()
        .execute(
            "UPDATE catalog.databases SET state = 'ready', updated_at = now() WHERE environment = $1 AND name = $2",
            &[&env, &plan.name],
        )
        .await?;
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

/// CREATE DATABASE … OWNER x needs odoo-db's role to be able to act as x: a member of x
/// up to PostgreSQL 15; from 16 on, able to `SET ROLE x` (the SET option), and, to
/// connect to a database closed to PUBLIC and to grant as its owner, inheriting x's
/// privileges (the INHERIT option). PostgreSQL 16+ gives the creator of a role ADMIN
/// OPTION on it but neither SET nor INHERIT (unless `createrole_self_grant` says so),
/// so odoo-db grants itself exactly what is missing on the roles it holds ADMIN on.
///
/// Never on a role that would give odoo-db more than a customer's rights: a superuser,
/// a role with CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, or one that is or
/// belongs (directly or through other roles) to a built-in `pg_*` role is refused
/// (exit 2), naming it and why, even if the membership exists already: this is the last
/// line of defence of recreate, restore and adopt against an owner changed behind
/// odoo-db's back (`ALTER DATABASE … OWNER TO pg_execute_server_program`).
pub async fn act_as_owner(client: &Client, role: &str) -> Result<()> {
    plan_act_as_owner(client, role, false)
        .await?
        .apply(client)
        .await
}

/// What odoo-db's role must be granted before it can act as a role, decided without
/// changing anything (see [`act_as_owner`]); [`OwnerAccess::apply`] grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAccess {
    pub role: String,
    /// odoo-db's role (`current_user`).
    pub agent: String,
    /// The GRANT odoo-db runs itself; None when nothing is missing.
    pub grant: Option<String>,
    server_version_num: i32,
}

/// The attributes of a role or of one it belongs to that make it more than a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub superuser: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub replication: bool,
    pub bypassrls: bool,
    /// A built-in role (`pg_*`, or any role of the bootstrap catalog).
    pub builtin: bool,
}

/// Why odoo-db must never act as `role`, given the facts of `role` itself (first) and of
/// every role it belongs to, directly or not; None when it is a plain role.
pub fn refusal_reasons(role: &str, facts: &[RoleFacts]) -> Option<String> {
    let reasons: Vec<String> = facts
        .iter()
        .filter_map(|fact| {
            let attributes: Vec<&str> = [
                (fact.superuser, "SUPERUSER"),
                (fact.createrole, "CREATEROLE"),
                (fact.createdb, "CREATEDB"),
                (fact.replication, "REPLICATION"),
                (fact.bypassrls, "BYPASSRLS"),
            ]
            .into_iter()
            .filter_map(|(set, attribute)| set.then_some(attribute))
            .collect();
            let mut parts = Vec::new();
            if fact.builtin {
                parts.push("is a built-in role".to_string());
            }
            if !attributes.is_empty() {
                parts.push(format!("has {}", attributes.join(" and ")));
            }
            if parts.is_empty() {
                return None;
            }
            let parts = parts.join(" and ");
            Some(if fact.name == role {
                format!("role {role} {parts}")
            } else {
                format!("role {role} is a member of {} (directly or through other roles), which {parts}", fact.name)
            })
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// The role and every role it belongs to, directly or through others.
const ROLE_AND_ITS_GROUPS: &str = "
    WITH RECURSIVE up(oid) AS (
        SELECT oid FROM pg_roles WHERE rolname = $1
        UNION
        SELECT m.roleid FROM pg_auth_members m JOIN up ON m.member = up.oid
    )
    SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
           r.rolbypassrls, (r.oid < 16384 OR r.rolname LIKE 'pg\\_%') AS builtin
    FROM up JOIN pg_roles r ON r.oid = up.oid
    ORDER BY r.rolname = $1 DESC, r.rolname";

/// Decide, changing nothing, what odoo-db's role must be granted to act as `role`;
/// refused when it must never act as it, or when it cannot grant itself what it
/// needs (then the message holds the one GRANT a superuser runs). `need_admin`: the
/// role is not odoo-db's creation (adopt) and odoo-db must also be able to ALTER and
/// DROP it later, which PostgreSQL 16+ allows only with ADMIN OPTION.
pub async fn plan_act_as_owner(
    client: &Client,
    role: &str,
    need_admin: bool,
) -> Result<OwnerAccess> {
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('server_version_num')::int,
                    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                    (SELECT rolcreaterole FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .context("reading odoo-db's own role")?;
    let (agent, version, agent_super, agent_createrole): (String, i32, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let mut access = OwnerAccess {
        role: role.to_string(),
        agent: agent.clone(),
        grant: None,
        server_version_num: version,
    };
    if role == agent {
        return Ok(access);
    }
    let facts: Vec<RoleFacts> = client
        .query(ROLE_AND_ITS_GROUPS, &[&role])
        .await
        .with_context(|| format!("reading the attributes and memberships of role {role}"))?
        .iter()
        .map(|row| RoleFacts {
            name: row.get(0),
            superuser: row.get(1),
            createrole: row.get(2),
            createdb: row.get(3),
            replication: row.get(4),
            bypassrls: row.get(5),
            builtin: row.get(6),
        })
        .collect();
    if facts.first().is_none_or(|fact| fact.name != role) {
        return Err(Error::refused(format!(
            "role {role} does not exist on this server, so odoo-db cannot act as it"
        )));
    }
    if let Some(reasons) = refusal_reasons(role, &facts) {
        return Err(Error::refused(format!(
            "odoo-db's role {agent} refuses to act as role {role}: {reasons}. Acting as it would give odoo-db \
             (and whoever controls {role}) more than a customer's rights. A customer database must be owned \
             by its own plain LOGIN role: check who changed it (ALTER DATABASE … OWNER TO {role}) and put \
             the recorded owner back"
        )));
    }
    let (member, can_set, inherits, admin): (bool, bool, bool, bool) = if version >= 160000 {
        let row = client
            .query_one(
                "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER'),
                        pg_has_role(current_user, $1::text::name, 'SET'),
                        pg_has_role(current_user, $1::text::name, 'USAGE'),
                        pg_has_role(current_user, $1::text::name, 'MEMBER WITH ADMIN OPTION')",
                &[&role],
            )
            .await?;
        (row.get(0), row.get(1), row.get(2), row.get(3))
    } else {
        let row = client
            .query_one(
                "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER'),
                        pg_has_role(current_user, $1::text::name, 'MEMBER WITH ADMIN OPTION')",
                &[&role],
            )
            .await?;
        let member: bool = row.get(0);
        (member, member, member, row.get(1))
    };
    let quoted_role = quote_ident(role);
    let quoted_agent = quote_ident(&agent);
    let (missing, can_grant) = if version >= 160000 {
        let mut missing = Vec::new();
        if !can_set {
            missing.push("SET");
        }
        if !inherits {
            missing.push("INHERIT");
        }
        if need_admin && !admin && !agent_super {
            missing.push("ADMIN");
        }
        (missing, agent_super || admin)
    } else {
        let missing = if member {
            Vec::new()
        } else {
            vec!["membership"]
        };
        (missing, agent_super || agent_createrole || admin)
    };
    if missing.is_empty() {
        return Ok(access);
    }
    let needs_superuser = !can_grant || missing.contains(&"ADMIN");
    if needs_superuser {
        let statement = superuser_grant(role, &agent, version);
        return Err(Error::refused(format!(
            "odoo-db's role {agent} cannot act for role {role} (missing: {}) and cannot grant itself what it \
             needs, as it does not hold ADMIN OPTION on {role} (a role odoo-db did not create). A superuser \
             must run once: {statement}; then run the command again",
            missing.join(", ")
        )));
    }
    access.grant = Some(if version >= 160000 {
        format!("GRANT {quoted_role} TO {quoted_agent} WITH INHERIT TRUE, SET TRUE")
    } else {
        format!("GRANT {quoted_role} TO {quoted_agent}")
    });
    Ok(access)
}

/// The GRANT a superuser runs so that odoo-db's role can act as, alter and drop `role`.
pub fn superuser_grant(role: &str, agent: &str, server_version_num: i32) -> String {
    let base = format!("GRANT {} TO {}", quote_ident(role), quote_ident(agent));
    if server_version_num >= 160000 {
        format!("{base} WITH ADMIN OPTION, INHERIT TRUE, SET TRUE")
    } else {
        base
    }
}

impl OwnerAccess {
    /// Grant what [`plan_act_as_owner`] found missing, then check that it holds.
    pub async fn apply(&self, client: &Client) -> Result<()> {
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        match client.batch_execute(grant).await {
            Ok(()) => {}
            Err(error)
                if error.code()
                    == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                return Err(Error::refused(format!(
                    "odoo-db's role {agent} cannot act for role {role} ({}); a superuser must run once: {}; then run the command again",
                    crate::error::describe_pg_error(&error),
                    superuser_grant(&self.role, &self.agent, self.server_version_num),
                    agent = self.agent,
                    role = self.role,
                )));
            }
            Err(error) => {
                return Err(Error::from(error).context(format!(
                    "granting odoo-db's role the use of role {}",
                    self.role
                )))
            }
        }
        tracing::info!(
            "granted odoo-db's role {} the use of role {} ({grant})",
            self.agent,
            self.role
        );
        let check = if self.server_version_num >= 160000 {
            "SELECT pg_has_role(current_user, $1::text::name, 'SET') AND pg_has_role(current_user, $1::text::name, 'USAGE')"
        } else {
            "SELECT pg_has_role(current_user, $1::text::name, 'MEMBER')"
        };
        let holds: bool = client.query_one(check, &[&self.role]).await?.get(0);
        if !holds {
            return Err(Error::failed(format!(
                "after {grant}, odoo-db's role {} still cannot act as role {} (is {} NOINHERIT?)",
                self.agent, self.role, self.agent
            )));
        }
        Ok(())
    }
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
            .client()
            .execute(
                "SELECT pg_advisory_lock(hashtextextended('odoo-db provision ' || $1, 0))",
                &[&customer],
            )
            .await
            .map_err(Error::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(name: &str) -> RoleFacts {
        RoleFacts {
            name: name.to_string(),
            ..RoleFacts::default()
        }
    }

    #[test]
    fn only_plain_roles_may_be_acted_as() {
        assert_eq!(
            refusal_reasons("calm_owl_0001", &[plain("calm_owl_0001")]),
            None
        );
        assert_eq!(
            refusal_reasons(
                "calm_owl_0001",
                &[plain("calm_owl_0001"), plain("customers")]
            ),
            None
        );
        let creator = RoleFacts {
            createrole: true,
            ..plain("x")
        };
        assert_eq!(
            refusal_reasons("x", &[creator]).unwrap(),
            "role x has CREATEROLE"
        );
        for (fact, says) in [
            (
                RoleFacts {
                    superuser: true,
                    ..plain("x")
                },
                "has SUPERUSER",
            ),
            (
                RoleFacts {
                    createdb: true,
                    ..plain("x")
                },
                "has CREATEDB",
            ),
            (
                RoleFacts {
                    replication: true,
                    ..plain("x")
                },
                "has REPLICATION",
            ),
            (
                RoleFacts {
                    bypassrls: true,
                    ..plain("x")
                },
                "has BYPASSRLS",
            ),
            (
                RoleFacts {
                    builtin: true,
                    ..plain("x")
                },
                "is a built-in role",
            ),
        ] {
            let reasons = refusal_reasons("x", &[fact]).unwrap();
            assert!(reasons.contains(says), "{reasons}");
        }
        // Through nested membership: x ∈ group ∈ pg_read_server_files.
        let reasons = refusal_reasons(
            "x",
            &[
                plain("x"),
                plain("group"),
                RoleFacts {
                    builtin: true,
                    ..plain("pg_read_server_files")
                },
            ],
        )
        .unwrap();
        assert_eq!(
            reasons,
            "role x is a member of pg_read_server_files (directly or through other roles), which is a built-in role"
        );
    }

    #[test]
    fn the_superuser_grant_gives_admin_on_16_and_later() {
        assert_eq!(
            superuser_grant("calm_owl_0001", "odoo_db_admin", 150004),
            "GRANT \"calm_owl_0001\" TO \"odoo_db_admin\""
        );
        assert_eq!(
            superuser_grant("calm_owl_0001", "odoo_db_admin", 180000),
            "GRANT \"calm_owl_0001\" TO \"odoo_db_admin\" WITH ADMIN OPTION, INHERIT TRUE, SET TRUE"
        );
    }
}
