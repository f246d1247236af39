//! Errors of the memcache set.

use std::time::Duration;

use serversets::Endpoint;

/// Why a memcache operation failed. Every variant that involves a server
/// names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set has no servers right now.
    #[error("no memcache servers: the set is empty")]
    NoServers,
    /// The key cannot be sent with the memcache protocol (checked before
    /// any I/O).
    #[error("invalid memcache key {key:?}: {reason}")]
    InvalidKey {
        /// The key (cut to 64 characters).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value is larger than the client's limit (checked before any
    /// I/O; see [`McSetBuilder::max_value_len`](crate::McSetBuilder::max_value_len)).
    #[error("value of {len} bytes for key {key:?} is larger than the limit of {max} bytes")]
    ValueTooLarge {
        /// The key (cut to 64 characters).
        key: String,
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The operation did not complete within its deadline (connect,
    /// checkout and I/O together). The connection it used is closed.
    #[error("memcache server {server} did not answer within {timeout:?}")]
    Timeout {
        /// The server.
        server: Endpoint,
        /// The deadline.
        timeout: Duration,
    },
    /// Failure accrual marked the server dead after failures in a row: its
    /// keys fail at once until its backoff is over and a background probe
    /// succeeds.
    #[error(
        "memcache server {server} is marked dead after failures in a row; probed again in {retry_in:?}"
    )]
    Dead {
        /// The server.
        server: Endpoint,
        /// Time left until it is probed (zero while a probe runs).
        retry_in: Duration,
    },
    /// No connection could be had: the connect failed or timed out, or
    /// every connection of the server was busy.
    #[error("memcache server {server}: no connection: {source}")]
    Connect {
        /// The server.
        server: Endpoint,
        /// The pool's error.
        #[source]
        source: serversets_pool::Error,
    },
    /// The server failed the request, or the connection broke: I/O
    /// errors, a reply cut short, a server error line.
    #[error("memcache server {server}: {source}")]
    Memcache {
        /// The server.
        server: Endpoint,
        /// The memcache client's error.
        #[source]
        source: async_memcached::Error,
    },
    /// The server answered for another key than the one asked for (a
    /// protocol violation): the connection is closed and nothing is
    /// returned.
    #[error("memcache server {server} answered for key {got:?} when asked for {expected:?}")]
    Mismatch {
        /// The server.
        server: Endpoint,
        /// The key asked for.
        expected: String,
        /// The key in the reply.
        got: String,
    },
    /// The server's reply could not be understood (for example a counter
    /// that is not a number).
    #[error("memcache server {server}: unexpected reply: {reply}")]
    UnexpectedReply {
        /// The server.
        server: Endpoint,
        /// What was wrong.
        reply: String,
    },
}

impl Error {
    /// The server the error concerns, if any.
    pub fn server(&self) -> Option<&Endpoint> {
        match self {
            Error::Timeout { server, .. }
            | Error::Dead { server, .. }
            | Error::Connect { server, .. }
            | Error::Memcache { server, .. }
            | Error::Mismatch { server, .. }
            | Error::UnexpectedReply { server, .. } => Some(server),
            Error::NoServers | Error::InvalidKey { .. } | Error::ValueTooLarge { .. } => None,
        }
    }
}

/// The longest key the memcache protocol accepts.
pub const MAX_KEY_LEN: usize = 250;

/// The key as shown in errors: at most 64 characters.
pub(crate) fn shown(key: &str) -> String {
    key.chars().take(64).collect()
}

/// Checks a key the way memcached's text and meta protocols need it: 1 to
/// 250 bytes, no whitespace, no control characters.
pub fn check_key(key: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidKey {
            key: shown(key),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("it is longer than 250 bytes");
    }
    if key.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return bad("it contains whitespace or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(check_key("user:1").is_ok());
        assert!(check_key(&"k".repeat(250)).is_ok());
        for bad in ["", "a b", "a\nb", "a\tb", "a\u{7f}", &"k".repeat(251)] {
            assert!(
                matches!(check_key(bad), Err(Error::InvalidKey { .. })),
                "{bad:?}"
            );
        }
    }
}
