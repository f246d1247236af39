//! Failure accrual: the one mechanism every typed set uses to stop sending
//! to an endpoint that keeps failing, as Finagle's `FailureAccrualFactory`
//! does.
//!
//! - Each endpoint has a [`Tracker`]. Consecutive failures (errors and
//!   timeouts, as the typed set classifies them) are counted; a success
//!   resets the count.
//! - After [`FailureAccrual::consecutive_failures`] in a row the endpoint is
//!   **marked dead** for a backoff that grows with each marking in a row
//!   (doubling from the base up to the maximum) and, by default, is jittered
//!   (a random point of its upper half, as Finagle's `equalJittered`), so
//!   that many clients do not probe a recovering server in step.
//! - While dead, [`Tracker::admit`] refuses the endpoint: callers skip it
//!   or fail fast. Once the backoff has passed, the next caller is admitted
//!   as the **probe** (one at a time); its success revives the endpoint,
//!   its failure marks it dead again for the next, longer backoff.
//! - The **last live endpoint is never marked dead**: the trackers of one
//!   [`Accrual`] count how many of them are live, and marking one dead needs
//!   another live one.
//!
//! Time is read from a monotonic clock once per decision; the state lives
//! in atomics, so the request path reads it without a lock (a lock is taken
//! only to mark an endpoint dead, which is rare).
//!
//! With a [`FailureAccrual::metrics_label`], markings and revivals are also
//! counted as the metrics [`EJECTIONS`](crate::metrics::EJECTIONS) and
//! [`REVIVALS`](crate::metrics::REVIVALS) with that `set` label (every
//! typed set gives its own: `memcache`, `http`, `pool`).
//!
//! ```
//! use std::time::Duration;
//! use serversets::accrual::{Accrual, FailureAccrual};
//!
//! let accrual = Accrual::new(FailureAccrual::new().consecutive_failures(2).jitter(false));
//! let a = accrual.track();
//! let b = accrual.track();
//! a.failure();
//! assert!(a.admit().is_ok(), "one failure is not enough");
//! a.failure();
//! assert!(a.admit().is_err(), "two in a row mark it dead");
//! // b is now the last live endpoint: it is never marked dead.
//! for _ in 0..10 { b.failure(); }
//! assert!(b.admit().is_ok());
//! assert_eq!(accrual.stats().ejections, 1);
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::metrics::Transitions;

/// When an endpoint is marked dead and for how long (see the
/// [module docs](self)). Built like a builder:
///
/// ```
/// use std::time::Duration;
/// use serversets::accrual::FailureAccrual;
///
/// let policy = FailureAccrual::new()
///     .consecutive_failures(3)
///     .backoff(Duration::from_millis(50), Duration::from_secs(5));
/// assert_eq!(policy.failure_threshold(), 3);
/// assert_eq!(FailureAccrual::disabled().failure_threshold(), 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureAccrual {
    failures: u32,
    base: Duration,
    max: Duration,
    jitter: bool,
    label: Option<&'static str>,
}

impl Default for FailureAccrual {
    fn default() -> Self {
        Self::new()
    }
}

impl FailureAccrual {
    /// Failures in a row that mark an endpoint dead by default.
    pub const DEFAULT_FAILURES: u32 = 5;
    /// The first backoff by default.
    pub const DEFAULT_BASE_BACKOFF: Duration = Duration::from_millis(100);
    /// The longest backoff by default: short, so that a server that comes
    /// back is used again within about a second.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);

    /// The defaults: 5 failures in a row, a jittered backoff from 100 ms
    /// doubling up to 1 s.
    pub const fn new() -> Self {
        FailureAccrual {
            failures: Self::DEFAULT_FAILURES,
            base: Self::DEFAULT_BASE_BACKOFF,
            max: Self::DEFAULT_MAX_BACKOFF,
            jitter: true,
            label: None,
        }
    }

    /// Never marks an endpoint dead.
    pub const fn disabled() -> Self {
        Self::new().consecutive_failures(0)
    }

    /// Failures in a row that mark an endpoint dead (0: never).
    pub const fn consecutive_failures(mut self, failures: u32) -> Self {
        self.failures = failures;
        self
    }

