//! From what the servers said to verdicts: every check of the contract, its status and a
//! message a person on call can act on.
//!
//! Pure functions over the facts [`super::probe`] gathered, so each rule is unit-tested
//! without a server, and a run cut short by its deadline is judged on whatever it learnt.

use std::time::Duration;

mod server;
mod topology;

use super::report::{
    version_text, Check, CheckLimits, ClusterReport, LagSource, PrimaryReport, ReplicationRow,
    ServerReport, SlotReport, StandbyReport, Status, Thresholds, WalReceiver,
};
use crate::config::ClusterKind;
use crate::units::format_bytes;

/// The walreceiver's application_name when neither primary_conninfo nor cluster_name
/// sets one.
const DEFAULT_WALRECEIVER_NAME: &str = "walreceiver";

/// Everything a cluster's verdict depends on.
pub struct ClusterFacts {
    pub name: String,
    pub kind: ClusterKind,
    pub primary: PrimaryReport,
    pub standbys: Vec<StandbyReport>,
    pub slots: Option<Vec<SlotReport>>,
    /// Set when the run's deadline cut it short: the timeout, and what the cluster's own
    /// code (outside any server) was doing.
    pub deadline: Option<(Duration, Option<&'static str>)>,
}

/// The settings the verdicts use.
pub struct Rules {
    pub thresholds: Thresholds,
    pub slot_retained_warn: u64,
    pub limits: CheckLimits,
}

/// Judges one cluster: its report with statuses filled in, and its checks.
pub fn cluster(facts: ClusterFacts, rules: &Rules) -> (ClusterReport, Vec<Check>) {
    let ClusterFacts {
        name,
        kind,
        mut primary,
        mut standbys,
        slots,
        deadline,
    } = facts;
    let mut checks = Checks {
        cluster: name.clone(),
        list: Vec::new(),
    };
    let primary_label = primary.server.label("primary");
    let topology = topology::judge(&mut checks, &primary, &standbys);
    judge_primary(
        &mut checks,
        &primary_label,
        &primary,
        !standbys.is_empty(),
        &topology,
    );
    if primary.server.in_recovery == Some(false) {
        judge_slots(
            &mut checks,
            &primary_label,
            &primary,
            slots.as_deref(),
            rules,
        );
    }
    let senders = find_senders(&mut standbys, &primary, slots.as_deref());
    for (standby, sender) in standbys.iter_mut().zip(senders) {
        judge_standby(&mut checks, standby, sender, &primary, rules, &topology);
        if answered(&standby.server) {
            let label = standby.server.label("standby");
            server::judge(&mut checks, &label, &standby.server, &rules.limits);
        }
    }
    // After the standbys: a standby's feedback holds the primary's horizon as long as
    // its oldest query runs.
    if answered(&primary.server) {
        server::feedback_times(&mut primary.server.facts, &standbys);
        server::judge(&mut checks, &primary_label, &primary.server, &rules.limits);
    }
    if let Some((timeout, cluster_step)) = deadline {
        judge_deadline(
            &mut checks,
            timeout,
            cluster_step,
            (&primary_label, &primary),
            &standbys,
        );
    }

    let checks = checks.list;
    let status_of = |label: &str| {
        Status::worst_of(
            checks
                .iter()
                .filter(|c| c.server.as_deref() == Some(label))
                .map(|c| c.status),
        )
    };
    primary.server.status = status_of(&primary_label);
    for standby in &mut standbys {
        standby.server.status = status_of(&standby.server.label("standby"));
    }
    let report = ClusterReport {
        status: Status::worst_of(checks.iter().map(|c| c.status)),
        name,
        kind,
        primary,
        standbys,
        slots,
    };
    (report, checks)
}

/// A run cut short by its deadline: an UNKNOWN check for each server still at a step,
/// and one for the cluster's own code when it was.
fn judge_deadline(
    checks: &mut Checks,
    timeout: Duration,
    cluster_step: Option<&'static str>,
    (primary_label, primary): (&str, &PrimaryReport),
    standbys: &[StandbyReport],
) {
    let came_while = |step: &str| {
        format!(
            "the run's deadline ({} s) came while {step}",
            fmt_secs(timeout.as_secs_f64())
        )
    };
    let late = |server: &ServerReport, label: &str| {
        server
            .step
            .map(|step| (label.to_string(), came_while(step)))
    };
    let mut waiting: Vec<(String, String)> = Vec::new();
    waiting.extend(late(&primary.server, primary_label));
    for standby in standbys {
        waiting.extend(late(&standby.server, &standby.server.label("standby")));
    }
    for (label, message) in waiting {
        checks.push_for(Status::Unknown, &label, "deadline", message, None);
    }
    if let Some(step) = cluster_step {
        checks.push(Status::Unknown, None, "deadline", came_while(step), None);
    }
}

struct Checks {
    cluster: String,
    list: Vec<Check>,
}

impl Checks {
    fn push(
        &mut self,
        status: Status,
        server: Option<&str>,
        check: &'static str,
        message: String,
        hint: Option<&str>,
    ) {
        self.list.push(Check {
            status,
            cluster: Some(self.cluster.clone()),
            server: server.map(str::to_string),
            check,
            message,
            hint: hint.map(str::to_string),
        });
    }

