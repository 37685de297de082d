//! TLS with libpq's `sslmode` meanings, on rustls.
//!
//! libpq's modes do not map onto "verify or not": `prefer` and `require` encrypt without
//! checking the certificate (unless a root certificate is available — then the chain is
//! checked, libpq's compatibility rule), `verify-ca` checks the chain but not the name,
//! `verify-full` checks both. rustls only knows full verification, so the weaker modes
//! get their own [`ServerCertVerifier`]s here. Even the no-verification one still checks
//! the handshake signatures: that proves the server holds the certificate's key, which
//! SCRAM channel binding (tls-server-end-point) relies on.
//!
//! rustls refuses a certificate with `CA:TRUE` as a server certificate, but PostgreSQL's
//! own documentation creates exactly that (`openssl req -new -x509` for server.crt,
//! copied to the client as root.crt). Such a certificate found verbatim in `sslrootcert`
//! is accepted as pinned, so the documented setup works as it does with libpq.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::params::SslMode;
use crate::error::{Error, Result};

/// What to check of the server's certificate.
#[derive(Debug)]
enum Check {
    /// Encrypt only (libpq's prefer/require without a root certificate).
    Nothing,
    /// The chain must lead to a trusted root; the name is not checked.
    Chain,
    /// Chain and name.
    ChainAndName,
}

