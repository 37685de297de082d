//! `odoo-db retire`: the end of a customer. Only for one suspended in every environment
//! for at least `[lifecycle] grace`; each database is archived (a final `pg_dump`
//! verified as recreate's, with its properties and the role's definition beside it, in
//! `[lifecycle] archive_dir`, never pruned by odoo-db), then dropped with its role, and
//! the names become tombstones that provision never gives again.
//!
//! The steps:
//! 1. check the customer's name, then the catalog and each cluster's pinned identity;
//!    lock each name (an unfinished recreate, restore or refresh of the integration
//!    database is refused);
//! 2. the gates, re-verified on the servers now, whatever the catalog says: suspended
//!    in every environment for the grace period (the refusal says when retire becomes
//!    possible), the role still NOLOGIN and still the database's owner, nobody but
//!    odoo-db holding CONNECT, no session, nothing of the role elsewhere in the
//!    cluster (`pg_shdepend`), and on
//!    PostgreSQL 16+ ADMIN OPTION on the role (refused with the GRANT a superuser must
//!    run); the archive directory private and the client tools there;
//! 3. print the plan; `--dry-run` stops here; confirmation: the customer's name typed
//!    on a TTY, else `--yes`;
//! 4. per environment, each step recorded in the catalog before the next (planned →
//!    archived → dropped → done): archive and verify, drop the database (sessions
//!    ended first), drop the role, tombstones. A run killed anywhere is finished by
//!    running it again: it never dumps again once the archive is recorded, and checks
//!    the archive's SHA-256 before it drops anything;
//! 5. the customer is recorded as retired: its name no longer restricts new names.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::catalog::{Catalog, Retirement};
use crate::cli::RetireArgs;
use crate::cmd::prompt;
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::backup::{self, Tools};
use crate::pg::dbprops;
use crate::pg::lifecycle::{self, Target};
use crate::pg::membership::{plan_act_as_owner, OwnerAccess};
use crate::pg::quote::quote_ident;
use crate::servers::Servers;
use crate::units::format_bytes;

/// One environment, past the gates.
struct Plan {
    target: Target,
    /// The step a killed run reached (None: not started).
    step: Option<String>,
    suspended_at: DateTime<Utc>,
    /// Present while the role exists.
    access: Option<OwnerAccess>,
    size_bytes: Option<i64>,
}

pub async fn run(config: &Config, args: &RetireArgs) -> Result<String> {
    // Step 1.
    names::validate_customer(&args.customer)?;
    let servers = Servers::open(config).await?;
    let catalog = Catalog::open(&servers).await?;
    if let Some(at) = catalog.customer_retired_at(&args.customer).await? {
        if catalog.customer_base_name(&args.customer).await?.is_some() {
            return Ok(format!(
                "customer {} was retired on {}; nothing to do (odoo-db list --all shows the archives)\n",
                args.customer,
                at.format("%Y-%m-%d %H:%M UTC")
            ));
        }
    }
    let base = lifecycle::customer_base_name(&catalog, &args.customer).await?;
    let kinds = [ClusterKind::Production, ClusterKind::Integration];
    let targets = lifecycle::targets(&servers, &catalog, &base, &kinds, true).await?;
    let _locks = lifecycle::lock_each(&servers, &targets, "retire").await?;

    // Step 2.
    let archive_dir = config.lifecycle.archive_dir.clone();
    backup::check_backup_dir(&archive_dir)?;
    let mut plans = Vec::new();
    for target in targets {
        plans.push(gates(&catalog, config, target).await?);
    }
    let tools = client_tools(&plans, config)?;
    let total: i64 = plans.iter().filter_map(|p| p.size_bytes).sum();
    backup::check_space(&archive_dir, total.max(0) as u64)?;

    // Step 3.
    prompt::say(&describe(&args.customer, &plans, &archive_dir));
    if args.dry_run {
        return Ok("dry run: nothing was changed\n".to_string());
    }
    prompt::confirm_typed(&args.customer, "customer", args.yes, "retire").await?;

    // Step 4.
    let mut text = String::new();
    for plan in &plans {
        let line = retire_environment(&catalog, config, &args.customer, plan, &tools).await?;
        writeln!(text, "{line}").ok();
    }

    // Step 5.
    catalog.mark_customer_retired(&args.customer).await?;
    catalog
        .record_event(
            "retire",
            None,
            "customer",
            "retired",
            json!({ "customer": args.customer, "names": plans.iter().map(|p| &p.target.name).collect::<Vec<_>>() }),
        )
        .await?;
    writeln!(
        text,
        "customer {} retired; its names are tombstones (odoo-db list --all)",
        args.customer
    )
    .ok();
    servers.close().await;
    Ok(text)
}

