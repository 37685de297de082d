//! The checks beyond lag in the formats that carry numbers: Prometheus families (base
//! units, `odoo_db_` prefix, one sample per server that answered), statsd gauges and
//! Nagios perfdata. Text and JSON need nothing here: the checks and the report carry
//! them.

use crate::health::report::{ClusterReport, Report, ServerReport};
use crate::output::nagios::{perf, perf_number};
use crate::output::prometheus::{status_number, Exposition};
use crate::output::statsd::segment;

/// Every server of every cluster, with its cluster, its name and its role.
fn servers(report: &Report) -> Vec<(&ClusterReport, &ServerReport, &'static str)> {
    let mut list = Vec::new();
    for cluster in &report.clusters {
        list.push((cluster, &cluster.primary.server, "primary"));
        for standby in &cluster.standbys {
            list.push((cluster, &standby.server, "standby"));
        }
    }
    list
}

/// A gauge family with one sample per server that has the value.
fn per_server(
    out: &mut Exposition,
    report: &Report,
    name: &str,
    help: &str,
    value: impl Fn(&ServerReport) -> Option<f64>,
) {
    out.gauge(name, help);
    for (cluster, server, role) in servers(report) {
        if let Some(v) = value(server) {
            out.sample(
                name,
                &[
                    ("cluster", &cluster.name),
                    ("server", &server.name),
                    ("role", role),
                ],
                v,
            );
        }
    }
}

/// The Prometheus families of the checks beyond lag.
pub(super) fn prometheus(out: &mut Exposition, report: &Report) {
    check_states(out, report);
    topology(out, report);
    wraparound(out, report);
    xmin(out, report);
    archiving(out, report);
    connections(out, report);
    per_server(
        out,
        report,
        "odoo_db_lock_wait_longest_seconds",
        "How long the session waiting longest for a lock has waited (0: none waits).",
        |s| {
            s.facts.lock_waits.as_ref().map(|waits| {
                waits
                    .iter()
                    .filter_map(|w| w.waiting_seconds)
                    .fold(0.0, f64::max)
            })
        },
    );
    per_server(
        out,
        report,
        "odoo_db_wal_size_bytes",
        "The size of pg_wal (pg_ls_waldir()).",
        |s| s.facts.wal_bytes.map(|b| b as f64),
    );
    per_server(
        out,
        report,
        "odoo_db_pending_restart_settings",
        "Settings changed but waiting for a restart.",
        |s| s.facts.pending_restart.as_ref().map(|p| p.len() as f64),
    );
    conflicts(out, report);
}

