//! `odoo-db audit`: what the servers hold against what the catalog says they should.
//!
//! Every client of a cluster can list all its databases and roles, so a name that
//! contains a customer's name (or any of its tokens, as `names` defines them) tells every
//! other customer who is hosted there: CRITICAL, on any cluster, whoever created it. The
//! catalog's own entries are checked too: a managed database missing on its server, owned
//! by the wrong role, or still open to PUBLIC is a WARNING; databases odoo-db does not
//! manage are listed for information. Same formats and exit codes as `health`, so the
//! same monitoring can run it.

mod neutralization;
mod suspension;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::{join, join_all};
use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog::{Catalog, ManagedDatabase as Managed};
use crate::cli::{AuditArgs, ReportFormat};
use crate::config::{ClusterKind, Config};
use crate::error::{Class, Error, Result};
use crate::names::find_customer_in_name;
use crate::output::check::{Check, Status, SCHEMA_VERSION};
use crate::output::nagios::{nagios_output, perf};
use crate::output::prometheus::{status_number, Exposition};
use crate::output::table::{checks_table, hints};
use crate::servers::Servers;
use pgconn::SessionOptions;

const DATABASES: &str = include_str!("../../../sql/audit/databases.sql");

/// Databases PostgreSQL itself owns: not customers' names, whatever they contain.
const SYSTEM_DATABASES: &[&str] = &["postgres", "template0", "template1"];

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub schema_version: u32,
    pub status: Status,
    pub exit_code: u8,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    /// How many customers the catalog knows (their names are not printed).
    pub customers: usize,
    pub clusters: Vec<AuditCluster>,
    pub checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
pub struct AuditCluster {
    pub name: String,
    pub kind: ClusterKind,
    pub status: Status,
    pub reachable: bool,
    pub error: Option<String>,
    pub databases: usize,
    pub roles: usize,
    /// Catalog entries on this cluster.
    pub managed: usize,
    /// Names that contain a customer's name or token.
    pub violations: Vec<Violation>,
    /// Databases on the server that the catalog does not manage (informative).
    pub unmanaged_databases: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Violation {
    /// `database` or `role`.
    pub kind: &'static str,
    pub name: String,
    pub customer: String,
    /// The part of the name that gives the customer away.
    pub token: String,
}

/// What a cluster's primary holds.
struct Holdings {
    databases: Vec<ServerDatabase>,
    roles: Vec<String>,
}

struct ServerDatabase {
    name: String,
    owner: String,
    public_connect: bool,
}

pub async fn run(config: &Config, args: &AuditArgs) -> Result<u8> {
    let format = args.format.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() {
            ReportFormat::Text
        } else {
            ReportFormat::Nagios
        }
    });
    let started = Instant::now();
    let started_at = Utc::now();
    let servers = Servers::open(config).await?;
    let mut clusters: Vec<(&String, ClusterKind)> = config
        .clusters
        .iter()
        .map(|(name, c)| (name, c.kind))
        .collect();
    clusters.sort_by_key(|(name, kind)| (*kind != ClusterKind::Production, (*name).clone()));

    // The catalog and every cluster at once, all within `[health] timeout`.
    let work = join(
        read_catalog(&servers),
        join_all(
            clusters
                .iter()
                .map(|(name, _)| read_cluster(&servers, name, config.health.timeout)),
        ),
    );
    let (catalog, holdings) = tokio::time::timeout(config.health.timeout, work)
        .await
        .map_err(|_| {
            Error::unknown(format!(
                "the audit's deadline ([health] timeout, {} s) came before every cluster answered",
                config.health.timeout.as_secs_f64()
            ))
        })?;
    // A catalog without odoo-db's schema is a setup problem (UNKNOWN); an unreachable one
    // means nothing can be compared: CRITICAL.
    let (customers, managed) = match catalog {
        Ok(found) => found,
        Err(error) if error.class() == Class::Refused => return Err(error),
        Err(error) => {
            let check = Check {
                status: Status::Critical,
                cluster: Some(config.catalog.cluster.clone()),
                server: None,
                check: "catalog",
                message: format!("the catalog cannot be read, nothing was audited: {error}"),
                hint: None,
            };
            let report = finish(Vec::new(), vec![check], 0, started, started_at);
            return print(&report, format);
        }
    };

    let mut checks = Vec::new();
    let mut reports = Vec::new();
    for ((name, kind), holdings) in clusters.iter().zip(holdings) {
        let own_roles = own_roles(config, &servers, name);
        let (cluster, cluster_checks) = audit_cluster(
            name,
            *kind,
            holdings,
            &customers,
            &managed,
            &own_roles,
            &config.catalog.database,
        );
        reports.push(cluster);
        checks.extend(cluster_checks);
    }
    checks.extend(suspension::checks(&servers, config.health.timeout).await);
    checks.extend(neutralization::checks(&servers).await);
    let report = finish(reports, checks, customers.len(), started, started_at);
    print(&report, format)
}

