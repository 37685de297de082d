//! Where a refresh copies from: the production twin of the integration database, on
//! the production cluster whose identity `init` pinned, dumped from a streaming
//! standby of it by default (the primary does no extra work) or from the primary.
//!
//! A standby is a source only when it has the primary's system identifier, is
//! streaming and is fresh: a heartbeat written on the primary now must show on it
//! within `[refresh] max_source_lag`. Every refusal here has changed nothing (the
//! heartbeat row is health's, bumped as health does).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::Job;
use crate::catalog;
use crate::cli::RefreshSource;
use crate::config::{ClusterKind, Config};
use crate::error::{Context, Error, Result};
use crate::names;
use crate::pg::steprole::pinned_search_path;
use crate::servers::{self, Servers};
use crate::units::format_bytes;
use pgconn::ConnParams;

const HEARTBEAT_WRITE: &str = include_str!("../../../sql/health/heartbeat_write.sql");

/// A dump at this rate is what the plan's estimates assume.
const ASSUMED_DUMP_RATE: u64 = 100 * 1024 * 1024;

/// The production database a refresh copies, and the server it is dumped from.
pub(super) struct Source {
    pub database: String,
    pub cluster: String,
    /// `standby NAME` or `primary`.
    pub server: String,
    /// odoo-db's parameters on that server, in the production database.
    pub params: ConnParams,
    pub version_num: i32,
    /// The heartbeat's delay on the standby (None: the primary).
    pub lag: Option<Duration>,
    /// `max_standby_streaming_delay` (ms, -1 = forever) and `hot_standby_feedback`.
    pub conflicts: Option<(i64, bool)>,
    pub size_bytes: i64,
}

/// A refusal of the refresh: what rule, and that nothing was changed.
pub(super) fn refusal(name: &str, rule: String) -> Error {
    Error::refused(format!(
        "refresh of {name} refused: {rule}; nothing was changed"
    ))
}

impl Source {
    /// The source's gates; returns the source and odoo-db's session in its database
    /// (search_path pinned), for the plan's reads.
    pub(super) async fn open(
        config: &Config,
        job: &Job,
        choice: RefreshSource,
    ) -> Result<(Source, Client)> {
        let refuse = |rule: String| refusal(&job.name, rule);
        let base = names::base_of_integration(&job.name).expect("the gates checked the name");
        let servers = Servers::open(config).await?;
        let (cluster, _) = servers.cluster_of_kind(ClusterKind::Production, "recreate")?;
        let cluster = cluster.to_string();
        let rows = job.catalog.databases_named(base).await?;
        if !rows.iter().any(|row| {
            row.environment == ClusterKind::Production.as_str() && row.cluster == cluster
        }) {
            return Err(refuse(format!(
                "its production twin {base} is not in the catalog on production cluster {cluster}; \
                 refresh copies only the production database of the same customer"
            )));
        }
        let primary = servers.connect_primary(&cluster).await?;
        let identity = job
            .catalog
            .verify_identity(&cluster, &primary)
            .await
            .map_err(|error| gate_error(&job.name, error))?;
        if !catalog::database_exists(&primary, base).await? {
            return Err(refuse(format!(
                "database {base} does not exist on production cluster {cluster}"
            )));
        }
        let (server, params, lag, conflicts) = match choice {
            RefreshSource::Primary => (
                "primary".to_string(),
                servers.primary(&cluster)?,
                None,
                None,
            ),
            RefreshSource::Standby => {
                let (label, params, lag, conflicts) =
                    fresh_standby(config, &servers, &cluster, identity, &job.name).await?;
                (
                    format!("standby {label}"),
                    params,
                    Some(lag),
                    Some(conflicts),
                )
            }
        };
        let params = pinned_search_path(&params.with_dbname(base));
        let client = params
            .connect(&servers::admin_session())
            .await
            .with_context(|| {
                format!("connecting to {base} on the {server} of cluster {cluster}")
            })?;
        let version_num = crate::pg::dbprops::server_version_num(&client).await?;
        if version_num / 10000 > job.server_major() as i32 {
            return Err(refuse(format!(
                "production runs PostgreSQL {}, the integration server {}: a dump restores only into a \
                 server at least as new",
                version_num / 10000,
                job.server_major()
            )));
        }
        let size_bytes: i64 = client
            .query_one(
                "SELECT pg_catalog.pg_database_size(pg_catalog.current_database())",
                &[],
            )
            .await?
            .get(0);
        let source = Source {
            database: base.to_string(),
            cluster,
            server,
            params,
            version_num,
            lag,
            conflicts,
            size_bytes,
        };
        Ok((source, client))
    }

    /// The plan's lines about the source and what a dump of it does to the standby.
    pub(super) fn describe(&self) -> String {
        let mut text = format!(
            "  {:<22} {} on cluster {} ({}, {}, PostgreSQL {})\n",
            "source",
            self.database,
            self.cluster,
            self.server,
            self.params.label(),
            self.version_num / 10000
        );
        text.push_str(&format!(
            "  {:<22} {}\n",
            "source size",
            format_bytes(self.size_bytes.max(0) as u64)
        ));
        if let Some(lag) = self.lag {
            text.push_str(&format!(
                "  {:<22} a heartbeat showed on the standby after {:.1} s\n",
                "standby lag",
                lag.as_secs_f64()
            ));
        }
        if let Some((delay, feedback)) = self.conflicts {
            text.push_str(&format!(
                "  {:<22} max_standby_streaming_delay = {}, hot_standby_feedback = {}: {}\n",
                "recovery conflicts",
                if delay < 0 {
                    "-1".to_string()
                } else {
                    format!("{delay}ms")
                },
                if feedback { "on" } else { "off" },
                conflict_verdict(self.size_bytes.max(0) as u64, delay, feedback)
            ));
        }
        text
    }
}

