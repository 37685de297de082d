//! Topology: are the configured servers still one cluster with one writable primary?
//!
//! Failovers, switchovers and split brains show first as servers in the wrong role. Each
//! server's own role check says what it is; this check looks at them together, so a
//! switchover reads as "the roles swapped, X is the primary now" rather than two
//! unrelated failures, and names the server that accepts writes.

use super::{Checks, Status};
use crate::health::report::{PrimaryReport, ServerReport, StandbyReport};

/// What the topology check concluded, for the role checks' messages.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Topology {
    /// The standby that is the primary now, with the configured primary streaming from
    /// it: the roles swapped.
    pub swapped_with: Option<String>,
}

/// Whether the server answered who it is.
fn known(server: &ServerReport) -> bool {
    server.reachable && server.error.is_none() && server.in_recovery.is_some()
}

/// `host:port` addresses name the same server: equal, or the same port on the local
/// machine (a socket directory, `localhost`, a loopback address).
fn same_address(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let split = |text: &str| {
        text.rsplit_once(':')
            .map(|(h, p)| (h.trim_matches(['[', ']']).to_string(), p.to_string()))
    };
    let local = |host: &str| {
        host.starts_with('/') || host == "localhost" || host == "127.0.0.1" || host == "::1"
    };
    match (split(a), split(b)) {
        (Some((ha, pa)), Some((hb, pb))) => pa == pb && (ha == hb || (local(&ha) && local(&hb))),
        _ => false,
    }
}

pub(super) fn judge(
    checks: &mut Checks,
    primary: &PrimaryReport,
    standbys: &[StandbyReport],
) -> Topology {
    let p = &primary.server;
    let foreign = foreign_standbys(checks, p, standbys);
    let mut problems = foreign.len();
    let mut writable: Vec<(String, &ServerReport)> = Vec::new();
    if known(p) && p.in_recovery == Some(false) {
        writable.push((p.label("primary"), p));
    }
    for standby in standbys
        .iter()
        .filter(|s| !foreign.contains(&s.server.name))
    {
        if known(&standby.server) && standby.server.in_recovery == Some(false) {
            writable.push((standby.server.label("standby"), &standby.server));
        }
    }
    let mut topology = Topology::default();
    if writable.len() >= 2 {
        let names: Vec<String> = writable
            .iter()
            .map(|(label, server)| format!("{label} ({})", server.address))
            .collect();
        checks.push(
            Status::Critical,
            None,
            "topology",
            format!(
                "split brain: {} servers of this cluster accept writes: {}; their data diverge with every write",
                writable.len(),
                names.join(" and ")
            ),
            Some("stop the writes to all but one now (the application's database URL, or stop the server that must not be primary), then rebuild the others as its standbys (pg_rewind or pg_basebackup) and fix the config"),
        );
        return topology;
    }
    let promoted = writable
        .iter()
        .find(|(_, server)| !std::ptr::eq(*server, p))
        .map(|(label, server)| (label.clone(), server.name.clone(), server.address.clone()));
    problems += roles(checks, p, promoted, &mut topology);
    problems += timelines(checks, p, standbys);
    if problems == 0 {
        if let (Some(sysid), Some(timeline)) = (&p.system_identifier, p.timeline) {
            let servers = 1 + standbys.iter().filter(|s| known(&s.server)).count();
            checks.push(
                Status::Ok,
                None,
                "topology",
                format!("one primary; system identifier {sysid}, timeline {timeline} on all {servers} servers that answered"),
                None,
            );
        }
    }
    topology
}

/// Standbys whose system identifier is not the primary's, each reported; their names.
fn foreign_standbys(
    checks: &mut Checks,
    p: &ServerReport,
    standbys: &[StandbyReport],
) -> Vec<String> {
    let mut foreign = Vec::new();
    let Some(ours) = p.system_identifier.as_deref() else {
        return foreign;
    };
    for standby in standbys {
        let s = &standby.server;
        if let Some(theirs) = s.system_identifier.as_deref().filter(|t| *t != ours) {
            foreign.push(s.name.clone());
            checks.push(
                Status::Critical,
                Some(&s.label("standby")),
                "topology",
                format!("belongs to another cluster: system identifier {theirs}, the primary's is {ours}"),
                Some("the config points this standby at a server of another cluster, or it was rebuilt from another primary: fix clusters.<name>.standbys, or rebuild it from this primary (pg_basebackup)"),
            );
        }
    }
    foreign
}

/// The configured primary in recovery, or a standby promoted (`promoted`: its label,
/// name and address) with the primary unreachable: what happened, naming the server that
/// accepts writes. Returns how many problems it reported.
fn roles(
    checks: &mut Checks,
    p: &ServerReport,
    promoted: Option<(String, String, String)>,
    topology: &mut Topology,
) -> usize {
    let primary_label = p.label("primary");
    let message = if known(p) && p.in_recovery == Some(true) {
        let upstream = p.upstream.as_deref();
        match &promoted {
            Some((label, name, address)) if upstream.is_some_and(|u| same_address(u, address)) => {
                topology.swapped_with = Some(name.clone());
                format!("roles swapped (a switchover or failover): {label} ({address}) accepts writes and is the primary now; the configured {primary_label} is in recovery, streaming from it")
            }
            Some((label, _, address)) => format!(
                "failover: the configured {primary_label} is in recovery{}; {label} ({address}) was promoted and accepts writes",
                upstream.map(|u| format!(" (streaming from {u})")).unwrap_or_default()
            ),
            None => format!(
                "no server accepts writes: the configured {primary_label} is in recovery{}",
                upstream.map(|u| format!(", streaming from {u}")).unwrap_or_default()
            ),
        }
    } else if let Some((label, _, address)) = &promoted {
        format!("failover: {label} ({address}) was promoted and accepts writes; the configured {primary_label} cannot be reached")
    } else {
        return 0;
    };
    checks.push(
        Status::Critical,
        None,
        "topology",
        message,
        Some("if the switchover or failover was intended, put the server that accepts writes in clusters.<name>.primary and the others in standbys (and rebuild the old primary as a standby before it starts again); if not, find out what promoted it before anything writes to both"),
    );
    1
}

