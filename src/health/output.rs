//! The health report as each consumer reads it: a table for people at a terminal, the
//! Nagios plugin format for Nagios/Icinga, JSON for scripts, and the Prometheus text
//! exposition for node_exporter's textfile collector (written atomically, so the
//! collector never reads half a file).
//!
//! The building blocks (tables, Nagios lines, exposition families, atomic files) are
//! shared with `odoo-db audit`, which reports in the same formats.

use std::fmt::Write as _;
use std::path::Path;

use super::judge::fmt_secs;
use super::report::{Check, ClusterReport, LagSource, Report, StandbyReport, Status};
use crate::cli::ReportFormat;
use crate::error::{Error, Result};
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

/// The checks as a table, worst first (a stable sort keeps the servers' order).
pub(crate) fn checks_table(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = worst_first(checks)
        .into_iter()
        .map(|check| {
            vec![
                check.status.as_str().to_string(),
                check.cluster.clone().unwrap_or_else(|| "-".into()),
                check.server.clone().unwrap_or_else(|| "-".into()),
                check.check.to_string(),
                check.message.clone(),
            ]
        })
        .collect();
    table(&["STATUS", "CLUSTER", "SERVER", "CHECK", "MESSAGE"], &rows)
}

/// "What to do" lines for the problems that have a hint.
pub(crate) fn hints(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in worst_first(checks) {
        if let (true, Some(hint)) = (check.status != Status::Ok, &check.hint) {
            if out.is_empty() {
                out.push_str("\nWhat to do:\n");
            }
            writeln!(out, "- {}", one_line(&format!("{}: {hint}", where_(check)))).ok();
        }
    }
    out
}

pub(crate) fn worst_first(checks: &[Check]) -> Vec<&Check> {
    let mut sorted: Vec<&Check> = checks.iter().collect();
    sorted.sort_by_key(|check| std::cmp::Reverse(check.status.severity()));
    sorted
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    // Names come from the config and the servers: no raw control character reaches a
    // terminal (a newline would break the table, an escape sequence could rewrite it).
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| one_line(cell)).collect())
        .collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
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
    nagios_output(
        "ODOO-DB",
        report.status,
        &report.checks,
        &summary.join("; "),
        &perfdata,
    )
}

/// The Nagios plugin text shared by health and audit.
pub(crate) fn nagios_output(
    prefix: &str,
    status: Status,
    checks: &[Check],
    summary: &str,
    perfdata: &[String],
) -> String {
    let problems: Vec<String> = worst_first(checks)
        .into_iter()
        .filter(|check| check.status != Status::Ok)
        .map(|check| format!("{}: {}", where_(check), check.message))
        .collect();
    let mut line = format!("{prefix} {} - ", status.as_str());
    if !problems.is_empty() {
        line.push_str(&problems.join("; "));
        if !summary.is_empty() {
            line.push_str("; ");
        }
    }
    line.push_str(summary);
    // One line, and `|` starts the perfdata: neither a newline nor `|` may appear in the
    // text, whatever the names in the config hold.
    let mut out = nagios_text(&line);
    if !perfdata.is_empty() {
        out.push_str(" | ");
        out.push_str(&perfdata.join(" "));
    }
    out.push('\n');
    for check in worst_first(checks) {
        let mut detail = format!(
            "[{}] {}: {}",
            check.status.as_str(),
            where_(check),
            check.message
        );
        if let (true, Some(hint)) = (check.status != Status::Ok, &check.hint) {
            detail.push_str(&format!(" (what to do: {hint})"));
        }
        out.push_str(&nagios_text(&detail));
        out.push('\n');
    }
    out
}

/// Text for one line (a terminal table cell, a Nagios line): control characters, a
/// newline in a name from the config above all, are shown escaped (`\n`), never raw.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Nagios plugin text: one line, without `|` (which starts the perfdata).
fn nagios_text(text: &str) -> String {
    one_line(text).replace('|', "/")
}

/// `production standby db2`, `production primary 10.0.0.1:5432`, `production`.
fn where_(check: &Check) -> String {
    match (&check.cluster, &check.server) {
        (Some(cluster), Some(server)) => format!("{cluster} {server}"),
        (Some(cluster), None) => cluster.clone(),
        (None, _) => "odoo-db".to_string(),
    }
}

/// `'label'=value<uom>;warn;crit`; `U` for a value that could not be measured.
pub(crate) fn perf(
    label: &str,
    value: Option<String>,
    uom: &str,
    warn: Option<String>,
    crit: Option<String>,
) -> String {
    // The plugin guidelines: a label is quoted, a quote in it doubled, and it holds no
    // `=`; the line holds no `|` and no newline.
    let label = one_line(label).replace(['=', '|'], "_").replace('\'', "''");
    let value = match value {
        Some(value) => format!("{value}{uom}"),
        None => "U".to_string(),
    };
    let mut text = format!("'{label}'={value}");
    match (warn, crit) {
        (None, None) => {}
        (warn, None) => text.push_str(&format!(";{}", warn.unwrap_or_default())),
        (warn, Some(crit)) => text.push_str(&format!(";{};{crit}", warn.unwrap_or_default())),
    }
    text
}

