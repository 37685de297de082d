//! The health run's conversations with the servers: connect, ask, wait for the heartbeat.
//!
//! Everything here is about never hanging and asking little. Every step runs under a
//! budget cut from `[health] timeout` ([`Budget`]), so a server that stops answering is
//! reported (CRITICAL) long before the run's own deadline; queries that do not depend on
//! each other are pipelined on one connection (one round trip for several answers); and
//! what each server said is written into the shared report as soon as it is known, so a
//! run cut short still shows what it learnt. Statuses are not decided here: that is
//! [`super::judge`]'s job, from the facts gathered here.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join;
use tokio::sync::watch;
use tokio::time::timeout_at;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Row};

use super::report::{
    LagSource, PrimaryReport, ReplicationRow, ServerReport, SlotReport, StandbyReport, WalReceiver,
};
use super::Session;
use crate::error::{describe_pg_error, Error};
use crate::sqltemplate::{render, Placeholder};
use pgconn::{ConnParams, SessionOptions};

mod facts;

const IDENTIFY: &str = include_str!("../../../sql/health/identify.sql");
const HEARTBEAT_WRITE: &str = include_str!("../../../sql/health/heartbeat_write.sql");
const HEARTBEAT_POLL: &str = include_str!("../../../sql/health/heartbeat_poll.sql");
const REPLICATION: &str = include_str!("../../../sql/health/replication.sql");
const SLOTS: &str = include_str!("../../../sql/health/slots.sql");
const STANDBY: &str = include_str!("../../../sql/health/standby.sql");

/// `wal_status` and `safe_wal_size` appeared in PostgreSQL 13.
const SLOTS_BY_VERSION: &[Placeholder] = &[
    Placeholder {
        name: "wal_status",
        oldest: "NULL::text AS wal_status",
        since: &[(130000, "wal_status")],
    },
    Placeholder {
        name: "safe_wal_size",
        oldest: "NULL::bigint AS safe_wal_size",
        since: &[(130000, "safe_wal_size")],
    },
];

/// `pg_get_wal_replay_pause_state()` appeared in PostgreSQL 14; the WAL receiver's
/// `received_lsn` became `flushed_lsn` in 13.
const STANDBY_BY_VERSION: &[Placeholder] = &[
    Placeholder {
        name: "pause_state",
        oldest: "CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END",
        since: &[(140000, "pg_get_wal_replay_pause_state()")],
    },
    Placeholder {
        name: "receiver_flushed_lsn",
        oldest: "r.received_lsn",
        since: &[(130000, "r.flushed_lsn")],
    },
];

/// The first heartbeat poll follows the commit at once; later ones back off to this.
const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(10);
const MAX_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// The heartbeat wait never exceeds this, whatever the timeout: a standby that has not
/// shown a write after 10 s is judged from the age of what it shows instead.
const MAX_HEARTBEAT_WAIT: Duration = Duration::from_secs(10);

/// The slots of time a run gives each step, as fractions of `[health] timeout` (T):
/// connecting ≤ 0.4 T, standbys wait for the primary's heartbeat until 0.6 T, the
/// heartbeat wait ends by 0.7 T, every server is done by 0.85 T. The outer deadline at T
/// is then only a safety net for odoo-db's own stalls.
pub(super) struct Budget {
    pub start: Instant,
    pub timeout: Duration,
}

impl Budget {
    fn at(&self, fraction: f64) -> Instant {
        self.start + self.timeout.mul_f64(fraction)
    }

    fn connect_limit(&self, params: &ConnParams) -> Duration {
        params.connect_timeout().min(self.timeout.mul_f64(0.4))
    }

    fn mark_until(&self) -> Instant {
        self.at(0.6)
    }

    fn heartbeat_until(&self, acked: Instant) -> Instant {
        (acked + (self.timeout / 2).min(MAX_HEARTBEAT_WAIT)).min(self.at(0.7))
    }

    fn servers_until(&self) -> Instant {
        self.at(0.85)
    }

    /// Sent at connection startup: no query of a health run may run long or wait long
    /// for a lock (the heartbeat row is the only lock it takes).
    pub fn session(&self) -> SessionOptions {
        SessionOptions {
            statement_timeout: Some((self.timeout / 2).min(Duration::from_secs(10))),
            lock_timeout: Some((self.timeout / 4).min(Duration::from_secs(5))),
        }
    }
}

/// Where to connect for one server.
pub(super) struct Target {
    /// In the heartbeat database when the cluster has standbys.
    pub params: ConnParams,
    /// The configured database, used when the heartbeat database does not exist (init
    /// has not run): everything but the heartbeat can still be checked.
    pub fallback: Option<ConnParams>,
    /// Where sessions come from when not fresh (`serve` borrows them from its pools).
    pub sessions: Option<std::sync::Arc<dyn super::Sessions>>,
}

impl Target {
    /// Whether several questions may go out at once on a session to this server (see
    /// [`both`]): on a direct connection, not through an SSH bastion.
    fn pipelined(&self) -> bool {
        self.params.route().is_none()
    }
}

