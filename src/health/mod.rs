//! `odoo-db health`: is every cluster's primary a primary, does every standby stream and
//! replay, and how far behind is it — the check a systemd timer runs every minute.
//!
//! The usual checks get replica lag wrong in known ways (a growing "lag" on an idle
//! primary, OK with a dead WAL receiver, OK with replay paused 30 MB behind). This one:
//! asks the primary for its WAL position and lets the standby compute the byte lag
//! (`pg_wal_lsn_diff`); measures the time lag end to end with a heartbeat row written on
//! the primary and awaited on the standby (odoo-db's monotonic clock, so no clock skew);
//! and looks at the WAL receiver and the replay pause state directly.
//!
//! A run, top to bottom:
//! 1. refuse what the user got wrong (thresholds, cluster, statsd target) before any
//!    connection: UNKNOWN, exit 3;
//! 2. check every cluster at once: connect to all its servers at once; the primary writes
//!    the heartbeat and says what it is (one round trip); each standby says what it is,
//!    then its replication state and the first heartbeat poll come back together, and it
//!    is polled until it shows the heartbeat; meanwhile the primary lists its WAL senders
//!    and slots ([`probe`]). Every step has its slice of `[health] timeout`, and the
//!    whole run sits under that deadline: past it the run is UNKNOWN, saying what it was
//!    waiting for, and keeps whatever it learnt;
//! 3. judge ([`judge`]): every check, worst state wins;
//! 4. report ([`output`], [`statsd`]): the textfile (always Prometheus), statsd, then
//!    stdout in the chosen format; the exit code is the Nagios state.
//!
//! An unreachable server is CRITICAL, never UNKNOWN: UNKNOWN is odoo-db's own failure
//! (bad config or usage, a refused login, a missing grant or heartbeat table, the
//! deadline).

pub mod judge;
pub mod output;
mod probe;
pub mod report;

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::{join, join_all};
use tokio::sync::watch;

use crate::cli::{HealthArgs, ReportFormat};
use crate::config::{ClusterKind, Config, HealthConfig, Standby};
use crate::error::{Error, Result};
use crate::output::{statsd, textfile};
use crate::servers::Servers;
use crate::units::Threshold;
use judge::{ClusterFacts, Rules};
use pgconn::ConnParams;
use probe::{Budget, Target};
use report::{
    Check, Limits, PrimaryReport, Report, ServerReport, SlotReport, StandbyReport, Status,
    Thresholds, SCHEMA_VERSION,
};

/// `odoo-db health` as the command line runs it: the config as it loaded (or why it did
/// not) and the flags. Every run ends with a report, an UNKNOWN one when odoo-db could
/// not check (a broken config, a bad flag, the deadline while opening the bastions): on
/// stdout in the chosen format, and in `--textfile`, so that node_exporter never keeps
/// serving the last OK file of a monitor that stopped working. Returns the exit code.
pub async fn main(config: Result<Config>, args: &HealthArgs) -> Result<u8> {
    let started_at = Utc::now();
    let start = Instant::now();
    let outcome = match config {
        Ok(config) => run(&config, args).await,
        Err(error) => Err(error),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(error) => Ok(report_own_failure(&error, args, started_at, start)),
    }
}

/// Runs the health check, prints the report, returns the Nagios exit code. An error
/// means nothing was reported yet ([`main`] reports it).
pub async fn run(config: &Config, args: &HealthArgs) -> Result<u8> {
    // 1. What to check, against what, and where results go.
    let thresholds = thresholds(&config.health, &args.warn_lag, &args.crit_lag)?;
    let names = clusters_to_check(config, args.cluster.as_deref())?;
    let statsd = args
        .statsd
        .as_deref()
        .map(statsd::Target::parse)
        .transpose()?;
    if let Some(path) = &args.textfile {
        textfile::check_textfile_dir(path)?;
    }
    let format = args.format.unwrap_or_else(default_format);

    // 2. Every cluster at once, each server within its budget, all within the deadline
    //    (which also covers opening the SSH bastions of the clusters behind one).
    let timeout = config.health.timeout;
    let budget = Budget {
        start: Instant::now(),
        timeout,
    };
    let started_at = Utc::now();
    let servers = tokio::time::timeout(timeout, Servers::open(config))
        .await
        .map_err(|_| {
            Error::unknown(format!(
                "the run's deadline ({} s, [health] timeout) came while opening the SSH bastions",
                judge::fmt_secs(timeout.as_secs_f64())
            ))
        })??;
    let plans = names
        .iter()
        .map(|name| plan(&servers, config, name))
        .collect::<Result<Vec<_>>>()?;
    let states: Vec<ClusterState> = plans.iter().map(ClusterState::new).collect();
    let all = join_all(
        plans
            .iter()
            .zip(&states)
            .map(|(plan, state)| check_cluster(plan, state, &budget)),
    );
    let finished = tokio::time::timeout_at((budget.start + timeout).into(), all)
        .await
        .is_ok();
    tracing::debug!(
        elapsed_ms = budget.start.elapsed().as_millis() as u64,
        finished,
        "health checks done"
    );

    // 3. Judge what was learnt.
    let rules = Rules {
        thresholds,
        slot_retained_warn: config.health.slot_retained_warn,
        limits: report::CheckLimits::from_config(&config.health),
    };
    let mut report = judge_all(plans, states, &rules, timeout, !finished);
    report.started_at = started_at;
    report.duration_seconds = budget.start.elapsed().as_secs_f64();

    // 4. Report: the textfile first (its failure shows in the printed report).
    write_textfile(&mut report, args.textfile.as_deref(), None);
    if let Some(target) = &statsd {
        // Best effort by design: a metrics server that is down must not fail the check.
        if let Err(error) = statsd::send(target, &output::statsd_gauges(&report)).await {
            tracing::warn!("{error}");
        }
    }
    crate::print_result(&output::render(&report, format));
    Ok(report.exit_code)
}

