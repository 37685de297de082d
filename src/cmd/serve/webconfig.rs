//! Who may talk to serve, and over what: the web config file Prometheus exporters read
//! (`[serve] web_config`, the exporter-toolkit format), so that whoever runs
//! node_exporter or postgres_exporter behind TLS and basic authentication does the same
//! here:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/odoo-db/serve.crt
//!   key_file: /etc/odoo-db/serve.key
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt (htpasswd -nBC 10 prometheus)
//! ```
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), so a password that passed
//! is remembered, as a SHA-256 of user, password and hash, for later scrapes.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfig {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct TlsServerConfig {
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
}

/// TLS and the users, as loaded; the default is plain HTTP, open to whoever can connect.
#[derive(Default)]
pub(crate) struct Access {
    pub tls: Option<TlsAcceptor>,
    users: BTreeMap<String, String>,
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl Access {
    /// Reads the web config; refused, naming the file and what is wrong, when it does not
    /// load (serve does not start, a reload keeps the previous one).
    pub(crate) fn load(path: &Path) -> Result<Arc<Access>> {
        let refuse =
            |what: String| Error::refused(format!("[serve] web_config {}: {what}", path.display()));
        let text =
            std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
        let config: WebConfig =
            serde_yaml_ng::from_str(&text).map_err(|e| refuse(e.to_string()))?;
        for (user, hash) in &config.basic_auth_users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(refuse(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                )));
            }
        }
        let tls = match &config.tls_server_config {
            Some(tls) => Some(acceptor(tls).map_err(refuse)?),
            None => None,
        };
        Ok(Arc::new(Access {
            tls,
            users: config.basic_auth_users,
            passed: Mutex::new(HashSet::new()),
        }))
    }

    /// None when no users are configured or the request carries one's password; else
    /// the 401 to send.
    pub(crate) fn refusal(&self, headers: &HeaderMap) -> Option<Response<Full<Bytes>>> {
        if self.users.is_empty() || self.credentials_pass(headers) {
            return None;
        }
        let mut response = Response::new(Full::new(Bytes::from_static(b"401 Unauthorized\n")));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"odoo-db serve\""),
        );
        Some(response)
    }

    fn credentials_pass(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let mut passed = self.passed.lock().unwrap_or_else(|p| p.into_inner());
        if passed.contains(&key) {
            return true;
        }
        if bcrypt::verify(&password, hash).unwrap_or(false) {
            passed.insert(key);
            return true;
        }
        false
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn acceptor(tls: &TlsServerConfig) -> std::result::Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tls_server_config.cert_file {}: {e}",
                tls.cert_file.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", tls.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!("tls_server_config: the certificate and key do not go together: {e}")
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYTpzcw=="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("user".to_string(), "pa:ss".to_string()))
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(basic_credentials(&headers), None);
    }
}
