//! The journal of a recreate or restore: every step recorded in `catalog.recreates`
//! (through the catalog repository) before the next one starts, so a run killed
//! anywhere is finished by running the same command again from what was recorded.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::Job;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::pg::dbprops::DbProps;
use crate::pg::membership;
use crate::units::format_bytes;

/// Which job runs: all share the gates, the lock, and steps 4-6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Recreate,
    Restore,
    /// A neutralized copy of production: while one is unfinished, only a refresh may
    /// take the name (nothing else may back up or reopen an un-neutralized copy).
    Refresh,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Recreate => "recreate",
            Kind::Restore => "restore",
            Kind::Refresh => "refresh",
        }
    }

    /// `catalog.databases.state` while the job runs.
    pub(super) fn state(self) -> &'static str {
        match self {
            // catalog.databases knows no state of its own for a refresh: the
            // unfinished run's kind says it.
            Kind::Recreate | Kind::Refresh => "recreating",
            Kind::Restore => "restoring",
        }
    }

    fn parse(text: &str) -> Kind {
        match text {
            "restore" => Kind::Restore,
            "refresh" => Kind::Refresh,
            _ => Kind::Recreate,
        }
    }
}

/// The step a run last reached, as `catalog.recreates.step` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Planned,
    BackedUp,
    /// A refresh's dump of production is complete in the spool.
    Dumped,
    /// The point of no return: connections may be blocked, the database may be gone.
    Blocking,
    Dropped,
    Created,
    Restored,
    /// A refresh's neutralization committed: the copy may be opened.
    Neutralized,
    Done,
}

impl Step {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Step::Planned => "planned",
            Step::BackedUp => "backed_up",
            Step::Dumped => "dumped",
            Step::Blocking => "blocking",
            Step::Dropped => "dropped",
            Step::Created => "created",
            Step::Restored => "restored",
            Step::Neutralized => "neutralized",
            Step::Done => "done",
        }
    }

    fn parse(text: &str) -> Result<Step> {
        Ok(match text {
            "planned" => Step::Planned,
            "backed_up" => Step::BackedUp,
            "dumped" => Step::Dumped,
            "blocking" => Step::Blocking,
            "dropped" => Step::Dropped,
            "created" => Step::Created,
            "restored" => Step::Restored,
            "neutralized" => Step::Neutralized,
            "done" => Step::Done,
            other => {
                return Err(Error::failed(format!(
                    "the catalog holds an unknown step {other:?}"
                )))
            }
        })
    }
}

/// A backup as the catalog recorded it when it was written.
pub(crate) use crate::catalog::RecordedBackup;

/// An unfinished run as the catalog recorded it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub kind: Kind,
    pub step: Step,
    pub plan: DbProps,
    pub backup_path: Option<PathBuf>,
    pub backup_bytes: Option<i64>,
    pub restore_path: Option<PathBuf>,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub(super) id: i64,
}

impl Job {
    /// Step 3 begins: the plan goes into the catalog and the database shows as
    /// recreating/restoring. An earlier run that stopped before the point of no return
    /// changed nothing; it is marked superseded.
    pub(crate) async fn begin(
        &mut self,
        props: &DbProps,
        restore_path: Option<&Path>,
    ) -> Result<()> {
        let plan = serde_json::to_value(props).expect("properties serialize");
        let restore_text = restore_path.map(|p| p.to_string_lossy().into_owned());
        let kind = self.kind.as_str();
        if self.unfinished.is_some() {
            self.catalog.supersede_unfinished_run(&self.name).await?;
        }
        let detail = json!({ "plan": plan, "cluster": self.cluster, "restore_path": restore_text });
        // One statement, so the plan, the state and the event are recorded together.
        let state = self.kind.state();
        let record = self.catalog.begin_run(
            &self.name,
            &self.cluster,
            kind,
            &plan,
            restore_text.as_deref(),
            state,
            &detail,
        );
        // pg_dump reads the owner's tables, ALTER and DROP need the owner's rights, CREATE
        // … OWNER needs to act as it: membership first (provision grants it; an adopted
        // database may lack it). The gates proved it can be granted.
        let (recorded, member) =
            tokio::join!(record, membership::act_as_owner(&self.server, &props.owner));
        self.run_id = Some(recorded?);
        if let Err(error) = member {
            self.abandon(&error).await;
            return Err(error.context(format!("{}: nothing was dropped", self.name)));
        }
        self.restore_from = restore_path.map(Path::to_path_buf);
        Ok(())
    }