/// The report of a run that could not check: UNKNOWN, saying why, in the chosen format
/// and in the textfile (when its directory is safe to write). Returns 3.
fn report_own_failure(
    error: &Error,
    args: &HealthArgs,
    started_at: chrono::DateTime<Utc>,
    start: Instant,
) -> u8 {
    tracing::error!("{error}");
    let mut report = failed_run_report(error, started_at, start);
    write_textfile(
        &mut report,
        args.textfile.as_deref(),
        Some(&error.to_string()),
    );
    let format = args.format.unwrap_or_else(default_format);
    crate::print_result(&output::render(&report, format));
    report.exit_code
}

/// A usage error of `odoo-db health` (clap refused the command line): when the command
/// line still names a `--textfile`, it gets the UNKNOWN report too, so node_exporter does
/// not keep serving the last OK one.
pub fn usage_error_textfile(args: &[std::ffi::OsString], reason: &str) {
    let mut path = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--" {
            break;
        }
        if word == "--textfile" {
            path = words.next().map(std::path::PathBuf::from);
        } else if let Some(value) = word.to_str().and_then(|w| w.strip_prefix("--textfile=")) {
            path = Some(std::path::PathBuf::from(value));
        }
    }
    if let Some(path) = path {
        let error = Error::refused(reason.to_string());
        let mut report = failed_run_report(&error, Utc::now(), Instant::now());
        write_textfile(&mut report, Some(&path), None);
    }
}

/// The report of a run that could not even start checking: UNKNOWN, saying why.
fn failed_run_report(error: &Error, started_at: chrono::DateTime<Utc>, start: Instant) -> Report {
    Report {
        schema_version: SCHEMA_VERSION,
        status: Status::Unknown,
        exit_code: Status::Unknown.exit_code(),
        started_at,
        duration_seconds: start.elapsed().as_secs_f64(),
        timeout_seconds: 0.0,
        deadline_hit: false,
        thresholds: Thresholds::default(),
        limits: report::CheckLimits::default(),
        clusters: Vec::new(),
        checks: vec![Check {
            status: Status::Unknown,
            cluster: None,
            server: None,
            check: "run",
            message: error.to_string(),
            hint: None,
        }],
    }
}

/// Writes the textfile, if asked for; a failure becomes an UNKNOWN check of the run
/// (unless it is the very error the run already reports, `already`).
fn write_textfile(report: &mut Report, path: Option<&std::path::Path>, already: Option<&str>) {
    let Some(path) = path else {
        return;
    };
    let written = textfile::check_textfile_dir(path)
        .and_then(|()| textfile::write_atomically(path, &output::prometheus(report)));
    if let Err(error) = written {
        let message = error.to_string();
        if already != Some(message.as_str()) {
            report.add_run_check(
                Status::Unknown,
                "textfile",
                format!("{message}; the textfile was not written"),
                "node_exporter keeps serving the previous file: give the textfile a directory \
                 of its own that only odoo-db's user can write (see the README)",
            );
        }
    }
}

/// Text for people at a terminal, the Nagios format for everything else (monitoring
/// systems and the systemd journal).
fn default_format() -> ReportFormat {
    if std::io::stdout().is_terminal() {
        ReportFormat::Text
    } else {
        ReportFormat::Nagios
    }
}

