//! `odoo-db recreate NAME_integration`: drop an integration database and create it
//! again, empty, with every property it had; and the engine `odoo-db restore` shares.
//!
//! By hand this is `DROP DATABASE x; CREATE DATABASE x OWNER x`, which fails while Odoo
//! is connected, loses the ACL and settings, keeps no backup, and types as easily
//! against production. Here, in order:
//!
//! 0. gates, each a refusal (exit 2, nothing changed) naming its rule: the name ends in
//!    `_integration`; the catalog knows it as an integration database on the cluster of
//!    kind `integration`; that server is not in recovery and is the very server `init`
//!    pinned (its system identifier), not production's; then the lock ([`OpLock`]) that
//!    a second recreate or restore of the name cannot take ("in progress");
//! 1. inspect and print the plan ([`dbprops`]): every property, size, sessions; refuse if
//!    odoo-db's role could not put a property back; `--dry-run` stops here;
//! 2. confirm: the name typed on a TTY, or `--yes`;
//! 3. record the plan in the catalog, back up ([`backup`]: pg_dump -Fc, read back whole,
//!    retention) and record the backup's path;
//! 4. record that the point of no return is reached, block new connections, end the
//!    sessions, drop;
//! 5. create from template0 with every property, connections still closed; open them;
//! 6. record the end (who, when, backup, duration) and print a summary.
//!
//! Every step is recorded in `catalog.recreates` *before* the next one starts, so a run
//! killed anywhere is finished by running the same command again: from step 4 on, the
//! recorded plan is the only truth and nothing is ever dumped again (that would back
//! up the empty copy and could prune the real backup).
//!
//! This module is the command read as its steps; the engine it shares with `restore`
//! is in [`gates`] (step 0: the refusals and the lock), [`steps`] (what changes the
//! server: back up, block, drop, create, restore, open) and [`journal`] (what is
//! recorded in the catalog, and the summary of step 6).

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::cli::RecreateArgs;
use crate::cmd::prompt::{confirm, say};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::backup::{self, Tools};
use crate::pg::dbprops::{self, Inspection};
use crate::pg::oplock::OpLock;
use pgconn::ConnParams;

mod gates;
mod journal;
mod neutralize;
pub(crate) mod refresh;
pub(crate) mod restore;
mod source;
mod steps;

pub(crate) use journal::{resume_note, Kind, Record, RecordedBackup, Step};

/// One recreate or restore of one database, past its gates and holding the lock.
pub(crate) struct Job {
    pub name: String,
    pub cluster: String,
    kind: Kind,
    catalog: Catalog,
    /// odoo-db's admin session on the integration primary, in the maintenance database.
    server: Client,
    /// The integration primary (with the password), for pg_dump and pg_restore.
    params: ConnParams,
    version_num: i32,
    lock: OpLock,
    /// What the catalog holds of an earlier run that did not finish.
    pub unfinished: Option<Record>,
    /// The database as the gates found it (None: it does not exist).
    inspection: Option<Inspection>,
    run_id: Option<i64>,
    step: Step,
    started: Instant,
    started_at: DateTime<Utc>,
    /// The backup this run (or the run it finishes) wrote: path and size.
    backup: Option<(PathBuf, i64)>,
    restore_from: Option<PathBuf>,
    /// The owner the catalog recorded for the database (provision or adopt): the only
    /// role odoo-db makes itself a member of to act on it.
    recorded_owner: String,
    /// A refresh's restore and neutralization (None: a recreate or restore).
    refresh: Option<RefreshWork>,
}

/// What a refresh asks of the engine beyond a restore: a parallel restore of a copy
/// (no ACL), then the neutralization.
#[derive(Debug, Clone)]
pub(crate) struct RefreshWork {
    pub jobs: u32,
    /// False: `--no-neutralize` (a database that is not Odoo's).
    pub neutralize: bool,
    pub web_base_url: Option<String>,
}

const DRY_RUN: &str = "dry run: stopped after the plan; nothing was changed\n";

