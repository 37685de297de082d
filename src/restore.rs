//! `odoo-db restore NAME_integration [--backup PATH]`: the way back from a recreate.
//!
//! It puts a backup (by default the newest of that name, from the backup directory
//! and the paths the catalog recorded) into a freshly created database with the
//! properties the recreate recorded alongside that backup, under the same gates,
//! confirmation and lock as recreate (the shared engine is [`crate::recreate`]).
//! The backup is checked before anything changes: it must be a readable archive of
//! this very database (restoring another customer's dump here would be a leak), read
//! back whole, and it must create no extension odoo-db's role cannot create. While
//! pg_restore runs, as the owner so every object ends up the customer's, and logged in
//! as a throwaway role that is a member of the owner only ([`crate::steprole`]: the
//! customer's code that the restore runs never gets odoo-db's privileges), only odoo-db
//! may connect; the recorded settings and ACL come back afterwards, the settings after
//! the data so that none of them (a read-only default, a timeout) can stop the restore.
//! A restore that fails leaves the database empty and closed; running the same command
//! again restores into it again.
//!
//! The current contents are replaced without a backup: restore is the way back to a
//! backup, and a fresh dump here would become "the newest backup" and shadow it.

use std::path::{Path, PathBuf};

use crate::backup;
use crate::cli::RestoreArgs;
use crate::config::Config;
use crate::dbprops;
use crate::error::{Error, Result};
use crate::recreate::{confirm, resume_note, say, Job, Kind, Step};
use crate::units::format_bytes;

const DRY_RUN: &str = "dry run: stopped after the plan; nothing was changed\n";

