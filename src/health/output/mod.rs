//! The health report as each consumer reads it: a table for people at a terminal, the
//! Nagios plugin format for Nagios/Icinga, JSON for scripts, and the Prometheus text
//! exposition for node_exporter's textfile collector (written atomically, so the
//! collector never reads half a file).
//!
//! The building blocks (tables, Nagios lines, exposition families, atomic files) are
//! in [`crate::output`], shared with `odoo-db audit`, which reports in the same formats.

mod server;

use super::judge::fmt_secs;
use super::report::{ClusterReport, LagSource, Report, ServerReport, StandbyReport, Status};
use crate::cli::ReportFormat;
use crate::output::nagios::{nagios_output, perf, perf_number};
use crate::output::prometheus::{status_number, Exposition};
use crate::output::statsd::segment;
use crate::output::table::{checks_table, hints, table};
use crate::units::format_bytes;

/// The report in `format`, ending with a newline.
pub fn render(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Text => text(report),
        ReportFormat::Nagios => nagios(report),
        ReportFormat::Json => json(report),
        ReportFormat::Prometheus => prometheus(report),
    }
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("the report serializes") + "\n"
}

/// A table of every check, problems first, then what to do about them.
pub fn text(report: &Report) -> String {
    let mut out = format!(
        "odoo-db health: {} ({} s){}\n\n",
        report.status.as_str(),
        fmt_secs(report.duration_seconds),
        if report.deadline_hit {
            format!(
                ", cut short by the {} s deadline",
                fmt_secs(report.timeout_seconds)
            )
        } else {
            String::new()
        }
    );
    out.push_str(&checks_table(&report.checks));
    let lag_rows: Vec<Vec<String>> = report
        .clusters
        .iter()
        .flat_map(|cluster| {
            cluster.standbys.iter().map(move |standby| {
                vec![
                    cluster.name.clone(),
                    standby.server.name.clone(),
                    standby
                        .lag_bytes
                        .map(format_bytes)
                        .unwrap_or_else(|| "?".into()),
                    seconds_summary(standby),
                    standby
                        .wal_receiver
                        .as_ref()
                        .and_then(|r| r.status.clone())
                        .unwrap_or_else(|| "-".into()),
                    standby
                        .replay_pause_state
                        .clone()
                        .unwrap_or_else(|| "-".into()),
                ]
            })
        })
        .collect();
    if !lag_rows.is_empty() {
        out.push('\n');
        out.push_str(&table(
            &[
                "CLUSTER", "STANDBY", "LAG", "TIME LAG", "RECEIVER", "REPLAY",
            ],
            &lag_rows,
        ));
    }
    out.push_str(&hints(&report.checks));
    out
}

/// `0.04 s`, `12.5 s (heartbeat age)`, `?`.
fn seconds_summary(standby: &StandbyReport) -> String {
    match (standby.lag_seconds, standby.lag_seconds_source) {
        (Some(seconds), Some(LagSource::Heartbeat)) => format!("{} s", fmt_secs(seconds)),
        (Some(seconds), Some(LagSource::HeartbeatAge)) => {
            format!("{} s (heartbeat age)", fmt_secs(seconds))
        }
        _ => "?".to_string(),
    }
}

/// One cluster in the status line: `production: standby db2 lag 0 B, 0.04 s`.
fn cluster_summary(cluster: &ClusterReport) -> String {
    if cluster.standbys.is_empty() {
        let state = if cluster.primary.server.reachable && cluster.primary.server.error.is_none() {
            "up"
        } else {
            "unreachable"
        };
        return format!("{}: primary {state}", cluster.name);
    }
    let parts: Vec<String> = cluster
        .standbys
        .iter()
        .map(|standby| {
            if !standby.server.reachable {
                format!("standby {} unreachable", standby.server.name)
            } else {
                format!(
                    "standby {} lag {}, {}",
                    standby.server.name,
                    standby
                        .lag_bytes
                        .map(format_bytes)
                        .unwrap_or_else(|| "?".into()),
                    seconds_summary(standby)
                )
            }
        })
        .collect();
    format!("{}: {}", cluster.name, parts.join(", "))
}

