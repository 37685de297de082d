//! The job's steps that change the server: back up, block, end sessions, drop, create
//! from template0, restore, open. Each is safe to repeat, so a rerun after a crash
//! continues from the step the journal recorded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use tokio_postgres::types::Type;

use super::{Job, Kind, Step};
use crate::error::{Context, Error, Result};
use crate::pg::backup::{self, Tools};
use crate::pg::dbprops::{self, DbProps};
use crate::pg::quote::quote_ident;
use crate::pg::steprole::{self, Connect, StepRole};
use crate::units::format_bytes;

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

impl Job {
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
        let made = backup::dump(
            tools,
            &params,
            dir,
            &self.name,
            compression,
            self.server_major(),
            self.database_size().await?,
        )
        .await?;
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

    /// The database's size now (the backup's progress is measured against it).
    async fn database_size(&self) -> Result<u64> {
        let size: Option<i64> = self
            .server
            .query_typed_one(
                "SELECT pg_catalog.pg_database_size(oid) FROM pg_catalog.pg_database WHERE datname = $1",
                &[(&self.name, Type::TEXT)],
            )
            .await
            .context("reading the database's size")?
            .get(0);
        Ok(size.unwrap_or(0).max(0) as u64)
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
        let mut step = from;
        if step <= Step::Blocking {
            self.block_and_drop().await?;
            step = Step::Dropped;
        } else if step == Step::Dropped {
            self.lock.ensure_held("the create").await?;
        }
        if step == Step::Dropped {
            self.create_again(props, from, restore.is_some()).await?;
            step = Step::Created;
        }
        if let Some((tools, path)) = restore {
            if step == Step::Created {
                self.restore_data(props, tools, path).await?;
            }
            if self.refresh.is_some() && self.step < Step::Neutralized {
                self.neutralize(props).await?;
            }
            self.restore_settings(props).await?;
        }
        self.open_and_compare(props).await
    }

    /// Step 4: record the point of no return, block new connections (unless a resumed
    /// run finds them blocked already), end the sessions, drop.
    async fn block_and_drop(&mut self) -> Result<()> {
        let database = quote_ident(&self.name);
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
        Ok(())
    }

    /// Step 5: create from template0 with every property, connections still closed;
    /// a copy an interrupted run half made (`from` is [`Step::Dropped`]) goes first.
    async fn create_again(&mut self, props: &DbProps, from: Step, staged: bool) -> Result<()> {
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
            // A refresh's copy accepts connections during its restore, but only
            // odoo-db's (the window's ACL): the half-restored copy goes.
            Some(DropState::Open) if self.refresh.is_some() => {
                self.drop_database("dropping the half-restored copy").await?;
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
        self.create(props, staged).await?;
        self.advance(Step::Created, json!({ "owner": props.owner }))
            .await?;
        fail::fail_point!("recreate-after-create");
        Ok(())
    }

    /// A restore's pg_restore into the created database, as a throwaway role.
    async fn restore_data(&mut self, props: &DbProps, tools: &Tools, path: &Path) -> Result<()> {
        let database = quote_ident(&self.name);
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
        let mode = match &self.refresh {
            Some(work) => backup::RestoreMode::CopyInParallel(work.jobs),
            None => backup::RestoreMode::OneTransaction,
        };
        let restored = backup::restore(
            tools,
            &role.login(&self.params),
            path,
            &props.owner,
            self.version_num as u32,
            mode,
        )
        .await;
        if let Err(error) = restored {
            if let Err(drop_error) = role.drop(&self.server, &self.catalog, &self.params).await {
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
        Ok(())
    }

    /// After a restore's data is in: the leftover throwaway role goes, and the recorded
    /// settings and ACL come back.
    async fn restore_settings(&self, props: &DbProps) -> Result<()> {
        let database = quote_ident(&self.name);
        // A run killed between its restore and here left its throwaway role.
        steprole::drop_leftovers(
            &self.server,
            &self.catalog,
            &self.params,
            &self.cluster,
            &self.name,
        )
        .await?;
        let current = self
            .inspect()
            .await?
            .ok_or_else(|| Error::failed(format!("{} vanished during the restore", self.name)))?;
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
        Ok(())
    }

    /// The last of step 5: open the new database (if it was open), and what differs
    /// from the plan.
    async fn open_and_compare(&self, props: &DbProps) -> Result<Vec<String>> {
        let database = quote_ident(&self.name);
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
            Connect::Granted,
        )
        .await
    }

    /// A failed restore leaves the database empty (one transaction) and closed, the
    /// backup untouched, and says the command that finishes the job.
    async fn restore_failed(&self, error: Error, path: &Path) -> Error {
        if self.refresh.is_some() {
            // The window stays: the copy is half restored, open to odoo-db only.
            return error.context(format!(
                "the restore of production's copy into {} failed; it stays open to odoo-db only",
                self.name
            ));
        }
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
            Step::Planned | Step::BackedUp | Step::Dumped | Step::Blocking => {
                "new connections to it may be blocked (ALLOW_CONNECTIONS false) and it may already be dropped"
            }
            Step::Dropped => "the old database is dropped and the new one is not (fully) created yet",
            Step::Created if self.kind == Kind::Restore => {
                "the new database exists with its properties, but the backup is not restored into it yet"
            }
            Step::Created => "the new database exists with its properties but may not accept connections yet",
            Step::Restored if self.refresh.is_some() => {
                "production's copy is restored but not neutralized; nobody but odoo-db can connect to it"
            }
            Step::Restored | Step::Neutralized | Step::Done => "the data is restored but the ACL or connections may not be back yet",
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
}
