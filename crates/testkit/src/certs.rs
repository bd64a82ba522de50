//! Test certificates: a throwaway certificate authority and server certificates it signs.
//!
//! rustls rejects a self-signed CA certificate used directly as a server certificate, so tests
//! use a real chain: a CA (`IsCa::Ca`) and a leaf certificate for `127.0.0.1` / `localhost`
//! signed by it.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A generated certificate authority that can issue server certificates.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

/// A server certificate and its private key, both PEM-encoded.
pub struct ServerCert {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl TestCa {
    /// Generates a new CA whose subject common name is `common_name`.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        name.push(DnType::OrganizationName, "testkit");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("generate the test CA key");
        let cert = params
            .self_signed(&key)
            .expect("self-sign the test CA certificate");
        TestCa { cert, key }
    }

    /// The CA certificate (PEM), to be trusted by clients.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a server certificate signed by this CA, valid for the IP address `127.0.0.1` and
    /// the DNS name `localhost`.
    pub fn issue_localhost_server_cert(&self) -> ServerCert {
        self.issue_server_cert(
            "localhost",
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            &["localhost".to_string()],
        )
    }

    /// Issues a server certificate signed by this CA with the given subject alternative names.
    pub fn issue_server_cert(
        &self,
        common_name: &str,
        ip_addresses: &[IpAddr],
        dns_names: &[String],
    ) -> ServerCert {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = ip_addresses
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .chain(dns_names.iter().map(|dns| {
                SanType::DnsName(
                    dns.clone()
                        .try_into()
                        .unwrap_or_else(|e| panic!("invalid DNS name {dns:?}: {e}")),
                )
            }))
            .collect();
        let key = KeyPair::generate().expect("generate the server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the server certificate with the test CA");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_chain() {
        let ca = TestCa::new("unit test CA");
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let server = ca.issue_localhost_server_cert();
        assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(server.cert_pem, ca.cert_pem());
    }
}