/// The TLS connector for these settings, or `None` when TLS is never used (`disable`).
/// Root certificates are read now, so a missing or empty file is refused before any
/// connection is attempted.
pub(crate) fn connector(
    mode: SslMode,
    sslrootcert: Option<&str>,
    sslrootcert_is_default: bool,
) -> Result<Option<MakeRustlsConnect>> {
    let check = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Allow | SslMode::Prefer | SslMode::Require if sslrootcert.is_none() => {
            Check::Nothing
        }
        SslMode::Allow | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Check::Chain,
        SslMode::VerifyFull => Check::ChainAndName,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(CertificateVerifier::unchecked(&provider)),
        Check::Chain | Check::ChainAndName => {
            let Some(root) = sslrootcert else {
                return Err(Error::refused(format!(
                    "sslmode={mode} needs a root certificate: set sslrootcert to a PEM file \
                     of the CA that signed the server's certificate, or sslrootcert=system"
                )));
            };
            let roots = load_roots(root, sslrootcert_is_default, mode)?;
            Arc::new(CertificateVerifier::new(
                roots,
                &provider,
                matches!(check, Check::ChainAndName),
            )?)
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::failed(format!("setting up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What libpq 17+ sends; PostgreSQL 17+ refuses any other protocol name.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The trusted certificates of `sslrootcert`: a PEM file, or `system` (the OS store,
/// else the Mozilla roots bundled in webpki-roots).
fn load_roots(root: &str, is_default: bool, mode: SslMode) -> Result<Vec<CertificateDer<'static>>> {
    if root == "system" {
        let native = rustls_native_certs::load_native_certs();
        if !native.certs.is_empty() {
            return Ok(native.certs);
        }
        tracing::debug!(
            errors = ?native.errors,
            "no system root certificates found, using the bundled Mozilla roots"
        );
        return Ok(Vec::new());
    }
    let path = PathBuf::from(root);
    if !path.exists() {
        return Err(if is_default {
            Error::refused(format!(
                "sslmode={mode} needs a root certificate and the default {} does not exist: \
                 provide that file, set sslrootcert to the CA's PEM file (or sslrootcert=system), \
                 or use a weaker sslmode",
                path.display()
            ))
        } else {
            Error::refused(format!(
                "root certificate file {} (sslrootcert) does not exist",
                path.display()
            ))
        });
    }
    read_pem_certificates(&path)
}

fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::refused(format!(
                "reading root certificate file {} (sslrootcert): {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::refused(format!(
            "root certificate file {} (sslrootcert) holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// What a connection checks of the server's certificate: nothing for libpq's
/// `prefer`/`require` (it encrypts without vouching for the server), else the chain
/// against `sslrootcert`, and the host name for verify-full. The handshake's signatures
/// are checked either way.
#[derive(Debug)]
struct CertificateVerifier {
    /// None: the certificate itself is not checked.
    roots: Option<Roots>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The trusted roots of verify-ca and verify-full.
#[derive(Debug)]
struct Roots {
    webpki: Arc<WebPkiServerVerifier>,
    /// The root file's certificates as bytes, to recognise a pinned self-signed server
    /// certificate that webpki would refuse as a CA used as end entity.
    pinned: Vec<CertificateDer<'static>>,
    check_name: bool,
}

impl CertificateVerifier {
    /// Encrypts without vouching for the server.
    fn unchecked(provider: &Arc<CryptoProvider>) -> CertificateVerifier {
        CertificateVerifier {
            roots: None,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Checks the chain against `roots` (the bundled Mozilla roots when empty), and the
    /// host name when `check_name`.
    fn new(
        roots: Vec<CertificateDer<'static>>,
        provider: &Arc<CryptoProvider>,
        check_name: bool,
    ) -> Result<CertificateVerifier> {
        let mut store = RootCertStore::empty();
        if roots.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            let (added, ignored) = store.add_parsable_certificates(roots.iter().cloned());
            if added == 0 {
                return Err(Error::refused(format!(
                    "none of the {ignored} certificate(s) in sslrootcert could be used as a root"
                )));
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| Error::refused(format!("loading sslrootcert: {e}")))?;
        Ok(CertificateVerifier {
            roots: Some(Roots {
                webpki,
                pinned: roots,
                check_name,
            }),
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for CertificateVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        if roots
            .pinned
            .iter()
            .any(|root| root.as_ref() == end_entity.as_ref())
        {
            if roots.check_name {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
            }
            return Ok(ServerCertVerified::assertion());
        }
        match roots.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki checks the chain before the name, so this error means the chain
            // is good and only the name is off, which verify-ca does not care about.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !roots.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    struct Pki {
        ca: rcgen::Certificate,
        server: rcgen::Certificate,
    }

    fn pki(names: &[&str]) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let server = CertificateParams::new(names)
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        Pki { ca, server }
    }

    fn verifier(roots: Vec<CertificateDer<'static>>, check_name: bool) -> CertificateVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        CertificateVerifier::new(roots, &provider, check_name).unwrap()
    }

    fn verify(v: &CertificateVerifier, cert: &rcgen::Certificate, name: &str) -> bool {
        let name = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(cert.der(), &[], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn verify_ca_ignores_the_name_but_not_the_chain() {
        let good = pki(&["db.example"]);
        let other = pki(&["db.example"]);
        let v = verifier(vec![good.ca.der().clone()], false);
        assert!(verify(&v, &good.server, "db.example"));
        assert!(verify(&v, &good.server, "elsewhere.example"));
        assert!(verify(&v, &good.server, "10.1.2.3"));
        assert!(!verify(&v, &other.server, "db.example"));
    }

    #[test]
    fn verify_full_checks_dns_and_ip_names() {
        let good = pki(&["db.example", "10.1.2.3"]);
        let v = verifier(vec![good.ca.der().clone()], true);
        assert!(verify(&v, &good.server, "db.example"));
        assert!(verify(&v, &good.server, "10.1.2.3"));
        assert!(!verify(&v, &good.server, "elsewhere.example"));
        assert!(!verify(&v, &good.server, "10.1.2.4"));
    }

    #[test]
    fn pinned_self_signed_ca_certificate_as_in_the_postgresql_docs() {
        // `openssl req -new -x509` makes a CA:TRUE certificate that the server uses
        // directly and the client trusts as root.crt.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["db.example".to_string()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let full = verifier(vec![cert.der().clone()], true);
        assert!(verify(&full, &cert, "db.example"));
        assert!(!verify(&full, &cert, "other.example"));
        let ca_only = verifier(vec![cert.der().clone()], false);
        assert!(verify(&ca_only, &cert, "other.example"));
        let unrelated = pki(&["db.example"]);
        assert!(!verify(
            &verifier(vec![unrelated.ca.der().clone()], true),
            &cert,
            "db.example"
        ));
    }

    fn refusal(result: Result<Option<MakeRustlsConnect>>) -> Error {
        match result {
            Ok(_) => panic!("expected a refusal"),
            Err(error) => error,
        }
    }

    #[test]
    fn root_file_errors_are_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = refusal(connector(
            SslMode::VerifyFull,
            Some(missing.to_str().unwrap()),
            true,
        ));
        assert_eq!(e.class(), crate::Class::Refused);
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(e.to_string().contains("sslrootcert=system"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = refusal(connector(
            SslMode::VerifyCa,
            Some(empty.to_str().unwrap()),
            false,
        ));
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = refusal(connector(SslMode::VerifyCa, None, false));
        assert!(e.to_string().contains("needs a root certificate"), "{e}");
    }

    #[test]
    fn modes_without_verification_need_no_root() {
        assert!(connector(SslMode::Disable, None, false).unwrap().is_none());
        for mode in [SslMode::Allow, SslMode::Prefer, SslMode::Require] {
            assert!(connector(mode, None, false).unwrap().is_some());
        }
        assert!(connector(SslMode::VerifyFull, Some("system"), false)
            .unwrap()
            .is_some());
    }
}