/// The worst state of each kind of check on each server (server "" for the cluster as a
/// whole): what the alerting rules of the checks without a number of their own use.
fn check_states(out: &mut Exposition, report: &Report) {
    out.gauge(
        "odoo_db_health_check_status",
        "Worst Nagios state of each kind of check on each server (server \"\": the cluster): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    );
    let mut seen: Vec<(String, String, &str, crate::health::report::Status)> = Vec::new();
    for check in &report.checks {
        let Some(cluster_name) = &check.cluster else {
            continue;
        };
        let server = report
            .clusters
            .iter()
            .find(|c| &c.name == cluster_name)
            .and_then(|cluster| {
                let label = check.server.as_deref()?;
                servers_of(cluster)
                    .into_iter()
                    .find(|(s, role)| s.label(role) == label)
                    .map(|(s, _)| s.name.clone())
            })
            .unwrap_or_default();
        match seen
            .iter_mut()
            .find(|(c, s, k, _)| c == cluster_name && *s == server && *k == check.check)
        {
            Some(entry) => entry.3 = entry.3.worst(check.status),
            None => seen.push((cluster_name.clone(), server, check.check, check.status)),
        }
    }
    for (cluster, server, check, status) in seen {
        out.sample(
            "odoo_db_health_check_status",
            &[("cluster", &cluster), ("server", &server), ("check", check)],
            status_number(status),
        );
    }
}

fn servers_of(cluster: &ClusterReport) -> Vec<(&ServerReport, &'static str)> {
    let mut list = vec![(&cluster.primary.server, "primary")];
    list.extend(cluster.standbys.iter().map(|s| (&s.server, "standby")));
    list
}

fn topology(out: &mut Exposition, report: &Report) {
    per_server(
        out,
        report,
        "odoo_db_server_in_recovery",
        "Whether the server is in recovery (1: a standby) or accepts writes (0).",
        |s| s.in_recovery.map(|r| if r { 1.0 } else { 0.0 }),
    );
    per_server(
        out,
        report,
        "odoo_db_server_timeline",
        "The server's timeline (the primary's current one; a standby's received one).",
        |s| s.timeline.map(|t| t as f64),
    );
}

fn wraparound(out: &mut Exposition, report: &Report) {
    let families = [
        (
            "odoo_db_wraparound_xid_age_ratio",
            "The oldest age(datfrozenxid) of the cluster's databases as a fraction of 2^31, with that database.",
            true,
        ),
        (
            "odoo_db_wraparound_mxid_age_ratio",
            "The oldest mxid_age(datminmxid) of the cluster's databases as a fraction of 2^31, with that database.",
            false,
        ),
    ];
    for (name, help, xid) in families {
        out.gauge(name, help);
        for (cluster, server, _) in servers(report) {
            if let Some(w) = &server.facts.wraparound {
                let (database, value) = if xid {
                    (&w.xid_database, w.xid_fraction)
                } else {
                    (&w.mxid_database, w.mxid_fraction)
                };
                out.sample(
                    name,
                    &[
                        ("cluster", &cluster.name),
                        ("server", &server.name),
                        ("database", database),
                    ],
                    value,
                );
            }
        }
    }
}

fn xmin(out: &mut Exposition, report: &Report) {
    out.gauge(
        "odoo_db_xmin_horizon_age_transactions",
        "Age in transactions of the oldest holder of the xmin horizon of each kind (transaction, idle_in_transaction, prepared_transaction, replication_slot, hot_standby_feedback).",
    );
    let kinds = |server: &ServerReport| -> Vec<(String, Option<i64>, Option<f64>)> {
        let mut by_kind: Vec<(String, Option<i64>, Option<f64>)> = Vec::new();
        for holder in server.facts.xmin_holders.iter().flatten() {
            match by_kind.iter_mut().find(|(k, _, _)| *k == holder.kind) {
                Some(entry) => {
                    entry.1 = entry.1.max(holder.xid_age);
                    entry.2 = match (entry.2, holder.age_seconds) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                None => by_kind.push((holder.kind.clone(), holder.xid_age, holder.age_seconds)),
            }
        }
        by_kind
    };
    for (cluster, server, _) in servers(report) {
        for (kind, xids, _) in kinds(server) {
            if let Some(xids) = xids {
                out.sample(
                    "odoo_db_xmin_horizon_age_transactions",
                    &[
                        ("cluster", &cluster.name),
                        ("server", &server.name),
                        ("kind", &kind),
                    ],
                    xids as f64,
                );
            }
        }
    }
    out.gauge(
        "odoo_db_xmin_horizon_age_seconds",
        "How long the oldest holder of the xmin horizon of each kind has held it, where the server knows (sessions, prepared transactions; on a standby kind \"query\", its oldest query).",
    );
    for (cluster, server, _) in servers(report) {
        let mut list = kinds(server);
        if let Some(query) = &server.facts.oldest_query {
            list.push(("query".to_string(), None, query.age_seconds));
        }
        for (kind, _, seconds) in list {
            if let Some(seconds) = seconds {
                out.sample(
                    "odoo_db_xmin_horizon_age_seconds",
                    &[
                        ("cluster", &cluster.name),
                        ("server", &server.name),
                        ("kind", &kind),
                    ],
                    seconds,
                );
            }
        }
    }
}

/// The archiver's state of a server that archives (a primary with archive_mode on, a
/// standby with always).
fn archiving_of(s: &ServerReport) -> Option<&crate::health::report::Archiver> {
    s.facts.archiver.as_ref().filter(|a| match s.in_recovery {
        Some(false) => a.archive_mode != "off",
        Some(true) => a.archive_mode == "always",
        None => false,
    })
}

fn archiving(out: &mut Exposition, report: &Report) {
    let archiving = archiving_of;
    per_server(
        out,
        report,
        "odoo_db_archiver_failing",
        "Whether the last archive_command failure is newer than its last success (1) or not (0); servers that archive only.",
        |s| archiving(s).map(|a| if a.failing { 1.0 } else { 0.0 }),
    );
    per_server(
        out,
        report,
        "odoo_db_archiver_ready_segments",
        "WAL segments waiting to be archived (.ready files).",
        |s| archiving(s).map(|a| a.ready_count as f64),
    );
    per_server(
        out,
        report,
        "odoo_db_archiver_segments_behind",
        "Complete WAL segments between the last archived one and the current one.",
        |s| {
            archiving(s)
                .and_then(|a| a.segments_behind)
                .map(|n| n as f64)
        },
    );
    per_server(
        out,
        report,
        "odoo_db_archiver_last_archived_age_seconds",
        "Time since the last WAL file was archived (grows on an idle primary: alert on failures and backlog instead).",
        |s| archiving(s).and_then(|a| a.last_archived_age_seconds),
    );
}

fn connections(out: &mut Exposition, report: &Report) {
    per_server(
        out,
        report,
        "odoo_db_connections_used",
        "Client connections in use (odoo-db's own not counted).",
        |s| s.facts.connections.as_ref().map(|c| c.used as f64),
    );
    per_server(
        out,
        report,
        "odoo_db_connections_available",
        "Connection slots for clients: max_connections minus the reserved ones.",
        |s| {
            s.facts
                .connections
                .as_ref()
                .map(|c| (c.max_connections - c.reserved) as f64)
        },
    );
    per_server(
        out,
        report,
        "odoo_db_connections_used_ratio",
        "Client connections in use as a fraction of the slots for clients.",
        |s| s.facts.connections.as_ref().map(|c| c.fraction),
    );
    for (name, help, limit) in [
        (
            "odoo_db_role_connections",
            "Sessions of each role that has a CONNECTION LIMIT.",
            false,
        ),
        (
            "odoo_db_role_connection_limit",
            "The CONNECTION LIMIT of each role that has one.",
            true,
        ),
    ] {
        out.gauge(name, help);
        for (cluster, server, _) in servers(report) {
            for role in server.facts.role_connections.iter().flatten() {
                let value = if limit {
                    role.connection_limit
                } else {
                    role.sessions
                };
                out.sample(
                    name,
                    &[
                        ("cluster", &cluster.name),
                        ("server", &server.name),
                        ("role", &role.role),
                    ],
                    value as f64,
                );
            }
        }
    }
}

fn conflicts(out: &mut Exposition, report: &Report) {
    out.counter(
        "odoo_db_recovery_conflicts_total",
        "Queries a standby cancelled because replay needed what they held, per database and reason (pg_stat_database_conflicts).",
    );
    for (cluster, server, _) in servers(report) {
        for c in server.facts.recovery_conflicts.iter().flatten() {
            for (reason, count) in [
                ("tablespace", c.tablespace),
                ("lock", c.lock),
                ("snapshot", c.snapshot),
                ("bufferpin", c.bufferpin),
                ("deadlock", c.deadlock),
            ] {
                out.sample(
                    "odoo_db_recovery_conflicts_total",
                    &[
                        ("cluster", &cluster.name),
                        ("server", &server.name),
                        ("database", &c.database),
                        ("reason", reason),
                    ],
                    count as f64,
                );
            }
        }
    }
}

/// The statsd gauges of the checks beyond lag: `<cluster>.<server>.<name>`.
pub(super) fn statsd_gauges(report: &Report, gauges: &mut Vec<(String, f64)>) {
    for (cluster, server, _) in servers(report) {
        let prefix = format!("{}.{}", segment(&cluster.name), segment(&server.name));
        let f = &server.facts;
        let mut add = |name: &str, value: Option<f64>| {
            if let Some(value) = value {
                gauges.push((format!("{prefix}.{name}"), value));
            }
        };
        add(
            "xid_age_ratio",
            f.wraparound.as_ref().map(|w| w.xid_fraction),
        );
        add(
            "mxid_age_ratio",
            f.wraparound.as_ref().map(|w| w.mxid_fraction),
        );
        add(
            "xmin_age_transactions",
            f.xmin_holders
                .as_ref()
                .map(|h| h.iter().filter_map(|x| x.xid_age).max().unwrap_or(0) as f64),
        );
        add(
            "connections_used_ratio",
            f.connections.as_ref().map(|c| c.fraction),
        );
        add("wal_bytes", f.wal_bytes.map(|b| b as f64));
        add(
            "archive_ready",
            f.archiver.as_ref().map(|a| a.ready_count as f64),
        );
        let archiving = archiving_of(server);
        add(
            "archive_failing",
            archiving.map(|a| if a.failing { 1.0 } else { 0.0 }),
        );
        add(
            "lock_wait_seconds",
            f.lock_waits.as_ref().map(|waits| {
                waits
                    .iter()
                    .filter_map(|w| w.waiting_seconds)
                    .fold(0.0, f64::max)
            }),
        );
        add(
            "pending_restart",
            f.pending_restart.as_ref().map(|p| p.len() as f64),
        );
    }
}

/// A fraction in perfdata: plain decimal, 9 decimals (an age of 2 transactions shows).
fn ratio(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Nagios perfdata of the checks beyond lag, with their thresholds.
pub(super) fn perfdata(report: &Report, perfdata: &mut Vec<String>) {
    let limits = report.limits;
    for (cluster, server, _) in servers(report) {
        let label = format!("{}_{}", cluster.name, server.name);
        let f = &server.facts;
        if let Some(w) = &f.wraparound {
            perfdata.push(perf(
                &format!("{label}_xid_age_ratio"),
                Some(ratio(w.xid_fraction.max(w.mxid_fraction))),
                "",
                Some(perf_number(limits.xid_age_warn)),
                Some(perf_number(limits.xid_age_crit)),
            ));
        }
        if let Some(c) = &f.connections {
            perfdata.push(perf(
                &format!("{label}_connections"),
                Some(c.used.to_string()),
                "",
                None,
                Some((c.max_connections - c.reserved).to_string()),
            ));
        }
        if let Some(bytes) = f.wal_bytes {
            perfdata.push(perf(
                &format!("{label}_wal_bytes"),
                Some(bytes.to_string()),
                "B",
                Some(limits.wal_size_warn_bytes.to_string()),
                Some(limits.wal_size_crit_bytes.to_string()),
            ));
        }
    }
}
