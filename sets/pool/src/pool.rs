//! The pool over a set: the endpoint list, the least-active choice,
//! waiting, failure accrual and the task that follows the source.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics::{counter, Counter};
use rand::Rng;
use serversets::accrual::{Accrual, AccrualStats, EndpointState, Permit};
use serversets::{Changes, Endpoint, Snapshot, Source};
use tracing::{debug, warn};

use crate::connector::{BrokenCheck, Connector};
use crate::error::Error;
use crate::options::Options;
use crate::slot::{lock, Pooled, Reservation, Signal, Slot};

/// Least-request connection pools over a serverset: one pool per endpoint,
/// over any connection type a [`Connector`] opens.
///
/// A checkout goes to the endpoint with the fewest active (checked-out)
/// connections, ties broken at random, and hands out its newest idle
/// connection or opens one. Endpoints that keep failing are marked dead
/// for a while by the shared failure accrual (see
/// [`Options::failure_accrual()`]); a failed connect is retried on other
/// endpoints. The pool follows its [`Source`] by itself: endpoints that
/// leave are drained, new ones are used at once. Cloning is cheap and
/// shares the pools.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use serversets_pool::{PoolSet, TcpConnector};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let servers = serversets::FixedSet::parse("127.0.0.1:7000,127.0.0.1:7001")?;
/// let pool = PoolSet::new(servers, TcpConnector::new());
///
/// let mut conn = pool.checkout().await?;      // derefs to a TcpStream
/// conn.write_all(b"ping\n").await?;
/// let mut reply = [0u8; 5];
/// if conn.read_exact(&mut reply).await.is_err() {
///     conn.mark_broken();                     // closed, not reused
/// }
/// drop(conn);                                 // back to the idle list
///
/// // Any connection type: a closure from an endpoint to a future.
/// let custom = PoolSet::new(
///     serversets::FixedSet::parse("127.0.0.1:7000")?,
///     |endpoint: serversets::Endpoint| async move {
///         tokio::net::TcpStream::connect(endpoint.to_string()).await
///     },
/// );
/// let _stream = custom.checkout().await?;
/// # Ok(()) }
/// ```
pub struct PoolSet<C: Connector> {
    inner: Arc<Inner<C>>,
}

