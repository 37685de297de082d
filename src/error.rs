//! Errors typed by what the caller must do about them.
//!
//! Every failure in odoo-db is one of three classes, because the exit code (and so
//! what a script or a DBA does next) depends on the class, not on where it happened:
//!
//! - **refused**: bad input, a safety rule, a usage error. Nothing was changed; fix the
//!   input and run again. Exit 2 (UNKNOWN, 3, for health and audit).
//! - **failed**: something broke while running (server error, unreachable host).
//!   Exit 1. Running again after fixing the cause is expected to work.
//! - **unknown**: odoo-db could not even tell (a deadline hit, an impossible state).
//!   Exit 1 (UNKNOWN, 3, for health and audit).
//!
//! Messages carry their context as a chain ("provisioning customer x: creating role y:
//! SQLSTATE 42710: role exists"), so what the user reads says where and what to do.
//! They keep their source and the server's SQLSTATE: decisions (retry, refuse, report as
//! setup) look at the code, never at the message text.

use std::fmt;
use std::sync::Arc;

use tokio_postgres::error::SqlState;

/// What the caller must do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Input or a safety rule said no; nothing was changed.
    Refused,
    /// The work failed while running; state may need a rerun to complete.
    Failed,
    /// odoo-db could not determine the outcome.
    Unknown,
}

/// An odoo-db error: a class, a message, the chain of contexts around it, and the
/// error it came from.
pub struct Error {
    class: Class,
    /// Outermost context first, the original message last.
    chain: Vec<String>,
    /// The server's SQLSTATE, when PostgreSQL answered with an error.
    sqlstate: Option<SqlState>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Error {
            class,
            chain: vec![message.into()],
            sqlstate: None,
            source: None,
        }
    }

    /// Bad input or a safety rule: nothing was changed.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Class::Refused, message)
    }

    /// Broke while running.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Class::Failed, message)
    }

    /// The outcome cannot be told.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(Class::Unknown, message)
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// Wrap the error in one more layer of context, keeping its class.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.chain.insert(0, context.into());
        self
    }

    /// The innermost message, without the contexts around it.
    pub fn root_message(&self) -> &str {
        self.chain.last().map(String::as_str).unwrap_or("")
    }

    /// The server's SQLSTATE, when PostgreSQL answered with an error.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        self.sqlstate.as_ref()
    }

    /// The same error, marked as the server's answer with SQLSTATE `code` (for errors
    /// built from a server's answer by hand).
    pub fn with_sqlstate(mut self, code: SqlState) -> Self {
        self.sqlstate = Some(code);
        self
    }

    /// True when this is a PostgreSQL error with the given SQLSTATE.
    pub fn is_sqlstate(&self, code: &SqlState) -> bool {
        self.sqlstate.as_ref() == Some(code)
    }

    /// What a failed connection attempt's error says beyond its class (a missing
    /// password, a rejected certificate), when this error came from one.
    pub fn connect_cause(&self) -> Option<pgconn::Cause> {
        self.source
            .as_deref()
            .and_then(|source| source.downcast_ref::<pgconn::Error>())
            .and_then(pgconn::Error::cause)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.chain.join(": "))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.class, self)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

pub use pgconn::describe_pg_error;

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        let mut this = Error::failed(describe_pg_error(&error));
        this.sqlstate = error.code().cloned();
        this.source = Some(Arc::new(error));
        this
    }
}

/// A connection error keeps its class (a timeout is a failure to odoo-db), its contexts,
/// its SQLSTATE and itself as the source.
impl From<pgconn::Error> for Error {
    fn from(error: pgconn::Error) -> Self {
        let class = match error.class() {
            pgconn::Class::Refused => Class::Refused,
            pgconn::Class::Failed | pgconn::Class::TimedOut => Class::Failed,
            pgconn::Class::Unknown => Class::Unknown,
        };
        Error {
            class,
            chain: error.chain().to_vec(),
            sqlstate: error.sqlstate().cloned(),
            source: Some(Arc::new(error)),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::failed(error.to_string())
    }
}

/// A throwaway server's error keeps its class: a refusal of the sandbox (port taken,
/// PostgreSQL missing) is a refusal of the command.
impl From<pgsandbox::Error> for Error {
    fn from(error: pgsandbox::Error) -> Self {
        match error.class() {
            pgsandbox::Class::Refused => Error::refused(error.to_string()),
            pgsandbox::Class::Failed => Error::failed(error.to_string()),
        }
    }
}

/// A refusal of the file rules (a directory others can write) is a refusal of the
/// command, with the same message.
impl From<safefs::Error> for Error {
    fn from(error: safefs::Error) -> Self {
        match error.class() {
            safefs::Class::Refused => Error::refused(error.to_string()),
            safefs::Class::Failed => Error::failed(error.to_string()),
        }
    }
}

/// `.context("…")` on any result whose error converts into [`Error`].
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_class_and_reads_outside_in() {
        let error = Error::refused("name too long").context("provisioning customer acme");
        assert_eq!(error.class(), Class::Refused);
        assert_eq!(
            error.to_string(),
            "provisioning customer acme: name too long"
        );
        assert_eq!(error.root_message(), "name too long");
    }

    #[test]
    fn connection_errors_keep_class_contexts_and_cause() {
        let timed_out: Error = pgconn::Error::timed_out("after 5s")
            .context("connecting to db1:5432")
            .into();
        assert_eq!(timed_out.class(), Class::Failed);
        assert_eq!(timed_out.to_string(), "connecting to db1:5432: after 5s");
        assert!(timed_out.sqlstate().is_none());
        assert!(timed_out.connect_cause().is_none());
        assert!(std::error::Error::source(&timed_out).is_some());
        let refused: Error = pgconn::Error::refused("invalid port").into();
        assert_eq!(refused.class(), Class::Refused);
    }
}