fn finish(
    clusters: Vec<AuditCluster>,
    checks: Vec<Check>,
    customers: usize,
    started: Instant,
    started_at: DateTime<Utc>,
) -> AuditReport {
    let status = Status::worst_of(checks.iter().map(|c| c.status));
    AuditReport {
        schema_version: SCHEMA_VERSION,
        status,
        exit_code: status.exit_code(),
        started_at,
        duration_seconds: started.elapsed().as_secs_f64(),
        customers,
        clusters,
        checks,
    }
}

fn print(report: &AuditReport, format: ReportFormat) -> Result<u8> {
    let text = match format {
        ReportFormat::Text => text(report),
        ReportFormat::Nagios => nagios(report),
        ReportFormat::Json => {
            serde_json::to_string_pretty(report).expect("the report serializes") + "\n"
        }
        ReportFormat::Prometheus => prometheus(report),
    };
    // A closed stdout (`| head`) keeps the exit code: the audit's verdict.
    let mut stdout = std::io::stdout().lock();
    crate::written(
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush()),
    );
    Ok(report.exit_code)
}

/// Roles odoo-db itself logs in as on a cluster: their names are the operator's choice.
fn own_roles(config: &Config, servers: &Servers, cluster: &str) -> HashSet<String> {
    let mut roles = HashSet::new();
    if let Ok(params) = servers.primary(cluster) {
        roles.insert(params.user().to_string());
    }
    if let Ok(standbys) = servers.standbys(cluster) {
        roles.extend(standbys.iter().map(|(_, params)| params.user().to_string()));
    }
    roles.extend(config.health.user.clone());
    roles
}

async fn read_catalog(servers: &Servers) -> Result<(Vec<String>, Vec<Managed>)> {
    let catalog = Catalog::open(servers).await?;
    let customers = catalog.customers().await?;
    let managed = catalog.managed_databases().await?;
    Ok((customers, managed))
}

/// The databases and roles of a cluster's primary (a standby holds the same).
async fn read_cluster(servers: &Servers, cluster: &str, timeout: Duration) -> Result<Holdings> {
    let params = servers.primary(cluster)?;
    let session = SessionOptions {
        statement_timeout: Some((timeout / 2).min(Duration::from_secs(10))),
        lock_timeout: Some((timeout / 4).min(Duration::from_secs(5))),
    };
    let client: Client = params.connect(&session).await?;
    let (databases, roles) = join(
        client.query_typed(DATABASES, &[]),
        client.query_typed("SELECT rolname::text FROM pg_roles ORDER BY rolname", &[]),
    )
    .await;
    let databases = databases?
        .iter()
        .map(|row| ServerDatabase {
            name: row.get("name"),
            owner: row.get("owner"),
            public_connect: row.get("public_connect"),
        })
        .collect();
    let roles = roles?.iter().map(|row| row.get(0)).collect();
    Ok(Holdings { databases, roles })
}

/// The checks of one cluster's audit, in the order they are found.
struct Findings<'a> {
    cluster: &'a str,
    checks: Vec<Check>,
}

impl Findings<'_> {
    fn add(&mut self, status: Status, what: &'static str, message: String, hint: Option<&str>) {
        self.checks.push(Check {
            status,
            cluster: Some(self.cluster.to_string()),
            server: Some("primary".to_string()),
            check: what,
            message,
            hint: hint.map(str::to_string),
        });
    }
}

