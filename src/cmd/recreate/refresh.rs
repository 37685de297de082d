//! `odoo-db refresh NAME_integration`: replace an integration database with a copy of
//! its production twin, neutralized so that the copy can never act as production (no
//! mail sent, no scheduled job run, no payment taken), on recreate's engine.
//!
//! 0. recreate's gates and lock for the target, then the source's ([`Source`]): the
//!    production twin in the catalog and on the pinned production cluster, a fresh
//!    streaming standby of it (or `--source primary`), PostgreSQL no newer than
//!    integration's;
//! 1. the plan: source, sizes, standby conflict settings, what the dump would bring
//!    (event triggers, foreign servers and user mappings refused; publications and
//!    subscriptions left out; extensions odoo-db's role cannot create refused), the
//!    Odoo version, installed modules and the statements of their neutralization (an
//!    installed module Odoo neutralizes and odoo-db does not: refused; a database
//!    without `ir_module_module`: refused unless `--no-neutralize`), the buckets the
//!    attachments point at; `--dry-run` stops here;
//! 2. confirm (the name typed on a TTY, or `--yes`);
//! 3. record the run (kind `refresh`), its source, its spool and the integration
//!    role's login, then back up the integration database as recreate does;
//! 4. meanwhile (another server), dump production (directory format, `--jobs`) into
//!    the 0700 spool; record it;
//! 5. the window: the integration role NOLOGIN (its login was recorded in step 3),
//!    then recreate's drop and create with CONNECT for odoo-db alone, the restore
//!    (`--no-owner --no-acl`, every object the integration role's, logged in as a
//!    throwaway member of it, recorded when complete), the neutralization in one
//!    transaction (recorded after its commit), the recorded properties and ACL back,
//!    the database opened, and the role's login put back;
//! 6. delete the spool, record the end, summary.
//!
//! A run killed anywhere from step 5 on is finished by running `refresh` again, from
//! the step recorded (the restore again if it did not complete), and the copy is
//! never opened before its neutralization committed; recreate, restore and retire
//! refuse the name meanwhile (see the gates).

use std::path::{Path, PathBuf};

use serde_json::json;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::source::{refusal, Source};
use super::{resume_note, Job, Kind, Record, RefreshWork, Step};
use crate::catalog::RefreshRecord;
use crate::cli::RefreshArgs;
use crate::cmd::prompt::{confirm, say};
use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::odoo::{self, neutralize};
use crate::pg::backup::{self, Tools};
use crate::pg::dbprops::{self, DbProps, Inspection};
use crate::pg::quote::quote_ident;
use crate::units::format_bytes;

const DRY_RUN: &str = "dry run: stopped after the plan; nothing was changed\n";

/// What the plan found in the source database.
struct SourcePlan {
    /// Refused entries of the archive, left-out entries, extensions.
    refused: Vec<String>,
    left_out: Vec<String>,
    extensions: Vec<String>,
    /// None: `--no-neutralize`.
    neutralization: Option<(u32, neutralize::Plan)>,
    buckets: Vec<String>,
}

/// Where the run's files go.
struct Dirs {
    backup: PathBuf,
    spool: PathBuf,
}

