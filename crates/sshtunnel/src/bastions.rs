//! The bastions of one run: which cluster is behind which bastion, one master per
//! bastion (or per server, see [`Sharing`]), and the parameters of each server
//! redirected through its forward. This is the crate's entry point; it takes plain
//! inputs (a cluster name, its bastion, its servers' parameters), so whatever
//! configuration the caller has stays the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;

use pgconn::{Class, ConnParams, Error};

use crate::bastion::{Bastion, Target};
use crate::master::{failed_route, Master};

/// A cluster whose servers are reached through a bastion.
#[derive(Clone, Debug)]
pub struct ClusterBehindBastion {
    /// The cluster's name, which [`Bastions::route`] is asked with.
    pub name: String,
    pub bastion: Bastion,
    /// The resolved parameters of its servers (primary and standbys), not redirected
    /// yet: a forward is opened to each.
    pub servers: Vec<ConnParams>,
}

/// How the servers behind one bastion share SSH connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// One master per bastion, a forward per server through it: one handshake per
    /// bastion, for jobs that run once.
    #[default]
    PerBastion,
    /// One master per server, for a prober that asks every server again and again
    /// (`serve`). sshd leaves Nagle's algorithm on for a connection without a terminal,
    /// so when two servers' answers come back on one connection, the second waits for
    /// the client's acknowledgement of the first, which its kernel delays by 40 ms: a
    /// probe of three servers through one master took 90 ms more than direct, one
    /// master each removes the queueing (bench/ssh.sh).
    PerServer,
}

/// Masters started at once: sshd's `MaxStartups` (10 by default) drops unauthenticated
/// connections beyond it, and per-server masters can be many for one bastion.
const STARTS_AT_ONCE: usize = 8;

/// The SSH masters of one run and the forwards through them, per cluster. Built by
/// [`Bastions::open`], which never fails as a whole: one bad bastion must not stop a
/// health run from checking the other clusters. [`Bastions::route`] redirects a server's
/// parameters through its forward; behind a bastion that could not be reached, it gives
/// parameters whose every connection attempt fails with the bastion's error, so each job
/// reports those servers as unreachable (health: CRITICAL), naming the bastion.
#[derive(Default)]
pub struct Bastions {
    /// The bastion of each cluster that has one.
    clusters: BTreeMap<String, Bastion>,
    /// Per bastion, and per server with [`Sharing::PerServer`].
    masters: BTreeMap<(Bastion, Option<Target>), std::result::Result<Master, Failure>>,
    sharing: Sharing,
}

/// An error kept to be returned once per server that needs it.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) class: Class,
    pub(crate) message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            class: error.class(),
            message: error.to_string(),
        }
    }
}

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        Error::new(self.class, self.message.clone())
    }
}

impl Bastions {
    /// Start one master per distinct bastion of `clusters` (concurrently) and a local
    /// forward for every server behind it. Failures are kept per bastion.
    pub async fn open(clusters: impl IntoIterator<Item = ClusterBehindBastion>) -> Bastions {
        Self::open_sharing(clusters, Sharing::PerBastion).await
    }

    /// [`Bastions::open`], with the masters shared as `sharing` says. Failures are kept
    /// per master.
    pub async fn open_sharing(
        clusters: impl IntoIterator<Item = ClusterBehindBastion>,
        sharing: Sharing,
    ) -> Bastions {
        let mut by_cluster = BTreeMap::new();
        let mut wanted: BTreeMap<(Bastion, Option<Target>), (BTreeSet<Target>, Duration)> =
            BTreeMap::new();
        for cluster in clusters {
            for params in &cluster.servers {
                let target = Target::of(params);
                let key = match sharing {
                    Sharing::PerBastion => (cluster.bastion.clone(), None),
                    Sharing::PerServer => (cluster.bastion.clone(), Some(target.clone())),
                };
                let (targets, timeout) = wanted.entry(key).or_default();
                targets.insert(target);
                *timeout = (*timeout).max(params.connect_timeout());
            }
            by_cluster.insert(cluster.name, cluster.bastion);
        }
        let clusters = by_cluster;
        let started: Vec<_> = futures_util::stream::iter(wanted.into_iter().map(
            |(key, (targets, timeout))| async move {
                let master = Master::start(&key.0, &targets, timeout)
                    .await
                    .map_err(Failure::from);
                (key, master)
            },
        ))
        .buffer_unordered(STARTS_AT_ONCE)
        .collect()
        .await;
        Bastions {
            clusters,
            masters: started.into_iter().collect(),
            sharing,
        }
    }

    /// `params` of a server of `cluster`, redirected through the cluster's bastion when it
    /// has one. When the bastion (or this server's forward) failed, the parameters carry
    /// that error: connecting fails with it at once, and their port is 0, which libpq
    /// refuses, so no tool can go around the bastion either.
    pub fn route(&self, cluster: &str, params: ConnParams) -> ConnParams {
        let Some(spec) = self.clusters.get(cluster) else {
            return params;
        };
        let server = match self.sharing {
            Sharing::PerBastion => None,
            Sharing::PerServer => Some(Target::of(&params)),
        };
        match self.masters.get(&(spec.clone(), server)) {
            Some(Ok(master)) => master.route(params),
            Some(Err(failure)) => failed_route(&spec.destination, params, failure.clone()),
            None => failed_route(
                &spec.destination,
                params,
                Failure {
                    class: Class::Unknown,
                    message: format!(
                        "bastion {}: no SSH connection was started for cluster {cluster}",
                        spec.destination
                    ),
                },
            ),
        }
    }

    /// Whether every master still answers on its control socket. A bastion that could
    /// not be reached when the run began counts as not answering: opening the masters
    /// again may reach it now.
    pub async fn all_answer(&self) -> bool {
        for master in self.masters.values() {
            match master {
                Ok(master) if master.answers().await => {}
                _ => return false,
            }
        }
        true
    }

    /// Close every master and its forwards, and remove the control directories.
    pub async fn close(mut self) {
        let masters = std::mem::take(&mut self.masters);
        for master in masters.into_values().flatten() {
            master.close().await;
        }
    }
}
