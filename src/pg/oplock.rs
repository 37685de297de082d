//! The lock that keeps two destructive operations off the same database name.
//!
//! A recreate, restore or refresh interleaved with another one of the same name could
//! drop the database the other just created, or back up a half-made copy; a rotate,
//! suspend, resume or retire could record the wrong state. So each one holds a
//! PostgreSQL session advisory lock in the catalog database for its whole run, on a
//! connection of its own: a pooled connection would go back to the pool still holding
//! the lock (or be recycled and silently drop it), and the catalog's own session must
//! stay free to record steps. The lock dies with its connection, so a killed run never
//! leaves it behind. A second run asks with `pg_try_advisory_lock` and is refused at
//! once ("in progress") instead of queueing behind a job that may take an hour.
//!
//! Losing the connection loses the lock without telling us; so before each destructive
//! step the holder asks the server whether its own backend still holds it.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::error::{Context, Error, Result};
use crate::servers::{self, Servers};

/// Namespaces the lock key: the same hash as a provision's customer lock cannot collide
/// by accident, as it hashes another prefix.
const KEY_PREFIX: &str = "odoo-db recreate ";

/// A held lock on one database name. Dropping it closes its connection and releases it.
pub struct OpLock {
    client: Client,
    key: i64,
    name: String,
}

/// The lock's own connection, opened ahead (in parallel with the job's other
/// connections) and not yet holding anything.
pub struct LockSession {
    client: Client,
}

impl LockSession {
    pub async fn connect(servers: &Servers) -> Result<LockSession> {
        let config = servers.config();
        let params = servers
            .primary(&config.catalog.cluster)?
            .with_dbname(&config.catalog.database);
        let client = params
            .connect(&servers::admin_session())
            .await
            .with_context(|| {
                format!(
                    "connecting to the catalog ({} on cluster {}) for the lock",
                    config.catalog.database, config.catalog.cluster
                )
            })?;
        Ok(LockSession { client })
    }

    /// Take the lock for `name` (what = "recreate" or "restore", for messages and
    /// `application_name`), or refuse at once because another run holds it.
    pub async fn acquire(self, name: &str, what: &str) -> Result<OpLock> {
        let client = self.client;
        // One round trip: name the session (so a refused run can say who holds the
        // lock) and try the lock.
        let row = client
            .query_typed_one(
                "SELECT set_config('application_name', $2::text, false),
                        hashtextextended($3::text || $1::text, 0),
                        pg_try_advisory_lock(hashtextextended($3::text || $1::text, 0))",
                &[
                    (&name, Type::TEXT),
                    (&format!("odoo-db {what} {name}"), Type::TEXT),
                    (&KEY_PREFIX, Type::TEXT),
                ],
            )
            .await
            .with_context(|| format!("taking the lock on {name} in the catalog"))?;
        let key: i64 = row.get(1);
        let taken: bool = row.get(2);
        if !taken {
            let holder = holder(&client, key).await.unwrap_or_default();
            return Err(Error::refused(format!(
                "another odoo-db command on {name} is in progress{holder}; nothing was changed. \
                 Wait for it to finish (odoo-db list shows its state), then run the command again"
            )));
        }
        Ok(OpLock {
            client,
            key,
            name: name.to_string(),
        })
    }
}

impl OpLock {
    /// Fail unless this session still holds the lock (asked of the server: a lost
    /// connection, or a catalog restart, loses it silently). Called before every
    /// destructive step; `before` names the step for the message.
    pub async fn ensure_held(&self, before: &str) -> Result<()> {
        let held = self
            .client
            .query_typed_one(
                "SELECT EXISTS (SELECT FROM pg_locks
                                 WHERE locktype = 'advisory' AND granted
                                   AND pid = pg_backend_pid()
                                   AND classid = (($1::bigint >> 32) & 4294967295)::oid
                                   AND objid = ($1::bigint & 4294967295)::oid
                                   AND objsubid = 1)",
                &[(&self.key, Type::INT8)],
            )
            .await;
        match held {
            Ok(row) if row.get::<_, bool>(0) => Ok(()),
            Ok(_) => Err(Error::failed(format!(
                "the lock on {} is no longer held; stopped before {before}",
                self.name
            ))),
            Err(error) => Err(Error::from(error).context(format!(
                "the lock on {} was lost with its catalog connection; stopped before {before}",
                self.name
            ))),
        }
    }
}

/// " (held by pid N, application …, since …)" for the refusal, best effort.
async fn holder(client: &Client, key: i64) -> Result<String> {
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE l.locktype = 'advisory' AND l.granted
                AND l.classid = (($1::bigint >> 32) & 4294967295)::oid
                AND l.objid = ($1::bigint & 4294967295)::oid
                AND l.objsubid = 1
              LIMIT 1",
            &[&key],
        )
        .await?;
    Ok(match row {
        Some(row) => format!(
            " (held by catalog session pid {} \"{}\" from {} since {} UTC)",
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3)
        ),
        None => String::new(),
    })
}
