//! The checks beyond lag, one server at a time: wraparound, the xmin horizon (and a
//! standby's oldest query), archiving, connections per server and per role, lock waits,
//! the size of `pg_wal` and settings waiting for a restart. Recovery conflicts are
//! counters only (Prometheus), never a status.

use super::{against, exceeded, failure_status, fmt_secs, Checks, Status, MONITOR_HINT};
use crate::health::report::{CheckLimits, ServerFacts, ServerReport, StandbyReport, XminHolder};
use crate::units::format_bytes;

/// Every check of one reachable server that answered who it is.
pub(super) fn judge(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let facts = &server.facts;
    for (check, error, setup) in &facts.errors {
        checks.push_for(
            failure_status(*setup),
            label,
            check,
            error.clone(),
            setup.then_some(MONITOR_HINT),
        );
    }
    wraparound(checks, label, server, limits);
    xmin_horizon(checks, label, server, limits);
    oldest_query(checks, label, server, limits);
    archiving(checks, label, server, limits);
    connections(checks, label, server, limits);
    lock_waits(checks, label, server, limits);
    wal_size(checks, label, server, limits);
    if let Some(pending) = &server.facts.pending_restart {
        if pending.is_empty() {
            checks.push_for(
                Status::Ok,
                label,
                "pending_restart",
                "no setting waits for a restart".into(),
                None,
            );
        } else {
            checks.push_for(
                Status::Warning,
                label,
                "pending_restart",
                format!("settings changed but waiting for a restart: {}", pending.join(", ")),
                Some("restart the server in a maintenance window, or revert the change (ALTER SYSTEM RESET, postgresql.conf) and reload"),
            );
        }
    }
}

/// A standby's hot_standby_feedback holds the primary's horizon as long as the standby's
/// oldest query runs: the WAL sender carrying it (matched by the standby's
/// application_name) or the slot it streams through gets that query's age, which the
/// primary cannot know itself.
pub(super) fn feedback_times(facts: &mut ServerFacts, standbys: &[StandbyReport]) {
    for holder in facts.xmin_holders.iter_mut().flatten() {
        if holder.age_seconds.is_some() {
            continue;
        }
        let standby = standbys.iter().find(|s| match holder.kind.as_str() {
            "hot_standby_feedback" => {
                s.application_name.is_some() && s.application_name == holder.application
            }
            "replication_slot" => {
                holder.state.as_deref() == Some("active")
                    && s.wal_receiver.as_ref().and_then(|r| r.slot_name.as_ref())
                        == holder.name.as_ref()
                    && holder.name.is_some()
            }
            _ => false,
        });
        if let Some(query) = standby.and_then(|s| s.server.facts.oldest_query.as_ref()) {
            holder.age_seconds = query.age_seconds;
        }
    }
}

/// `12.3456 %`.
fn percent(fraction: f64) -> String {
    format!("{:.4} %", fraction * 100.0)
}

fn wraparound(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let Some(w) = &server.facts.wraparound else {
        return;
    };
    let warn = Some(limits.xid_age_warn);
    let crit = Some(limits.xid_age_crit);
    let status = against(w.xid_fraction, warn, crit).worst(against(w.mxid_fraction, warn, crit));
    let message = format!(
        "oldest datfrozenxid: database {:?}, age {} ({} of 2^31); oldest datminmxid: database {:?}, age {} ({}){}",
        w.xid_database,
        w.xid_age,
        percent(w.xid_fraction),
        w.mxid_database,
        w.mxid_age,
        percent(w.mxid_fraction),
        exceeded(status, &Some(percent(limits.xid_age_warn)), &Some(percent(limits.xid_age_crit)))
    );
    checks.push_for(
        status,
        label,
        "wraparound",
        message,
        (status != Status::Ok).then_some("VACUUM (FREEZE) the database named (vacuumdb --freeze -d NAME; one with datallowconn = false needs ALTER DATABASE NAME ALLOW_CONNECTIONS true first), and find what keeps autovacuum from freezing it (the xmin horizon check)"),
    );
}