/// Whether a dump of `bytes` on a standby with these settings will likely be
/// cancelled, or will hold back replay or vacuum.
pub(super) fn conflict_verdict(bytes: u64, delay_ms: i64, feedback: bool) -> String {
    let seconds = bytes / ASSUMED_DUMP_RATE + 1;
    let estimate = format!("the dump takes about {seconds} s at 100 MB/s");
    if delay_ms < 0 {
        format!(
            "{estimate}; replay waits for it when it conflicts, so the standby falls behind while it runs \
             (health names odoo-db's pg_dump as the holder)"
        )
    } else if feedback {
        format!(
            "{estimate}; with hot_standby_feedback the primary keeps the rows it reads (vacuum is held back), \
             so a cancellation is unlikely but replay may wait up to {delay_ms} ms on a lock conflict"
        )
    } else if (seconds as i64) * 1000 > delay_ms {
        format!(
            "{estimate}, longer than the delay: it will likely be cancelled by a recovery conflict \
             (vacuum on the primary); consider --source primary or hot_standby_feedback = on"
        )
    } else {
        format!("{estimate}, within the delay: a cancellation is unlikely")
    }
}

/// A refusal of another gate, worded as the refresh's.
fn gate_error(name: &str, error: Error) -> Error {
    match error.class() {
        crate::error::Class::Refused => refusal(name, error.root_message().to_string()),
        _ => error,
    }
}

/// The first standby of the cluster that is production's (its identifier), streaming
/// and fresh; refused with what each standby lacks.
async fn fresh_standby(
    config: &Config,
    servers: &Servers,
    cluster: &str,
    identity: u64,
    name: &str,
) -> Result<(String, ConnParams, Duration, (i64, bool))> {
    let heartbeat_db = &config.catalog.database;
    let primary = servers
        .primary(cluster)?
        .with_dbname(heartbeat_db)
        .connect(&servers::admin_session())
        .await
        .with_context(|| format!("cluster {cluster}: the primary's heartbeat database"))?;
    let mut reasons = Vec::new();
    for (standby, params) in servers.standbys(cluster)? {
        match check_standby(config, &primary, &params, identity).await {
            Ok((lag, conflicts)) => return Ok((standby.name, params, lag, conflicts)),
            Err(error) if error.class() == crate::error::Class::Refused => reasons.push(format!(
                "standby {}: {}",
                standby.name,
                error.root_message()
            )),
            Err(error) => reasons.push(format!("standby {}: {error}", standby.name)),
        }
    }
    if reasons.is_empty() {
        reasons.push(format!("cluster {cluster} has no standby configured"));
    }
    Err(refusal(
        name,
        format!(
            "no standby of production cluster {cluster} is a fresh source ({}); fix it, or dump from the \
             primary with --source primary",
            reasons.join("; ")
        ),
    ))
}

/// Refused unless the standby is production's, streaming, and shows a new heartbeat
/// within `max_source_lag`; returns the delay and its conflict settings.
async fn check_standby(
    config: &Config,
    primary: &Client,
    params: &ConnParams,
    identity: u64,
) -> Result<(Duration, (i64, bool))> {
    let standby = params
        .with_dbname(&config.catalog.database)
        .connect(&servers::admin_session())
        .await?;
    if !servers::in_recovery(&standby).await? {
        return Err(Error::refused("it is not in recovery (promoted?)"));
    }
    let found = servers::system_identifier(&standby).await?;
    if found != identity {
        return Err(Error::refused(format!(
            "its system identifier is {found}, not production's {identity}"
        )));
    }
    let row = standby
        .query_one(
            "SELECT coalesce((SELECT status FROM pg_catalog.pg_stat_wal_receiver), 'none'),
                    (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'max_standby_streaming_delay'),
                    pg_catalog.current_setting('hot_standby_feedback') = 'on'",
            &[],
        )
        .await?;
    let (status, delay, feedback): (String, i64, bool) = (row.get(0), row.get(1), row.get(2));
    if status != "streaming" {
        return Err(Error::refused(format!(
            "its WAL receiver is {status}, not streaming"
        )));
    }
    let lag = heartbeat_lag(primary, &standby, config.refresh.max_source_lag).await?;
    Ok((lag, (delay, feedback)))
}

/// Write a heartbeat on the primary and wait until the standby shows it; refused when
/// that takes longer than `max`.
async fn heartbeat_lag(primary: &Client, standby: &Client, max: Duration) -> Result<Duration> {
    let beat: i64 = primary
        .query_one(HEARTBEAT_WRITE, &[])
        .await
        .context("writing the heartbeat on the primary")?
        .get(0);
    let started = Instant::now();
    loop {
        let seen: i64 = standby
            .query_one("SELECT beat FROM heartbeat.beat WHERE id = 1", &[])
            .await
            .context("reading the heartbeat on the standby")?
            .get(0);
        if seen >= beat {
            return Ok(started.elapsed());
        }
        if started.elapsed() > max {
            return Err(Error::refused(format!(
                "it did not show the primary's heartbeat within refresh.max_source_lag ({} s): it is too far behind",
                max.as_secs_f64()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::conflict_verdict;

    const GB: u64 = 1 << 30;

    #[test]
    fn the_plan_says_what_a_dump_does_to_the_standby() {
        assert!(conflict_verdict(10 * GB, 30_000, false).contains("likely be cancelled"));
        assert!(conflict_verdict(GB / 1024, 30_000, false).contains("unlikely"));
        assert!(conflict_verdict(GB, -1, false).contains("falls behind"));
        assert!(conflict_verdict(GB, 30_000, true).contains("vacuum is held back"));
    }
}
