//! rustls configuration: built once, on the first TLS connection.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The extra CA bundle could not be used. Names the file, not its content.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsConfigError {
    /// The file cannot be read.
    #[error("DB_CA_BUNDLE {path:?} cannot be read: {reason}")]
    Unreadable {
        /// The bundle's path.
        path: PathBuf,
        /// Why it cannot be read.
        reason: String,
    },
    /// The file holds no certificate.
    #[error("DB_CA_BUNDLE {path:?} holds no PEM certificate")]
    Empty {
        /// The bundle's path.
        path: PathBuf,
    },
    /// A certificate of the file cannot be a trusted root.
    #[error("DB_CA_BUNDLE {path:?}: certificate {index} is not usable as a root: {reason}")]
    BadCertificate {
        /// The bundle's path.
        path: PathBuf,
        /// The certificate's position in the file, from 0.
        index: usize,
        /// Why it is not usable.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Trusted roots: the Mozilla set (webpki-roots) plus an optional PEM bundle.
pub struct TlsRoots {
    ca_bundle: Option<PathBuf>,
    config: OnceLock<Result<MakeRustlsConnect, TlsConfigError>>,
}

impl TlsRoots {
    /// The Mozilla roots plus those of `ca_bundle` (read on first use).
    pub fn new(ca_bundle: Option<PathBuf>) -> Self {
        TlsRoots {
            ca_bundle,
            config: OnceLock::new(),
        }
    }

    /// The connector, built on first use and reused afterwards.
    pub fn connector(&self) -> Result<MakeRustlsConnect, TlsConfigError> {
        self.config
            .get_or_init(|| build(self.ca_bundle.as_ref()))
            .clone()
    }
}

fn build(ca_bundle: Option<&PathBuf>) -> Result<MakeRustlsConnect, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_bundle {
        let pem = std::fs::read(path).map_err(|e| TlsConfigError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut count = 0;
        for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let cert = cert.map_err(|e| TlsConfigError::BadCertificate {
                path: path.clone(),
                index,
                reason: e.to_string(),
            })?;
            roots
                .add(cert)
                .map_err(|e| TlsConfigError::BadCertificate {
                    path: path.clone(),
                    index,
                    reason: e.to_string(),
                })?;
            count += 1;
        }
        if count == 0 {
            return Err(TlsConfigError::Empty { path: path.clone() });
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bundle_names_the_file() {
        let roots = TlsRoots::new(Some(PathBuf::from("/nonexistent/ca.pem")));
        let err = roots.connector().err().expect("must fail");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn bundle_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("tls-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = TlsRoots::new(Some(path.clone())).connector().err().unwrap();
        assert!(matches!(err, TlsConfigError::Empty { .. }), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn default_roots_build() {
        assert!(TlsRoots::new(None).connector().is_ok());
    }
}