/// A holder of the horizon for people: what it is, who, for how long.
fn describe(holder: &XminHolder) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let who = format!(
        "user {}, database {}, application {:?}",
        opt(&holder.user),
        opt(&holder.database),
        opt(&holder.application)
    );
    let pid = holder
        .pid
        .map(|p| p.to_string())
        .unwrap_or_else(|| "?".into());
    let mut text = match holder.kind.as_str() {
        "idle_in_transaction" => format!("session pid {pid} idle in transaction ({who})"),
        "transaction" | "query" => {
            format!("transaction of pid {pid}, {} ({who})", opt(&holder.state))
        }
        "prepared_transaction" => format!(
            "prepared transaction {:?} (owner {}, database {})",
            opt(&holder.name),
            opt(&holder.user),
            opt(&holder.database)
        ),
        "replication_slot" => format!(
            "replication slot {:?} ({})",
            opt(&holder.name),
            opt(&holder.state)
        ),
        _ => format!(
            "hot_standby_feedback of standby {:?} (WAL sender pid {pid})",
            opt(&holder.application)
        ),
    };
    if let Some(seconds) = holder.age_seconds {
        if matches!(
            holder.kind.as_str(),
            "hot_standby_feedback" | "replication_slot"
        ) {
            text.push_str(&format!(
                ", its standby's oldest query running for {} s",
                fmt_secs(seconds)
            ));
        } else {
            text.push_str(&format!(", for {} s", fmt_secs(seconds)));
        }
    }
    if let Some(xids) = holder.xid_age {
        text.push_str(&format!(", {xids} transactions old"));
    }
    text
}

fn holder_status(holder: &XminHolder, limits: &CheckLimits) -> Status {
    let by_time = holder.age_seconds.map_or(Status::Ok, |seconds| {
        against(
            seconds,
            Some(limits.xmin_age_warn_seconds),
            Some(limits.xmin_age_crit_seconds),
        )
    });
    // An inactive slot holds the horizon until someone drops it.
    if holder.kind == "replication_slot" && holder.state.as_deref() == Some("inactive") {
        by_time.worst(Status::Warning)
    } else {
        by_time
    }
}

fn holder_hint(holder: &XminHolder) -> &'static str {
    match holder.kind.as_str() {
        "idle_in_transaction" => "the application left a transaction open: fix it, or end the session (SELECT pg_terminate_backend(PID)); idle_in_transaction_session_timeout prevents it",
        "prepared_transaction" => "COMMIT PREPARED or ROLLBACK PREPARED the transaction (in its database), once its transaction manager is known to have given up on it",
        "replication_slot" => "a slot nobody uses keeps vacuum from removing rows: drop it if its consumer is gone (SELECT pg_drop_replication_slot('NAME'))",
        "hot_standby_feedback" => "a long query on that standby holds vacuum back on the primary: find it there (its oldest_query check) or cancel it",
        _ => "a long transaction: find out what it does, or cancel it (SELECT pg_cancel_backend(PID))",
    }
}

fn xmin_horizon(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let Some(holders) = &server.facts.xmin_holders else {
        return;
    };
    let warn = format!("{} s", fmt_secs(limits.xmin_age_warn_seconds));
    let crit = format!("{} s", fmt_secs(limits.xmin_age_crit_seconds));
    let mut problems = 0;
    for holder in holders {
        let status = holder_status(holder, limits);
        if status != Status::Ok && problems < 5 {
            problems += 1;
            let over = exceeded(status, &Some(warn.clone()), &Some(crit.clone()));
            checks.push_for(
                status,
                label,
                "xmin_horizon",
                format!("xmin horizon held by {}{over}", describe(holder)),
                Some(holder_hint(holder)),
            );
        }
    }
    if problems == 0 {
        let message = match holders.first() {
            Some(oldest) => format!("oldest holder of the xmin horizon: {}", describe(oldest)),
            None => "nothing holds the xmin horizon back".to_string(),
        };
        checks.push_for(Status::Ok, label, "xmin_horizon", message, None);
    }
}

fn oldest_query(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    if server.in_recovery != Some(true) || server.facts.connections.is_none() {
        return;
    }
    let Some(query) = &server.facts.oldest_query else {
        checks.push_for(
            Status::Ok,
            label,
            "oldest_query",
            "no query holds a snapshot".into(),
            None,
        );
        return;
    };
    let status = holder_status(query, limits);
    let over = exceeded(
        status,
        &Some(format!("{} s", fmt_secs(limits.xmin_age_warn_seconds))),
        &Some(format!("{} s", fmt_secs(limits.xmin_age_crit_seconds))),
    );
    checks.push_for(
        status,
        label,
        "oldest_query",
        format!("oldest query that can delay replay: {}{over}", describe(query)),
        (status != Status::Ok).then_some("it delays replay (max_standby_streaming_delay) or, with hot_standby_feedback, vacuum on the primary: find out what it does, or cancel it (SELECT pg_cancel_backend(PID))"),
    );
}