    fn push_for(
        &mut self,
        status: Status,
        server: &str,
        check: &'static str,
        message: String,
        hint: Option<&str>,
    ) {
        self.push(status, Some(server), check, message, hint);
    }
}

/// Whether a server was reached and said who it is: its other answers can be judged.
fn answered(server: &ServerReport) -> bool {
    server.reachable && server.error.is_none() && server.in_recovery.is_some()
}

/// A failure's status: odoo-db's setup problems are UNKNOWN, the server's CRITICAL.
fn failure_status(setup: bool) -> Status {
    if setup {
        Status::Unknown
    } else {
        Status::Critical
    }
}

const LOGIN_HINT: &str = "check the role, its password (pgpass, PGPASSWORD or the systemd credential) and the server's pg_hba.conf";
const MONITOR_HINT: &str =
    "grant pg_monitor to the role odoo-db checks with (GRANT pg_monitor TO <role>)";

/// Reachability, shared by primary and standbys; false when nothing more can be judged.
fn judge_reachable(
    checks: &mut Checks,
    label: &str,
    check: &'static str,
    server: &ServerReport,
) -> bool {
    match (&server.error, server.reachable) {
        (Some(error), false) if server.error_is_setup => {
            checks.push_for(
                Status::Unknown,
                label,
                check,
                format!("cannot log in: {error}"),
                Some(LOGIN_HINT),
            );
            false
        }
        (Some(error), false) => {
            checks.push_for(
                Status::Critical,
                label,
                check,
                format!("unreachable: {error}"),
                None,
            );
            false
        }
        (Some(error), true) => {
            checks.push_for(
                failure_status(server.error_is_setup),
                label,
                check,
                error.clone(),
                None,
            );
            false
        }
        (None, false) => {
            if server.step.is_none() {
                checks.push_for(
                    Status::Unknown,
                    label,
                    check,
                    "not checked: the run ended first".to_string(),
                    None,
                );
            }
            false
        }
        (None, true) => true,
    }
}

/// ` (PostgreSQL 15.4)`, or nothing when the version is not known.
fn postgres_version(server: &ServerReport) -> String {
    server
        .server_version_num
        .map(|num| format!(" (PostgreSQL {})", version_text(num)))
        .unwrap_or_default()
}

fn judge_primary(
    checks: &mut Checks,
    label: &str,
    primary: &PrimaryReport,
    has_standbys: bool,
    topology: &topology::Topology,
) {
    let server = &primary.server;
    if !judge_reachable(checks, label, "primary_reachable", server) {
        return;
    }
    let version = postgres_version(server);
    match server.in_recovery {
        Some(true) => checks.push_for(
            Status::Critical,
            label,
            "primary_role",
            match &topology.swapped_with {
                Some(name) => format!("is in recovery, streaming from standby {name}: the roles are swapped (see the topology check)"),
                None => "is in recovery: it is a standby, not the primary".to_string(),
            },
            Some("a failover happened, or the config points the primary at a standby: fix clusters.<name>.primary"),
        ),
        Some(false) => checks.push_for(
            Status::Ok,
            label,
            "primary_role",
            format!("reachable, accepts writes{version}"),
            None,
        ),
        None => return,
    }
    if has_standbys && server.in_recovery == Some(false) {
        match (&primary.heartbeat, &primary.heartbeat_error) {
            (_, Some(error)) => checks.push_for(
                failure_status(primary.heartbeat_error_is_setup),
                label,
                "heartbeat",
                format!("heartbeat not written: {error}"),
                primary.heartbeat_error_is_setup.then_some(
                    "`odoo-db init` creates the heartbeat table and grants it to [health] user",
                ),
            ),
            (Some(beat), None) => checks.push_for(
                Status::Ok,
                label,
                "heartbeat",
                format!("heartbeat {beat} written"),
                None,
            ),
            (None, None) => {}
        }
    }
    if let Some((error, setup)) = &primary.replication_error {
        checks.push_for(
            failure_status(*setup),
            label,
            "pg_stat_replication",
            error.clone(),
            setup.then_some(MONITOR_HINT),
        );
    }
}

fn judge_slots(
    checks: &mut Checks,
    label: &str,
    primary: &PrimaryReport,
    slots: Option<&[SlotReport]>,
    rules: &Rules,
) {
    if let Some((error, setup)) = &primary.slots_error {
        checks.push_for(
            failure_status(*setup),
            label,
            "slots",
            error.clone(),
            setup.then_some(MONITOR_HINT),
        );
        return;
    }
    let Some(slots) = slots else {
        return;
    };
    let mut problems = 0;
    for slot in slots {
        let retained = slot
            .retained_bytes
            .map(|b| format_bytes(b.max(0) as u64))
            .unwrap_or_else(|| "no WAL".to_string());
        let mut report = |status: Status, message: String, hint: &str| {
            problems += 1;
            checks.push_for(
                status,
                label,
                "slot",
                format!("slot {}: {message}", slot.name),
                Some(hint),
            );
        };
        match slot.wal_status.as_deref() {
            Some("lost") => report(
                Status::Critical,
                "wal_status lost: the WAL its standby needs is gone".to_string(),
                "the standby using this slot cannot catch up any more: rebuild it (pg_basebackup)",
            ),
            Some("unreserved") => report(
                Status::Warning,
                format!("wal_status unreserved: retains {retained}, beyond max_slot_wal_keep_size; the next checkpoint may remove WAL it needs"),
                "find out why its standby lags or is gone; raise max_slot_wal_keep_size or drop the slot",
            ),
            _ => {}
        }
        if !slot.active && !slot.temporary && slot.wal_status.as_deref() != Some("lost") {
            report(
                Status::Warning,
                format!("inactive, retains {retained}"),
                "an unused slot makes the primary keep WAL until its disk fills: if its standby is gone, SELECT pg_drop_replication_slot('<slot>')",
            );
        }
        if let Some(bytes) = slot.retained_bytes {
            if bytes > 0 && bytes as u64 > rules.slot_retained_warn {
                report(
                    Status::Warning,
                    format!(
                        "retains {retained} of WAL (warn above {})",
                        format_bytes(rules.slot_retained_warn)
                    ),
                    "its standby is far behind or gone: check it, or drop the slot",
                );
            }
        }
    }
    if problems == 0 {
        let message = match slots.len() {
            0 => "no physical replication slots".to_string(),
            1 => "1 physical replication slot, active".to_string(),
            n => format!("{n} physical replication slots, all active"),
        };
        checks.push_for(Status::Ok, label, "slots", message, None);
    }
}

fn judge_standby(
    checks: &mut Checks,
    standby: &mut StandbyReport,
    sender: Option<Sender>,
    primary: &PrimaryReport,
    rules: &Rules,
    topology: &topology::Topology,
) {
    let label = standby.server.label("standby");
    judge_replication_row(checks, &label, standby, sender);
    if !judge_reachable(checks, &label, "standby_reachable", &standby.server) {
        return;
    }
    let version = postgres_version(&standby.server);
    match standby.server.in_recovery {
        Some(true) => checks.push_for(
            Status::Ok,
            &label,
            "standby_role",
            format!("reachable, in recovery{version}"),
            None,
        ),
        Some(false) => {
            checks.push_for(
                Status::Critical,
                &label,
                "standby_role",
                if topology.swapped_with.as_deref() == Some(standby.server.name.as_str()) {
                    "accepts writes: it is the primary now, the roles are swapped (see the topology check)".to_string()
                } else {
                    "is not in recovery: it was promoted, or is not a standby".to_string()
                },
                Some("if a failover happened, rebuild the old primary as a standby and fix the config"),
            );
            return;
        }
        None => return,
    }
    if let Some((error, setup)) = &standby.state_error {
        checks.push_for(
            failure_status(*setup),
            &label,
            "replication_state",
            error.clone(),
            setup.then_some(MONITOR_HINT),
        );
    }
    judge_receiver(checks, &label, standby);
    judge_replay(checks, &label, standby);
    judge_lag_bytes(checks, &label, standby, primary, rules);
    judge_lag_seconds(checks, &label, standby, primary, rules);
}

/// The standby's WAL sender on the primary, found without configuration (the contract):
/// a configured application_name only overrides; else the standby's replication slot
/// (`pg_stat_wal_receiver.slot_name` ↔ the primary's `pg_replication_slots.active_pid` ↔
/// `pg_stat_replication.pid`), which names it exactly whatever it is called; else the
/// application_name its WAL receiver connected with (`pg_stat_wal_receiver.conninfo`);
/// else its `cluster_name`, which the WAL receiver uses when primary_conninfo has none;
/// else `walreceiver`. None when there is nothing to match (the primary's senders or the
/// standby's identity unknown). Also records the name and how it was found.
fn find_sender<'a>(
    standby: &mut StandbyReport,
    primary: &'a PrimaryReport,
    slots: Option<&[SlotReport]>,
) -> Option<Sender<'a>> {
    let rows = primary.replication.as_ref()?;
    let receiver = standby.wal_receiver.as_ref();
    let (name, how) = if let Some(name) = &standby.application_name {
        (name.clone(), "config")
    } else if let Some(row) = receiver
        .and_then(|r| r.slot_name.as_ref())
        .and_then(|slot| slots?.iter().find(|s| &s.name == slot))
        .and_then(|slot| slot.active_pid)
        .and_then(|pid| rows.iter().find(|row| row.pid == Some(pid)))
    {
        standby.application_name = Some(row.application_name.clone());
        standby.matched_by = Some("replication_slot");
        return Some(Sender {
            name: row.application_name.clone(),
            how: "replication_slot",
            rows: vec![row],
            ambiguous: None,
        });
    } else if let Some(name) = receiver.and_then(|r| r.application_name.clone()) {
        (name, "primary_conninfo")
    } else {
        match standby.server.cluster_name.as_deref() {
            // Unreachable or not asked: which name it streams under is not known.
            None => return None,
            Some("") => (DEFAULT_WALRECEIVER_NAME.to_string(), "default"),
            Some(name) => (name.to_string(), "cluster_name"),
        }
    };
    let mut matching: Vec<&ReplicationRow> = rows
        .iter()
        .filter(|row| row.application_name == name)
        .collect();
    // Several senders with one name (a reconnect in progress): the streaming one counts.
    matching.sort_by_key(|row| row.state.as_deref() != Some("streaming"));
    standby.application_name = Some(name.clone());
    standby.matched_by = Some(how);
    Some(Sender {
        name,
        how,
        rows: matching,
        ambiguous: None,
    })
}

