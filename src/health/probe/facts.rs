//! The checks beyond lag, asked of every server once its replication questions are
//! answered: wraparound, the xmin horizon, archiving, connections, lock waits, the size
//! of `pg_wal`, settings waiting for a restart and recovery conflicts.
//!
//! All of a server's questions go out at once on its connection (one round trip; one
//! after the other through an SSH bastion, see [`super::both`]), each answer parsed on
//! its own: a query the role may not run (a missing `pg_monitor`) costs
//! that check only, recorded as an error for [`crate::health::judge`] to report.

use futures_util::future::join_all;
use tokio_postgres::{Client, Row};

use super::{get, Failure};
use crate::health::report::{
    Archiver, Connections, LockWait, RecoveryConflicts, RoleConnections, ServerFacts, Wraparound,
    XminHolder, WRAPAROUND_LIMIT,
};
use crate::sqltemplate::{render, Placeholder};

const WRAPAROUND: &str = include_str!("../../../sql/health/wraparound.sql");
const XMIN: &str = include_str!("../../../sql/health/xmin.sql");
const OLDEST_QUERY: &str = include_str!("../../../sql/health/oldest_query.sql");
const ARCHIVER: &str = include_str!("../../../sql/health/archiver.sql");
const CONNECTIONS: &str = include_str!("../../../sql/health/connections.sql");
const ROLE_CONNECTIONS: &str = include_str!("../../../sql/health/role_connections.sql");
const LOCK_WAITS: &str = include_str!("../../../sql/health/lock_waits.sql");
const SERVER_STATE: &str = include_str!("../../../sql/health/server_state.sql");
const CONFLICTS: &str = include_str!("../../../sql/health/conflicts.sql");

/// `reserved_connections` (slots for roles with pg_use_reserved_connections) appeared in
/// PostgreSQL 16.
const CONNECTIONS_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "reserved_connections",
    oldest: "0",
    since: &[(160000, "current_setting('reserved_connections')::bigint")],
}];

/// `pg_locks.waitstart` appeared in PostgreSQL 14.
const LOCK_WAITS_BY_VERSION: &[Placeholder] = &[Placeholder {
    name: "wait_start",
    oldest: "w.query_start",
    since: &[(
        140000,
        "coalesce((SELECT min(l.waitstart) FROM pg_locks AS l WHERE l.pid = w.pid AND NOT l.granted), w.query_start)",
    )],
}];

/// The questions a server gets: a name (the check it feeds) and the statement.
fn questions(version_num: i32, in_recovery: bool) -> Vec<(&'static str, String)> {
    let mut list = vec![
        ("wal_size", SERVER_STATE.to_string()),
        (
            "connections",
            render(CONNECTIONS, CONNECTIONS_BY_VERSION, version_num),
        ),
        ("role_connections", ROLE_CONNECTIONS.to_string()),
        (
            "lock_waits",
            render(LOCK_WAITS, LOCK_WAITS_BY_VERSION, version_num),
        ),
        ("archiving", ARCHIVER.to_string()),
    ];
    if in_recovery {
        list.push(("oldest_query", OLDEST_QUERY.to_string()));
        list.push(("recovery_conflicts", CONFLICTS.to_string()));
    } else {
        list.push(("wraparound", WRAPAROUND.to_string()));
        list.push(("xmin_horizon", XMIN.to_string()));
    }
    list
}

/// Asks every question (at once when `pipelined`, see [`super::both`]) and records
/// each answer (or why it has none).
pub(super) async fn read(
    client: &Client,
    version_num: i32,
    in_recovery: bool,
    pipelined: bool,
) -> ServerFacts {
    let questions = questions(version_num, in_recovery);
    let answers = if pipelined {
        join_all(
            questions
                .iter()
                .map(|(_, sql)| client.query_typed(sql, &[])),
        )
        .await
    } else {
        let mut answers = Vec::with_capacity(questions.len());
        for (_, sql) in &questions {
            answers.push(client.query_typed(sql, &[]).await);
        }
        answers
    };
    let mut facts = ServerFacts::default();
    for ((check, _), answer) in questions.iter().zip(answers) {
        let recorded = answer
            .map_err(|e| Failure::of_query(&format!("reading {}", what(check)), &e))
            .and_then(|rows| record(&mut facts, check, &rows));
        if let Err(failure) = recorded {
            facts.errors.push((check, failure.message, failure.setup));
        }
    }
    facts
}

