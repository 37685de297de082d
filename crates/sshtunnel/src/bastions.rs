//! The bastions of one run: which cluster is behind which bastion, one master per
//! bastion, and the parameters of each server redirected through its forward. This is
//! the crate's entry point; it takes plain inputs (a cluster name, its bastion, its
//! servers' parameters), so whatever configuration the caller has stays the caller's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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
    masters: BTreeMap<Bastion, std::result::Result<Master, Failure>>,
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
        let mut by_cluster = BTreeMap::new();
        let mut wanted: BTreeMap<Bastion, (BTreeSet<Target>, Duration)> = BTreeMap::new();
        for cluster in clusters {
            let (targets, timeout) = wanted.entry(cluster.bastion.clone()).or_default();
            for params in &cluster.servers {
                targets.insert(Target::of(params));
                *timeout = (*timeout).max(params.connect_timeout());
            }
            by_cluster.insert(cluster.name, cluster.bastion);
        }
        let clusters = by_cluster;
        let started = futures_util::future::join_all(wanted.into_iter().map(
            |(spec, (targets, timeout))| async move {
                let master = Master::start(&spec, &targets, timeout)
                    .await
                    .map_err(Failure::from);
                (spec, master)
            },
        ))
        .await;
        Bastions {
            clusters,
            masters: started.into_iter().collect(),
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
        match self.masters.get(spec) {
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

    /// Close every master and its forwards, and remove the control directories.
    pub async fn close(mut self) {
        let masters = std::mem::take(&mut self.masters);
        for master in masters.into_values().flatten() {
            master.close().await;
        }
    }
}