/// The config's thresholds, with each kind (bytes, time) given on the command line
/// replacing the config's of that kind: `--crit-lag 16MB` keeps the configured time
/// threshold. Refused (UNKNOWN) when a value does not parse or overflows, when a flag
/// gives two values of one kind, or when a warning ends up above its critical.
fn thresholds(health: &HealthConfig, warn: &[String], crit: &[String]) -> Result<Thresholds> {
    let parse = |flag: &str, texts: &[String]| {
        Threshold::parse_list(texts).map_err(|e| Error::refused(format!("--{flag}: {e}")))
    };
    let warn_given = Limits::from_thresholds(&parse("warn-lag", warn)?);
    let crit_given = Limits::from_thresholds(&parse("crit-lag", crit)?);
    let merge = |configured: &[Threshold], given: Limits| {
        let mut limits = Limits::from_thresholds(configured);
        limits.bytes = given.bytes.or(limits.bytes);
        limits.seconds = given.seconds.or(limits.seconds);
        limits
    };
    let thresholds = Thresholds {
        warn: merge(&health.lag_warn, warn_given),
        crit: merge(&health.lag_crit, crit_given),
    };
    let from = |given: bool, flag: &str, key: &str| {
        if given {
            format!("--{flag}")
        } else {
            format!("[health] {key} or its default")
        }
    };
    let refuse = |kind: &str, warn: String, crit: String, warn_given: bool, crit_given: bool| {
        Error::refused(format!(
            "the warning {kind} {warn} ({}) is above the critical {kind} {crit} ({}): a warning \
             must come before the critical state; give a --warn-lag below the --crit-lag",
            from(warn_given, "warn-lag", "lag_warn"),
            from(crit_given, "crit-lag", "lag_crit"),
        ))
    };
    let (warn, crit) = (thresholds.warn, thresholds.crit);
    if let (Some(w), Some(c)) = (warn.bytes, crit.bytes) {
        if w > c {
            return Err(refuse(
                "lag",
                Threshold::Bytes(w).to_string(),
                Threshold::Bytes(c).to_string(),
                warn_given.bytes.is_some(),
                crit_given.bytes.is_some(),
            ));
        }
    }
    if let (Some(w), Some(c)) = (warn.seconds, crit.seconds) {
        if w > c {
            return Err(refuse(
                "time lag",
                format!("{} s", judge::fmt_secs(w)),
                format!("{} s", judge::fmt_secs(c)),
                warn_given.seconds.is_some(),
                crit_given.seconds.is_some(),
            ));
        }
    }
    Ok(thresholds)
}

/// `--cluster NAME` or all of them, production first.
fn clusters_to_check(config: &Config, only: Option<&str>) -> Result<Vec<String>> {
    if let Some(name) = only {
        config.cluster(name)?;
        return Ok(vec![name.to_string()]);
    }
    let mut names: Vec<(&ClusterKind, &String)> = config
        .clusters
        .iter()
        .map(|(name, cluster)| (&cluster.kind, name))
        .collect();
    names.sort_by_key(|(kind, name)| (**kind != ClusterKind::Production, (*name).clone()));
    Ok(names.into_iter().map(|(_, name)| name.clone()).collect())
}

/// One cluster's servers, as health connects to them.
struct ClusterPlan {
    name: String,
    kind: ClusterKind,
    primary: Target,
    standbys: Vec<(Standby, Target)>,
}

/// Health connects as `[health] user` when set, and into the heartbeat's database
/// (`[catalog] database`, where `init` put it) on clusters with standbys.
fn plan(servers: &Servers, config: &Config, name: &str) -> Result<ClusterPlan> {
    let cluster = config.cluster(name)?;
    let standbys = servers.standbys(name)?;
    let heartbeat_db = (!standbys.is_empty()).then_some(config.catalog.database.as_str());
    let target = |params: ConnParams| {
        let params = match &config.health.user {
            Some(user) => params.with_user(user),
            None => params,
        };
        match heartbeat_db {
            Some(db) if params.dbname() != db => Target {
                params: params.with_dbname(db),
                fallback: Some(params),
                sessions: None,
            },
            _ => Target {
                params,
                fallback: None,
                sessions: None,
            },
        }
    };
    Ok(ClusterPlan {
        name: name.to_string(),
        kind: cluster.kind,
        primary: target(servers.primary(name)?),
        standbys: standbys
            .into_iter()
            .map(|(standby, params)| (standby, target(params)))
            .collect(),
    })
}

/// What a cluster's servers have said so far. Shared with the probes, which write each
/// fact as soon as they learn it, so a run cut short by its deadline still has them.
struct ClusterState {
    primary: Mutex<PrimaryReport>,
    standbys: Vec<Mutex<StandbyReport>>,
    slots: Mutex<Option<Vec<SlotReport>>>,
    /// What the cluster's own code is doing, outside any server.
    step: Mutex<Option<&'static str>>,
}

