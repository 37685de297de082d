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

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::catalog::{Catalog, PinnedCluster};
use crate::cli::RecreateArgs;
use crate::cmd::prompt::{confirm, say};
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::backup::{self, Tools};
use crate::pg::dbprops::{self, DbProps, Inspection};
use crate::pg::membership;
use crate::pg::oplock::{LockSession, OpLock};
use crate::pg::quote::quote_ident;
use crate::pg::steprole::{self, StepRole};
use crate::servers::{self, Servers};
use crate::units::format_bytes;
use pgconn::ConnParams;

pub(crate) mod restore;

/// Which job runs: both share the gates, the lock, and steps 4-6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Recreate,
    Restore,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Recreate => "recreate",
            Kind::Restore => "restore",
        }
    }

    /// `catalog.databases.state` while the job runs.
    fn state(self) -> &'static str {
        match self {
            Kind::Recreate => "recreating",
            Kind::Restore => "restoring",
        }
    }

    fn parse(text: &str) -> Kind {
        if text == "restore" {
            Kind::Restore
        } else {
            Kind::Recreate
        }
    }
}

/// The step a run last reached, as `catalog.recreates.step` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    Planned,
    BackedUp,
    /// The point of no return: connections may be blocked, the database may be gone.
    Blocking,
    Dropped,
    Created,
    Restored,
    Done,
}

impl Step {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Step::Planned => "planned",
            Step::BackedUp => "backed_up",
            Step::Blocking => "blocking",
            Step::Dropped => "dropped",
            Step::Created => "created",
            Step::Restored => "restored",
            Step::Done => "done",
        }
    }

    fn parse(text: &str) -> Result<Step> {
        Ok(match text {
            "planned" => Step::Planned,
            "backed_up" => Step::BackedUp,
            "blocking" => Step::Blocking,
            "dropped" => Step::Dropped,
            "created" => Step::Created,
            "restored" => Step::Restored,
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

/// A database found under the name by a resumed run, before it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropState {
    /// Valid and accepting connections: the interrupted run never began to drop it.
    Open,
    /// Valid, connections blocked: blocked by the interrupted run (which may have been
    /// dropping it, on minors that do not mark an interrupted drop invalid).
    Closed,
    /// `datconnlimit = -2`: an interrupted DROP DATABASE; it can only be dropped.
    Invalid,
}

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
    id: i64,
}

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
}

const DRY_RUN: &str = "dry run: stopped after the plan; nothing was changed\n";

/// Refused before any connection: only `<valid base>_integration` can be dropped.
fn check_name(name: &str, catalog_db: &str, kind: Kind) -> Result<()> {
    let Some(base) = names::base_of_integration(name) else {
        return Err(Error::refused(format!(
            "{} refused: {name:?} does not end in \"_integration\"; odoo-db drops only integration \
             databases, and production databases can never be dropped by it, whatever the flags; \
             nothing was changed",
            kind.as_str()
        )));
    };
    names::validate_base_name(base, catalog_db).map_err(|error| {
        Error::refused(format!(
            "{} refused: {name:?} is not a valid integration database name: {}; nothing was changed",
            kind.as_str(),
            error.root_message()
        ))
    })
}

