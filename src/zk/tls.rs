//! TLS to ZooKeeper's secure client port (feature `tls`).
//!
//! [`Tls`] holds PEM text; [`Tls::build`] checks it and turns it into
//! `zookeeper-client`'s options. When a connection fails, the same settings
//! drive one plain rustls handshake to tell the user why (zookeeper-client
//! reports only "no available hosts").

use std::io::Read as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use zookeeper_client as zk;

use crate::error::{Error, Result};

/// The ZooKeeper port used when a host has none.
const DEFAULT_PORT: u16 = 2181;

/// After a successful handshake, how long the diagnosis waits for the
/// server to reject the client's certificate (TLS 1.3 servers do that
/// after the client considers the handshake done).
const REJECTION_WAIT: Duration = Duration::from_millis(500);

/// TLS settings for connections to ZooKeeper's secure client port
/// (`secureClientPort`), for [`ClientBuilder::tls`](crate::ClientBuilder::tls).
///
/// The server's certificate must chain to a CA given with
/// [`ca_pem`](Self::ca_pem) (required) and name the host as written in the
/// connect string (a DNS name or an IP address in its subject alternative
/// names). [`identity`](Self::identity) adds a client certificate, for
/// servers that require one (`ssl.clientAuth=need`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use serversets::{Client, Tls};
///
/// let tls = Tls::new()
///     .ca_pem(std::fs::read_to_string("/etc/zookeeper/ca.pem")?)
///     .identity(
///         std::fs::read_to_string("/etc/myservice/client.pem")?,
///         std::fs::read_to_string("/etc/myservice/client.key")?,
///     );
/// let client = Client::builder("zk1:2281,zk2:2281").tls(tls).connect().await?;
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Tls {
    ca_pem: Option<String>,
    identity: Option<(String, String)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Tls {
    /// Empty settings: give at least [`ca_pem`](Self::ca_pem).
    pub fn new() -> Self {
        Tls::default()
    }

    /// The CA certificate(s), PEM, that the server's certificate must chain
    /// to (a bundle of several certificates is fine).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// A client certificate (PEM, with any intermediates after it) and its
    /// private key (PEM: PKCS#8, PKCS#1 or SEC1) for mutual TLS.
    pub fn identity(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Checks the settings and builds what connections use; fails with
    /// [`Error::InvalidConfig`] saying what is wrong.
    pub(crate) fn build(&self) -> Result<TlsConfig> {
        let invalid = |what: String| Error::InvalidConfig(format!("TLS: {what}"));
        ensure_crypto_provider();
        let Some(ca_pem) = &self.ca_pem else {
            return Err(invalid(
                "no CA certificate; give the one that signed the servers' certificates with Tls::ca_pem".into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| invalid(format!("cannot read the CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("the CA PEM holds no certificate".into()));
        }
        let mut options = zk::TlsOptions::new()
            .with_pem_ca(ca_pem)
            .map_err(|e| invalid(format!("CA certificate: {e}")))?;
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let probe = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert_pem, key_pem)) => {
                let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| invalid(format!("cannot read the client certificate PEM: {e}")))?;
                if chain.is_empty() {
                    return Err(invalid(
                        "the client certificate PEM holds no certificate".into(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                    .map_err(|e| invalid(format!("cannot read the client private key PEM: {e}")))?;
                options = options
                    .with_pem_identity(cert_pem, key_pem)
                    .map_err(|e| invalid(format!("client identity: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| invalid(format!("client certificate and key: {e}")))?
            }
        };
        Ok(TlsConfig {
            options,
            probe: Arc::new(probe),
        })
    }
}

/// Checked TLS settings, as connections use them.
#[derive(Clone)]
pub(crate) struct TlsConfig {
    /// zookeeper-client's options.
    pub options: zk::TlsOptions,
    /// The same settings for rustls, to diagnose failed connections.
    probe: Arc<rustls::ClientConfig>,
}

impl TlsConfig {
    /// Why TLS fails with the connect string's TLS hosts, if it does: the
    /// first failed handshake, as `"TLS handshake with HOST:PORT failed:
    /// REASON"`. Each handshake is bounded by `timeout`.
    pub(crate) async fn diagnose(&self, connect: &str, timeout: Duration) -> Option<String> {
        let config = Arc::clone(&self.probe);
        let hosts = tls_hosts(connect);
        tokio::task::spawn_blocking(move || {
            hosts.into_iter().find_map(|(host, port)| {
                handshake(&config, &host, port, timeout)
                    .err()
                    .map(|why| format!("TLS handshake with {host}:{port} failed: {why}"))
            })
        })
        .await
        .ok()
        .flatten()
    }
}

/// Installs aws-lc-rs (zookeeper-client's rustls provider) as the process's
/// rustls crypto provider unless one is installed already: rustls cannot
/// pick one by itself when several are compiled in (for instance ring for
/// an HTTP client).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
}

/// One blocking TLS handshake with `host:port`.
fn handshake(
    config: &Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::result::Result<(), String> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("{host:?} is not a valid server name: {e}"))?;
    let mut tls =
        rustls::ClientConnection::new(Arc::clone(config), name).map_err(|e| e.to_string())?;
    let mut socket = connect(host, port, timeout)?;
    socket
        .set_read_timeout(Some(timeout))
        .and_then(|()| socket.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    while tls.is_handshaking() {
        tls.complete_io(&mut socket).map_err(|e| e.to_string())?;
    }
    // A server that refuses our client certificate says so after the
    // handshake: wait a moment for that alert.
    socket
        .set_read_timeout(Some(REJECTION_WAIT.min(timeout)))
        .map_err(|e| e.to_string())?;
    let mut stream = rustls::Stream::new(&mut tls, &mut socket);
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        // rustls errors (alerts included) come as invalid data; anything
        // else (nothing to read, the server closing) is not about TLS.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// A TCP connection to the first address of `host` that accepts one.
fn connect(host: &str, port: u16, timeout: Duration) -> std::result::Result<TcpStream, String> {
    let mut last = format!("{host} has no address");
    for addr in (host, port).to_socket_addrs().map_err(|e| e.to_string())? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The hosts of a connect string that use TLS with
/// [`zk::Connector::secure_connect`]: all but `tcp://` ones.
fn tls_hosts(connect: &str) -> Vec<(String, u16)> {
    let mut hosts = Vec::new();
    for part in connect.split(',') {
        let mut part = part.trim();
        if part.starts_with("tcp://") {
            continue;
        }
        part = part.strip_prefix("tcp+tls://").unwrap_or(part);
        // The chroot follows the last host.
        if let Some(slash) = part.find('/') {
            part = &part[..slash];
        }
        let parsed = if let Some(rest) = part.strip_prefix('[') {
            rest.split_once(']')
                .map(|(host, port)| (host, port.strip_prefix(':')))
        } else {
            Some(match part.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (part, None),
            })
        };
        let Some((host, port)) = parsed else { continue };
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(port) => match port.parse() {
                Ok(port) => port,
                Err(_) => continue,
            },
        };
        if !host.is_empty() {
            hosts.push((host.to_owned(), port));
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_hosts_skip_plain_hosts_and_the_chroot() {
        assert_eq!(
            tls_hosts("zk1:2281,tcp://zk2:2181,tcp+tls://[::1]:2282,zk4/chroot/x"),
            [
                ("zk1".to_owned(), 2281),
                ("::1".to_owned(), 2282),
                ("zk4".to_owned(), 2181)
            ]
        );
        assert!(tls_hosts("tcp://zk:2181").is_empty());
    }

    #[test]
    fn settings_are_checked() {
        let err = Tls::new().build().err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("no CA certificate")),
            "{err:?}"
        );
        let err = Tls::new()
            .ca_pem("not a pem")
            .build()
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("holds no certificate")),
            "{err:?}"
        );
    }
}