/// Standbys in recovery on another timeline than the writable primary's; returns how
/// many.
fn timelines(checks: &mut Checks, p: &ServerReport, standbys: &[StandbyReport]) -> usize {
    let (Some(timeline), Some(false)) = (p.timeline, p.in_recovery) else {
        return 0;
    };
    let mut problems = 0;
    for standby in standbys {
        let s = &standby.server;
        let same_cluster = s.system_identifier == p.system_identifier;
        if let (Some(theirs), Some(true), true) = (s.timeline, s.in_recovery, same_cluster) {
            if theirs != timeline {
                problems += 1;
                checks.push(
                    Status::Critical,
                    Some(&s.label("standby")),
                    "topology",
                    format!("on timeline {theirs}, the primary on {timeline}: it follows another server, or has not followed a promotion"),
                    Some("check its primary_conninfo and recovery_target_timeline ('latest'); a standby left on an old timeline must be rebuilt (pg_rewind or pg_basebackup)"),
                );
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::tests::{healthy, problems, rules};
    use super::super::*;
    use super::same_address;

    fn with_identity(mut facts: ClusterFacts) -> ClusterFacts {
        facts.primary.server.system_identifier = Some("7".into());
        facts.primary.server.timeline = Some(1);
        facts.standbys[0].server.system_identifier = Some("7".into());
        facts.standbys[0].server.timeline = Some(1);
        facts
    }

    fn topology(facts: ClusterFacts) -> (Status, Vec<(Status, &'static str, String)>) {
        let (report, checks) = cluster(facts, &rules());
        let found = problems(&checks)
            .into_iter()
            .filter(|(_, c, _)| *c == "topology" || c.ends_with("_role"))
            .collect();
        (report.status, found)
    }

    #[test]
    fn one_primary_with_its_standbys_is_ok() {
        let (report, checks) = cluster(with_identity(healthy()), &rules());
        assert_eq!(report.status, Status::Ok, "{:?}", problems(&checks));
        assert!(checks.iter().any(|c| c.check == "topology"
            && c.message
                == "one primary; system identifier 7, timeline 1 on all 2 servers that answered"));
    }

    #[test]
    fn a_standby_of_another_cluster_is_critical() {
        let mut facts = with_identity(healthy());
        facts.standbys[0].server.system_identifier = Some("8".into());
        let (status, found) = topology(facts);
        assert_eq!(status, Status::Critical);
        assert!(found[0]
            .2
            .starts_with("belongs to another cluster: system identifier 8"));
    }

    #[test]
    fn two_writable_servers_are_a_split_brain() {
        let mut facts = with_identity(healthy());
        facts.standbys[0].server.in_recovery = Some(false);
        let (status, found) = topology(facts);
        assert_eq!(status, Status::Critical);
        assert!(
            found.iter().any(|(_, c, m)| *c == "topology"
                && m.starts_with("split brain: 2 servers")
                && m.contains("standby db2 (db2:5432)")),
            "{found:?}"
        );
    }

    #[test]
    fn swapped_roles_are_reported_as_such() {
        let mut facts = with_identity(healthy());
        facts.primary.server.in_recovery = Some(true);
        facts.primary.server.upstream = Some("db2:5432".into());
        facts.standbys[0].server.in_recovery = Some(false);
        let (status, found) = topology(facts);
        assert_eq!(status, Status::Critical);
        assert!(
            found.iter().any(|(_, c, m)| *c == "topology"
                && m.starts_with("roles swapped")
                && m.contains("standby db2 (db2:5432) accepts writes")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(_, c, m)| *c == "primary_role" && m.contains("swapped")),
            "{found:?}"
        );
        // Not streaming from it: a failover, naming the promoted server.
        let mut facts = with_identity(healthy());
        facts.primary.server.in_recovery = Some(true);
        facts.standbys[0].server.in_recovery = Some(false);
        let (_, found) = topology(facts);
        assert!(
            found.iter().any(|(_, _, m)| m.starts_with("failover: the configured primary db1:5432 is in recovery; standby db2 (db2:5432) was promoted")),
            "{found:?}"
        );
    }

    #[test]
    fn a_promoted_standby_with_the_primary_down_is_named() {
        let mut facts = with_identity(healthy());
        facts.primary.server.reachable = false;
        facts.primary.server.error = Some("Connection refused".into());
        facts.standbys[0].server.in_recovery = Some(false);
        let (_, found) = topology(facts);
        assert!(
            found
                .iter()
                .any(|(_, _, m)| m.starts_with("failover: standby db2 (db2:5432) was promoted")),
            "{found:?}"
        );
    }

    #[test]
    fn a_standby_on_another_timeline_is_critical() {
        let mut facts = with_identity(healthy());
        facts.standbys[0].server.timeline = Some(2);
        let (status, found) = topology(facts);
        assert_eq!(status, Status::Critical);
        assert!(found[0].2.starts_with("on timeline 2, the primary on 1"));
    }

    #[test]
    fn local_addresses_match_by_port() {
        assert!(same_address("127.0.0.1:5433", "localhost:5433"));
        assert!(same_address("/var/run/postgresql:5433", "127.0.0.1:5433"));
        assert!(!same_address("10.0.0.1:5433", "10.0.0.2:5433"));
        assert!(!same_address("127.0.0.1:5433", "127.0.0.1:5434"));
    }
}
