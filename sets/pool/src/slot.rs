//! One endpoint's part of the pool: its idle connections, its active
//! count and its health; and the guard a checkout hands out.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serversets::accrual::Tracker;
use serversets::Endpoint;
use tokio::sync::Notify;
use tracing::debug;

use crate::connector::BrokenCheck;

/// Locks a mutex, recovering the guard if a thread panicked while holding
/// it (the data it guards is a plain list, valid at every step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wakes checkouts waiting for a free slot. Shared by every endpoint of a
/// pool; holds nothing that refers back to them.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    pub(crate) notify: Notify,
    /// Checkouts registered with `notify`; returns skip the wake-up when
    /// there are none.
    pub(crate) waiters: AtomicUsize,
}

impl Signal {
    /// Wakes one waiting checkout, if any.
    fn wake_one(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_one();
        }
    }
}

/// An idle connection and when it was returned.
struct Idle<T> {
    conn: T,
    since: Instant,
}

/// One endpoint of the pool.
pub(crate) struct Slot<T> {
    pub(crate) endpoint: Endpoint,
    /// Checked out or being opened.
    active: AtomicUsize,
    /// Oldest first; checkouts take the newest.
    idle: Mutex<Vec<Idle<T>>>,
    /// Left the set (or the pool closed): returns close their connection.
    removed: AtomicBool,
    /// The endpoint's failure accrual (one of the pool's `Accrual`).
    pub(crate) tracker: Arc<Tracker>,
    max_idle: usize,
    idle_timeout: Option<Duration>,
    signal: Arc<Signal>,
    /// The connector's [`Connector::is_broken`](crate::Connector::is_broken).
    check: Arc<dyn BrokenCheck<T>>,
}