fn archiving(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let Some(a) = &server.facts.archiver else {
        return;
    };
    let applies = match server.in_recovery {
        Some(false) => a.archive_mode != "off",
        Some(true) => a.archive_mode == "always",
        None => false,
    };
    if !applies {
        return;
    }
    let last = match (&a.last_archived_wal, a.last_archived_age_seconds) {
        (Some(wal), Some(age)) => format!("last archived {wal} {} s ago", fmt_secs(age)),
        _ => "nothing archived yet".to_string(),
    };
    let behind = a
        .segments_behind
        .map(|n| format!(", {n} segments behind"))
        .unwrap_or_default();
    let waiting = format!("{} .ready{behind}", a.ready_count);
    let backlog = a.ready_count.max(a.segments_behind.unwrap_or(0)) as f64;
    let status = against(
        backlog,
        Some(limits.archive_ready_warn as f64),
        Some(limits.archive_ready_crit as f64),
    );
    if a.failing {
        checks.push_for(
            Status::Critical,
            label,
            "archiving",
            format!(
                "archiving fails: the last failure ({}) is newer than the last success; {last}; {waiting}",
                a.last_failed_wal.as_deref().unwrap_or("?")
            ),
            Some("see the server's log for archive_command's error (the archive's disk, network, permissions): WAL piles up in pg_wal until it works again"),
        );
        return;
    }
    let over = exceeded(
        status,
        &Some(limits.archive_ready_warn.to_string()),
        &Some(limits.archive_ready_crit.to_string()),
    );
    checks.push_for(
        status,
        label,
        "archiving",
        format!("{last}; {waiting}{over}"),
        (status != Status::Ok).then_some(
            "archiving falls behind: check archive_command's speed and the archive's disk",
        ),
    );
}

/// Fractions of connection slots: at the threshold counts (a role at 4 of 5 is at 80 %).
fn at_least(value: f64, warn: f64, crit: f64) -> Status {
    if value >= crit {
        Status::Critical
    } else if value >= warn {
        Status::Warning
    } else {
        Status::Ok
    }
}

fn connections(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let (warn, crit) = (limits.connections_warn, limits.connections_crit);
    if let Some(c) = &server.facts.connections {
        let status = at_least(c.fraction, warn, crit);
        checks.push_for(
            status,
            label,
            "connections",
            format!(
                "{} of {} client connections used ({:.0} %; max_connections {} minus {} reserved)",
                c.used,
                c.max_connections - c.reserved,
                c.fraction * 100.0,
                c.max_connections,
                c.reserved
            ),
            (status != Status::Ok).then_some("find who holds the connections (pg_stat_activity by usename and application_name); a pooler, fewer Odoo workers or a higher max_connections (restart) make room"),
        );
    }
    let Some(roles) = &server.facts.role_connections else {
        return;
    };
    let mut problems = 0;
    for role in roles.iter().filter(|r| r.connection_limit > 0) {
        let fraction = role.sessions as f64 / role.connection_limit as f64;
        let status = at_least(fraction, warn, crit);
        if status != Status::Ok {
            problems += 1;
            checks.push_for(
                status,
                label,
                "role_connections",
                format!(
                    "role {:?}: {} of its CONNECTION LIMIT {} sessions ({:.0} %)",
                    role.role,
                    role.sessions,
                    role.connection_limit,
                    fraction * 100.0
                ),
                Some("at its limit the customer's site gets no connection: Odoo opens up to containers × (workers + cron) × DB_MAXCONN; raise the limit (ALTER ROLE … CONNECTION LIMIT) or lower the workers"),
            );
        }
    }
    if problems == 0 {
        checks.push_for(
            Status::Ok,
            label,
            "role_connections",
            format!(
                "{} roles with a CONNECTION LIMIT, all below {:.0} % of it",
                roles.len(),
                warn * 100.0
            ),
            None,
        );
    }
}