/// What a question reads, for error messages.
fn what(check: &str) -> &'static str {
    match check {
        "wal_size" => "pg_ls_waldir() and pending_restart",
        "connections" => "the connections in pg_stat_activity",
        "role_connections" => "the sessions of roles with a CONNECTION LIMIT",
        "lock_waits" => "the lock waits",
        "archiving" => "pg_stat_archiver and pg_ls_archive_statusdir()",
        "oldest_query" => "the oldest query",
        "recovery_conflicts" => "pg_stat_database_conflicts",
        "wraparound" => "the databases' datfrozenxid",
        _ => "the xmin horizon's holders",
    }
}

fn record(facts: &mut ServerFacts, check: &str, rows: &[Row]) -> Result<(), Failure> {
    let first = || {
        rows.first()
            .ok_or_else(|| Failure::down(format!("{}: no row", what(check))))
    };
    match check {
        "wal_size" => {
            let row = first()?;
            facts.wal_bytes = Some(get::<i64>(row, "wal_bytes")?.max(0) as u64);
            facts.wal_files = Some(get::<i64>(row, "wal_files")?.max(0) as u64);
            facts.pending_restart = Some(get(row, "pending_restart")?);
        }
        "connections" => facts.connections = Some(connections(first()?)?),
        "role_connections" => {
            facts.role_connections = Some(
                rows.iter()
                    .map(|row| {
                        Ok(RoleConnections {
                            role: get(row, "role")?,
                            connection_limit: get(row, "connection_limit")?,
                            sessions: get(row, "sessions")?,
                        })
                    })
                    .collect::<Result<_, Failure>>()?,
            )
        }
        "lock_waits" => {
            facts.lock_waits = Some(rows.iter().map(lock_wait).collect::<Result<_, _>>()?)
        }
        "archiving" => facts.archiver = Some(archiver(first()?)?),
        "oldest_query" => {
            facts.oldest_query = rows.first().map(oldest_query).transpose()?;
        }
        "recovery_conflicts" => {
            facts.recovery_conflicts = Some(rows.iter().map(conflicts).collect::<Result<_, _>>()?)
        }
        "wraparound" => facts.wraparound = Some(wraparound(first()?)?),
        _ => facts.xmin_holders = Some(rows.iter().map(xmin_holder).collect::<Result<_, _>>()?),
    }
    Ok(())
}

fn connections(row: &Row) -> Result<Connections, Failure> {
    let used: i64 = get(row, "used")?;
    let max_connections: i64 = get(row, "max_connections")?;
    let reserved: i64 = get(row, "reserved")?;
    let available = (max_connections - reserved).max(1);
    Ok(Connections {
        used,
        max_connections,
        reserved,
        fraction: used as f64 / available as f64,
    })
}

fn lock_wait(row: &Row) -> Result<LockWait, Failure> {
    Ok(LockWait {
        pid: get(row, "pid")?,
        user: get(row, "user_name")?,
        database: get(row, "database")?,
        waiting_seconds: get(row, "waiting_seconds")?,
        blocker_pid: get(row, "blocker_pid")?,
        blocker_user: get(row, "blocker_user")?,
        blocker_state: get(row, "blocker_state")?,
        blocker_application: get(row, "blocker_application")?,
    })
}

fn archiver(row: &Row) -> Result<Archiver, Failure> {
    let last_archived_wal: Option<String> = get(row, "last_archived_wal")?;
    let position: Option<String> = get(row, "position_lsn")?;
    let segment_size: i64 = get(row, "wal_segment_size")?;
    let segments_behind = match (&last_archived_wal, position) {
        (Some(wal), Some(lsn)) => segments_behind(wal, &lsn, segment_size),
        _ => None,
    };
    Ok(Archiver {
        archive_mode: get(row, "archive_mode")?,
        archived_count: get(row, "archived_count")?,
        failed_count: get(row, "failed_count")?,
        last_archived_wal,
        last_failed_wal: get(row, "last_failed_wal")?,
        last_archived_age_seconds: get(row, "last_archived_age_seconds")?,
        failing: get(row, "failing")?,
        ready_count: get(row, "ready_count")?,
        segments_behind,
    })
}