pub async fn run(config: &Config, args: &RestoreArgs) -> Result<String> {
    let mut job = Job::open(config, &args.name, Kind::Restore).await?;
    let refuse = |name: &str, rule: String| {
        Error::refused(format!(
            "restore of {name} refused: {rule}; nothing was changed"
        ))
    };
    let tools = backup::find_tools(job.server_major())?;
    backup::check_restore_tools(&tools, job.server_major())?;
    let resumable = job.resumable().cloned();
    let recorded_source = resumable
        .as_ref()
        .filter(|r| r.kind == Kind::Restore)
        .and_then(|r| r.restore_path.clone());

    // Which backup: the one asked for, the one an interrupted restore was putting
    // back, or the newest of this database.
    let path = match (&args.backup, &recorded_source) {
        (Some(path), _) => std::path::absolute(path)?,
        (None, Some(recorded)) => recorded.clone(),
        (None, None) => newest_backup(&job, &config.recreate.backup_dir)
            .await?
            .ok_or_else(|| {
                refuse(
                    &job.name,
                    format!(
                        "no backup of {} in {} nor recorded in the catalog; pass --backup PATH",
                        job.name,
                        config.recreate.backup_dir.display()
                    ),
                )
            })?,
    };
    if !path.is_file() {
        let way_out = match &resumable {
            Some(record) => format!(
                "; an interrupted {} left {} {}: pass --backup PATH with another backup of it, or run \
                 `odoo-db recreate {}` to finish it as an empty database",
                record.kind.as_str(),
                job.name,
                if record.step >= Step::Dropped { "dropped or half made" } else { "blocked" },
                job.name
            ),
            None => String::new(),
        };
        return Err(refuse(
            &job.name,
            format!(
                "backup {} does not exist or is not a file{way_out}",
                path.display()
            ),
        ));
    }
    let dumped = backup::archive_database(&tools, &path).await?;
    if dumped != job.name {
        return Err(refuse(
            &job.name,
            format!(
                "{} is a backup of database {dumped}, not of {}; a database only ever gets its own data back",
                path.display(),
                job.name
            ),
        ));
    }

    // What only a superuser could create makes the restore fail after the drop.
    let extensions = backup::archive_extensions(&tools, &path).await?;
    job.check_extensions(&extensions).await?;

    // Which properties: the interrupted run's plan, else the plan recorded with this
    // backup, else the database's own, else the newest recorded one.
    let live = if resumable.is_none() {
        job.take_inspection()
    } else {
        None
    };
    let (props, source) = if let Some(record) = &resumable {
        (record.plan.clone(), "recorded by the interrupted run")
    } else if let Some(plan) = job.recorded_plan(Some(&path)).await? {
        (plan, "recorded with this backup")
    } else if let Some(live) = &live {
        (live.props.clone(), "the database's current ones")
    } else if let Some(plan) = job.recorded_plan(None).await? {
        (plan, "the newest recorded plan")
    } else {
        return Err(refuse(
            &job.name,
            "the database does not exist and the catalog recorded no properties for it".to_string(),
        ));
    };

    let mut plan = job.header("restore", live.as_ref());
    plan.push_str(&format!(
        "  {:<22} {} ({})\n",
        "backup",
        path.display(),
        std::fs::metadata(&path)
            .map(|m| format_bytes(m.len()))
            .unwrap_or_default()
    ));
    if let Some(record) = &resumable {
        plan.push_str(&resume_note(record));
    }
    plan.push_str(&format!("  properties ({source}):\n"));
    plan.push_str(&dbprops::describe(&props));
    match &live {
        Some(live) => {
            plan.push_str(&dbprops::describe_live(live));
            plan.push_str("steps: read the backup back whole; block new connections; end sessions; drop (its current contents are NOT backed up); ");
        }
        None if resumable.is_some() => plan.push_str("steps: drop what exists; "),
        None => plan
            .push_str("  (the database does not exist now)\nsteps: read the backup back whole; "),
    }
    plan.push_str("create from template0 with the properties above; pg_restore as the owner, logged in as a throwaway role that is a member of the owner only (only odoo-db may connect meanwhile); put the settings and the ACL back; open it\n");
    say(&plan);
    if resumable.is_none() {
        job.check(&props, live.as_ref()).await?;
    }
    job.check_step_role(&props.owner).await?;
    if args.dry_run {
        return Ok(DRY_RUN.to_string());
    }
    confirm(&job.name, args.yes, "replace it with the backup").await?;
    // A backup that rotted since it was made must fail here, not after the drop.
    backup::verify(&tools, &path).await.map_err(|error| {
        refuse(
            &job.name,
            format!(
                "the backup cannot be read back whole: {}",
                error.root_message()
            ),
        )
    })?;

    let from = match &resumable {
        Some(record) => {
            // Only a restore of this very backup may skip ahead: past the data, or to
            // the data again when its new database exists (a restore is one
            // transaction: what failed or was killed left it empty, and what a
            // superuser added by hand to let it pass, an extension, stays); anything
            // else is made again from the drop.
            let same_source = record.kind == Kind::Restore
                && record.restore_path.as_deref() == Some(path.as_path());
            job.take_over(Some(&path)).await?;
            match record.step {
                Step::Restored if same_source => Step::Restored,
                Step::Created if same_source && job.inspect().await?.is_some() => Step::Created,
                _ => Step::Blocking,
            }
        }
        None => {
            job.begin(&props, Some(&path)).await?;
            Step::Blocking
        }
    };
    let differences = job.replace(&props, from, Some((&tools, &path))).await?;
    job.finish(differences).await
}

/// The newest backup of the database: in the backup directory, or wherever a recreate
/// recorded one (`--backup-dir`).
async fn newest_backup(job: &Job, dir: &Path) -> Result<Option<PathBuf>> {
    let mut found = backup::backups_of(dir, &job.name)?;
    for path in job.recorded_backups().await? {
        let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if let (Some(at), true) = (backup::timestamp_of(&job.name, &file_name), path.is_file()) {
            found.push((at, path));
        }
    }
    found.sort();
    Ok(found.pop().map(|(_, path)| path))
}