impl<C: Connector> Clone for PoolSet<C> {
    fn clone(&self) -> Self {
        PoolSet {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Connector> std::fmt::Debug for PoolSet<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSet")
            .field("endpoints", &self.inner.shared.list.load().len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// What one endpoint's pool looks like now (see [`PoolSet::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Connections checked out or being opened.
    pub active: usize,
    /// Idle connections.
    pub idle: usize,
    /// Whether it is marked dead by the failure accrual: out of rotation,
    /// whether its backoff is still running or over (then the next
    /// checkout that picks it probes it, and it stays dead until a probe
    /// succeeds).
    pub ejected: bool,
    /// Failures in a row (failed or timed-out connects and connections
    /// marked broken alike), reset by a success and by the marking itself.
    pub consecutive_failures: u32,
}

struct Inner<C: Connector> {
    /// Shared with the slots, which ask it [`Connector::is_broken`].
    connector: Arc<C>,
    shared: Arc<Shared<C::Connection>>,
    follower: Mutex<Follower>,
    /// True until the follower task is spawned.
    follower_pending: AtomicBool,
}

enum Follower {
    /// Created outside a runtime: spawned on the first checkout.
    Pending {
        source: Box<dyn Source>,
        changes: Changes,
    },
    Running(tokio::task::AbortHandle),
    Stopped,
}

impl<C: Connector> Drop for Inner<C> {
    fn drop(&mut self) {
        self.shared.close();
        if let Follower::Running(handle) = std::mem::replace(
            &mut *self.follower.get_mut().unwrap_or_else(|e| e.into_inner()),
            Follower::Stopped,
        ) {
            handle.abort();
        }
    }
}

/// The state every handle, guard and the follower share (through `Weak`
/// for guards, so nothing forms a cycle).
pub(crate) struct Shared<T> {
    options: Options,
    list: ArcSwap<Slots<T>>,
    signal: Arc<Signal>,
    closed: AtomicBool,
    /// Serializes list rebuilds with `close`.
    control: Mutex<()>,
    /// Failure accrual: one tracker per slot.
    accrual: Accrual,
    /// The connector's `is_broken`, handed to each slot.
    check: Arc<dyn BrokenCheck<T>>,
    /// Checkouts, counted (see [`Options::metrics_label`]).
    requests: Counter,
    /// Failed checkouts, counted.
    errors: Counter,
}

/// A list of endpoints' slots.
type Slots<T> = Vec<Arc<Slot<T>>>;

/// The outcome of one attempt to pick an endpoint.
enum Pick<T> {
    /// An active slot is held on this endpoint, with the probe's permit
    /// if the endpoint is dead and this checkout probes it.
    Reserved(Reservation<T>, Option<Permit>),
    /// Every usable endpoint is at its limit; a dead one's backoff ends at
    /// this time, if any.
    Full { wake_at: Option<Instant> },
    /// Nothing left to try: the set is empty or every endpoint was tried.
    Exhausted,
}

impl<T> Shared<T> {
    fn new(options: Options, snapshot: &Snapshot, check: Arc<dyn BrokenCheck<T>>) -> Arc<Self> {
        let mut options = options;
        options.max_active = options.max_active.max(1);
        let mut policy = options.failure_accrual.clone();
        let (requests, errors) = match options.metrics_label {
            Some(set) => {
                if policy.label().is_none() {
                    policy = policy.metrics_label(set);
                }
                (
                    counter!(serversets::metrics::REQUESTS, serversets::metrics::LABEL_SET => set),
                    counter!(serversets::metrics::REQUEST_ERRORS, serversets::metrics::LABEL_SET => set),
                )
            }
            None => (Counter::noop(), Counter::noop()),
        };
        let shared = Shared {
            accrual: Accrual::new(policy),
            requests,
            errors,
            options,
            list: ArcSwap::from_pointee(Vec::new()),
            signal: Arc::new(Signal::default()),
            closed: AtomicBool::new(false),
            control: Mutex::new(()),
            check,
        };
        let (list, _) = shared.build(snapshot, &[]);
        shared.list.store(Arc::new(list));
        Arc::new(shared)
    }

    /// The slots for `snapshot`, reusing those of `old` by endpoint, and
    /// the old slots that are gone.
    fn build(&self, snapshot: &Snapshot, old: &[Arc<Slot<T>>]) -> (Slots<T>, Slots<T>) {
        let mut reuse: HashMap<&Endpoint, &Arc<Slot<T>>> =
            old.iter().map(|s| (&s.endpoint, s)).collect();
        let mut seen = HashSet::new();
        let mut list = Vec::with_capacity(snapshot.len());
        for endpoint in snapshot.endpoints() {
            if !seen.insert(endpoint) {
                continue;
            }
            let slot = match reuse.remove(endpoint) {
                Some(slot) => Arc::clone(slot),
                None => Arc::new(Slot::new(
                    endpoint.clone(),
                    self.accrual.track(),
                    Arc::clone(&self.signal),
                    Arc::clone(&self.check),
                    &self.options,
                )),
            };
            list.push(slot);
        }
        let gone = reuse.into_values().map(Arc::clone).collect();
        (list, gone)
    }

    /// Follows a change of the set.
    fn apply(&self, snapshot: &Snapshot) {
        let _control = lock(&self.control);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let old = self.list.load_full();
        let (list, gone) = self.build(snapshot, &old);
        // Old slots are either kept or gone; the rest of the list is new.
        let added = list
            .len()
            .saturating_sub(old.len().saturating_sub(gone.len()));
        self.list.store(Arc::new(list));
        for slot in &gone {
            slot.retire();
        }
        debug!(
            endpoints = snapshot.len(),
            added,
            removed = gone.len(),
            "connection pool follows the set"
        );
        if added > 0 {
            // Waiting checkouts can use the new endpoints.
            self.signal.notify.notify_waiters();
        }
    }

    /// Closes the pool: idle connections now, checked-out ones on return.
    fn close(&self) {
        let _control = lock(&self.control);
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let old = self.list.swap(Arc::new(Vec::new()));
        for slot in old.iter() {
            slot.retire();
        }
        self.signal.notify.notify_waiters();
        debug!(endpoints = old.len(), "connection pool closed");
    }

    fn sweep(&self) {
        for slot in self.list.load().iter() {
            slot.sweep();
        }
    }

    /// Picks the usable endpoint with the fewest active connections (ties
    /// at random) that is not in `tried`, and reserves a slot on it.
    ///
    /// Usable: live, or dead with its backoff over and no probe under way
    /// (then this checkout is the probe). When every untried endpoint is
    /// dead, all of them are usable: a checkout never fails only because
    /// everything is dead.
    fn pick(&self, list: &[Arc<Slot<T>>], tried: &[Arc<Slot<T>>]) -> Pick<T> {
        let max_active = self.options.max_active;
        loop {
            let mut best: Option<(&Arc<Slot<T>>, usize)> = None;
            let mut best_pass = 0;
            let mut ties = 0u32;
            let mut untried = false;
            let mut in_rotation = false;
            let mut wake_at: Option<Instant> = None;
            for pass in 0..2 {
                // Pass 0: endpoints the accrual admits. Pass 1, only when
                // every untried endpoint is dead: all of them.
                for slot in list {
                    if slot.is_removed() || tried.iter().any(|t| Arc::ptr_eq(t, slot)) {
                        continue;
                    }
                    untried = true;
                    if pass == 0 && !slot.tracker.is_available() {
                        // Dead: note when its backoff ends. (If it is over,
                        // a probe is under way; its end wakes a waiter.)
                        if let EndpointState::Dead { until } = slot.tracker.state() {
                            wake_at = Some(wake_at.map_or(until, |w| w.min(until)));
                        }
                        continue;
                    }
                    in_rotation = true;
                    let active = slot.active();
                    if active >= max_active {
                        continue;
                    }
                    match best {
                        Some((_, least)) if active > least => {}
                        Some((_, least)) if active == least => {
                            ties += 1;
                            if rand::rng().random_range(0..ties) == 0 {
                                best = Some((slot, active));
                            }
                        }
                        _ => {
                            best = Some((slot, active));
                            ties = 1;
                        }
                    }
                }
                best_pass = pass;
                if in_rotation || !untried {
                    break;
                }
            }
            match best {
                Some((slot, seen)) => {
                    let Some(reservation) = slot.reserve(seen) else {
                        // Another checkout moved this count: choose again.
                        continue;
                    };
                    if !slot.tracker.is_dead() {
                        return Pick::Reserved(reservation, None);
                    }
                    match slot.tracker.admit() {
                        Ok(permit) if permit.is_probe() => {
                            return Pick::Reserved(reservation, Some(permit))
                        }
                        // Revived meanwhile.
                        Ok(_) => return Pick::Reserved(reservation, None),
                        // Everything is dead: use it all the same.
                        Err(_) if best_pass == 1 => return Pick::Reserved(reservation, None),
                        // Marked dead, or another checkout took the probe,
                        // since the look: choose again.
                        Err(_) => drop(reservation),
                    }
                }
                None if !untried => return Pick::Exhausted,
                None => {
                    return Pick::Full {
                        wake_at: if in_rotation { wake_at } else { None },
                    }
                }
            }
        }
    }
}

/// `start + duration`, or a time decades away if that overflows.
fn after(start: Instant, duration: Duration) -> Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    start
        .checked_add(duration)
        .or_else(|| start.checked_add(DECADES))
        .unwrap_or(start)
}

/// Counts a checkout as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn register(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<C: Connector> PoolSet<C> {
    /// A pool over `source` (a ZooKeeper [`Watch`](serversets::Watch), a
    /// `serversets::FixedSet`, ...) opening connections with `connector`,
    /// with default [`Options`].
    ///
    /// It follows the source with a tokio task; created outside a tokio
    /// runtime, it starts following on its first checkout.
    pub fn new(source: impl Source, connector: C) -> Self {
        Self::with_options(source, connector, Options::default())
    }

    /// A pool with these options.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use serversets_pool::{Options, PoolSet, TcpConnector};
    ///
    /// let servers = serversets::FixedSet::parse("127.0.0.1:7000,127.0.0.1:7001")?;
    /// let options = Options::new()
    ///     .max_active(16)
    ///     .checkout_timeout(Duration::from_millis(200));
    /// let pool = PoolSet::with_options(servers, TcpConnector::new(), options);
    /// assert_eq!(pool.options().max_active, 16);
    /// # Ok(()) }
    /// ```
    pub fn with_options(source: impl Source, connector: C, options: Options) -> Self {
        let changes = source.changes();
        let connector = Arc::new(connector);
        let check: Arc<dyn BrokenCheck<C::Connection>> = connector.clone();
        let shared = Shared::new(options, changes.snapshot(), check);
        let inner = Arc::new(Inner {
            connector,
            shared,
            follower: Mutex::new(Follower::Pending {
                source: Box::new(source),
                changes,
            }),
            follower_pending: AtomicBool::new(true),
        });
        inner.start_follower();
        PoolSet { inner }
    }

    /// Checks out a connection: from the endpoint with the fewest active
    /// connections (ties at random, dead endpoints skipped), its newest
    /// idle connection or a new one (a dead endpoint whose backoff is over
    /// is probed with a new connection). A failed connect is retried on
    /// other endpoints, up to one try per endpoint. When every endpoint is
    /// at [`Options::max_active()`], waits up to [`Options::checkout_timeout()`].
    pub async fn checkout(&self) -> Result<Pooled<C::Connection>, Error> {
        let shared = &*self.inner.shared;
        shared.requests.increment(1);
        let result = self.checkout_once().await;
        if result.is_err() {
            shared.errors.increment(1);
        }
        result
    }

    /// [`PoolSet::checkout`], uncounted.
    async fn checkout_once(&self) -> Result<Pooled<C::Connection>, Error> {
        let inner = &*self.inner;
        let shared = &*inner.shared;
        if inner.follower_pending.load(Ordering::Relaxed) {
            inner.start_follower();
        }
        let mut tried: Vec<Arc<Slot<C::Connection>>> = Vec::new();
        let mut attempts_left: Option<usize> = None;
        let mut last_error: Option<Error> = None;
        let mut deadline: Option<Instant> = None;
        let mut waiting = false;
        loop {
            let mut notified = pin!(shared.signal.notify.notified());
            let _waiting = if waiting {
                notified.as_mut().enable();
                Some(Waiting::register(&shared.signal.waiters))
            } else {
                None
            };
            if shared.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let picked = {
                let list = shared.list.load();
                attempts_left.get_or_insert(list.len().max(1));
                shared.pick(&list, &tried)
            };
            match picked {
                Pick::Reserved(reservation, probe) => {
                    if probe.is_none() {
                        if let Some(conn) = reservation.slot.take_idle() {
                            return Ok(Pooled::new(reservation, conn));
                        }
                    }
                    match inner.connect(&reservation.slot, probe).await {
                        Ok(conn) => return Ok(Pooled::new(reservation, conn)),
                        Err(error) => {
                            let slot = Arc::clone(&reservation.slot);
                            drop(reservation);
                            tried.push(slot);
                            let left = attempts_left.map_or(0, |n| n.saturating_sub(1));
                            attempts_left = Some(left);
                            if left == 0 || shared.closed.load(Ordering::Acquire) {
                                return Err(error);
                            }
                            last_error = Some(error);
                        }
                    }
                }
                Pick::Exhausted => return Err(last_error.unwrap_or(Error::NoEndpoints)),
                Pick::Full { wake_at } => {
                    if !waiting {
                        // Register for wake-ups, then look once more, so a
                        // return in between is not missed.
                        waiting = true;
                        continue;
                    }
                    if tokio::runtime::Handle::try_current().is_err() {
                        return Err(Error::NoRuntime);
                    }
                    let now = Instant::now();
                    let deadline = *deadline
                        .get_or_insert_with(|| after(now, shared.options.checkout_timeout));
                    if now >= deadline {
                        return Err(Error::CheckoutTimeout {
                            timeout: shared.options.checkout_timeout,
                            max_active: shared.options.max_active,
                            endpoints: shared
                                .list
                                .load()
                                .iter()
                                .map(|s| s.endpoint.clone())
                                .collect(),
                        });
                    }
                    let wake = match wake_at {
                        Some(at) => deadline.min(at.max(now)),
                        None => deadline,
                    };
                    let _ = tokio::time::timeout_at(wake.into(), notified).await;
                }
            }
        }
    }

    /// Closes the pool: checkouts fail with [`Error::Closed`], idle
    /// connections are closed now and checked-out ones when returned. The
    /// pool stops following its source. Dropping the last handle does the
    /// same.
    pub fn close(&self) {
        self.inner.shared.close();
        let follower = std::mem::replace(&mut *lock(&self.inner.follower), Follower::Stopped);
        self.inner.follower_pending.store(false, Ordering::Relaxed);
        if let Follower::Running(handle) = follower {
            handle.abort();
        }
    }

    /// Whether the pool is closed (explicitly, or because its source ended).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::Acquire)
    }

