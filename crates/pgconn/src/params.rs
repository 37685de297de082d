//! Connection parameters read the way libpq reads them.
//!
//! DBAs point odoo-db at whatever their `psql` already uses: a `postgresql://` URL or a
//! `key=value` string, `PG*` environment variables, a password file. tokio-postgres reads
//! none of the environment and parses neither percent-encoded socket directories nor
//! libpq's defaults, so this module does: parse strictly (an unknown key is a typo the
//! user must hear about, not something to ignore), then fill what is unset in libpq's
//! order (conninfo, environment, compiled-in defaults, password file).
//!
//! The URL parser is hand-written on purpose: a libpq URI is not a WHATWG URL (comma
//! host lists, percent-encoded socket paths as hosts, empty ports), and generic URL
//! parsers either reject or silently normalise those.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Context, Error, Result};
use crate::pgpass;
use crate::route::Route;

/// The socket directory Debian's libpq uses when no host is given; libpq also treats it
/// as `localhost` in the password file.
pub(crate) const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
const DEFAULT_PORT: u16 = 5432;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_APPLICATION_NAME: &str = "odoo-db";

/// libpq's `sslmode`: how much TLS to insist on and how much of the certificate to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS only if the server refuses the plain connection.
    Allow,
    /// TLS if the server offers it, plain otherwise; the certificate is not checked
    /// (unless a root certificate is available, as in libpq).
    Prefer,
    /// TLS or nothing; the certificate is not checked unless a root certificate is
    /// available, then it is checked like `verify-ca` (libpq's compatibility rule).
    Require,
    /// TLS, the chain must lead to `sslrootcert`; the host name is not checked.
    VerifyCa,
    /// TLS, the chain must lead to `sslrootcert` and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling, for conninfo strings and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// True for the modes that refuse a server whose certificate cannot be verified.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(value: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::refused(format!(
                    "invalid sslmode \"{other}\": expected disable, allow, prefer, require, \
                     verify-ca or verify-full"
                )))
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// libpq's `target_session_attrs`, limited to what tokio-postgres can check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetSessionAttrs {
    Any,
    ReadWrite,
    ReadOnly,
}

impl TargetSessionAttrs {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TargetSessionAttrs::Any => "any",
            TargetSessionAttrs::ReadWrite => "read-write",
            TargetSessionAttrs::ReadOnly => "read-only",
        }
    }
}

/// libpq's `channel_binding` (SCRAM-SHA-256-PLUS over TLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelBinding {
    Disable,
    Prefer,
    Require,
}

impl ChannelBinding {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ChannelBinding::Disable => "disable",
            ChannelBinding::Prefer => "prefer",
            ChannelBinding::Require => "require",
        }
    }
}

/// Where the password came from: it decides what happens when the user changes
/// (a password typed for one role must not be sent for another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PasswordSource {
    /// In the conninfo string or set by the program.
    Given,
    /// `PGPASSWORD`.
    Environment,
    /// The password file.
    File,
}

/// Connection parameters as libpq understands them. Password redacted in Debug/Display.
///
/// Fields are `None` until [`ConnParams::resolve`] fills them; the getters answer with
/// libpq's defaults for what is still unset, so they are meaningful on resolved
/// parameters only.
#[derive(Clone, Default)]
pub struct ConnParams {
    pub(crate) host: Option<String>,
    pub(crate) hostaddr: Option<IpAddr>,
    pub(crate) port: Option<u16>,
    /// The server's own port when [`ConnParams::via`] redirected `port` to a forward:
    /// labels and password-file lookups keep naming the real server.
    pub(crate) origin_port: Option<u16>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_source: Option<PasswordSource>,
    pub(crate) dbname: Option<String>,
    pub(crate) sslmode: Option<SslMode>,
    pub(crate) sslrootcert: Option<String>,
    /// True when `sslrootcert` is libpq's default `~/.postgresql/root.crt` rather than
    /// something the user named: the error for a missing file says so.
    pub(crate) sslrootcert_is_default: bool,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) application_name: Option<String>,
    pub(crate) options: Option<String>,
    pub(crate) keepalives: Option<bool>,
    pub(crate) keepalives_idle: Option<Duration>,
    pub(crate) keepalives_interval: Option<Duration>,
    pub(crate) keepalives_count: Option<u32>,
    /// Before resolution: the `passfile` parameter; after: the file actually consulted.
    pub(crate) passfile: Option<PathBuf>,
    /// The password file is a systemd credential (its mode bits read differently).
    pub(crate) passfile_is_credential: bool,
    pub(crate) target_session_attrs: Option<TargetSessionAttrs>,
    pub(crate) channel_binding: Option<ChannelBinding>,
    /// The hop (an SSH forward, say) these parameters go through, set with
    /// [`ConnParams::through`] after [`ConnParams::via`]: named in messages, asked why a
    /// failed attempt failed.
    pub(crate) route: Option<Arc<dyn Route>>,
}

/// One libpq connection parameter: the single place that says how it is read from a
/// conninfo string and the environment, how it is handed to libpq tools, and how it
/// shows in `Debug`.
struct Key {
    /// The conninfo keyword.
    name: &'static str,
    /// libpq's environment variable for it, also used to pass it to libpq tools.
    env: Option<&'static str>,
    /// [`ConnParams::resolve_with`] fills it from `env` when the conninfo left it unset.
    resolve_reads_env: bool,
    /// Part of [`ConnParams::libpq_conninfo`] and [`ConnParams::libpq_env`].
    passed_to_tools: bool,
    /// Redacted in `Debug`.
    secret: bool,
    /// Another spelling of a parameter listed on its own (not shown in `Debug`).
    alias: bool,
    /// The value as libpq would read it back; None when unset.
    get: fn(&ConnParams) -> Option<String>,
    /// Store a non-empty value.
    set: fn(&mut ConnParams, &str) -> Result<()>,
    /// Unset (an empty value, as in libpq).
    clear: fn(&mut ConnParams),
}

