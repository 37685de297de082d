//! `odoo-db restore NAME_integration [--backup PATH]`: the way back from a recreate.
//!
//! It puts a backup (by default the newest of that name, from the backup directory
//! and the paths the catalog recorded) into a freshly created database with the
//! properties the recreate recorded alongside that backup, under the same gates,
//! confirmation and lock as recreate (the shared engine is [`crate::cmd::recreate`]).
//! The backup is checked before anything changes: it must be a readable archive of
//! this very database (restoring another customer's dump here would be a leak), read
//! back whole, and it must create no extension odoo-db's role cannot create. While
//! pg_restore runs, as the owner so every object ends up the customer's, and logged in
//! as a throwaway role that is a member of the owner only ([`crate::pg::steprole`]: the
//! customer's code that the restore runs never gets odoo-db's privileges), only odoo-db
//! may connect; the recorded settings and ACL come back afterwards, the settings after
//! the data so that none of them (a read-only default, a timeout) can stop the restore.
//! A restore that fails leaves the database empty and closed; running the same command
//! again restores into it again.
//!
//! Only a backup that odoo-db wrote is ever restored: its path, size and SHA-256 were
//! recorded in the catalog when it was written, and the file must still match them, in
//! a backup directory that no other user can write ([`authenticate`]). A file planted
//! under the right name, or one swapped after it was written, is refused before anything
//! changes; `--backup PATH` names a recorded backup, it does not vouch for a file.
//!
//! The current contents are replaced without a backup: restore is the way back to a
//! backup, and a fresh dump here would become "the newest backup" and shadow it.

use std::path::{Path, PathBuf};

use crate::cli::RestoreArgs;
use crate::cmd::prompt::{confirm, say};
use crate::cmd::recreate::{resume_note, Job, Kind, Record, RecordedBackup, Step};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::pg::backup::{self, Tools};
use crate::pg::dbprops::{self, DbProps, Inspection};
use crate::units::format_bytes;

const DRY_RUN: &str = "dry run: stopped after the plan; nothing was changed\n";

/// `odoo-db restore`.
pub async fn run(config: &Config, args: &RestoreArgs) -> Result<String> {
    let mut job = Job::open(config, &args.name, Kind::Restore).await?;
    let tools = backup::find_tools(job.server_major())?;
    backup::check_restore_tools(&tools, job.server_major())?;
    let resumable = job.resumable().cloned();

    let path = choose_backup(config, args, &job, resumable.as_ref()).await?;
    let recorded = check_backup(&job, &tools, &path, resumable.as_ref()).await?;
    let (props, source, live) = choose_properties(&mut job, &path, resumable.as_ref()).await?;

    say(&describe_plan(
        &job,
        &path,
        &recorded,
        resumable.as_ref(),
        &props,
        source,
        live.as_ref(),
    ));
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
        refusal(
            &job.name,
            format!(
                "the backup cannot be read back whole: {}",
                error.root_message()
            ),
        )
    })?;

    let from = record_start(&mut job, resumable.as_ref(), &props, &path).await?;
    let differences = job.replace(&props, from, Some((&tools, &path))).await?;
    job.finish(differences).await
}

/// A refusal of the restore: what rule, and that nothing was changed.
fn refusal(name: &str, rule: String) -> Error {
    Error::refused(format!(
        "restore of {name} refused: {rule}; nothing was changed"
    ))
}

