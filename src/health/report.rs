//! What a health run found, as one serde model: the JSON output is this model, and the
//! other formats (text, nagios, prometheus, statsd) are views of it.
//!
//! The field names are a published interface (monitoring scripts read the JSON), so they
//! change only with [`SCHEMA_VERSION`]. The probes fill the facts (what each server
//! said), [`super::judge`] adds the statuses and the checks; keeping the two apart is what
//! makes the judging testable without servers.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::ClusterKind;
use crate::units::Threshold;

pub use crate::output::check::{Check, Status, SCHEMA_VERSION};

/// Lag thresholds, one per kind: the smallest given of each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

impl Limits {
    pub fn from_thresholds(thresholds: &[Threshold]) -> Limits {
        let mut limits = Limits::default();
        for threshold in thresholds {
            match *threshold {
                Threshold::Bytes(bytes) => {
                    limits.bytes = Some(limits.bytes.map_or(bytes, |b| b.min(bytes)))
                }
                Threshold::Time(time) => {
                    let seconds = time.as_secs_f64();
                    limits.seconds = Some(limits.seconds.map_or(seconds, |s| s.min(seconds)))
                }
            }
        }
        limits
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Thresholds {
    pub warn: Limits,
    pub crit: Limits,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub status: Status,
    pub exit_code: u8,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    /// `[health] timeout`: the run never outlives it.
    pub timeout_seconds: f64,
    /// True when the deadline cut the run short (then the status is UNKNOWN).
    pub deadline_hit: bool,
    pub thresholds: Thresholds,
    /// The thresholds of the checks beyond lag.
    pub limits: CheckLimits,
    pub clusters: Vec<ClusterReport>,
    /// Every check of every cluster, problems and successes alike.
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    pub name: String,
    pub kind: ClusterKind,
    pub status: Status,
    pub primary: PrimaryReport,
    pub standbys: Vec<StandbyReport>,
    /// Physical replication slots on the primary; null when they could not be read.
    pub slots: Option<Vec<SlotReport>>,
}

/// What every server reports, primary or standby.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerReport {
    /// `primary`, or the standby's configured name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    pub status: Status,
    /// Whether odoo-db could connect to it.
    pub reachable: bool,
    /// Why it could not be reached or asked.
    pub error: Option<String>,
    pub server_version_num: Option<i32>,
    pub in_recovery: Option<bool>,
    /// Its `cluster_name` setting (the default application_name of its WAL receiver).
    #[serde(skip)]
    pub cluster_name: Option<String>,
    /// Whether `error` is odoo-db's own problem (login refused, missing grant or
    /// table: UNKNOWN) rather than the server's (unreachable, broken: CRITICAL).
    #[serde(skip)]
    pub error_is_setup: bool,
    /// The step it was at when the deadline or its budget ran out.
    #[serde(skip)]
    pub step: Option<&'static str>,
    /// `pg_control_system()`'s, as text (a 64-bit number JSON readers would round).
    pub system_identifier: Option<String>,
    /// The primary's current timeline; on a server in recovery, the one its WAL
    /// receiver streams on (else its last restartpoint's).
    pub timeline: Option<i64>,
    /// Where a server in recovery streams from: its WAL receiver's `host:port`.
    pub upstream: Option<String>,
    /// What it said beyond replication (wraparound, xmin horizon, archiving,
    /// connections, WAL, settings).
    #[serde(flatten)]
    pub facts: ServerFacts,
}

/// The checks beyond lag, as one server answered them; each null when not asked (the
/// primary's checks on a standby and the other way round) or not answered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerFacts {
    /// Primary: the oldest `age(datfrozenxid)` and `mxid_age(datminmxid)`.
    pub wraparound: Option<Wraparound>,
    /// Primary: what holds back the xmin horizon, oldest first (at most 20).
    pub xmin_holders: Option<Vec<XminHolder>>,
    /// Standby: its oldest transaction holding a snapshot (null: none).
    pub oldest_query: Option<XminHolder>,
    pub archiver: Option<Archiver>,
    pub connections: Option<Connections>,
    /// Roles with a CONNECTION LIMIT and their sessions.
    pub role_connections: Option<Vec<RoleConnections>>,
    /// Sessions waiting for a lock, longest first (at most 20).
    pub lock_waits: Option<Vec<LockWait>>,
    /// The size of `pg_wal` (`pg_ls_waldir()`).
    pub wal_bytes: Option<u64>,
    pub wal_files: Option<u64>,
    /// Settings changed but waiting for a restart.
    pub pending_restart: Option<Vec<String>>,
    /// Standby: queries cancelled by recovery conflicts, per database (counters).
    pub recovery_conflicts: Option<Vec<RecoveryConflicts>>,
    /// The checks that could not be asked: (check, why, whether odoo-db's setup).
    #[serde(skip)]
    pub errors: Vec<(&'static str, String, bool)>,
}

/// 2^31: how far a transaction ID (or multixact ID) may age before wraparound stops
/// the cluster; the fractions are of this.
pub const WRAPAROUND_LIMIT: f64 = 2_147_483_648.0;

#[derive(Clone, Debug, Serialize)]
pub struct Wraparound {
    pub xid_database: String,
    pub xid_age: i64,
    /// `xid_age / 2^31`.
    pub xid_fraction: f64,
    pub mxid_database: String,
    pub mxid_age: i64,
    pub mxid_fraction: f64,
}

/// One holder of the xmin horizon.
#[derive(Clone, Debug, Serialize)]
pub struct XminHolder {
    /// `transaction`, `idle_in_transaction`, `hot_standby_feedback` (a WAL sender),
    /// `prepared_transaction`, `replication_slot`; on a standby `query`.
    pub kind: String,
    pub pid: Option<i32>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub application: Option<String>,
    /// The prepared transaction's gid, the slot's name.
    pub name: Option<String>,
    /// A session's state; a slot's `active` / `inactive`.
    pub state: Option<String>,
    /// Its age in transactions (null on a standby).
    pub xid_age: Option<i64>,
    /// Since its transaction began (null for slots and WAL senders: not known).
    pub age_seconds: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Archiver {
    /// `off`, `on`, `always`.
    pub archive_mode: String,
    pub archived_count: i64,
    pub failed_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_failed_wal: Option<String>,
    pub last_archived_age_seconds: Option<f64>,
    /// The last failure is newer than the last success.
    pub failing: bool,
    /// `.ready` files in `pg_wal/archive_status`: segments waiting to be archived.
    pub ready_count: i64,
    /// Complete segments between the last archived one and the current one (null:
    /// nothing archived yet, or the last archived file is not a segment).
    pub segments_behind: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Connections {
    /// Client backends (odoo-db's own session not counted).
    pub used: i64,
    pub max_connections: i64,
    /// `superuser_reserved_connections` (+ `reserved_connections` on 16+).
    pub reserved: i64,
    /// `used / (max_connections - reserved)`.
    pub fraction: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RoleConnections {
    pub role: String,
    pub connection_limit: i64,
    pub sessions: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LockWait {
    pub pid: i32,
    pub user: Option<String>,
    pub database: Option<String>,
    pub waiting_seconds: Option<f64>,
    pub blocker_pid: Option<i32>,
    pub blocker_user: Option<String>,
    pub blocker_state: Option<String>,
    pub blocker_application: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecoveryConflicts {
    pub database: String,
    pub tablespace: i64,
    pub lock: i64,
    pub snapshot: i64,
    pub bufferpin: i64,
    pub deadlock: i64,
}

/// The thresholds of the checks beyond lag (`[health]`), as the run used them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CheckLimits {
    pub xid_age_warn: f64,
    pub xid_age_crit: f64,
    pub xmin_age_warn_seconds: f64,
    pub xmin_age_crit_seconds: f64,
    pub connections_warn: f64,
    pub connections_crit: f64,
    pub archive_ready_warn: u64,
    pub archive_ready_crit: u64,
    pub lock_wait_warn_seconds: f64,
    pub lock_wait_crit_seconds: f64,
    pub wal_size_warn_bytes: u64,
    pub wal_size_crit_bytes: u64,
}

impl CheckLimits {
    pub fn from_config(health: &crate::config::HealthConfig) -> CheckLimits {
        CheckLimits {
            xid_age_warn: health.xid_age_warn,
            xid_age_crit: health.xid_age_crit,
            xmin_age_warn_seconds: health.xmin_age_warn.as_secs_f64(),
            xmin_age_crit_seconds: health.xmin_age_crit.as_secs_f64(),
            connections_warn: health.connections_warn,
            connections_crit: health.connections_crit,
            archive_ready_warn: health.archive_ready_warn,
            archive_ready_crit: health.archive_ready_crit,
            lock_wait_warn_seconds: health.lock_wait_warn.as_secs_f64(),
            lock_wait_crit_seconds: health.lock_wait_crit.as_secs_f64(),
            wal_size_warn_bytes: health.wal_size_warn,
            wal_size_crit_bytes: health.wal_size_crit,
        }
    }
}

impl Default for CheckLimits {
    fn default() -> CheckLimits {
        CheckLimits::from_config(&crate::config::HealthConfig::default())
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PrimaryReport {
    #[serde(flatten)]
    pub server: ServerReport,
    /// `pg_current_wal_lsn()` right after the heartbeat commit.
    pub current_wal_lsn: Option<String>,
    /// The heartbeat counter this run wrote (null: not written).
    pub heartbeat: Option<i64>,
    /// Why the heartbeat could not be written.
    pub heartbeat_error: Option<String>,
    /// The primary's WAL senders (`pg_stat_replication`, without startup/backup rows).
    pub replication: Option<Vec<ReplicationRow>>,
    #[serde(skip)]
    pub heartbeat_error_is_setup: bool,
    #[serde(skip)]
    pub replication_error: Option<(String, bool)>,
    #[serde(skip)]
    pub slots_error: Option<(String, bool)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReplicationRow {
    /// The WAL sender's pid, to match `pg_replication_slots.active_pid`.
    #[serde(skip)]
    pub pid: Option<i32>,
    pub application_name: String,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub client_addr: Option<String>,
}

/// How the time lag was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LagSource {
    /// This run's heartbeat was seen on the standby: measured end to end, on odoo-db's
    /// monotonic clock (no clock skew).
    Heartbeat,
    /// This run's heartbeat was not seen within the wait: the age, on the primary's
    /// clock, of the newest heartbeat the standby shows (what the contract calls the
    /// lower bound: it catches lags far longer than one run).
    HeartbeatAge,
    /// The primary could not be asked: the age of the newest heartbeat the standby
    /// shows, on the standby's own clock.
    HeartbeatAgeStandbyClock,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StandbyReport {
    #[serde(flatten)]
    pub server: ServerReport,
    /// The standby's application_name in the primary's `pg_stat_replication`: the
    /// configured one, else the one its WAL sender was found under.
    pub application_name: Option<String>,
    /// How its WAL sender was found: `config` (the configured application_name),
    /// `replication_slot` (the slot it streams through), `primary_conninfo` (the
    /// application_name its WAL receiver connects with), `cluster_name`, or `default`
    /// (`walreceiver`); null when it could not be looked for.
    #[serde(rename = "application_name_source")]
    pub matched_by: Option<&'static str>,
    /// Its row in the primary's `pg_stat_replication` (null: none, or not known).
    pub replication_state: Option<String>,
    pub sync_state: Option<String>,
    pub wal_receiver: Option<WalReceiver>,
    /// `not paused`, `pause requested` or `paused`.
    pub replay_pause_state: Option<String>,
    pub receive_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    /// WAL the standby has not replayed: the primary's position minus the standby's
    /// replay position, computed by the standby's `pg_wal_lsn_diff`.
    pub lag_bytes: Option<u64>,
    /// Of that, not yet received (primary position minus receive position).
    pub receive_lag_bytes: Option<u64>,
    /// Received but not yet replayed (receive position minus replay position).
    pub replay_backlog_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub lag_seconds_source: Option<LagSource>,
    /// Whether this run's heartbeat was seen on the standby.
    pub heartbeat_seen: bool,
    /// How long odoo-db waited for it.
    pub heartbeat_wait_seconds: Option<f64>,
    #[serde(skip)]
    pub heartbeat_error: Option<(String, bool)>,
    #[serde(skip)]
    pub state_error: Option<(String, bool)>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WalReceiver {
    /// False when `pg_stat_wal_receiver` has no row: no WAL receiver runs.
    pub running: bool,
    /// `streaming`, `starting`, `waiting`, `restarting`, `stopping`, `stopped`; null
    /// when the role may not read it.
    pub status: Option<String>,
    /// Time since the last message from the primary.
    pub last_message_age_seconds: Option<f64>,
    /// `wal_receiver_timeout` (0: disabled).
    pub timeout_seconds: Option<f64>,
    pub sender_host: Option<String>,
    pub sender_port: Option<i32>,
    pub slot_name: Option<String>,
    pub flushed_lsn: Option<String>,
    /// The application_name its connection to the primary uses, read from
    /// `pg_stat_wal_receiver.conninfo` (None: not set there, or not readable). The
    /// conninfo itself is never reported.
    #[serde(skip)]
    pub application_name: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SlotReport {
    pub name: String,
    pub active: bool,
    /// The pid of the WAL sender using it, to match `pg_stat_replication.pid`.
    #[serde(skip)]
    pub active_pid: Option<i32>,
    pub temporary: bool,
    /// WAL the slot keeps on the primary (`pg_current_wal_lsn() - restart_lsn`).
    pub retained_bytes: Option<i64>,
    /// `reserved`, `extended`, `unreserved`, `lost` (PostgreSQL 13+; null before).
    pub wal_status: Option<String>,
    pub safe_wal_size_bytes: Option<i64>,
}

impl ServerReport {
    pub fn new(name: &str, address: String) -> ServerReport {
        ServerReport {
            name: name.to_string(),
            address,
            ..ServerReport::default()
        }
    }

    /// The label used in messages and outputs.
    pub fn label(&self, role: &str) -> String {
        if role == "primary" {
            format!("primary {}", self.address)
        } else {
            format!("standby {}", self.name)
        }
    }
}

/// `150004` → `15.4`; `90624` → `9.6.24`.
pub fn version_text(num: i32) -> String {
    if num >= 100_000 {
        format!("{}.{}", num / 10_000, num % 10_000)
    } else {
        format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn worst_state_never_lets_unknown_hide_a_problem() {
        assert_eq!(Status::Unknown.worst(Status::Critical), Status::Critical);
        assert_eq!(Status::Warning.worst(Status::Unknown), Status::Warning);
        assert_eq!(Status::Ok.worst(Status::Unknown), Status::Unknown);
        assert_eq!(Status::worst_of([]), Status::Ok);
    }

    #[test]
    fn limits_keep_the_smallest_of_each_kind() {
        let limits = Limits::from_thresholds(&[
            Threshold::Bytes(1 << 30),
            Threshold::Time(Duration::from_secs(30)),
            Threshold::Bytes(16 << 20),
        ]);
        assert_eq!(limits.bytes, Some(16 << 20));
        assert_eq!(limits.seconds, Some(30.0));
    }

    #[test]
    fn versions_read_like_postgres_prints_them() {
        assert_eq!(version_text(150004), "15.4");
        assert_eq!(version_text(120019), "12.19");
        assert_eq!(version_text(90624), "9.6.24");
    }
}
