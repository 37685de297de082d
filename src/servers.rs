//! Where every configured server is and how to reach it.
//!
//! Jobs never read URLs from the config themselves: they ask this module for a
//! cluster's primary or standbys and get connection parameters that already account
//! for the environment, pgpass and (when a cluster sits behind a bastion) the SSH
//! forward. A server is also checked here against the identity `init` pinned, so no
//! job can act on a server that a changed config points at by mistake.

use std::time::Duration;

use tokio_postgres::Client;

use crate::config::{ClusterConfig, ClusterKind, Config, Standby};
use crate::error::{Context, Error, Result};
use pgconn::{ConnParams, SessionOptions};
use sshtunnel::{Bastion, Bastions, ClusterBehindBastion, Sharing};

/// Statements of the admin jobs (CREATE DATABASE waits for a checkpoint, DROP for
/// sessions to end): generous, but never unbounded.
pub const ADMIN_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

/// The servers of the config, ready to connect to. Holds the run's SSH masters (for the
/// clusters behind a bastion): they close when this is dropped or [`Servers::close`]d.
pub struct Servers {
    config: Config,
    bastions: Bastions,
}

impl Servers {
    /// Also opens the SSH masters and forwards of the clusters behind a bastion. A
    /// bastion that cannot be reached fails only its own clusters: connecting to their
    /// servers fails with its error (naming the bastion, exit 1, health CRITICAL), the
    /// other clusters work.
    pub async fn open(config: &Config) -> Result<Servers> {
        Self::open_sharing(config, Sharing::PerBastion).await
    }

    /// [`Servers::open`] with the SSH masters shared as `sharing` says (`serve`: one
    /// per server, see [`Sharing::PerServer`]).
    pub async fn open_sharing(config: &Config, sharing: Sharing) -> Result<Servers> {
        Ok(Servers {
            config: config.clone(),
            bastions: Bastions::open_sharing(clusters_behind_bastions(config), sharing).await,
        })
    }

    /// Whether every SSH master of the clusters behind a bastion still answers (true
    /// when there is none).
    pub async fn ssh_masters_answer(&self) -> bool {
        self.bastions.all_answer().await
    }

    /// Close the SSH masters and forwards now (dropping does it too, blocking).
    pub async fn close(self) {
        self.bastions.close().await;
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connection parameters of a cluster's primary, resolved like libpq does (through
    /// the cluster's SSH forward when it has a bastion).
    pub fn primary(&self, cluster: &str) -> Result<ConnParams> {
        let cluster_config = self.config.cluster(cluster)?;
        let params = ConnParams::parse_resolved(&cluster_config.primary)
            .with_context(|| format!("cluster {cluster}: primary"))?;
        Ok(self.bastions.route(cluster, params))
    }

    pub fn standbys(&self, cluster: &str) -> Result<Vec<(Standby, ConnParams)>> {
        let cluster_config = self.config.cluster(cluster)?;
        cluster_config
            .standbys()
            .into_iter()
            .map(|standby| {
                let params = ConnParams::parse_resolved(&standby.url)
                    .with_context(|| format!("cluster {cluster}: standby {}", standby.name))?;
                Ok((standby, self.bastions.route(cluster, params)))
            })
            .collect()
    }

    /// The one configured cluster of a kind, or a refusal naming what is missing (or the
    /// clusters that share the kind: `what`, the command, works on one).
    pub fn cluster_of_kind(&self, kind: ClusterKind, what: &str) -> Result<(&str, &ClusterConfig)> {
        self.config.cluster_of_kind(kind, what)?.ok_or_else(|| {
            Error::refused(format!(
                "no cluster of kind {:?} in config {}",
                kind.as_str(),
                self.config.path.display()
            ))
        })
    }

    /// A session on a cluster's primary for admin work, in the maintenance database
    /// `postgres`: never inside a database that may be dropped.
    pub async fn connect_primary(&self, cluster: &str) -> Result<Client> {
        let params = self.primary(cluster)?.with_dbname("postgres");
        params
            .connect(&admin_session())
            .await
            .with_context(|| format!("cluster {cluster}: primary {}", params.label()))
    }
}

/// Session options of the admin jobs.
pub fn admin_session() -> SessionOptions {
    SessionOptions {
        statement_timeout: Some(ADMIN_STATEMENT_TIMEOUT),
        lock_timeout: Some(Duration::from_secs(30)),
    }
}

/// The clusters of `config` that sit behind a bastion, as sshtunnel takes them: the
/// bastion's settings and every server URL that resolves (one that does not fails later,
/// when a job asks for it, with its own message).
fn clusters_behind_bastions(config: &Config) -> Vec<ClusterBehindBastion> {
    config
        .clusters
        .iter()
        .filter_map(|(name, cluster)| {
            let bastion = Bastion::new(
                cluster.ssh.clone()?,
                cluster.ssh_identity.clone(),
                cluster.ssh_known_hosts.clone(),
                cluster.ssh_control_dir.clone(),
            );
            let servers = std::iter::once(cluster.primary.clone())
                .chain(cluster.standbys().into_iter().map(|standby| standby.url))
                .filter_map(|url| ConnParams::parse_resolved(&url).ok())
                .collect();
            Some(ClusterBehindBastion {
                name: name.clone(),
                bastion,
                servers,
            })
        })
        .collect()
}

/// A server's identity: `pg_control_system().system_identifier`, the same on a primary
/// and all its standbys, different for every initdb.
pub async fn system_identifier(client: &Client) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(Error::from)
        .map_err(|error| {
            if error.is_sqlstate(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                error.context(
                    "reading the server's system identifier needs: GRANT EXECUTE ON FUNCTION pg_control_system() TO <odoo-db's role> (run once as a superuser)",
                )
            } else {
                error
            }
        })?;
    let text: String = row.get(0);
    text.parse()
        .map_err(|_| Error::failed(format!("unexpected system identifier {text:?}")))
}

/// Whether the server is a standby (in recovery).
pub async fn in_recovery(client: &Client) -> Result<bool> {
    Ok(client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0))
}
