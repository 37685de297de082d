//! `odoo-db resume`: undo a suspend exactly, on the suspend engine.
//!
//! The steps:
//! 1. the same checks and locks as suspend (see the parent module);
//! 2. per environment, the active suspension's record: none means not suspended
//!    (nothing to do);
//! 3. print the plan; `--dry-run` stops here;
//! 4. LOGIN as it was, the database's ACL put back item by item as recorded (every
//!    CONNECT grantee, PUBLIC and grant options included, and odoo-db's own CONNECT,
//!    which suspend added, gone again), then the suspension is closed in the catalog.
//!    A resume interrupted anywhere is finished by running it again.

use std::fmt::Write;

use serde_json::json;

use super::{Job, Plan};
use crate::catalog::{Catalog, Suspension};
use crate::cli::ResumeArgs;
use crate::cmd::prompt;
use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::dbprops::{self, DbProps};
use crate::pg::quote::quote_ident;

pub async fn run(config: &Config, args: &ResumeArgs) -> Result<String> {
    // Step 1.
    names::validate_customer(&args.customer)?;
    let job = Job::plan(config, &args.customer, args.env, "resume").await?;

    // Step 2: what each suspension recorded, read before anything changes.
    let mut work = Vec::new();
    for plan in &job.plans {
        let recorded = match &plan.recorded {
            Some(suspension) => Some((suspension, recorded_props(plan, suspension)?)),
            None => None,
        };
        work.push((plan, recorded));
    }

    // Step 3.
    prompt::say(&describe(&args.customer, &work));
    if args.dry_run {
        return Ok("dry run: nothing was changed\n".to_string());
    }

    // Step 4.
    let mut text = String::new();
    for (plan, recorded) in &work {
        let line = match recorded {
            None => format!(
                "{}: {} on cluster {}: not suspended, nothing to do",
                plan.target.env(),
                plan.target.name,
                plan.target.cluster
            ),
            Some((suspension, props)) => {
                resume_environment(&job.catalog, plan, suspension, props).await?
            }
        };
        writeln!(text, "{line}").ok();
    }
    job.servers.close().await;
    Ok(text)
}

/// The database's properties as suspend found them.
fn recorded_props(plan: &Plan, suspension: &Suspension) -> Result<DbProps> {
    let props: DbProps = serde_json::from_value(suspension.props.clone()).map_err(|error| {
        Error::failed(format!(
            "the suspension of {} recorded in the catalog cannot be read ({error}); nothing was changed",
            plan.target.name
        ))
    })?;
    if props.name != plan.target.name || props.owner != plan.props.owner {
        return Err(Error::refused(format!(
            "the suspension of {} recorded owner {} but the database is owned by {} now; nothing was changed",
            plan.target.name, props.owner, plan.props.owner
        )));
    }
    Ok(props)
}

fn describe(customer: &str, work: &[(&Plan, Option<(&Suspension, DbProps)>)]) -> String {
    let mut text = format!("resume customer {customer}:\n");
    for (plan, recorded) in work {
        let what = match recorded {
            None => "not suspended".to_string(),
            Some((suspension, _)) => format!(
                "suspended since {}; back to {} and ACL {}",
                suspension.suspended_at.format("%Y-%m-%d %H:%M UTC"),
                if suspension.rolcanlogin {
                    "LOGIN"
                } else {
                    "NOLOGIN"
                },
                suspension.datacl.as_deref().unwrap_or("(default)")
            ),
        };
        writeln!(
            text,
            "  {}: {} on cluster {}: {what}",
            plan.target.env(),
            plan.target.name,
            plan.target.cluster
        )
        .ok();
    }
    text
}

/// Step 4 for one environment, in one transaction on the server.
async fn resume_environment(
    catalog: &Catalog,
    plan: &Plan,
    suspension: &Suspension,
    recorded: &DbProps,
) -> Result<String> {
    let target = &plan.target;
    let name = &target.name;
    let context = || format!("resuming {name} on cluster {}", target.cluster);
    plan.access
        .apply(&target.client)
        .await
        .with_context(context)?;
    let mut statements = vec![format!(
        "ALTER ROLE {} {}",
        quote_ident(name),
        if suspension.rolcanlogin {
            "LOGIN"
        } else {
            "NOLOGIN"
        }
    )];
    statements.extend(dbprops::acl_statements(recorded, plan.props.acl.as_deref()));
    target
        .client
        .batch_execute(&format!("BEGIN;\n{};\nCOMMIT", statements.join(";\n")))
        .await
        .with_context(context)?;
    fail::fail_point!("resume-after-grants");
    catalog.end_suspension(suspension.id).await?;
    catalog
        .record_event(
            "resume",
            Some(name),
            "resumed",
            "done",
            json!({ "cluster": target.cluster, "login": suspension.rolcanlogin, "datacl": suspension.datacl }),
        )
        .await?;
    Ok(format!(
        "{}: {name} on cluster {}: resumed ({}; ACL {})",
        target.env(),
        target.cluster,
        if suspension.rolcanlogin {
            "LOGIN"
        } else {
            "NOLOGIN"
        },
        suspension.datacl.as_deref().unwrap_or("(default)")
    ))
}
