//! Why a checkout failed.

use std::fmt;
use std::time::Duration;

use serversets::Endpoint;

/// A boxed error from a [`Connector`](crate::Connector).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`PoolSet::checkout`](crate::PoolSet::checkout) returned no
/// connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The set has no endpoints right now.
    #[error("no endpoints to connect to: the set is empty")]
    NoEndpoints,
    /// The pool was closed with [`PoolSet::close`](crate::PoolSet::close),
    /// or its source ended.
    #[error("the connection pool is closed (closed explicitly, or its source of endpoints ended)")]
    Closed,
    /// The connector failed. When several endpoints were tried, this is
    /// the last failure.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint the connect went to.
        endpoint: Endpoint,
        /// The connector's error.
        #[source]
        source: BoxError,
    },
    /// The connector did not finish within the connect timeout.
    #[error("connecting to {endpoint} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The endpoint the connect went to.
        endpoint: Endpoint,
        /// The connect timeout.
        timeout: Duration,
    },
    /// Every usable endpoint stayed at its limit of active connections for
    /// the whole checkout timeout.
    #[error(
        "no connection within {timeout:?}: every endpoint is at its limit of {max_active} active connections ({})",
        EndpointList(endpoints)
    )]
    CheckoutTimeout {
        /// The checkout timeout.
        timeout: Duration,
        /// The per-endpoint limit of active connections.
        max_active: usize,
        /// The endpoints of the set at the time.
        endpoints: Vec<Endpoint>,
    },
    /// The pool was used outside a tokio runtime (it needs tokio's timers
    /// to connect and to wait).
    #[error("the connection pool needs a tokio runtime to connect and to wait")]
    NoRuntime,
}

impl Error {
    /// The endpoint a connect error is about, if it is one.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            Error::Connect { endpoint, .. } | Error::ConnectTimeout { endpoint, .. } => {
                Some(endpoint)
            }
            _ => None,
        }
    }
}

/// Prints up to ten endpoints, then how many more there are.
struct EndpointList<'a>(&'a [Endpoint]);

impl fmt::Display for EndpointList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        for (i, endpoint) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{endpoint}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_endpoints() {
        let err = Error::CheckoutTimeout {
            timeout: Duration::from_millis(250),
            max_active: 4,
            endpoints: (1..=12).map(|p| Endpoint::new("10.0.0.1", p)).collect(),
        };
        let text = err.to_string();
        assert!(text.contains("10.0.0.1:1, 10.0.0.1:2"), "{text}");
        assert!(text.contains("10.0.0.1:10 and 2 more"), "{text}");
        assert!(text.contains("250ms"), "{text}");
        let err = Error::ConnectTimeout {
            endpoint: Endpoint::new("h", 7),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(err.to_string(), "connecting to h:7 timed out after 1s");
        assert_eq!(err.endpoint(), Some(&Endpoint::new("h", 7)));
    }
}