    /// The first backoff and the longest (the backoff doubles with each
    /// marking in a row; a `max` below `base` counts as `base`).
    pub const fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max = max;
        self
    }

    /// Whether backoffs are jittered (default on): a random duration in
    /// the upper half of the backoff, so clients do not probe in step.
    pub const fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Counts markings and revivals as the metrics
    /// [`EJECTIONS`](crate::metrics::EJECTIONS) and
    /// [`REVIVALS`](crate::metrics::REVIVALS) with the label `set` =
    /// `label` (default: no label, no metrics). The typed sets set their
    /// own (`memcache`, `http`, `pool`) unless one is set already.
    ///
    /// ```
    /// use serversets::accrual::FailureAccrual;
    ///
    /// let policy = FailureAccrual::new().metrics_label("users-api");
    /// assert_eq!(policy.label(), Some("users-api"));
    /// assert_eq!(FailureAccrual::new().label(), None);
    /// ```
    pub const fn metrics_label(mut self, label: &'static str) -> Self {
        self.label = Some(label);
        self
    }

    /// The `set` label of its metrics, if it has one.
    pub const fn label(&self) -> Option<&'static str> {
        self.label
    }

    /// Failures in a row that mark an endpoint dead (0: never).
    pub const fn failure_threshold(&self) -> u32 {
        self.failures
    }

    /// The first backoff.
    pub const fn base_backoff(&self) -> Duration {
        self.base
    }

    /// The longest backoff.
    pub fn max_backoff(&self) -> Duration {
        self.max.max(self.base)
    }

    /// Whether backoffs are jittered.
    pub const fn is_jittered(&self) -> bool {
        self.jitter
    }

    /// Whether endpoints are ever marked dead.
    pub const fn is_enabled(&self) -> bool {
        self.failures > 0
    }

    /// The backoff of the `level`-th marking in a row (0 for the first),
    /// before jitter: `base * 2^level`, at most the maximum.
    ///
    /// ```
    /// use std::time::Duration;
    /// use serversets::accrual::FailureAccrual;
    ///
    /// let p = FailureAccrual::new().backoff(Duration::from_secs(1), Duration::from_secs(30));
    /// let secs: Vec<u64> = (0..7).map(|l| p.backoff_at_level(l).as_secs()).collect();
    /// assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
    /// ```
    pub fn backoff_at_level(&self, level: u32) -> Duration {
        let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max_backoff())
    }

    /// The backoff of the `level`-th marking with jitter `random` (in
    /// `0.0..=1.0`): the upper half of the backoff, `b/2 + random * b/2`.
    fn jittered(&self, level: u32, random: f64) -> Duration {
        let backoff = self.backoff_at_level(level);
        if !self.jitter {
            return backoff;
        }
        let half = backoff / 2;
        half + half.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// Counts of one [`Accrual`] (see [`Accrual::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccrualStats {
    /// Times an endpoint was marked dead (Finagle's `ejections` /
    /// `removals`), probes that failed included.
    pub ejections: u64,
    /// Times a dead endpoint came back (Finagle's `revivals`).
    pub revivals: u64,
    /// Endpoints tracked now.
    pub tracked: usize,
    /// Of those, dead now.
    pub dead: usize,
}

/// The failure accrual of one typed set: the policy and the count of its
/// live endpoints. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Accrual {
    group: Arc<Group>,
}

#[derive(Debug)]
struct Group {
    policy: FailureAccrual,
    epoch: Instant,
    /// Trackers not retired.
    tracked: AtomicUsize,
    /// Trackers not retired and not dead.
    live: AtomicUsize,
    /// Serializes markings (so two endpoints cannot both count the other
    /// as the live one) and retirements.
    mark: Mutex<()>,
    ejections: AtomicU64,
    revivals: AtomicU64,
    /// The same two, as metrics.
    metrics: Transitions,
}