/// Judges one cluster against the catalog.
fn audit_cluster(
    name: &str,
    kind: ClusterKind,
    holdings: Result<Holdings>,
    customers: &[String],
    managed: &[Managed],
    own_roles: &HashSet<String>,
    catalog_database: &str,
) -> (AuditCluster, Vec<Check>) {
    let mut findings = Findings {
        cluster: name,
        checks: Vec::new(),
    };
    let mine: Vec<&Managed> = managed.iter().filter(|m| m.cluster == name).collect();
    let mut cluster = AuditCluster {
        name: name.to_string(),
        kind,
        status: Status::Ok,
        reachable: false,
        error: None,
        databases: 0,
        roles: 0,
        managed: mine.len(),
        violations: Vec::new(),
        unmanaged_databases: Vec::new(),
    };
    let holdings = match holdings {
        Ok(holdings) => holdings,
        Err(error) => {
            let status = if error.is_sqlstate(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
                || error.class() == Class::Refused
            {
                Status::Unknown
            } else {
                Status::Critical
            };
            findings.add(
                status,
                "reachable",
                format!("cannot be audited: {error}"),
                None,
            );
            cluster.error = Some(error.to_string());
            cluster.status = status;
            return (cluster, findings.checks);
        }
    };
    cluster.reachable = true;
    cluster.databases = holdings.databases.len();
    cluster.roles = holdings.roles.len();
    cluster.violations = revealing_names(
        &holdings,
        customers,
        own_roles,
        catalog_database,
        &mut findings,
    );
    check_managed(&holdings, &mine, &mut findings);
    cluster.unmanaged_databases =
        unmanaged_databases(&holdings, &mine, catalog_database, &mut findings);
    cluster.status = Status::worst_of(findings.checks.iter().map(|c| c.status));
    (cluster, findings.checks)
}

/// 1. Names that give a customer away.
fn revealing_names(
    holdings: &Holdings,
    customers: &[String],
    own_roles: &HashSet<String>,
    catalog_database: &str,
    findings: &mut Findings,
) -> Vec<Violation> {
    let customer_names: Vec<&str> = customers.iter().map(String::as_str).collect();
    let mut violations = Vec::new();
    let databases = holdings
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .filter(|db| !SYSTEM_DATABASES.contains(db) && *db != catalog_database)
        .map(|db| ("database", db));
    let roles = holdings
        .roles
        .iter()
        .map(String::as_str)
        .filter(|role| {
            !role.starts_with("pg_") && *role != "postgres" && !own_roles.contains(*role)
        })
        .map(|role| ("role", role));
    for (what, object) in databases.chain(roles) {
        if let Some((customer, token)) =
            find_customer_in_name(object, customer_names.iter().copied())
        {
            findings.add(
                Status::Critical,
                "name",
                format!("{what} {object} contains {token:?}, a name of customer {customer}"),
                Some("every client of the cluster can list it: rename it to a generated name (odoo-db adopt/provision) or drop it"),
            );
            violations.push(Violation {
                kind: what,
                name: object.to_string(),
                customer,
                token,
            });
        }
    }
    if violations.is_empty() {
        findings.add(
            Status::Ok,
            "name",
            format!(
                "no database or role name contains a customer's name ({} databases, {} roles, {} customers)",
                holdings.databases.len(),
                holdings.roles.len(),
                customers.len()
            ),
            None,
        );
    }
    violations
}

/// 2. The catalog's entries as the server has them.
fn check_managed(holdings: &Holdings, mine: &[&Managed], findings: &mut Findings) {
    let on_server: HashMap<&str, &ServerDatabase> = holdings
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d))
        .collect();
    let role_set: HashSet<&str> = holdings.roles.iter().map(String::as_str).collect();
    let mut drift = 0;
    for entry in mine {
        let unfinished = if entry.state == "ready" {
            String::new()
        } else {
            format!(
                " (state {}: run the interrupted command again to finish it)",
                entry.state
            )
        };
        let label = format!(
            "{} database {} (customer {})",
            entry.environment, entry.name, entry.customer
        );
        let Some(database) = on_server.get(entry.name.as_str()) else {
            drift += 1;
            findings.add(
                Status::Warning,
                "managed",
                format!("{label} is in the catalog but not on the server{unfinished}"),
                Some("recreate or restore it, or remove the catalog entry if it is really gone"),
            );
            continue;
        };
        if !role_set.contains(entry.owner.as_str()) {
            drift += 1;
            findings.add(
                Status::Warning,
                "managed",
                format!("{label}: its owner role {} does not exist", entry.owner),
                None,
            );
        } else if database.owner != entry.owner {
            drift += 1;
            findings.add(
                Status::Warning,
                "managed",
                format!(
                    "{label} is owned by {}, the catalog says {}",
                    database.owner, entry.owner
                ),
                Some("ALTER DATABASE <name> OWNER TO <catalog owner>"),
            );
        }
        if database.public_connect {
            drift += 1;
            findings.add(
                Status::Warning,
                "managed",
                format!("{label}: PUBLIC may connect to it"),
                Some("REVOKE CONNECT, TEMPORARY ON DATABASE <name> FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE <name> TO <owner>"),
            );
        }
    }
    if drift == 0 {
        findings.add(
            Status::Ok,
            "managed",
            format!(
                "{} managed databases, each present, rightly owned, closed to PUBLIC",
                mine.len()
            ),
            None,
        );
    }
}

