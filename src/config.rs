//! The TOML config file: where the clusters are and how the jobs behave.
//!
//! Read once at start. Unknown keys are refused rather than ignored (a typo in
//! `lag_crit` must not silently disable a threshold), and every error names the file,
//! the key and what is wrong, so a broken deploy is fixed from the message alone.
//! Passwords never live here: libpq's conventions (PGPASSWORD, pgpass, systemd
//! credentials) supply them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::units::{serde_duration, Threshold};
use pgconn::ConnParams;

pub const DEFAULT_PATH: &str = "/etc/odoo-db/odoo-db.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
    pub catalog: CatalogConfig,
    pub clusters: BTreeMap<String, ClusterConfig>,
    #[serde(default)]
    pub provision: ProvisionConfig,
    #[serde(default)]
    pub recreate: RecreateConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    #[serde(default)]
    pub refresh: RefreshConfig,
    #[serde(default)]
    pub serve: ServeConfig,
}

/// `odoo-db serve`: where it listens and how often it may probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Loopback by default: anything wider should come with `web_config`.
    #[serde(default = "default_serve_listen")]
    pub listen: std::net::SocketAddr,
    /// A scrape within this long of the last probe is answered from it.
    #[serde(default = "default_serve_min_interval", with = "serde_duration")]
    pub min_interval: Duration,
    /// At most this many servers are probed at once.
    #[serde(default = "default_serve_concurrency")]
    pub concurrency: usize,
    /// TLS and basic authentication, in the Prometheus exporter-toolkit format.
    pub web_config: Option<PathBuf>,
}

fn default_serve_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9187))
}
fn default_serve_min_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_serve_concurrency() -> usize {
    8
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_serve_listen(),
            min_interval: default_serve_min_interval(),
            concurrency: default_serve_concurrency(),
            web_config: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The cluster whose primary holds the catalog database.
    pub cluster: String,
    #[serde(default = "default_catalog_database")]
    pub database: String,
}

fn default_catalog_database() -> String {
    "odoo_db".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    Production,
    Integration,
}

impl ClusterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Production => "production",
            ClusterKind::Integration => "integration",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub kind: ClusterKind,
    /// libpq connection string or URL of the primary.
    pub primary: String,
    #[serde(default)]
    pub standbys: Vec<StandbyEntry>,
    /// `ssh://user@bastion:port`: reach this cluster through an SSH bastion.
    pub ssh: Option<String>,
    pub ssh_identity: Option<PathBuf>,
    pub ssh_known_hosts: Option<PathBuf>,
    pub ssh_control_dir: Option<PathBuf>,
}

