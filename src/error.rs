//! The crate's error type.

use std::time::Duration;

/// Errors returned by this crate.
///
/// Every error names what was wrong (the path, the address, the input), so
/// a one-line `Display` is enough for a log line or a CLI message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A serverset path is not a valid absolute ZooKeeper path.
    #[error("invalid serverset path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A service or environment name cannot be used as one path component.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What kind of name it is ("service", "environment").
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A `host:port` string could not be parsed.
    #[error("invalid endpoint {input:?}: {reason}")]
    InvalidEndpoint {
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A Finagle destination (`zk2!hosts!/path[!name]`) could not be parsed.
    #[error("invalid Finagle destination {input:?}: {reason}")]
    InvalidDestination {
        /// The rejected input.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// No ZooKeeper session (or etcd connection) could be established.
    #[error("cannot connect to {store} at {address}: {reason}")]
    Connect {
        /// "ZooKeeper" or "etcd".
        store: &'static str,
        /// The connect string that was tried.
        address: String,
        /// The last failure seen, in words (with what a TLS handshake
        /// check found, or how long was waited).
        reason: String,
        /// The ZooKeeper client's error behind it, when there is one.
        #[source]
        source: Option<zookeeper_client::Error>,
    },
    /// The ZooKeeper session expired (the server no longer holds it).
    #[error("the ZooKeeper session at {address} expired")]
    SessionExpired {
        /// The connect string.
        address: String,
    },
    /// An operation did not complete in time.
    #[error("{what} did not complete within {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long it was waited for.
        after: Duration,
    },
    /// ZooKeeper refused an operation on a path.
    #[error("ZooKeeper {operation} on {path} failed: {source}")]
    ZooKeeper {
        /// The operation ("create", "delete", "list", ...).
        operation: &'static str,
        /// The znode path.
        path: String,
        /// The ZooKeeper client's error.
        #[source]
        source: zookeeper_client::Error,
    },
    /// etcd refused an operation, or it failed on the way.
    #[error("etcd {operation} on {key} failed: {reason}")]
    Etcd {
        /// The operation ("get", "put", "lease grant", ...).
        operation: &'static str,
        /// The key or prefix.
        key: String,
        /// What etcd or the connection said.
        reason: String,
    },
    /// The client (and its session) has been closed.
    #[error("the serversets client is closed")]
    Closed,
}

impl Error {
    pub(crate) fn zk(operation: &'static str, path: &str, source: zookeeper_client::Error) -> Self {
        Error::ZooKeeper {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(feature = "etcd")]
impl Error {
    pub(crate) fn etcd(operation: &'static str, key: &str, source: &etcd_client::Error) -> Self {
        Error::Etcd {
            operation,
            key: key.to_owned(),
            reason: source.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