    /// The endpoints the pool uses now, in the set's order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner
            .shared
            .list
            .load()
            .iter()
            .map(|s| s.endpoint.clone())
            .collect()
    }

    /// Each endpoint's active and idle connections and health, in the
    /// set's order.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.inner
            .shared
            .list
            .load()
            .iter()
            .map(|s| EndpointStats {
                endpoint: s.endpoint.clone(),
                active: s.active(),
                idle: s.idle_count(),
                ejected: s.tracker.is_dead(),
                consecutive_failures: s.tracker.consecutive_failures(),
            })
            .collect()
    }

    /// The failure accrual's counts: endpoints marked dead (failed probes
    /// included) and revived since the pool was made, and how many are
    /// tracked and dead now.
    pub fn accrual_stats(&self) -> AccrualStats {
        self.inner.shared.accrual.stats()
    }

    /// Closes every idle connection of every endpoint now, for a caller
    /// that knows they are stale (say, its servers restarted). Checked-out
    /// connections are not affected; later checkouts open new ones.
    pub fn clear_idle(&self) {
        for slot in self.inner.shared.list.load().iter() {
            slot.drain_idle();
        }
    }

    /// The options in use.
    pub fn options(&self) -> &Options {
        &self.inner.shared.options
    }

    /// The connector.
    pub fn connector(&self) -> &C {
        &self.inner.connector
    }
}

