//! How a pool connects, limits, waits and takes failing endpoints out of
//! rotation.

use std::time::Duration;

use serversets::accrual::FailureAccrual;

/// Settings of a [`PoolSet`](crate::PoolSet). Limits are per endpoint.
///
/// Built with [`Options::new`] and the setters below, each named like the
/// field it sets; the fields are public for reading.
///
/// ```
/// use std::time::Duration;
/// use serversets_pool::{FailureAccrual, Options};
///
/// let options = Options::new()
///     .max_active(16)
///     .checkout_timeout(Duration::from_millis(200))
///     .failure_accrual(
///         FailureAccrual::new()
///             .consecutive_failures(3)
///             .backoff(Duration::from_millis(200), Duration::from_secs(5)),
///     );
/// assert_eq!(options.max_active, 16);
/// assert_eq!(options.max_idle, 8);
/// assert_eq!(Options::new(), Options::default());
/// assert_eq!(Options::default().failure_accrual, FailureAccrual::new());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// Idle connections kept per endpoint at most; see
    /// [`Options::max_idle()`].
    pub max_idle: usize,
    /// Connections checked out (or being opened) per endpoint at most; see
    /// [`Options::max_active()`].
    pub max_active: usize,
    /// Age beyond which an idle connection is closed; see
    /// [`Options::idle_timeout()`].
    pub idle_timeout: Option<Duration>,
    /// Time allowed for one connect; see [`Options::connect_timeout()`].
    pub connect_timeout: Duration,
    /// Time a checkout waits for a free endpoint; see
    /// [`Options::checkout_timeout()`].
    pub checkout_timeout: Duration,
    /// When an endpoint is taken out of rotation; see
    /// [`Options::failure_accrual()`].
    pub failure_accrual: FailureAccrual,
    /// The `set` label of the pool's metrics; see
    /// [`Options::metrics_label()`].
    pub metrics_label: Option<&'static str>,
}

impl Options {
    /// The default options: at most 8 idle and 64 active connections per
    /// endpoint, idle connections closed after 60 s, 1 s to connect, 1 s
    /// to wait for a checkout, [`FailureAccrual::new()`], and metrics
    /// labelled `set="pool"`. The same as [`Options::default()`].
    pub const fn new() -> Self {
        Options {
            max_idle: 8,
            max_active: 64,
            idle_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(1),
            checkout_timeout: Duration::from_secs(1),
            failure_accrual: FailureAccrual::new(),
            metrics_label: Some("pool"),
        }
    }

    /// Idle connections kept per endpoint at most (default 8); a connection
    /// returned beyond that is closed. 0 keeps none.
    #[must_use]
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.max_idle = max_idle;
        self
    }

    /// Connections checked out (or being opened) per endpoint at most
    /// (default 64; 0 counts as 1). When every endpoint is at this limit,
    /// a checkout waits up to [`Options::checkout_timeout()`].
    #[must_use]
    pub fn max_active(mut self, max_active: usize) -> Self {
        self.max_active = max_active;
        self
    }

    /// An idle connection older than this is closed instead of handed out
    /// (default 60 s; `None` keeps idle connections forever). The pool also
    /// sweeps them periodically.
    #[must_use]
    pub fn idle_timeout(mut self, idle_timeout: Option<Duration>) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Time allowed for one connect (default 1 s).
    #[must_use]
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Time a checkout waits when every endpoint is at
    /// [`Options::max_active()`] (default 1 s).
    #[must_use]
    pub fn checkout_timeout(mut self, checkout_timeout: Duration) -> Self {
        self.checkout_timeout = checkout_timeout;
        self
    }

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
    #[must_use]
    pub fn failure_accrual(mut self, failure_accrual: FailureAccrual) -> Self {
        self.failure_accrual = failure_accrual;
        self
    }

    /// The `set` label of the pool's metrics (default `Some("pool")`):
    /// checkouts are counted as
    /// [`REQUESTS`](serversets::metrics::REQUESTS), failed ones as
    /// [`REQUEST_ERRORS`](serversets::metrics::REQUEST_ERRORS), and the
    /// failure accrual's markings and revivals as
    /// [`EJECTIONS`](serversets::metrics::EJECTIONS) and
    /// [`REVIVALS`](serversets::metrics::REVIVALS) (unless its policy has
    /// a [label of its own](FailureAccrual::metrics_label)). `None`
    /// records nothing: for a pool inside another typed set that counts
    /// its own requests.
    #[must_use]
    pub fn metrics_label(mut self, label: Option<&'static str>) -> Self {
        self.metrics_label = label;
        self
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
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

    #[test]
    fn new_is_the_default_and_each_setter_sets_its_field() {
        assert_eq!(Options::new(), Options::default());
        let options = Options::new()
            .max_idle(3)
            .max_active(7)
            .idle_timeout(None)
            .connect_timeout(Duration::from_millis(250))
            .checkout_timeout(Duration::from_millis(200))
            .failure_accrual(FailureAccrual::disabled())
            .metrics_label(None);
        assert_eq!(options.max_idle, 3);
        assert_eq!(options.max_active, 7);
        assert_eq!(options.idle_timeout, None);
        assert_eq!(options.connect_timeout, Duration::from_millis(250));
        assert_eq!(options.checkout_timeout, Duration::from_millis(200));
        assert_eq!(options.failure_accrual, FailureAccrual::disabled());
        assert_eq!(options.metrics_label, None);
        assert_eq!(Options::new().metrics_label, Some("pool"));
        // Setting one leaves the others at their defaults.
        let options = Options::new().max_active(16);
        assert_eq!(
            options,
            Options {
                max_active: 16,
                ..Options::default()
            }
        );
    }
}
