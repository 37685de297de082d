//! The forwards as the connections see them: each routed server's parameters carry a
//! [`Tunnel`], pgconn's [`Route`], which names the bastion in messages and, when an
//! attempt fails, tells from the master's log whether the SSH side is to blame.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pgconn::{Error, Route};

use crate::bastion::Target;
use crate::bastions::Failure;
use crate::diagnosis::{channel_failure, ssh_said};
use crate::master::MasterLink;

/// The SSH forward a server's connection parameters go through (their [`pgconn::Route`]): it
/// names the bastion in messages and explains failed attempts; or, when the bastion
/// could not be reached, the error every attempt fails with.
#[derive(Clone)]
pub struct Tunnel(Arc<TunnelInner>);

struct TunnelInner {
    bastion: String,
    route: std::result::Result<OpenRoute, Failure>,
}

struct OpenRoute {
    master: Arc<MasterLink>,
    local_port: u16,
    target: Target,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Tunnel");
        debug.field("bastion", &self.0.bastion);
        match &self.0.route {
            Ok(open) => debug
                .field("local_port", &open.local_port)
                .field("target", &open.target.label()),
            Err(failure) => debug.field("failed", &failure.message),
        };
        debug.finish()
    }
}

impl Tunnel {
    pub(crate) fn open(
        bastion: &str,
        master: Arc<MasterLink>,
        local_port: u16,
        target: Target,
    ) -> Tunnel {
        Tunnel(Arc::new(TunnelInner {
            bastion: bastion.to_string(),
            route: Ok(OpenRoute {
                master,
                local_port,
                target,
            }),
        }))
    }

    pub(crate) fn failed(bastion: &str, failure: Failure) -> Tunnel {
        Tunnel(Arc::new(TunnelInner {
            bastion: bastion.to_string(),
            route: Err(failure),
        }))
    }

    /// The bastion, `ssh://user@host:port`.
    pub fn bastion(&self) -> &str {
        &self.0.bastion
    }

    /// The local end of the forward (on 127.0.0.1); None when the bastion failed.
    pub fn local_port(&self) -> Option<u16> {
        self.0.route.as_ref().ok().map(|open| open.local_port)
    }

    /// The error every attempt fails with when the bastion could not be reached.
    pub fn setup_error(&self) -> Option<Error> {
        self.0.route.as_ref().err().map(Failure::to_error)
    }

    /// Why an attempt through this forward failed, when the SSH side is to blame: the
    /// bastion could not be reached, the master is gone, or the bastion could not open a
    /// connection to the server (its "open failed" in the master's log). None when the
    /// bastion reached the server: the attempt's own error (authentication, TLS,
    /// timeout) then stands.
    pub async fn diagnose(&self) -> Option<Error> {
        let open = match &self.0.route {
            Ok(open) => open,
            Err(failure) => return Some(failure.to_error()),
        };
        let master = &open.master;
        let alive = master.check().await;
        let log = tokio::fs::read_to_string(&master.log)
            .await
            .unwrap_or_default();
        if !alive {
            return Some(Error::failed(format!(
                "the SSH connection to bastion {} is gone{}",
                master.destination,
                ssh_said(&log, 3)
                    .map(|said| format!(" (ssh: {said})"))
                    .unwrap_or_default()
            )));
        }
        channel_failure(&log, open.local_port).map(|reason| {
            Error::failed(format!(
                "bastion {} cannot reach the database server {}: {reason}",
                master.destination,
                open.target.label()
            ))
        })
    }
}

impl Route for Tunnel {
    fn hop(&self) -> Option<String> {
        self.local_port()
            .map(|_| format!("bastion {}", self.bastion()))
    }

    fn setup_error(&self) -> Option<Error> {
        Tunnel::setup_error(self)
    }

    fn diagnose(&self) -> Pin<Box<dyn Future<Output = Option<Error>> + Send + '_>> {
        Box::pin(Tunnel::diagnose(self))
    }
}

#[cfg(test)]
mod tests {
    use pgconn::Class;

    use super::*;

    #[tokio::test]
    async fn a_failed_bastion_fails_every_attempt_with_its_error() {
        let tunnel = Tunnel::failed(
            "ssh://jump",
            Failure {
                class: Class::Failed,
                message: "bastion ssh://jump: authentication refused".to_string(),
            },
        );
        assert_eq!(tunnel.hop(), None);
        assert_eq!(tunnel.local_port(), None);
        let error = Route::setup_error(&tunnel).unwrap();
        assert_eq!(error.class(), Class::Failed);
        assert_eq!(
            error.to_string(),
            "bastion ssh://jump: authentication refused"
        );
        assert!(Route::diagnose(&tunnel).await.is_some());
    }
}
