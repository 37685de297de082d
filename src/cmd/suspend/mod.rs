//! `odoo-db suspend`: a customer's role loses LOGIN, its database's CONNECT is revoked
//! from every grantee but odoo-db (PUBLIC and third grantees included), and every
//! session on it ends; what was there is recorded first, so [`resume`] puts back
//! exactly that. Suspend and resume are one command group on one engine: the
//! environments of a customer, each locked and checked before anything changes.
//!
//! The steps:
//! 1. check the customer's name, then the catalog (known, not retired, ready
//!    databases, no unfinished run) and each cluster's pinned identity;
//! 2. lock each database name (a concurrent recreate, restore, refresh or lifecycle
//!    command on it is refused) and plan each environment: the role's LOGIN, the
//!    database's ACL, the sessions, and whether odoo-db may act as the owner (on
//!    PostgreSQL 16+ ALTER ROLE needs ADMIN OPTION: refused with the one GRANT a
//!    superuser must run);
//! 3. print the plan; `--dry-run` stops here; production asks for confirmation;
//! 4. per environment: record what was found (once: a second suspend keeps the first
//!    record), then NOLOGIN, CONNECT revoked, sessions ended, and check the result.

pub(crate) mod resume;

use std::fmt::Write;

use serde_json::json;

use crate::catalog::{Catalog, NewSuspension, Suspension};
use crate::cli::{EnvSelection, SuspendArgs};
use crate::cmd::prompt;
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::dbprops::{self, DbProps};
use crate::pg::lifecycle::{self, Target};
use crate::pg::membership::{plan_act_as_owner, OwnerAccess};
use crate::pg::oplock::OpLock;
use crate::pg::quote::quote_ident;
use crate::servers::Servers;

/// One environment, planned: what the server has now and what the catalog recorded.
struct Plan {
    target: Target,
    can_login: bool,
    props: DbProps,
    /// The active suspension, when this environment is suspended already.
    recorded: Option<Suspension>,
    sessions: usize,
    access: OwnerAccess,
}

/// The customer's environments, locked and planned: the part suspend and resume share.
struct Job {
    servers: Servers,
    catalog: Catalog,
    plans: Vec<Plan>,
    _locks: Vec<OpLock>,
}

pub async fn run(config: &Config, args: &SuspendArgs) -> Result<String> {
    // Step 1 and 2.
    names::validate_customer(&args.customer)?;
    let job = Job::plan(config, &args.customer, args.env, "suspend").await?;
    for plan in &job.plans {
        lifecycle::refuse_foreign_grantors(&plan.props)?;
    }

    // Step 3.
    prompt::say(&describe_suspend(&args.customer, &job.plans));
    if args.dry_run {
        return Ok("dry run: nothing was changed\n".to_string());
    }
    if job
        .plans
        .iter()
        .any(|p| p.target.kind == ClusterKind::Production)
    {
        prompt::confirm_typed(&args.customer, "customer", args.yes, "suspend").await?;
    }

    // Step 4.
    let mut text = String::new();
    for plan in &job.plans {
        let line = suspend_environment(&job.catalog, plan).await?;
        writeln!(text, "{line}").ok();
    }
    job.servers.close().await;
    Ok(text)
}

impl Job {
    /// Steps 1 and 2 for `customer`'s environments `selection`; `what` names the command
    /// in the lock's messages.
    async fn plan(
        config: &Config,
        customer: &str,
        selection: EnvSelection,
        what: &str,
    ) -> Result<Job> {
        let servers = Servers::open(config).await?;
        let catalog = Catalog::open(&servers).await?;
        let base = lifecycle::customer_base_name(&catalog, customer).await?;
        // `--env all` (the default) means every environment the customer has.
        let all = selection == EnvSelection::All;
        let targets =
            lifecycle::targets(&servers, &catalog, &base, &selection.kinds(), all).await?;
        let locks = lifecycle::lock_each(&servers, &targets, what).await?;
        let mut plans = Vec::new();
        for target in targets {
            plans.push(plan_environment(&catalog, target).await?);
        }
        Ok(Job {
            servers,
            catalog,
            plans,
            _locks: locks,
        })
    }
}

/// What one environment has now, refused when odoo-db could not act on it.
async fn plan_environment(catalog: &Catalog, target: Target) -> Result<Plan> {
    let name = &target.name;
    let Some(can_login) = lifecycle::role_can_login(&target.client, name).await? else {
        return Err(Error::refused(format!(
            "role {name} does not exist on cluster {}: the catalog and the server disagree; nothing was changed",
            target.cluster
        )));
    };
    let Some(inspection) = dbprops::inspect(&target.client, name, target.version_num).await? else {
        return Err(Error::refused(format!(
            "database {name} does not exist on cluster {}: the catalog and the server disagree; nothing was changed",
            target.cluster
        )));
    };
    if inspection.props.owner != *name {
        return Err(Error::refused(format!(
            "database {name} on cluster {} is owned by {}, not by its role {name}; nothing was changed",
            target.cluster, inspection.props.owner
        )));
    }
    // ALTER ROLE on PostgreSQL 16+ needs ADMIN OPTION on the role: refused here, with
    // the GRANT a superuser must run, before anything changes.
    let access = plan_act_as_owner(&target.client, name, true).await?;
    let recorded = catalog.active_suspension(target.env(), name).await?;
    let sessions = lifecycle::sessions(&target.client, name, name).await?.len();
    Ok(Plan {
        target,
        can_login,
        props: inspection.props,
        recorded,
        sessions,
        access,
    })
}