/// `odoo-db refresh`.
pub async fn run(config: &Config, args: &RefreshArgs) -> Result<String> {
    // Step 0: the target's gates and the lock.
    let mut job = Job::open(config, &args.name, Kind::Refresh).await?;
    let tools = backup::find_tools(job.server_major())?;
    backup::check_restore_tools(&tools, job.server_major())?;
    let dirs = dirs(config, args, &job.name)?;
    job.refresh = Some(RefreshWork {
        jobs: args.jobs,
        neutralize: !args.no_neutralize,
        web_base_url: config.refresh.web_base_url.clone(),
    });
    if let Some(record) = job.resumable().cloned() {
        return finish_interrupted(config, &mut job, record, args, &tools).await;
    }

    // The source's gates, then step 1: the plan.
    let (source, client) = Source::open(config, &job, args.source).await?;
    let inspection = job.take_inspection().ok_or_else(|| {
        refusal(&job.name, format!(
            "the catalog knows it but it does not exist on cluster {}; put it back with `odoo-db restore {}` first",
            job.cluster, job.name
        ))
    })?;
    let found = plan_source(&job.name, &client, args, config).await?;
    drop(client);
    let props = inspection.props.clone();
    check_target(&job, args, &props, &inspection, &found).await?;
    check_dirs(&job, args, &dirs, &inspection, &source)?;
    say(&describe_plan(
        &job,
        args,
        &dirs,
        &source,
        &inspection,
        &found,
    ));
    if args.dry_run {
        return Ok(DRY_RUN.to_string());
    }

    // Step 2.
    confirm(
        &job.name,
        args.yes,
        "replace it with a neutralized copy of production",
    )
    .await?;

    // Steps 3 and 4.
    job.begin(&props, None).await?;
    let record = record_source(
        &mut job,
        &source,
        &dirs.spool,
        found.neutralization.is_some(),
    )
    .await?;
    // The backup (integration server) and the dump (production's standby) at once.
    let dump = dump_to_spool(&tools, &source, &dirs.spool, args.jobs, job.server_major());
    let (backed_up, dumped) = if args.no_backup {
        (Ok(()), dump.await)
    } else {
        let backup = job.back_up(
            &tools,
            &dirs.backup,
            &config.recreate.compression,
            config.recreate.keep_backups,
        );
        tokio::join!(backup, dump)
    };
    if let Err(error) = backed_up {
        // The run is abandoned (back_up says so); the dump is of no use.
        let _ = std::fs::remove_dir_all(&dirs.spool);
        return Err(error);
    }
    job.record_dump(dumped, &source, &dirs.spool).await?;

    // Steps 5 and 6.
    job.close_window(&props.owner).await?;
    let differences = job
        .replace(&props, Step::Blocking, Some((&tools, &dirs.spool)))
        .await?;
    job.finish_refresh(&props.owner, &record, &dirs.spool, differences)
        .await
}

/// The backup directory and the spool of this database (absolute: the catalog records
/// them for a rerun run from anywhere).
fn dirs(config: &Config, args: &RefreshArgs, name: &str) -> Result<Dirs> {
    let backup = std::path::absolute(
        args.backup_dir
            .as_ref()
            .unwrap_or(&config.recreate.backup_dir),
    )?;
    let spool_root =
        std::path::absolute(args.spool_dir.as_ref().unwrap_or(&config.refresh.spool_dir))?;
    Ok(Dirs {
        backup,
        spool: spool_root.join(format!("{name}.production")),
    })
}

/// Step 1 in the source database: what its dump would bring, its neutralization, the
/// buckets; refused when it brings what the copy must not get, or cannot be
/// neutralized.
async fn plan_source(
    name: &str,
    client: &Client,
    args: &RefreshArgs,
    config: &Config,
) -> Result<SourcePlan> {
    let mut found = SourcePlan {
        refused: Vec::new(),
        left_out: Vec::new(),
        extensions: Vec::new(),
        neutralization: None,
        buckets: Vec::new(),
    };
    for row in client
        .query(include_str!("../../../sql/odoo/archive_contents.sql"), &[])
        .await
        .context("reading what a dump of production would bring")?
    {
        let (what, entry): (String, String) = (row.get(0), row.get(1));
        match what.as_str() {
            "refuse" => found.refused.push(entry),
            "leave out" => found.left_out.push(entry),
            _ => found.extensions.push(entry),
        }
    }
    if !found.refused.is_empty() {
        return Err(refusal(name, format!(
            "production's dump would bring {} into the copy (an event trigger needs a superuser; a foreign \
             server or user mapping carries production's credentials); remove them from production or copy it by hand",
            found.refused.join(", ")
        )));
    }
    let facts = odoo::inspect(client).await?;
    found.buckets = match &facts {
        Some(_) => odoo::buckets(client).await?,
        None => Vec::new(),
    };
    found.neutralization = match (facts, args.no_neutralize) {
        (_, true) => None,
        (None, false) => {
            return Err(refusal(
                name,
                "production's database has no ir_module_module: it is no Odoo database, \
                 and odoo-db neutralizes only Odoo's; pass --no-neutralize to copy it as it is"
                    .to_string(),
            ))
        }
        (Some(facts), false) => Some((facts.major, planned_neutralization(name, &facts, config)?)),
    };
    Ok(found)
}

/// The neutralization of the source's modules; refused when one is neutralized by
/// Odoo but not known to odoo-db.
fn planned_neutralization(
    name: &str,
    facts: &odoo::OdooFacts,
    config: &Config,
) -> Result<neutralize::Plan> {
    let plan = neutralize::plan(
        facts.major,
        &facts.installed,
        config.refresh.web_base_url.as_deref(),
    )
    .map_err(|error| refusal(name, error.root_message().to_string()))?;
    if !plan.unknown_covered.is_empty() {
        return Err(refusal(name, format!(
            "production has installed modules that Odoo's own neutralization covers and odoo-db does not: {}; \
             a copy would keep their live credentials or endpoints. Neutralize by hand (odoo-bin neutralize) \
             after a manual copy, or uninstall them",
            plan.unknown_covered.join(", ")
        )));
    }
    Ok(plan)
}