/// Two questions on one session: at once (one round trip) on a direct connection; one
/// after the other through an SSH bastion. There the answers come back through sshd,
/// which leaves Nagle's algorithm on for a connection without a terminal: a second
/// answer right behind the first waits for the first's acknowledgement, which the
/// client's kernel delays by 40 ms. Measured with `bench/ssh.sh`: 84 ms more per probe
/// pipelined, a few ms one after the other.
async fn both<A: Future, B: Future>(
    pipelined: bool,
    first: A,
    second: B,
) -> (A::Output, B::Output) {
    if pipelined {
        join(first, second).await
    } else {
        let first = first.await;
        (first, second.await)
    }
}

/// Why something could not be asked. `setup` failures are odoo-db's own (login refused,
/// a grant or the heartbeat table missing: UNKNOWN, fix the setup); the others are the
/// server's (unreachable, stopped answering, broken: CRITICAL).
#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub message: String,
    pub setup: bool,
}

impl Failure {
    fn down(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            setup: false,
        }
    }

    fn setup(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            setup: true,
        }
    }

    fn pair(self) -> (String, bool) {
        (self.message, self.setup)
    }

    /// A failed connection attempt: refused logins, missing databases and missing
    /// passwords are setup problems; anything else means the server is not usable.
    fn of_connect(error: &Error) -> Failure {
        let setup = error.sqlstate().is_some_and(|code| {
            let code = code.code();
            code.starts_with("28") || code == "3D000" || code.starts_with("42")
        }) || error.connect_cause() == Some(pgconn::Cause::PasswordMissing);
        Failure {
            message: error.to_string(),
            setup,
        }
    }

    /// A failed query: a missing table, function or privilege (SQLSTATE class 42) is a
    /// setup problem; a timeout, a closed connection or a server error is the server's.
    fn of_query(what: &str, error: &tokio_postgres::Error) -> Failure {
        let setup = error
            .code()
            .is_some_and(|code| code.code().starts_with("42"));
        Failure {
            message: format!("{what}: {}", describe_pg_error(error)),
            setup,
        }
    }
}

/// What the standbys need from the primary's heartbeat write.
#[derive(Clone, Debug)]
pub(super) struct Mark {
    /// The counter written; None when the heartbeat could not be written.
    beat: Option<i64>,
    /// `pg_current_wal_lsn()` just after the commit.
    lsn: Option<String>,
    /// When the primary acknowledged the commit (odoo-db's monotonic clock).
    acked: Instant,
    /// The primary's clock, and when odoo-db read it.
    primary_now: DateTime<Utc>,
    primary_now_at: Instant,
}