/// A parameter read from the environment by `resolve` and passed to libpq tools.
const RESOLVED: (bool, bool) = (true, true);
/// A parameter passed to libpq tools but not read from the environment.
const PASSED: (bool, bool) = (false, true);
/// A parameter odoo-db keeps to itself.
const OWN: (bool, bool) = (false, false);

const fn key(
    name: &'static str,
    env: Option<&'static str>,
    (resolve_reads_env, passed_to_tools): (bool, bool),
    get: fn(&ConnParams) -> Option<String>,
    set: fn(&mut ConnParams, &str) -> Result<()>,
    clear: fn(&mut ConnParams),
) -> Key {
    Key {
        name,
        env,
        resolve_reads_env,
        passed_to_tools,
        secret: false,
        alias: false,
        get,
        set,
        clear,
    }
}

/// Every parameter odoo-db accepts, in the order libpq tools get them.
static KEYS: &[Key] = &[
    key(
        "host",
        Some("PGHOST"),
        RESOLVED,
        |p| p.host.clone(),
        |p, value| {
            p.host = Some(one_host(value)?.to_string());
            Ok(())
        },
        |p| p.host = None,
    ),
    key(
        "hostaddr",
        Some("PGHOSTADDR"),
        RESOLVED,
        |p| p.hostaddr.map(|addr| addr.to_string()),
        |p, value| {
            let addr = one_host(value)?.parse().map_err(|_| {
                Error::refused(format!(
                    "invalid hostaddr \"{value}\": expected an IPv4 or IPv6 address"
                ))
            })?;
            p.hostaddr = Some(addr);
            Ok(())
        },
        |p| p.hostaddr = None,
    ),
    key(
        "port",
        Some("PGPORT"),
        RESOLVED,
        |p| p.port.map(|port| port.to_string()),
        |p, value| {
            p.port = Some(match one_host(value)?.trim().parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => {
                    return Err(Error::refused(format!(
                        "invalid port \"{value}\": expected a number from 1 to 65535"
                    )))
                }
            });
            Ok(())
        },
        |p| p.port = None,
    ),
    key(
        "user",
        Some("PGUSER"),
        RESOLVED,
        |p| p.user.clone(),
        |p, value| {
            p.user = Some(value.to_string());
            Ok(())
        },
        |p| p.user = None,
    ),
    Key {
        secret: true,
        // Never on a command line (argv is visible in `ps`): PGPASSWORD, to one child.
        ..key(
            "password",
            Some("PGPASSWORD"),
            OWN,
            |p| p.password.clone(),
            |p, value| {
                p.password = Some(value.to_string());
                p.password_source = Some(PasswordSource::Given);
                Ok(())
            },
            |p| {
                p.password = None;
                p.password_source = None;
            },
        )
    },
    key(
        "dbname",
        Some("PGDATABASE"),
        RESOLVED,
        |p| p.dbname.clone(),
        |p, value| {
            p.dbname = Some(value.to_string());
            Ok(())
        },
        |p| p.dbname = None,
    ),
    key(
        "sslmode",
        Some("PGSSLMODE"),
        RESOLVED,
        |p| p.sslmode.map(|mode| mode.as_str().to_string()),
        |p, value| {
            p.sslmode = Some(value.parse()?);
            Ok(())
        },
        |p| p.sslmode = None,
    ),
    // The JDBC spelling, which libpq also accepts in URLs.
    Key {
        alias: true,
        ..key(
            "ssl",
            None,
            OWN,
            |_| None,
            |p, value| match value {
                "true" => {
                    p.sslmode = Some(SslMode::Require);
                    Ok(())
                }
                other => Err(Error::refused(format!(
                    "invalid ssl \"{other}\": only ssl=true is accepted (it means \
                     sslmode=require)"
                ))),
            },
            |p| p.sslmode = None,
        )
    },
    key(
        "sslrootcert",
        Some("PGSSLROOTCERT"),
        RESOLVED,
        |p| p.sslrootcert.clone(),
        |p, value| {
            p.sslrootcert = Some(value.to_string());
            p.sslrootcert_is_default = false;
            Ok(())
        },
        |p| p.sslrootcert = None,
    ),
    key(
        "connect_timeout",
        Some("PGCONNECT_TIMEOUT"),
        RESOLVED,
        |p| p.connect_timeout.map(|t| t.as_secs().to_string()),
        |p, value| {
            let seconds = parse_int("connect_timeout", value)?;
            if seconds <= 0 {
                return Err(Error::refused(format!(
                    "invalid connect_timeout \"{value}\": odoo-db never waits forever for a \
                     server, give a number of seconds (at least 1)"
                )));
            }
            // libpq's floor: shorter timeouts are raised to 2 s.
            p.connect_timeout = Some(Duration::from_secs(seconds.max(2) as u64));
            Ok(())
        },
        |p| p.connect_timeout = None,
    ),
    key(
        "application_name",
        Some("PGAPPNAME"),
        RESOLVED,
        |p| p.application_name.clone(),
        |p, value| {
            p.application_name = Some(value.to_string());
            Ok(())
        },
        |p| p.application_name = None,
    ),
    key(
        "options",
        Some("PGOPTIONS"),
        PASSED,
        |p| p.options.clone(),
        |p, value| {
            p.options = Some(value.to_string());
            Ok(())
        },
        |p| p.options = None,
    ),
    key(
        "keepalives",
        None,
        PASSED,
        |p| p.keepalives.map(|k| u8::from(k).to_string()),
        |p, value| {
            p.keepalives = Some(parse_int("keepalives", value)? != 0);
            Ok(())
        },
        |p| p.keepalives = None,
    ),
    key(
        "keepalives_idle",
        None,
        PASSED,
        |p| p.keepalives_idle.map(|t| t.as_secs().to_string()),
        |p, value| {
            p.keepalives_idle = Some(parse_seconds("keepalives_idle", value)?);
            Ok(())
        },
        |p| p.keepalives_idle = None,
    ),
    key(
        "keepalives_interval",
        None,
        PASSED,
        |p| p.keepalives_interval.map(|t| t.as_secs().to_string()),
        |p, value| {
            p.keepalives_interval = Some(parse_seconds("keepalives_interval", value)?);
            Ok(())
        },
        |p| p.keepalives_interval = None,
    ),
    key(
        "keepalives_count",
        None,
        PASSED,
        |p| p.keepalives_count.map(|c| c.to_string()),
        |p, value| {
            let count = parse_int("keepalives_count", value)?;
            p.keepalives_count = Some(u32::try_from(count).map_err(|_| {
                Error::refused(format!(
                    "invalid value \"{value}\" for connection parameter \"keepalives_count\""
                ))
            })?);
            Ok(())
        },
        |p| p.keepalives_count = None,
    ),
    // Left out for tools: they get the password in PGPASSWORD, not through a file.
    key(
        "passfile",
        None,
        OWN,
        |p| p.passfile.as_ref().map(|f| f.display().to_string()),
        |p, value| {
            p.passfile = Some(PathBuf::from(value));
            Ok(())
        },
        |p| p.passfile = None,
    ),
    key(
        "target_session_attrs",
        Some("PGTARGETSESSIONATTRS"),
        PASSED,
        |p| p.target_session_attrs.map(|t| t.as_str().to_string()),
        |p, value| {
            p.target_session_attrs = Some(match value {
                "any" => TargetSessionAttrs::Any,
                "read-write" => TargetSessionAttrs::ReadWrite,
                "read-only" => TargetSessionAttrs::ReadOnly,
                other => {
                    return Err(Error::refused(format!(
                        "unsupported target_session_attrs \"{other}\": odoo-db accepts any, \
                         read-write and read-only"
                    )))
                }
            });
            Ok(())
        },
        |p| p.target_session_attrs = None,
    ),
    key(
        "channel_binding",
        Some("PGCHANNELBINDING"),
        PASSED,
        |p| p.channel_binding.map(|c| c.as_str().to_string()),
        |p, value| {
            p.channel_binding = Some(match value {
                "disable" => ChannelBinding::Disable,
                "prefer" => ChannelBinding::Prefer,
                "require" => ChannelBinding::Require,
                other => {
                    return Err(Error::refused(format!(
                        "invalid channel_binding \"{other}\": expected disable, prefer or \
                         require"
                    )))
                }
            });
            Ok(())
        },
        |p| p.channel_binding = None,
    ),
    // odoo-db never uses GSSAPI encryption, which is what these two values allow.
    Key {
        alias: true,
        ..key(
            "gssencmode",
            None,
            OWN,
            |_| None,
            |_, value| match value {
                "disable" | "prefer" => Ok(()),
                other => Err(Error::refused(format!(
                    "unsupported gssencmode \"{other}\": odoo-db does not do GSSAPI \
                     encryption (disable and prefer are accepted)"
                ))),
            },
            |_| {},
        )
    },
];

