//! Errors of connecting, typed by what the caller must do about them.
//!
//! A caller of this crate decides what to do next from the error's [`Class`] (fix the
//! input, retry, give up waiting) and, for a server's answer, from its SQLSTATE, never
//! from the message text. So the error keeps the `tokio_postgres::Error` it came from
//! (and with it the SQLSTATE), while its message is already worded for a person:
//! "connecting to db1:5432 as admin: SQLSTATE 28P01 password authentication failed".

use std::fmt;
use std::sync::Arc;

use tokio_postgres::error::SqlState;

/// What the caller must do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Bad input (a typo in a connection string, an unreadable certificate): fix it and
    /// run again; nothing was attempted.
    Refused,
    /// The attempt failed (refused login, unreachable server, broken TLS).
    Failed,
    /// The attempt did not finish within its bound (`connect_timeout`).
    TimedOut,
    /// The outcome cannot be told (a route that was never set up, say).
    Unknown,
}

/// Why an attempt failed, when the caller decides on more than the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The server asks for a password and none was found (environment, pgpass).
    PasswordMissing,
    /// The server's certificate does not name the host (`sslmode=verify-full`).
    CertificateNameMismatch,
    /// The server's certificate is not signed by a trusted CA.
    CertificateUntrusted,
}

/// A connection error: a class, a message with its contexts, and its source.
#[derive(Clone)]
pub struct Error {
    class: Class,
    /// Outermost context first, the original message last.
    chain: Vec<String>,
    cause: Option<Cause>,
    sqlstate: Option<SqlState>,
    source: Option<Arc<tokio_postgres::Error>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Error {
            class,
            chain: vec![message.into()],
            cause: None,
            sqlstate: None,
            source: None,
        }
    }

    /// Bad input: nothing was attempted.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Class::Refused, message)
    }

    /// The attempt failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Class::Failed, message)
    }

    /// The attempt ran out of time.
    pub fn timed_out(message: impl Into<String>) -> Self {
        Self::new(Class::TimedOut, message)
    }

    /// The outcome cannot be told.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(Class::Unknown, message)
    }

    /// A failed attempt worded as `message`, keeping the tokio-postgres error (and its
    /// SQLSTATE) as the source.
    pub fn from_postgres(error: tokio_postgres::Error, message: impl Into<String>) -> Self {
        let mut this = Self::failed(message);
        this.sqlstate = error.code().cloned();
        this.source = Some(Arc::new(error));
        this
    }

    pub(crate) fn with_cause(mut self, cause: Cause) -> Self {
        self.cause = Some(cause);
        self
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// What went wrong, when it is more than the class says.
    pub fn cause(&self) -> Option<Cause> {
        self.cause
    }

    /// The server's SQLSTATE, when the server answered with an error.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        self.sqlstate.as_ref()
    }

    /// True when the server answered with this SQLSTATE.
    pub fn is_sqlstate(&self, code: &SqlState) -> bool {
        self.sqlstate.as_ref() == Some(code)
    }

    /// The outermost context first, the original message last.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// The tokio-postgres error this one came from.
    pub fn postgres_source(&self) -> Option<&tokio_postgres::Error> {
        self.source.as_deref()
    }

    /// Wrap the error in one more layer of context, keeping its class and source.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.chain.insert(0, context.into());
        self
    }

    /// The innermost message, without the contexts around it.
    pub fn root_message(&self) -> &str {
        self.chain.last().map(String::as_str).unwrap_or("")
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

/// A PostgreSQL error shows its SQLSTATE, message, detail and hint, never "db error".
pub fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("SQLSTATE {} {}", db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        return text;
    }
    if error.is_closed() {
        return "the server closed the connection".to_string();
    }
    // tokio-postgres wraps io and TLS errors one level down.
    describe_error_chain(error)
}

/// An error's message followed by those of its sources, each once (a library that
/// says "db error" or "connect failed" puts the words that matter one level down):
/// "error connecting to server: Connection refused (os error 111)". Shared with the
/// crates built beside this one (the SSH tunnel, the sandbox) so that every error
/// reads the same way.
pub fn describe_error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        let message = describe_pg_error(&error);
        Error::from_postgres(error, message)
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::failed(error.to_string())
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
        let error = Error::timed_out("after 5s").context("connecting to db1:5432");
        assert_eq!(error.class(), Class::TimedOut);
        assert_eq!(error.to_string(), "connecting to db1:5432: after 5s");
        assert_eq!(error.root_message(), "after 5s");
        assert!(error.sqlstate().is_none());
    }

    #[test]
    fn an_error_chain_reads_each_source_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error, &'static str);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.1)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            describe_error_chain(&Outer(refused(), "connect failed")),
            "connect failed: refused"
        );
        // A source already in the message is not repeated.
        assert_eq!(
            describe_error_chain(&Outer(refused(), "connect failed: refused")),
            "connect failed: refused"
        );
    }
}