/// Complete segments between the last archived WAL file and the position: the current
/// segment, still being written, is not archivable yet and does not count. None when the
/// last archived file is not a segment (a `.history` or `.partial` file) or the position
/// does not read as an LSN.
pub(crate) fn segments_behind(
    last_archived: &str,
    position: &str,
    segment_size: i64,
) -> Option<i64> {
    if last_archived.len() != 24 || !last_archived.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let segment_size = u64::try_from(segment_size).ok().filter(|s| *s > 0)?;
    let log = u64::from_str_radix(&last_archived[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&last_archived[16..24], 16).ok()?;
    let archived = log * (0x1_0000_0000 / segment_size) + seg;
    let (high, low) = position.split_once('/')?;
    let lsn = (u64::from_str_radix(high, 16).ok()? << 32) | u64::from_str_radix(low, 16).ok()?;
    let current = lsn / segment_size;
    Some((current as i64 - archived as i64 - 1).max(0))
}

fn oldest_query(row: &Row) -> Result<XminHolder, Failure> {
    Ok(XminHolder {
        kind: "query".to_string(),
        pid: get(row, "pid")?,
        user: get(row, "user_name")?,
        database: get(row, "database")?,
        application: get(row, "application")?,
        name: None,
        state: get(row, "state")?,
        xid_age: None,
        age_seconds: get(row, "age_seconds")?,
    })
}

fn conflicts(row: &Row) -> Result<RecoveryConflicts, Failure> {
    Ok(RecoveryConflicts {
        database: get(row, "database")?,
        tablespace: get(row, "confl_tablespace")?,
        lock: get(row, "confl_lock")?,
        snapshot: get(row, "confl_snapshot")?,
        bufferpin: get(row, "confl_bufferpin")?,
        deadlock: get(row, "confl_deadlock")?,
    })
}

fn wraparound(row: &Row) -> Result<Wraparound, Failure> {
    let xid_age: i64 = get(row, "xid_age")?;
    let mxid_age: i64 = get(row, "mxid_age")?;
    Ok(Wraparound {
        xid_database: get(row, "xid_database")?,
        xid_age,
        xid_fraction: xid_age as f64 / WRAPAROUND_LIMIT,
        mxid_database: get(row, "mxid_database")?,
        mxid_age,
        mxid_fraction: mxid_age as f64 / WRAPAROUND_LIMIT,
    })
}

fn xmin_holder(row: &Row) -> Result<XminHolder, Failure> {
    Ok(XminHolder {
        kind: get(row, "kind")?,
        pid: get(row, "pid")?,
        user: get(row, "user_name")?,
        database: get(row, "database")?,
        application: get(row, "application")?,
        name: get(row, "name")?,
        state: get(row, "state")?,
        xid_age: get(row, "xid_age")?,
        age_seconds: get(row, "age_seconds")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_behind_count_complete_segments_only() {
        let size = 16 << 20;
        // The segment after the archived one is being written: nothing is behind.
        assert_eq!(
            segments_behind("000000010000000000000003", "0/4000100", size),
            Some(0)
        );
        assert_eq!(
            segments_behind("000000010000000000000003", "0/7000000", size),
            Some(3)
        );
        // Across a log boundary: 256 segments of 16 MB per 4 GB.
        assert_eq!(
            segments_behind("0000000100000000000000FF", "1/2000000", size),
            Some(2)
        );
        assert_eq!(segments_behind("00000002.history", "1/2000000", size), None);
    }

    #[test]
    fn each_version_gets_its_connection_and_lock_sql() {
        use crate::sqltemplate::assert_complete;
        assert!(
            !render(CONNECTIONS, CONNECTIONS_BY_VERSION, 150007).contains("'reserved_connections'")
        );
        assert!(
            render(CONNECTIONS, CONNECTIONS_BY_VERSION, 160001).contains("'reserved_connections'")
        );
        assert!(!render(LOCK_WAITS, LOCK_WAITS_BY_VERSION, 130000).contains("l.waitstart"));
        assert!(render(LOCK_WAITS, LOCK_WAITS_BY_VERSION, 140000).contains("l.waitstart"));
        assert_complete(CONNECTIONS, CONNECTIONS_BY_VERSION);
        assert_complete(LOCK_WAITS, LOCK_WAITS_BY_VERSION);
    }
}
