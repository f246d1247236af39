//! Finagle destinations: `zk2!h1:2181,h2:2181!/path[!endpoint]` and the
//! older `zk!...` form, so users can paste what their JVM services use.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::format::path::ServerSetPath;

/// A parsed Finagle ZooKeeper destination.
///
/// ```
/// use serversets::Destination;
///
/// let d: Destination = "zk2!zk1:2181,zk2:2181!/discovery/prod/users!http".parse()?;
/// assert_eq!(d.connect, "zk1:2181,zk2:2181");
/// assert_eq!(d.path.as_str(), "/discovery/prod/users");
/// assert_eq!(d.endpoint.as_deref(), Some("http"));
/// # Ok::<(), serversets::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The ZooKeeper connect string (`h1:2181,h2:2181[/chroot]`).
    pub connect: String,
    /// The serverset path.
    pub path: ServerSetPath,
    /// The named additional endpoint, or `None` for the service endpoint.
    pub endpoint: Option<String>,
}

impl FromStr for Destination {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidDestination {
            input: input.to_owned(),
            reason,
        };
        let parts: Vec<&str> = input.split('!').collect();
        match parts.first() {
            Some(&"zk2") | Some(&"zk") => {}
            _ => return Err(bad("it must start with zk2! or zk!")),
        }
        if !(3..=4).contains(&parts.len()) {
            return Err(bad("expected zk2!hosts!/path or zk2!hosts!/path!endpoint"));
        }
        let connect = parts[1];
        if connect.is_empty() {
            return Err(bad("the ZooKeeper hosts are empty"));
        }
        let path = ServerSetPath::new(parts[2])?;
        let endpoint = match parts.get(3) {
            None | Some(&"") => None,
            Some(name) => Some((*name).to_owned()),
        };
        Ok(Destination {
            connect: connect.to_owned(),
            path,
            endpoint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes() {
        let d: Destination = "zk!localhost:2181!/a/b".parse().unwrap();
        assert_eq!(d.connect, "localhost:2181");
        assert_eq!(d.endpoint, None);
        let d: Destination = "zk2!h:1/chroot!/a!".parse().unwrap();
        assert_eq!(d.connect, "h:1/chroot");
        assert_eq!(d.endpoint, None);
    }

    #[test]
    fn rejects() {
        for input in [
            "",
            "inet!h:1",
            "zk2!h:1",
            "zk2!!/a",
            "zk2!h:1!rel",
            "zk2!h:1!/a!b!c",
        ] {
            assert!(input.parse::<Destination>().is_err(), "{input:?}");
        }
    }
}