/// The Nagios plugin output: `ODOO-DB <STATE> - <problems>; <summary> | <perfdata>`, then
/// one line per check (long output), worst first.
pub fn nagios(report: &Report) -> String {
    let summary: Vec<String> = report.clusters.iter().map(cluster_summary).collect();
    let mut perfdata = Vec::new();
    let thresholds = report.thresholds;
    for cluster in &report.clusters {
        for standby in &cluster.standbys {
            let label = format!("{}_{}", cluster.name, standby.server.name);
            perfdata.push(perf(
                &format!("{label}_lag_bytes"),
                standby.lag_bytes.map(|b| b.to_string()),
                "B",
                thresholds.warn.bytes.map(|b| b.to_string()),
                thresholds.crit.bytes.map(|b| b.to_string()),
            ));
            let seconds = match standby.lag_seconds_source {
                Some(LagSource::Heartbeat | LagSource::HeartbeatAge) => standby.lag_seconds,
                _ => None,
            };
            perfdata.push(perf(
                &format!("{label}_lag_seconds"),
                seconds.map(perf_number),
                "s",
                thresholds.warn.seconds.map(perf_number),
                thresholds.crit.seconds.map(perf_number),
            ));
        }
    }
    server::perfdata(report, &mut perfdata);
    nagios_output(
        "ODOO-DB",
        report.status,
        &report.checks,
        &summary.join("; "),
        &perfdata,
    )
}

/// The Prometheus exposition of a health run. Values that could not be measured are
/// left out (Prometheus' convention), `odoo_db_up` says why.
pub fn prometheus(report: &Report) -> String {
    let mut out = Exposition::new();
    server_up_gauges(&mut out, report);
    replica_gauges(&mut out, report);
    slot_gauges(&mut out, report);
    slot_state_gauges(&mut out, report);
    server::prometheus(&mut out, report);
    run_status_gauges(&mut out, report);
    out.finish()
}

/// `odoo_db_up`: one sample per configured server.
fn server_up_gauges(out: &mut Exposition, report: &Report) {
    out.gauge(
        "odoo_db_up",
        "Whether odoo-db could connect to the server and question it (1) or not (0).",
    );
    for cluster in &report.clusters {
        let up = |server: &super::report::ServerReport| {
            if server.reachable && server.error.is_none() {
                1.0
            } else {
                0.0
            }
        };
        out.sample(
            "odoo_db_up",
            &[
                ("cluster", &cluster.name),
                ("server", "primary"),
                ("role", "primary"),
            ],
            up(&cluster.primary.server),
        );
        for standby in &cluster.standbys {
            out.sample(
                "odoo_db_up",
                &[
                    ("cluster", &cluster.name),
                    ("server", &standby.server.name),
                    ("role", "standby"),
                ],
                up(&standby.server),
            );
        }
    }
}

/// The standbys' lag, streaming and replay pause, one sample per standby that told.
fn replica_gauges(out: &mut Exposition, report: &Report) {
    let standbys: Vec<(&str, &StandbyReport)> = report
        .clusters
        .iter()
        .flat_map(|c| c.standbys.iter().map(move |s| (c.name.as_str(), s)))
        .collect();
    out.gauge(
        "odoo_db_replica_lag_bytes",
        "WAL the standby has not replayed: the primary's position minus the standby's replay position (pg_wal_lsn_diff).",
    );
    for (cluster, standby) in &standbys {
        if let Some(bytes) = standby.lag_bytes {
            out.sample(
                "odoo_db_replica_lag_bytes",
                &[("cluster", cluster), ("standby", &standby.server.name)],
                bytes as f64,
            );
        }
    }
    out.gauge(
        "odoo_db_replica_lag_seconds",
        "Replication lag in time: the heartbeat measured end to end, or the age of the newest heartbeat the standby shows when this run's was not replayed in time.",
    );
    for (cluster, standby) in &standbys {
        if let (Some(seconds), Some(LagSource::Heartbeat | LagSource::HeartbeatAge)) =
            (standby.lag_seconds, standby.lag_seconds_source)
        {
            out.sample(
                "odoo_db_replica_lag_seconds",
                &[("cluster", cluster), ("standby", &standby.server.name)],
                seconds,
            );
        }
    }
    out.gauge(
        "odoo_db_replica_streaming",
        "Whether the standby's WAL receiver is running and streaming (1) or not (0).",
    );
    for (cluster, standby) in &standbys {
        let streaming = standby
            .wal_receiver
            .as_ref()
            .is_some_and(|r| r.running && r.status.as_deref() == Some("streaming"));
        out.sample(
            "odoo_db_replica_streaming",
            &[("cluster", cluster), ("standby", &standby.server.name)],
            if streaming { 1.0 } else { 0.0 },
        );
    }
    out.gauge(
        "odoo_db_replica_replay_paused",
        "Whether replay is paused or a pause is requested on the standby (1) or not (0).",
    );
    for (cluster, standby) in &standbys {
        if let Some(state) = &standby.replay_pause_state {
            out.sample(
                "odoo_db_replica_replay_paused",
                &[("cluster", cluster), ("standby", &standby.server.name)],
                if state == "not paused" { 0.0 } else { 1.0 },
            );
        }
    }
}

