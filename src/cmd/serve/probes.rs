//! Probes shared between scrapes: however many scrapes come, a cluster is probed at most
//! once per `[serve] min_interval`, scrapes that come while its probe runs wait for it
//! (so 50 concurrent scrapes write one heartbeat), and at most `[serve] concurrency`
//! servers are probed at once.
//!
//! A probe runs as a task of its own, not inside the scrape that started it: Prometheus
//! gives up on a scrape after its `scrape_timeout` (10 s by default) and closes the
//! connection, while a server that stopped answering in the middle of a conversation
//! (a partitioned standby, a stopped process) holds a probe for up to 85 % of
//! `[health] timeout`. Cancelled with the scrape, that probe would never finish and the
//! cluster would never be reported; detached, it finishes and answers the next scrape.
//! A scrape that says how long it may take (Prometheus' `X-Prometheus-Scrape-Timeout-
//! Seconds`) waits for a running probe no longer than that, and meanwhile gets the
//! cluster's last finished probe (its `odoo_db_last_run_timestamp_seconds` says when),
//! or, before the first, a probe error.
//!
//! What serve remembers across probes and reloads ([`Memory`]) is its own: the probe
//! counters and, per standby, the lag of the last hour for the status page's charts
//! (bounded: at most [`HISTORY_POINTS`] points per standby).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::Semaphore;

use super::pools::PooledSessions;
use crate::config::Config;
use crate::health::report::Report;
use crate::servers::Servers;

/// How far back the charts look.
pub(crate) const HISTORY_SPAN: Duration = Duration::from_secs(3600);
/// One point every 5 s for an hour at most, whatever `min_interval` is.
pub(crate) const HISTORY_POINTS: usize = 720;

/// The last probe of a cluster: its report, or why it could not run.
pub(crate) type Outcome = Arc<Result<Report, String>>;

/// A probe running as a task of its own, awaited by every scrape that wants it.
type Running = Shared<BoxFuture<'static, Outcome>>;

/// One cluster's probes: the last finished one (and when it finished), and the one
/// running, if any.
#[derive(Default)]
struct Slot {
    last: Option<(Instant, Outcome)>,
    running: Option<Running>,
}

/// The clusters of one config, their servers (and SSH masters) and pools.
pub(crate) struct Fleet {
    pub config: Config,
    pub clusters: Vec<String>,
    servers: Servers,
    pub sessions: Arc<PooledSessions>,
    slots: BTreeMap<String, Mutex<Slot>>,
    servers_at_once: Arc<Semaphore>,
    /// Told when a cluster behind a bastion could not reach a server: its SSH master may
    /// have died, serve opens the masters again ([`super::run`]).
    pub masters_lost: tokio::sync::Notify,
}

impl Fleet {
    /// Opens the SSH masters of the clusters behind a bastion, one per server so that
    /// no server's answers queue behind another's ([`sshtunnel::Sharing::PerServer`]);
    /// sessions open on demand.
    pub(crate) async fn open(config: Config, clusters: Vec<String>) -> crate::error::Result<Fleet> {
        let servers = Servers::open_sharing(&config, sshtunnel::Sharing::PerServer).await?;
        let slots = clusters
            .iter()
            .map(|name| (name.clone(), Mutex::new(Slot::default())))
            .collect();
        let servers_at_once = Arc::new(Semaphore::new(config.serve.concurrency));
        Ok(Fleet {
            config,
            clusters,
            servers,
            sessions: Arc::new(PooledSessions::default()),
            slots,
            servers_at_once,
            masters_lost: tokio::sync::Notify::new(),
        })
    }