/// 3. What the catalog does not know about (informative).
fn unmanaged_databases(
    holdings: &Holdings,
    mine: &[&Managed],
    catalog_database: &str,
    findings: &mut Findings,
) -> Vec<String> {
    let known: HashSet<&str> = mine.iter().map(|m| m.name.as_str()).collect();
    let unmanaged: Vec<String> = holdings
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .filter(|db| {
            !SYSTEM_DATABASES.contains(db) && *db != catalog_database && !known.contains(db)
        })
        .map(str::to_string)
        .collect();
    if !unmanaged.is_empty() {
        findings.add(
            Status::Ok,
            "unmanaged",
            format!(
                "{} databases not managed by odoo-db: {}",
                unmanaged.len(),
                unmanaged.join(", ")
            ),
            None,
        );
    }
    unmanaged
}

fn text(report: &AuditReport) -> String {
    let mut out = format!(
        "odoo-db audit: {} ({} customers in the catalog)\n\n",
        report.status.as_str(),
        report.customers
    );
    out.push_str(&checks_table(&report.checks));
    out.push_str(&hints(&report.checks));
    out
}

fn nagios(report: &AuditReport) -> String {
    let mut summary = Vec::new();
    let mut perfdata = Vec::new();
    for cluster in &report.clusters {
        summary.push(format!(
            "{}: {} databases, {} roles, {} unmanaged",
            cluster.name,
            cluster.databases,
            cluster.roles,
            cluster.unmanaged_databases.len()
        ));
        let warnings = report
            .checks
            .iter()
            .filter(|c| c.cluster.as_deref() == Some(&cluster.name) && c.status == Status::Warning)
            .count();
        perfdata.push(perf(
            &format!("{}_violations", cluster.name),
            Some(cluster.violations.len().to_string()),
            "",
            None,
            Some("0".into()),
        ));
        perfdata.push(perf(
            &format!("{}_warnings", cluster.name),
            Some(warnings.to_string()),
            "",
            Some("0".into()),
            None,
        ));
        perfdata.push(perf(
            &format!("{}_unmanaged", cluster.name),
            Some(cluster.unmanaged_databases.len().to_string()),
            "",
            None,
            None,
        ));
    }
    nagios_output(
        "ODOO-DB AUDIT",
        report.status,
        &report.checks,
        &summary.join("; "),
        &perfdata,
    )
}