/// The target's refusals that need the plan: recreate's, the throwaway role, the
/// extensions of the dump.
async fn check_target(
    job: &Job,
    args: &RefreshArgs,
    props: &DbProps,
    inspection: &Inspection,
    found: &SourcePlan,
) -> Result<()> {
    job.check(props, Some(inspection)).await?;
    job.check_step_role(&props.owner).await?;
    job.check_extensions(&found.extensions).await?;
    if !args.no_backup && props.allow_connections {
        job.check_contents(props).await?;
    }
    Ok(())
}

/// Refused unless the backup directory and the spool can take what goes there.
fn check_dirs(
    job: &Job,
    args: &RefreshArgs,
    dirs: &Dirs,
    inspection: &Inspection,
    source: &Source,
) -> Result<()> {
    if !args.no_backup {
        backup::check_backup_dir(&dirs.backup)?;
        backup::check_space(&dirs.backup, inspection.size_bytes.max(0) as u64)?;
    }
    let spool_root = dirs.spool.parent().expect("the spool is inside its root");
    safefs::check_private_dir_or_creatable(spool_root, "spool directory")
        .map_err(|error| refusal(&job.name, error.to_string()))?;
    // A compressed dump is smaller than the database; the database's size is the bound.
    backup::check_space(spool_root, source.size_bytes.max(0) as u64)
        .map_err(|error| refusal(&job.name, format!("spool: {}", error.root_message())))?;
    Ok(())
}

/// The plan printed before the question.
fn describe_plan(
    job: &Job,
    args: &RefreshArgs,
    dirs: &Dirs,
    source: &Source,
    inspection: &Inspection,
    found: &SourcePlan,
) -> String {
    let mut plan = job.header("refresh", Some(inspection));
    plan.push_str(&source.describe());
    plan.push_str(&describe_contents(found));
    plan.push_str(&describe_neutralization(found));
    plan.push_str(&describe_buckets(&found.buckets));
    plan.push_str("  properties (kept):\n");
    plan.push_str(&dbprops::describe(&inspection.props));
    plan.push_str(&dbprops::describe_live(inspection));
    plan.push_str(&format!(
        "steps: {}dump production into {} (pg_dump -Fd --jobs={}); make {} NOLOGIN; block new connections; \
         end {} session(s); drop; create from template0 with the properties above, CONNECT for odoo-db alone; \
         pg_restore --no-owner --no-acl --jobs={} as a throwaway member of {}; {}; put the properties and ACL \
         back; open it; put {}'s login back; delete the dump\n",
        if args.no_backup {
            "NO backup (--no-backup); ".to_string()
        } else {
            format!("back up into {}; ", dirs.backup.display())
        },
        dirs.spool.display(),
        args.jobs,
        inspection.props.owner,
        inspection.sessions.len(),
        args.jobs,
        inspection.props.owner,
        if found.neutralization.is_some() {
            "neutralize in one transaction, user triggers disabled"
        } else {
            "NO neutralization (--no-neutralize)"
        },
        inspection.props.owner,
    ));
    plan
}

fn describe_contents(found: &SourcePlan) -> String {
    let mut text = String::new();
    if !found.left_out.is_empty() {
        text.push_str(&format!(
            "  {:<22} {} (--no-publications --no-subscriptions)\n",
            "left out of the dump",
            found.left_out.join(", ")
        ));
    }
    if !found.extensions.is_empty() {
        text.push_str(&format!(
            "  {:<22} {}\n",
            "extensions",
            found.extensions.join(", ")
        ));
    }
    text
}

fn describe_neutralization(found: &SourcePlan) -> String {
    let Some((major, plan)) = &found.neutralization else {
        return format!(
            "  {:<22} NONE (--no-neutralize): the copy can act as production\n",
            "neutralization"
        );
    };
    let mut text = format!(
        "  {:<22} Odoo {major}, {} statements:\n",
        "neutralization",
        plan.statements.len()
    );
    for statement in &plan.statements {
        let first = statement.sql.lines().next().unwrap_or_default();
        text.push_str(&format!("    [{}] {first}\n", statement.module));
    }
    text.push_str(&format!(
        "  {:<22} {}\n",
        "modules not neutralized",
        if plan.other_modules.is_empty() {
            "(none)".to_string()
        } else {
            format!(
                "{} (nothing to neutralize as far as Odoo and odoo-db know)",
                plan.other_modules.join(", ")
            )
        }
    ));
    text
}