    /// The cluster's last probe when it is recent enough, else the running probe, started
    /// if none runs (shared with every scrape that comes meanwhile). With a `budget`
    /// (what the scrape may still take), a probe that runs longer is answered by the
    /// last finished one, or before the first by a probe error; it goes on all the same.
    /// None: not a cluster this serve answers for.
    pub(crate) async fn probe(
        self: &Arc<Self>,
        name: &str,
        memory: &Arc<Memory>,
        budget: Option<Duration>,
    ) -> Option<Outcome> {
        let slot = self.slots.get(name)?;
        let (running, last) = {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, outcome)) = &slot.last {
                if at.elapsed() < self.config.serve.min_interval {
                    return Some(outcome.clone());
                }
            }
            let running = match &slot.running {
                Some(running) => running.clone(),
                None => {
                    let running = self.start(name, memory);
                    slot.running = Some(running.clone());
                    running
                }
            };
            (
                running,
                slot.last.as_ref().map(|(_, outcome)| outcome.clone()),
            )
        };
        let Some(budget) = budget else {
            return Some(running.await);
        };
        match tokio::time::timeout(budget, running).await {
            Ok(outcome) => Some(outcome),
            Err(_) => Some(last.unwrap_or_else(|| {
                Arc::new(Err(format!(
                    "the first probe of cluster {name} still runs after {:.1} s, the time the scrape \
                     allows (a server is slow to answer); its result answers a later scrape",
                    budget.as_secs_f64()
                )))
            })),
        }
    }

    /// Starts a probe of cluster `name` as a task of its own: it finishes, and becomes
    /// the cluster's last probe, whatever happens to the scrapes waiting for it.
    fn start(self: &Arc<Self>, name: &str, memory: &Arc<Memory>) -> Running {
        let fleet = Arc::clone(self);
        let memory = Arc::clone(memory);
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let outcome = fleet.run_probe(&name, &memory).await;
            if let Some(slot) = fleet.slots.get(&name) {
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                slot.last = Some((Instant::now(), outcome.clone()));
                slot.running = None;
            }
            outcome
        });
        async move {
            task.await.unwrap_or_else(|error| {
                Arc::new(Err(format!("the probe ended abnormally: {error}")))
            })
        }
        .boxed()
        .shared()
    }

    /// One probe of cluster `name`, counted in `memory`.
    async fn run_probe(&self, name: &str, memory: &Memory) -> Outcome {
        // A cluster's servers are probed together (its standbys wait for its primary's
        // heartbeat), so it takes its permits all at once.
        let servers = self
            .config
            .cluster(name)
            .map(|c| 1 + c.standbys().len())
            .unwrap_or(1);
        let permits = servers.min(self.config.serve.concurrency) as u32;
        let permit = self.servers_at_once.acquire_many(permits).await;
        let started = Instant::now();
        let outcome = crate::health::probe_cluster(&self.servers, name, self.sessions.clone())
            .await
            .map_err(|error| error.to_string());
        drop(permit);
        if let Ok(report) = &outcome {
            self.sessions.forget_failed(report);
            if self.behind_bastion(name) && unreachable(report) {
                self.masters_lost.notify_one();
            }
        }
        memory.record(name, &outcome, started.elapsed());
        Arc::new(outcome)
    }

    /// Whether every SSH master of the fleet still answers.
    pub(crate) async fn ssh_masters_answer(&self) -> bool {
        self.servers.ssh_masters_answer().await
    }

    fn behind_bastion(&self, name: &str) -> bool {
        self.config
            .cluster(name)
            .is_ok_and(|cluster| cluster.ssh.is_some())
    }

    /// Every cluster's probe, in the config's order, at once (the semaphore bounds them),
    /// each waited for at most `budget` ([`Fleet::probe`]).
    pub(crate) async fn probe_all(
        self: &Arc<Self>,
        memory: &Arc<Memory>,
        budget: Option<Duration>,
    ) -> Vec<(String, Outcome)> {
        let probes = self.clusters.iter().map(|name| async move {
            let outcome = self
                .probe(name, memory, budget)
                .await
                .expect("a served cluster");
            (name.clone(), outcome)
        });
        futures_util::future::join_all(probes).await
    }

    /// Closes the pooled sessions and the SSH masters.
    pub(crate) async fn close(self) {
        self.sessions.close();
        self.servers.close().await;
    }
}

/// Whether a server of the report could not be reached at all.
fn unreachable(report: &Report) -> bool {
    report
        .clusters
        .iter()
        .any(|c| !c.primary.server.reachable || c.standbys.iter().any(|s| !s.server.reachable))
}

/// One standby's lag at one probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    /// Unix time of the probe.
    pub at: f64,
    pub bytes: Option<u64>,
    pub seconds: Option<f64>,
}

/// Per cluster: probes run, probes that met an error, the last probe's duration.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub probes: u64,
    pub errors: u64,
    pub last_duration: f64,
}

/// A rendering and the outcomes it was made of.
type Rendered = (Vec<Outcome>, Arc<String>);

/// What serve remembers across probes (and reloads).
#[derive(Default)]
pub(crate) struct Memory {
    pub counters: Mutex<BTreeMap<String, Counters>>,
    /// By (cluster, standby).
    pub history: Mutex<BTreeMap<(String, String), VecDeque<Point>>>,
    /// The health part of `/metrics` (or of one `/probe`), by the clusters it shows,
    /// rendered once per set of probe outcomes: a scrape answered from cached probes
    /// then only appends the exporter's own counters (rendering 40 servers' families
    /// on every scrape cost milliseconds). The key holds the outcomes themselves, so
    /// their identity (`Arc::ptr_eq`) cannot be reused while cached.
    pub rendered: Mutex<BTreeMap<Vec<String>, Rendered>>,
}