/// Step 2 for one environment: the suspension and its grace from the catalog, the
/// rest re-verified on the server (until the database is dropped).
async fn gates(catalog: &Catalog, config: &Config, target: Target) -> Result<Plan> {
    let name = target.name.clone();
    let env = target.env();
    let Some(suspension) = catalog.active_suspension(env, &name).await? else {
        return Err(Error::refused(format!(
            "{name} ({env}) is not suspended: retire only takes a customer suspended in every environment for [lifecycle] grace; \
             run `odoo-db suspend` first; nothing was changed"
        )));
    };
    let grace = chrono::Duration::from_std(config.lifecycle.grace)
        .map_err(|_| Error::refused("[lifecycle] grace is too long".to_string()))?;
    let possible_at = suspension.suspended_at + grace;
    if Utc::now() < possible_at {
        return Err(Error::refused(format!(
            "{name} ({env}) was suspended on {} and [lifecycle] grace is {}: retire becomes possible on {}; nothing was changed",
            suspension.suspended_at.format("%Y-%m-%d %H:%M:%S UTC"),
            grace_text(config.lifecycle.grace),
            possible_at.format("%Y-%m-%d %H:%M:%S UTC"),
        )));
    }
    let step = catalog.retirement_step(env, &name).await?;
    let database_gone = matches!(step.as_deref(), Some("dropped" | "done"));
    let can_login = lifecycle::role_can_login(&target.client, &name).await?;
    let mut plan = Plan {
        step,
        suspended_at: suspension.suspended_at,
        access: None,
        size_bytes: None,
        target,
    };
    if can_login == Some(true) {
        return Err(undone(&plan.target, "its role can log in again"));
    }
    if can_login.is_some() {
        plan.access = Some(plan_act_as_owner(&plan.target.client, &name, true).await?);
    }
    if !database_gone {
        verify_database(&mut plan).await?;
    }
    Ok(plan)
}

