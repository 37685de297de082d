//! Connections to PostgreSQL that behave like libpq's, bounded as a whole.
//!
//! A crate of its own so that the programs built on it (odoo-db first) share one
//! connection layer that knows nothing of their configuration or of how a server is
//! reached (an SSH bastion plugs in as a [`Route`]). Everything such a program does
//! goes through here, so this is where the promises about
//! connections are kept once: parameters and passwords found where `psql` finds them
//! ([`params`], [`pgpass`]), TLS with libpq's `sslmode` meanings ([`tls`]), and an
//! attempt that cannot hang. tokio-postgres's own `connect_timeout` covers only the TCP
//! connect; a server (or a bastion's forward) that accepts and then never answers would
//! stall the TLS handshake or the authentication forever, and a systemd timer run would
//! pile up behind it. So the whole attempt — DNS, TCP, TLS, authentication, startup —
//! runs under one `tokio::time::timeout`.

mod error;
mod params;
mod pgpass;
pub mod pool;
mod route;
mod tls;

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use error::{describe_error_chain, describe_pg_error, Cause, Class, Context, Error, Result};
use params::{ChannelBinding, PasswordSource, TargetSessionAttrs};
pub use params::{ConnParams, SslMode};
pub use route::Route;

/// Idle time before the first TCP keepalive probe: a standby in the other datacenter
/// that vanishes behind a firewall is noticed in about a minute, not in two hours
/// (the kernel default).
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVES_COUNT: u32 = 3;

/// Per-session settings sent in the startup packet (through `options`), so they are in
/// force from the first query and cost no round trip.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// `statement_timeout`: no query of this session runs longer.
    pub statement_timeout: Option<Duration>,
    /// `lock_timeout`: no lock wait of this session lasts longer.
    pub lock_timeout: Option<Duration>,
}

impl SessionOptions {
    /// The `-c name=value` switches for the `options` startup parameter.
    fn startup_options(&self) -> Vec<String> {
        let mut switches = Vec::new();
        for (name, value) in [
            ("statement_timeout", self.statement_timeout),
            ("lock_timeout", self.lock_timeout),
        ] {
            if let Some(value) = value {
                switches.push(format!("-c {name}={}", postgres_millis(value)));
            }
        }
        switches
    }
}

/// Milliseconds as PostgreSQL reads a unitless timeout; a non-zero duration below 1 ms
/// becomes 1 ms rather than 0, which would mean "no timeout".
fn postgres_millis(duration: Duration) -> u128 {
    match duration.as_millis() {
        0 if !duration.is_zero() => 1,
        millis => millis,
    }
}

