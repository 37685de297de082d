//! `--statsd HOST:PORT`: gauges sent to the platform's metrics system (health's, named
//! by `crate::health::output::statsd_gauges`).
//!
//! StatsD over UDP is fire-and-forget by design, which is what a health check wants: a
//! metrics server that is down must not make the check fail or wait. The `cadence` crate
//! formats the gauges (`odoo_db.production.db2.lag_bytes:0|g`), one datagram each, so any
//! StatsD server or a plain UDP socket reads them.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use cadence::{Gauged, StatsdClient, UdpMetricSink};

use crate::error::{Error, Result};

/// Every gauge name starts with this (`odoo_db.status`, `odoo_db.<cluster>.…`).
const PREFIX: &str = "odoo_db";

/// A checked `HOST:PORT`.
#[derive(Clone, Debug)]
pub struct Target {
    host: String,
    port: u16,
}

impl Target {
    /// Refused (UNKNOWN) unless it reads `HOST:PORT`; `[::1]:8125` for IPv6.
    pub fn parse(text: &str) -> Result<Target> {
        let refuse = || {
            Error::refused(format!(
                "--statsd {text:?}: expected HOST:PORT, e.g. 127.0.0.1:8125 or [::1]:8125"
            ))
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(refuse)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().map_err(|_| refuse())?;
        if host.is_empty() || port == 0 {
            return Err(refuse());
        }
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }
}

/// A name segment without StatsD's separators (`.`, `:`, `|`, `@`) or spaces:
/// `10.0.0.2:5432` becomes `10_0_0_2_5432`.
pub(crate) fn segment(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sends the gauges; returns how many. Resolving the host is bounded (2 s).
pub async fn send(target: &Target, gauges: &[(String, f64)]) -> Result<usize> {
    let what = format!("sending statsd gauges to {}:{}", target.host, target.port);
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let address: SocketAddr = tokio::time::timeout(Duration::from_secs(2), lookup)
        .await
        .map_err(|_| Error::failed(format!("{what}: resolving the host took longer than 2 s")))?
        .map_err(|e| Error::failed(format!("{what}: {e}")))?
        .next()
        .ok_or_else(|| Error::failed(format!("{what}: the host has no address")))?;
    let local: SocketAddr = if address.is_ipv6() {
        "[::]:0".parse().expect("an address")
    } else {
        "0.0.0.0:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(local).map_err(|e| Error::failed(format!("{what}: {e}")))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::failed(format!("{what}: {e}")))?;
    let sink =
        UdpMetricSink::from(address, socket).map_err(|e| Error::failed(format!("{what}: {e}")))?;
    let client = StatsdClient::from_sink(PREFIX, sink);
    for (name, value) in gauges {
        client
            .gauge(name, *value)
            .map_err(|e| Error::failed(format!("{what}: {name}: {e}")))?;
    }
    Ok(gauges.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_host_and_port() {
        assert!(Target::parse("127.0.0.1:8125").is_ok());
        let v6 = Target::parse("[::1]:8125").unwrap();
        assert_eq!(v6.host, "::1");
        assert!(Target::parse("statsd").is_err());
        assert!(Target::parse("statsd:port").is_err());
        assert!(Target::parse(":8125").is_err());
    }

    #[test]
    fn segments_drop_separators() {
        assert_eq!(segment("10.0.0.2:5432"), "10_0_0_2_5432");
        assert_eq!(segment("db-2"), "db-2");
    }
}