/// libpq accepts comma-separated host lists; odoo-db addresses one server at a time.
fn one_host(value: &str) -> Result<&str> {
    match value.contains(',') {
        true => Err(multiple_hosts()),
        false => Ok(value),
    }
}

/// libpq parameters that exist but that odoo-db does not implement: refused with a
/// message that says so rather than "unknown", which would suggest a typo.
const UNSUPPORTED_LIBPQ_KEYS: &[&str] = &[
    "service",
    "client_encoding",
    "fallback_application_name",
    "tcp_user_timeout",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslcertmode",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslnegotiation",
    "requirepeer",
    "require_auth",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "replication",
    "load_balance_hosts",
];

impl ConnParams {
    /// Parse a `postgresql://` / `postgres://` URL or a libpq `key=value` string (quoted
    /// values, backslash escapes). Unknown keys are refused naming the key. Does not
    /// read the environment.
    pub fn parse(conninfo: &str) -> Result<ConnParams> {
        let trimmed = conninfo.trim_start();
        if let Some(rest) = trimmed
            .strip_prefix("postgresql://")
            .or_else(|| trimmed.strip_prefix("postgres://"))
        {
            parse_url(rest).context("invalid connection URL")
        } else {
            parse_keyword_value(conninfo).context("invalid connection string")
        }
    }

    /// Fill what is unset from the environment (see [`ConnParams::resolve_with`]).
    pub fn resolve(self) -> Result<ConnParams> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Parse then resolve against the process environment.
    pub fn parse_resolved(conninfo: &str) -> Result<ConnParams> {
        ConnParams::parse(conninfo)?.resolve()
    }

