//! serve's sessions: one pool per server (and database and role), at most one session in
//! each, so a scrape every 15 s costs queries, not connections.
//!
//! The probes borrow through [`health::Sessions`]; after a probe, every server that
//! reported an error loses its idle session ([`PooledSessions::forget_failed`]): a
//! session that saw an error is never trusted again, the next probe opens a new one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use pgconn::pool::Pool;
use pgconn::{ConnParams, SessionOptions};

use crate::health::report::Report;
use crate::health::{Session, Sessions};

/// The pools of one config (a reload builds new ones).
#[derive(Default)]
pub(crate) struct PooledSessions {
    /// By server address, then role and database.
    pools: Mutex<BTreeMap<(String, String, String), Pool>>,
}

impl PooledSessions {
    fn pool(&self, params: &ConnParams, session: &SessionOptions) -> Pool {
        let key = (
            params.label(),
            params.user().to_string(),
            params.dbname().to_string(),
        );
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(key)
            .or_insert_with(|| Pool::new(params.clone(), session.clone()))
            .clone()
    }

    /// Drops the idle sessions of every server the report shows an error for.
    pub(crate) fn forget_failed(&self, report: &Report) {
        let mut failed = Vec::new();
        for cluster in &report.clusters {
            let servers = std::iter::once((
                &cluster.primary.server,
                cluster.primary.heartbeat_error.is_some(),
            ))
            .chain(cluster.standbys.iter().map(|s| {
                (
                    &s.server,
                    s.heartbeat_error.is_some() || s.state_error.is_some(),
                )
            }));
            for (server, other_error) in servers {
                if server.error.is_some() || !server.facts.errors.is_empty() || other_error {
                    failed.push(server.address.clone());
                }
            }
        }
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for ((address, _, _), pool) in pools.iter() {
            if failed.contains(address) {
                pool.forget_idle();
            }
        }
    }

    /// Closes every idle session (serve is ending or was reloaded).
    pub(crate) fn close(&self) {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for pool in pools.values() {
            pool.close();
        }
    }
}

impl Sessions for PooledSessions {
    fn open<'a>(
        &'a self,
        params: &'a ConnParams,
        session: &'a SessionOptions,
    ) -> Pin<Box<dyn Future<Output = pgconn::Result<Session>> + Send + 'a>> {
        let pool = self.pool(params, session);
        Box::pin(async move { Ok(Box::new(pool.get().await?) as Session) })
    }
}
