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
    },
    /// reqwest's error: a failure after connecting, or the last connect
    /// failure once every attempt was used.
    #[error("request to {endpoint} failed: {source}")]
    Http {
        /// The endpoint the last attempt went to.
        endpoint: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}