fn lock_waits(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let Some(waits) = &server.facts.lock_waits else {
        return;
    };
    let (warn, crit) = (limits.lock_wait_warn_seconds, limits.lock_wait_crit_seconds);
    let mut problems = 0;
    for wait in waits {
        let seconds = wait.waiting_seconds.unwrap_or(0.0);
        let status = against(seconds, Some(warn), Some(crit));
        if status == Status::Ok || problems >= 5 {
            continue;
        }
        problems += 1;
        let blocker = match wait.blocker_pid {
            Some(pid) => format!(
                "blocked by pid {pid} (user {}, {}, application {:?})",
                wait.blocker_user.as_deref().unwrap_or("?"),
                wait.blocker_state.as_deref().unwrap_or("?"),
                wait.blocker_application.as_deref().unwrap_or("?")
            ),
            None => "its blocker already gone".to_string(),
        };
        checks.push_for(
            status,
            label,
            "lock_wait",
            format!(
                "pid {} (user {}, database {}) waits for a lock for {} s, {blocker}{}",
                wait.pid,
                wait.user.as_deref().unwrap_or("?"),
                wait.database.as_deref().unwrap_or("?"),
                fmt_secs(seconds),
                exceeded(
                    status,
                    &Some(format!("{} s", fmt_secs(warn))),
                    &Some(format!("{} s", fmt_secs(crit)))
                )
            ),
            Some("find what the blocking session does (pg_stat_activity); end it if it is stuck (SELECT pg_terminate_backend(PID))"),
        );
    }
    if problems == 0 {
        checks.push_for(
            Status::Ok,
            label,
            "lock_wait",
            format!(
                "no session waits for a lock longer than {} s",
                fmt_secs(warn)
            ),
            None,
        );
    }
}

fn wal_size(checks: &mut Checks, label: &str, server: &ServerReport, limits: &CheckLimits) {
    let Some(bytes) = server.facts.wal_bytes else {
        return;
    };
    let status = against(
        bytes as f64,
        Some(limits.wal_size_warn_bytes as f64),
        Some(limits.wal_size_crit_bytes as f64),
    );
    checks.push_for(
        status,
        label,
        "wal_size",
        format!(
            "pg_wal holds {} in {} files{}",
            format_bytes(bytes),
            server.facts.wal_files.unwrap_or(0),
            exceeded(
                status,
                &Some(format_bytes(limits.wal_size_warn_bytes)),
                &Some(format_bytes(limits.wal_size_crit_bytes))
            )
        ),
        (status != Status::Ok).then_some("WAL piles up when archiving fails, a slot retains it or max_wal_size is high: see the archiving and slot checks; a full pg_wal stops the server"),
    );
}

#[cfg(test)]
mod tests {
    use super::super::tests::{healthy, problems, rules};
    use super::super::*;
    use crate::health::report::{
        Archiver, Connections, LockWait, RoleConnections, Wraparound, XminHolder,
    };

    fn found(facts: ClusterFacts) -> Vec<(Status, &'static str, String)> {
        let (_, checks) = cluster(facts, &rules());
        problems(&checks)
    }

    #[test]
    fn wraparound_is_a_fraction_of_2_31_naming_the_database() {
        let mut facts = healthy();
        facts.primary.server.facts.wraparound = Some(Wraparound {
            xid_database: "template0".into(),
            xid_age: 1_200_000_000,
            xid_fraction: 1_200_000_000.0 / 2_147_483_648.0,
            mxid_database: "postgres".into(),
            mxid_age: 5,
            mxid_fraction: 5.0 / 2_147_483_648.0,
        });
        let found = found(facts);
        assert!(
            found.iter().any(|(s, c, m)| *s == Status::Warning
                && *c == "wraparound"
                && m.starts_with("oldest datfrozenxid: database \"template0\", age 1200000000 (55.8794 % of 2^31)")),
            "{found:?}"
        );
    }

    fn holder(kind: &str, state: Option<&str>, seconds: Option<f64>) -> XminHolder {
        XminHolder {
            kind: kind.into(),
            pid: Some(42),
            user: Some("u".into()),
            database: Some("d".into()),
            application: Some("app".into()),
            name: Some("gid1".into()),
            state: state.map(Into::into),
            xid_age: Some(12),
            age_seconds: seconds,
        }
    }