/// Seconds in perfdata: plain decimal, no exponent, at most 3 decimals.
fn perf_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A Prometheus text exposition, family by family (HELP, TYPE, then its samples).
pub(crate) struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            text: String::new(),
        }
    }

    /// Starts a gauge family; its samples must follow before the next family.
    pub fn gauge(&mut self, name: &str, help: &str) -> &mut Self {
        writeln!(
            self.text,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        )
        .ok();
        writeln!(self.text, "# TYPE {name} gauge").ok();
        self
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.text.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{}\"", escape_label(value)))
                .collect();
            write!(self.text, "{{{}}}", labels.join(",")).ok();
        }
        writeln!(self.text, " {}", prometheus_number(value)).ok();
        self
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prometheus_number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

/// The Nagios state as a number, as the exit code has it.
pub(crate) fn status_number(status: Status) -> f64 {
    f64::from(status.exit_code())
}

/// The Prometheus exposition of a health run. Values that could not be measured are
/// left out (Prometheus' convention), `odoo_db_up` says why.
pub fn prometheus(report: &Report) -> String {
    let mut out = Exposition::new();
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
    out.finish()
}

/// Refuses (UNKNOWN for health) a textfile whose directory someone else could write:
/// whoever can write it can plant a file or a symlink where odoo-db writes, or replace
/// the metrics node_exporter serves (the contract's "Files odoo-db writes").
pub fn check_textfile_dir(path: &Path) -> Result<()> {
    textfile_name(path)?;
    crate::files::check_private_dir(textfile_dir(path), "textfile directory")
        .map_err(|error| error.context(format!("--textfile {}", path.display())))
}

fn textfile_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn textfile_name(path: &Path) -> Result<()> {
    match path.file_name() {
        Some(_) => Ok(()),
        None => Err(Error::refused(format!(
            "--textfile {}: not a file name",
            path.display()
        ))),
    }
}

/// Writes `contents` to `path` atomically, mode 0644 (node_exporter reads it as another
/// user): a temporary file with an unpredictable name created with `O_EXCL` beside it,
/// fsynced, renamed over `path`. node_exporter's textfile collector reads only `*.prom`
/// files and always sees a whole one (the temporary name starts with `.`, ends in
/// `.tmp`). The caller checks the directory first ([`check_textfile_dir`]).
pub fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    textfile_name(path)?;
    crate::files::replace_atomically(path, contents.as_bytes(), 0o644)
        .map_err(|error| error.context(format!("writing the textfile {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::judge::{self, tests::healthy, tests::rules};
    use crate::health::report::{ClusterReport, Report, SCHEMA_VERSION};

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
        assert_eq!(
            prometheus(&report),
            r#"# HELP odoo_db_up Whether odoo-db could connect to the server and question it (1) or not (0).
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
# HELP odoo_db_cluster_status Nagios state of each cluster: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
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
"#
        );
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
                "heartbeat_wait_seconds": 0.01
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
                "replication"
            ])
        );
        assert_eq!(
            keys(&value["checks"][0]),
            sorted(&["status", "cluster", "server", "check", "message", "hint"])
        );
    }

    #[test]
    fn perfdata_follows_the_plugin_guidelines() {
        assert_eq!(
            perf(
                "production_db2_lag_bytes",
                Some("0".into()),
                "B",
                Some("16777216".into()),
                Some("268435456".into())
            ),
            "'production_db2_lag_bytes'=0B;16777216;268435456"
        );
        assert_eq!(
            perf("a=b's", None, "s", None, Some("300".into())),
            "'a_b''s'=U;;300"
        );
        assert_eq!(perf("x", Some("1".into()), "B", None, None), "'x'=1B");
        assert_eq!(perf_number(0.04), "0.04");
        assert_eq!(perf_number(30.0), "30");
        assert_eq!(perf_number(0.0001), "0");
    }

    #[test]
    fn labels_are_escaped() {
        let mut out = Exposition::new();
        out.gauge("m", "help").sample("m", &[("a", "x\"y\\z")], 1.5);
        assert_eq!(
            out.finish(),
            "# HELP m help\n# TYPE m gauge\nm{a=\"x\\\"y\\\\z\"} 1.5\n"
        );
    }

    #[test]
    fn the_textfile_is_replaced_whole_with_mode_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odoo_db.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("odoo_db.prom")]);
    }
}