/// Which backup: the one asked for, the one an interrupted restore was putting
/// back, or the newest of this database; refused unless it is a file.
async fn choose_backup(
    config: &Config,
    args: &RestoreArgs,
    job: &Job,
    resumable: Option<&Record>,
) -> Result<PathBuf> {
    let recorded_source = resumable
        .filter(|r| r.kind == Kind::Restore)
        .and_then(|r| r.restore_path.clone());
    let path = match (&args.backup, &recorded_source) {
        (Some(path), _) => std::path::absolute(path)?,
        (None, Some(recorded)) => recorded.clone(),
        (None, None) => match newest_backup(job).await? {
            Some(path) => path,
            None => {
                let undigested = job.undigested_backups().await?;
                let why = match undigested.iter().find(|p| p.is_file()) {
                    Some(old) => format!(
                        "; {} exists but was written before odoo-db recorded backups' SHA-256 \
                         ({})",
                        old.display(),
                        by_hand(job, old)
                    ),
                    None => format!(
                        "; files in {} that the catalog did not record are not taken: nothing proves \
                         odoo-db wrote them",
                        config.recreate.backup_dir.display()
                    ),
                };
                return Err(refusal(
                    &job.name,
                    format!(
                        "the catalog records no backup of {} that still exists{why}",
                        job.name
                    ),
                ));
            }
        },
    };
    if !path.is_file() {
        let way_out = match resumable {
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
        return Err(refusal(
            &job.name,
            format!(
                "backup {} does not exist or is not a file{way_out}",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// Refused unless the backup is one odoo-db wrote of this very database
/// ([`authenticate`]) and creates no extension odoo-db's role cannot create.
async fn check_backup(
    job: &Job,
    tools: &Tools,
    path: &Path,
    resumable: Option<&Record>,
) -> Result<RecordedBackup> {
    let recorded = authenticate(job, path).await.map_err(|error| {
        let hint = match (resumable, error.class()) {
            (Some(_), crate::error::Class::Refused) => format!(
                "; an interrupted run left {} blocked, dropped or half made: `odoo-db recreate {}` \
                 finishes it as an empty database",
                job.name, job.name
            ),
            _ => String::new(),
        };
        match error.class() {
            crate::error::Class::Refused => {
                refusal(&job.name, format!("{}{hint}", error.root_message()))
            }
            _ => error,
        }
    })?;
    let dumped = backup::archive_database(tools, path).await?;
    if dumped != job.name {
        return Err(refusal(
            &job.name,
            format!(
                "{} is a backup of database {dumped}, not of {}; a database only ever gets its own data back",
                path.display(),
                job.name
            ),
        ));
    }

    // What only a superuser could create makes the restore fail after the drop.
    let extensions = backup::archive_extensions(tools, path).await?;
    job.check_extensions(&extensions).await?;
    Ok(recorded)
}

/// Which properties: the interrupted run's plan, else the plan recorded with this
/// backup, else the database's own, else the newest recorded one; with where they come
/// from and the database as it is (None: it does not exist, or a run is resumed).
async fn choose_properties(
    job: &mut Job,
    path: &Path,
    resumable: Option<&Record>,
) -> Result<(DbProps, &'static str, Option<Inspection>)> {
    let live = if resumable.is_none() {
        job.take_inspection()
    } else {
        None
    };
    let (props, source) = if let Some(record) = resumable {
        (record.plan.clone(), "recorded by the interrupted run")
    } else if let Some(plan) = job.recorded_plan(Some(path)).await? {
        (plan, "recorded with this backup")
    } else if let Some(live) = &live {
        (live.props.clone(), "the database's current ones")
    } else if let Some(plan) = job.recorded_plan(None).await? {
        (plan, "the newest recorded plan")
    } else {
        return Err(refusal(
            &job.name,
            "the database does not exist and the catalog recorded no properties for it".to_string(),
        ));
    };
    Ok((props, source, live))
}

/// The plan printed before the question.
fn describe_plan(
    job: &Job,
    path: &Path,
    recorded: &RecordedBackup,
    resumable: Option<&Record>,
    props: &DbProps,
    source: &str,
    live: Option<&Inspection>,
) -> String {
    let mut plan = job.header("restore", live);
    plan.push_str(&format!(
        "  {:<22} {} ({}, SHA-256 {} as recorded when odoo-db wrote it)\n",
        "backup",
        path.display(),
        format_bytes(recorded.bytes.max(0) as u64),
        recorded.sha256
    ));
    if let Some(record) = resumable {
        plan.push_str(&resume_note(record));
    }
    plan.push_str(&format!("  properties ({source}):\n"));
    plan.push_str(&dbprops::describe(props));
    match live {
        Some(live) => {
            plan.push_str(&dbprops::describe_live(live));
            plan.push_str("steps: read the backup back whole; block new connections; end sessions; drop (its current contents are NOT backed up); ");
        }
        None if resumable.is_some() => plan.push_str("steps: drop what exists; "),
        None => plan
            .push_str("  (the database does not exist now)\nsteps: read the backup back whole; "),
    }
    plan.push_str("create from template0 with the properties above; pg_restore as the owner, logged in as a throwaway role that is a member of the owner only (only odoo-db may connect meanwhile); put the settings and the ACL back; open it\n");
    plan
}

/// Record the start in the catalog, or take an interrupted run over; returns the step
/// the job goes on from.
async fn record_start(
    job: &mut Job,
    resumable: Option<&Record>,
    props: &DbProps,
    path: &Path,
) -> Result<Step> {
    let from = match resumable {
        Some(record) => {
            // Only a restore of this very backup may skip ahead: past the data, or to
            // the data again when its new database exists (a restore is one
            // transaction: what failed or was killed left it empty, and what a
            // superuser added by hand to let it pass, an extension, stays); anything
            // else is made again from the drop.
            let same_source =
                record.kind == Kind::Restore && record.restore_path.as_deref() == Some(path);
            job.take_over(Some(path)).await?;
            match record.step {
                Step::Restored if same_source => Step::Restored,
                Step::Created if same_source && job.inspect().await?.is_some() => Step::Created,
                _ => Step::Blocking,
            }
        }
        None => {
            job.begin(props, Some(path)).await?;
            Step::Blocking
        }
    };
    Ok(from)
}

/// The newest backup of the database that the catalog recorded and that still exists,
/// wherever it was written (`--backup-dir`). A file in a backup directory that the
/// catalog did not record is never taken, whatever its name.
async fn newest_backup(job: &Job) -> Result<Option<PathBuf>> {
    Ok(job
        .recorded_backups()
        .await?
        .into_iter()
        .find(|path| std::fs::symlink_metadata(path).is_ok()))
}

/// Refused (the error's class) unless `path` is a backup odoo-db wrote of this very
/// database: a regular file (no symlink) of this user or root, in a backup directory no
/// other user can write, recorded in the catalog with the size and SHA-256 it still has.
async fn authenticate(job: &Job, path: &Path) -> Result<RecordedBackup> {
    let metadata = check_backup_file(path)?;
    let recorded = find_record(job, path).await?;
    if recorded.database != job.name {
        return Err(Error::refused(format!(
            "{} is a backup of database {} (as the catalog recorded it), not of {}; a database only ever \
             gets its own data back",
            path.display(),
            recorded.database,
            job.name
        )));
    }
    check_unchanged(path, &metadata, &recorded).await?;
    Ok(recorded)
}

/// Refused unless `path` is a regular file (no symlink) of this user or root, in a
/// backup directory no other user can write; returns its metadata.
fn check_backup_file(path: &Path) -> Result<std::fs::Metadata> {
    use std::os::unix::fs::MetadataExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    safefs::check_private_dir(dir, "backup directory")?;
    let metadata = std::fs::symlink_metadata(path)
        .map_err(|error| Error::refused(format!("backup {}: {error}", path.display())))?;
    if !metadata.file_type().is_file() {
        return Err(Error::refused(format!(
            "backup {} is not a regular file (a symbolic link or another kind of file); odoo-db \
             writes backups as plain files and restores nothing else",
            path.display()
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if metadata.uid() != me && metadata.uid() != 0 {
        return Err(Error::refused(format!(
            "backup {} belongs to uid {}, not to this user (uid {me}) or root: odoo-db did not write it",
            path.display(),
            metadata.uid()
        )));
    }
    Ok(metadata)
}

/// What the catalog recorded of `path` when odoo-db wrote it; refused if nothing.
async fn find_record(job: &Job, path: &Path) -> Result<RecordedBackup> {
    // As recorded (absolute), else the recorded path that names the same file through
    // symbolic links on the way (`--backup` given through another path).
    let mut recorded = job.recorded_backup(path).await?;
    if recorded.is_none() {
        if let Ok(real) = std::fs::canonicalize(path) {
            for candidate in job.recorded_backups().await? {
                if std::fs::canonicalize(&candidate).is_ok_and(|c| c == real) {
                    recorded = job.recorded_backup(&candidate).await?;
                    break;
                }
            }
        }
    }
    let Some(recorded) = recorded else {
        if job.undigested_backups().await?.iter().any(|p| p == path) {
            return Err(Error::refused(format!(
                "backup {} was written before odoo-db recorded backups' size and SHA-256 in the catalog \
                 (catalog schema 3), so nothing proves it is the file odoo-db wrote rather than one put \
                 in its place; odoo-db does not restore it, and --backup cannot vouch for it ({})",
                path.display(),
                by_hand(job, path)
            )));
        }
        return Err(Error::refused(format!(
            "{} is not a backup that odoo-db wrote: the catalog has no record of it (its path, size and \
             SHA-256 are recorded when odoo-db writes a backup), so it may have been planted; `odoo-db \
             restore {}` without --backup takes the newest recorded one",
            path.display(),
            job.name
        )));
    };
    Ok(recorded)
}

/// Refused unless the file still has the size and SHA-256 the catalog recorded.
async fn check_unchanged(
    path: &Path,
    metadata: &std::fs::Metadata,
    recorded: &RecordedBackup,
) -> Result<()> {
    let changed = |what: String| {
        Error::refused(format!(
            "backup {} is not the file odoo-db wrote: {what}; it was changed or replaced since, so it is \
             not restored. Look at who wrote it (it may be an attack); an older recorded backup can be \
             named with --backup PATH",
            path.display()
        ))
    };
    if metadata.len() != recorded.bytes as u64 {
        return Err(changed(format!(
            "it has {} bytes, the catalog recorded {}",
            metadata.len(),
            recorded.bytes
        )));
    }
    let (bytes, sha256) = backup::digest_file(path).await?;
    if bytes != recorded.bytes as u64 || sha256 != recorded.sha256 {
        return Err(changed(format!(
            "its SHA-256 is {sha256}, the catalog recorded {}",
            recorded.sha256
        )));
    }
    Ok(())
}

/// How a DBA restores by hand a backup that odoo-db will not vouch for.
fn by_hand(job: &Job, path: &Path) -> String {
    format!(
        "if you know it is genuine (yours or root's, mode 0600, `pg_restore --list` names database {name}), \
         put it back by hand into the (empty) database as a member of role {owner}: \
         pg_restore --no-owner --role={owner} --single-transaction --exit-on-error --dbname={name} {path}; \
         backups that odoo-db writes from now on are recorded and restored by it",
        name = job.name,
        owner = job.recorded_owner(),
        path = path.display()
    )
}