    /// Finish an earlier run from its record (possibly of the other kind: a recreate
    /// may finish a restore and vice versa, both end in a new database).
    pub(crate) async fn take_over(&mut self, restore_path: Option<&Path>) -> Result<Record> {
        let record = self
            .unfinished
            .clone()
            .expect("take_over is called on an unfinished run");
        membership::act_as_owner(&self.server, &record.plan.owner).await?;
        let restore_text = restore_path.map(|p| p.to_string_lossy().into_owned());
        self.catalog
            .take_over_run(
                record.id,
                self.kind.as_str(),
                restore_text.as_deref(),
                self.kind.state(),
                &json!({
                    "from_step": record.step.as_str(),
                    "from_kind": record.kind.as_str(),
                    "started_at": record.started_at,
                    "started_by": record.actor,
                }),
            )
            .await?;
        self.run_id = Some(record.id);
        self.step = record.step;
        self.started_at = record.started_at;
        self.backup = record
            .backup_path
            .clone()
            .map(|path| (path, record.backup_bytes.unwrap_or(0)));
        self.restore_from = restore_path
            .map(Path::to_path_buf)
            .or(record.restore_path.clone());
        Ok(record)
    }

    /// Record that a step is reached (and an event for it), in one statement.
    pub(super) async fn advance(&mut self, step: Step, detail: Value) -> Result<()> {
        self.record_step(step, detail).await?;
        self.step = step;
        Ok(())
    }

    pub(super) async fn record_step(&self, step: Step, detail: Value) -> Result<()> {
        let id = self.run_id.expect("a run is recorded before it advances");
        self.catalog.record_step(id, step.as_str(), &detail).await?;
        tracing::debug!("{}: step {} reached", self.name, step.as_str());
        Ok(())
    }

    /// A failure before the point of no return: nothing was dropped, the database is
    /// ready again as it was.
    pub(super) async fn abandon(&self, error: &Error) {
        let Some(id) = self.run_id else { return };
        let result = self
            .catalog
            .abandon_run(
                id,
                self.step.as_str(),
                &json!({ "error": error.to_string() }),
            )
            .await;
        if let Err(record_error) = result {
            tracing::warn!(
                "could not record the abandoned run in the catalog: {}",
                record_error
            );
        }
    }

    /// Step 6: record the end and say what was done.
    pub(crate) async fn finish(&mut self, differences: Vec<String>) -> Result<String> {
        let seconds = self.record_end(&differences).await?;
        Ok(self.summary(seconds, &differences))
    }

    /// The end recorded in the catalog (who, when, backup, duration, differences), in
    /// one statement; returns the run's duration in seconds.
    async fn record_end(&mut self, differences: &[String]) -> Result<f64> {
        let id = self.run_id.expect("recorded");
        let seconds = self.started.elapsed().as_secs_f64();
        let backup_path = self
            .backup
            .as_ref()
            .map(|(p, _)| p.to_string_lossy().into_owned());
        let backup_bytes = self.backup.as_ref().map(|(_, b)| *b);
        let detail = json!({
            "cluster": self.cluster,
            "actor": self.catalog.actor(),
            "started_at": self.started_at,
            "seconds": seconds,
            "backup_path": backup_path,
            "backup_bytes": backup_bytes,
            "restored_from": self
                .restore_from
                .as_ref()
                .filter(|_| self.kind == Kind::Restore)
                .map(|p| p.to_string_lossy()),
            "finished_interrupted": self.resumable().map(|r| json!({
                "kind": r.kind.as_str(),
                "step": r.step.as_str(),
                "started_at": r.started_at,
                "started_by": r.actor,
                "restore_path": r.restore_path.as_ref().map(|p| p.to_string_lossy()),
            })),
            "differences": differences,
        });
        self.catalog.finish_run(id, &detail).await?;
        self.step = Step::Done;
        Ok(seconds)
    }