/// A standby is either a bare URL or `{ name, url, application_name }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StandbyEntry {
    Url(String),
    Table(StandbyTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyTable {
    pub name: Option<String>,
    pub url: String,
    pub application_name: Option<String>,
}

/// A standby as the jobs use it, defaults applied.
#[derive(Debug, Clone)]
pub struct Standby {
    /// Labels this standby in outputs (default `host:port`).
    pub name: String,
    pub url: String,
    /// What the standby's WAL receiver calls itself in the primary's
    /// `pg_stat_replication`; None means "match any walreceiver from this standby".
    pub application_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionConfig {
    #[serde(default = "default_locale")]
    pub locale: String,
    pub connection_limit: Option<i32>,
}

fn default_locale() -> String {
    "C.UTF-8".to_string()
}

impl Default for ProvisionConfig {
    fn default() -> Self {
        ProvisionConfig {
            locale: default_locale(),
            connection_limit: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecreateConfig {
    #[serde(default = "default_backup_dir")]
    pub backup_dir: PathBuf,
    #[serde(default = "default_keep_backups")]
    pub keep_backups: usize,
    /// pg_dump `--compress` value; the default favours speed (`-Z 1` dumps about as
    /// small as the default level in a third of the time).
    #[serde(default = "default_compression")]
    pub compression: String,
}

fn default_backup_dir() -> PathBuf {
    PathBuf::from("/var/backups/odoo-db")
}
fn default_keep_backups() -> usize {
    3
}
fn default_compression() -> String {
    "1".to_string()
}

impl Default for RecreateConfig {
    fn default() -> Self {
        RecreateConfig {
            backup_dir: default_backup_dir(),
            keep_backups: default_keep_backups(),
            compression: default_compression(),
        }
    }
}

/// `[lifecycle]`: how long a customer stays suspended before `retire` may drop it, and
/// where the final archives go (never pruned by odoo-db).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    #[serde(default = "default_grace", with = "serde_duration")]
    pub grace: Duration,
    #[serde(default = "default_archive_dir")]
    pub archive_dir: PathBuf,
}

fn default_grace() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_archive_dir() -> PathBuf {
    PathBuf::from("/var/backups/odoo-db/retired")
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            grace: default_grace(),
            archive_dir: default_archive_dir(),
        }
    }
}

/// `[refresh]`: copying production into integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshConfig {
    /// A standby further behind its primary than this is no source (unless
    /// `--source primary`), measured with a heartbeat at plan time.
    #[serde(default = "default_max_source_lag", with = "serde_duration")]
    pub max_source_lag: Duration,
    /// Where the production dump waits (0700) while a rerun may need it.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// `web.base.url` of the neutralized copy (unset: left as production's).
    pub web_base_url: Option<String>,
}

fn default_max_source_lag() -> Duration {
    Duration::from_secs(60)
}
fn default_spool_dir() -> PathBuf {
    PathBuf::from("/var/lib/odoo-db/spool")
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            max_source_lag: default_max_source_lag(),
            spool_dir: default_spool_dir(),
            web_base_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The whole run never outlives this; past it the run is UNKNOWN.
    #[serde(default = "default_health_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// Connect as this monitoring role (pg_monitor + heartbeat writer) instead of the
    /// admin role of the cluster URLs.
    pub user: Option<String>,
    #[serde(default = "default_lag_warn", deserialize_with = "thresholds")]
    pub lag_warn: Vec<Threshold>,
    #[serde(default = "default_lag_crit", deserialize_with = "thresholds")]
    pub lag_crit: Vec<Threshold>,
    /// Physical slots retaining more WAL than this are a WARNING.
    #[serde(default = "default_slot_retained_warn", deserialize_with = "size")]
    pub slot_retained_warn: u64,
    /// Transaction ID wraparound: the oldest database's age as a fraction of 2^31.
    #[serde(default = "default_xid_age_warn")]
    pub xid_age_warn: f64,
    #[serde(default = "default_xid_age_crit")]
    pub xid_age_crit: f64,
    /// How long a transaction, prepared transaction or standby query may hold the xmin
    /// horizon.
    #[serde(default = "default_xmin_age_warn", with = "serde_duration")]
    pub xmin_age_warn: Duration,
    #[serde(default = "default_xmin_age_crit", with = "serde_duration")]
    pub xmin_age_crit: Duration,
    /// Client connections used, per server and per role with a CONNECTION LIMIT.
    #[serde(default = "default_connections_warn")]
    pub connections_warn: f64,
    #[serde(default = "default_connections_crit")]
    pub connections_crit: f64,
    /// WAL segments waiting to be archived.
    #[serde(default = "default_archive_ready_warn")]
    pub archive_ready_warn: u64,
    #[serde(default = "default_archive_ready_crit")]
    pub archive_ready_crit: u64,
    /// How long a session may wait for a lock.
    #[serde(default = "default_lock_wait_warn", with = "serde_duration")]
    pub lock_wait_warn: Duration,
    #[serde(default = "default_lock_wait_crit", with = "serde_duration")]
    pub lock_wait_crit: Duration,
    /// The size of pg_wal.
    #[serde(default = "default_wal_size_warn", deserialize_with = "size")]
    pub wal_size_warn: u64,
    #[serde(default = "default_wal_size_crit", deserialize_with = "size")]
    pub wal_size_crit: u64,
}

fn default_xid_age_warn() -> f64 {
    0.5
}
fn default_xid_age_crit() -> f64 {
    0.75
}
fn default_xmin_age_warn() -> Duration {
    Duration::from_secs(3600)
}
fn default_xmin_age_crit() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_connections_warn() -> f64 {
    0.8
}
fn default_connections_crit() -> f64 {
    0.95
}
fn default_archive_ready_warn() -> u64 {
    16
}
fn default_archive_ready_crit() -> u64 {
    128
}
fn default_lock_wait_warn() -> Duration {
    Duration::from_secs(30)
}
fn default_lock_wait_crit() -> Duration {
    Duration::from_secs(300)
}
fn default_wal_size_warn() -> u64 {
    4 << 30
}
fn default_wal_size_crit() -> u64 {
    16 << 30
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_lag_warn() -> Vec<Threshold> {
    vec![
        Threshold::Bytes(16 << 20),
        Threshold::Time(Duration::from_secs(30)),
    ]
}
fn default_lag_crit() -> Vec<Threshold> {
    vec![
        Threshold::Bytes(256 << 20),
        Threshold::Time(Duration::from_secs(300)),
    ]
}
fn default_slot_retained_warn() -> u64 {
    1 << 30
}

fn thresholds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<Threshold>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    Threshold::parse_list(&texts).map_err(serde::de::Error::custom)
}

fn size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::units::parse_size(&text).map_err(serde::de::Error::custom)
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            timeout: default_health_timeout(),
            user: None,
            lag_warn: default_lag_warn(),
            lag_crit: default_lag_crit(),
            slot_retained_warn: default_slot_retained_warn(),
            xid_age_warn: default_xid_age_warn(),
            xid_age_crit: default_xid_age_crit(),
            xmin_age_warn: default_xmin_age_warn(),
            xmin_age_crit: default_xmin_age_crit(),
            connections_warn: default_connections_warn(),
            connections_crit: default_connections_crit(),
            archive_ready_warn: default_archive_ready_warn(),
            archive_ready_crit: default_archive_ready_crit(),
            lock_wait_warn: default_lock_wait_warn(),
            lock_wait_crit: default_lock_wait_crit(),
            wal_size_warn: default_wal_size_warn(),
            wal_size_crit: default_wal_size_crit(),
        }
    }
}