impl Memory {
    /// After a reload: the renderings are made again (the served clusters, or their
    /// servers, may differ), and the lag history of clusters no longer served goes.
    /// Counters stay: Prometheus expects them never to go back.
    pub(crate) fn forget_all_but(&self, clusters: &[String]) {
        self.rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(cluster, _), _| clusters.contains(cluster));
    }

    /// The rendering of `outcomes`, from the cache when they are the ones it was made of.
    pub(crate) fn rendered(
        &self,
        outcomes: &[(String, Outcome)],
        render: impl FnOnce() -> String,
    ) -> Arc<String> {
        let names: Vec<String> = outcomes.iter().map(|(name, _)| name.clone()).collect();
        let mut cache = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, text)) = cache.get(&names) {
            let same = cached.len() == outcomes.len()
                && cached
                    .iter()
                    .zip(outcomes)
                    .all(|(a, (_, b))| Arc::ptr_eq(a, b));
            if same {
                return Arc::clone(text);
            }
        }
        let text = Arc::new(render());
        let kept = outcomes
            .iter()
            .map(|(_, outcome)| Arc::clone(outcome))
            .collect();
        cache.insert(names, (kept, Arc::clone(&text)));
        text
    }
}

impl Memory {
    fn record(&self, cluster: &str, outcome: &Result<Report, String>, took: Duration) {
        let failed = match outcome {
            Ok(report) => {
                report.clusters.iter().any(|c| {
                    c.primary.server.error.is_some()
                        || c.standbys.iter().any(|s| s.server.error.is_some())
                }) || report.deadline_hit
            }
            Err(_) => true,
        };
        {
            let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            let entry = counters.entry(cluster.to_string()).or_default();
            entry.probes += 1;
            entry.errors += u64::from(failed);
            entry.last_duration = took.as_secs_f64();
        }
        let Ok(report) = outcome else {
            return;
        };
        let at = report.started_at.timestamp_micros() as f64 / 1e6;
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        for cluster in &report.clusters {
            for standby in &cluster.standbys {
                let points = history
                    .entry((cluster.name.clone(), standby.server.name.clone()))
                    .or_default();
                points.push_back(Point {
                    at,
                    bytes: standby.lag_bytes,
                    seconds: standby.lag_seconds,
                });
                while points.len() > HISTORY_POINTS
                    || points
                        .front()
                        .is_some_and(|p| p.at < at - HISTORY_SPAN.as_secs_f64())
                {
                    points.pop_front();
                }
            }
        }
    }

    pub(crate) fn history_of(&self, cluster: &str, standby: &str) -> Vec<Point> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history
            .get(&(cluster.to_string(), standby.to_string()))
            .map(|points| points.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::judge;

    fn report(at: chrono::DateTime<chrono::Utc>, lag: u64) -> Report {
        let mut facts = judge::tests::healthy();
        facts.standbys[0].lag_bytes = Some(lag);
        let (cluster, checks) = judge::cluster(facts, &judge::tests::rules());
        let mut report = super::super::http::merge(&[]);
        report.started_at = at;
        report.status = cluster.status;
        report.clusters = vec![cluster];
        report.checks = checks;
        report
    }

    #[test]
    fn a_reload_renders_again_and_forgets_the_history_of_clusters_no_longer_served() {
        let memory = Memory::default();
        let now = chrono::Utc::now();
        for cluster in ["kept", "gone"] {
            let mut named = report(now, 7);
            named.clusters[0].name = cluster.to_string();
            memory.record(cluster, &Ok(named), Duration::from_millis(5));
        }
        let outcomes = vec![("kept".to_string(), Arc::new(Ok(report(now, 7))))];
        let first = memory.rendered(&outcomes, || "rendered".to_string());
        // The same outcomes: the cached text, not a new rendering.
        let again = memory.rendered(&outcomes, || unreachable!("rendered twice"));
        assert!(Arc::ptr_eq(&first, &again));

        memory.forget_all_but(&["kept".to_string()]);
        assert_eq!(memory.history_of("kept", "db2").len(), 1);
        assert!(memory.history_of("gone", "db2").is_empty());
        // Counters never go back.
        assert_eq!(memory.counters.lock().unwrap()["gone"].probes, 1);
        let after = memory.rendered(&outcomes, || "rendered again".to_string());
        assert_eq!(after.as_str(), "rendered again");
    }

    #[test]
    fn the_history_is_bounded_in_points_and_time() {
        let memory = Memory::default();
        let start = chrono::Utc::now();
        for i in 0..2000 {
            let at = start + chrono::TimeDelta::seconds(i);
            memory.record(
                "production",
                &Ok(report(at, i as u64)),
                Duration::from_millis(5),
            );
        }
        let points = memory.history_of("production", "db2");
        assert_eq!(points.len(), HISTORY_POINTS);
        assert_eq!(points.last().unwrap().bytes, Some(1999));
        // An hour later, one probe: everything older than an hour is gone.
        let later = start + chrono::TimeDelta::seconds(1999 + 3601);
        memory.record(
            "production",
            &Ok(report(later, 1)),
            Duration::from_millis(5),
        );
        assert_eq!(memory.history_of("production", "db2").len(), 1);
        let counters = memory.counters.lock().unwrap()["production"];
        assert_eq!((counters.probes, counters.errors), (2001, 0));
        memory.record("production", &Err("no".into()), Duration::ZERO);
        assert_eq!(memory.counters.lock().unwrap()["production"].errors, 1);
    }
}
