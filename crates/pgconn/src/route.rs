//! The way to a server when it is not reached directly: a hop (an SSH forward, say)
//! that this crate knows nothing about.
//!
//! Parameters routed through a hop connect to the hop's local end (`hostaddr`, `port`)
//! while TLS and the password file still see the real server name ([`ConnParams::via`]).
//! When an attempt fails, only the hop can tell whether it is to blame (the bastion cannot
//! reach the server, its connection is gone), so the connection asks it through this
//! trait; the crate that opens the hops implements it.
//!
//! [`ConnParams::via`]: crate::ConnParams::via

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::Error;

/// A hop on the way to a server, as the connection attempts see it.
pub trait Route: fmt::Debug + Send + Sync {
    /// How messages name the hop ("bastion ssh://jump"), when it is open; None when it
    /// could not be set up (its [`Route::setup_error`] names it then).
    fn hop(&self) -> Option<String>;

    /// The error every attempt fails with when the hop could not be set up.
    fn setup_error(&self) -> Option<Error>;

    /// Why an attempt through this hop failed, when the hop is to blame; None when the
    /// hop reached the server and the attempt's own error stands.
    fn diagnose(&self) -> Pin<Box<dyn Future<Output = Option<Error>> + Send + '_>>;
}