    /// Fill what is unset from PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD
    /// PGSSLMODE PGSSLROOTCERT PGCONNECT_TIMEOUT PGAPPNAME (read through `env`, so tests
    /// need not touch the process environment), then libpq's defaults, then the
    /// password from the password file if there is still none.
    pub fn resolve_with(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnParams> {
        // libpq treats an empty variable as unset.
        let var = |name: &str| env(name).filter(|value| !value.is_empty());

        for key in KEYS.iter().filter(|key| key.resolve_reads_env) {
            let Some(name) = key.env else { continue };
            if (key.get)(&self).is_none() {
                if let Some(value) = var(name) {
                    (key.set)(&mut self, &value)
                        .with_context(|| format!("environment variable {name}"))?;
                }
            }
        }
        if self.password.is_none() {
            if let Some(password) = var("PGPASSWORD") {
                self.password = Some(password);
                self.password_source = Some(PasswordSource::Environment);
            }
        }

        if self.host.is_none() {
            // libpq connects to hostaddr alone when only it is given; keeping it as the
            // host too gives TLS and the password file the name libpq would use.
            self.host = Some(match self.hostaddr {
                Some(addr) => addr.to_string(),
                None if Path::new(DEFAULT_SOCKET_DIR).is_dir() => DEFAULT_SOCKET_DIR.to_string(),
                None => "localhost".to_string(),
            });
        }
        self.port.get_or_insert(DEFAULT_PORT);
        if self.user.is_none() {
            self.user = Some(os_user_name()?);
        }
        if self.dbname.is_none() {
            self.dbname.clone_from(&self.user);
        }
        if self.connect_timeout.is_none() {
            self.connect_timeout = Some(DEFAULT_CONNECT_TIMEOUT);
        }
        self.application_name
            .get_or_insert_with(|| DEFAULT_APPLICATION_NAME.to_string());

        let home = var("HOME").map(PathBuf::from).or_else(os_home_dir);
        self.resolve_tls(home.as_deref())?;

        if self.passfile.is_none() {
            self.passfile = pgpass::locate(env, home.as_deref());
        }
        self.passfile_is_credential = self
            .passfile
            .as_deref()
            .is_some_and(|file| pgpass::is_credential(file, env));
        if self.password.is_none() {
            self.look_up_password();
        }
        Ok(self)
    }

    /// libpq's TLS defaults: `sslrootcert=system` implies (and requires) verify-full;
    /// otherwise `~/.postgresql/root.crt` is the root for verify-* and, when it exists,
    /// turns on verification for the weaker modes too.
    fn resolve_tls(&mut self, home: Option<&Path>) -> Result<()> {
        if self.sslrootcert.as_deref() == Some("system") {
            match self.sslmode {
                None => self.sslmode = Some(SslMode::VerifyFull),
                Some(SslMode::VerifyFull) | Some(SslMode::Disable) => {}
                Some(weak) => {
                    return Err(Error::refused(format!(
                        "sslmode={weak} may not be used with sslrootcert=system: the system's \
                         public CAs vouch for names, so use sslmode=verify-full"
                    )))
                }
            }
        }
        let mode = *self.sslmode.get_or_insert(SslMode::Prefer);
        if self.sslrootcert.is_none() && mode != SslMode::Disable {
            if let Some(home) = home {
                let default = home.join(".postgresql").join("root.crt");
                if mode.verifies() || default.is_file() {
                    self.sslrootcert = Some(default.to_string_lossy().into_owned());
                    self.sslrootcert_is_default = true;
                }
            }
        }
        Ok(())
    }

    fn look_up_password(&mut self) {
        self.password = None;
        self.password_source = None;
        let (Some(file), Some(user), Some(dbname)) = (&self.passfile, &self.user, &self.dbname)
        else {
            return;
        };
        let host = self
            .host
            .clone()
            .or_else(|| self.hostaddr.map(|addr| addr.to_string()))
            .unwrap_or_default();
        let port = self.origin_port.or(self.port).unwrap_or(DEFAULT_PORT);
        if let Some(password) =
            pgpass::lookup(file, self.passfile_is_credential, &host, port, dbname, user)
        {
            self.password = Some(password);
            self.password_source = Some(PasswordSource::File);
        }
    }

    /// The host: a name, an IP address, or a Unix socket directory (starts with `/`).
    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("")
    }

    /// The address to connect to instead of resolving `host` (libpq's `hostaddr`).
    pub fn hostaddr(&self) -> Option<IpAddr> {
        self.hostaddr
    }

    /// The port to connect to (the forward's, after [`ConnParams::via`]).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    pub fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    pub fn dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or("")
    }

    pub fn sslmode(&self) -> SslMode {
        self.sslmode.unwrap_or(SslMode::Prefer)
    }

    /// The bound on a whole connection attempt (TCP, TLS and authentication).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// For writing a temporary password file for pg_dump; never log it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The `options` startup parameter (`-c name=value` switches), if set.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    pub fn application_name(&self) -> &str {
        self.application_name
            .as_deref()
            .unwrap_or(DEFAULT_APPLICATION_NAME)
    }

    /// The password file consulted (after resolution), if any.
    pub fn passfile(&self) -> Option<&Path> {
        self.passfile.as_deref()
    }

    /// True when `host` is a Unix socket directory: such connections never use TLS.
    pub fn is_unix_socket(&self) -> bool {
        self.host().starts_with('/')
    }

    /// "host:port" for messages and output labels; IPv6 addresses in brackets. After
    /// [`ConnParams::via`] it still names the real server, not the forward.
    pub fn label(&self) -> String {
        let port = self.origin_port.unwrap_or(self.port());
        let host = self.host();
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// The server's own port, also after [`ConnParams::via`] redirected [`ConnParams::port`]
    /// to a forward: what users and clients outside this run must be told.
    pub fn server_port(&self) -> u16 {
        self.origin_port.unwrap_or(self.port())
    }

    /// The hop these parameters go through, if any.
    pub fn route(&self) -> Option<&dyn Route> {
        self.route.as_deref()
    }

    /// The same parameters, their attempts going through `route` (whose local end
    /// [`ConnParams::via`] already pointed them at).
    pub fn through(mut self, route: Arc<dyn Route>) -> ConnParams {
        self.route = Some(route);
        self
    }

    /// The same server, another database. A password from the password file (or none)
    /// is looked up again, since the file's lines can differ by database.
    /// The same parameters with another `application_name` (what `pg_stat_activity`
    /// shows, e.g. for a tool's sessions).
    pub fn with_application_name(&self, name: &str) -> ConnParams {
        let mut params = self.clone();
        params.application_name = Some(name.to_string());
        params
    }

    pub fn with_dbname(&self, dbname: &str) -> ConnParams {
        let mut params = self.clone();
        params.dbname = Some(dbname.to_string());
        if matches!(params.password_source, None | Some(PasswordSource::File)) {
            params.look_up_password();
        }
        params
    }

    /// The same server, another role. A password given for the old role is dropped (it
    /// would be sent to the server for the wrong role); the password file is consulted
    /// for the new one.
    pub fn with_user(&self, user: &str) -> ConnParams {
        let mut params = self.clone();
        if params.user.as_deref() == Some(user) {
            return params;
        }
        params.user = Some(user.to_string());
        params.look_up_password();
        params
    }

    pub fn with_password(&self, password: &str) -> ConnParams {
        let mut params = self.clone();
        params.password = Some(password.to_string());
        params.password_source = Some(PasswordSource::Given);
        params
    }

    /// The same parameters with `switches` (`-c name=value`) appended to `options`, after
    /// the user's own so that they win.
    pub fn with_startup_options(&self, switches: &[&str]) -> ConnParams {
        let mut params = self.clone();
        let mut options: Vec<String> = params.options.iter().cloned().collect();
        options.extend(switches.iter().map(|s| s.to_string()));
        params.options = Some(options.join(" "));
        params
    }

    /// Connect to `hostaddr:port` while keeping `host` as the TLS server name (libpq's
    /// hostaddr), used for SSH forwards.
    pub fn via(&self, hostaddr: IpAddr, port: u16) -> ConnParams {
        let mut params = self.clone();
        params.origin_port = Some(self.origin_port.unwrap_or(self.port()));
        params.hostaddr = Some(hostaddr);
        params.port = Some(port);
        params
    }

    /// libpq-style conninfo `key=value` string for libpq tools (pg_dump, psql), password
    /// NOT included (argv is visible in `ps`): the caller gives it to that child alone in
    /// `PGPASSWORD`, never in a file (see `backup::libpq_command`); `passfile` is left
    /// out too.
    pub fn libpq_conninfo(&self) -> String {
        self.libpq_pairs()
            .into_iter()
            .map(|(key, _, value)| format!("{key}={}", quote_conninfo_value(&value)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The same settings as environment variables, for a libpq tool started without a
    /// conninfo argument. Callers give the password in the child's own `PGPASSWORD`,
    /// never in a file.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        self.libpq_pairs()
            .into_iter()
            .filter_map(|(_, var, value)| var.map(|var| (var, value)))
            .collect()
    }

    /// (conninfo key, environment variable if libpq has one, value) for every set value.
    fn libpq_pairs(&self) -> Vec<(&'static str, Option<&'static str>, String)> {
        KEYS.iter()
            .filter(|key| key.passed_to_tools)
            .filter_map(|key| Some((key.name, key.env, (key.get)(self)?)))
            .collect()
    }

    /// Store one parameter. An empty value means unset, as in libpq. Messages never
    /// repeat a password.
    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = KEYS
            .iter()
            .find(|known| known.name == key)
            .ok_or_else(|| unknown_key(key))?;
        if value.is_empty() {
            (key.clear)(self);
            Ok(())
        } else {
            (key.set)(self, value)
        }
    }
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ConnParams");
        for key in KEYS.iter().filter(|key| !key.alias) {
            let value = (key.get)(self);
            match key.secret {
                true => debug.field(key.name, &value.map(|_| "<redacted>")),
                false => debug.field(key.name, &value),
            };
        }
        debug
            .field("origin_port", &self.origin_port)
            .field("password_source", &self.password_source)
            .field("sslrootcert_is_default", &self.sslrootcert_is_default)
            .field("passfile_is_credential", &self.passfile_is_credential)
            .field("route", &self.route)
            .finish()
    }
}

