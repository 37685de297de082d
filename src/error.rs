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

use std::fmt;

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

/// An odoo-db error: a class, a message, and the chain of contexts around it.
pub struct Error {
    class: Class,
    /// Outermost context first, the original message last.
    chain: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Error {
            class,
            chain: vec![message.into()],
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

    /// True when this is a PostgreSQL error with the given SQLSTATE.
    pub fn is_sqlstate(&self, code: &str) -> bool {
        self.root_message().starts_with(&format!("SQLSTATE {code}"))
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

impl std::error::Error for Error {}

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
    // Walk the source chain: tokio-postgres wraps io and TLS errors one level down.
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
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
        Error::failed(describe_pg_error(&error))
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
}
