//! Errors of the HTTP set.

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set has no endpoints right now.
    #[error("no endpoints to send {method} {path} to: the set is empty")]
    NoEndpoints {
        /// The request's method.
        method: reqwest::Method,
        /// The request's path.
        path: String,
    },
    /// The path (or something built into the request) is not valid.
    #[error("invalid request for path {path:?}: {reason}")]
    InvalidRequest {
        /// The path given.
        path: String,
        /// What is wrong.
        reason: String,
        /// reqwest's error, when it refused to build the request.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The attempt got no response within the set's attempt timeout (see
    /// [`HttpSetBuilder::attempt_timeout`](crate::HttpSetBuilder::attempt_timeout);
    /// a timeout set on the request itself is reqwest's, an
    /// [`Error::Http`]). Not retried.
    #[error("request to {endpoint} timed out: no response within {timeout:?}")]
    Timeout {
        /// The endpoint the attempt went to.
        endpoint: serversets::Endpoint,
        /// The attempt timeout.
        timeout: std::time::Duration,
    },
    /// reqwest's error: a failure after connecting (a timeout included),
    /// or the last connect failure once no retry was left (every attempt
    /// used, no other live endpoint, or the retry budget spent).
    #[error("request to {endpoint} failed: {source}")]
    Http {
        /// The endpoint the last attempt went to.
        endpoint: serversets::Endpoint,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

impl Error {
    /// Whether the request timed out: the set's attempt timeout
    /// ([`Error::Timeout`]) or reqwest's (a timeout set on the request, or
    /// the connect timeout once no retry was left).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::Http { source, .. } => source.is_timeout(),
            Error::NoEndpoints { .. } | Error::InvalidRequest { .. } => false,
        }
    }
}