/// Why an owner other than the recorded one is refused, and what to do.
fn owner_changed(name: &str, found: &str, recorded: &str) -> String {
    format!(
        "{found}, but the catalog recorded owner {recorded:?} (DB_USER = DB_NAME); odoo-db acts on a \
         database by making its own role a member of the owner, and will not take on the privileges of \
         a role it did not record, so no GRANT was made. A DBA must find out who changed it, and set it \
         back (as a superuser: ALTER DATABASE {db} OWNER TO {owner}) before running the command again",
        db = quote_ident(name),
        owner = quote_ident(recorded)
    )
}

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
        return job.finish(differences).await;
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
    let tools = if args.no_backup {
        None
    } else {
        let tools = backup::find_tools(job.server_major())?;
        backup::check_compression(&tools, &config.recreate.compression)?;
        backup::check_backup_dir(&backup_dir)?;
        backup::check_space(&backup_dir, inspection.size_bytes.max(0) as u64)?;
        Some(tools)
    };
    let mut steps = String::from("steps: ");
    match &tools {
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
    say(&steps);
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

impl Job {
    /// Step 0: the gates and the lock. Every refusal here has changed nothing; an
    /// unreachable catalog fails (exit 1) before anything is touched.
    pub(crate) async fn open(config: &Config, name: &str, kind: Kind) -> Result<Job> {
        let started = Instant::now();
        let started_at = Utc::now();
        let refuse = |rule: String| {
            Error::refused(format!(
                "{} of {name} refused: {rule}; nothing was changed",
                kind.as_str()
            ))
        };
        check_name(name, &config.catalog.database, kind)?;
        let servers = Servers::open(config).await?;
        let (cluster, _) = servers.cluster_of_kind(ClusterKind::Integration)?;
        let cluster = cluster.to_string();
        let params = servers.primary(&cluster)?;
        // All three connections at once: each costs a TCP and SCRAM round trip or two.
        let (catalog, server, lock_session) = tokio::try_join!(
            Catalog::open(&servers),
            servers.connect_primary(&cluster),
            LockSession::connect(&servers)
        )?;

        let (rows, pinned) =
            tokio::try_join!(catalog.databases_named(name), catalog.pinned_clusters())?;
        if rows.is_empty() {
            return Err(refuse(format!(
                "{name} is unknown to the catalog; odoo-db recreates only databases it provisioned \
                 or adopted (see `odoo-db list`)"
            )));
        }
        for row in &rows {
            let environment = row.environment.clone();
            let row_cluster = row.cluster.clone();
            let state = row.state.clone();
            if environment != ClusterKind::Integration.as_str() {
                return Err(refuse(format!(
                    "the catalog knows {name} as a {environment} database; production databases can \
                     never be dropped by odoo-db, whatever the flags"
                )));
            }
            let configured_kind = config.clusters.get(&row_cluster).map(|c| c.kind);
            if row_cluster != cluster || configured_kind != Some(ClusterKind::Integration) {
                return Err(refuse(format!(
                    "{name} lives on cluster {row_cluster}, whose kind in the config is {}; only \
                     databases on the cluster of kind integration ({cluster}) can be dropped",
                    configured_kind
                        .map(|k| k.as_str())
                        .unwrap_or("(not configured)")
                )));
            }
            if state == "provisioning" {
                return Err(refuse(
                    "its provision is unfinished; complete it first (run the same `odoo-db provision` again)".to_string(),
                ));
            }
        }
        match pinned.iter().find(|pinned| pinned.name == cluster) {
            None => {
                return Err(refuse(format!(
                "cluster {cluster} has no pinned identity in the catalog: run `odoo-db init` first"
            )))
            }
            Some(PinnedCluster {
                kind: pinned_kind, ..
            }) if pinned_kind != ClusterKind::Integration.as_str() => {
                return Err(refuse(format!(
                "init pinned cluster {cluster} as kind {pinned_kind}, not integration; a cluster \
                     does not change kind: fix the config"
            )))
            }
            _ => {}
        }

        // The server itself: one round trip for all three questions.
        let (recovery, identifier, version_num) = tokio::try_join!(
            servers::in_recovery(&server),
            servers::system_identifier(&server),
            dbprops::server_version_num(&server)
        )?;
        let label = params.label();
        if recovery {
            return Err(refuse(format!(
                "the server of cluster {cluster} ({label}) is in recovery (a standby): nothing can be \
                 dropped or created there; point clusters.{cluster}.primary at the primary"
            )));
        }
        let identifier_text = identifier.to_string();
        if let Some(PinnedCluster {
            name: production, ..
        }) = pinned.iter().find(|pinned| {
            pinned.kind == ClusterKind::Production.as_str()
                && pinned.system_identifier == identifier_text
        }) {
            return Err(refuse(format!(
                "the server configured as cluster {cluster} ({label}) is the server init pinned for \
                 production cluster {production} (system identifier {identifier}); production databases \
                 can never be dropped by odoo-db: fix clusters.{cluster}.primary in {}",
                config.path.display()
            )));
        }
        if let Some(PinnedCluster {
            system_identifier: pinned_id,
            ..
        }) = pinned
            .iter()
            .find(|pinned| pinned.name == cluster && pinned.system_identifier != identifier_text)
        {
            return Err(refuse(format!(
                "the server configured as cluster {cluster} ({label}) has system identifier {identifier}, \
                 but init pinned {pinned_id} for this cluster: the config now points at another server. \
                 Fix clusters.{cluster}.primary (or, if the cluster was really rebuilt, delete its row \
                 from catalog.clusters and run `odoo-db init`)"
            )));
        }

        tracing::debug!("{name}: gates passed");
        let lock = lock_session.acquire(name, kind.as_str()).await?;
        fail::fail_point!("recreate-after-lock");
        // The database's state now, fetched alongside the catalog's record: a fresh
        // run needs it, a resumed one ignores it.
        let (unfinished, inspection) = tokio::try_join!(
            load_unfinished(&catalog, name),
            dbprops::inspect(&server, name, version_num)
        )?;
        // The owner gate. odoo-db makes its own role a member of the database's owner to
        // act on it (pg_dump, DROP, CREATE … OWNER); an owner changed behind its back
        // (ALTER DATABASE … OWNER TO pg_execute_server_program, or any role) would hand
        // it that role's privileges. Only the owner the catalog recorded is acted for.
        let recorded_owner: String = rows
            .iter()
            .find(|row| row.environment == ClusterKind::Integration.as_str())
            .map(|row| row.owner.clone())
            .expect("checked above: every row is the integration one");
        if let Some(live) = &inspection {
            if live.props.owner != recorded_owner {
                return Err(refuse(owner_changed(
                    name,
                    &format!("its owner on the server is now {:?}", live.props.owner),
                    &recorded_owner,
                )));
            }
        }
        // A run past the point of no return is finished from its plan, owner included
        // (an earlier one is superseded, its plan unused).
        if let Some(record) = unfinished.as_ref().filter(|r| r.step >= Step::Blocking) {
            if record.plan.owner != recorded_owner {
                return Err(refuse(format!(
                    "the interrupted {} (stopped after step {}) recorded a plan whose owner is {:?}, but \
                     the catalog recorded owner {recorded_owner:?} for {name}; odoo-db will not make its \
                     own role a member of a role it did not record. Finish it by hand as a superuser \
                     (CREATE DATABASE {} OWNER {} TEMPLATE template0, with the plan's other properties), \
                     then mark the run finished (UPDATE catalog.recreates SET outcome = 'done', \
                     finished_at = now() WHERE id = {}; UPDATE catalog.databases SET state = 'ready' \
                     WHERE environment = 'integration' AND name = '{name}')",
                    record.kind.as_str(),
                    record.step.as_str(),
                    record.plan.owner,
                    quote_ident(name),
                    quote_ident(&recorded_owner),
                    record.id
                )));
            }
        }
        Ok(Job {
            name: name.to_string(),
            cluster,
            kind,
            catalog,
            server,
            params,
            version_num,
            lock,
            unfinished,
            inspection,
            run_id: None,
            step: Step::Planned,
            started,
            started_at,
            backup: None,
            restore_from: None,
            recorded_owner,
        })
    }

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

    /// Refusals that need the database's state: a template, objects DROP fails under,
    /// properties odoo-db's role could not put back.
    pub(crate) async fn check(&self, props: &DbProps, live: Option<&Inspection>) -> Result<()> {
        let refuse = |rule: String| {
            Error::refused(format!(
                "{} of {} refused: {rule}; nothing was changed",
                self.kind.as_str(),
                self.name
            ))
        };
        if props.owner != self.recorded_owner {
            return Err(refuse(owner_changed(
                &self.name,
                &format!("the properties to apply name owner {:?}", props.owner),
                &self.recorded_owner,
            )));
        }
        if let Some(live) = live {
            if live.is_template {
                return Err(refuse(
                    "it is a template database (datistemplate); odoo-db does not drop templates"
                        .into(),
                ));
            }
            if !live.blockers.is_empty() {
                return Err(refuse(format!(
                    "DROP DATABASE would fail while these exist in it: {}; remove them first",
                    live.blockers.join(", ")
                )));
            }
        }
        let sessions = live.map(|l| l.sessions.as_slice()).unwrap_or(&[]);
        dbprops::check_restorable(
            &self.server,
            props,
            sessions,
            live.map(|l| &l.props),
            self.version_num,
        )
        .await
        .map_err(|error| match error.class() {
            crate::error::Class::Refused => refuse(error.root_message().to_string()),
            _ => error,
        })
    }

    /// Refused unless the throwaway role a restore runs as can be made for `owner`
    /// ([`steprole::check`]).
    pub(crate) async fn check_step_role(&self, owner: &str) -> Result<()> {
        steprole::check(&self.server, owner, self.version_num)
            .await
            .map_err(|error| match error.class() {
                crate::error::Class::Refused => Error::refused(format!(
                    "{} of {} refused: {}; nothing was changed",
                    self.kind.as_str(),
                    self.name,
                    error.root_message()
                )),
                _ => error,
            })
    }

    /// Refused unless odoo-db's role can create every extension of a backup
    /// ([`dbprops::check_extensions`]).
    pub(crate) async fn check_extensions(&self, names: &[String]) -> Result<()> {
        dbprops::check_extensions(&self.server, names, self.version_num)
            .await
            .map_err(|error| match error.class() {
                crate::error::Class::Refused => Error::refused(format!(
                    "{} of {} refused: {}; nothing was changed",
                    self.kind.as_str(),
                    self.name,
                    error.root_message()
                )),
                _ => error,
            })
    }

    /// Refused unless a restore of this database's backup could recreate everything in
    /// it ([`dbprops::check_contents`]).
    pub(crate) async fn check_contents(&self, props: &DbProps) -> Result<()> {
        dbprops::check_contents(
            &self.params.with_dbname(&self.name),
            &props.owner,
            self.version_num,
        )
        .await
        .map_err(|error| match error.class() {
            crate::error::Class::Refused => Error::refused(format!(
                "{} of {} refused: {}; nothing was changed",
                self.kind.as_str(),
                self.name,
                error.root_message()
            )),
            _ => error,
        })
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
    async fn advance(&mut self, step: Step, detail: Value) -> Result<()> {
        self.record_step(step, detail).await?;
        self.step = step;
        Ok(())
    }

    async fn record_step(&self, step: Step, detail: Value) -> Result<()> {
        let id = self.run_id.expect("a run is recorded before it advances");
        self.catalog.record_step(id, step.as_str(), &detail).await?;
        tracing::debug!("{}: step {} reached", self.name, step.as_str());
        Ok(())
    }

    /// A failure before the point of no return: nothing was dropped, the database is
    /// ready again as it was.
    async fn abandon(&self, error: &Error) {
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

    /// Step 3: back up, read back, record, prune. Any failure abandons the run with
    /// nothing dropped.
    pub(crate) async fn back_up(
        &mut self,
        tools: &Tools,
        dir: &Path,
        compression: &str,
        keep: usize,
    ) -> Result<()> {
        let result = self.back_up_steps(tools, dir, compression, keep).await;
        if let Err(error) = &result {
            self.abandon(error).await;
        }
        result.map_err(|error| {
            error.context(format!(
                "{}: the backup failed, nothing was dropped",
                self.name
            ))
        })
    }

    async fn back_up_steps(
        &mut self,
        tools: &Tools,
        dir: &Path,
        compression: &str,
        keep: usize,
    ) -> Result<()> {
        tracing::info!(
            "backing up {} into {} with pg_dump {} (--compress={compression})",
            self.name,
            dir.display(),
            tools.major
        );
        let params = self.params.with_dbname(&self.name);
        let made = backup::dump(tools, &params, dir, &self.name, compression).await?;
        let path_text = made.path.to_string_lossy().into_owned();
        let bytes = made.bytes as i64;
        let id = self.run_id.expect("recorded before the backup");
        // Path, size and SHA-256 together with the step, in one statement: `restore`
        // accepts only a file recorded here that still matches.
        self.catalog
            .record_backup(
                id,
                &path_text,
                bytes,
                &made.sha256,
                &json!({ "path": path_text, "bytes": bytes, "sha256": made.sha256, "seconds": made.duration.as_secs_f64(), "pg_dump": tools.version }),
            )
            .await?;
        tracing::info!(
            "backed up {} into {} ({}) in {:.1} s",
            self.name,
            made.path.display(),
            format_bytes(made.bytes),
            made.duration.as_secs_f64()
        );
        self.step = Step::BackedUp;
        self.backup = Some((made.path.clone(), bytes));
        let protected = self.protected_backups().await?;
        let pruned: Vec<String> = backup::prune(dir, &self.name, keep, &protected)?
            .iter()
            .map(|path| path.to_string_lossy().into_owned())
            .collect();
        if !pruned.is_empty() {
            self.catalog.mark_backups_pruned(&pruned).await?;
        }
        Ok(())
    }

    /// Backups that unfinished runs recorded: retention never deletes them.
    async fn protected_backups(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .catalog
            .protected_backups()
            .await?
            .into_iter()
            .map(PathBuf::from)
            .collect())
    }

    /// Steps 4 and 5 (and for a restore, pg_restore), from `from` on. Each step is
    /// recorded before the next starts and each is safe to repeat, so a rerun after a
    /// crash at any point continues here. A failure says what state the name is in.
    pub(crate) async fn replace(
        &mut self,
        props: &DbProps,
        from: Step,
        restore: Option<(&Tools, &Path)>,
    ) -> Result<Vec<String>> {
        match self.replace_steps(props, from, restore).await {
            Ok(differences) => Ok(differences),
            Err(error) if self.step < Step::Blocking => {
                self.abandon(&error).await;
                Err(error.context(format!(
                    "{}: stopped before anything was dropped",
                    self.name
                )))
            }
            Err(error) => Err(self.stopped(error)),
        }
    }

    async fn replace_steps(
        &mut self,
        props: &DbProps,
        from: Step,
        restore: Option<(&Tools, &Path)>,
    ) -> Result<Vec<String>> {
        let database = quote_ident(&self.name);
        let mut step = from;
        if step <= Step::Blocking {
            let resumed = self.resumable().is_some();
            tokio::try_join!(
                self.lock.ensure_held("blocking connections"),
                self.record_step(Step::Blocking, json!({ "resumed": resumed }))
            )?;
            self.step = Step::Blocking;
            // A fresh run saw the database under the lock, valid and open. A resumed one
            // may find it gone, blocked, or left *invalid* by a DROP DATABASE that was
            // interrupted (datconnlimit = -2 since 11.21, 12.16, 13.12, 14.9, 15.4 and
            // 16; older minors leave one that still looks valid, blocked by the earlier
            // run). Such a database can only be dropped: ALTER DATABASE fails on it
            // ("cannot alter invalid database") and connecting to it fails or worse. So
            // a resumed run blocks connections only when the earlier run did not get as
            // far (still valid and open: the drop never began), and otherwise drops
            // straight away, never connecting to it nor altering it, whatever the version.
            let found = if resumed {
                self.drop_state().await?
            } else {
                Some(DropState::Open)
            };
            let mut ended = Vec::new();
            if let Some(found) = found {
                if found == DropState::Open {
                    self.server
                        .batch_execute(&format!(
                            "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
                        ))
                        .await
                        .context("blocking new connections")?;
                } else {
                    tracing::info!(
                        "{}: {}; dropping it again without connecting to it or altering it",
                        self.name,
                        match found {
                            DropState::Invalid => "left invalid by an interrupted DROP DATABASE",
                            _ => "already closed to connections by the interrupted run",
                        }
                    );
                }
                fail::fail_point!("recreate-after-block");
                ended = self.drop_database("the drop").await?;
            }
            tokio::try_join!(
                self.record_step(Step::Dropped, json!({ "sessions_ended": ended })),
                self.lock.ensure_held("the create")
            )?;
            self.step = Step::Dropped;
            fail::fail_point!("recreate-after-drop");
            step = Step::Dropped;
        } else if step == Step::Dropped {
            self.lock.ensure_held("the create").await?;
        }
        if step == Step::Dropped {
            // Only a run resumed here can find something under the name (it was
            // just dropped otherwise).
            let existing = if from == Step::Dropped {
                self.drop_state().await?
            } else {
                None
            };
            match existing {
                None => {}
                // The copy this job made before it was killed: made with connections
                // closed, so nobody wrote to it (or left invalid by an interrupted drop
                // of it). Made again from the start.
                Some(DropState::Closed | DropState::Invalid) => {
                    self.drop_database("dropping the half-made copy").await?;
                }
                Some(DropState::Open) => {
                    return Err(Error::failed(format!(
                        "a database named {} exists again and accepts connections, so it is not the copy \
                         this job makes (which stays closed until done): someone else created it. Nothing \
                         more was done; look at it, drop it if it is disposable, and run the command again",
                        self.name
                    )))
                }
            }
            self.create(props, restore.is_some()).await?;
            self.advance(Step::Created, json!({ "owner": props.owner }))
                .await?;
            fail::fail_point!("recreate-after-create");
            step = Step::Created;
        }
        if let Some((tools, path)) = restore {
            if step == Step::Created {
                // The staged ACL keeps the application out while the data goes in.
                self.server
                    .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
                    .await
                    .context("opening the new database to the restore")?;
                self.lock.ensure_held("the restore").await?;
                let started = Instant::now();
                let role = match self.step_role_for_restore(props).await {
                    Ok(role) => role,
                    Err(error) => return Err(self.restore_failed(error, path).await),
                };
                tracing::info!(
                    "restoring {} into {} as the throwaway role {} (a member of {} only)",
                    path.display(),
                    self.name,
                    role.name,
                    props.owner
                );
                let restored = backup::restore(
                    tools,
                    &role.login(&self.params),
                    path,
                    &props.owner,
                    self.server_major(),
                )
                .await;
                if let Err(error) = restored {
                    if let Err(drop_error) =
                        role.drop(&self.server, &self.catalog, &self.params).await
                    {
                        tracing::warn!(
                            "{}: the throwaway role stays until the next run: {drop_error}",
                            self.name
                        );
                    }
                    return Err(self.restore_failed(error, path).await);
                }
                self.advance(
                    Step::Restored,
                    json!({ "from": path.to_string_lossy(), "seconds": started.elapsed().as_secs_f64() }),
                )
                .await?;
                fail::fail_point!("restore-after-restore");
                // The data is in: a failure from here on leaves the role to the rerun,
                // which finds it recorded.
                role.drop(&self.server, &self.catalog, &self.params).await?;
            }
            // A run killed between its restore and here left its throwaway role.
            steprole::drop_leftovers(
                &self.server,
                &self.catalog,
                &self.params,
                &self.cluster,
                &self.name,
            )
            .await?;
            let current = self.inspect().await?.ok_or_else(|| {
                Error::failed(format!("{} vanished during the restore", self.name))
            })?;
            // Only now, with the data in, the settings the customer gave its database
            // (a read-only default, timeouts, search_path…): the restore never ran
            // under them.
            let mut statements = dbprops::settings_reset_statements(&current.props, props)?;
            statements.extend(dbprops::acl_statements(props, current.props.acl.as_deref()));
            if !statements.is_empty() {
                self.server
                    .batch_execute(&statements.join(";\n"))
                    .await
                    .context("putting the recorded settings and ACL back")?;
            }
            if !props.allow_connections {
                self.server
                    .batch_execute(&format!(
                        "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
                    ))
                    .await
                    .context("closing the database to connections as it was")?;
            }
        }
        let open = async {
            if props.allow_connections {
                self.server
                    .batch_execute(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"))
                    .await
                    .context("opening the new database to connections")?;
            }
            Ok::<_, Error>(())
        };
        // Pipelined on one session: the server runs them in order.
        let ((), actual) = tokio::try_join!(open, self.inspect())?;
        let actual = actual.ok_or_else(|| {
            Error::failed(format!("{} vanished right after it was created", self.name))
        })?;
        Ok(dbprops::differences(props, &actual.props))
    }

    /// What a resumed run finds under the name before it drops (None: nothing), read
    /// from `pg_database` only.
    async fn drop_state(&self) -> Result<Option<DropState>> {
        Ok(self
            .server
            .query_typed_opt(
                "SELECT datconnlimit = -2, datallowconn FROM pg_database WHERE datname = $1",
                &[(&self.name, Type::TEXT)],
            )
            .await
            .context("looking at what the interrupted run left")?
            .map(|row| match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
                (true, _) => DropState::Invalid,
                (false, true) => DropState::Open,
                (false, false) => DropState::Closed,
            }))
    }

    /// End the sessions (odoo-db's role is a member of pg_signal_backend; superusers'
    /// sessions were refused at the gates) and drop. Returns the sessions ended.
    async fn drop_database(&self, before: &str) -> Result<Vec<Value>> {
        let database = quote_ident(&self.name);
        let terminate = "SELECT a.pid, a.usename::text, a.application_name, pg_terminate_backend(a.pid)
                           FROM pg_stat_activity a
                           LEFT JOIN pg_roles r ON r.oid = a.usesysid
                          WHERE a.datname = $1 AND a.pid <> pg_backend_pid()
                            AND a.backend_type = 'client backend' AND NOT coalesce(r.rolsuper, false)";
        let (rows, ()) = tokio::try_join!(
            async {
                self.server
                    .query_typed(terminate, &[(&self.name, Type::TEXT)])
                    .await
                    .context("ending the sessions in the database")
            },
            self.lock.ensure_held(before)
        )?;
        let ended: Vec<Value> = rows
            .iter()
            .map(|row| {
                json!({
                    "pid": row.get::<_, i32>(0),
                    "user": row.get::<_, Option<String>>(1),
                    "application": row.get::<_, Option<String>>(2),
                })
            })
            .collect();
        if !ended.is_empty() {
            tracing::info!("ended {} session(s) in {}", ended.len(), self.name);
        }
        if self.version_num >= 130000 {
            // FORCE also ends what connected between the two statements and waits for
            // the ended sessions to be gone.
            self.server
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await
                .context("dropping the database")?;
        } else {
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let left = self
                    .server
                    .query_typed(terminate, &[(&self.name, Type::TEXT)])
                    .await?;
                if left.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::failed(format!(
                        "{} sessions did not end within 30 s",
                        left.len()
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            self.server
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
                .await
                .context("dropping the database")?;
        }
        Ok(ended)
    }

    /// CREATE from template0 with the properties CREATE takes, then settings, comment
    /// and ACL (the recorded one; a restore's staging one until the data is in, and its
    /// settings only after the data: see [`Job::replace_steps`]).
    async fn create(&self, props: &DbProps, staged: bool) -> Result<()> {
        // The lock was checked, and membership in the owner granted (begin/take_over),
        // just before.
        self.server
            .batch_execute(&dbprops::create_statement(props, self.version_num))
            .await
            .context("creating the database again")?;
        // Throwaway roles an interrupted restore of the dropped database left: the new
        // database holds nothing of theirs, so they go now.
        steprole::drop_leftovers(
            &self.server,
            &self.catalog,
            &self.params,
            &self.cluster,
            &self.name,
        )
        .await?;
        let mut statements = if staged {
            Vec::new()
        } else {
            dbprops::settings_statements(props)?
        };
        statements.extend(dbprops::comment_statement(props));
        if staged {
            statements.extend(dbprops::staged_acl_statements(&props.name, &props.owner));
        } else {
            statements.extend(dbprops::acl_statements(props, None));
        }
        if !statements.is_empty() {
            self.server
                .batch_execute(&statements.join(";\n"))
                .await
                .context("putting the settings, comment and ACL back")?;
        }
        Ok(())
    }

    /// The throwaway role pg_restore logs in as, whose only rights are the customer's
    /// ([`steprole`]): the customer's code that the restore runs (CHECK constraints,
    /// generated columns, index expressions, triggers) can `RESET ROLE` and still do
    /// nothing the customer could not. A role a killed restore left goes first.
    async fn step_role_for_restore(&self, props: &DbProps) -> Result<StepRole> {
        steprole::drop_leftovers(
            &self.server,
            &self.catalog,
            &self.params,
            &self.cluster,
            &self.name,
        )
        .await?;
        StepRole::create(
            &self.server,
            &self.catalog,
            &self.cluster,
            &self.name,
            &props.owner,
            "restore",
        )
        .await
    }

    /// A failed restore leaves the database empty (one transaction) and closed, the
    /// backup untouched, and says the command that finishes the job.
    async fn restore_failed(&self, error: Error, path: &Path) -> Error {
        let database = quote_ident(&self.name);
        let closed = self
            .server
            .batch_execute(&format!(
                "ALTER DATABASE {database} ALLOW_CONNECTIONS false"
            ))
            .await;
        let state = match closed {
            Ok(()) => "is left empty and closed (ALLOW_CONNECTIONS false)",
            Err(_) => "is left empty, open to odoo-db's role only (CONNECT revoked from the owner and PUBLIC)",
        };
        error.context(format!(
            "the restore of {name} failed and nothing of the backup went in: {name} {state}, the backup \
             {path} is untouched. Remove the cause given after this message (a superuser may create in \
             {name} what odoo-db's role cannot), then finish the job with `odoo-db restore {name} --backup {path} --yes`",
            name = self.name,
            path = path.display()
        ))
    }

    /// What a failure past the point of no return means for the name, and what to do.
    fn stopped(&self, error: Error) -> Error {
        let state = match self.step {
            Step::Planned | Step::BackedUp | Step::Blocking => {
                "new connections to it may be blocked (ALLOW_CONNECTIONS false) and it may already be dropped"
            }
            Step::Dropped => "the old database is dropped and the new one is not (fully) created yet",
            Step::Created if self.kind == Kind::Restore => {
                "the new database exists with its properties, but the backup is not restored into it yet"
            }
            Step::Created => "the new database exists with its properties but may not accept connections yet",
            Step::Restored | Step::Done => "the data is restored but the ACL or connections may not be back yet",
        };
        let backup = match (&self.backup, &self.restore_from) {
            (_, Some(path)) if self.kind == Kind::Restore => {
                format!(" (restoring from {})", path.display())
            }
            (Some((path, _)), _) => format!(" (its backup: {})", path.display()),
            _ => String::new(),
        };
        error.context(format!(
            "the {kind} of {name} stopped after step {step}: {state}. Its plan is recorded in the catalog \
             and `odoo-db list` shows it as {}; run `odoo-db {kind} {name}` again to finish it{backup}",
            self.kind.state(),
            kind = self.kind.as_str(),
            name = self.name,
            step = self.step.as_str(),
        ))
    }

    /// Step 6: record the end and say what was done.
    pub(crate) async fn finish(&mut self, differences: Vec<String>) -> Result<String> {
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
        let mut text = format!(
            "{} {} on cluster {} in {:.1} s\n",
            match self.kind {
                Kind::Recreate => "recreated",
                Kind::Restore => "restored",
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
            (None, Kind::Recreate) => match resumed {
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
        for difference in &differences {
            tracing::warn!(
                "{}: property differs after the {}: {difference}",
                self.name,
                self.kind.as_str()
            );
            text.push_str(&format!("  WARNING      {difference}\n"));
        }
        Ok(text)
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

    /// The owner the catalog recorded for the database.
    pub(crate) fn recorded_owner(&self) -> &str {
        &self.recorded_owner
    }
}

async fn load_unfinished(catalog: &Catalog, name: &str) -> Result<Option<Record>> {
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