fn describe_buckets(buckets: &[String]) -> String {
    if buckets.is_empty() {
        return format!(
            "  {:<22} no attachment points at an object store\n",
            "buckets"
        );
    }
    format!(
        "  {:<22} attachments point at {}: the integration stack must use its own bucket, with no write access \
         to production's (refresh never touches a bucket)\n",
        "buckets",
        buckets.join(", ")
    )
}

/// Record the source, the spool and the integration role's login (as an earlier,
/// superseded refresh found it, if one left the role NOLOGIN).
async fn record_source(
    job: &mut Job,
    source: &Source,
    spool: &Path,
    neutralized: bool,
) -> Result<RefreshRecord> {
    let earlier = match &job.unfinished {
        Some(record) if record.kind == Kind::Refresh => {
            job.catalog.refresh_record(record.id).await?
        }
        _ => None,
    };
    let role_could_login = match earlier {
        Some(earlier) => earlier.role_could_login,
        None => job.role_can_login(&job.recorded_owner.clone()).await?,
    };
    let record = RefreshRecord {
        source_database: source.database.clone(),
        source_cluster: source.cluster.clone(),
        source_server: source.server.clone(),
        spool_path: spool.to_string_lossy().into_owned(),
        role_could_login,
        neutralized,
    };
    let id = job.run_id.expect("begun");
    let detail = json!({
        "source": record.source_database, "cluster": record.source_cluster, "server": record.source_server,
        "spool": record.spool_path, "role_could_login": role_could_login, "neutralized": neutralized,
    });
    if let Err(error) = job.catalog.record_refresh(id, &record, &detail).await {
        job.abandon(&error).await;
        return Err(error);
    }
    Ok(record)
}

/// A refresh killed past its point of no return, finished from its record.
async fn finish_interrupted(
    config: &Config,
    job: &mut Job,
    record: Record,
    args: &RefreshArgs,
    tools: &Tools,
) -> Result<String> {
    let refresh = job
        .catalog
        .refresh_record(record.id)
        .await?
        .ok_or_else(|| {
            Error::failed(format!(
                "the interrupted refresh of {} recorded no source",
                job.name
            ))
        })?;
    let spool = PathBuf::from(&refresh.spool_path);
    let mut plan = job.header("finish refreshing", None);
    plan.push_str(&resume_note(&record));
    plan.push_str(&dbprops::describe(&record.plan));
    plan.push_str(&format!(
        "steps: {}neutralize (unless done), put the properties and ACL back, open it, put {}'s login back\n",
        if record.step < Step::Restored {
            format!("drop what exists, create, restore {} again; ", spool.display())
        } else {
            String::new()
        },
        record.plan.owner
    ));
    say(&plan);
    if args.dry_run {
        return Ok(DRY_RUN.to_string());
    }
    confirm(&job.name, args.yes, "finish refreshing").await?;
    let record = job.take_over(None).await?;
    if let Some(work) = job.refresh.as_mut() {
        work.neutralize = refresh.neutralized;
    }
    if record.step < Step::Restored && !spool.join("toc.dat").is_file() {
        let (source, _) = Source::open(config, job, args.source).await?;
        job.dump_source(tools, &source, &spool).await?;
    }
    job.close_window(&record.plan.owner).await?;
    // A restore that did not complete is made again from an empty database.
    let from = match record.step {
        Step::Created => Step::Dropped,
        step => step,
    };
    let differences = job
        .replace(&record.plan, from, Some((tools, &spool)))
        .await?;
    job.finish_refresh(&record.plan.owner, &refresh, &spool, differences)
        .await
}

impl Job {
    /// Whether `role` may log in now.
    async fn role_can_login(&self, role: &str) -> Result<bool> {
        Ok(self
            .server
            .query_typed_one(
                "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[(&role, Type::TEXT)],
            )
            .await
            .with_context(|| format!("reading whether {role} may log in"))?
            .get(0))
    }