impl Config {
    /// The config path: `--config`, else `$ODOO_DB_CONFIG`, else the default.
    pub fn locate(flag: Option<&Path>) -> PathBuf {
        if let Some(path) = flag {
            return path.to_path_buf();
        }
        match std::env::var_os("ODOO_DB_CONFIG") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }

    /// Read and check the config; every error is a refusal naming file and key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Error::refused(format!(
                "cannot read config {}: {error} (pass --config PATH or set ODOO_DB_CONFIG)",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let deserializer = toml::Deserializer::new(text);
        let mut config: Config =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let key = error.path().to_string();
                let inner = error.into_inner();
                let message = inner.message().to_string();
                let location = inner
                    .span()
                    .map(|span| {
                        let line = text[..span.start].matches('\n').count() + 1;
                        format!(" (line {line})")
                    })
                    .unwrap_or_default();
                if key.is_empty() || key == "." {
                    Error::refused(format!("config {}{location}: {message}", path.display()))
                } else {
                    Error::refused(format!(
                        "config {}{location}: key `{key}`: {message}",
                        path.display()
                    ))
                }
            })?;
        config.path = path.to_path_buf();
        config.check()?;
        Ok(config)
    }

    fn refuse(&self, key: &str, what: impl std::fmt::Display) -> Error {
        Error::refused(format!(
            "config {}: key `{key}`: {what}",
            self.path.display()
        ))
    }

    /// Rules that span keys, and connection strings parsed now rather than mid-job.
    fn check(&self) -> Result<()> {
        if self.clusters.is_empty() {
            return Err(self.refuse("clusters", "no cluster is configured"));
        }
        if !self.clusters.contains_key(&self.catalog.cluster) {
            return Err(self.refuse(
                "catalog.cluster",
                format!(
                    "{:?} is not a configured cluster (configured: {})",
                    self.catalog.cluster,
                    self.clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for (name, cluster) in &self.clusters {
            ConnParams::parse(&cluster.primary)
                .map_err(|error| self.refuse(&format!("clusters.{name}.primary"), error))?;
            for (index, standby) in cluster.standbys.iter().enumerate() {
                let url = match standby {
                    StandbyEntry::Url(url) => url,
                    StandbyEntry::Table(table) => &table.url,
                };
                ConnParams::parse(url).map_err(|error| {
                    self.refuse(&format!("clusters.{name}.standbys[{index}]"), error)
                })?;
            }
            if let Some(ssh) = &cluster.ssh {
                if !ssh.starts_with("ssh://") {
                    return Err(self.refuse(
                        &format!("clusters.{name}.ssh"),
                        format!("{ssh:?} must look like ssh://user@bastion:22"),
                    ));
                }
            }
        }
        if self.health.timeout.is_zero() {
            return Err(self.refuse("health.timeout", "must be greater than zero"));
        }
        self.check_lag_thresholds()?;
        self.check_health_limits()?;
        if self.serve.concurrency == 0 {
            return Err(self.refuse("serve.concurrency", "must be at least 1"));
        }
        if self.recreate.keep_backups == 0 {
            return Err(self.refuse(
                "recreate.keep_backups",
                "must be at least 1 (use --no-backup to skip backups)",
            ));
        }
        Ok(())
    }

    /// `lag_warn` below `lag_crit`, kind by kind (equal is allowed: the warning then
    /// never shows, only the critical).
    fn check_lag_thresholds(&self) -> Result<()> {
        let health = &self.health;
        let warn = Threshold::bytes_of(&health.lag_warn);
        let crit = Threshold::bytes_of(&health.lag_crit);
        if let (Some(warn), Some(crit)) = (warn, crit) {
            if warn > crit {
                return Err(self.refuse(
                    "health.lag_warn",
                    format!(
                        "the warning size {} is above the critical size {} (health.lag_crit): \
                         a warning must come before the critical state",
                        Threshold::Bytes(warn),
                        Threshold::Bytes(crit)
                    ),
                ));
            }
        }
        let warn = Threshold::time_of(&health.lag_warn);
        let crit = Threshold::time_of(&health.lag_crit);
        if let (Some(warn), Some(crit)) = (warn, crit) {
            if warn > crit {
                return Err(self.refuse(
                    "health.lag_warn",
                    format!(
                        "the warning time {} is above the critical time {} (health.lag_crit): \
                         a warning must come before the critical state",
                        Threshold::Time(warn),
                        Threshold::Time(crit)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The thresholds of the checks beyond lag: fractions within (0, 1], each warning
    /// at most its critical.
    fn check_health_limits(&self) -> Result<()> {
        let h = &self.health;
        for (key, value) in [
            ("xid_age_warn", h.xid_age_warn),
            ("xid_age_crit", h.xid_age_crit),
            ("connections_warn", h.connections_warn),
            ("connections_crit", h.connections_crit),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(self.refuse(
                    &format!("health.{key}"),
                    format!("{value} is not a fraction: give a number above 0 and at most 1 (0.8 = 80 %)"),
                ));
            }
        }
        let pairs: [(&str, f64, f64); 6] = [
            ("xid_age", h.xid_age_warn, h.xid_age_crit),
            (
                "xmin_age",
                h.xmin_age_warn.as_secs_f64(),
                h.xmin_age_crit.as_secs_f64(),
            ),
            ("connections", h.connections_warn, h.connections_crit),
            (
                "archive_ready",
                h.archive_ready_warn as f64,
                h.archive_ready_crit as f64,
            ),
            (
                "lock_wait",
                h.lock_wait_warn.as_secs_f64(),
                h.lock_wait_crit.as_secs_f64(),
            ),
            ("wal_size", h.wal_size_warn as f64, h.wal_size_crit as f64),
        ];
        for (key, warn, crit) in pairs {
            if warn > crit {
                return Err(self.refuse(
                    &format!("health.{key}_warn"),
                    format!(
                        "the warning is above health.{key}_crit: a warning must come before the critical state"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The one cluster of a kind, for the commands that work on *the* production or
    /// integration cluster (provision, adopt, recreate, refresh, lifecycle); `None` when
    /// none has the kind. A config may list several clusters of a kind (health, serve,
    /// audit and list check them all), but then those commands refuse rather than pick
    /// one: `what` names the command in the refusal.
    pub fn cluster_of_kind(
        &self,
        kind: ClusterKind,
        what: &str,
    ) -> Result<Option<(&str, &ClusterConfig)>> {
        let mut found = self
            .clusters
            .iter()
            .filter(|(_, cluster)| cluster.kind == kind)
            .map(|(name, cluster)| (name.as_str(), cluster));
        let first = found.next();
        let rest: Vec<&str> = found.map(|(name, _)| name).collect();
        if rest.is_empty() {
            return Ok(first);
        }
        let names: Vec<&str> = first
            .into_iter()
            .map(|(name, _)| name)
            .chain(rest)
            .collect();
        let kind = kind.as_str();
        Err(Error::refused(format!(
            "clusters {} have kind {kind}; {what} works on one {kind} cluster: run it with a config that has one (health, serve and audit check them all)",
            names.join(", ")
        )))
    }

    pub fn cluster(&self, name: &str) -> Result<&ClusterConfig> {
        self.clusters.get(name).ok_or_else(|| {
            Error::refused(format!(
                "no cluster {name:?} in config {} (configured: {})",
                self.path.display(),
                self.clusters.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

impl ClusterConfig {
    /// Standbys with defaults applied: the name defaults to `host:port` of the URL.
    pub fn standbys(&self) -> Vec<Standby> {
        self.standbys
            .iter()
            .map(|entry| {
                let (name, url, application_name) = match entry {
                    StandbyEntry::Url(url) => (None, url.clone(), None),
                    StandbyEntry::Table(table) => (
                        table.name.clone(),
                        table.url.clone(),
                        table.application_name.clone(),
                    ),
                };
                let name = name.unwrap_or_else(|| {
                    ConnParams::parse(&url)
                        .map(|params| params.label())
                        .unwrap_or_else(|_| url.clone())
                });
                Standby {
                    name,
                    url,
                    application_name,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[catalog]
cluster = "production"

[clusters.production]
kind = "production"
primary = "postgresql://odoo_db_admin@db1.example:5432/postgres?sslmode=verify-full"
standbys = ["postgresql://odoo_db_admin@db2.example:5432/postgres", { name = "db3", url = "host=db3.example user=x", application_name = "db3" }]

[clusters.integration]
kind = "integration"
primary = "postgresql://odoo_db_admin@dbint.example:5432/postgres"

[health]
timeout = "10s"
lag_warn = ["16MB", "30s"]
"#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/odoo-db/test.toml"))
    }

    #[test]
    fn several_clusters_of_a_kind_are_allowed_but_not_picked_from() {
        let text = format!(
            "{GOOD}\n[clusters.production2]\nkind = \"production\"\nprimary = \"postgresql://odoo_db_admin@db9.example:5432/postgres\"\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.clusters.len(), 3);
        let refusal = config
            .cluster_of_kind(ClusterKind::Production, "provision")
            .unwrap_err();
        assert_eq!(refusal.class(), crate::error::Class::Refused);
        assert!(
            refusal.to_string().contains(
                "clusters production, production2 have kind production; provision works on one production cluster"
            ),
            "{refusal}"
        );
        let (name, _) = config
            .cluster_of_kind(ClusterKind::Integration, "provision")
            .unwrap()
            .unwrap();
        assert_eq!(name, "integration");
        let without = parse(
            &GOOD
                .replace("kind = \"integration\"", "kind = \"production\"")
                .replace("[clusters.integration]", "[clusters.other]"),
        )
        .unwrap();
        assert!(without
            .cluster_of_kind(ClusterKind::Integration, "adopt")
            .unwrap()
            .is_none());
    }

    #[test]
    fn reads_the_contract_example() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.catalog.database, "odoo_db");
        assert_eq!(config.health.timeout, Duration::from_secs(10));
        assert_eq!(config.health.lag_warn[0], Threshold::Bytes(16777216));
        let standbys = config.clusters["production"].standbys();
        assert_eq!(standbys[0].name, "db2.example:5432");
        assert_eq!(standbys[1].name, "db3");
        assert_eq!(standbys[1].application_name.as_deref(), Some("db3"));
        assert_eq!(config.recreate.keep_backups, 3);
        assert_eq!(config.lifecycle.grace, Duration::from_secs(7 * 86_400));
        assert_eq!(
            config.lifecycle.archive_dir,
            PathBuf::from("/var/backups/odoo-db/retired")
        );
    }

    #[test]
    fn lifecycle_section_takes_a_grace_and_an_archive_dir() {
        let text =
            format!("{GOOD}\n[lifecycle]\ngrace = \"36h\"\narchive_dir = \"/srv/archives\"\n");
        let config = parse(&text).unwrap();
        assert_eq!(config.lifecycle.grace, Duration::from_secs(36 * 3600));
        assert_eq!(config.lifecycle.archive_dir, PathBuf::from("/srv/archives"));
        let text = format!("{GOOD}\n[lifecycle]\ngrace = \"a week\"\n");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("grace"), "{message}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = GOOD.replace(
            "timeout = \"10s\"",
            "timeout = \"10s\"\nlag_critical = [\"1s\"]",
        );
        let error = parse(&text).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.class(), crate::error::Class::Refused);
        assert!(message.contains("/etc/odoo-db/test.toml"), "{message}");
        assert!(message.contains("lag_critical"), "{message}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let text = GOOD.replace("\"10s\"", "\"10 fortnights\"");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("health.timeout"), "{message}");
        assert!(message.contains("unknown time unit"), "{message}");
    }

    #[test]
    fn an_overflowing_duration_is_a_config_error_not_a_panic() {
        let text = GOOD.replace("\"10s\"", "\"999999999999999999999d\"");
        let error = parse(&text).unwrap_err();
        assert_eq!(error.class(), crate::error::Class::Refused);
        let message = error.to_string();
        assert!(message.contains("health.timeout"), "{message}");
        assert!(message.contains("too long"), "{message}");
    }

    #[test]
    fn the_thresholds_beyond_lag_are_checked() {
        let with = |extra: &str| {
            GOOD.replace(
                "lag_warn = [\"16MB\", \"30s\"]",
                &format!("lag_warn = [\"16MB\", \"30s\"]\n{extra}"),
            )
        };
        let config = parse(&with("xmin_age_warn = \"10min\"\nwal_size_warn = \"1GB\"")).unwrap();
        assert_eq!(config.health.xmin_age_warn, Duration::from_secs(600));
        assert_eq!(config.health.wal_size_warn, 1 << 30);
        assert_eq!(config.health.connections_crit, 0.95);
        for (extra, key) in [
            ("connections_warn = 1.5", "health.connections_warn"),
            ("xid_age_crit = 0.0", "health.xid_age_crit"),
            ("xid_age_warn = 0.8", "health.xid_age_warn"),
            ("xmin_age_warn = \"7h\"", "health.xmin_age_warn"),
            ("archive_ready_warn = 500", "health.archive_ready_warn"),
            ("wal_size_warn = \"20GB\"", "health.wal_size_warn"),
        ] {
            let error = parse(&with(extra)).unwrap_err();
            assert_eq!(error.class(), crate::error::Class::Refused, "{extra}");
            assert!(error.to_string().contains(key), "{extra}: {error}");
        }
    }

    #[test]
    fn lag_thresholds_are_checked() {
        let two_sizes = GOOD.replace(
            "lag_warn = [\"16MB\", \"30s\"]",
            "lag_warn = [\"16MB\", \"32MB\"]",
        );
        let message = parse(&two_sizes).unwrap_err().to_string();
        assert!(message.contains("health.lag_warn"), "{message}");
        assert!(message.contains("2 sizes given"), "{message}");
        // Above the default critical (256MB, 300s).
        for warn in ["\"300MB\"", "\"301s\""] {
            let text = GOOD.replace(
                "lag_warn = [\"16MB\", \"30s\"]",
                &format!("lag_warn = [{warn}]"),
            );
            let message = parse(&text).unwrap_err().to_string();
            assert!(message.contains("health.lag_warn"), "{message}");
            assert!(message.contains("above the critical"), "{message}");
        }
        let overflow = GOOD.replace(
            "lag_warn = [\"16MB\", \"30s\"]",
            "lag_warn = [\"99999999999999999999TB\"]",
        );
        let message = parse(&overflow).unwrap_err().to_string();
        assert!(message.contains("too large"), "{message}");
    }

    #[test]
    fn catalog_must_name_a_cluster() {
        let text = GOOD.replace("cluster = \"production\"", "cluster = \"prod\"");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("catalog.cluster"), "{message}");
    }
}
