//! TLS for PostgreSQL connections, asked for as libpq users already do, in
//! the URL: `sslmode` (`disable`, `allow`, `prefer` (the default),
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file of
//! the CA that signed the server's certificate, or `system` for the
//! system's trust store). Managed servers such as RDS for PostgreSQL 15+
//! refuse connections without TLS.
//!
//! As in libpq, `prefer` and `require` encrypt without checking who the
//! server is (unless `require` is given a root certificate, which makes it
//! `verify-ca`); `verify-ca` checks the certificate chain and `verify-full`
//! the server's name too. rustls (with ring, as the AWS clients use) does
//! the TLS; tokio-postgres only knows `disable`, `prefer` and `require`, so
//! the other modes and `sslrootcert` are read here and taken out of the URL.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{Error as TlsError, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How much the connection checks, in libpq's terms; the verifying modes
/// carry the certificate authorities they trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it (`allow` and `prefer`), unverified.
    Prefer,
    /// TLS or no connection, unverified.
    Require,
    /// TLS with the certificate chain checked, not the server's name.
    VerifyCa(TrustedRoots),
    /// TLS with the chain and the server's name checked.
    VerifyFull(TrustedRoots),
}

/// A TLS setting of the PostgreSQL URL that cannot be used; the message
/// says what to write instead.
#[derive(Debug, thiserror::Error)]
pub enum TlsSettingError {
    #[error("sslrootcert is empty; write a PEM file's path or \"system\"")]
    EmptyRootCert,
    #[error(
        "sslmode={mode} needs sslrootcert: the path of a PEM file of the server's CA \
         (for RDS, the region's bundle from truststore.pki.rds.amazonaws.com, \
         packaged with the function) or \"system\" for the system's trust store"
    )]
    VerifyingWithoutRoots { mode: String },
    #[error("sslmode {0:?} is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    UnknownMode(String),
    #[error("sslrootcert=system: no certificate found in the system's trust store ({errors})")]
    NoSystemRoots { errors: String },
    #[error("sslrootcert {path:?} cannot be read: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("sslrootcert {path:?} is not PEM: {source}")]
    NotPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("sslrootcert {path:?} holds no usable CA certificate")]
    NoUsableRoot { path: PathBuf },
    #[error("cannot use the root certificates: {0}")]
    Roots(#[source] rustls::client::VerifierBuilderError),
    #[error("cannot set up TLS: {0}")]
    Protocols(#[source] rustls::Error),
}

/// Which certificate authorities a verifying mode trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedRoots {
    /// `sslrootcert=system`: the system's trust store.
    System,
    /// `sslrootcert=<file>`: the certificates of a PEM file.
    File(PathBuf),
}

impl TlsMode {
    /// Takes `sslmode` and `sslrootcert` out of `url`; returns the rest of
    /// the URL (for tokio-postgres) and the mode they ask for.
    pub fn split_from(url: &str) -> Result<(String, TlsMode), TlsSettingError> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut mode_text = None;
        let mut roots = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => mode_text = Some(url_decode(value)),
                "sslrootcert" => {
                    let value = url_decode(value);
                    roots = Some(match value.as_str() {
                        "" => return Err(TlsSettingError::EmptyRootCert),
                        "system" => TrustedRoots::System,
                        path => TrustedRoots::File(PathBuf::from(path)),
                    });
                }
                _ => kept.push(pair),
            }
        }
        let mode = match (mode_text.as_deref(), roots) {
            (Some("disable"), _) => TlsMode::Disable,
            (None | Some("allow" | "prefer"), _) => TlsMode::Prefer,
            (Some("require"), None) => TlsMode::Require,
            // libpq: `require` with a root certificate checks the chain.
            (Some("require" | "verify-ca"), Some(roots)) => TlsMode::VerifyCa(roots),
            (Some("verify-full"), Some(roots)) => TlsMode::VerifyFull(roots),
            (Some(verifying @ ("verify-ca" | "verify-full")), None) => {
                return Err(TlsSettingError::VerifyingWithoutRoots {
                    mode: verifying.to_owned(),
                })
            }
            (Some(other), _) => return Err(TlsSettingError::UnknownMode(other.to_owned())),
        };
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((rest, mode))
    }

    /// What tokio-postgres is told: whether to ask for TLS and insist on it.
    pub fn ssl_mode(&self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa(_) | TlsMode::VerifyFull(_) => SslMode::Require,
        }
    }

    /// The connector for this mode; reads the root certificates once (at
    /// cold start).
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsSettingError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = match self {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => None,
            TlsMode::VerifyCa(roots) | TlsMode::VerifyFull(roots) => {
                let roots = load_roots(roots)?;
                let chain =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(TlsSettingError::Roots)?;
                Some(chain)
            }
        };
        let verifier = Arc::new(LibpqVerifier {
            provider: provider.clone(),
            chain,
            check_name: matches!(self, TlsMode::VerifyFull(_)),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsSettingError::Protocols)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // The connector and its stream are tokio-postgres-rustls's.
        Ok(MakeRustlsConnect::new(config))
    }
}

