//! Who the bastions are: a bastion and how to log in to it, and where a server is as
//! seen from the bastion. Kept apart so that the master, the forwards and the messages
//! agree on both.

use std::path::{Path, PathBuf};

use openssh::Socket;
use pgconn::ConnParams;

/// One bastion and how to log in: clusters with the same settings share one master.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bastion {
    /// `ssh://user@host:port`, as given.
    pub(crate) destination: String,
    pub(crate) identity: Option<PathBuf>,
    pub(crate) known_hosts: Option<PathBuf>,
    pub(crate) control_dir: Option<PathBuf>,
}

impl Bastion {
    /// A bastion (`ssh://user@host:port`), the key to log in with, the known_hosts file
    /// to check its host key against, and where to put the control sockets. Under systemd
    /// the key and known_hosts may come as credentials (`LoadCredential=ssh_identity:…`,
    /// `ssh_known_hosts:…`) when the caller names none.
    pub fn new(
        destination: String,
        identity: Option<PathBuf>,
        known_hosts: Option<PathBuf>,
        control_dir: Option<PathBuf>,
    ) -> Bastion {
        Bastion {
            destination,
            identity: identity.or_else(|| credential("ssh_identity")),
            known_hosts: known_hosts.or_else(|| credential("ssh_known_hosts")),
            control_dir,
        }
    }

    /// `ssh://user@host:port`, as given.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// (user, host, port) of the destination, for hints in messages.
    pub(crate) fn parts(&self) -> (Option<&str>, &str, u16) {
        let rest = self
            .destination
            .strip_prefix("ssh://")
            .unwrap_or(&self.destination);
        let (user, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, rest),
        };
        match rest.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => {
                (user, host, port.parse().unwrap_or(22))
            }
            _ => (user, rest, 22),
        }
    }

    pub(crate) fn known_hosts_label(&self) -> String {
        match &self.known_hosts {
            Some(path) => path.display().to_string(),
            None => "~/.ssh/known_hosts".to_string(),
        }
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>` when systemd passed that credential.
fn credential(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = PathBuf::from(dir).join(name);
    path.is_file().then_some(path)
}

/// Where a server is, seen from the bastion: what libpq would connect to (`hostaddr`
/// when given, else `host`), or a Unix socket on the bastion's machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl Target {
    /// The target of resolved parameters that were not redirected yet.
    pub(crate) fn of(params: &ConnParams) -> Target {
        if let Some(addr) = params.hostaddr() {
            Target::Tcp {
                host: addr.to_string(),
                port: params.port(),
            }
        } else if params.is_unix_socket() {
            Target::Unix(Path::new(params.host()).join(format!(".s.PGSQL.{}", params.port())))
        } else {
            Target::Tcp {
                host: params.host().to_string(),
                port: params.port(),
            }
        }
    }

    pub(crate) fn socket(&self) -> Socket<'_> {
        match self {
            Target::Tcp { host, port } => Socket::new(host.as_str(), *port),
            Target::Unix(path) => Socket::from(path.as_path()),
        }
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Target::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Unix(path) => path.display().to_string(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use pgconn::ConnParams;

    use super::*;

    pub(crate) fn spec() -> Bastion {
        Bastion {
            destination: "ssh://admin@bastion.example:2222".to_string(),
            identity: Some(PathBuf::from("/etc/odoo-db/id_ed25519")),
            known_hosts: Some(PathBuf::from("/etc/odoo-db/known_hosts")),
            control_dir: None,
        }
    }

    #[test]
    fn destination_parts() {
        assert_eq!(spec().parts(), (Some("admin"), "bastion.example", 2222));
        let bare = Bastion {
            destination: "ssh://bastion".to_string(),
            ..spec()
        };
        assert_eq!(bare.parts(), (None, "bastion", 22));
    }

    #[test]
    fn targets_are_what_libpq_would_connect_to() {
        let p = ConnParams::parse("host=db1.example port=5433 user=u").unwrap();
        assert_eq!(Target::of(&p).label(), "db1.example:5433");
        let p = ConnParams::parse("host=db1.example hostaddr=10.0.0.5 user=u").unwrap();
        assert_eq!(Target::of(&p).label(), "10.0.0.5:5432");
        let p = ConnParams::parse("host=/var/run/postgresql port=5432 user=u").unwrap();
        assert_eq!(
            Target::of(&p),
            Target::Unix(PathBuf::from("/var/run/postgresql/.s.PGSQL.5432"))
        );
        let p = ConnParams::parse("host=::1 user=u").unwrap();
        assert_eq!(Target::of(&p).label(), "[::1]:5432");
    }
}
