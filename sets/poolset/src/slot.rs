//! One endpoint's part of the pool: its idle connections, its active
//! count and its health; and the guard a checkout hands out.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use serversets::Endpoint;
use tokio::sync::Notify;
use tracing::info;

use crate::pool::Shared;

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
    connect_failures: AtomicU32,
    broken_streak: AtomicU32,
    /// Ejections in a row without a success: the backoff doubles with it.
    level: AtomicU32,
    /// Nanoseconds since `epoch` until which the endpoint is skipped; 0 if
    /// it never was ejected.
    ejected_until: AtomicU64,
    max_idle: usize,
    idle_timeout: Option<Duration>,
    eject_after: u32,
    signal: Arc<Signal>,
    shared: Weak<Shared<T>>,
}

/// Nanoseconds from `epoch` to now.
pub(crate) fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl<T> Slot<T> {
    pub(crate) fn new(
        endpoint: Endpoint,
        shared: Weak<Shared<T>>,
        signal: Arc<Signal>,
        options: &crate::Options,
    ) -> Self {
        Slot {
            endpoint,
            active: AtomicUsize::new(0),
            idle: Mutex::new(Vec::with_capacity(options.max_idle.min(64))),
            removed: AtomicBool::new(false),
            connect_failures: AtomicU32::new(0),
            broken_streak: AtomicU32::new(0),
            level: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            max_idle: options.max_idle,
            idle_timeout: options.idle_timeout,
            eject_after: options.ejection.consecutive_failures,
            signal,
            shared,
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

    /// The raw ejection deadline (0: never ejected).
    pub(crate) fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Ordering::Relaxed)
    }

    pub(crate) fn is_ejected_at(&self, now: u64) -> bool {
        self.ejected_until() > now
    }

    pub(crate) fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.connect_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn consecutive_broken(&self) -> u32 {
        self.broken_streak.load(Ordering::Relaxed)
    }

    /// The newest idle connection, unless it is older than the idle
    /// timeout (then every idle connection is, and all are closed).
    pub(crate) fn take_idle(&self) -> Option<T> {
        let mut idle = lock(&self.idle);
        let newest = idle.pop()?;
        let fresh = match self.idle_timeout {
            Some(timeout) => newest.since.elapsed() < timeout,
            None => true,
        };
        if fresh {
            drop(idle);
            return Some(newest.conn);
        }
        let stale = std::mem::take(&mut *idle);
        drop(idle);
        drop(stale);
        drop(newest);
        None
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

    /// The endpoint left the set: close its idle connections now and the
    /// checked-out ones when they come back.
    pub(crate) fn retire(&self) {
        self.removed.store(true, Ordering::Relaxed);
        self.drain_idle();
    }

    /// Ejections in a row so far (the next backoff's exponent).
    pub(crate) fn ejection_level(&self) -> u32 {
        self.level.load(Ordering::Relaxed)
    }

    /// Ejects the endpoint until `until` (nanoseconds since the epoch) and
    /// closes its idle connections.
    pub(crate) fn eject(&self, until: u64) {
        let _ = self
            .level
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_add(1));
        self.ejected_until.store(until, Ordering::Relaxed);
        self.drain_idle();
    }

    pub(crate) fn connect_succeeded(&self) {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
        if self.broken_streak.load(Ordering::Relaxed) == 0 {
            self.recovered();
        }
    }

    pub(crate) fn connect_failed(&self) {
        let failures = self.connect_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if self.eject_after > 0 && failures >= self.eject_after {
            if let Some(shared) = self.shared.upgrade() {
                shared.try_eject(self, "connects failed");
            }
        }
    }

    fn returned_healthy(&self) {
        if self.broken_streak.load(Ordering::Relaxed) != 0 {
            self.broken_streak.store(0, Ordering::Relaxed);
        }
        if self.connect_failures.load(Ordering::Relaxed) == 0 {
            self.recovered();
        }
    }

    fn returned_broken(&self) {
        let streak = self.broken_streak.fetch_add(1, Ordering::Relaxed) + 1;
        if self.eject_after > 0 && streak >= self.eject_after {
            if let Some(shared) = self.shared.upgrade() {
                shared.try_eject(self, "connections were marked broken");
            }
        }
    }

    /// A success after ejections resets the backoff.
    fn recovered(&self) {
        if self.level.load(Ordering::Relaxed) != 0 && self.level.swap(0, Ordering::Relaxed) != 0 {
            self.ejected_until.store(0, Ordering::Relaxed);
            info!(endpoint = %self.endpoint, "endpoint recovered; back in rotation");
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
/// the list is full, the endpoint left the set, or it was marked broken)
/// and wakes one waiting checkout.
pub struct Pooled<T> {
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
    /// counts toward ejecting its endpoint (see
    /// [`Ejection`](crate::Ejection)).
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Whether [`Pooled::mark_broken`] was called.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Takes the connection out of the pool: it is no longer counted as
    /// active and never returns (nor counts as broken).
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
            slot.returned_broken();
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