impl<T> Slot<T> {
    pub(crate) fn new(
        endpoint: Endpoint,
        tracker: Arc<Tracker>,
        signal: Arc<Signal>,
        check: Arc<dyn BrokenCheck<T>>,
        options: &crate::Options,
    ) -> Self {
        Slot {
            endpoint,
            active: AtomicUsize::new(0),
            idle: Mutex::new(Vec::with_capacity(options.max_idle.min(64))),
            removed: AtomicBool::new(false),
            tracker,
            max_idle: options.max_idle,
            idle_timeout: options.idle_timeout,
            signal,
            check,
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes one active slot if the count is still `seen` (so concurrent
    /// checkouts never push an endpoint past the least-active choice).
    pub(crate) fn reserve(self: &Arc<Self>, seen: usize) -> Option<Reservation<T>> {
        self.active
            .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(|_| Reservation {
                slot: Arc::clone(self),
            })
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    pub(crate) fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The newest idle connection, unless it is older than the idle
    /// timeout (then every idle connection is, and all are closed).
    /// Connections the connector reports broken are closed and skipped.
    pub(crate) fn take_idle(&self) -> Option<T> {
        loop {
            let mut idle = lock(&self.idle);
            let newest = idle.pop()?;
            let fresh = match self.idle_timeout {
                Some(timeout) => newest.since.elapsed() < timeout,
                None => true,
            };
            if !fresh {
                let stale = std::mem::take(&mut *idle);
                drop(idle);
                drop(stale);
                drop(newest);
                return None;
            }
            drop(idle);
            if !self.check.is_broken(&newest.conn) {
                return Some(newest.conn);
            }
            debug!(endpoint = %self.endpoint, "closing a broken idle connection");
            drop(newest);
        }
    }

    /// Puts a returned connection on the idle list, or closes it if the
    /// endpoint left, or the list is full.
    fn put_idle(&self, conn: T) {
        let since = Instant::now();
        let rejected = {
            let mut idle = lock(&self.idle);
            if self.removed.load(Ordering::Relaxed) || idle.len() >= self.max_idle {
                Some(conn)
            } else {
                idle.push(Idle { conn, since });
                None
            }
        };
        drop(rejected);
    }

    /// Closes idle connections older than the idle timeout.
    pub(crate) fn sweep(&self) {
        let Some(timeout) = self.idle_timeout else {
            return;
        };
        let stale: Vec<Idle<T>> = {
            let mut idle = lock(&self.idle);
            let expired = idle.partition_point(|i| i.since.elapsed() >= timeout);
            idle.drain(..expired).collect()
        };
        drop(stale);
    }

    /// Closes every idle connection.
    pub(crate) fn drain_idle(&self) {
        let idle = std::mem::take(&mut *lock(&self.idle));
        drop(idle);
    }

    /// The endpoint left the set (or the pool closed): close its idle
    /// connections now and the checked-out ones when they come back, and
    /// stop counting it as live for the others' failure accrual.
    pub(crate) fn retire(&self) {
        self.removed.store(true, Ordering::Relaxed);
        self.tracker.retire();
        self.drain_idle();
    }

    /// Reports a failure (a failed connect, a connection marked broken)
    /// outside a probe; closes the idle connections if the endpoint is dead.
    pub(crate) fn failed(&self) {
        let dead = self.tracker.failure();
        self.after_failure(dead);
    }

    /// After a failure was reported: a dead endpoint's idle connections
    /// are closed (they would not be used, and are likely as bad).
    pub(crate) fn after_failure(&self, dead: bool) {
        if dead {
            debug!(endpoint = %self.endpoint, "endpoint marked dead; closing its idle connections");
            self.drain_idle();
        }
    }

    /// A connection came back healthy: resets the failure count. (Only
    /// when there is one, so the common return reads no clock.)
    fn returned_healthy(&self) {
        if self.tracker.consecutive_failures() != 0 {
            self.tracker.success();
        }
    }
}

/// One active slot taken on an endpoint; given back on drop, waking one
/// waiting checkout.
pub(crate) struct Reservation<T> {
    pub(crate) slot: Arc<Slot<T>>,
}

impl<T> Drop for Reservation<T> {
    fn drop(&mut self) {
        self.slot.active.fetch_sub(1, Ordering::SeqCst);
        self.slot.signal.wake_one();
    }
}

/// A checked-out connection. It derefs to the connection; dropping it
/// returns the connection to its endpoint's idle list (or closes it when
/// the list is full, the endpoint left the set, it was marked broken or the
/// [connector reports it broken](crate::Connector::is_broken)) and wakes
/// one waiting checkout.
pub struct Pooled<T> {
    // `ManuallyDrop` rather than `Option<T>`: `Drop` and `into_inner` move
    // the connection out, and with an `Option` every `Deref` would need a
    // panicking `None` branch (this crate has none); the two `unsafe`
    // blocks below are the whole cost.
    conn: ManuallyDrop<T>,
    reservation: Reservation<T>,
    broken: bool,
}

impl<T> Pooled<T> {
    pub(crate) fn new(reservation: Reservation<T>, conn: T) -> Self {
        Pooled {
            conn: ManuallyDrop::new(conn),
            reservation,
            broken: false,
        }
    }

    /// The endpoint the connection goes to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.reservation.slot.endpoint
    }

    /// Marks the connection broken: it is closed instead of returned, and
    /// counts as a failure of its endpoint (see
    /// [`Options::failure_accrual()`](crate::Options::failure_accrual())). To close a
    /// connection without blaming the endpoint, use
    /// [`Connector::is_broken`](crate::Connector::is_broken).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether [`Pooled::mark_broken`] was called.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Takes the connection out of the pool: it is no longer counted as
    /// active and never returns (nor counts as a success or a failure).
    pub fn into_inner(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so each field is moved out
        // exactly once, here, and not used afterwards.
        let (conn, reservation) = unsafe {
            (
                ManuallyDrop::take(&mut this.conn),
                std::ptr::read(&this.reservation),
            )
        };
        drop(reservation);
        conn
    }
}

impl<T> Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.conn
    }
}

impl<T> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.conn
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and the connection is not used after;
        // `into_inner` never lets `drop` run.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        let slot = &self.reservation.slot;
        if self.broken {
            drop(conn);
            slot.failed();
        } else if slot.check.is_broken(&conn) {
            // The client closed itself: not the endpoint's fault.
            drop(conn);
        } else {
            slot.returned_healthy();
            slot.put_idle(conn);
        }
        // `reservation` is dropped next: the active count falls and a
        // waiting checkout wakes, after the connection is idle.
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("endpoint", self.endpoint())
            .field("conn", &*self.conn)
            .field("broken", &self.broken)
            .finish()
    }
}