/// The conninfo string without the password.
impl fmt::Display for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.libpq_conninfo())
    }
}

fn unknown_key(key: &str) -> Error {
    if UNSUPPORTED_LIBPQ_KEYS.contains(&key) {
        Error::refused(format!(
            "connection parameter \"{key}\" is a libpq parameter that odoo-db does not support"
        ))
    } else {
        Error::refused(format!("unknown connection parameter \"{key}\""))
    }
}

fn multiple_hosts() -> Error {
    Error::refused(
        "multiple hosts are not supported: give one host (odoo-db addresses primaries and \
         standbys separately)",
    )
}

fn parse_int(key: &str, value: &str) -> Result<i64> {
    value.trim().parse::<i64>().map_err(|_| {
        Error::refused(format!(
            "invalid integer value \"{value}\" for connection parameter \"{key}\""
        ))
    })
}

fn parse_seconds(key: &str, value: &str) -> Result<Duration> {
    match parse_int(key, value)? {
        n if n >= 0 => Ok(Duration::from_secs(n as u64)),
        _ => Err(Error::refused(format!(
            "invalid value \"{value}\" for connection parameter \"{key}\": must not be negative"
        ))),
    }
}

/// libpq's `key=value` syntax: whitespace-separated pairs, spaces allowed around `=`,
/// values either bare (backslash escapes the next character) or single-quoted (`\'`
/// and `\\` inside).
fn parse_keyword_value(conninfo: &str) -> Result<ConnParams> {
    let mut params = ConnParams::default();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::refused(format!("missing \"=\" after \"{key}\"")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(Error::refused(format!(
                            "unterminated quoted value for \"{key}\""
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => {
                        if let Some(c) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        params.set(&key, &value)?;
    }
    Ok(params)
}

/// `[user[:password]@][host][:port][/dbname][?key=value&…]`, the scheme already removed.
fn parse_url(rest: &str) -> Result<ConnParams> {
    let mut params = ConnParams::default();
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (before_query, None),
    };
    // The last `@`: a password with an unencoded `@` still parses, and a host cannot
    // contain one anyway.
    let hostspec = match authority.rsplit_once('@') {
        Some((userinfo, hostspec)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            params.set("user", &percent_decode(user).context("in the user name")?)?;
            if let Some(password) = password {
                params.set(
                    "password",
                    &percent_decode(password).context("in the password")?,
                )?;
            }
            hostspec
        }
        None => authority,
    };
    if hostspec.contains(',') {
        return Err(multiple_hosts());
    }
    let (host, port) = if let Some(bracketed) = hostspec.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| Error::refused("IPv6 host address is missing its closing \"]\""))?;
        if host.is_empty() {
            return Err(Error::refused("IPv6 host address may not be empty"));
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                Error::refused(format!(
                    "unexpected \"{after}\" after the IPv6 host address (expected \":port\")"
                ))
            })?),
        };
        (host.to_string(), port)
    } else {
        let (host, port) = match hostspec.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostspec, None),
        };
        (percent_decode(host).context("in the host")?, port)
    };
    params.set("host", &host)?;
    if let Some(port) = port {
        params.set("port", &percent_decode(port).context("in the port")?)?;
    }
    if let Some(path) = path {
        params.set(
            "dbname",
            &percent_decode(path).context("in the database name")?,
        )?;
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            Error::refused(format!("missing \"=\" in query parameter \"{pair}\""))
        })?;
        let key = percent_decode(key).context("in a query parameter name")?;
        let value = percent_decode(value).with_context(|| format!("in query parameter {key}"))?;
        params.set(&key, &value)?;
    }
    Ok(params)
}

