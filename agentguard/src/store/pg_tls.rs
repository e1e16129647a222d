//! TLS for the PostgreSQL store: libpq's `sslmode` and `sslrootcert` read out of the connection string, and a rustls
//! client (ring provider) that does what the mode says.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// How a connection is protected, from `sslmode` (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plain TCP: `sslmode=disable`, and the default when `sslmode` is absent.
    Disable,
    /// TLS if the server offers it, plain otherwise; the certificate is not checked (`prefer`, and `allow`).
    Prefer,
    /// TLS or no connection; the certificate is not checked unless `sslrootcert` is given (then as `verify-ca`).
    Require,
    /// TLS; the certificate must chain to a trusted root, whatever name it carries.
    VerifyCa,
    /// TLS; the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "allow" | "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => {
                return Err(StoreError::new(format!(
                    "sslmode={other:?} is not a mode: write disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// libpq's name of the mode.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the connection string asked for, with `sslmode` and `sslrootcert` taken out (tokio-postgres knows neither
/// `verify-*` nor `sslrootcert`).
pub(crate) struct TlsSettings {
    /// The connection string for tokio-postgres, without the TLS options.
    pub(crate) conn: String,
    pub(crate) mode: TlsMode,
    pub(crate) root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query or a `key=value` connection string.
pub(crate) fn split_tls(conn: &str) -> Result<TlsSettings, StoreError> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "sslmode" => mode = Some(TlsMode::parse(value)?),
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let lower = conn.to_ascii_lowercase();
    let rest = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        match conn.split_once('?') {
            Some((base, query)) => {
                let mut kept = Vec::new();
                for kv in query.split('&') {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    if !take(k, &percent_decode(v))? {
                        kept.push(kv);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => conn.to_owned(),
        }
    } else {
        let mut kept = Vec::new();
        for token in conn.split_whitespace() {
            let (k, v) = token.split_once('=').unwrap_or((token, ""));
            if !take(k.trim(), v.trim_matches('\'').trim())? {
                kept.push(token);
            }
        }
        kept.join(" ")
    };
    Ok(TlsSettings {
        conn: rest,
        mode: mode.unwrap_or(TlsMode::Disable),
        root_cert,
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(Ok(b)) = s.get(i + 1..i + 3).map(|hex| u8::from_str_radix(hex, 16)) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TlsSettings {
    /// tokio-postgres's mode: the `verify-*` modes are `require` there, with the checking done by our verifier.
    pub(crate) fn ssl_mode(&self) -> SslMode {
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// The rustls connector for this mode. Reads `sslrootcert` now, so a missing or empty file is an error at once.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::with_source("postgres store: cannot set up TLS", e))?;
        let verify = match (self.mode, &self.root_cert) {
            (TlsMode::Disable | TlsMode::Prefer, _) | (TlsMode::Require, None) => None,
            (TlsMode::Require | TlsMode::VerifyCa, _) => Some(false),
            (TlsMode::VerifyFull, _) => Some(true),
        };
        let config = match verify {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            Some(check_name) => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| StoreError::with_source("postgres store: cannot set up TLS", e))?;
                if check_name {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    /// The trusted roots: the `sslrootcert` file, or with none (or `sslrootcert=system`) the system's store.
    fn roots(&self) -> Result<RootCertStore, StoreError> {
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref() {
            Some(path) if path.as_os_str() != "system" => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        StoreError::new(format!(
                            "postgres store: cannot read the CA certificates in sslrootcert={}: {e}",
                            path.display()
                        ))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(StoreError::new(format!(
                        "postgres store: sslrootcert={} holds no usable CA certificate (a PEM file with \
                         -----BEGIN CERTIFICATE----- blocks is expected)",
                        path.display()
                    )));
                }
            }
            _ => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(StoreError::new(format!(
                        "postgres store: sslmode={} without sslrootcert uses the system's CA certificates, and none \
                         were found: give sslrootcert=PATH (the CA that signed the server's certificate)",
                        self.mode
                    )));
                }
            }
        }
        Ok(roots)
    }
}

/// `prefer` and `require` without a root: encrypts, checks the handshake's signatures, trusts any certificate
/// (libpq does the same; it protects from eavesdroppers, not from a man in the middle).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check of the chain, but a certificate for another name is accepted.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked only after the chain verified, so this error means: trusted, but for another name.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_urls_and_key_value_strings() {
        let s = split_tls("postgres://u:pw@h/db?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Ftmp%2Fca.pem")
            .unwrap();
        assert_eq!(s.conn, "postgres://u:pw@h/db?connect_timeout=3");
        assert_eq!(s.mode, TlsMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(std::path::Path::new("/tmp/ca.pem")));
        let s = split_tls("postgres://u@h/db").unwrap();
        assert_eq!((s.conn.as_str(), s.mode), ("postgres://u@h/db", TlsMode::Disable));
        let s = split_tls("host=h user=u sslmode=require").unwrap();
        assert_eq!((s.conn.as_str(), s.mode), ("host=h user=u", TlsMode::Require));
        let e = split_tls("postgres://h/db?sslmode=verify").err().unwrap().to_string();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn a_missing_root_certificate_file_is_named() {
        let s = split_tls("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap();
        let e = s.connector().err().unwrap().to_string();
        assert!(e.contains("sslrootcert=/nonexistent/ca.pem"), "{e}");
    }
}