/// `odoo-db recreate`.
pub async fn run(config: &Config, args: &RecreateArgs) -> Result<String> {
    // Step 0: the gates and the lock; a refusal here has changed nothing.
    let mut job = Job::open(config, &args.name, Kind::Recreate).await?;
    // Absolute: the catalog records the backup's path for a restore run from anywhere.
    let backup_dir = std::path::absolute(
        args.backup_dir
            .as_ref()
            .unwrap_or(&config.recreate.backup_dir),
    )?;

    // A run killed past the point of no return is finished from its recorded plan:
    // what is left on the server (blocked, gone, or a new copy) is no plan, and must
    // never be dumped.
    if let Some(record) = job.resumable().cloned() {
        return finish_interrupted(&mut job, record, args).await;
    }

    // Step 1: inspect, print, check.
    let inspection = job.take_inspection().ok_or_else(|| {
        Error::refused(format!(
            "recreate of {name} refused: the catalog knows it but it does not exist on cluster {cluster}, \
             so there is nothing to back up or drop; put it back with `odoo-db restore {name}`; nothing was changed",
            name = job.name,
            cluster = job.cluster
        ))
    })?;
    tracing::debug!("{}: inspected", job.name);
    let props = inspection.props.clone();
    let mut plan = job.header("recreate", Some(&inspection));
    plan.push_str(&dbprops::describe(&props));
    plan.push_str(&dbprops::describe_live(&inspection));
    say(&plan);
    job.check(&props, Some(&inspection)).await?;
    if !args.no_backup && props.allow_connections {
        job.check_contents(&props).await?;
    }
    let tools = backup_tools(config, args, &job, &backup_dir, &inspection)?;
    say(&describe_steps(
        config,
        tools.as_ref(),
        &backup_dir,
        &inspection,
    ));
    if args.dry_run {
        return Ok(DRY_RUN.to_string());
    }

    // Step 2.
    tracing::debug!("{}: checked", job.name);
    confirm(&job.name, args.yes, "drop and recreate").await?;

    // Step 3.
    job.begin(&props, None).await?;
    if let Some(tools) = &tools {
        job.back_up(
            tools,
            &backup_dir,
            &config.recreate.compression,
            config.recreate.keep_backups,
        )
        .await?;
    }
    fail::fail_point!("recreate-after-backup");

    // Steps 4 and 5.
    let differences = job.replace(&props, Step::Blocking, None).await?;

    // Step 6.
    job.finish(differences).await
}

/// A run killed past the point of no return, finished from its recorded plan.
async fn finish_interrupted(job: &mut Job, record: Record, args: &RecreateArgs) -> Result<String> {
    let mut plan = job.header("finish recreating", None);
    plan.push_str(&resume_note(&record));
    plan.push_str(&dbprops::describe(&record.plan));
    plan.push_str(&format!(
        "steps: {}create it from template0 with the properties above, open it\n",
        if record.step <= Step::Blocking || record.kind == Kind::Restore {
            "block new connections, end sessions, drop what exists; "
        } else {
            ""
        }
    ));
    say(&plan);
    if args.dry_run {
        return Ok(DRY_RUN.to_string());
    }
    confirm(&job.name, args.yes, "finish recreating").await?;
    let record = job.take_over(None).await?;
    let from = if record.kind == Kind::Recreate {
        record.step
    } else {
        Step::Blocking
    };
    let differences = job.replace(&record.plan, from, None).await?;
    job.finish(differences).await
}

/// The client tools of the backup, checked against the server, the compression, the
/// backup directory and its free space; None with `--no-backup`.
fn backup_tools(
    config: &Config,
    args: &RecreateArgs,
    job: &Job,
    backup_dir: &Path,
    inspection: &Inspection,
) -> Result<Option<Tools>> {
    if args.no_backup {
        Ok(None)
    } else {
        let tools = backup::find_tools(job.server_major())?;
        backup::check_compression(&tools, &config.recreate.compression)?;
        backup::check_backup_dir(backup_dir)?;
        backup::check_space(backup_dir, inspection.size_bytes.max(0) as u64)?;
        Ok(Some(tools))
    }
}

/// The plan's steps line.
fn describe_steps(
    config: &Config,
    tools: Option<&Tools>,
    backup_dir: &Path,
    inspection: &Inspection,
) -> String {
    let mut steps = String::from("steps: ");
    match tools {
        Some(tools) => steps.push_str(&format!(
            "back up into {} (pg_dump {} -Fc --compress={}, read back whole, keep the newest {}); ",
            backup_dir.display(),
            tools.major,
            config.recreate.compression,
            config.recreate.keep_backups
        )),
        None => steps.push_str("NO backup (--no-backup); "),
    }
    steps.push_str(&format!(
        "block new connections; end {} session(s); drop; create from template0 with the properties above; open it\n",
        inspection.sessions.len()
    ));
    steps
}

impl Job {
    /// The major version of the server (pg_dump must be at least as new).
    pub(crate) fn server_major(&self) -> u32 {
        (self.version_num / 10000) as u32
    }

    /// An earlier run that passed the point of no return: it must be finished from its
    /// record, never planned again from what is left on the server.
    pub(crate) fn resumable(&self) -> Option<&Record> {
        self.unfinished
            .as_ref()
            .filter(|r| r.step >= Step::Blocking)
    }

    pub(crate) async fn inspect(&self) -> Result<Option<Inspection>> {
        dbprops::inspect(&self.server, &self.name, self.version_num).await
    }

    /// The database as it was when the lock was taken (None: it does not exist).
    pub(crate) fn take_inspection(&mut self) -> Option<Inspection> {
        self.inspection.take()
    }

    /// The plan's header line.
    pub(crate) fn header(&self, what: &str, inspection: Option<&Inspection>) -> String {
        format!(
            "plan: {what} {} on cluster {} ({}{})\n",
            self.name,
            self.cluster,
            self.params.label(),
            inspection
                .map(|i| format!(", PostgreSQL {}", i.server_version))
                .unwrap_or_default()
        )
    }

    /// The owner the catalog recorded for the database.
    pub(crate) fn recorded_owner(&self) -> &str {
        &self.recorded_owner
    }
}