fn prometheus(report: &AuditReport) -> String {
    let mut out = Exposition::new();
    out.gauge(
        "odoo_db_audit_up",
        "Whether the audit could read the cluster (1) or not (0).",
    );
    for cluster in &report.clusters {
        out.sample(
            "odoo_db_audit_up",
            &[("cluster", &cluster.name)],
            if cluster.reachable { 1.0 } else { 0.0 },
        );
    }
    out.gauge(
        "odoo_db_audit_violations",
        "Databases and roles whose name contains a customer's name or token.",
    );
    for cluster in &report.clusters {
        out.sample(
            "odoo_db_audit_violations",
            &[("cluster", &cluster.name)],
            cluster.violations.len() as f64,
        );
    }
    out.gauge(
        "odoo_db_audit_unmanaged_databases",
        "Databases the catalog does not manage.",
    );
    for cluster in &report.clusters {
        out.sample(
            "odoo_db_audit_unmanaged_databases",
            &[("cluster", &cluster.name)],
            cluster.unmanaged_databases.len() as f64,
        );
    }
    out.gauge(
        "odoo_db_audit_status",
        "Nagios state of the audit, as its exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    )
    .sample("odoo_db_audit_status", &[], status_number(report.status));
    out.gauge(
        "odoo_db_audit_last_run_timestamp_seconds",
        "When the audit ran (Unix time).",
    )
    .sample(
        "odoo_db_audit_last_run_timestamp_seconds",
        &[],
        report.started_at.timestamp_micros() as f64 / 1e6,
    );
    let mut text = out.finish();
    if report.clusters.is_empty() {
        writeln!(text, "# no cluster was audited").ok();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holdings() -> Holdings {
        Holdings {
            databases: vec![
                ServerDatabase {
                    name: "postgres".into(),
                    owner: "postgres".into(),
                    public_connect: true,
                },
                ServerDatabase {
                    name: "odoo_db".into(),
                    owner: "odoo_db_admin".into(),
                    public_connect: false,
                },
                ServerDatabase {
                    name: "mighty_pinguin_1337".into(),
                    owner: "mighty_pinguin_1337".into(),
                    public_connect: false,
                },
                ServerDatabase {
                    name: "fluxdock_copy".into(),
                    owner: "odoo_db_admin".into(),
                    public_connect: true,
                },
                ServerDatabase {
                    name: "legacy".into(),
                    owner: "odoo_db_admin".into(),
                    public_connect: true,
                },
            ],
            roles: vec![
                "pg_monitor".into(),
                "odoo_db_admin".into(),
                "mighty_pinguin_1337".into(),
                "dock_reader".into(),
            ],
        }
    }

    fn managed(name: &str, owner: &str) -> Managed {
        Managed {
            name: name.into(),
            environment: "production".into(),
            customer: "flux-dock".into(),
            cluster: "production".into(),
            state: "ready".into(),
            owner: owner.into(),
        }
    }

    #[test]
    fn customer_names_are_critical_and_catalog_drift_a_warning() {
        let own: HashSet<String> = ["odoo_db_admin".to_string()].into();
        let (cluster, checks) = audit_cluster(
            "production",
            ClusterKind::Production,
            Ok(holdings()),
            &["flux-dock".to_string()],
            &[
                managed("mighty_pinguin_1337", "mighty_pinguin_1337"),
                managed("gone_name_0001", "gone_name_0001"),
            ],
            &own,
            "odoo_db",
        );
        assert_eq!(cluster.status, Status::Critical);
        let names: Vec<(&str, &str)> = cluster
            .violations
            .iter()
            .map(|v| (v.kind, v.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("database", "fluxdock_copy"), ("role", "dock_reader")]
        );
        assert!(checks.iter().any(|c| c.status == Status::Warning
            && c.message.contains(
                "gone_name_0001 (customer flux-dock) is in the catalog but not on the server"
            )));
        assert_eq!(cluster.unmanaged_databases, vec!["fluxdock_copy", "legacy"]);
    }

    #[test]
    fn wrong_owner_and_public_connect_are_warnings() {
        let own: HashSet<String> = HashSet::new();
        let mut holdings = holdings();
        holdings.databases[2].owner = "odoo_db_admin".into();
        holdings.databases[2].public_connect = true;
        let (cluster, checks) = audit_cluster(
            "production",
            ClusterKind::Production,
            Ok(holdings),
            &[],
            &[managed("mighty_pinguin_1337", "mighty_pinguin_1337")],
            &own,
            "odoo_db",
        );
        assert_eq!(cluster.status, Status::Warning);
        let warnings: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == Status::Warning)
            .map(|c| c.message.as_str())
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("is owned by odoo_db_admin, the catalog says mighty_pinguin_1337")
        );
        assert!(warnings[1].contains("PUBLIC may connect"));
    }
}