fn load_roots(roots: &TrustedRoots) -> Result<RootCertStore, TlsSettingError> {
    let mut store = RootCertStore::empty();
    match roots {
        TrustedRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsSettingError::NoSystemRoots {
                    errors: format!("{:?}", found.errors),
                });
            }
        }
        TrustedRoots::File(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|source| TlsSettingError::Unreadable {
                    path: path.clone(),
                    source,
                })?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| TlsSettingError::NotPem {
                    path: path.clone(),
                    source,
                })?;
            let (added, _) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(TlsSettingError::NoUsableRoot { path: path.clone() });
            }
        }
    }
    Ok(store)
}

/// What libpq checks of the server's certificate in each mode. Without a
/// chain to check (`prefer`, `require`) the certificate is taken as it
/// is, but the handshake's signatures are still checked: the session is
/// encrypted to whoever holds the certificate's key. `verify-ca` checks
/// the chain and forgives a name the certificate was not issued for;
/// `verify-full` forgives nothing.
#[derive(Debug)]
struct LibpqVerifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `%XX` escapes decoded, as tokio-postgres reads URL values (`+` stays).
fn url_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mode, or the error's message.
    fn split(url: &str) -> Result<(String, TlsMode), String> {
        TlsMode::split_from(url).map_err(|error| error.to_string())
    }

    #[test]
    fn reads_libpq_modes_and_leaves_the_rest_of_the_url_to_tokio_postgres() {
        let (rest, mode) = split("postgres://u:p@db:5432/iot").unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/iot");
        assert_eq!(mode, TlsMode::Prefer);
        let (rest, mode) = split(
            "postgres://u@db/iot?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Fvar%2Ftask%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u@db/iot?connect_timeout=5&application_name=x"
        );
        assert_eq!(
            mode,
            TlsMode::VerifyFull(TrustedRoots::File("/var/task/ca.pem".into()))
        );
        for (query, mode) in [
            ("sslmode=disable", TlsMode::Disable),
            ("sslmode=allow", TlsMode::Prefer),
            ("sslmode=require", TlsMode::Require),
            (
                "sslmode=require&sslrootcert=system",
                TlsMode::VerifyCa(TrustedRoots::System),
            ),
            (
                "sslmode=verify-ca&sslrootcert=system",
                TlsMode::VerifyCa(TrustedRoots::System),
            ),
        ] {
            let (rest, parsed) = split(&format!("postgres://db/x?{query}")).unwrap();
            assert_eq!(
                (rest.as_str(), parsed),
                ("postgres://db/x", mode),
                "{query}"
            );
        }
    }

    #[test]
    fn a_mistake_names_the_setting_and_what_to_write() {
        let error = split("postgres://db/x?sslmode=verify").unwrap_err();
        assert!(
            error.contains("\"verify\"") && error.contains("verify-full"),
            "{error}"
        );
        let error = split("postgres://db/x?sslmode=verify-full").unwrap_err();
        assert!(
            error.contains("sslrootcert") && error.contains("system"),
            "{error}"
        );
        let error = split("postgres://db/x?sslmode=require&sslrootcert=").unwrap_err();
        assert!(error.contains("sslrootcert is empty"), "{error}");
        let missing = TlsMode::VerifyCa(TrustedRoots::File("/nonexistent/ca.pem".into()));
        let Err(error) = missing.connector() else {
            panic!("a missing root certificate file is refused");
        };
        let error = error.to_string();
        assert!(
            error.contains("/nonexistent/ca.pem") && error.contains("cannot be read"),
            "{error}"
        );
    }
}