    /// Step 4: production's dump into the spool, recorded once complete. A failure
    /// abandons the run (nothing dropped).
    async fn dump_source(&mut self, tools: &Tools, source: &Source, spool: &Path) -> Result<()> {
        let jobs = self.refresh.as_ref().map_or(1, |w| w.jobs);
        let dumped = dump_to_spool(tools, source, spool, jobs, self.server_major()).await;
        self.record_dump(dumped, source, spool).await
    }

    /// The dump's outcome recorded: the step, or the run abandoned and the spool gone.
    async fn record_dump(
        &mut self,
        dumped: Result<(u64, f64)>,
        source: &Source,
        spool: &Path,
    ) -> Result<()> {
        let (bytes, seconds) = match dumped {
            Ok(done) => done,
            Err(error) => {
                let _ = std::fs::remove_dir_all(spool);
                if self.step < Step::Blocking {
                    self.abandon(&error).await;
                }
                return Err(explain_dump_failure(error, source, &self.name));
            }
        };
        fail::fail_point!("refresh-after-dump");
        if self.step < Step::Blocking {
            self.advance(
                Step::Dumped,
                json!({ "spool": spool.to_string_lossy(), "bytes": bytes, "seconds": seconds }),
            )
            .await?;
        }
        Ok(())
    }

    /// The window opens: the integration role may not log in (its login was recorded).
    async fn close_window(&self, owner: &str) -> Result<()> {
        self.lock.ensure_held("closing the window").await?;
        self.server
            .batch_execute(&format!("ALTER ROLE {} NOLOGIN", quote_ident(owner)))
            .await
            .with_context(|| format!("making {owner} NOLOGIN while the copy is not neutralized"))
    }

    /// Step 6: the role's login back as recorded, the spool deleted, the end recorded.
    async fn finish_refresh(
        &mut self,
        owner: &str,
        record: &RefreshRecord,
        spool: &Path,
        differences: Vec<String>,
    ) -> Result<String> {
        if record.role_could_login {
            self.server
                .batch_execute(&format!("ALTER ROLE {} LOGIN", quote_ident(owner)))
                .await
                .with_context(|| format!("putting {owner}'s login back"))?;
        }
        if spool.exists() {
            std::fs::remove_dir_all(spool)
                .with_context(|| format!("deleting the dump {}", spool.display()))?;
        }
        let mut summary = self.finish(differences).await?;
        summary.push_str(&format!(
            "  source       {} ({}, cluster {}){}\n",
            record.source_database,
            record.source_server,
            record.source_cluster,
            if record.neutralized {
                ", neutralized"
            } else {
                ", NOT neutralized (--no-neutralize)"
            }
        ));
        Ok(summary)
    }
}

/// Production's dump into the spool (a leftover of an earlier run goes first), checked
/// for what a copy must not get; returns its bytes and seconds. Needs nothing of the
/// job, so it runs alongside the integration database's backup.
async fn dump_to_spool(
    tools: &Tools,
    source: &Source,
    spool: &Path,
    jobs: u32,
    server_major: u32,
) -> Result<(u64, f64)> {
    let root = spool.parent().expect("the spool is inside its root");
    safefs::ensure_private_dir(root, "spool directory")?;
    if spool.exists() {
        std::fs::remove_dir_all(spool)
            .with_context(|| format!("removing the leftover dump {}", spool.display()))?;
    }
    tracing::info!(
        "dumping {} from the {} of cluster {} into {} (--jobs={jobs})",
        source.database,
        source.server,
        source.cluster,
        spool.display(),
    );
    let started = std::time::Instant::now();
    let expected = source.size_bytes.max(0) as u64;
    // A recovery conflict may end pg_dump's sessions without pg_dump seeing why (the
    // connection just closes): the standby's counters say it.
    let conflicts_before = match source.conflicts {
        Some(_) => recovery_conflicts(source).await,
        None => None,
    };
    let bytes =
        match backup::dump_directory(tools, &source.params, spool, jobs, server_major, expected)
            .await
        {
            Ok(bytes) => bytes,
            Err(error) => {
                let grown = match conflicts_before {
                    Some(before) => conflicts_since(source, &before).await,
                    None => None,
                };
                return Err(match grown {
                    Some(grown) if !grown.is_empty() => error.context(format!(
                        "{RECOVERY_CONFLICTS_DURING_THE_DUMP}: {}",
                        grown.join(", ")
                    )),
                    _ => error,
                });
            }
        };
    // Created on production between the plan and the dump: refused all the same.
    let foreign = backup::archive_foreign_entries(tools, spool).await?;
    if !foreign.is_empty() {
        return Err(Error::failed(format!(
            "production's dump brings what a copy must not get: {}; nothing was dropped",
            foreign.join("; ")
        )));
    }
    Ok((bytes, started.elapsed().as_secs_f64()))
}