/// The standby's rows in the primary's `pg_stat_replication`, best first.
struct Sender<'a> {
    name: String,
    /// How the name was found, for the messages.
    how: &'static str,
    rows: Vec<&'a ReplicationRow>,
    /// Other configured standbys go by the same name and odoo-db cannot tell which
    /// sender is whose: how many claim it.
    ambiguous: Option<usize>,
}

/// Every standby's sender. A name several standbys share (both Debian's `15/main`, say)
/// is first told apart by client address (the standby's configured host, when it is an
/// IP address, against `client_addr`); when that fails and not every one of them has a
/// streaming sender, which standby is missing cannot be told: that is reported as an
/// ambiguity, never as OK for all (a dead standby would read as OK otherwise).
fn find_senders<'a>(
    standbys: &mut [StandbyReport],
    primary: &'a PrimaryReport,
    slots: Option<&[SlotReport]>,
) -> Vec<Option<Sender<'a>>> {
    let mut senders: Vec<Option<Sender<'a>>> = standbys
        .iter_mut()
        .map(|standby| find_sender(standby, primary, slots))
        .collect();
    let shared_name = |senders: &[Option<Sender>], i: usize| {
        let name = senders[i]
            .as_ref()
            .filter(|s| s.how != "replication_slot")?
            .name
            .clone();
        let claimants = senders
            .iter()
            .flatten()
            .filter(|s| s.how != "replication_slot" && s.name == name)
            .count();
        (claimants > 1).then_some(claimants)
    };
    for i in 0..senders.len() {
        let Some(claimants) = shared_name(&senders, i) else {
            continue;
        };
        let host = standbys[i]
            .server
            .address
            .rsplit_once(':')
            .map(|(host, _)| host.trim_matches(['[', ']']).to_string())
            .filter(|host| host.parse::<std::net::IpAddr>().is_ok());
        let sender = senders[i].as_mut().expect("a shared name has a sender");
        let by_address: Vec<&ReplicationRow> = sender
            .rows
            .iter()
            .copied()
            .filter(|row| host.is_some() && row.client_addr == host)
            .collect();
        if by_address.len() == 1 {
            sender.rows = by_address;
            sender.how = "client_addr";
            standbys[i].matched_by = Some("client_addr");
            continue;
        }
        let streaming = sender
            .rows
            .iter()
            .filter(|row| row.state.as_deref() == Some("streaming"))
            .count();
        if streaming < claimants {
            sender.ambiguous = Some(claimants);
        }
    }
    senders
}

