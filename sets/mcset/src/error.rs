//! Errors of the memcache set.

/// Why a memcache operation failed.
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
    /// The server failed the request, or could not be reached.
    #[error("memcache server {server}: {source}")]
    Memcache {
        /// The server.
        server: String,
        /// The memcache client's error.
        #[source]
        source: memcache::MemcacheError,
    },
    /// The blocking call was cancelled or panicked.
    #[error("memcache call to {server} was interrupted: {reason}")]
    Interrupted {
        /// The server.
        server: String,
        /// What happened.
        reason: String,
    },
}

/// The longest key the memcache protocol accepts.
pub const MAX_KEY_LEN: usize = 250;

/// Checks a key the way memcached's text protocol needs it: 1 to 250
/// bytes, no whitespace, no control characters.
pub fn check_key(key: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidKey {
            key: key.chars().take(64).collect(),
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
