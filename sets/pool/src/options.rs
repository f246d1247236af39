//! How a pool connects, limits, waits and takes failing endpoints out of
//! rotation.

use std::time::Duration;

use serversets::accrual::FailureAccrual;

/// Settings of a [`PoolSet`](crate::PoolSet). Limits are per endpoint.
///
/// ```
/// use std::time::Duration;
/// use serversets_pool::{FailureAccrual, Options};
///
/// let options = Options {
///     max_active: 16,
///     checkout_timeout: Duration::from_millis(200),
///     failure_accrual: FailureAccrual::new()
///         .consecutive_failures(3)
///         .backoff(Duration::from_millis(200), Duration::from_secs(5)),
///     ..Options::default()
/// };
/// assert_eq!(options.max_idle, 8);
/// assert_eq!(Options::default().failure_accrual, FailureAccrual::new());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Idle connections kept per endpoint at most (default 8); a connection
    /// returned beyond that is closed. 0 keeps none.
    pub max_idle: usize,
    /// Connections checked out (or being opened) per endpoint at most
    /// (default 64; 0 counts as 1). When every endpoint is at this limit,
    /// a checkout waits up to [`Options::checkout_timeout`].
    pub max_active: usize,
    /// An idle connection older than this is closed instead of handed out
    /// (default 60 s; `None` keeps idle connections forever). The pool also
    /// sweeps them periodically.
    pub idle_timeout: Option<Duration>,
    /// Time allowed for one connect (default 1 s).
    pub connect_timeout: Duration,
    /// Time a checkout waits when every endpoint is at
    /// [`Options::max_active`] (default 1 s).
    pub checkout_timeout: Duration,
    /// When an endpoint is taken out of rotation: the failure accrual
    /// shared by every typed set (see [`serversets::accrual`]). Default
    /// [`FailureAccrual::new()`]: **5 failures in a row** mark the
    /// endpoint dead for a **jittered backoff from 100 ms, doubling up to
    /// 1 s**; then one checkout probes it (opens a new connection: success
    /// revives it, failure marks it dead for the next, longer backoff).
    /// The last live endpoint is never marked dead.
    /// [`FailureAccrual::disabled()`] never marks.
    ///
    /// A failure is a failed or timed-out connect, or a connection marked
    /// broken with [`Pooled::mark_broken`](crate::Pooled::mark_broken); a
    /// success is a connection returned healthy (or a probe's connect).
    pub failure_accrual: FailureAccrual,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_idle: 8,
            max_active: 64,
            idle_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(1),
            checkout_timeout: Duration::from_secs(1),
            failure_accrual: FailureAccrual::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejection_defaults_to_the_shared_policy() {
        let ejection = Options::default().failure_accrual;
        assert_eq!(ejection.failure_threshold(), 5);
        assert_eq!(ejection.base_backoff(), Duration::from_millis(100));
        assert_eq!(ejection.max_backoff(), Duration::from_secs(1));
        assert!(ejection.is_jittered());
    }
}