fn judge_replication_row(
    checks: &mut Checks,
    label: &str,
    standby: &mut StandbyReport,
    sender: Option<Sender>,
) {
    let Some(sender) = sender else {
        return;
    };
    if let Some(claimants) = sender.ambiguous {
        let how = how_sender_was_named(&sender, standby);
        let streaming = sender
            .rows
            .iter()
            .filter(|row| row.state.as_deref() == Some("streaming"))
            .count();
        checks.push_for(
            Status::Critical,
            label,
            "pg_stat_replication",
            format!("cannot tell whether this standby is connected: {claimants} configured standbys go by the name {:?} ({how}) and only {streaming} WAL sender(s) of that name stream, so at least one of them is not connected", sender.name),
            Some("give each standby its own application_name in its primary_conninfo (or its own replication slot), and set it in the config (application_name)"),
        );
        return;
    }
    let Some(row) = sender.rows.first() else {
        let how = how_sender_was_named(&sender, standby);
        return judge_missing_sender(checks, label, standby, &sender, &how);
    };
    standby.replication_state = row.state.clone();
    standby.sync_state = row.sync_state.clone();
    judge_sender_state(checks, label, &sender.name, row);
}

/// How the standby's sender name was found, for the messages.
fn how_sender_was_named(sender: &Sender, standby: &StandbyReport) -> String {
    match sender.how {
        "config" => "the configured application_name".to_string(),
        "replication_slot" => format!(
            "through its replication slot {:?}",
            standby
                .wal_receiver
                .as_ref()
                .and_then(|r| r.slot_name.as_deref())
                .unwrap_or("?")
        ),
        "primary_conninfo" => "the application_name of its primary_conninfo".to_string(),
        "cluster_name" => "its cluster_name".to_string(),
        "client_addr" => "its address".to_string(),
        _ => "the default name, as it has no application_name and no cluster_name".to_string(),
    }
}

/// No WAL sender of the primary has the standby's name: not connected, or (when the
/// name was only guessed) odoo-db cannot tell.
fn judge_missing_sender(
    checks: &mut Checks,
    label: &str,
    standby: &StandbyReport,
    sender: &Sender,
    how: &str,
) {
    let name = &sender.name;
    let receiver = standby.wal_receiver.as_ref();
    // The name was only guessed (cluster_name, walreceiver) because the role may not
    // read the WAL receiver's details: odoo-db cannot tell, which is not "not connected".
    let guessed = matches!(sender.how, "cluster_name" | "default");
    if guessed && receiver.is_some_and(|r| r.running && r.status.is_none()) {
        checks.push_for(
            Status::Unknown,
            label,
            "pg_stat_replication",
            format!("cannot tell which WAL sender is this standby's: none is named {name:?} ({how}), and its WAL receiver's details (slot, conninfo) cannot be read"),
            Some(MONITOR_HINT),
        );
        return;
    }
    let streams_from = match receiver {
        Some(WalReceiver {
            running: true,
            status: Some(status),
            sender_host: Some(host),
            sender_port: Some(port),
            ..
        }) => format!("; its WAL receiver is {status} from {host}:{port}"),
        _ => String::new(),
    };
    let hint = if sender.how == "config" {
        "check the standby's log and primary_conninfo; if it streams under another name, fix or remove application_name for it in the config"
    } else {
        "check the standby's log and its primary_conninfo (the network, pg_hba.conf on the primary; a standby streaming from another standby is not connected to the primary)"
    };
    checks.push_for(
        Status::Critical,
        label,
        "pg_stat_replication",
        format!("not connected to the primary: no WAL sender for application_name {name:?} ({how}) in its pg_stat_replication{streams_from}"),
        Some(hint),
    );
}

