//! The retry budget: how many retries the set may send, as Finagle's
//! `RetryBudget` and tower's [`TpsBudget`] (which does the counting).

use std::time::Duration;

use tower::retry::budget::TpsBudget;

/// How many retries an [`HttpSet`](crate::HttpSet) may send: a share of
/// its recent requests, plus a minimum per second, as Finagle's
/// `RetryBudget` (tower's [`TpsBudget`] counts).
///
/// Every request deposits into the budget; every retry (a second or later
/// attempt) withdraws from it, and is not sent when the budget is empty:
/// the request then fails with the error of its last attempt. Deposits
/// count for [`window`](Self::window). The defaults are Finagle's: 20 %
/// of the requests, at least 10 retries per second, over 10 seconds.
///
/// ```
/// use std::time::Duration;
/// use serversets_http::RetryBudget;
///
/// let budget = RetryBudget::new()
///     .ratio(0.1) // 10 % of requests
///     .min_retries_per_second(5)
///     .window(Duration::from_secs(30));
/// assert_eq!(budget.retry_ratio(), 0.1);
/// assert_eq!(RetryBudget::none().min_per_second(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    window: Duration,
    min_per_second: u32,
    ratio: f32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudget {
    /// How long a deposit counts by default (Finagle's `ttl`).
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    /// Retries allowed per second whatever the traffic, by default.
    pub const DEFAULT_MIN_PER_SECOND: u32 = 10;
    /// The share of requests that may be retried by default.
    pub const DEFAULT_RATIO: f32 = 0.2;

    /// Finagle's defaults: 20 % of requests, at least 10 retries per
    /// second, deposits counting for 10 seconds.
    pub const fn new() -> Self {
        RetryBudget {
            window: Self::DEFAULT_WINDOW,
            min_per_second: Self::DEFAULT_MIN_PER_SECOND,
            ratio: Self::DEFAULT_RATIO,
        }
    }

    /// No retries at all: 0 % of requests and no minimum.
    pub const fn none() -> Self {
        RetryBudget {
            window: Self::DEFAULT_WINDOW,
            min_per_second: 0,
            ratio: 0.0,
        }
    }

    /// The share of requests that may be retried: `0.2` is 20 %; above
    /// `1.0`, more retries than requests (at most `1000.0`; a value out of
    /// `0.0..=1000.0`, or NaN, is taken as the nearest bound, NaN as 0).
    pub fn ratio(mut self, ratio: f32) -> Self {
        self.ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        self
    }

    /// Retries allowed per second whatever the share, so that a client
    /// with little traffic can still retry (at most `i32::MAX - 1`).
    pub fn min_retries_per_second(mut self, retries: u32) -> Self {
        self.min_per_second = retries.min(i32::MAX.unsigned_abs() - 1);
        self
    }

    /// How long a deposit counts: 1 to 60 seconds (in whole seconds for
    /// the minimum; values out of range are taken as the nearest bound).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.clamp(Duration::from_secs(1), Duration::from_secs(60));
        self
    }

    /// The share of requests that may be retried.
    pub fn retry_ratio(&self) -> f32 {
        self.ratio
    }

    /// Retries allowed per second whatever the share.
    pub fn min_per_second(&self) -> u32 {
        self.min_per_second
    }

    /// How long a deposit counts.
    pub fn deposit_window(&self) -> Duration {
        self.window
    }

    /// Tower's budget with these settings (all within the ranges
    /// [`TpsBudget::new`] accepts, by construction).
    pub(crate) fn build(&self) -> TpsBudget {
        TpsBudget::new(self.window, self.min_per_second, self.ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::retry::budget::Budget;

    #[test]
    fn out_of_range_settings_are_clamped_not_fatal() {
        let budget = RetryBudget::new()
            .ratio(f32::NAN)
            .min_retries_per_second(u32::MAX)
            .window(Duration::ZERO);
        assert_eq!(budget.retry_ratio(), 0.0);
        assert_eq!(budget.deposit_window(), Duration::from_secs(1));
        let _ = budget.build();
        let budget = RetryBudget::new()
            .ratio(f32::INFINITY)
            .window(Duration::from_secs(3600));
        assert_eq!(budget.retry_ratio(), 1000.0);
        assert_eq!(budget.deposit_window(), Duration::from_secs(60));
        let _ = budget.build();
        let _ = RetryBudget::new().ratio(-1.0).ratio(1e-30).build();
    }

    #[test]
    fn none_allows_nothing_and_the_default_its_minimum() {
        let none = RetryBudget::none().build();
        for _ in 0..100 {
            none.deposit();
        }
        assert!(!none.withdraw());
        let default = RetryBudget::new().build();
        let reserve = (0..1000).take_while(|_| default.withdraw()).count();
        assert_eq!(reserve, 100, "10 per second over 10 seconds");
        for _ in 0..50 {
            default.deposit();
        }
        let more = (0..1000).take_while(|_| default.withdraw()).count();
        assert_eq!(more, 10, "20 % of 50 requests");
    }
}
