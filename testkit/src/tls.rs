//! Throwaway certificates for TLS tests, made fresh with `rcgen`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A fresh certificate authority with a server and a client certificate
/// signed by it, all as PEM text (keys are unencrypted PKCS#8).
///
/// The server certificate is valid for `127.0.0.1`, `::1` and `localhost`,
/// so clients that verify the server's name accept it on loopback. Give it
/// to [`ZooKeeper::start_tls`](crate::ZooKeeper::start_tls); give
/// [`ca_pem`](Self::ca_pem) (and, for mutual TLS, the client certificate
/// and key) to the client. Two calls make two unrelated authorities, so one
/// can stand for a wrong CA.
///
/// ```
/// let certs = testkit::TestCerts::generate()?;
/// assert!(certs.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TestCerts {
    /// The CA's self-signed certificate: what clients and servers trust.
    pub ca_pem: String,
    /// The server's certificate (signed by the CA).
    pub server_cert_pem: String,
    /// The server certificate's private key.
    pub server_key_pem: String,
    /// A client certificate (signed by the CA) for mutual TLS.
    pub client_cert_pem: String,
    /// The client certificate's private key.
    pub client_key_pem: String,
}

impl std::fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCerts").finish_non_exhaustive()
    }
}

impl TestCerts {
    /// Generates a new CA (ECDSA P-256) and a server and a client
    /// certificate signed by it.
    ///
    /// # Errors
    ///
    /// Fails (kind [`io::ErrorKind::Other`]) if `rcgen` cannot generate a key
    /// or sign a certificate.
    pub fn generate() -> io::Result<TestCerts> {
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, so that a certificate of another instance is
        // from an unknown issuer rather than one with a bad signature.
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let ca_name = format!(
            "testkit CA {}-{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(cert_error)?)
            .map_err(cert_error)?;

        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".into(), "::1".into(), "localhost".into()])
                .map_err(cert_error)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "testkit server");
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().map_err(cert_error)?;
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .map_err(cert_error)?;

        let mut client_params = CertificateParams::default();
        client_params
            .distinguished_name
            .push(DnType::CommonName, "testkit client");
        client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().map_err(cert_error)?;
        let client_cert = client_params
            .signed_by(&client_key, &ca)
            .map_err(cert_error)?;

        Ok(TestCerts {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }
}

/// Whether a TLS server asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Server-side TLS only: any client may connect (`ssl.clientAuth=none`).
    #[default]
    None,
    /// Mutual TLS: clients must present a certificate signed by the CA
    /// (`ssl.clientAuth=need`).
    Need,
}

impl ClientAuth {
    /// The value of ZooKeeper's `ssl.clientAuth`.
    pub(crate) fn zookeeper_value(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Need => "need",
        }
    }
}

/// An `rcgen` failure as an I/O error.
fn cert_error(err: rcgen::Error) -> io::Error {
    io::Error::other(format!("cannot generate a test certificate: {err}"))
}
