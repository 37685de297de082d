//! The gates of a recreate or restore: the refusals (exit 2, nothing changed) that
//! stand between a name and a dropped database, and the lock taken once they pass.

use std::time::Instant;

use chrono::Utc;

use super::journal::{load_unfinished, Kind, Record, Step};
use super::Job;
use crate::catalog::{Catalog, CatalogDatabase, PinnedCluster};
use crate::config::{ClusterKind, Config};
use crate::error::{Error, Result};
use crate::names;
use crate::pg::dbprops::{self, DbProps, Inspection};
use crate::pg::oplock::LockSession;
use crate::pg::quote::quote_ident;
use crate::pg::steprole;
use crate::servers::{self, Servers};
use pgconn::ConnParams;

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

/// A gate's refusal: what rule, and that nothing was changed.
fn refusal(kind: Kind, name: &str, rule: String) -> Error {
    Error::refused(format!(
        "{} of {name} refused: {rule}; nothing was changed",
        kind.as_str()
    ))
}

/// The catalog's gates: it knows `name`, only as an integration database on the
/// cluster of kind integration, provisioned to the end, and init pinned that cluster
/// as integration.
fn check_catalog_entries(
    config: &Config,
    name: &str,
    kind: Kind,
    cluster: &str,
    rows: &[CatalogDatabase],
    pinned: &[PinnedCluster],
) -> Result<()> {
    let refuse = |rule: String| refusal(kind, name, rule);
    if rows.is_empty() {
        return Err(refuse(format!(
            "{name} is unknown to the catalog; odoo-db recreates only databases it provisioned \
             or adopted (see `odoo-db list`)"
        )));
    }
    for row in rows {
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
    Ok(())
}

/// The server's gates: a primary, and the very server init pinned for the cluster,
/// not production's.
fn check_server(
    config: &Config,
    cluster: &str,
    params: &ConnParams,
    recovery: bool,
    identifier: u64,
    pinned: &[PinnedCluster],
    refuse: impl Fn(String) -> Error,
) -> Result<()> {
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
    Ok(())
}

/// An unfinished refresh belongs to refresh alone (whatever its step: its copy may be
/// un-neutralized, and nothing else may back it up or open it); a refresh does not
/// finish a recreate or restore that passed its point of no return.
fn check_unfinished_kind(name: &str, kind: Kind, unfinished: Option<&Record>) -> Result<()> {
    let Some(record) = unfinished else {
        return Ok(());
    };
    if record.kind == Kind::Refresh && kind != Kind::Refresh {
        return Err(refusal(
            kind,
            name,
            format!(
                "a refresh of {name} (started {} by {}) is unfinished (stopped after step {}), and its copy of                  production may not be neutralized yet; finish it first with `odoo-db refresh {name}`",
                record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                record.actor,
                record.step.as_str()
            ),
        ));
    }
    if kind == Kind::Refresh && record.kind != Kind::Refresh && record.step >= Step::Blocking {
        return Err(refusal(
            kind,
            name,
            format!(
                "an interrupted {kind} of {name} stopped after step {}; finish it first with `odoo-db {kind} {name}`",
                record.step.as_str(),
                kind = record.kind.as_str()
            ),
        ));
    }
    Ok(())
}

/// The owner gate, under the lock; returns the owner the catalog recorded.
fn check_owner(
    name: &str,
    kind: Kind,
    rows: &[CatalogDatabase],
    inspection: Option<&Inspection>,
    unfinished: Option<&Record>,
) -> Result<String> {
    let refuse = |rule: String| refusal(kind, name, rule);
    // The owner gate. odoo-db makes its own role a member of the database's owner to
    // act on it (pg_dump, DROP, CREATE … OWNER); an owner changed behind its back
    // (ALTER DATABASE … OWNER TO pg_execute_server_program, or any role) would hand
    // it that role's privileges. Only the owner the catalog recorded is acted for.
    let recorded_owner: String = rows
        .iter()
        .find(|row| row.environment == ClusterKind::Integration.as_str())
        .map(|row| row.owner.clone())
        .expect("checked above: every row is the integration one");
    if let Some(live) = inspection {
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
    if let Some(record) = unfinished.filter(|r| r.step >= Step::Blocking) {
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
    Ok(recorded_owner)
}

impl Job {
    /// Step 0: the gates and the lock. Every refusal here has changed nothing; an
    /// unreachable catalog fails (exit 1) before anything is touched.
    pub(crate) async fn open(config: &Config, name: &str, kind: Kind) -> Result<Job> {
        let started = Instant::now();
        let started_at = Utc::now();
        check_name(name, &config.catalog.database, kind)?;
        let servers = Servers::open(config).await?;
        let (cluster, _) = servers.cluster_of_kind(ClusterKind::Integration, "recreate")?;
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
        check_catalog_entries(config, name, kind, &cluster, &rows, &pinned)?;

        // The server itself: one round trip for all three questions.
        let (recovery, identifier, version_num) = tokio::try_join!(
            servers::in_recovery(&server),
            servers::system_identifier(&server),
            dbprops::server_version_num(&server)
        )?;
        check_server(
            config,
            &cluster,
            &params,
            recovery,
            identifier,
            &pinned,
            |rule| refusal(kind, name, rule),
        )?;

        tracing::debug!("{name}: gates passed");
        let lock = lock_session.acquire(name, kind.as_str()).await?;
        fail::fail_point!("recreate-after-lock");
        // The database's state now, fetched alongside the catalog's record: a fresh
        // run needs it, a resumed one ignores it.
        let (unfinished, inspection) = tokio::try_join!(
            load_unfinished(&catalog, name),
            dbprops::inspect(&server, name, version_num)
        )?;
        check_unfinished_kind(name, kind, unfinished.as_ref())?;
        let recorded_owner =
            check_owner(name, kind, &rows, inspection.as_ref(), unfinished.as_ref())?;
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
            refresh: None,
        })
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
}
