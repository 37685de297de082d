//! SSH bastions: reach a cluster's servers through an SSH jump host.
//!
//! A crate of its own because it is plumbing that knows nothing of the program using it:
//! it takes a bastion, its known_hosts and the servers' [`pgconn::ConnParams`], and gives
//! back parameters routed through OpenSSH forwards ([`pgconn::Route`]).
//!
//! On the platform the PostgreSQL servers are not reachable from a DBA's laptop: the
//! documented way in is an SSH container with access to the cluster. A cluster whose
//! config has `ssh = "ssh://user@bastion:port"` is reached the same way, so every job
//! (provision, recreate and its `pg_dump`, health, audit, list) works from anywhere the
//! bastion is reachable, with the same results as beside the servers.
//!
//! How:
//! - one OpenSSH master connection per bastion per run (the `openssh` crate, native
//!   mux), shared by all the clusters behind it (or one per server for a long-running
//!   prober, [`Sharing`]); strict host-key checking (an unknown
//!   key is refused, its fingerprint in the message), `BatchMode` (never a prompt), a
//!   connect timeout bounding TCP, key exchange and authentication as a whole;
//! - one local TCP forward per server, bound to 127.0.0.1 on a free port (the crate
//!   cannot take port 0: pick one, retry on conflict); jobs then connect with
//!   `host=<the server's real name> hostaddr=127.0.0.1 port=<forward>`
//!   ([`pgconn::ConnParams::via`]), so TLS verifies the real server name end to end, for
//!   tokio-postgres and for libpq tools alike (`libpq_conninfo()` carries the hostaddr);
//!   timeouts, keepalives and `target_session_attrs` apply as on a direct connection;
//! - nothing outlives the run: the master is closed on exit and on error (`close()` or
//!   `Drop`) and on SIGINT/SIGTERM/SIGHUP ([`clean_up_on_signals`]); its `ControlPersist`
//!   is short ([`MASTER_IDLE`]) and a keepalive pings it while the run lives, so even the
//!   master of a SIGKILLed run exits by itself within seconds; the control sockets live in
//!   a private per-run directory that a later run removes if a killed run left it.
//!
//! Errors name the hop that failed: "bastion ssh://…: host key unknown …" for the SSH
//! connection itself; for the hop behind it, a failed connection attempt through a
//! forward is explained from the master's log ("bastion ssh://… cannot reach the database
//! server db1:5432: connect failed: Connection refused"), see [`Tunnel`].

mod bastion;
mod bastions;
mod diagnosis;
mod master;
mod rundir;
mod tunnel;

pub use bastion::Bastion;
pub use bastions::{Bastions, ClusterBehindBastion, Sharing};
pub use master::MASTER_IDLE;
pub use rundir::clean_up_on_signals;
pub use tunnel::Tunnel;
