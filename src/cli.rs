//! The command line, as the contract fixes it (clap derive).
//!
//! Only parsing lives here; [`crate::run`] executes the parsed [`Command`]. Completions
//! and the man page are generated from these same definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "odoo-db",
    version,
    about = "Provision, recreate and watch the PostgreSQL databases of an Odoo hosting platform",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    /// Config file [default: $ODOO_DB_CONFIG, else /etc/odoo-db/odoo-db.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log line format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log output (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the catalog, pin each cluster's identity, create heartbeat tables
    Init,
    /// Create role and database for a customer on each environment
    Provision(ProvisionArgs),
    /// Register an existing database and role in the catalog
    Adopt(AdoptArgs),
    /// Drop and recreate one integration database (backup first)
    Recreate(RecreateArgs),
    /// Put back an integration database as a recreate's backup holds it
    Restore(RestoreArgs),
    /// Replace an integration database with a neutralized copy of its production twin
    Refresh(RefreshArgs),
    /// Check every configured cluster: roles, replication, lag (Nagios exit codes)
    Health(HealthArgs),
    /// Stay up and answer Prometheus scrapes, /health and a status page (pooled probes)
    Serve(ServeArgs),
    /// Naming, ownership and ACL audit of every cluster (Nagios exit codes)
    Audit(AuditArgs),
    /// Databases in the catalog, with environment, state and size
    List(ListArgs),
    /// New DB_PASSWORD for a customer's role(s), written to a secrets file first
    Rotate(RotateArgs),
    /// No login, no CONNECT, sessions ended (reversible with resume)
    Suspend(SuspendArgs),
    /// Undo suspend exactly
    Resume(ResumeArgs),
    /// Final verified archives, then drop a suspended customer's databases and roles
    Retire(RetireArgs),
    /// Local throwaway primary + streaming standby + integration server
    Sandbox(SandboxArgs),
    /// The tour: sandbox up, init, provision, recreate, health
    Demo(DemoArgs),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

impl Command {
    /// health and audit speak the Nagios plugin convention (3 = UNKNOWN for usage errors).
    pub fn is_nagios_style(&self) -> bool {
        matches!(self, Command::Health(_) | Command::Audit(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvSelection {
    Production,
    Integration,
    All,
}

impl EnvSelection {
    /// The environments selected, production first.
    pub fn kinds(self) -> Vec<crate::config::ClusterKind> {
        use crate::config::ClusterKind;
        match self {
            EnvSelection::Production => vec![ClusterKind::Production],
            EnvSelection::Integration => vec![ClusterKind::Integration],
            EnvSelection::All => vec![ClusterKind::Production, ClusterKind::Integration],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvisionFormat {
    Env,
    Json,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Customer name (lowercase letters, digits, dashes)
    #[arg(long)]
    pub customer: String,
    /// Environments to provision
    #[arg(long, value_enum, default_value_t = EnvSelection::All)]
    pub env: EnvSelection,
    /// Use this database name instead of generating one
    #[arg(long)]
    pub name: Option<String>,
    /// Directory receiving <env>.env files (mode 0600) with the passwords
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ProvisionFormat::Env)]
    pub format: ProvisionFormat,
    /// Print what would be done, change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct AdoptArgs {
    #[arg(long)]
    pub customer: String,
    /// Existing database (and role) name, without the _integration suffix
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RecreateArgs {
    /// The integration database, NAME_integration
    pub name: String,
    /// Confirm without a prompt (required without a TTY)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the plan, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not back up before dropping
    #[arg(long)]
    pub no_backup: bool,
    /// Where backups go [default: config recreate.backup_dir]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The integration database, NAME_integration
    pub name: String,
    /// Backup file [default: the newest backup of that name]
    #[arg(long, value_name = "PATH")]
    pub backup: Option<PathBuf>,
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The integration database, NAME_integration
    pub name: String,
    /// Confirm without a prompt (required without a TTY)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the plan, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not back up the integration database before replacing it
    #[arg(long)]
    pub no_backup: bool,
    /// Where the backup goes [default: config recreate.backup_dir]
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Dump production from its streaming standby (default) or from its primary
    #[arg(long, value_enum, default_value_t = RefreshSource::Standby)]
    pub source: RefreshSource,
    /// Parallel jobs of pg_dump and pg_restore
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Copy a database that is not Odoo's, without neutralizing it
    #[arg(long)]
    pub no_neutralize: bool,
    /// Where the production dump waits [default: config refresh.spool_dir]
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RefreshSource {
    Standby,
    Primary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Nagios,
    Prometheus,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check only this cluster
    #[arg(long)]
    pub cluster: Option<String>,
    /// Output format [default: text on a TTY, nagios otherwise]
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Also write the Prometheus exposition here, atomically (node_exporter textfile)
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
    /// Also send the gauges to this statsd server over UDP
    #[arg(long, value_name = "HOST:PORT")]
    pub statsd: Option<String>,
    /// WARNING threshold, bytes (16MB) or time (30s); repeatable, replaces the config's
    #[arg(long, value_name = "BYTES|DURATION")]
    pub warn_lag: Vec<String>,
    /// CRITICAL threshold, bytes (256MB) or time (300s); repeatable, replaces the config's
    #[arg(long, value_name = "BYTES|DURATION")]
    pub crit_lag: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of [serve] listen (default 127.0.0.1:9187)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve only this cluster (repeatable): one instance's share of the clusters
    #[arg(long, value_name = "NAME")]
    pub cluster: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Also show the tombstones of retired customers, with their archives
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[arg(long)]
    pub customer: String,
    /// Directory receiving <env>.env (mode 0600) with the new DB_PASSWORD
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = EnvSelection::All)]
    pub env: EnvSelection,
    /// End the role's sessions that logged in before the change
    #[arg(long)]
    pub end_sessions: bool,
    /// Write the secrets file only; `--apply` sets the password at deploy time
    #[arg(long, conflicts_with = "apply")]
    pub prepare: bool,
    /// Set the password a `--prepare` wrote into the same directory
    #[arg(long)]
    pub apply: bool,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SuspendArgs {
    #[arg(long)]
    pub customer: String,
    #[arg(long, value_enum, default_value_t = EnvSelection::All)]
    pub env: EnvSelection,
    /// Confirm without a prompt (required without a TTY when production is selected)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[arg(long)]
    pub customer: String,
    #[arg(long, value_enum, default_value_t = EnvSelection::All)]
    pub env: EnvSelection,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    #[arg(long)]
    pub customer: String,
    /// Confirm without a prompt (required without a TTY)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    pub action: SandboxAction,
    /// Sandbox directory [default: $XDG_STATE_HOME/odoo-db/sandbox]
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// First of three consecutive ports (primary, standby, integration)
    #[arg(long, global = true, value_name = "N")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum SandboxAction {
    /// Start the primary, standby and integration servers and write a config
    Up,
    /// Stop the servers and remove the sandbox directory
    Down,
    /// Show each server, its port and role
    Status,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Sandbox directory [default: $XDG_STATE_HOME/odoo-db/sandbox]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