/// Strict percent-decoding as libpq does it: a malformed escape or `%00` is an error
/// (lenient decoders pass them through, hiding typos in passwords and socket paths).
fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(0) => return Err(Error::refused("forbidden %00 in percent-encoded value")),
                Some(byte) => decoded.push(byte),
                None => return Err(Error::refused("invalid percent-encoded token")),
            }
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| Error::refused("percent-encoded value is not UTF-8"))
}

/// Quote a conninfo value only when libpq would otherwise split or unescape it.
fn quote_conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        return value.to_string();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

/// libpq takes the user name from the password database, not from `$USER`.
fn os_user_name() -> Result<String> {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => Ok(user.name),
        _ => Err(Error::refused(format!(
            "no user name given and none found for uid {uid}: set user in the connection \
             string or PGUSER"
        ))),
    }
}

fn os_home_dir() -> Option<PathBuf> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|user| user.dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    /// An environment with nothing but a HOME that holds nothing, so tests do not
    /// depend on the machine's ~/.pgpass or ~/.postgresql.
    fn empty_env(home: &Path) -> impl Fn(&str) -> Option<String> {
        let home = home.to_string_lossy().into_owned();
        move |name| (name == "HOME").then(|| home.clone())
    }

    #[test]
    fn url_with_everything() {
        let p = ConnParams::parse(
            "postgresql://odoo_db_admin:s%40cr%3At@db1.example:5433/post%20gres\
             ?sslmode=verify-full&application_name=health&connect_timeout=7",
        )
        .unwrap();
        assert_eq!(p.host(), "db1.example");
        assert_eq!(p.port(), 5433);
        assert_eq!(p.user(), "odoo_db_admin");
        assert_eq!(p.password(), Some("s@cr:t"));
        assert_eq!(p.dbname(), "post gres");
        assert_eq!(p.sslmode(), SslMode::VerifyFull);
        assert_eq!(p.application_name(), "health");
        assert_eq!(p.connect_timeout(), Duration::from_secs(7));
    }

    #[test]
    fn url_short_scheme_and_missing_parts() {
        let p = ConnParams::parse("postgres://db1.example").unwrap();
        assert_eq!(p.host.as_deref(), Some("db1.example"));
        assert_eq!(p.port, None);
        assert_eq!(p.user, None);
        assert_eq!(p.dbname, None);
        let p = ConnParams::parse("postgresql://").unwrap();
        assert_eq!(p.host, None);
        let p = ConnParams::parse("postgresql:///mydb?host=/tmp/sock&port=5444").unwrap();
        assert_eq!(p.host(), "/tmp/sock");
        assert!(p.is_unix_socket());
        assert_eq!(p.dbname(), "mydb");
        assert_eq!(p.port(), 5444);
    }

    #[test]
    fn url_ipv6_in_brackets() {
        let p = ConnParams::parse("postgresql://u@[::1]:6543/db").unwrap();
        assert_eq!(p.host(), "::1");
        assert_eq!(p.port(), 6543);
        assert_eq!(p.label(), "[::1]:6543");
        let p = ConnParams::parse("postgresql://[2001:db8::7]/db").unwrap();
        assert_eq!(p.host(), "2001:db8::7");
        assert_eq!(p.port, None);
        assert!(ConnParams::parse("postgresql://[::1/db").is_err());
    }

    #[test]
    fn url_percent_encoded_socket_directory() {
        let p = ConnParams::parse("postgresql://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(p.host(), "/var/run/postgresql");
        assert!(p.is_unix_socket());
    }

    #[test]
    fn url_bad_percent_encoding_refused_without_echoing_the_password() {
        let e = ConnParams::parse("postgresql://u:sec%zzret@h/db").unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        assert!(!e.to_string().contains("sec"), "{e}");
        assert!(ConnParams::parse("postgresql://u@h/d%00b").is_err());
    }

    #[test]
    fn url_unknown_query_key_refused_naming_it() {
        let e = ConnParams::parse("postgresql://h/db?sslmdoe=require").unwrap_err();
        assert_eq!(e.class(), crate::Class::Refused);
        assert!(e.to_string().contains("\"sslmdoe\""), "{e}");
        let e = ConnParams::parse("postgresql://h/db?sslcert=/x").unwrap_err();
        assert!(e.to_string().contains("does not support"), "{e}");
    }

    #[test]
    fn url_ssl_true_means_require() {
        let p = ConnParams::parse("postgresql://h/db?ssl=true").unwrap();
        assert_eq!(p.sslmode(), SslMode::Require);
    }

    #[test]
    fn multiple_hosts_refused() {
        let e = ConnParams::parse("postgresql://h1:5432,h2:5433/db").unwrap_err();
        assert!(e.to_string().contains("multiple hosts"), "{e}");
        assert!(ConnParams::parse("host=h1,h2").is_err());
    }

    #[test]
    fn keyword_value_quotes_and_escapes() {
        let p = ConnParams::parse(
            r"host = db1.example port=5433 user=admin password='it\'s a \\ secret' dbname=my\ db options='-c search_path=public'",
        )
        .unwrap();
        assert_eq!(p.host(), "db1.example");
        assert_eq!(p.port(), 5433);
        assert_eq!(p.password(), Some(r"it's a \ secret"));
        assert_eq!(p.dbname(), "my db");
        assert_eq!(p.options.as_deref(), Some("-c search_path=public"));
    }

    #[test]
    fn keyword_value_errors() {
        let e = ConnParams::parse("host=h bogus=1").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown connection parameter \"bogus\""),
            "{e}"
        );
        assert!(ConnParams::parse("host").is_err());
        assert!(ConnParams::parse("password='unterminated").is_err());
        assert!(ConnParams::parse("port=99999").is_err());
        assert!(ConnParams::parse("port=0").is_err());
        assert!(ConnParams::parse("sslmode=verify").is_err());
        assert!(ConnParams::parse("hostaddr=db.example").is_err());
        assert!(ConnParams::parse("connect_timeout=0").is_err());
        assert!(ConnParams::parse("target_session_attrs=standby").is_err());
    }

    #[test]
    fn keyword_value_accepts_the_documented_keys() {
        let p = ConnParams::parse(
            "host=h hostaddr=10.0.0.5 port=1 user=u password=p dbname=d sslmode=require \
             sslrootcert=/ca.pem connect_timeout=1 application_name=a options=-cx=1 \
             keepalives=1 keepalives_idle=10 passfile=/pgpass target_session_attrs=read-write \
             gssencmode=disable channel_binding=prefer",
        )
        .unwrap();
        assert_eq!(p.hostaddr, Some("10.0.0.5".parse().unwrap()));
        // libpq raises timeouts below 2 s to 2 s.
        assert_eq!(p.connect_timeout(), Duration::from_secs(2));
        assert_eq!(p.keepalives_idle, Some(Duration::from_secs(10)));
        assert_eq!(p.passfile(), Some(Path::new("/pgpass")));
        assert_eq!(p.target_session_attrs, Some(TargetSessionAttrs::ReadWrite));
    }

    #[test]
    fn empty_value_means_unset() {
        let p = ConnParams::parse("host='' port=5433").unwrap();
        assert_eq!(p.host, None);
    }

    #[test]
    fn env_fills_only_what_is_unset() {
        let home = tempfile::tempdir().unwrap();
        let home_str = home.path().to_string_lossy().into_owned();
        let env = env_of(&[
            ("HOME", home_str.as_str()),
            ("PGHOST", "env.example"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpw"),
            ("PGSSLMODE", "require"),
            ("PGCONNECT_TIMEOUT", "9"),
            ("PGAPPNAME", "envapp"),
        ]);
        let p = ConnParams::parse("host=given.example user=given")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.host(), "given.example");
        assert_eq!(p.port(), 6000);
        assert_eq!(p.user(), "given");
        assert_eq!(p.dbname(), "envdb");
        assert_eq!(p.password(), Some("envpw"));
        assert_eq!(p.password_source, Some(PasswordSource::Environment));
        assert_eq!(p.sslmode(), SslMode::Require);
        assert_eq!(p.connect_timeout(), Duration::from_secs(9));
        assert_eq!(p.application_name(), "envapp");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let env = env_of(&[("PGPORT", "abc")]);
        let e = ConnParams::parse("")
            .unwrap()
            .resolve_with(&env)
            .unwrap_err();
        assert!(e.to_string().contains("PGPORT"), "{e}");
        assert_eq!(e.class(), crate::Class::Refused);
    }

    #[test]
    fn libpq_defaults() {
        let home = tempfile::tempdir().unwrap();
        let p = ConnParams::parse("")
            .unwrap()
            .resolve_with(&empty_env(home.path()))
            .unwrap();
        let expected_host = if Path::new(DEFAULT_SOCKET_DIR).is_dir() {
            DEFAULT_SOCKET_DIR
        } else {
            "localhost"
        };
        assert_eq!(p.host(), expected_host);
        assert_eq!(p.port(), 5432);
        assert_eq!(p.user(), os_user_name().unwrap());
        assert_eq!(p.dbname(), p.user());
        assert_eq!(p.sslmode(), SslMode::Prefer);
        assert_eq!(p.connect_timeout(), Duration::from_secs(5));
        assert_eq!(p.application_name(), "odoo-db");
        assert_eq!(
            p.sslrootcert, None,
            "no root.crt in HOME, so no verification"
        );
        assert_eq!(p.passfile(), Some(home.path().join(".pgpass").as_path()));
        assert!(!p.has_password());
    }

    #[test]
    fn hostaddr_alone_becomes_the_host() {
        let home = tempfile::tempdir().unwrap();
        let p = ConnParams::parse("hostaddr=127.0.0.1 user=u")
            .unwrap()
            .resolve_with(&empty_env(home.path()))
            .unwrap();
        assert_eq!(p.host(), "127.0.0.1");
    }

    #[test]
    fn default_root_certificate_from_home() {
        let home = tempfile::tempdir().unwrap();
        let env = empty_env(home.path());
        let root = home.path().join(".postgresql/root.crt");
        // verify-* names libpq's default even when it is missing (connecting says so).
        let p = ConnParams::parse("host=h user=u sslmode=verify-full")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.sslrootcert.as_deref(), Some(root.to_str().unwrap()));
        assert!(p.sslrootcert_is_default);
        // require uses it only when it exists, and then verifies like verify-ca.
        let p = ConnParams::parse("host=h user=u sslmode=require")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.sslrootcert, None);
        std::fs::create_dir_all(root.parent().unwrap()).unwrap();
        std::fs::write(&root, "").unwrap();
        let p = ConnParams::parse("host=h user=u sslmode=require")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.sslrootcert.as_deref(), Some(root.to_str().unwrap()));
    }

    #[test]
    fn sslrootcert_system_implies_verify_full() {
        let home = tempfile::tempdir().unwrap();
        let env = empty_env(home.path());
        let p = ConnParams::parse("host=h user=u sslrootcert=system")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.sslmode(), SslMode::VerifyFull);
        let e = ConnParams::parse("host=h user=u sslrootcert=system sslmode=require")
            .unwrap()
            .resolve_with(&env)
            .unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
    }

    #[test]
    fn password_from_pgpass_and_with_user_relookup() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("pgpass");
        std::fs::write(
            &file,
            "h:5432:*:admin:adminpw\nh:5432:*:monitor:monitorpw\nh:5432:otherdb:*:dbpw\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file_str = file.to_string_lossy().into_owned();
        let home_str = home.path().to_string_lossy().into_owned();
        let env = env_of(&[
            ("HOME", home_str.as_str()),
            ("PGPASSFILE", file_str.as_str()),
        ]);
        let p = ConnParams::parse("host=h user=admin dbname=postgres")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.password(), Some("adminpw"));
        assert_eq!(p.with_user("monitor").password(), Some("monitorpw"));
        assert_eq!(p.with_user("nobody").password(), None);
        assert_eq!(p.with_user("admin").password(), Some("adminpw"));
        assert_eq!(p.with_dbname("otherdb").password(), Some("adminpw"));
        assert_eq!(
            p.with_user("x").with_dbname("otherdb").password(),
            Some("dbpw")
        );

        // An explicit password is kept for the same user only, then the file decides.
        let p = ConnParams::parse("host=h user=admin dbname=postgres password=given")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.password(), Some("given"));
        assert_eq!(p.with_user("admin").password(), Some("given"));
        assert_eq!(p.with_user("monitor").password(), Some("monitorpw"));
        assert_eq!(p.with_dbname("otherdb").password(), Some("given"));

        // The passfile parameter wins over PGPASSFILE.
        let p = ConnParams::parse("host=h user=admin passfile=/nonexistent/pgpass")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.password(), None);
    }

    #[test]
    fn password_from_a_systemd_credential() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let credentials = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(".pgpass"), "*:*:*:*:from-home\n").unwrap();
        std::fs::set_permissions(
            home.path().join(".pgpass"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let credential = credentials.path().join("pgpass");
        std::fs::write(&credential, "*:*:*:odoo_db_monitor:from-credential\n").unwrap();
        // As systemd leaves it for a non-root service: 0400 plus an ACL, shown as 0440.
        std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o440)).unwrap();
        let home_str = home.path().to_string_lossy().into_owned();
        let cred_str = credentials.path().to_string_lossy().into_owned();
        let env = env_of(&[
            ("HOME", home_str.as_str()),
            ("CREDENTIALS_DIRECTORY", cred_str.as_str()),
        ]);
        let p = ConnParams::parse("host=h user=odoo_db_monitor")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        assert_eq!(p.passfile(), Some(credential.as_path()));
        assert_eq!(p.password(), Some("from-credential"));
        // Only one file is read: no fallback to ~/.pgpass for a user it lacks.
        assert_eq!(p.with_user("other").password(), None);
    }

    #[test]
    fn via_keeps_the_real_server_in_label_and_password_lookup() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("pgpass");
        std::fs::write(
            &file,
            "db1.example:5432:*:admin:pw\nmon.example:5432:*:*:no\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let home_str = home.path().to_string_lossy().into_owned();
        let file_str = file.to_string_lossy().into_owned();
        let env = env_of(&[
            ("HOME", home_str.as_str()),
            ("PGPASSFILE", file_str.as_str()),
        ]);
        let p = ConnParams::parse("postgresql://root@db1.example/postgres")
            .unwrap()
            .resolve_with(&env)
            .unwrap();
        let v = p.via("127.0.0.1".parse().unwrap(), 40123);
        assert_eq!(v.host(), "db1.example");
        assert_eq!(v.port(), 40123);
        assert_eq!(v.label(), "db1.example:5432");
        assert_eq!(v.with_user("admin").password(), Some("pw"));
        let again = v.via("127.0.0.1".parse().unwrap(), 40124);
        assert_eq!(again.label(), "db1.example:5432");
        let conninfo = v.libpq_conninfo();
        assert!(conninfo.contains("host=db1.example"), "{conninfo}");
        assert!(conninfo.contains("hostaddr=127.0.0.1"), "{conninfo}");
        assert!(conninfo.contains("port=40123"), "{conninfo}");
    }

    #[test]
    fn password_never_in_debug_display_or_conninfo() {
        let p = ConnParams::parse("postgresql://u:hunter2secret@h/db").unwrap();
        for text in [
            format!("{p:?}"),
            format!("{p:#?}"),
            format!("{p}"),
            p.libpq_conninfo(),
            format!("{:?}", p.libpq_env()),
        ] {
            assert!(!text.contains("hunter2secret"), "{text}");
        }
        assert!(format!("{p:?}").contains("<redacted>"));
    }

    #[test]
    fn conninfo_round_trips() {
        let p = ConnParams::parse(
            r"host=h port=5 user='o\'brien' dbname='my db' options='-c a=b' sslmode=verify-ca sslrootcert=/ca.pem",
        )
        .unwrap();
        let text = p.libpq_conninfo();
        assert!(text.contains(r"user='o\'brien'"), "{text}");
        let back = ConnParams::parse(&text).unwrap();
        assert_eq!(back.user(), "o'brien");
        assert_eq!(back.dbname(), "my db");
        assert_eq!(back.options.as_deref(), Some("-c a=b"));
        assert_eq!(back.sslmode(), SslMode::VerifyCa);
        let env = p.libpq_env();
        assert!(env.contains(&("PGSSLMODE", "verify-ca".to_string())));
        assert!(env.contains(&("PGSSLROOTCERT", "/ca.pem".to_string())));
    }

    #[test]
    fn sslmode_names_round_trip() {
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(mode.to_string().parse::<SslMode>().unwrap(), mode);
        }
    }

    #[test]
    fn debug_shows_every_key_and_redacts_the_password() {
        let p =
            ConnParams::parse("host=h keepalives_interval=7 keepalives_count=2 password=secret")
                .unwrap();
        let text = format!("{p:?}");
        for key in KEYS.iter().filter(|key| !key.alias) {
            assert!(
                text.contains(&format!("{}: ", key.name)),
                "{} in {text}",
                key.name
            );
        }
        assert!(text.contains("keepalives_interval: Some(\"7\")"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn emitted_conninfo_parses_back_to_itself() {
        let p = ConnParams::parse(
            "host=h port=5433 user=u dbname='my db' sslmode=require options='-c a=b' \
             keepalives=0 keepalives_idle=9 target_session_attrs=read-write password=x",
        )
        .unwrap();
        let again = ConnParams::parse(&p.libpq_conninfo()).unwrap();
        assert_eq!(again.libpq_conninfo(), p.libpq_conninfo());
        assert!(!again.has_password());
    }
}