/// "5s", "1.5s", "250ms": a timeout as a person reads it.
fn human(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() > 0 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Which transports one connection attempt tries, in order (libpq's sslmode semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Plain only: `disable`, and every Unix socket (libpq never uses TLS on one).
    Plain,
    /// Plain, then TLS if the server refused the plain session (`allow`).
    PlainThenTls,
    /// TLS if the server offers it, plain if it says no or the handshake fails (`prefer`).
    TlsThenPlain,
    /// TLS or fail.
    Tls,
}

impl ConnParams {
    fn plan(&self) -> Plan {
        if self.is_unix_socket() && self.hostaddr.is_none() {
            return Plan::Plain;
        }
        match self.sslmode() {
            SslMode::Disable => Plan::Plain,
            SslMode::Allow => Plan::PlainThenTls,
            SslMode::Prefer => Plan::TlsThenPlain,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Plan::Tls,
        }
    }

    /// The TLS connector this connection needs, built (and its root certificates read)
    /// once per `connect`.
    fn tls_connector(&self) -> Result<Option<MakeRustlsConnect>> {
        if self.plan() == Plan::Plain {
            return Ok(None);
        }
        tls::connector(
            self.sslmode(),
            self.sslrootcert.as_deref(),
            self.sslrootcert_is_default,
        )
        .map_err(|e| e.context(format!("connecting to {}", self.label())))
    }

    /// The tokio-postgres configuration, without TLS mode or password (added per attempt).
    fn pg_config(&self, session: &SessionOptions) -> Result<tokio_postgres::Config> {
        let host = self
            .host
            .as_deref()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                Error::refused("connection parameters have no host: they were not resolved")
            })?;
        let user = self.user.as_deref().ok_or_else(|| {
            Error::refused("connection parameters have no user: they were not resolved")
        })?;
        let mut config = tokio_postgres::Config::new();
        match self.hostaddr {
            // A socket directory cannot name a TLS server; the address will do.
            Some(addr) if host.starts_with('/') => {
                config.host(addr.to_string()).hostaddr(addr);
            }
            Some(addr) => {
                config.host(host).hostaddr(addr);
            }
            None if host.starts_with('/') => {
                config.host_path(host);
            }
            None => {
                config.host(host);
            }
        }
        config
            .port(self.port())
            .user(user)
            .dbname(self.dbname())
            .application_name(self.application_name())
            .connect_timeout(self.connect_timeout())
            .keepalives(self.keepalives.unwrap_or(true))
            .keepalives_idle(self.keepalives_idle.unwrap_or(KEEPALIVES_IDLE))
            .keepalives_interval(self.keepalives_interval.unwrap_or(KEEPALIVES_INTERVAL))
            .keepalives_retries(self.keepalives_count.unwrap_or(KEEPALIVES_COUNT));
        let mut options: Vec<String> = self.options.iter().cloned().collect();
        options.extend(session.startup_options());
        if !options.is_empty() {
            config.options(options.join(" "));
        }
        config.target_session_attrs(match self.target_session_attrs {
            None | Some(TargetSessionAttrs::Any) => tokio_postgres::config::TargetSessionAttrs::Any,
            Some(TargetSessionAttrs::ReadWrite) => {
                tokio_postgres::config::TargetSessionAttrs::ReadWrite
            }
            Some(TargetSessionAttrs::ReadOnly) => {
                tokio_postgres::config::TargetSessionAttrs::ReadOnly
            }
        });
        config.channel_binding(match self.channel_binding {
            None | Some(ChannelBinding::Prefer) => tokio_postgres::config::ChannelBinding::Prefer,
            Some(ChannelBinding::Disable) => tokio_postgres::config::ChannelBinding::Disable,
            Some(ChannelBinding::Require) => tokio_postgres::config::ChannelBinding::Require,
        });
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        Ok(config)
    }

    /// One connection attempt, unbounded in time: `connect` bounds it with
    /// `tokio::time::timeout`.
    async fn establish(
        &self,
        config: &tokio_postgres::Config,
        tls: Option<&MakeRustlsConnect>,
    ) -> std::result::Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        use tokio_postgres::config::SslMode as Wire;
        let label = self.label();
        let with = |mode: Wire| {
            let mut config = config.clone();
            config.ssl_mode(mode);
            config
        };
        match (self.plan(), tls) {
            (Plan::Plain, _) | (_, None) => start(&with(Wire::Disable), NoTls, &label).await,
            (Plan::Tls, Some(tls)) => start(&with(Wire::Require), tls.clone(), &label).await,
            (Plan::PlainThenTls, Some(tls)) => {
                match start(&with(Wire::Disable), NoTls, &label).await {
                    // The server answered and said no (pg_hba wants hostssl, say).
                    Err(error) if error.as_db_error().is_some() => {
                        start(&with(Wire::Require), tls.clone(), &label).await
                    }
                    result => result,
                }
            }
            (Plan::TlsThenPlain, Some(tls)) => {
                // tokio-postgres already falls back when the server declines TLS; libpq
                // also retries in plain when the handshake itself fails.
                match start(&with(Wire::Prefer), tls.clone(), &label).await {
                    Err(error) if is_tls_handshake_error(&error) => {
                        tracing::debug!(
                            server = %label,
                            "TLS handshake failed, retrying without TLS (sslmode=prefer): {}",
                            describe_pg_error(&error)
                        );
                        start(&with(Wire::Disable), NoTls, &label).await
                    }
                    result => result,
                }
            }
        }
    }

    /// "connecting to db1.example:5432 as odoo_db_admin", plus the route when it differs.
    fn attempt_description(&self) -> String {
        let mut text = format!("connecting to {} as {}", self.label(), self.user());
        if let Some(addr) = self.hostaddr {
            if self.host() != addr.to_string() || self.origin_port.is_some() {
                let forward = socket_label(addr, self.port());
                match self.route.as_ref().map(|route| route.hop()) {
                    Some(Some(hop)) => {
                        text.push_str(&format!(" (through {hop}, forward {forward})"))
                    }
                    // The hop could not be set up: its error names it.
                    Some(None) => {}
                    None => text.push_str(&format!(" (through {forward})")),
                }
            }
        }
        text
    }

    fn timeout_error(&self) -> Error {
        Error::timed_out(format!(
            "timed out after {} (TCP, TLS and authentication)",
            human(self.connect_timeout())
        ))
        .context(self.attempt_description())
    }

    /// A failed attempt, with what libpq would add and what to do about it.
    fn connect_error(&self, error: tokio_postgres::Error) -> Error {
        let mut message = describe_pg_error(&error);
        let cause = cause_of(&error);
        if error.code() == Some(&SqlState::INVALID_PASSWORD)
            && self.password_source == Some(PasswordSource::File)
        {
            if let Some(file) = self.passfile() {
                message.push_str(&format!(
                    " (password retrieved from file {})",
                    file.display()
                ));
            }
        }
        match cause {
            Some(Cause::PasswordMissing) => {
                let file = self
                    .passfile()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "~/.pgpass".to_string());
                message.push_str(&format!(
                    ": the server asks for a password and none was found; set PGPASSWORD or \
                     add a line for {} to {file} (mode 0600)",
                    self.label()
                ));
            }
            Some(Cause::CertificateNameMismatch) => message.push_str(&format!(
                " (sslmode=verify-full: the server's certificate must name \"{}\")",
                self.host()
            )),
            // Also a certificate signed by a CA of the same name, but not the one we trust.
            Some(Cause::CertificateUntrusted) => message.push_str(&format!(
                " (the server's certificate is not signed by a CA in {})",
                self.sslrootcert.as_deref().unwrap_or("sslrootcert")
            )),
            None => {}
        }
        let failed = Error::from_postgres(error, message);
        match cause {
            Some(cause) => failed.with_cause(cause),
            None => failed,
        }
        .context(self.attempt_description())
    }

    /// Connect: the whole attempt (DNS, TCP, TLS, authentication, startup) bounded by
    /// `connect_timeout`, TCP keepalives on, `application_name`, and the session
    /// options given at startup. The connection task is spawned; it ends with the
    /// client.
    pub async fn connect(&self, session: &SessionOptions) -> Result<Client> {
        if let Some(error) = self.route.as_ref().and_then(|route| route.setup_error()) {
            return Err(error.context(self.attempt_description()));
        }
        let config = self.pg_config(session)?;
        let tls = self.tls_connector()?;
        let attempt = self.establish(&config, tls.as_ref());
        let error = match tokio::time::timeout(self.connect_timeout(), attempt).await {
            Err(_elapsed) => self.timeout_error(),
            Ok(Err(error)) => self.connect_error(error),
            Ok(Ok((client, _task))) => return Ok(client),
        };
        Err(self.explained_by_route(error).await)
    }

    /// A failed attempt through a hop (an SSH forward): when the hop is to blame (the
    /// bastion cannot reach the server, or its connection is gone), say that instead.
    async fn explained_by_route(&self, error: Error) -> Error {
        let Some(route) = &self.route else {
            return error;
        };
        match route.diagnose().await {
            Some(diagnosis) => diagnosis.context(self.attempt_description()),
            None => error,
        }
    }
}