/// The state of the standby's WAL sender in the primary's pg_stat_replication.
fn judge_sender_state(checks: &mut Checks, label: &str, name: &str, row: &ReplicationRow) {
    let sync = row.sync_state.as_deref().unwrap_or("?");
    match row.state.as_deref() {
        None => checks.push_for(
            Status::Unknown,
            label,
            "pg_stat_replication",
            format!("cannot read the state of the WAL sender for {name:?} in pg_stat_replication"),
            Some(MONITOR_HINT),
        ),
        Some("streaming") => checks.push_for(
            Status::Ok,
            label,
            "pg_stat_replication",
            format!("in the primary's pg_stat_replication as {name:?}, streaming ({sync})"),
            None,
        ),
        Some("catchup") => checks.push_for(
            Status::Warning,
            label,
            "pg_stat_replication",
            format!("in the primary's pg_stat_replication as {name:?}, still catching up"),
            None,
        ),
        Some(state) => checks.push_for(
            Status::Warning,
            label,
            "pg_stat_replication",
            format!("in the primary's pg_stat_replication as {name:?}, state {state}"),
            None,
        ),
    }
}

fn judge_receiver(checks: &mut Checks, label: &str, standby: &StandbyReport) {
    let Some(receiver) = &standby.wal_receiver else {
        return;
    };
    let hint = "see the standby's log: primary_conninfo, the network, pg_hba.conf on the primary";
    if !receiver.running {
        checks.push_for(
            Status::Critical,
            label,
            "wal_receiver",
            "WAL receiver is not running: the standby receives no WAL".to_string(),
            Some(hint),
        );
        return;
    }
    let Some(status) = &receiver.status else {
        checks.push_for(
            Status::Unknown,
            label,
            "wal_receiver",
            "cannot read pg_stat_wal_receiver's details".to_string(),
            Some(MONITOR_HINT),
        );
        return;
    };
    if status != "streaming" {
        checks.push_for(
            Status::Critical,
            label,
            "wal_receiver",
            format!("WAL receiver is {status}, not streaming"),
            Some(hint),
        );
        return;
    }
    let silent = receiver.last_message_age_seconds.unwrap_or(0.0);
    let timeout = receiver.timeout_seconds.unwrap_or(0.0);
    if timeout > 0.0 && silent > timeout {
        checks.push_for(
            Status::Critical,
            label,
            "wal_receiver",
            format!(
                "WAL receiver has heard nothing from the primary for {} s (wal_receiver_timeout {} s)",
                fmt_secs(silent),
                fmt_secs(timeout)
            ),
            Some(hint),
        );
        return;
    }
    let from = match (&receiver.sender_host, receiver.sender_port) {
        (Some(host), Some(port)) => format!(" from {host}:{port}"),
        _ => String::new(),
    };
    checks.push_for(
        Status::Ok,
        label,
        "wal_receiver",
        format!(
            "WAL receiver streaming{from}, last message {} s ago",
            fmt_secs(silent)
        ),
        None,
    );
}

fn judge_replay(checks: &mut Checks, label: &str, standby: &StandbyReport) {
    match standby.replay_pause_state.as_deref() {
        None => {}
        Some("not paused") => checks.push_for(Status::Ok, label, "replay", "replay not paused".to_string(), None),
        Some(state) => checks.push_for(
            Status::Critical,
            label,
            "replay",
            format!("replay is paused (pause state: {state}): WAL is received but not applied"),
            Some("find why (pg_wal_replay_pause(), a recovery target, or on PostgreSQL 14+ a hot-standby setting lower than the primary's: see the standby's log), then SELECT pg_wal_replay_resume()"),
        ),
    }
}

/// The WAL the standby has not replayed, against the byte thresholds.
fn judge_lag_bytes(
    checks: &mut Checks,
    label: &str,
    standby: &StandbyReport,
    primary: &PrimaryReport,
    rules: &Rules,
) {
    let Thresholds { warn, crit } = rules.thresholds;
    match standby.lag_bytes {
        Some(bytes) => {
            let status = against(
                bytes as f64,
                warn.bytes.map(|b| b as f64),
                crit.bytes.map(|b| b as f64),
            );
            let mut message = format!("lag {}", format_bytes(bytes));
            message.push_str(&exceeded(
                status,
                &warn.bytes.map(format_bytes),
                &crit.bytes.map(format_bytes),
            ));
            if bytes > 0 {
                if let Some(unreceived) = standby.receive_lag_bytes {
                    message.push_str(&format!(
                        " ({} not yet received, {} received but not replayed)",
                        format_bytes(unreceived),
                        format_bytes(bytes.saturating_sub(unreceived))
                    ));
                }
            }
            checks.push_for(status, label, "lag_bytes", message, None);
        }
        None if standby.state_error.is_none() => {
            let why = if primary.current_wal_lsn.is_none() {
                "the primary's WAL position could not be read"
            } else {
                "the standby reported no replay position"
            };
            checks.push_for(
                Status::Unknown,
                label,
                "lag_bytes",
                format!("lag in bytes unknown: {why}"),
                None,
            );
        }
        None => {}
    }
}