    /// What was done, for stdout; each difference from the plan also as a warning.
    fn summary(&self, seconds: f64, differences: &[String]) -> String {
        let mut text = format!(
            "{} {} on cluster {} in {:.1} s\n",
            match self.kind {
                Kind::Recreate => "recreated",
                Kind::Restore => "restored",
                Kind::Refresh => "refreshed",
            },
            self.name,
            self.cluster,
            seconds
        );
        if let (Some(path), Kind::Restore) = (&self.restore_from, self.kind) {
            let size = std::fs::metadata(path)
                .map(|m| format_bytes(m.len()))
                .unwrap_or_default();
            text.push_str(&format!("  restored from {} ({size})\n", path.display()));
        }
        let resumed = self.resumable();
        match (&self.backup, self.kind) {
            (Some((path, bytes)), _) => text.push_str(&format!(
                "  backup       {} ({}, read back whole{})\n",
                path.display(),
                format_bytes((*bytes).max(0) as u64),
                if resumed.is_some() {
                    ", by the interrupted run"
                } else {
                    ""
                }
            )),
            (None, Kind::Recreate | Kind::Refresh) => match resumed {
                // What happened, not a flag nobody gave: a restore makes no backup.
                Some(record) if record.restore_path.is_some() => {
                    let path = record.restore_path.as_ref().expect("checked");
                    text.push_str(&format!(
                        "  backup       none: this finished an interrupted restore of {} (started {} by {}), \
                         which makes no backup; {} is now empty, and that backup is untouched: \
                         `odoo-db restore {} --backup {}` puts it back\n",
                        path.display(),
                        record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        record.actor,
                        self.name,
                        self.name,
                        path.display()
                    ))
                }
                Some(record) => text.push_str(&format!(
                    "  backup       none: this finished an interrupted {} (started {} by {}) that made none \
                     (--no-backup)\n",
                    record.kind.as_str(),
                    record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    record.actor
                )),
                None => text.push_str("  backup       none (--no-backup)\n"),
            },
            (None, Kind::Restore) => {}
        }
        for difference in differences {
            tracing::warn!(
                "{}: property differs after the {}: {difference}",
                self.name,
                self.kind.as_str()
            );
            text.push_str(&format!("  WARNING      {difference}\n"));
        }
        text
    }

    /// A plan a recreate recorded: for the run whose backup is `path`, else the newest.
    pub(crate) async fn recorded_plan(&self, path: Option<&Path>) -> Result<Option<DbProps>> {
        let path_text = path.map(|p| p.to_string_lossy().into_owned());
        let plan = self
            .catalog
            .recorded_plan(&self.name, path_text.as_deref())
            .await?;
        plan.map(|plan| {
            serde_json::from_value(plan).map_err(|error| {
                Error::failed(format!("the catalog holds an unreadable plan: {error}"))
            })
        })
        .transpose()
    }

    /// The backups of this database that the catalog recorded with their size and
    /// SHA-256 and that retention has not deleted, newest first.
    pub(crate) async fn recorded_backups(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .catalog
            .backups_of(&self.name)
            .await?
            .into_iter()
            .map(PathBuf::from)
            .collect())
    }

    /// What the catalog recorded of the backup file `path` when it was written.
    pub(crate) async fn recorded_backup(&self, path: &Path) -> Result<Option<RecordedBackup>> {
        let path_text = path.to_string_lossy().into_owned();
        self.catalog.backup_record(&path_text).await
    }

    /// Backup paths of this database that a recreate recorded before the catalog kept
    /// backups' digests (schema 3): nothing proves they are the files it wrote.
    pub(crate) async fn undigested_backups(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .catalog
            .undigested_backups_of(&self.name)
            .await?
            .into_iter()
            .map(PathBuf::from)
            .collect())
    }
}

pub(super) async fn load_unfinished(catalog: &Catalog, name: &str) -> Result<Option<Record>> {
    let Some(run) = catalog.unfinished_run(name).await? else {
        return Ok(None);
    };
    Ok(Some(Record {
        id: run.id,
        kind: Kind::parse(&run.kind),
        step: Step::parse(&run.step)?,
        plan: serde_json::from_value(run.plan).map_err(|error| {
            Error::failed(format!("the catalog holds an unreadable plan: {error}"))
        })?,
        backup_path: run.backup_path.map(PathBuf::from),
        backup_bytes: run.backup_bytes,
        restore_path: run.restore_path.map(PathBuf::from),
        actor: run.actor,
        started_at: run.started_at,
    }))
}

/// How an interrupted run will be finished, for the plan.
pub(crate) fn resume_note(record: &Record) -> String {
    format!(
        "an interrupted {} of this database (started {} by {}) stopped after step {}; it is finished \
         from the plan recorded then, and nothing is dumped again{}\n",
        record.kind.as_str(),
        record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        record.actor,
        record.step.as_str(),
        match (&record.backup_path, &record.restore_path) {
            (Some(p), _) => format!(" (its backup: {})", p.display()),
            (None, Some(p)) => format!(" (it was restoring {})", p.display()),
            (None, None) => String::new(),
        }
    )
}