impl Group {
    /// Nanoseconds since the epoch, at least 1 (0 means "alive").
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.mark.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Accrual {
    /// An accrual with this policy and no endpoints yet.
    pub fn new(policy: FailureAccrual) -> Self {
        Accrual {
            group: Arc::new(Group {
                metrics: Transitions::new(policy.label),
                policy,
                epoch: Instant::now(),
                tracked: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                mark: Mutex::new(()),
                ejections: AtomicU64::new(0),
                revivals: AtomicU64::new(0),
            }),
        }
    }

    /// Starts tracking one more endpoint, live. It stops counting when the
    /// tracker is [retired](Tracker::retire) or dropped.
    pub fn track(&self) -> Arc<Tracker> {
        let _mark = self.group.lock();
        self.group.tracked.fetch_add(1, Ordering::SeqCst);
        self.group.live.fetch_add(1, Ordering::SeqCst);
        Arc::new(Tracker {
            group: Arc::clone(&self.group),
            failures: AtomicU32::new(0),
            level: AtomicU32::new(0),
            dead_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        })
    }

    /// The policy.
    pub fn policy(&self) -> &FailureAccrual {
        &self.group.policy
    }

    /// Markings plus revivals so far: changes whenever an endpoint is
    /// marked dead or revived (one load of two counters, for callers that
    /// rebuild something when that happens).
    pub fn transitions(&self) -> u64 {
        self.group
            .ejections
            .load(Ordering::SeqCst)
            .wrapping_add(self.group.revivals.load(Ordering::SeqCst))
    }

    /// Markings, revivals and how many endpoints are dead now.
    pub fn stats(&self) -> AccrualStats {
        let tracked = self.group.tracked.load(Ordering::SeqCst);
        let live = self.group.live.load(Ordering::SeqCst);
        AccrualStats {
            ejections: self.group.ejections.load(Ordering::Relaxed),
            revivals: self.group.revivals.load(Ordering::Relaxed),
            tracked,
            dead: tracked.saturating_sub(live),
        }
    }
}

/// Why [`Tracker::admit`] refused an endpoint: it is marked dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dead {
    /// When its backoff ends (a probe is admitted then), or when the
    /// running probe started being possible if one is under way.
    pub until: Instant,
}

/// The state of one endpoint (see [`Tracker::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// In rotation.
    Live,
    /// Marked dead until this time; then a probe is admitted.
    Dead {
        /// When the backoff ends.
        until: Instant,
    },
    /// Marked dead, its backoff over: the next admitted call probes it.
    Probing,
}

/// One endpoint's failure accrual: consecutive failures, whether it is
/// dead and until when. Made by [`Accrual::track`].
#[derive(Debug)]
pub struct Tracker {
    group: Arc<Group>,
    failures: AtomicU32,
    /// Markings in a row without a revival: the next backoff's exponent.
    level: AtomicU32,
    /// 0 while live, else nanoseconds since the epoch until which it is dead.
    dead_until: AtomicU64,
    /// A probe is under way.
    probing: AtomicBool,
    retired: AtomicBool,
}

/// A call admitted to an endpoint. Report how it went with
/// [`Permit::success`] or [`Permit::failure`]; dropping it reports nothing
/// (a cancelled call says nothing about the endpoint), and a probe's
/// permit dropped that way lets the next call probe.
#[derive(Debug)]
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Permit {
    tracker: Arc<Tracker>,
    probe: bool,
}

impl Permit {
    /// Whether this call probes a dead endpoint.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded.
    pub fn success(self) {
        self.tracker.succeeded(self.probe);
    }

    /// The call failed (an error or a timeout that counts against the
    /// endpoint). Returns whether the endpoint is dead now.
    pub fn failure(self) -> bool {
        let now = self.tracker.group.now();
        self.tracker.failed(self.probe, now)
    }

    /// The tracker this permit is for.
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe {
            self.tracker.probing.store(false, Ordering::SeqCst);
        }
    }
}

impl Tracker {
    /// Admits a call: at once while live; while dead, only one probe once
    /// the backoff is over, else [`Dead`].
    pub fn admit(self: &Arc<Self>) -> Result<Permit, Dead> {
        let until = self.dead_until.load(Ordering::SeqCst);
        if until == 0 {
            return Ok(Permit {
                tracker: Arc::clone(self),
                probe: false,
            });
        }
        self.admit_dead(until, self.group.now())
    }