/// The WAL each replication slot keeps on its primary.
fn slot_gauges(out: &mut Exposition, report: &Report) {
    out.gauge(
        "odoo_db_replication_slot_retained_bytes",
        "WAL a physical replication slot keeps on the primary.",
    );
    for cluster in &report.clusters {
        for slot in cluster.slots.iter().flatten() {
            if let Some(bytes) = slot.retained_bytes {
                out.sample(
                    "odoo_db_replication_slot_retained_bytes",
                    &[("cluster", &cluster.name), ("slot", &slot.name)],
                    bytes.max(0) as f64,
                );
            }
        }
    }
}

/// Whether each slot is in use, and its `wal_status` (PostgreSQL 13+).
fn slot_state_gauges(out: &mut Exposition, report: &Report) {
    out.gauge(
        "odoo_db_replication_slot_active",
        "Whether a physical replication slot is in use (1) or not (0).",
    );
    for cluster in &report.clusters {
        for slot in cluster.slots.iter().flatten() {
            out.sample(
                "odoo_db_replication_slot_active",
                &[("cluster", &cluster.name), ("slot", &slot.name)],
                if slot.active { 1.0 } else { 0.0 },
            );
        }
    }
    out.gauge(
        "odoo_db_replication_slot_wal_status",
        "1 for the slot's wal_status (reserved, extended, unreserved, lost; PostgreSQL 13+).",
    );
    for cluster in &report.clusters {
        for slot in cluster.slots.iter().flatten() {
            if let Some(status) = &slot.wal_status {
                out.sample(
                    "odoo_db_replication_slot_wal_status",
                    &[
                        ("cluster", &cluster.name),
                        ("slot", &slot.name),
                        ("wal_status", status),
                    ],
                    1.0,
                );
            }
        }
    }
}