/// How a failed dump's error says that the standby's conflict counters grew meanwhile.
const RECOVERY_CONFLICTS_DURING_THE_DUMP: &str =
    "queries cancelled by recovery conflicts on the standby during the dump";

/// `pg_stat_database_conflicts` of the source database: (reason, count) per reason;
/// None when it cannot be read (the explanation is best effort).
async fn recovery_conflicts(source: &Source) -> Option<Vec<(&'static str, i64)>> {
    let client = source
        .params
        .connect(&crate::servers::admin_session())
        .await
        .ok()?;
    let row = client
        .query_opt(
            "SELECT confl_tablespace, confl_lock, confl_snapshot, confl_bufferpin, confl_deadlock
               FROM pg_catalog.pg_stat_database_conflicts WHERE datname = $1",
            &[&source.database],
        )
        .await
        .ok()??;
    Some(
        ["tablespace", "lock", "snapshot", "bufferpin", "deadlock"]
            .into_iter()
            .enumerate()
            .map(|(i, reason)| (reason, row.get::<_, i64>(i)))
            .collect(),
    )
}

/// The conflicts counted since `before`. A cancelled session reports its conflict when
/// it ends, a moment after pg_dump gave up: asked again for up to a second.
async fn conflicts_since(source: &Source, before: &[(&'static str, i64)]) -> Option<Vec<String>> {
    let mut grown = None;
    for _ in 0..10 {
        grown = recovery_conflicts(source)
            .await
            .map(|after| conflicts_grown(before, &after));
        if grown.as_ref().is_some_and(|grown| !grown.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    grown
}

/// "lock 1, snapshot 2": the reasons whose count grew.
fn conflicts_grown(before: &[(&str, i64)], after: &[(&str, i64)]) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .filter(|((_, was), (_, is))| is > was)
        .map(|((reason, was), (_, is))| format!("{reason} {}", is - was))
        .collect()
}

/// A failed dump, with what the standby's settings say about a recovery conflict, or
/// what a worker's lock failure means.
fn explain_dump_failure(error: Error, source: &Source, name: &str) -> Error {
    let text = error.to_string();
    let conflict = text.contains("conflict with recovery")
        || text.contains(RECOVERY_CONFLICTS_DURING_THE_DUMP);
    // A parallel worker takes its table's lock with NOWAIT: an ACCESS EXCLUSIVE lock
    // asked for since the leader locked everything (on a standby: production's, being
    // replayed) makes it fail at once instead of waiting.
    let worker_locked_out = text.contains("could not obtain lock on relation");
    let facts = match (conflict, worker_locked_out, source.conflicts) {
        (true, _, Some((delay, feedback))) => format!(
            ": the standby cancelled it (recovery conflict; max_standby_streaming_delay = {delay} ms, \
             hot_standby_feedback = {}): a retry restarts the whole dump; raise the delay, turn \
             hot_standby_feedback on, or use --source primary",
            if feedback { "on" } else { "off" }
        ),
        (false, true, _) => format!(
            ": a table was locked ACCESS EXCLUSIVE during the dump (DDL, TRUNCATE or VACUUM FULL \
             on production{}), so a pg_dump worker could not lock it: a retry restarts the whole \
             dump; run it when production takes no such lock, or with --jobs 1, whose single \
             session waits for the lock instead",
            if source.conflicts.is_some() {
                ", which the standby replays"
            } else {
                ""
            }
        ),
        _ => String::new(),
    };
    error.context(format!(
        "the dump of production ({}) for {name} failed{facts}; nothing was dropped, {name} is as it was",
        format_bytes(source.size_bytes.max(0) as u64)
    ))
}

#[cfg(test)]
mod tests {
    use super::conflicts_grown;

    #[test]
    fn only_the_reasons_that_grew_are_named() {
        let before = [
            ("tablespace", 0),
            ("lock", 3),
            ("snapshot", 1),
            ("bufferpin", 0),
            ("deadlock", 0),
        ];
        let after = [
            ("tablespace", 0),
            ("lock", 4),
            ("snapshot", 3),
            ("bufferpin", 0),
            ("deadlock", 0),
        ];
        assert_eq!(conflicts_grown(&before, &after), ["lock 1", "snapshot 2"]);
        assert!(conflicts_grown(&before, &before).is_empty());
    }
}
