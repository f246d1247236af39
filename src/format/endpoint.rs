//! A network endpoint as serversets store it: a host string and a port.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::error::{Error, Result};

/// A `host` and `port`, as in Finagle's `{"host": ..., "port": ...}`.
///
/// The host is kept as written (a name, an IPv4 or an IPv6 address).
/// `Display` brackets IPv6 hosts: `[::1]:80`.
///
/// ```
/// use serversets::Endpoint;
///
/// let e: Endpoint = "[::1]:8080".parse()?;
/// assert_eq!(e.host, "::1");
/// assert_eq!(e.to_string(), "[::1]:8080");
/// assert_eq!(Endpoint::new("10.0.0.1", 80).to_string(), "10.0.0.1:80");
/// # Ok::<(), serversets::Error>(())
/// ```
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Endpoint {
    /// Host name or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from a host and a port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    /// The endpoint as a socket address, when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::new(addr.ip().to_string(), addr.port())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    /// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`.
    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidEndpoint {
            input: input.to_owned(),
            reason,
        };
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (host, rest) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
            let port = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("expected ':' and a port after ']'"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the bracketed host is not an IPv6 address"));
            }
            (host, port)
        } else {
            let (host, port) = input
                .rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?;
            if host.contains(':') {
                return Err(bad("IPv6 hosts must be written in brackets: [::1]:80"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host contains whitespace or control characters"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
        Ok(Endpoint::new(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (input, host, port) in [
            ("localhost:80", "localhost", 80),
            ("10.0.0.1:8080", "10.0.0.1", 8080),
            ("[::1]:11211", "::1", 11211),
            ("[fe80::1]:1", "fe80::1", 1),
        ] {
            let e: Endpoint = input.parse().unwrap();
            assert_eq!((e.host.as_str(), e.port), (host, port));
            assert_eq!(e.to_string(), input);
        }
        assert_eq!(
            Endpoint::from("[::1]:9".parse::<SocketAddr>().unwrap()).to_string(),
            "[::1]:9"
        );
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            "",
            "host",
            ":80",
            "host:",
            "host:99999",
            "host:-1",
            "::1:80",
            "[::1]80",
            "[x]:80",
            "a b:1",
        ] {
            assert!(input.parse::<Endpoint>().is_err(), "{input:?}");
        }
    }
}
