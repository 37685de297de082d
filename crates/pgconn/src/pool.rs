//! Sessions kept across work, for programs that stay up (a metrics exporter answering a
//! scrape every 15 s should not pay TCP, TLS and authentication each time).
//!
//! One [`Pool`] per server, at most one session in it: whoever uses a server borrows
//! the one session and gives it back. What comes back must be as good as new, so a
//! session is given back only after `DISCARD ALL` succeeds on it (no settings, prepared
//! statements, temporary tables or advisory locks carried from one borrower to the
//! next; the startup options stay, they are the session's defaults) and one that saw an
//! error is thrown away by its borrower ([`Pooled::discard`]). A server restarted, or a
//! backend terminated, meanwhile: the closed session fails its recycling and a new one
//! is opened, with this crate's [`ConnParams::connect`] (pgpass, `sslmode`, SSH routes
//! and a bounded attempt are the same as for a fresh connection).
//!
//! deadpool is the pool (deadpool-postgres is the same pool with a manager that opens
//! tokio-postgres connections from a `tokio_postgres::Config`; the sessions here must be
//! opened the libpq way this crate implements, with its errors, so the manager is this
//! crate's).

use std::ops::Deref;

use deadpool::managed::{self, Object, PoolError, RecycleError};
use tokio_postgres::Client;

use crate::{ConnParams, Error, Result, SessionOptions};

/// Resets everything a session could carry; allowed on a hot standby too.
const RESET: &str = "DISCARD ALL";

/// Opens sessions to one server and checks the ones given back.
#[derive(Debug)]
pub struct Manager {
    params: ConnParams,
    session: SessionOptions,
}

impl managed::Manager for Manager {
    type Type = Client;
    type Error = Error;

    async fn create(&self) -> Result<Client> {
        self.params.connect(&self.session).await
    }

    async fn recycle(
        &self,
        client: &mut Client,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<Error> {
        if client.is_closed() {
            return Err(RecycleError::message("the session was closed"));
        }
        match client.simple_query(RESET).await {
            Ok(_) => Ok(()),
            Err(error) => Err(RecycleError::Backend(Error::from_postgres(
                error,
                "resetting a pooled session",
            ))),
        }
    }
}

/// At most one session to one server.
#[derive(Clone)]
pub struct Pool {
    inner: managed::Pool<Manager>,
    label: String,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("server", &self.label).finish()
    }
}

impl Pool {
    pub fn new(params: ConnParams, session: SessionOptions) -> Pool {
        let label = params.label();
        let inner = managed::Pool::builder(Manager { params, session })
            .max_size(1)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and no timeouts always builds");
        Pool { inner, label }
    }

    /// The pooled session, or a new one. The caller bounds the wait (the session may be
    /// borrowed, or the server may not answer).
    pub async fn get(&self) -> Result<Pooled> {
        match self.inner.get().await {
            Ok(object) => Ok(Pooled(object)),
            Err(PoolError::Backend(error)) => Err(error),
            Err(error) => Err(Error::failed(format!(
                "no session to {} from the pool: {error}",
                self.label
            ))),
        }
    }

    /// Sessions idle in the pool (0 or 1).
    pub fn idle(&self) -> usize {
        self.inner.status().available
    }

    /// Closes the idle session, if any: it saw an error, the next borrower gets a new one.
    pub fn forget_idle(&self) {
        self.inner.retain(|_, _| false);
    }

    /// Closes the idle session and refuses new ones: the program is ending.
    pub fn close(&self) {
        self.inner.close();
    }
}

/// A borrowed session; dropping it gives it back.
pub struct Pooled(Object<Manager>);

impl Deref for Pooled {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.0
    }
}