    fn admit_dead(self: &Arc<Self>, until: u64, now: u64) -> Result<Permit, Dead> {
        let dead = Dead {
            until: self.instant(until),
        };
        if now < until {
            return Err(dead);
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(dead);
        }
        // Revived between the two loads: an ordinary call.
        let probe = self.dead_until.load(Ordering::SeqCst) != 0;
        if !probe {
            self.probing.store(false, Ordering::SeqCst);
        }
        Ok(Permit {
            tracker: Arc::clone(self),
            probe,
        })
    }

    /// Whether a call would be admitted now (without taking the probe).
    pub fn is_available(&self) -> bool {
        match self.dead_until.load(Ordering::SeqCst) {
            0 => true,
            until => self.group.now() >= until && !self.probing.load(Ordering::SeqCst),
        }
    }

    /// Whether the endpoint is marked dead (its backoff may be over).
    pub fn is_dead(&self) -> bool {
        self.dead_until.load(Ordering::SeqCst) != 0
    }

    /// Live, dead until a time, or waiting for its probe.
    pub fn state(&self) -> EndpointState {
        match self.dead_until.load(Ordering::SeqCst) {
            0 => EndpointState::Live,
            until if self.group.now() < until => EndpointState::Dead {
                until: self.instant(until),
            },
            _ => EndpointState::Probing,
        }
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A call outside a [`Permit`] succeeded: resets the failure count
    /// (a dead endpoint is revived only by its probe).
    pub fn success(&self) {
        self.succeeded(false);
    }

    /// A call outside a [`Permit`] failed. Returns whether the endpoint is
    /// dead now. Failures of calls made while it is dead (admitted before
    /// it was marked) change nothing.
    pub fn failure(&self) -> bool {
        self.failed(false, self.group.now())
    }

    /// The endpoint left the set: it no longer counts as live for the
    /// others. Dropping the tracker does the same.
    pub fn retire(&self) {
        let _mark = self.group.lock();
        if self.retired.swap(true, Ordering::SeqCst) {
            return;
        }
        self.group.tracked.fetch_sub(1, Ordering::SeqCst);
        if self.dead_until.load(Ordering::SeqCst) == 0 {
            self.group.live.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn succeeded(&self, probe: bool) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if probe {
            let _mark = self.group.lock();
            if self.dead_until.swap(0, Ordering::SeqCst) != 0 {
                self.level.store(0, Ordering::SeqCst);
                if !self.retired.load(Ordering::SeqCst) {
                    self.group.live.fetch_add(1, Ordering::SeqCst);
                }
                self.group.revivals.fetch_add(1, Ordering::SeqCst);
                self.group.metrics.revivals.increment(1);
                tracing::info!("endpoint revived by a successful probe");
            }
        }
    }

    fn failed(&self, probe: bool, now: u64) -> bool {
        let policy = &self.group.policy;
        if self.dead_until.load(Ordering::SeqCst) != 0 {
            if probe {
                let _mark = self.group.lock();
                self.mark_dead(now);
            }
            return true;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if !policy.is_enabled() || failures < policy.failures {
            return false;
        }
        let _mark = self.group.lock();
        if self.dead_until.load(Ordering::SeqCst) != 0 {
            return true;
        }
        if self.retired.load(Ordering::SeqCst) {
            return false;
        }
        if self.group.live.load(Ordering::SeqCst) <= 1 {
            tracing::debug!(failures, "not marking the last live endpoint dead");
            return false;
        }
        self.group.live.fetch_sub(1, Ordering::SeqCst);
        self.mark_dead(now);
        true
    }

    /// Marks dead for the next backoff. Called with the group lock held.
    fn mark_dead(&self, now: u64) {
        let level = self.level.fetch_add(1, Ordering::SeqCst);
        let backoff = self
            .group
            .policy
            .jittered(level, rand::rng().random::<f64>());
        let until = now
            .saturating_add(u64::try_from(backoff.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        self.failures.store(0, Ordering::Relaxed);
        self.dead_until.store(until, Ordering::SeqCst);
        self.group.ejections.fetch_add(1, Ordering::SeqCst);
        self.group.metrics.ejections.increment(1);
        tracing::warn!(?backoff, level, "endpoint marked dead");
    }

    fn instant(&self, nanos: u64) -> Instant {
        let epoch = self.group.epoch;
        epoch
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or(epoch)
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.retire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(failures: u32) -> FailureAccrual {
        FailureAccrual::new()
            .consecutive_failures(failures)
            .backoff(Duration::from_secs(10), Duration::from_secs(80))
            .jitter(false)
    }

    /// Moves a dead tracker's backoff into the past.
    fn expire(t: &Tracker) {
        if t.dead_until.load(Ordering::SeqCst) != 0 {
            t.dead_until.store(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn consecutive_failures_mark_dead_and_a_success_resets_the_count() {
        let accrual = Accrual::new(policy(3));
        let a = accrual.track();
        let _b = accrual.track();
        a.failure();
        a.failure();
        a.success();
        a.failure();
        a.failure();
        assert!(a.admit().is_ok());
        assert!(a.failure());
        let dead = a.admit().expect_err("dead");
        assert!(dead.until > Instant::now() + Duration::from_secs(9));
        assert_eq!(accrual.stats().dead, 1);
        assert_eq!(accrual.stats().ejections, 1);
    }

    #[test]
    fn one_probe_at_a_time_and_it_decides() {
        let accrual = Accrual::new(policy(1));
        let a = accrual.track();
        let _b = accrual.track();
        assert!(a.failure());
        expire(&a);
        assert_eq!(a.state(), EndpointState::Probing);
        let probe = a.admit().expect("probe");
        assert!(probe.is_probe());
        assert!(a.admit().is_err(), "a second caller waits for the probe");
        // A failed probe: dead again, twice as long.
        assert!(probe.failure());
        let until = a.admit().expect_err("dead again").until;
        assert!(until > Instant::now() + Duration::from_secs(19));
        // A probe cancelled says nothing; the next caller probes.
        expire(&a);
        drop(a.admit().expect("probe"));
        let probe = a.admit().expect("probe again");
        probe.success();
        assert_eq!(a.state(), EndpointState::Live);
        let permit = a.admit().expect("live");
        assert!(!permit.is_probe());
        let stats = accrual.stats();
        assert_eq!((stats.ejections, stats.revivals, stats.dead), (2, 1, 0));
        // Revival reset the level: the next marking is the base backoff.
        drop(permit);
        assert!(a.failure());
        let until = a.admit().expect_err("dead").until;
        assert!(until < Instant::now() + Duration::from_secs(11));
    }

    #[test]
    fn failures_of_calls_admitted_before_the_marking_change_nothing() {
        let accrual = Accrual::new(policy(1));
        let a = accrual.track();
        let _b = accrual.track();
        let late: Vec<Permit> = (0..5).map(|_| a.admit().expect("live")).collect();
        assert!(a.failure());
        for permit in late {
            assert!(permit.failure());
        }
        assert_eq!(accrual.stats().ejections, 1);
        assert_eq!(a.level.load(Ordering::SeqCst), 1);
        // Nor does a success outside a probe revive it.
        a.success();
        assert!(a.is_dead());
    }

    #[test]
    fn the_last_live_endpoint_is_never_marked_dead() {
        let accrual = Accrual::new(policy(1));
        let a = accrual.track();
        let b = accrual.track();
        assert!(a.failure());
        assert!(!b.failure());
        assert!(b.admit().is_ok());
        // A retired endpoint does not count as live.
        let c = accrual.track();
        c.retire();
        assert!(!b.failure());
        drop(c);
        // Once a revives, b may be marked.
        expire(&a);
        a.admit().expect("probe").success();
        assert!(b.failure());
        assert!(!a.failure(), "now a is the last live one");
        assert_eq!(accrual.stats().tracked, 2);
    }

    #[test]
    fn markings_and_revivals_are_counted_under_the_label() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let (labelled, unlabelled) = metrics::with_local_recorder(&recorder, || {
            (
                Accrual::new(policy(1).metrics_label("test")),
                Accrual::new(policy(1)),
            )
        });
        for accrual in [&labelled, &unlabelled] {
            let a = accrual.track();
            let _b = accrual.track();
            assert!(a.failure());
            expire(&a);
            a.admit().expect("probe").success();
            assert!(a.failure());
        }
        let mut counts: Vec<(String, Vec<String>, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let labels = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                let DebugValue::Counter(n) = value else {
                    panic!("{key:?} is not a counter");
                };
                (key.key().name().to_owned(), labels, n)
            })
            .collect();
        counts.sort();
        let set = vec!["set=test".to_owned()];
        assert_eq!(
            counts,
            [
                (crate::metrics::EJECTIONS.to_owned(), set.clone(), 2),
                (crate::metrics::REVIVALS.to_owned(), set, 1),
            ],
            "the policy without a label records nothing"
        );
    }

    #[test]
    fn disabled_never_marks() {
        let accrual = Accrual::new(FailureAccrual::disabled());
        let a = accrual.track();
        let _b = accrual.track();
        for _ in 0..100 {
            assert!(!a.failure());
        }
        assert!(a.admit().is_ok());
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let p = policy(1).jitter(true);
        assert_eq!(p.jittered(0, 0.0), Duration::from_secs(5));
        assert_eq!(p.jittered(0, 1.0), Duration::from_secs(10));
        assert_eq!(p.jittered(5, 0.5), Duration::from_secs(60));
        assert_eq!(p.jittered(0, f64::NAN.max(2.0)), Duration::from_secs(10));
        assert_eq!(
            p.jitter(false).jittered(1, 0.3),
            Duration::from_secs(20),
            "no jitter: the backoff itself"
        );
    }

    #[derive(Debug, Clone)]
    enum Step {
        Track,
        Retire(usize),
        Fail(usize),
        Succeed(usize),
        Probe(usize, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => Just(Step::Track),
            1 => (0..8usize).prop_map(Step::Retire),
            6 => (0..8usize).prop_map(Step::Fail),
            2 => (0..8usize).prop_map(Step::Succeed),
            2 => (0..8usize, any::<bool>()).prop_map(|(i, ok)| Step::Probe(i, ok)),
        ]
    }

    proptest! {
        /// Whatever happens, the live count matches the trackers, and a
        /// group with tracked endpoints of which one was live never loses
        /// its last live one to a failure.
        #[test]
        fn live_count_matches_and_the_last_live_one_stays(steps in prop::collection::vec(step(), 1..200)) {
            let accrual = Accrual::new(policy(2));
            let mut trackers: Vec<Arc<Tracker>> = (0..3).map(|_| accrual.track()).collect();
            for step in steps {
                let live_before = trackers.iter().filter(|t| !t.is_dead()).count();
                let failed = matches!(step, Step::Fail(_) | Step::Probe(_, false));
                match step {
                    Step::Track => trackers.push(accrual.track()),
                    Step::Retire(i) => if !trackers.is_empty() {
                        trackers.remove(i % trackers.len());
                    },
                    Step::Fail(i) => if let Some(t) = trackers.get(i % trackers.len().max(1)) {
                        t.failure();
                    },
                    Step::Succeed(i) => if let Some(t) = trackers.get(i % trackers.len().max(1)) {
                        t.success();
                    },
                    Step::Probe(i, ok) => if let Some(t) = trackers.get(i % trackers.len().max(1)) {
                        expire(t);
                        if let Ok(permit) = t.admit() {
                            if ok { permit.success() } else { let _ = permit.failure(); }
                        }
                    },
                }
                let live = trackers.iter().filter(|t| !t.is_dead()).count();
                let stats = accrual.stats();
                prop_assert_eq!(stats.tracked, trackers.len());
                prop_assert_eq!(stats.dead, trackers.len() - live);
                if failed && live_before >= 1 {
                    prop_assert!(live >= 1, "a failure took the last live endpoint");
                }
            }
        }
    }
}