fn describe_suspend(customer: &str, plans: &[Plan]) -> String {
    let mut text = format!("suspend customer {customer}:\n");
    for plan in plans {
        let holders: Vec<String> = lifecycle::connect_holders(&plan.props, &plan.target.agent)
            .iter()
            .map(lifecycle::grantee_name)
            .collect();
        let since = plan
            .recorded
            .as_ref()
            .map(|s| {
                format!(
                    " (suspended since {})",
                    s.suspended_at.format("%Y-%m-%d %H:%M UTC")
                )
            })
            .unwrap_or_default();
        writeln!(
            text,
            "  {env}: {name} on cluster {cluster}{since}: role {login}; CONNECT held by {holders}; {sessions} session(s)",
            env = plan.target.env(),
            name = plan.target.name,
            cluster = plan.target.cluster,
            login = if plan.can_login { "LOGIN" } else { "NOLOGIN" },
            holders = if holders.is_empty() { "nobody but odoo-db".to_string() } else { holders.join(", ") },
            sessions = plan.sessions,
        )
        .ok();
    }
    text
}

/// Step 4 for one environment: the record first (kept from a first suspend), then the
/// changes, then a check that nobody but odoo-db can connect.
async fn suspend_environment(catalog: &Catalog, plan: &Plan) -> Result<String> {
    let target = &plan.target;
    let name = &target.name;
    let context = || format!("suspending {name} on cluster {}", target.cluster);
    let props_json = serde_json::to_value(&plan.props).expect("properties serialize");
    let recorded_now = catalog
        .record_suspension(&NewSuspension {
            database: name,
            environment: target.env(),
            cluster: &target.cluster,
            rolcanlogin: plan.can_login,
            datacl: plan.props.acl_text.as_deref(),
            props: &props_json,
        })
        .await?;
    fail::fail_point!("suspend-after-record");
    plan.access
        .apply(&target.client)
        .await
        .with_context(context)?;
    let revoked: Vec<String> = lifecycle::connect_holders(&plan.props, &target.agent)
        .iter()
        .map(lifecycle::grantee_name)
        .collect();
    let mut statements = vec![format!("ALTER ROLE {} NOLOGIN", quote_ident(name))];
    statements.extend(lifecycle::suspend_acl_statements(
        &plan.props,
        &target.agent,
    ));
    target
        .client
        .batch_execute(&statements.join(";\n"))
        .await
        .with_context(context)?;
    fail::fail_point!("suspend-after-revoke");
    let ended = lifecycle::end_sessions(&target.client, name, name)
        .await
        .with_context(context)?;
    verify_suspended(target).await?;
    catalog
        .record_event(
            "suspend",
            Some(name),
            "suspended",
            if recorded_now { "done" } else { "again" },
            json!({ "cluster": target.cluster, "revoked": revoked, "sessions_ended": ended, "was_login": plan.can_login }),
        )
        .await?;
    Ok(match (&plan.recorded, recorded_now) {
        (Some(previous), false) => format!(
            "{}: {name} on cluster {}: already suspended since {}; checked again ({ended} session(s) ended)",
            target.env(),
            target.cluster,
            previous.suspended_at.format("%Y-%m-%d %H:%M UTC")
        ),
        _ => format!(
            "{}: {name} on cluster {}: suspended (NOLOGIN; CONNECT revoked from {}; {ended} session(s) ended)",
            target.env(),
            target.cluster,
            if revoked.is_empty() { "nobody".to_string() } else { revoked.join(", ") }
        ),
    })
}

/// After the changes: the role cannot log in and only odoo-db holds CONNECT.
async fn verify_suspended(target: &Target) -> Result<()> {
    let name = &target.name;
    let can_login = lifecycle::role_can_login(&target.client, name).await?;
    let props = dbprops::inspect(&target.client, name, target.version_num)
        .await?
        .map(|inspection| inspection.props);
    let holders: Vec<String> = props
        .as_ref()
        .map(|props| lifecycle::connect_holders(props, &target.agent))
        .unwrap_or_default()
        .iter()
        .map(lifecycle::grantee_name)
        .collect();
    if can_login == Some(true) || !holders.is_empty() {
        return Err(Error::failed(format!(
            "{name} on cluster {}: after the suspend the role can {}log in and CONNECT is still held by {:?}; run the command again",
            target.cluster,
            if can_login == Some(true) { "" } else { "not " },
            holders
        )));
    }
    Ok(())
}