/// The lag in time, from the heartbeat, against the time thresholds.
fn judge_lag_seconds(
    checks: &mut Checks,
    label: &str,
    standby: &StandbyReport,
    primary: &PrimaryReport,
    rules: &Rules,
) {
    let Thresholds { warn, crit } = rules.thresholds;
    let limits = |limit: Option<f64>| limit.map(|s| format!("{} s", fmt_secs(s)));
    match (standby.lag_seconds, standby.lag_seconds_source) {
        (Some(seconds), Some(LagSource::Heartbeat)) => {
            let status = against(seconds, warn.seconds, crit.seconds);
            let message = format!(
                "lag {} s (heartbeat replayed){}",
                fmt_secs(seconds),
                exceeded(status, &limits(warn.seconds), &limits(crit.seconds))
            );
            checks.push_for(status, label, "lag_seconds", message, None);
        }
        (Some(seconds), Some(LagSource::HeartbeatAge)) => {
            let status = against(seconds, warn.seconds, crit.seconds);
            let waited = match standby.heartbeat_wait_seconds {
                Some(waited) if primary.heartbeat.is_some() => {
                    format!("; this run's not replayed after {} s", fmt_secs(waited))
                }
                _ => "; this run's was not written".to_string(),
            };
            let message = format!(
                "lag {} s{} (age of the newest heartbeat the standby shows{waited})",
                fmt_secs(seconds),
                exceeded(status, &limits(warn.seconds), &limits(crit.seconds))
            );
            checks.push_for(status, label, "lag_seconds", message, None);
        }
        (Some(seconds), _) => checks.push_for(
            Status::Unknown,
            label,
            "lag_seconds",
            format!(
                "lag in time unknown (the primary could not be asked); the newest heartbeat the standby shows is {} s old by its own clock",
                fmt_secs(seconds)
            ),
            None,
        ),
        (None, _) => {
            if let Some((error, setup)) = &standby.heartbeat_error {
                checks.push_for(
                    failure_status(*setup),
                    label,
                    "lag_seconds",
                    format!("lag in time unknown: {error}"),
                    setup.then_some("`odoo-db init` creates the heartbeat table on every cluster with standbys"),
                );
            }
        }
    }
}

/// A value against its thresholds: above crit CRITICAL, above warn WARNING (strictly
/// above, as Nagios ranges read a threshold).
fn against(value: f64, warn: Option<f64>, crit: Option<f64>) -> Status {
    if crit.is_some_and(|crit| value > crit) {
        Status::Critical
    } else if warn.is_some_and(|warn| value > warn) {
        Status::Warning
    } else {
        Status::Ok
    }
}

fn exceeded(status: Status, warn: &Option<String>, crit: &Option<String>) -> String {
    match (status, warn, crit) {
        (Status::Critical, _, Some(crit)) => format!(" > crit {crit}"),
        (Status::Warning, Some(warn), _) => format!(" > warn {warn}"),
        _ => String::new(),
    }
}