/// The grace as the config would spell it: `7d`, `36h`, `90min`, `5s`.
fn grace_text(grace: std::time::Duration) -> String {
    let secs = grace.as_secs();
    match secs {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}

/// The refusal of a customer whose suspension someone undid in part.
fn undone(target: &Target, what: &str) -> Error {
    Error::refused(format!(
        "{} ({}) on cluster {}: {what}, so it is no longer suspended as recorded: run `odoo-db suspend` again \
         (and wait for the grace period) before retiring; nothing was changed",
        target.name,
        target.env(),
        target.cluster
    ))
}

/// The database still closed to all but odoo-db, without sessions, and its role with
/// nothing elsewhere in the cluster.
async fn verify_database(plan: &mut Plan) -> Result<()> {
    let target = &plan.target;
    let name = &target.name;
    let Some(inspection) = dbprops::inspect(&target.client, name, target.version_num).await? else {
        return Err(Error::refused(format!(
            "database {name} does not exist on cluster {} although the catalog records it; nothing was changed",
            target.cluster
        )));
    };
    // Given to another role behind odoo-db's back: archiving and dropping it would end
    // that role's database, not this customer's.
    if inspection.props.owner != *name {
        return Err(undone(
            target,
            &format!("its database is now owned by {:?}", inspection.props.owner),
        ));
    }
    let holders: Vec<String> = lifecycle::connect_holders(&inspection.props, &target.agent)
        .iter()
        .map(lifecycle::grantee_name)
        .collect();
    if !holders.is_empty() {
        return Err(undone(
            target,
            &format!("CONNECT is held by {}", holders.join(", ")),
        ));
    }
    let sessions = lifecycle::sessions(&target.client, name, name).await?;
    if !sessions.is_empty() {
        let shown: Vec<String> = sessions.iter().map(ToString::to_string).collect();
        return Err(Error::refused(format!(
            "{name} on cluster {} has sessions: {}; a suspended customer has none, so find out who that is before retiring; nothing was changed",
            target.cluster,
            shown.join(", ")
        )));
    }
    let elsewhere = lifecycle::role_elsewhere(&target.client, name, name).await?;
    if !elsewhere.is_empty() {
        return Err(Error::refused(format!(
            "role {name} has objects or privileges elsewhere in cluster {} (pg_shdepend): {}; odoo-db cannot connect to other databases to move them: \
             a DBA must REASSIGN OWNED BY / DROP OWNED BY {name} there first; nothing was changed",
            target.cluster,
            elsewhere.join("; ")
        )));
    }
    plan.size_bytes = Some(inspection.size_bytes);
    Ok(())
}

/// pg_dump/pg_restore for the newest server that still needs an archive.
fn client_tools(plans: &[Plan], config: &Config) -> Result<Tools> {
    let major = plans
        .iter()
        .map(|p| (p.target.version_num / 10000) as u32)
        .max()
        .unwrap_or(0);
    let tools = backup::find_tools(major)?;
    backup::check_compression(&tools, &config.recreate.compression)?;
    Ok(tools)
}

fn describe(customer: &str, plans: &[Plan], archive_dir: &Path) -> String {
    let mut text = format!(
        "retire customer {customer}: final archives into {}, then drop each database and role:\n",
        archive_dir.display()
    );
    for plan in plans {
        writeln!(
            text,
            "  {}: {} on cluster {}: suspended since {}; {}{}",
            plan.target.env(),
            plan.target.name,
            plan.target.cluster,
            plan.suspended_at.format("%Y-%m-%d %H:%M UTC"),
            plan.size_bytes
                .map(|bytes| format!("{} to archive", format_bytes(bytes.max(0) as u64)))
                .unwrap_or_else(|| "database already dropped".to_string()),
            plan.step
                .as_deref()
                .map(|step| format!(" (an interrupted retire reached step {step})"))
                .unwrap_or_default(),
        )
        .ok();
    }
    text
}

/// Step 4 for one environment, from the step a killed run reached.
async fn retire_environment(
    catalog: &Catalog,
    config: &Config,
    customer: &str,
    plan: &Plan,
    tools: &Tools,
) -> Result<String> {
    let target = &plan.target;
    let mut record = catalog
        .begin_retirement(customer, target.env(), &target.name, &target.cluster)
        .await?;
    if record.step == "planned" {
        archive(catalog, config, plan, tools, &mut record).await?;
        fail::fail_point!("retire-after-archive");
    }
    if record.step == "archived" {
        verify_archive(&record).await?;
        drop_database(plan).await?;
        catalog.record_retirement_dropped(record.id).await?;
        record.step = "dropped".to_string();
        fail::fail_point!("retire-after-drop-database");
    }
    if record.step == "dropped" {
        drop_role(plan).await?;
        fail::fail_point!("retire-after-drop-role");
        catalog
            .finish_retirement(
                record.id,
                customer,
                target.env(),
                &target.name,
                &target.cluster,
                record.archive_path.as_deref(),
            )
            .await?;
        catalog
            .record_event(
                "retire",
                Some(&target.name),
                "dropped",
                "done",
                json!({ "cluster": target.cluster, "archive": record.archive_path }),
            )
            .await?;
    }
    Ok(format!(
        "{}: {} on cluster {}: archived to {} ({}, sha256 {}; beside it {} and {}), database and role dropped",
        target.env(),
        target.name,
        target.cluster,
        record.archive_path.as_deref().unwrap_or("?"),
        format_bytes(record.archive_bytes.unwrap_or(0).max(0) as u64),
        record.archive_sha256.as_deref().unwrap_or("?"),
        record.props_path.as_deref().unwrap_or("?"),
        record.role_path.as_deref().unwrap_or("?"),
    ))
}

/// The final dump, read back whole while it is written (as recreate's backup), the
/// database's properties and the role's definition beside it; all recorded.
async fn archive(
    catalog: &Catalog,
    config: &Config,
    plan: &Plan,
    tools: &Tools,
    record: &mut Retirement,
) -> Result<()> {
    let target = &plan.target;
    let name = &target.name;
    let dir = &config.lifecycle.archive_dir;
    let context = || format!("archiving {name} from cluster {}", target.cluster);
    if let Some(access) = &plan.access {
        access.apply(&target.client).await.with_context(context)?;
    }
    let inspection = dbprops::inspect(&target.client, name, target.version_num)
        .await?
        .ok_or_else(|| Error::failed(format!("database {name} disappeared before its archive")))?;
    let props = inspection.props;
    let role_sql = lifecycle::role_definition(&target.client, name).await?;
    let made = backup::dump(
        tools,
        &target.admin.with_dbname(name),
        dir,
        name,
        &config.recreate.compression,
        (target.version_num / 10000) as u32,
        inspection.size_bytes.max(0) as u64,
    )
    .await
    .with_context(context)?;
    let stem = made.path.with_extension("");
    let props_path = with_suffix(&stem, ".properties.json");
    let role_path = with_suffix(&stem, ".role.sql");
    let props_text = serde_json::to_string_pretty(&json!({
        "properties": props,
        "description": dbprops::describe(&props),
        "cluster": target.cluster,
        "environment": target.env(),
        "archive": made.path,
        "sha256": made.sha256,
        "bytes": made.bytes,
    }))
    .expect("properties serialize");
    for (path, text) in [(&props_path, props_text), (&role_path, role_sql)] {
        write_beside(path, text.as_bytes()).with_context(context)?;
    }
    catalog
        .record_retirement_files(
            record.id,
            &props_path.to_string_lossy(),
            &role_path.to_string_lossy(),
        )
        .await?;
    let path_text = made.path.to_string_lossy().into_owned();
    catalog
        .record_archive(record.id, &path_text, made.bytes as i64, &made.sha256)
        .await?;
    tracing::info!(
        "archived {name} into {} ({}) in {:.1} s",
        made.path.display(),
        format_bytes(made.bytes),
        made.duration.as_secs_f64()
    );
    record.step = "archived".to_string();
    record.props_path = Some(props_path.to_string_lossy().into_owned());
    record.role_path = Some(role_path.to_string_lossy().into_owned());
    record.archive_path = Some(path_text);
    record.archive_bytes = Some(made.bytes as i64);
    record.archive_sha256 = Some(made.sha256);
    Ok(())
}

fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut text = stem.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

/// A file beside the archive: 0600, `O_EXCL`, fsynced with its directory.
fn write_beside(path: &Path, bytes: &[u8]) -> Result<()> {
    safefs::write_new(path, bytes, 0o600).map_err(|error| {
        let cause = match error {
            safefs::WriteNewError::Create(e)
            | safefs::WriteNewError::Write(e)
            | safefs::WriteNewError::SyncDir(e) => e,
        };
        Error::failed(format!("writing {}: {cause}", path.display()))
    })
}

/// Before anything is dropped: the recorded archive is there and unchanged.
async fn verify_archive(record: &Retirement) -> Result<()> {
    let (Some(path), Some(sha256)) = (&record.archive_path, &record.archive_sha256) else {
        return Err(Error::failed(
            "the retirement is recorded as archived without an archive; nothing was dropped"
                .to_string(),
        ));
    };
    let (bytes, digest) = backup::digest_file(Path::new(path)).await?;
    if &digest != sha256 || Some(bytes as i64) != record.archive_bytes {
        return Err(Error::failed(format!(
            "the archive {path} differs from what was recorded when it was written (SHA-256 {sha256}); nothing was dropped: \
             put the original back, or find out what changed it"
        )));
    }
    Ok(())
}

/// DROP DATABASE, after ending any session that appeared (a drop interrupted earlier
/// may have left an invalid database: dropping it again needs no connection).
async fn drop_database(plan: &Plan) -> Result<()> {
    let target = &plan.target;
    let name = &target.name;
    let context = || format!("dropping database {name} on cluster {}", target.cluster);
    if let Some(access) = &plan.access {
        access.apply(&target.client).await.with_context(context)?;
    }
    lifecycle::end_sessions(&target.client, name, name)
        .await
        .with_context(context)?;
    target
        .client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))
        .await
        .with_context(context)?;
    Ok(())
}

async fn drop_role(plan: &Plan) -> Result<()> {
    let target = &plan.target;
    let name = &target.name;
    target
        .client
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(name)))
        .await
        .with_context(|| format!("dropping role {name} on cluster {}", target.cluster))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::grace_text;
    use std::time::Duration;

    #[test]
    fn the_grace_reads_as_configured() {
        assert_eq!(grace_text(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(grace_text(Duration::from_secs(36 * 3_600)), "36h");
        assert_eq!(grace_text(Duration::from_secs(90 * 60)), "90min");
        assert_eq!(grace_text(Duration::from_secs(6)), "6s");
    }
}