    #[test]
    fn xmin_holders_are_named_and_judged_by_time() {
        let mut facts = healthy();
        facts.primary.server.facts.xmin_holders = Some(vec![
            holder(
                "idle_in_transaction",
                Some("idle in transaction"),
                Some(7200.0),
            ),
            holder("prepared_transaction", None, Some(30000.0)),
            holder("replication_slot", Some("inactive"), None),
            holder("hot_standby_feedback", Some("streaming"), None),
        ]);
        let found = found(facts);
        let xmin: Vec<_> = found
            .iter()
            .filter(|(_, c, _)| *c == "xmin_horizon")
            .collect();
        assert_eq!(xmin.len(), 3, "{found:?}");
        assert_eq!(xmin[0].0, Status::Warning);
        assert!(xmin[0].2.starts_with("xmin horizon held by session pid 42 idle in transaction (user u, database d, application \"app\"), for 7200 s, 12 transactions old > warn 3600 s"), "{xmin:?}");
        assert_eq!(xmin[1].0, Status::Critical);
        assert!(xmin[1].2.contains("prepared transaction \"gid1\""));
        assert!(xmin[2].2.contains("replication slot \"gid1\" (inactive)"));
        // Only a feedback WAL sender, whose time is not known: OK, named.
        let mut facts = healthy();
        facts.primary.server.facts.xmin_holders =
            Some(vec![holder("hot_standby_feedback", None, None)]);
        let (_, checks) = cluster(facts, &rules());
        assert!(checks.iter().any(|c| c.check == "xmin_horizon"
            && c.status == Status::Ok
            && c.message
                .contains("hot_standby_feedback of standby \"app\"")));
    }

    #[test]
    fn archiving_failures_and_backlogs() {
        let archiver = |failing: bool, ready: i64| Archiver {
            archive_mode: "on".into(),
            archived_count: 3,
            failed_count: 1,
            last_archived_wal: Some("000000010000000000000003".into()),
            last_failed_wal: Some("000000010000000000000004".into()),
            last_archived_age_seconds: Some(5.0),
            failing,
            ready_count: ready,
            segments_behind: Some(ready),
        };
        let mut facts = healthy();
        facts.primary.server.facts.archiver = Some(archiver(true, 1));
        assert!(found(facts).iter().any(|(s, c, m)| *s == Status::Critical
            && *c == "archiving"
            && m.starts_with("archiving fails: the last failure (000000010000000000000004)")));
        let mut facts = healthy();
        facts.primary.server.facts.archiver = Some(archiver(false, 20));
        assert!(found(facts).iter().any(|(s, c, m)| *s == Status::Warning
            && *c == "archiving"
            && m.ends_with("> warn 16")));
        // archive_mode on does not archive on a standby.
        let mut facts = healthy();
        facts.standbys[0].server.facts.archiver = Some(archiver(true, 20));
        assert!(found(facts).is_empty());
    }

    #[test]
    fn connections_per_server_and_per_role_count_at_the_threshold() {
        let mut facts = healthy();
        facts.primary.server.facts.connections = Some(Connections {
            used: 6,
            max_connections: 10,
            reserved: 3,
            fraction: 6.0 / 7.0,
        });
        facts.primary.server.facts.role_connections = Some(vec![
            RoleConnections {
                role: "acme".into(),
                connection_limit: 5,
                sessions: 4,
            },
            RoleConnections {
                role: "quiet".into(),
                connection_limit: 50,
                sessions: 1,
            },
        ]);
        let found = found(facts);
        assert!(
            found.iter().any(|(s, c, m)| *s == Status::Warning
                && *c == "connections"
                && m.starts_with("6 of 7 client connections used (86 %")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|(s, c, m)| *s == Status::Warning
                && *c == "role_connections"
                && m == "role \"acme\": 4 of its CONNECTION LIMIT 5 sessions (80 %)"),
            "{found:?}"
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn lock_waits_name_their_blocker_and_pending_restart_its_settings() {
        let mut facts = healthy();
        facts.primary.server.facts.lock_waits = Some(vec![LockWait {
            pid: 10,
            user: Some("u".into()),
            database: Some("d".into()),
            waiting_seconds: Some(40.0),
            blocker_pid: Some(11),
            blocker_user: Some("v".into()),
            blocker_state: Some("idle in transaction".into()),
            blocker_application: Some("psql".into()),
        }]);
        facts.standbys[0].server.facts.pending_restart = Some(vec!["shared_buffers".into()]);
        facts.standbys[0].server.facts.wal_bytes = Some(5 << 30);
        facts.standbys[0].server.facts.wal_files = Some(320);
        let found = found(facts);
        assert!(found.iter().any(|(_, c, m)| *c == "lock_wait"
            && m.starts_with("pid 10 (user u, database d) waits for a lock for 40 s, blocked by pid 11 (user v, idle in transaction")), "{found:?}");
        assert!(found.iter().any(|(s, c, m)| *s == Status::Warning
            && *c == "pending_restart"
            && m.ends_with(": shared_buffers")));
        assert!(
            found.iter().any(|(s, c, m)| *s == Status::Warning
                && *c == "wal_size"
                && m.starts_with("pg_wal holds 5.0 GB in 320 files > warn 4.0 GB")),
            "{found:?}"
        );
    }
}