fn with<T, R>(shared: &Mutex<T>, f: impl FnOnce(&mut T) -> R) -> R {
    f(&mut shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

/// The step a server is at, for the "waiting for" of a run cut short.
fn step(shared: &Mutex<impl AsMut<ServerReport>>, what: Option<&'static str>) {
    with(shared, |report| report.as_mut().step = what);
}

impl AsMut<ServerReport> for PrimaryReport {
    fn as_mut(&mut self) -> &mut ServerReport {
        &mut self.server
    }
}

impl AsMut<ServerReport> for StandbyReport {
    fn as_mut(&mut self) -> &mut ServerReport {
        &mut self.server
    }
}

/// Records that a server could not be reached or stopped answering.
fn fail(shared: &Mutex<impl AsMut<ServerReport>>, failure: Failure) {
    with(shared, |report| {
        let server = report.as_mut();
        server.error = Some(failure.message);
        server.error_is_setup = failure.setup;
    });
}

/// Runs one step of a server's conversation within the budget: when the server stops
/// answering, the failure names the step it was at.
async fn within<T>(
    until: Instant,
    shared: &Mutex<impl AsMut<ServerReport>>,
    started: Instant,
    future: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    match timeout_at(until.into(), future).await {
        Ok(value) => Ok(value),
        Err(_) => {
            let doing = with(shared, |report| report.as_mut().step).unwrap_or("talking to it");
            Err(Failure::down(format!(
                "stopped answering: no reply after {:.1} s while {doing}",
                started.elapsed().as_secs_f64()
            )))
        }
    }
}

/// Connects, bounded as a whole; a missing heartbeat database falls back to the
/// configured one and says so (the second value).
async fn connect(target: &Target, budget: &Budget) -> Result<(Session, Option<Failure>), Failure> {
    let session = budget.session();
    let attempt = |params: &ConnParams| {
        let params = params.clone();
        let session = session.clone();
        let limit = budget.connect_limit(&params);
        let sessions = target.sessions.clone();
        async move {
            let opened = async {
                match &sessions {
                    Some(sessions) => sessions.open(&params, &session).await,
                    // A fresh client is its own session.
                    None => Ok(Box::new(Box::new(params.connect(&session).await?)) as Session),
                }
            };
            match tokio::time::timeout(limit, opened).await {
                Ok(result) => result.map_err(Error::from),
                Err(_) => Err(Error::failed(format!(
                    "connecting to {} as {}: no answer within {:.1} s (TCP, TLS and authentication)",
                    params.label(),
                    params.user(),
                    limit.as_secs_f64()
                ))),
            }
        }
    };
    match attempt(&target.params).await {
        Ok(client) => Ok((client, None)),
        Err(error)
            if error.is_sqlstate(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
                && target.fallback.is_some() =>
        {
            let fallback = target.fallback.as_ref().expect("checked above");
            let client = attempt(fallback)
                .await
                .map_err(|e| Failure::of_connect(&e))?;
            Ok((
                client,
                Some(Failure::setup(format!(
                    "database {:?} (the heartbeat's) does not exist on {}: run `odoo-db init` \
                     (on a standby: unless it has yet to replay the database's creation)",
                    target.params.dbname(),
                    target.params.label()
                ))),
            ))
        }
        Err(error) => Err(Failure::of_connect(&error)),
    }
}

/// Runs a query without preparing it first (one round trip), timing its answer.
async fn timed(
    client: &Client,
    sql: &str,
    params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
) -> (Result<Vec<Row>, tokio_postgres::Error>, Instant) {
    let result = client.query_typed(sql, params).await;
    (result, Instant::now())
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    column: &str,
) -> Result<T, Failure> {
    row.try_get(column)
        .map_err(|e| Failure::down(format!("unexpected answer, column {column}: {e}")))
}

/// What `identify.sql` says about a server.
struct Identity {
    version_num: i32,
    in_recovery: bool,
    now: DateTime<Utc>,
    cluster_name: String,
    current_lsn: Option<String>,
    system_identifier: Option<String>,
    timeline: Option<i64>,
    upstream: Option<String>,
}

fn identity(rows: &[Row]) -> Result<Identity, Failure> {
    let row = rows
        .first()
        .ok_or_else(|| Failure::down("identify: no row"))?;
    Ok(Identity {
        version_num: get(row, "version_num")?,
        in_recovery: get(row, "in_recovery")?,
        now: get(row, "now")?,
        cluster_name: get(row, "cluster_name")?,
        current_lsn: get(row, "current_lsn")?,
        system_identifier: get(row, "system_identifier")?,
        timeline: get(row, "timeline")?,
        upstream: get(row, "upstream")?,
    })
}

fn record_identity(server: &mut ServerReport, identity: &Identity) {
    server.server_version_num = Some(identity.version_num);
    server.in_recovery = Some(identity.in_recovery);
    server.cluster_name = Some(identity.cluster_name.clone());
    server.system_identifier = identity.system_identifier.clone();
    server.timeline = identity.timeline;
    server.upstream = identity.upstream.clone();
}

/// Asks the checks beyond lag ([`facts`]) and records the answers. A server that stops
/// answering here costs these checks only (recorded as their error), not what it said
/// about replication before.
async fn read_facts(
    client: &Client,
    shared: &Mutex<impl AsMut<ServerReport>>,
    version_num: i32,
    in_recovery: bool,
    pipelined: bool,
    budget: &Budget,
) {
    let started = Instant::now();
    let read = facts::read(client, version_num, in_recovery, pipelined);
    let facts = match timeout_at(budget.servers_until().into(), read).await {
        Ok(facts) => facts,
        Err(_) => {
            let mut facts = super::report::ServerFacts::default();
            facts.errors.push((
                "server_checks",
                format!(
                    "stopped answering: no reply after {:.1} s while reading wraparound, xmin, \
                     archiving, connections and pg_wal",
                    started.elapsed().as_secs_f64()
                ),
                false,
            ));
            facts
        }
    };
    with(shared, |report| report.as_mut().facts = facts);
}

/// Connects within the budget and records the server reachable; None, the failure
/// recorded, when it cannot be reached. The second value of the session says that the
/// heartbeat database is missing and the configured one is used instead.
async fn open_session(
    target: &Target,
    shared: &Mutex<impl AsMut<ServerReport>>,
    budget: &Budget,
) -> Option<(Session, Option<Failure>)> {
    step(shared, Some("connecting"));
    match within(
        budget.servers_until(),
        shared,
        budget.start,
        connect(target, budget),
    )
    .await
    .and_then(|result| result)
    {
        Ok(opened) => {
            with(shared, |report| report.as_mut().reachable = true);
            Some(opened)
        }
        Err(failure) => {
            fail(shared, failure);
            None
        }
    }
}

/// The primary: connect; write the heartbeat and read what it is (one round trip); hand
/// the heartbeat to the standbys; then read its WAL senders and slots while they wait.
pub(super) async fn primary(
    target: &Target,
    shared: &Mutex<PrimaryReport>,
    slots: &Mutex<Option<Vec<SlotReport>>>,
    write_heartbeat: bool,
    mark: watch::Sender<Option<Mark>>,
    budget: &Budget,
) {
    let Some((client, missing_database)) = open_session(target, shared, budget).await else {
        return;
    };
    if let Some(failure) = &missing_database {
        with(shared, |report| {
            report.heartbeat_error = Some(failure.message.clone());
            report.heartbeat_error_is_setup = true;
        });
    }
    let write_heartbeat = write_heartbeat && missing_database.is_none();
    let pipelined = target.pipelined();
    let Some((identity, mark_value)) =
        write_heartbeat_and_identify(&client, shared, write_heartbeat, pipelined, budget).await
    else {
        return;
    };
    mark.send_replace(Some(mark_value));
    drop(mark);
    let facts = read_facts(
        &client,
        shared,
        identity.version_num,
        identity.in_recovery,
        pipelined,
        budget,
    );
    if identity.in_recovery {
        // Not a primary: its senders and slots say nothing about this cluster.
        facts.await;
        return step(shared, None);
    }
    both(
        pipelined,
        read_senders_and_slots(
            &client,
            shared,
            slots,
            identity.version_num,
            pipelined,
            budget,
        ),
        facts,
    )
    .await;
    step(shared, None);
}

/// Writes the heartbeat (when asked) and identifies the primary in one round trip,
/// records both, and returns what the standbys wait for; None, the failure recorded,
/// when the primary could not be identified.
async fn write_heartbeat_and_identify(
    client: &Client,
    shared: &Mutex<PrimaryReport>,
    write_heartbeat: bool,
    pipelined: bool,
    budget: &Budget,
) -> Option<(Identity, Mark)> {
    // The heartbeat goes first on the wire, so identify's WAL position is after its commit.
    step(
        shared,
        Some(if write_heartbeat {
            "writing the heartbeat"
        } else {
            "identifying it"
        }),
    );
    let first_round = async {
        if write_heartbeat {
            let (heartbeat, identify) = both(
                pipelined,
                timed(client, HEARTBEAT_WRITE, &[]),
                timed(client, IDENTIFY, &[]),
            )
            .await;
            (Some(heartbeat), identify)
        } else {
            (None, timed(client, IDENTIFY, &[]).await)
        }
    };
    let (heartbeat, (identify, identified_at)) =
        match within(budget.servers_until(), shared, budget.start, first_round).await {
            Ok(answers) => answers,
            Err(failure) => {
                fail(shared, failure);
                return None;
            }
        };
    let identity = match identify
        .map_err(|e| Failure::of_query("identifying the server", &e))
        .and_then(|rows| identity(&rows))
    {
        Ok(identity) => identity,
        Err(failure) => {
            fail(shared, failure);
            return None;
        }
    };
    let mut beat = None;
    let mut acked = identified_at;
    if let Some((result, at)) = heartbeat {
        acked = at;
        match heartbeat_written(result, identity.in_recovery) {
            Ok(written) => beat = written,
            Err(failure) => with(shared, |report| {
                report.heartbeat_error = Some(failure.message);
                report.heartbeat_error_is_setup = failure.setup;
            }),
        }
    }
    with(shared, |report| {
        record_identity(&mut report.server, &identity);
        report.current_wal_lsn = identity.current_lsn.clone();
        report.heartbeat = beat;
    });
    let mark = Mark {
        beat,
        lsn: identity.current_lsn.clone(),
        acked,
        primary_now: identity.now,
        primary_now_at: identified_at,
    };
    Some((identity, mark))
}

/// The counter `heartbeat_write.sql` wrote, or why it was not written.
fn heartbeat_written(
    result: Result<Vec<Row>, tokio_postgres::Error>,
    in_recovery: bool,
) -> Result<Option<i64>, Failure> {
    match result {
        Ok(rows) => match rows.first() {
            Some(row) => get::<i64>(row, "beat").map(Some),
            None => Err(Failure::setup(
                "the heartbeat row (heartbeat.beat id 1) is missing: run `odoo-db init`",
            )),
        },
        Err(_) if in_recovery => Err(Failure::down("not written: the server is in recovery")),
        Err(error) => Err(Failure::of_query("writing the heartbeat", &error)),
    }
}

/// Reads the primary's WAL senders and replication slots (one round trip) and records
/// them, or why they could not be read.
async fn read_senders_and_slots(
    client: &Client,
    shared: &Mutex<PrimaryReport>,
    slots: &Mutex<Option<Vec<SlotReport>>>,
    version_num: i32,
    pipelined: bool,
    budget: &Budget,
) {
    step(
        shared,
        Some("reading pg_stat_replication and the replication slots"),
    );
    let slots_sql = render(SLOTS, SLOTS_BY_VERSION, version_num);
    let second_round = both(
        pipelined,
        client.query_typed(REPLICATION, &[]),
        client.query_typed(&slots_sql, &[]),
    );
    let (replication, slot_rows) =
        match within(budget.servers_until(), shared, budget.start, second_round).await {
            Ok(answers) => answers,
            Err(failure) => return fail(shared, failure),
        };
    let replication = replication
        .map_err(|e| Failure::of_query("reading pg_stat_replication", &e))
        .and_then(|rows| {
            rows.iter()
                .map(replication_row)
                .collect::<Result<Vec<_>, _>>()
        });
    let slot_list = slot_rows
        .map_err(|e| Failure::of_query("reading pg_replication_slots", &e))
        .and_then(|rows| rows.iter().map(slot_report).collect::<Result<Vec<_>, _>>());
    with(shared, |report| {
        match replication {
            Ok(rows) => report.replication = Some(rows),
            Err(failure) => report.replication_error = Some(failure.pair()),
        }
        match &slot_list {
            Ok(_) => {}
            Err(failure) => report.slots_error = Some(failure.clone().pair()),
        }
        report.server.step = None;
    });
    if let Ok(list) = slot_list {
        with(slots, |slots| *slots = Some(list));
    }
}

/// One row of `replication.sql`.
fn replication_row(row: &Row) -> Result<ReplicationRow, Failure> {
    Ok(ReplicationRow {
        pid: get(row, "pid")?,
        application_name: get(row, "application_name")?,
        state: get(row, "state")?,
        sync_state: get(row, "sync_state")?,
        client_addr: get(row, "client_addr")?,
    })
}

/// One row of `slots.sql`.
fn slot_report(row: &Row) -> Result<SlotReport, Failure> {
    Ok(SlotReport {
        name: get(row, "slot_name")?,
        active: get(row, "active")?,
        active_pid: get(row, "active_pid")?,
        temporary: get(row, "temporary")?,
        retained_bytes: get(row, "retained_bytes")?,
        wal_status: get(row, "wal_status")?,
        safe_wal_size_bytes: get(row, "safe_wal_size")?,
    })
}

/// One answer of `heartbeat_poll.sql`.
struct Poll {
    beat: i64,
    written_at: DateTime<Utc>,
    now: DateTime<Utc>,
    at: Instant,
    lsns: Lsns,
}

/// Positions and byte lags, as `standby_*.sql` and `heartbeat_poll.sql` both report them.
struct Lsns {
    receive_lsn: Option<String>,
    replay_lsn: Option<String>,
    lag_bytes: Option<i64>,
    receive_lag_bytes: Option<i64>,
    replay_backlog_bytes: Option<i64>,
}

fn lsns(row: &Row) -> Result<Lsns, Failure> {
    Ok(Lsns {
        receive_lsn: get(row, "receive_lsn")?,
        replay_lsn: get(row, "replay_lsn")?,
        lag_bytes: get(row, "lag_bytes")?,
        receive_lag_bytes: get(row, "receive_lag_bytes")?,
        replay_backlog_bytes: get(row, "replay_backlog_bytes")?,
    })
}

fn record_lsns(report: &mut StandbyReport, lsns: Lsns) {
    // A standby may already be past the position the primary reported a moment before:
    // nothing is missing then.
    let bytes = |value: Option<i64>| value.map(|v| v.max(0) as u64);
    report.receive_lsn = lsns.receive_lsn;
    report.replay_lsn = lsns.replay_lsn;
    report.lag_bytes = bytes(lsns.lag_bytes);
    report.receive_lag_bytes = bytes(lsns.receive_lag_bytes);
    report.replay_backlog_bytes = bytes(lsns.replay_backlog_bytes);
}

async fn poll(client: &Client, lsn: &Option<String>) -> Result<Poll, Failure> {
    let (result, at) = timed(client, HEARTBEAT_POLL, &[(lsn, Type::TEXT)]).await;
    let rows = result.map_err(|e| Failure::of_query("reading the heartbeat", &e))?;
    let row = rows.first().ok_or_else(|| {
        Failure::setup("the heartbeat row (heartbeat.beat id 1) is missing: run `odoo-db init`")
    })?;
    Ok(Poll {
        beat: get(row, "beat")?,
        written_at: get(row, "written_at")?,
        now: get(row, "now")?,
        at,
        lsns: lsns(row)?,
    })
}

/// A standby: connect and identify; wait for the primary's heartbeat write; read its
/// replication state and poll for the heartbeat in the same round trip; keep polling
/// (10 ms, backing off to 200 ms) until the standby shows it, it cannot arrive (replay
/// paused, no streaming receiver), or the wait is over.
pub(super) async fn standby(
    target: &Target,
    shared: &Mutex<StandbyReport>,
    marks: watch::Receiver<Option<Mark>>,
    budget: &Budget,
) {
    let Some((client, missing_database)) = open_session(target, shared, budget).await else {
        return;
    };
    with(shared, |report| {
        report.heartbeat_error = missing_database.clone().map(Failure::pair);
    });
    let heartbeat_readable = missing_database.is_none();
    let pipelined = target.pipelined();
    let Some(identity) = identify_standby(&client, shared, budget).await else {
        return;
    };
    // Promoted (or misconfigured): replay questions would only raise errors.
    if identity.in_recovery {
        replication(
            &client,
            shared,
            marks,
            &identity,
            heartbeat_readable,
            pipelined,
            budget,
        )
        .await;
    }
    if with(shared, |report| report.server.error.is_some()) {
        // It stopped answering: asking more would only wait for the budget again.
        return;
    }
    step(
        shared,
        Some("reading wraparound, xmin, archiving, connections and pg_wal"),
    );
    read_facts(
        &client,
        shared,
        identity.version_num,
        identity.in_recovery,
        pipelined,
        budget,
    )
    .await;
    step(shared, None);
}

/// A standby's replication: its state, and the heartbeat until it shows.
async fn replication(
    client: &Client,
    shared: &Mutex<StandbyReport>,
    marks: watch::Receiver<Option<Mark>>,
    identity: &Identity,
    heartbeat_readable: bool,
    pipelined: bool,
    budget: &Budget,
) {
    let mark = wait_for_mark(shared, marks, budget).await;
    let lsn = mark.as_ref().and_then(|m| m.lsn.clone());
    let Some((can_catch_up, first_poll)) = read_state_and_poll(
        client,
        shared,
        identity.version_num,
        &lsn,
        heartbeat_readable,
        pipelined,
        budget,
    )
    .await
    else {
        return;
    };
    let current = match first_poll {
        None => return step(shared, None),
        Some(Ok(first)) => first,
        Some(Err(failure)) => {
            with(shared, |report| {
                report.heartbeat_error = Some(failure.pair())
            });
            return step(shared, None);
        }
    };
    wait_for_heartbeat(client, shared, current, mark.as_ref(), can_catch_up, budget).await;
}

/// Identifies a standby and records it; None, the failure recorded, when it cannot be.
async fn identify_standby(
    client: &Client,
    shared: &Mutex<StandbyReport>,
    budget: &Budget,
) -> Option<Identity> {
    step(shared, Some("identifying it"));
    match within(
        budget.servers_until(),
        shared,
        budget.start,
        client.query_typed(IDENTIFY, &[]),
    )
    .await
    .and_then(|result| result.map_err(|e| Failure::of_query("identifying the server", &e)))
    .and_then(|rows| identity(&rows))
    {
        Ok(identity) => {
            with(shared, |report| {
                record_identity(&mut report.server, &identity)
            });
            Some(identity)
        }
        Err(failure) => {
            fail(shared, failure);
            None
        }
    }
}

/// The primary's heartbeat write, once it is known; None when the primary could not be
/// asked (or took too long): the standby is checked without its position.
async fn wait_for_mark(
    shared: &Mutex<StandbyReport>,
    mut marks: watch::Receiver<Option<Mark>>,
    budget: &Budget,
) -> Option<Mark> {
    step(shared, Some("waiting for the primary's heartbeat write"));
    match timeout_at(budget.mark_until().into(), marks.wait_for(Option::is_some)).await {
        Ok(Ok(value)) => value.clone(),
        // The primary could not be asked (or took too long): go on without its position.
        _ => None,
    }
}

/// Reads the standby's replication state and, when the heartbeat database is there,
/// polls the heartbeat once (one round trip); records the state. Returns whether the
/// heartbeat can still arrive, and the first poll; None, the failure recorded, when the
/// standby stopped answering.
async fn read_state_and_poll(
    client: &Client,
    shared: &Mutex<StandbyReport>,
    version_num: i32,
    lsn: &Option<String>,
    heartbeat_readable: bool,
    pipelined: bool,
    budget: &Budget,
) -> Option<(bool, Option<Result<Poll, Failure>>)> {
    step(shared, Some("reading its replication state"));
    let state_sql = render(STANDBY, STANDBY_BY_VERSION, version_num);
    let lsn_param: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] = [(lsn, Type::TEXT)];
    let first_round = async {
        let state = client.query_typed(&state_sql, &lsn_param);
        if heartbeat_readable {
            let (state, first) = both(pipelined, state, poll(client, lsn)).await;
            (state, Some(first))
        } else {
            (state.await, None)
        }
    };
    let (state, first_poll) =
        match within(budget.servers_until(), shared, budget.start, first_round).await {
            Ok(answers) => answers,
            Err(failure) => {
                fail(shared, failure);
                return None;
            }
        };
    let can_catch_up = match state
        .map_err(|e| Failure::of_query("reading the replication state", &e))
        .and_then(|rows| record_state(shared, &rows))
    {
        Ok(can_catch_up) => can_catch_up,
        Err(failure) => {
            with(shared, |report| report.state_error = Some(failure.pair()));
            true
        }
    };
    Some((can_catch_up, first_poll))
}

/// Polls the heartbeat until the standby shows the primary's write, it cannot arrive,
/// or the wait is over; records what the last answer said.
async fn wait_for_heartbeat(
    client: &Client,
    shared: &Mutex<StandbyReport>,
    mut current: Poll,
    mark: Option<&Mark>,
    can_catch_up: bool,
    budget: &Budget,
) {
    step(shared, Some("waiting for the heartbeat to be replayed"));
    let lsn = mark.and_then(|m| m.lsn.clone());
    let target_beat = mark.and_then(|m| m.beat);
    let wait_started = Instant::now();
    let wait_until = mark.map(|m| budget.heartbeat_until(m.acked));
    let mut interval = FIRST_POLL_INTERVAL;
    loop {
        let shown = target_beat.is_some_and(|beat| current.beat >= beat);
        let wait_over = wait_until.is_none_or(|until| Instant::now() + interval >= until);
        if shown || target_beat.is_none() || !can_catch_up || wait_over {
            let seen_at = shown.then_some(current.at);
            record_heartbeat(shared, current, seen_at, mark, wait_started);
            return step(shared, None);
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 3 / 2).min(MAX_POLL_INTERVAL);
        match within(
            budget.servers_until(),
            shared,
            budget.start,
            poll(client, &lsn),
        )
        .await
        {
            Ok(Ok(next)) => current = next,
            Ok(Err(failure)) => {
                record_heartbeat(shared, current, None, mark, wait_started);
                with(shared, |report| {
                    report.heartbeat_error = Some(failure.pair())
                });
                return step(shared, None);
            }
            Err(failure) => {
                // It stopped answering mid-wait: report what its last answer said.
                record_heartbeat(shared, current, None, mark, wait_started);
                return fail(shared, failure);
            }
        }
    }
}

/// Records `standby_*.sql`'s answer; returns whether the heartbeat can still arrive
/// (replay not paused and a WAL receiver streaming).
fn record_state(shared: &Mutex<StandbyReport>, rows: &[Row]) -> Result<bool, Failure> {
    let row = rows
        .first()
        .ok_or_else(|| Failure::down("replication state: no row"))?;
    let pause_state: String = get(row, "pause_state")?;
    let running: bool = get(row, "receiver_running")?;
    let receiver = WalReceiver {
        running,
        status: get(row, "receiver_status")?,
        last_message_age_seconds: get(row, "receiver_silent_seconds")?,
        timeout_seconds: get(row, "receiver_timeout_seconds")?,
        sender_host: get(row, "sender_host")?,
        sender_port: get(row, "sender_port")?,
        slot_name: get(row, "slot_name")?,
        flushed_lsn: get(row, "receiver_flushed_lsn")?,
        application_name: get::<Option<String>>(row, "receiver_conninfo")?
            .as_deref()
            .and_then(conninfo_application_name),
    };
    let lsns = lsns(row)?;
    let paused = pause_state != "not paused";
    // A receiver whose status cannot be read (missing pg_monitor) may well stream.
    let streaming = running && receiver.status.as_deref().is_none_or(|s| s == "streaming");
    with(shared, |report| {
        report.replay_pause_state = Some(pause_state);
        report.wal_receiver = Some(receiver);
        record_lsns(report, lsns);
    });
    Ok(!paused && streaming)
}

/// The `application_name` of a WAL receiver's connection, from the conninfo that
/// `pg_stat_wal_receiver` shows: libpq's `PQconninfo` as `keyword=value` pairs, values
/// unquoted (so they may hold spaces), in libpq's order of options, where
/// `application_name` comes right before `fallback_application_name` (which the WAL
/// receiver always sets: its cluster_name, else `walreceiver`). None when it is not set.
pub(super) fn conninfo_application_name(conninfo: &str) -> Option<String> {
    const KEY: &str = "application_name=";
    let start = if conninfo.starts_with(KEY) {
        KEY.len()
    } else {
        conninfo.find(&format!(" {KEY}"))? + 1 + KEY.len()
    };
    let rest = &conninfo[start..];
    let end = rest
        .find(" fallback_application_name=")
        .or_else(|| next_keyword(rest))
        .unwrap_or(rest.len());
    let value = &rest[..end];
    (!value.is_empty()).then(|| value.to_string())
}

/// Where the next ` keyword=` starts in a PQconninfo string.
fn next_keyword(text: &str) -> Option<usize> {
    text.match_indices(' ').map(|(at, _)| at).find(|&at| {
        let word = &text[at + 1..];
        let key_end = word.find('=').unwrap_or(0);
        key_end > 0
            && word[..key_end]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
    })
}

/// The time lag: measured when the standby showed this run's heartbeat, else the age of
/// the newest heartbeat it shows, on the primary's clock when the primary could be asked
/// (its clock when read, advanced by odoo-db's monotonic clock since), else on the
/// standby's own.
fn record_heartbeat(
    shared: &Mutex<StandbyReport>,
    poll: Poll,
    seen_at: Option<Instant>,
    mark: Option<&Mark>,
    wait_started: Instant,
) {
    let (lag, source) = match (seen_at, mark) {
        (Some(seen_at), Some(mark)) => (
            seen_at.saturating_duration_since(mark.acked).as_secs_f64(),
            LagSource::Heartbeat,
        ),
        (_, Some(mark)) => {
            let primary_now = mark.primary_now
                + chrono::Duration::from_std(
                    poll.at.saturating_duration_since(mark.primary_now_at),
                )
                .unwrap_or_default();
            (
                seconds(primary_now - poll.written_at),
                LagSource::HeartbeatAge,
            )
        }
        (_, None) => (
            seconds(poll.now - poll.written_at),
            LagSource::HeartbeatAgeStandbyClock,
        ),
    };
    with(shared, |report| {
        report.heartbeat_seen = seen_at.is_some();
        // From the commit to the last answer: how long the standby had to show it.
        report.heartbeat_wait_seconds = Some(
            poll.at
                .saturating_duration_since(mark.map_or(wait_started, |m| m.acked))
                .as_secs_f64(),
        );
        report.lag_seconds = Some(lag);
        report.lag_seconds_source = Some(source);
        record_lsns(report, poll.lsns);
    });
}

fn seconds(delta: chrono::TimeDelta) -> f64 {
    (delta.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements each version ran when every version had its own SQL file
    /// (standby_12/13/14.sql, slots_12/13.sql), comments aside.
    #[test]
    fn each_version_gets_the_sql_it_always_got() {
        use crate::sqltemplate::{assert_complete, statement};
        const STANDBY_12: &str = r#"SELECT CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END AS pause_state,
       r.pid IS NOT NULL AS receiver_running,
       r.status AS receiver_status,
       extract(epoch FROM now() - r.last_msg_receipt_time)::float8 AS receiver_silent_seconds,
       (SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'wal_receiver_timeout')
           AS receiver_timeout_seconds,
       r.sender_host,
       r.sender_port,
       r.slot_name,
       r.conninfo AS receiver_conninfo,
       r.received_lsn::text AS receiver_flushed_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint AS lag_bytes,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_receive_lsn())::bigint AS receive_lag_bytes,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN pg_stat_wal_receiver AS r ON true"#;
        const STANDBY_13: &str = r#"SELECT CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END AS pause_state,
       r.pid IS NOT NULL AS receiver_running,
       r.status AS receiver_status,
       extract(epoch FROM now() - r.last_msg_receipt_time)::float8 AS receiver_silent_seconds,
       (SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'wal_receiver_timeout')
           AS receiver_timeout_seconds,
       r.sender_host,
       r.sender_port,
       r.slot_name,
       r.conninfo AS receiver_conninfo,
       r.flushed_lsn::text AS receiver_flushed_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint AS lag_bytes,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_receive_lsn())::bigint AS receive_lag_bytes,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN pg_stat_wal_receiver AS r ON true"#;
        const STANDBY_14: &str = r#"SELECT pg_get_wal_replay_pause_state() AS pause_state,
       r.pid IS NOT NULL AS receiver_running,
       r.status AS receiver_status,
       extract(epoch FROM now() - r.last_msg_receipt_time)::float8 AS receiver_silent_seconds,
       (SELECT setting::float8 / 1000 FROM pg_settings WHERE name = 'wal_receiver_timeout')
           AS receiver_timeout_seconds,
       r.sender_host,
       r.sender_port,
       r.slot_name,
       r.conninfo AS receiver_conninfo,
       r.flushed_lsn::text AS receiver_flushed_lsn,
       pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::bigint AS lag_bytes,
       pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_receive_lsn())::bigint AS receive_lag_bytes,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes
  FROM (VALUES (1)) AS one (x)
  LEFT JOIN pg_stat_wal_receiver AS r ON true"#;
        const SLOTS_12: &str = r#"SELECT slot_name::text AS slot_name,
       active,
       active_pid,
       temporary,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       NULL::text AS wal_status,
       NULL::bigint AS safe_wal_size
  FROM pg_replication_slots
 WHERE slot_type = 'physical'
 ORDER BY slot_name"#;
        const SLOTS_13: &str = r#"SELECT slot_name::text AS slot_name,
       active,
       active_pid,
       temporary,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes,
       wal_status,
       safe_wal_size
  FROM pg_replication_slots
 WHERE slot_type = 'physical'
 ORDER BY slot_name"#;
        for major in 12..=18 {
            let v = major * 10000 + 7;
            let (standby, slots) = match major {
                12 => (STANDBY_12, SLOTS_12),
                13 => (STANDBY_13, SLOTS_13),
                _ => (STANDBY_14, SLOTS_13),
            };
            let rendered = render(STANDBY, STANDBY_BY_VERSION, v);
            assert_eq!(statement(&rendered), standby, "PostgreSQL {major}");
            let rendered = render(SLOTS, SLOTS_BY_VERSION, v);
            assert_eq!(statement(&rendered), slots, "PostgreSQL {major}");
        }
        assert_complete(STANDBY, STANDBY_BY_VERSION);
        assert_complete(SLOTS, SLOTS_BY_VERSION);
    }

    #[test]
    fn the_budget_ends_every_step_before_the_deadline() {
        let start = Instant::now();
        let budget = Budget {
            start,
            timeout: Duration::from_secs(30),
        };
        let params = ConnParams::parse("host=h user=u").unwrap();
        assert_eq!(budget.connect_limit(&params), Duration::from_secs(5));
        // The heartbeat wait: 10 s at most, and over by 0.7 T however late it starts.
        assert_eq!(
            budget.heartbeat_until(start),
            start + Duration::from_secs(10)
        );
        assert_eq!(
            budget.heartbeat_until(start + Duration::from_secs(20)),
            start + Duration::from_secs(21)
        );
        assert!(budget.servers_until() < start + budget.timeout);
        let short = Budget {
            start,
            timeout: Duration::from_secs(2),
        };
        assert_eq!(short.connect_limit(&params), Duration::from_millis(800));
        assert_eq!(
            short.session().statement_timeout,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_application_name_is_read_from_the_receivers_conninfo() {
        let conninfo = "user=postgres passfile=/root/.pgpass channel_binding=prefer \
             dbname=replication host=/tmp/x port=5432 application_name=db 2 =x \
             fallback_application_name=15/main sslmode=prefer";
        assert_eq!(
            conninfo_application_name(conninfo).as_deref(),
            Some("db 2 =x")
        );
        let none = "user=postgres host=/tmp/x port=5432 fallback_application_name=walreceiver";
        assert_eq!(conninfo_application_name(none), None);
        assert_eq!(
            conninfo_application_name("application_name=a sslmode=prefer").as_deref(),
            Some("a")
        );
        assert_eq!(
            conninfo_application_name("host=h application_name=last").as_deref(),
            Some("last")
        );
    }

    #[test]
    fn failures_tell_setup_problems_from_broken_servers() {
        let refused = Error::failed("SQLSTATE 28P01 password authentication failed for user \"x\"")
            .with_sqlstate(tokio_postgres::error::SqlState::INVALID_PASSWORD)
            .context("connecting to h:5432 as x");
        assert!(Failure::of_connect(&refused).setup);
        let down = Error::failed("error connecting to server: Connection refused (os error 111)")
            .context("connecting to h:5432 as x");
        let failure = Failure::of_connect(&down);
        assert!(!failure.setup);
        assert!(
            failure.message.contains("Connection refused"),
            "{}",
            failure.message
        );
    }
}