/// The clusters' and the run's statuses, the run's duration and start.
fn run_status_gauges(out: &mut Exposition, report: &Report) {
    out.gauge(
        "odoo_db_cluster_status",
        "Nagios state of each cluster: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    );
    for cluster in &report.clusters {
        out.sample(
            "odoo_db_cluster_status",
            &[("cluster", &cluster.name)],
            status_number(cluster.status),
        );
    }
    out.gauge(
        "odoo_db_check_status",
        "Nagios state of the whole health run, as its exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    )
    .sample("odoo_db_check_status", &[], status_number(report.status));
    out.gauge(
        "odoo_db_run_duration_seconds",
        "How long the health run took.",
    )
    .sample("odoo_db_run_duration_seconds", &[], report.duration_seconds);
    out.gauge(
        "odoo_db_last_run_timestamp_seconds",
        "When the health run started (Unix time): a stale value means the timer stopped running.",
    )
    .sample(
        "odoo_db_last_run_timestamp_seconds",
        &[],
        report.started_at.timestamp_micros() as f64 / 1e6,
    );
}

/// The statsd gauges of a report, as (name without prefix, value).
pub fn statsd_gauges(report: &Report) -> Vec<(String, f64)> {
    let number = |status: Status| f64::from(status.exit_code());
    let mut gauges = vec![("status".to_string(), number(report.status))];
    for cluster in &report.clusters {
        let c = segment(&cluster.name);
        gauges.push((format!("{c}.status"), number(cluster.status)));
        let up = |server: &ServerReport| {
            if server.reachable && server.error.is_none() {
                1.0
            } else {
                0.0
            }
        };
        gauges.push((format!("{c}.primary.up"), up(&cluster.primary.server)));
        for standby in &cluster.standbys {
            let s = segment(&standby.server.name);
            gauges.push((format!("{c}.{s}.up"), up(&standby.server)));
            if let Some(bytes) = standby.lag_bytes {
                gauges.push((format!("{c}.{s}.lag_bytes"), bytes as f64));
            }
            if let (Some(seconds), Some(source)) = (standby.lag_seconds, standby.lag_seconds_source)
            {
                if source != LagSource::HeartbeatAgeStandbyClock {
                    gauges.push((format!("{c}.{s}.lag_seconds"), seconds));
                }
            }
            let streaming = standby
                .wal_receiver
                .as_ref()
                .is_some_and(|r| r.running && r.status.as_deref() == Some("streaming"));
            gauges.push((
                format!("{c}.{s}.streaming"),
                if streaming { 1.0 } else { 0.0 },
            ));
        }
    }
    server::statsd_gauges(report, &mut gauges);
    gauges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::judge::{self, tests::healthy, tests::rules};
    use crate::health::report::{ClusterReport, Report, Status, SCHEMA_VERSION};

    /// A fixed report of these clusters, as judged with the default thresholds.
    fn report_of(all: Vec<judge::ClusterFacts>) -> Report {
        let mut clusters = Vec::new();
        let mut checks = Vec::new();
        for facts in all {
            let (cluster, more) = judge::cluster(facts, &rules());
            clusters.push(cluster);
            checks.extend(more);
        }
        let status = Status::worst_of(clusters.iter().map(|c: &ClusterReport| c.status));
        Report {
            schema_version: SCHEMA_VERSION,
            status,
            exit_code: status.exit_code(),
            started_at: "2024-05-01T12:00:00Z".parse().unwrap(),
            duration_seconds: 0.025,
            timeout_seconds: 30.0,
            deadline_hit: false,
            thresholds: rules().thresholds,
            limits: rules().limits,
            clusters,
            checks,
        }
    }

    fn integration() -> judge::ClusterFacts {
        let mut facts = healthy();
        facts.name = "integration".into();
        facts.kind = crate::config::ClusterKind::Integration;
        facts.standbys.clear();
        facts.slots = Some(vec![]);
        facts.primary.server.address = "dbint:5432".into();
        facts.primary.heartbeat = None;
        facts.primary.replication = Some(vec![]);
        facts
    }

    /// Replay paused 30 MB behind, this run's heartbeat not replayed.
    fn paused() -> judge::ClusterFacts {
        let mut facts = healthy();
        let standby = &mut facts.standbys[0];
        standby.replay_pause_state = Some("paused".into());
        standby.lag_bytes = Some(31_457_280);
        standby.receive_lag_bytes = Some(0);
        standby.replay_backlog_bytes = Some(31_457_280);
        standby.heartbeat_seen = false;
        standby.lag_seconds = Some(42.5);
        standby.lag_seconds_source = Some(crate::health::report::LagSource::HeartbeatAge);
        standby.heartbeat_wait_seconds = Some(0.01);
        facts
    }

    #[test]
    fn nagios_status_line_is_the_contracts() {
        let report = report_of(vec![healthy()]);
        assert_eq!(
            nagios(&report).lines().next().unwrap(),
            "ODOO-DB OK - production: standby db2 lag 0 B, 0.04 s | \
             'production_db2_lag_bytes'=0B;16777216;268435456 'production_db2_lag_seconds'=0.04s;30;300"
        );
    }

    #[test]
    fn nagios_snapshot_problems_first() {
        let report = report_of(vec![paused(), integration()]);
        assert_eq!(
            nagios(&report),
            "ODOO-DB CRITICAL - production standby db2: replay is paused (pause state: paused): WAL is received but not applied; \
             production standby db2: lag 30.0 MB > warn 16.0 MB (0 B not yet received, 30.0 MB received but not replayed); \
             production standby db2: lag 42.5 s > warn 30 s (age of the newest heartbeat the standby shows; this run's not replayed after 0.01 s); \
             production: standby db2 lag 30.0 MB, 42.5 s (heartbeat age); integration: primary up | \
             'production_db2_lag_bytes'=31457280B;16777216;268435456 'production_db2_lag_seconds'=42.5s;30;300
[CRITICAL] production standby db2: replay is paused (pause state: paused): WAL is received but not applied (what to do: find why (pg_wal_replay_pause(), a recovery target, or on PostgreSQL 14+ a hot-standby setting lower than the primary's: see the standby's log), then SELECT pg_wal_replay_resume())
[WARNING] production standby db2: lag 30.0 MB > warn 16.0 MB (0 B not yet received, 30.0 MB received but not replayed)
[WARNING] production standby db2: lag 42.5 s > warn 30 s (age of the newest heartbeat the standby shows; this run's not replayed after 0.01 s)
[OK] production primary db1:5432: reachable, accepts writes (PostgreSQL 15.4)
[OK] production primary db1:5432: heartbeat 7 written
[OK] production primary db1:5432: 1 physical replication slot, active
[OK] production standby db2: in the primary's pg_stat_replication as \"db2\", streaming (async)
[OK] production standby db2: reachable, in recovery (PostgreSQL 15.4)
[OK] production standby db2: WAL receiver streaming, last message 0.5 s ago
[OK] integration primary dbint:5432: reachable, accepts writes (PostgreSQL 15.4)
[OK] integration primary dbint:5432: no physical replication slots
"
        );
    }

    #[test]
    fn prometheus_snapshot() {
        let report = report_of(vec![paused(), integration()]);
        let text = prometheus(&report);
        // The lag families first, the run's last; the checks beyond lag in between
        // (pinned by the integration tests, which parse them from real servers).
        let head = r#"# HELP odoo_db_up Whether odoo-db could connect to the server and question it (1) or not (0).
# TYPE odoo_db_up gauge
odoo_db_up{cluster="production",server="primary",role="primary"} 1
odoo_db_up{cluster="production",server="db2",role="standby"} 1
odoo_db_up{cluster="integration",server="primary",role="primary"} 1
# HELP odoo_db_replica_lag_bytes WAL the standby has not replayed: the primary's position minus the standby's replay position (pg_wal_lsn_diff).
# TYPE odoo_db_replica_lag_bytes gauge
odoo_db_replica_lag_bytes{cluster="production",standby="db2"} 31457280
# HELP odoo_db_replica_lag_seconds Replication lag in time: the heartbeat measured end to end, or the age of the newest heartbeat the standby shows when this run's was not replayed in time.
# TYPE odoo_db_replica_lag_seconds gauge
odoo_db_replica_lag_seconds{cluster="production",standby="db2"} 42.5
# HELP odoo_db_replica_streaming Whether the standby's WAL receiver is running and streaming (1) or not (0).
# TYPE odoo_db_replica_streaming gauge
odoo_db_replica_streaming{cluster="production",standby="db2"} 1
# HELP odoo_db_replica_replay_paused Whether replay is paused or a pause is requested on the standby (1) or not (0).
# TYPE odoo_db_replica_replay_paused gauge
odoo_db_replica_replay_paused{cluster="production",standby="db2"} 1
# HELP odoo_db_replication_slot_retained_bytes WAL a physical replication slot keeps on the primary.
# TYPE odoo_db_replication_slot_retained_bytes gauge
odoo_db_replication_slot_retained_bytes{cluster="production",slot="db2"} 1024
"#;
        let tail = r#"# HELP odoo_db_cluster_status Nagios state of each cluster: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
# TYPE odoo_db_cluster_status gauge
odoo_db_cluster_status{cluster="production"} 2
odoo_db_cluster_status{cluster="integration"} 0
# HELP odoo_db_check_status Nagios state of the whole health run, as its exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
# TYPE odoo_db_check_status gauge
odoo_db_check_status 2
# HELP odoo_db_run_duration_seconds How long the health run took.
# TYPE odoo_db_run_duration_seconds gauge
odoo_db_run_duration_seconds 0.025
# HELP odoo_db_last_run_timestamp_seconds When the health run started (Unix time): a stale value means the timer stopped running.
# TYPE odoo_db_last_run_timestamp_seconds gauge
odoo_db_last_run_timestamp_seconds 1714564800
"#;
        assert!(text.starts_with(head), "{text}");
        assert!(text.ends_with(tail), "{text}");
        assert!(text.contains("odoo_db_health_check_status{cluster=\"production\",server=\"db2\",check=\"replay\"} 2\n"), "{text}");
    }

    #[test]
    fn text_snapshot() {
        let report = report_of(vec![paused(), integration()]);
        assert_eq!(
            text(&report),
            r#"odoo-db health: CRITICAL (0.03 s)

STATUS    CLUSTER      SERVER              CHECK                MESSAGE
CRITICAL  production   standby db2         replay               replay is paused (pause state: paused): WAL is received but not applied
WARNING   production   standby db2         lag_bytes            lag 30.0 MB > warn 16.0 MB (0 B not yet received, 30.0 MB received but not replayed)
WARNING   production   standby db2         lag_seconds          lag 42.5 s > warn 30 s (age of the newest heartbeat the standby shows; this run's not replayed after 0.01 s)
OK        production   primary db1:5432    primary_role         reachable, accepts writes (PostgreSQL 15.4)
OK        production   primary db1:5432    heartbeat            heartbeat 7 written
OK        production   primary db1:5432    slots                1 physical replication slot, active
OK        production   standby db2         pg_stat_replication  in the primary's pg_stat_replication as "db2", streaming (async)
OK        production   standby db2         standby_role         reachable, in recovery (PostgreSQL 15.4)
OK        production   standby db2         wal_receiver         WAL receiver streaming, last message 0.5 s ago
OK        integration  primary dbint:5432  primary_role         reachable, accepts writes (PostgreSQL 15.4)
OK        integration  primary dbint:5432  slots                no physical replication slots

CLUSTER     STANDBY  LAG      TIME LAG                RECEIVER   REPLAY
production  db2      30.0 MB  42.5 s (heartbeat age)  streaming  paused

What to do:
- production standby db2: find why (pg_wal_replay_pause(), a recovery target, or on PostgreSQL 14+ a hot-standby setting lower than the primary's: see the standby's log), then SELECT pg_wal_replay_resume()
"#
        );
    }

    /// The JSON field names are a published interface: this pins them.
    #[test]
    fn json_snapshot_of_a_standby() {
        let report = report_of(vec![paused()]);
        let value: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        // serde_json's map sorts its keys (the printed order is the structs'): compare
        // sorted name lists.
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let sorted = |names: &[&str]| -> Vec<String> {
            let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            names.sort();
            names
        };
        assert_eq!(
            keys(&value),
            sorted(&[
                "schema_version",
                "status",
                "exit_code",
                "started_at",
                "duration_seconds",
                "timeout_seconds",
                "deadline_hit",
                "thresholds",
                "limits",
                "clusters",
                "checks"
            ])
        );
        assert_eq!(
            keys(&value["clusters"][0]),
            sorted(&["name", "kind", "status", "primary", "standbys", "slots"])
        );
        assert_eq!(
            value["clusters"][0]["standbys"][0],
            serde_json::json!({
                "name": "db2", "address": "db2:5432", "status": "CRITICAL", "reachable": true,
                "error": null, "server_version_num": 150004, "in_recovery": true,
                "application_name": "db2", "application_name_source": "cluster_name",
                "replication_state": "streaming", "sync_state": "async",
                "wal_receiver": {
                    "running": true, "status": "streaming", "last_message_age_seconds": 0.5,
                    "timeout_seconds": 60.0, "sender_host": null, "sender_port": null,
                    "slot_name": null, "flushed_lsn": null
                },
                "replay_pause_state": "paused", "receive_lsn": null, "replay_lsn": null,
                "lag_bytes": 31457280, "receive_lag_bytes": 0, "replay_backlog_bytes": 31457280,
                "lag_seconds": 42.5, "lag_seconds_source": "heartbeat_age", "heartbeat_seen": false,
                "heartbeat_wait_seconds": 0.01, "system_identifier": null, "timeline": null,
                "upstream": null, "wraparound": null, "xmin_holders": null,
                "oldest_query": null, "archiver": null, "connections": null,
                "role_connections": null, "lock_waits": null, "wal_bytes": null,
                "wal_files": null, "pending_restart": null, "recovery_conflicts": null
            })
        );
        assert_eq!(
            keys(&value["clusters"][0]["primary"]),
            sorted(&[
                "name",
                "address",
                "status",
                "reachable",
                "error",
                "server_version_num",
                "in_recovery",
                "current_wal_lsn",
                "heartbeat",
                "heartbeat_error",
                "replication",
                "system_identifier",
                "timeline",
                "upstream",
                "wraparound",
                "xmin_holders",
                "oldest_query",
                "archiver",
                "connections",
                "role_connections",
                "lock_waits",
                "wal_bytes",
                "wal_files",
                "pending_restart",
                "recovery_conflicts"
            ])
        );
        assert_eq!(
            keys(&value["checks"][0]),
            sorted(&["status", "cluster", "server", "check", "message", "hint"])
        );
    }
}