/// "127.0.0.1:40123" / "[::1]:40123".
fn socket_label(addr: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(addr, port).to_string()
}

/// tokio-postgres's words for a failed TLS handshake (its error kinds are private, and
/// the handshake error is an `io::Error` whatever its cause).
fn is_tls_handshake_error(error: &tokio_postgres::Error) -> bool {
    error.to_string().contains("error performing TLS handshake")
}

/// What a failed attempt's source says beyond its class: a certificate rustls rejected
/// (found in the error chain, by type), or a password the server asked for and none was
/// given (tokio-postgres's words, in its error's source: that error kind is private).
fn cause_of(error: &tokio_postgres::Error) -> Option<Cause> {
    use rustls::CertificateError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = source {
        let rustls_error = inner.downcast_ref::<rustls::Error>().or_else(|| {
            inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|wrapped| wrapped.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(certificate)) = rustls_error {
            return match certificate {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    Some(Cause::CertificateNameMismatch)
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Some(Cause::CertificateUntrusted)
                }
                _ => None,
            };
        }
        source = inner.source();
    }
    (error.as_db_error().is_none() && describe_pg_error(error).contains("password missing"))
        .then_some(Cause::PasswordMissing)
}

/// Connect and spawn the connection task, which logs how the connection ended.
async fn start<T>(
    config: &tokio_postgres::Config,
    tls: T,
    label: &str,
) -> std::result::Result<(Client, JoinHandle<()>), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await?;
    let label = label.to_string();
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(server = %label, "connection to {label} ended: {}", describe_pg_error(&error));
        }
    });
    Ok((client, task))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

    use super::*;

    #[test]
    fn session_options_become_startup_switches() {
        let session = SessionOptions {
            statement_timeout: Some(Duration::from_secs(30)),
            lock_timeout: Some(Duration::from_micros(10)),
        };
        assert_eq!(
            session.startup_options(),
            vec![
                "-c statement_timeout=30000".to_string(),
                "-c lock_timeout=1".to_string()
            ]
        );
        assert!(SessionOptions::default().startup_options().is_empty());
    }

    #[test]
    fn options_combine_user_and_session_settings() {
        let params = ConnParams::parse("host=h user=u options='-c search_path=x'").unwrap();
        let session = SessionOptions {
            statement_timeout: Some(Duration::from_millis(1500)),
            lock_timeout: None,
        };
        let config = params.pg_config(&session).unwrap();
        assert_eq!(
            config.get_options(),
            Some("-c search_path=x -c statement_timeout=1500")
        );
        assert_eq!(config.get_application_name(), Some("odoo-db"));
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
    }

    #[test]
    fn unresolved_parameters_are_refused() {
        let e = ConnParams::parse("user=u")
            .unwrap()
            .pg_config(&SessionOptions::default());
        assert!(e.unwrap_err().to_string().contains("no host"));
    }

    #[test]
    fn sockets_never_use_tls() {
        let params = ConnParams::parse("host=/tmp user=u sslmode=verify-full").unwrap();
        assert_eq!(params.plan(), Plan::Plain);
        assert!(params.tls_connector().unwrap().is_none());
        let params = ConnParams::parse("host=h user=u sslmode=allow").unwrap();
        assert_eq!(params.plan(), Plan::PlainThenTls);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn attempt_description_shows_the_route() {
        let params = ConnParams::parse("host=db1.example port=5432 user=admin").unwrap();
        assert_eq!(
            params.attempt_description(),
            "connecting to db1.example:5432 as admin"
        );
        let via = params.via("127.0.0.1".parse().unwrap(), 40123);
        assert_eq!(
            via.attempt_description(),
            "connecting to db1.example:5432 as admin (through 127.0.0.1:40123)"
        );
    }

    /// A hop that is up and never to blame, or one that could not be set up.
    #[derive(Debug)]
    struct FakeRoute {
        up: bool,
    }

    impl Route for FakeRoute {
        fn hop(&self) -> Option<String> {
            self.up.then(|| "bastion ssh://jump".to_string())
        }

        fn setup_error(&self) -> Option<Error> {
            (!self.up).then(|| Error::unknown("bastion ssh://jump: unreachable"))
        }

        fn diagnose(&self) -> Pin<Box<dyn Future<Output = Option<Error>> + Send + '_>> {
            Box::pin(async move { self.setup_error() })
        }
    }

    #[tokio::test]
    async fn a_route_names_its_hop_or_fails_every_attempt() {
        let params = ConnParams::parse("host=db1.example port=5432 user=admin")
            .unwrap()
            .via("127.0.0.1".parse().unwrap(), 40123);
        let up = params
            .clone()
            .through(std::sync::Arc::new(FakeRoute { up: true }));
        assert_eq!(
            up.attempt_description(),
            "connecting to db1.example:5432 as admin (through bastion ssh://jump, forward \
             127.0.0.1:40123)"
        );
        let down = params.through(std::sync::Arc::new(FakeRoute { up: false }));
        let error = down.connect(&SessionOptions::default()).await.unwrap_err();
        assert_eq!(error.class(), Class::Unknown);
        assert_eq!(
            error.to_string(),
            "connecting to db1.example:5432 as admin: bastion ssh://jump: unreachable"
        );
    }
}