impl<C: Connector> Inner<C> {
    /// Opens a connection on a reserved slot, within the connect timeout,
    /// reporting the outcome to the failure accrual: a failure or a
    /// timeout counts against the endpoint; a success revives a probed one
    /// (otherwise a connect that succeeds is not a success by itself: a
    /// server may accept connections and fail every request, so the
    /// connection's healthy return is).
    async fn connect(
        &self,
        slot: &Slot<C::Connection>,
        probe: Option<Permit>,
    ) -> Result<C::Connection, Error> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let timeout = self.shared.options.connect_timeout;
        let result = tokio::time::timeout(timeout, self.connector.connect(&slot.endpoint)).await;
        let error = match result {
            Ok(Ok(conn)) => {
                if let Some(probe) = probe {
                    probe.success();
                }
                return Ok(conn);
            }
            Ok(Err(source)) => Error::Connect {
                endpoint: slot.endpoint.clone(),
                source: source.into(),
            },
            Err(_) => Error::ConnectTimeout {
                endpoint: slot.endpoint.clone(),
                timeout,
            },
        };
        debug!(endpoint = %slot.endpoint, %error, "connect failed");
        match probe {
            Some(probe) => slot.after_failure(probe.failure()),
            None => slot.failed(),
        }
        Err(error)
    }

    /// Spawns the task following the source, if there is a runtime and it
    /// is not running yet.
    fn start_follower(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut follower = lock(&self.follower);
        *follower = match std::mem::replace(&mut *follower, Follower::Stopped) {
            Follower::Pending { source, changes } => {
                let task = runtime.spawn(follow(Arc::clone(&self.shared), source, changes));
                Follower::Running(task.abort_handle())
            }
            other => other,
        };
        self.follower_pending.store(false, Ordering::Relaxed);
    }
}

/// Follows the source until it ends (then closes the pool), sweeping
/// stale idle connections meanwhile.
async fn follow<T: Send + 'static>(
    shared: Arc<Shared<T>>,
    source: Box<dyn Source>,
    mut changes: Changes,
) {
    // Holding the source keeps a ZooKeeper watch alive.
    let _source = source;
    let period = shared
        .options
        .idle_timeout
        .map(|t| (t / 2).max(Duration::from_millis(10)))
        .unwrap_or(Duration::from_secs(3600));
    let mut sweep = tokio::time::interval(period);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(change) => shared.apply(&change.snapshot),
                None => {
                    warn!("the source of endpoints ended; closing the connection pool");
                    shared.close();
                    return;
                }
            },
            _ = sweep.tick() => shared.sweep(),
        }
    }
}