/// Seconds for people: `0.004`, `0.04`, `12.5`, `300`.
pub fn fmt_secs(seconds: f64) -> String {
    let text = if seconds < 0.01 {
        format!("{seconds:.3}")
    } else if seconds < 100.0 {
        format!("{seconds:.2}")
    } else {
        format!("{seconds:.0}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::health::report::Limits;

    pub(crate) fn rules() -> Rules {
        Rules {
            thresholds: Thresholds {
                warn: Limits {
                    bytes: Some(16 << 20),
                    seconds: Some(30.0),
                },
                crit: Limits {
                    bytes: Some(256 << 20),
                    seconds: Some(300.0),
                },
            },
            slot_retained_warn: 1 << 30,
            limits: CheckLimits::default(),
        }
    }

    /// A production cluster whose primary and standby `db2` are fine.
    pub(crate) fn healthy() -> ClusterFacts {
        let mut primary = PrimaryReport {
            server: ServerReport::new("primary", "db1:5432".into()),
            ..PrimaryReport::default()
        };
        primary.server.reachable = true;
        primary.server.in_recovery = Some(false);
        primary.server.server_version_num = Some(150004);
        primary.current_wal_lsn = Some("0/3000000".into());
        primary.heartbeat = Some(7);
        primary.replication = Some(vec![ReplicationRow {
            pid: Some(4242),
            application_name: "db2".into(),
            state: Some("streaming".into()),
            sync_state: Some("async".into()),
            client_addr: None,
        }]);
        let mut standby = StandbyReport {
            server: ServerReport::new("db2", "db2:5432".into()),
            ..StandbyReport::default()
        };
        standby.server.reachable = true;
        standby.server.in_recovery = Some(true);
        standby.server.server_version_num = Some(150004);
        standby.server.cluster_name = Some("db2".into());
        standby.wal_receiver = Some(WalReceiver {
            running: true,
            status: Some("streaming".into()),
            last_message_age_seconds: Some(0.5),
            timeout_seconds: Some(60.0),
            ..WalReceiver::default()
        });
        standby.replay_pause_state = Some("not paused".into());
        standby.lag_bytes = Some(0);
        standby.receive_lag_bytes = Some(0);
        standby.lag_seconds = Some(0.04);
        standby.lag_seconds_source = Some(LagSource::Heartbeat);
        standby.heartbeat_seen = true;
        ClusterFacts {
            name: "production".into(),
            kind: ClusterKind::Production,
            primary,
            standbys: vec![standby],
            slots: Some(vec![SlotReport {
                name: "db2".into(),
                active: true,
                active_pid: None,
                temporary: false,
                retained_bytes: Some(1024),
                wal_status: Some("reserved".into()),
                safe_wal_size_bytes: None,
            }]),
            deadline: None,
        }
    }

    pub(crate) fn problems(checks: &[Check]) -> Vec<(Status, &'static str, String)> {
        checks
            .iter()
            .filter(|c| c.status != Status::Ok)
            .map(|c| (c.status, c.check, c.message.clone()))
            .collect()
    }

    #[test]
    fn a_healthy_cluster_is_ok_and_matches_the_standby_by_cluster_name() {
        let (report, checks) = cluster(healthy(), &rules());
        assert_eq!(report.status, Status::Ok, "{:?}", problems(&checks));
        assert_eq!(report.standbys[0].application_name.as_deref(), Some("db2"));
        assert_eq!(
            report.standbys[0].replication_state.as_deref(),
            Some("streaming")
        );
        assert!(checks
            .iter()
            .any(|c| c.check == "lag_seconds" && c.message == "lag 0.04 s (heartbeat replayed)"));
    }

    /// A standby without application_name in the config, streaming as `name`.
    fn unconfigured(name: &str) -> ClusterFacts {
        let mut facts = healthy();
        facts.primary.replication = Some(vec![
            // A base backup in progress is never taken for the standby (SQL filters
            // startup/backup rows; a second sender here must not confuse the match).
            ReplicationRow {
                pid: Some(7),
                application_name: "pg_basebackup".into(),
                state: Some("streaming".into()),
                sync_state: Some("async".into()),
                client_addr: None,
            },
            ReplicationRow {
                pid: Some(4242),
                application_name: name.into(),
                state: Some("streaming".into()),
                sync_state: Some("async".into()),
                client_addr: None,
            },
        ]);
        facts
    }

    fn matched(facts: ClusterFacts) -> (Status, Option<String>, Option<&'static str>) {
        let (report, checks) = cluster(facts, &rules());
        let standby = &report.standbys[0];
        assert_eq!(
            standby.replication_state.is_some(),
            report.status == Status::Ok,
            "{:?}",
            problems(&checks)
        );
        (
            report.status,
            standby.application_name.clone(),
            standby.matched_by,
        )
    }

    #[test]
    fn a_standby_is_matched_without_configuration() {
        // Through its slot: whatever it is called.
        let mut facts = unconfigured("anything at all");
        facts.standbys[0].server.cluster_name = Some("15/main".into());
        facts.standbys[0].wal_receiver.as_mut().unwrap().slot_name = Some("db2".into());
        facts.slots.as_mut().unwrap()[0].active_pid = Some(4242);
        assert_eq!(
            matched(facts),
            (
                Status::Ok,
                Some("anything at all".into()),
                Some("replication_slot")
            )
        );
        // The application_name in its primary_conninfo, over its cluster_name.
        let mut facts = unconfigured("custom");
        facts.standbys[0].server.cluster_name = Some("15/main".into());
        facts.standbys[0]
            .wal_receiver
            .as_mut()
            .unwrap()
            .application_name = Some("custom".into());
        assert_eq!(
            matched(facts),
            (Status::Ok, Some("custom".into()), Some("primary_conninfo"))
        );
        // Debian's cluster_name.
        let mut facts = unconfigured("15/main");
        facts.standbys[0].server.cluster_name = Some("15/main".into());
        assert_eq!(
            matched(facts),
            (Status::Ok, Some("15/main".into()), Some("cluster_name"))
        );
        // Neither: walreceiver.
        let mut facts = unconfigured("walreceiver");
        facts.standbys[0].server.cluster_name = Some(String::new());
        assert_eq!(
            matched(facts),
            (Status::Ok, Some("walreceiver".into()), Some("default"))
        );
        // A configured application_name overrides, even against the slot.
        let mut facts = unconfigured("custom");
        facts.standbys[0].application_name = Some("db9".into());
        facts.standbys[0].wal_receiver.as_mut().unwrap().slot_name = Some("db2".into());
        facts.slots.as_mut().unwrap()[0].active_pid = Some(4242);
        let (status, _, how) = matched(facts);
        assert_eq!((status, how), (Status::Critical, Some("config")));
        // The details unreadable (no pg_monitor) and the guess wrong: UNKNOWN, not
        // "not connected".
        let mut facts = unconfigured("named elsewhere");
        facts.standbys[0].server.cluster_name = Some("15/main".into());
        facts.standbys[0].wal_receiver.as_mut().unwrap().status = None;
        let (report, checks) = cluster(facts, &rules());
        let found = problems(&checks);
        assert!(
            found.iter().any(|(s, c, m)| *s == Status::Unknown
                && *c == "pg_stat_replication"
                && m.starts_with("cannot tell")),
            "{found:?}"
        );
        assert!(!found.iter().any(|(_, _, m)| m.contains("not connected")));
        assert_eq!(report.standbys[0].server.status, Status::Unknown);
        // A slot whose sender is gone falls back to the names.
        let mut facts = unconfigured("15/main");
        facts.standbys[0].server.cluster_name = Some("15/main".into());
        facts.standbys[0].wal_receiver.as_mut().unwrap().slot_name = Some("db2".into());
        facts.slots.as_mut().unwrap()[0].active_pid = Some(1);
        assert_eq!(matched(facts).2, Some("cluster_name"));
    }

    #[test]
    fn two_standbys_with_one_name_are_an_ambiguity_unless_both_stream() {
        // Both Debian's 15/main, one sender streaming: which one is missing is not
        // known, and neither may read as OK.
        let mut facts = unconfigured("15/main");
        let mut second = facts.standbys[0].clone();
        second.server.name = "db3".into();
        second.server.address = "db3:5432".into();
        facts.standbys.push(second);
        for standby in &mut facts.standbys {
            standby.server.cluster_name = Some("15/main".into());
        }
        let (report, checks) = cluster(facts, &rules());
        let found = problems(&checks);
        let ambiguous: Vec<_> = found
            .iter()
            .filter(|(s, c, m)| {
                *s == Status::Critical
                    && *c == "pg_stat_replication"
                    && m.starts_with("cannot tell whether this standby is connected: 2 configured standbys go by the name \"15/main\"")
            })
            .collect();
        assert_eq!(ambiguous.len(), 2, "{found:?}");
        assert_eq!(report.standbys[1].server.status, Status::Critical);
        // Both stream: each has a sender, OK.
        let mut facts = unconfigured("15/main");
        let rows = facts.primary.replication.as_mut().unwrap();
        let mut row = rows[1].clone();
        row.pid = Some(4343);
        rows.push(row);
        let mut second = facts.standbys[0].clone();
        second.server.name = "db3".into();
        facts.standbys.push(second);
        for standby in &mut facts.standbys {
            standby.server.cluster_name = Some("15/main".into());
        }
        let (report, checks) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Ok, "{:?}", problems(&checks));
        // Told apart by address: the one whose address has no sender is not connected.
        let mut facts = unconfigured("15/main");
        facts.primary.replication.as_mut().unwrap()[1].client_addr = Some("10.0.0.2".into());
        facts.standbys[0].server.address = "10.0.0.2:5432".into();
        let mut second = facts.standbys[0].clone();
        second.server.name = "db3".into();
        second.server.address = "10.0.0.3:5432".into();
        facts.standbys.push(second);
        for standby in &mut facts.standbys {
            standby.server.cluster_name = Some("15/main".into());
        }
        let (report, _) = cluster(facts, &rules());
        assert_eq!(report.standbys[0].matched_by, Some("client_addr"));
        assert_eq!(report.standbys[0].server.status, Status::Ok);
        assert_eq!(report.standbys[1].server.status, Status::Critical);
    }

    #[test]
    fn a_dead_receiver_is_critical_even_with_zero_byte_lag() {
        let mut facts = healthy();
        facts.standbys[0].wal_receiver = Some(WalReceiver::default());
        facts.primary.replication = Some(vec![]);
        let (report, checks) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Critical);
        let found = problems(&checks);
        assert!(
            found
                .iter()
                .any(|(_, check, m)| *check == "wal_receiver" && m.contains("not running")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(_, check, _)| *check == "pg_stat_replication"),
            "{found:?}"
        );
    }

    #[test]
    fn paused_replay_and_byte_lag_are_critical() {
        let mut facts = healthy();
        facts.standbys[0].replay_pause_state = Some("paused".into());
        facts.standbys[0].lag_bytes = Some(300 << 20);
        let (report, checks) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Critical);
        let found = problems(&checks);
        assert!(
            found
                .iter()
                .any(|(_, c, m)| *c == "replay" && m.contains("paused")),
            "{found:?}"
        );
        assert!(found.iter().any(|(_, c, m)| *c == "lag_bytes" && m == "lag 300.0 MB > crit 256.0 MB (0 B not yet received, 300.0 MB received but not replayed)"), "{found:?}");
    }

    #[test]
    fn the_heartbeat_age_is_judged_and_the_standby_clock_age_is_not() {
        let mut facts = healthy();
        facts.standbys[0].lag_seconds = Some(400.0);
        facts.standbys[0].lag_seconds_source = Some(LagSource::HeartbeatAge);
        let (report, _) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Critical);

        let mut facts = healthy();
        facts.primary.server.reachable = false;
        facts.primary.server.error = Some("connection refused".into());
        facts.primary.replication = None;
        facts.standbys[0].lag_bytes = None;
        facts.standbys[0].lag_seconds = Some(400.0);
        facts.standbys[0].lag_seconds_source = Some(LagSource::HeartbeatAgeStandbyClock);
        let (report, checks) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Critical);
        assert_eq!(
            report.standbys[0].server.status,
            Status::Unknown,
            "{:?}",
            problems(&checks)
        );
    }

    #[test]
    fn slots_lost_unreserved_inactive() {
        let mut facts = healthy();
        facts.slots = Some(vec![
            SlotReport {
                name: "a".into(),
                active: false,
                active_pid: None,
                temporary: false,
                retained_bytes: Some(10),
                wal_status: Some("lost".into()),
                safe_wal_size_bytes: None,
            },
            SlotReport {
                name: "b".into(),
                active: true,
                active_pid: None,
                temporary: false,
                retained_bytes: Some(2 << 30),
                wal_status: Some("unreserved".into()),
                safe_wal_size_bytes: None,
            },
            SlotReport {
                name: "c".into(),
                active: false,
                active_pid: None,
                temporary: false,
                retained_bytes: Some(10),
                wal_status: Some("reserved".into()),
                safe_wal_size_bytes: None,
            },
        ]);
        let (report, checks) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Critical);
        let found = problems(&checks);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(found
            .iter()
            .any(|(s, _, m)| *s == Status::Critical && m.starts_with("slot a: wal_status lost")));
        assert!(found.iter().any(
            |(s, _, m)| *s == Status::Warning && m.starts_with("slot b: wal_status unreserved")
        ));
        assert!(found
            .iter()
            .any(|(s, _, m)| *s == Status::Warning && m.starts_with("slot b: retains 2.0 GB")));
        assert!(found
            .iter()
            .any(|(s, _, m)| *s == Status::Warning && m.starts_with("slot c: inactive")));
    }

    #[test]
    fn a_login_refusal_is_unknown_and_an_unreachable_server_critical() {
        let mut facts = healthy();
        facts.standbys[0].server.reachable = false;
        facts.standbys[0].server.error =
            Some("SQLSTATE 28P01 password authentication failed".into());
        facts.standbys[0].server.error_is_setup = true;
        let (report, _) = cluster(facts, &rules());
        // Its missing row in pg_stat_replication is still a finding; the login is UNKNOWN.
        assert_eq!(report.standbys[0].server.status, Status::Unknown);
        let mut facts = healthy();
        facts.standbys[0].server.reachable = false;
        facts.standbys[0].server.error = Some("Connection refused".into());
        let (report, _) = cluster(facts, &rules());
        assert_eq!(report.status, Status::Critical);
    }

    #[test]
    fn seconds_read_well() {
        assert_eq!(fmt_secs(0.0), "0");
        assert_eq!(fmt_secs(0.0042), "0.004");
        assert_eq!(fmt_secs(0.04), "0.04");
        assert_eq!(fmt_secs(3.0), "3");
        assert_eq!(fmt_secs(12.345), "12.35");
        assert_eq!(fmt_secs(300.0), "300");
    }
}
