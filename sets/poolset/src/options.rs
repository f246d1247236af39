//! How a pool connects, limits, waits and ejects.

use std::time::Duration;

/// Settings of a [`PoolSet`](crate::PoolSet). Limits are per endpoint.
///
/// ```
/// use std::time::Duration;
/// use poolset::{Ejection, Options};
///
/// let options = Options {
///     max_active: 16,
///     checkout_timeout: Duration::from_millis(200),
///     ejection: Ejection { consecutive_failures: 5, ..Ejection::default() },
///     ..Options::default()
/// };
/// assert_eq!(options.max_idle, 8);
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
    /// When endpoints are taken out of rotation.
    pub ejection: Ejection,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_idle: 8,
            max_active: 64,
            idle_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(1),
            checkout_timeout: Duration::from_secs(1),
            ejection: Ejection::default(),
        }
    }
}

/// Ejection of failing endpoints: an endpoint whose connects fail
/// `consecutive_failures` times in a row, or whose connections are marked
/// broken that many times in a row without a healthy return in between, is
/// skipped for a backoff period. Then it is a candidate again (a probe):
/// a success resets it, a failure ejects it again for twice as long, up to
/// `max_backoff`. The last endpoint that is not ejected is never ejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Ejection {
    /// Failures in a row that eject an endpoint (default 3; 0 never ejects).
    pub consecutive_failures: u32,
    /// The first backoff (default 1 s).
    pub base_backoff: Duration,
    /// The longest backoff (default 30 s).
    pub max_backoff: Duration,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            consecutive_failures: 3,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl Ejection {
    /// The backoff of the `level`-th ejection in a row (0 for the first).
    pub(crate) fn backoff(&self, level: u32) -> Duration {
        let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff.max(self.base_backoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let e = Ejection::default();
        let secs: Vec<u64> = (0..8).map(|l| e.backoff(l).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(e.backoff(u32::MAX), Duration::from_secs(30));
    }
}
