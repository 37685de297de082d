//! The errors of pgsandbox, typed by what the caller must do about them.
//!
//! A **refused** error (PostgreSQL not installed, a port taken, a directory not empty)
//! changed nothing and asks for other input; a **failed** one broke while running. The
//! class is what a command built on this crate maps to its exit code; the message
//! carries its context as a chain ("starting the primary server (port 5433): pg_ctl
//! exit status: 1: …") and the original error stays reachable as the source.

use std::fmt;

/// What the caller must do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Input or the machine said no (nothing installed, port taken); nothing changed.
    Refused,
    /// Broke while running (a tool failed, a server did not come up).
    Failed,
}

/// A pgsandbox error: its class, the chain of contexts, and the error it came from.
pub struct Error {
    class: Class,
    /// Outermost context first, the original message last.
    chain: Vec<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Bad input or a missing prerequisite: nothing was changed.
    pub fn refused(message: impl Into<String>) -> Self {
        Error {
            class: Class::Refused,
            chain: vec![message.into()],
            source: None,
        }
    }

    /// Broke while running.
    pub fn failed(message: impl Into<String>) -> Self {
        Error {
            class: Class::Failed,
            chain: vec![message.into()],
            source: None,
        }
    }

    pub fn class(&self) -> Class {
        self.class
    }

    /// Wraps the error in one more layer of context, keeping its class and source.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.chain.insert(0, context.into());
        self
    }

    /// A failed error whose message is `source`'s, down its whole source chain
    /// (tokio-postgres says "db error" and puts the server's message one level down).
    fn from_source(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error {
            class: Class::Failed,
            chain: vec![pgconn::describe_error_chain(&source)],
            source: Some(Box::new(source)),
        }
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
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::from_source(error)
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::from_source(error)
    }
}

/// A refusal of the file rules stays a refusal, with the same message.
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
    fn context_keeps_class_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Error::from(io).context("reading harness.toml");
        assert_eq!(error.class(), Class::Failed);
        assert_eq!(error.to_string(), "reading harness.toml: no such file");
        let source = std::error::Error::source(&error).expect("the io error is kept");
        assert_eq!(source.to_string(), "no such file");
        assert_eq!(Error::refused("port taken").class(), Class::Refused);
    }
}