impl ClusterState {
    fn new(plan: &ClusterPlan) -> ClusterState {
        let primary = PrimaryReport {
            server: ServerReport::new("primary", plan.primary.params.label()),
            ..PrimaryReport::default()
        };
        ClusterState {
            primary: Mutex::new(primary),
            standbys: plan
                .standbys
                .iter()
                .map(|(standby, target)| {
                    Mutex::new(StandbyReport {
                        server: ServerReport::new(&standby.name, target.params.label()),
                        application_name: standby.application_name.clone(),
                        ..StandbyReport::default()
                    })
                })
                .collect(),
            slots: Mutex::new(None),
            step: Mutex::new(None),
        }
    }
}

fn into_inner<T>(shared: Mutex<T>) -> T {
    shared
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One cluster: the primary and every standby at once; the standbys learn the
/// heartbeat the primary wrote through a watch channel.
async fn check_cluster(plan: &ClusterPlan, state: &ClusterState, budget: &Budget) {
    if let Some(millis) = stall_requested() {
        *state.step.lock().unwrap_or_else(|p| p.into_inner()) =
            Some("stalled by the health-stall failpoint");
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
    let (heartbeat, heartbeats) = watch::channel(None);
    let primary = probe::primary(
        &plan.primary,
        &state.primary,
        &state.slots,
        !plan.standbys.is_empty(),
        heartbeat,
        budget,
    );
    let standbys = join_all(
        plan.standbys
            .iter()
            .zip(&state.standbys)
            .map(|((_, target), shared)| {
                probe::standby(target, shared, heartbeats.clone(), budget)
            }),
    );
    join(primary, standbys).await;
}

/// Tests make a run outlive its deadline with `FAILPOINTS=health-stall=return(MILLIS)`
/// (built with the `failpoints` feature); without the feature this is always None.
fn stall_requested() -> Option<u64> {
    fail::fail_point!("health-stall", |millis| millis.and_then(|m| m.parse().ok()));
    None
}

/// Judges every cluster and assembles the report (the times are filled by the caller).
fn judge_all(
    plans: Vec<ClusterPlan>,
    states: Vec<ClusterState>,
    rules: &Rules,
    timeout: Duration,
    deadline_hit: bool,
) -> Report {
    let deadline = deadline_hit.then_some(timeout);
    let mut clusters = Vec::new();
    let mut checks = Vec::new();
    for (plan, state) in plans.into_iter().zip(states) {
        let facts = ClusterFacts {
            name: plan.name,
            kind: plan.kind,
            primary: into_inner(state.primary),
            standbys: state.standbys.into_iter().map(into_inner).collect(),
            slots: into_inner(state.slots),
            deadline: deadline.map(|timeout| (timeout, into_inner(state.step))),
        };
        let (cluster, cluster_checks) = judge::cluster(facts, rules);
        clusters.push(cluster);
        checks.extend(cluster_checks);
    }
    // The deadline makes the run UNKNOWN whatever it found: it did not finish checking.
    let status = match deadline {
        Some(_) => Status::Unknown,
        None => Status::worst_of(clusters.iter().map(|c| c.status)),
    };
    Report {
        schema_version: SCHEMA_VERSION,
        status,
        exit_code: status.exit_code(),
        started_at: Utc::now(),
        duration_seconds: 0.0,
        timeout_seconds: timeout.as_secs_f64(),
        deadline_hit,
        thresholds: rules.thresholds,
        limits: rules.limits,
        clusters,
        checks,
    }
}

impl Report {
    /// A check about the run itself (not a cluster), folded into the status.
    fn add_run_check(&mut self, status: Status, check: &'static str, message: String, hint: &str) {
        self.checks.push(Check {
            status,
            cluster: None,
            server: None,
            check,
            message,
            hint: Some(hint.to_string()),
        });
        if !self.deadline_hit {
            self.status = self.status.worst(status);
            self.exit_code = self.status.exit_code();
        }
    }
}

/// A session to a server as the probes use it: a fresh client, or one borrowed from a
/// pool that takes it back when this is dropped.
pub(crate) type Session = Box<dyn std::ops::Deref<Target = tokio_postgres::Client> + Send + Sync>;

/// Where the probes get their sessions when not fresh ones (`serve` keeps them pooled).
pub(crate) trait Sessions: Send + Sync {
    /// A session to the server of `params`, started with `session`'s options.
    fn open<'a>(
        &'a self,
        params: &'a ConnParams,
        session: &'a pgconn::SessionOptions,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = pgconn::Result<Session>> + Send + 'a>>;
}

/// `serve`'s probe: one cluster, like a run of `health --cluster NAME` with the config's
/// thresholds, but with sessions from `sessions`, through the SSH masters `servers`
/// keeps open, and the report returned instead of printed.
pub(crate) async fn probe_cluster(
    servers: &Servers,
    name: &str,
    sessions: std::sync::Arc<dyn Sessions>,
) -> Result<Report> {
    let config = servers.config();
    let thresholds = thresholds(&config.health, &[], &[])?;
    let timeout = config.health.timeout;
    let budget = Budget {
        start: Instant::now(),
        timeout,
    };
    let started_at = Utc::now();
    let mut plan = plan(servers, config, name)?;
    plan.primary.sessions = Some(sessions.clone());
    for (_, target) in &mut plan.standbys {
        target.sessions = Some(sessions.clone());
    }
    let state = ClusterState::new(&plan);
    let finished = tokio::time::timeout_at(
        (budget.start + timeout).into(),
        check_cluster(&plan, &state, &budget),
    )
    .await
    .is_ok();
    let rules = Rules {
        thresholds,
        slot_retained_warn: config.health.slot_retained_warn,
        limits: report::CheckLimits::from_config(&config.health),
    };
    let mut report = judge_all(vec![plan], vec![state], &rules, timeout, !finished);
    report.started_at = started_at;
    report.duration_seconds = budget.start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[catalog]\ncluster = \"production\"\n\
             [clusters.production]\nkind = \"production\"\nprimary = \"host=db1 user=u\"\n\
             standbys = [\"host=db2 user=u\"]\n\
             [clusters.integration]\nkind = \"integration\"\nprimary = \"host=dbint user=u\"\n{extra}"
        );
        Config::parse(&text, std::path::Path::new("/test.toml")).unwrap()
    }

    #[test]
    fn command_line_thresholds_replace_the_config_kind_by_kind() {
        let config = config("[health]\nlag_crit = [\"256MB\", \"300s\"]\n");
        let t = thresholds(&config.health, &[], &["16MB".to_string()]).unwrap();
        assert_eq!(t.crit.bytes, Some(16 << 20));
        assert_eq!(t.crit.seconds, Some(300.0));
        assert_eq!(t.warn.bytes, Some(16 << 20));
        let error = thresholds(&config.health, &["soon".to_string()], &[]).unwrap_err();
        assert_eq!(error.class(), crate::error::Class::Refused);
        assert!(error.to_string().contains("--warn-lag"), "{error}");
    }

    #[test]
    fn threshold_flags_are_checked() {
        let config = config("");
        let flags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let refused = |warn: &[&str], crit: &[&str]| {
            let error = thresholds(&config.health, &flags(warn), &flags(crit)).unwrap_err();
            assert_eq!(error.class(), crate::error::Class::Refused);
            error.to_string()
        };
        let message = refused(&["10s"], &["5s"]);
        assert!(
            message.contains("warning time lag 10 s (--warn-lag)"),
            "{message}"
        );
        assert!(
            message.contains("critical time lag 5 s (--crit-lag)"),
            "{message}"
        );
        // Above the default critical (300 s, 256 MB).
        let message = refused(&["400s"], &[]);
        assert!(
            message.contains("[health] lag_crit or its default"),
            "{message}"
        );
        let message = refused(&[], &["8MB"]);
        assert!(
            message.contains("warning lag 16.0 MB ([health] lag_warn"),
            "{message}"
        );
        let message = refused(&["99999999999999999999TB"], &[]);
        assert!(
            message.contains("--warn-lag") && message.contains("too large"),
            "{message}"
        );
        let message = refused(&["1MB", "2MB"], &[]);
        assert!(message.contains("2 sizes given"), "{message}");
        // Equal is fine: the warning never shows, the critical does.
        let t = thresholds(&config.health, &[], &flags(&["16MB"])).unwrap();
        assert_eq!(
            (t.warn.bytes, t.crit.bytes),
            (Some(16 << 20), Some(16 << 20))
        );
        let t = thresholds(
            &config.health,
            &flags(&["1MB", "2s"]),
            &flags(&["2MB", "3s"]),
        )
        .unwrap();
        assert_eq!(t.warn.seconds, Some(2.0));
    }

    #[test]
    fn production_is_checked_first() {
        let config = config("");
        assert_eq!(
            clusters_to_check(&config, None).unwrap(),
            vec!["production", "integration"]
        );
        assert!(clusters_to_check(&config, Some("nope")).is_err());
    }
}
