//! The memcache client over a ring that follows the set.
//!
//! The ring and the servers are one immutable state swapped atomically; a
//! request loads it without a lock (rebuilding it first, once, after the
//! set changed, or, with ejection on, after a server was marked dead or
//! revived), picks the server and runs the command on one of its pooled
//! async connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use metrics::{counter, Counter};
use serversets::accrual::{Accrual, AccrualStats, EndpointState, FailureAccrual};
use serversets::{Endpoint, Snapshot, Source};
use tracing::{debug, warn};

use crate::command::{CasOutcome, Command, Mode, Reply};
use crate::error::{check_key, shown, Error};
use crate::ring::{Compatibility, Identifier, KetamaRing, Node};
use crate::server::{Limits, Server};

/// The `set` label of the memcache set's metrics.
const SET_LABEL: &str = "memcache";

/// Keys per pipelined multi-get request at most.
const MULTI_GET_CHUNK: usize = 512;

/// memcached's default largest item (`-I 1m`); the item's key and header
/// take a little of it.
pub const DEFAULT_MAX_VALUE_LEN: usize = 1024 * 1024;

/// A consistent-hash memcache client over a [`Source`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use serversets_memcache::McSet;
///
/// let servers = serversets::FixedSet::parse("127.0.0.1:11211,127.0.0.1:11212")?;
/// let cache = McSet::builder(servers)
///     .timeout(Duration::from_millis(200))
///     .eject_failed_hosts(true)
///     .build();
/// cache.set("user:1", b"alice", 60).await?;
/// assert_eq!(cache.get("user:1").await?.as_deref(), Some(&b"alice"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct McSet {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<dyn Source>,
    settings: Settings,
    accrual: Accrual,
    state: ArcSwap<State>,
    /// Held by the one request that rebuilds a stale state.
    rebuilding: Mutex<()>,
    /// Operations, counted (`set="memcache"`).
    requests: Counter,
    /// Operations that failed, counted.
    errors: Counter,
}

#[derive(Debug, Clone)]
struct Settings {
    limits: Limits,
    identifier: Identifier,
    compatibility: Compatibility,
    eject: bool,
    max_value_len: usize,
}

impl std::fmt::Debug for McSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.load();
        f.debug_struct("McSet")
            .field("servers", &state.ring.len())
            .field("version", &state.version)
            .finish()
    }
}

/// Configures a [`McSet`]; made by [`McSet::builder`].
pub struct McSetBuilder {
    source: Box<dyn Source>,
    settings: Settings,
    accrual: FailureAccrual,
}

impl std::fmt::Debug for McSetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McSetBuilder")
            .field("settings", &self.settings)
            .field("accrual", &self.accrual)
            .finish()
    }
}

impl McSetBuilder {
    /// The deadline of each operation, connect, wait for a connection and
    /// I/O together (default 1 s). A `get_multi` has one per server, run in
    /// parallel.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.limits.timeout = timeout;
        self
    }

    /// Time allowed to open a connection, within the deadline (default
    /// 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.limits.connect_timeout = timeout;
        self
    }

    /// Connections per server at most (default 64); each carries one
    /// request at a time.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.settings.limits.max_connections = connections.max(1);
        self
    }

    /// Idle connections kept per server (default 64).
    pub fn max_idle(mut self, connections: usize) -> Self {
        self.settings.limits.max_idle = connections;
        self
    }

    /// The ketama node identifier (default `host` / `host:port`).
    pub fn identifier(mut self, identifier: Identifier) -> Self {
        self.settings.identifier = identifier;
        self
    }

    /// Whose weighted-ketama arithmetic to follow where Finagle and
    /// libmemcached differ (default Finagle; see [`Compatibility`]).
    pub fn compatibility(mut self, compatibility: Compatibility) -> Self {
        self.settings.compatibility = compatibility;
        self
    }

    /// When a server is marked dead (default
    /// [`FailureAccrual::new`]: 5 failures or timeouts in a row, a
    /// jittered backoff from 100 ms up to 1 s). While dead, its keys fail
    /// at once with [`Error::Dead`], or, with
    /// [`eject_failed_hosts`](Self::eject_failed_hosts), go to the other
    /// servers.
    pub fn failure_accrual(mut self, policy: FailureAccrual) -> Self {
        self.accrual = policy;
        self
    }

    /// Whether a dead server leaves the ring so that its keys re-hash to
    /// the others, as Finagle's `ejectFailedHost` and pylibmc's
    /// `remove_failed` (default off, as in Finagle: processes that eject on
    /// their own may disagree on the ring for a while). When its backoff is
    /// over it is probed in the background (a `version` request on a fresh
    /// connection) and re-enters the ring when the probe succeeds.
    pub fn eject_failed_hosts(mut self, eject: bool) -> Self {
        self.settings.eject = eject;
        self
    }

    /// The largest value accepted (default 1 MiB, memcached's default item
    /// size); larger values fail before any I/O. Raise it with memcached's
    /// `-I`.
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.settings.max_value_len = len;
        self
    }

    /// Builds the client. No connection is opened until a request needs
    /// one, and no runtime is needed until then.
    ///
    /// Operations, failed operations and the failure accrual's markings
    /// and revivals are counted as the metrics of
    /// [`serversets::metrics`] with `set="memcache"` (the accrual's own
    /// [label](FailureAccrual::metrics_label) if it has one).
    pub fn build(self) -> McSet {
        let policy = match self.accrual.label() {
            Some(_) => self.accrual,
            None => self.accrual.metrics_label(SET_LABEL),
        };
        let accrual = Accrual::new(policy);
        let state = build(
            &self.source.current(),
            &self.settings,
            &accrual,
            &HashMap::new(),
        );
        McSet {
            inner: Arc::new(Inner {
                source: self.source,
                settings: self.settings,
                accrual,
                state: ArcSwap::from_pointee(state),
                rebuilding: Mutex::new(()),
                requests: counter!(serversets::metrics::REQUESTS, serversets::metrics::LABEL_SET => SET_LABEL),
                errors: counter!(serversets::metrics::REQUEST_ERRORS, serversets::metrics::LABEL_SET => SET_LABEL),
            }),
        }
    }
}

/// The ring and one server per ring node, index-aligned.
struct State {
    /// The source's snapshot version it was built from.
    version: u64,
    /// The accrual's transitions when it was built (with ejection on).
    transitions: u64,
    /// With ejection on: the earliest end of a dead server's backoff, when
    /// it re-enters the ring for its probe.
    next_probe: Option<Instant>,
    ring: KetamaRing,
    servers: Vec<Arc<Server>>,
    /// Every server of the snapshot, ejected ones included (kept for reuse).
    members: HashMap<Endpoint, Arc<Server>>,
}

impl McSet {
    /// A client over `source` with default settings.
    pub fn new(source: impl Source) -> Self {
        Self::builder(source).build()
    }

    /// Starts configuring a client over `source` (a ZooKeeper
    /// [`Watch`](serversets::Watch), a `serversets::FixedSet`, ...).
    pub fn builder(source: impl Source) -> McSetBuilder {
        McSetBuilder {
            source: Box::new(source),
            settings: Settings {
                limits: Limits {
                    timeout: Duration::from_secs(1),
                    connect_timeout: Duration::from_secs(1),
                    max_connections: 64,
                    max_idle: 64,
                },
                identifier: Identifier::HostPort,
                compatibility: Compatibility::default(),
                eject: false,
                max_value_len: DEFAULT_MAX_VALUE_LEN,
            },
            accrual: FailureAccrual::new(),
        }
    }

    /// The ring for the source's current snapshot (rebuilt here if stale).
    fn state(&self) -> Arc<State> {
        let inner = &*self.inner;
        let state = inner.state.load_full();
        if !self.is_stale(&state) {
            return state;
        }
        self.rebuild(state)
    }

    /// The server `key` goes to now: the request path (no reference to the
    /// state is taken, only to the server).
    fn server_of(&self, key: &str) -> Result<Arc<Server>, Error> {
        let inner = &*self.inner;
        let guard = inner.state.load();
        let pick = |state: &State| {
            let index = state
                .ring
                .pick_index(key.as_bytes())
                .ok_or(Error::NoServers)?;
            state
                .servers
                .get(index)
                .map(Arc::clone)
                .ok_or(Error::NoServers)
        };
        if !self.is_stale(&guard) {
            return pick(&guard);
        }
        let state = self.rebuild(arc_swap::Guard::into_inner(guard));
        pick(&state)
    }

    /// Rebuilds a stale state, unless another call is at it (then the
    /// stale one is used meanwhile).
    #[cold]
    fn rebuild(&self, state: Arc<State>) -> Arc<State> {
        let inner = &*self.inner;
        let Ok(_guard) = inner.rebuilding.try_lock() else {
            return state; // another call is rebuilding; use the last ring
        };
        let current = inner.state.load_full();
        if !self.is_stale(&current) {
            return current;
        }
        let fresh = Arc::new(build(
            &inner.source.current(),
            &inner.settings,
            &inner.accrual,
            &current.members,
        ));
        inner.state.store(Arc::clone(&fresh));
        debug!(
            servers = fresh.servers.len(),
            members = fresh.members.len(),
            "memcache ring rebuilt"
        );
        fresh
    }

    fn is_stale(&self, state: &State) -> bool {
        let inner = &*self.inner;
        if inner.source.version() != state.version {
            return true;
        }
        if !inner.settings.eject {
            return false;
        }
        inner.accrual.transitions() != state.transitions
            || state.next_probe.is_some_and(|at| Instant::now() >= at)
    }

    /// The servers in the ring now.
    pub fn servers(&self) -> Vec<Endpoint> {
        let state = self.state();
        state.servers.iter().map(|s| s.endpoint.clone()).collect()
    }

    /// The server `key` goes to now, if there is one.
    pub fn server_for(&self, key: &str) -> Option<Endpoint> {
        let state = self.state();
        let index = state.ring.pick_index(key.as_bytes())?;
        state.servers.get(index).map(|s| s.endpoint.clone())
    }

    /// Failure accrual counts: servers marked dead (`ejections`), revived
    /// (`revivals`), dead now.
    pub fn accrual_stats(&self) -> AccrualStats {
        self.inner.accrual.stats()
    }

    /// Gets a value.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match self.keyed(key, Command::Get(key)).await? {
            (_, Reply::Value(value)) => Ok(value),
            (server, other) => Err(unexpected(&server.endpoint, other)),
        }
    }

    /// Gets a value and its CAS token, for [`McSet::cas`].
    pub async fn gets(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, Error> {
        match self.keyed(key, Command::Gets(key)).await? {
            (_, Reply::ValueWithToken(found)) => Ok(found),
            (server, other) => Err(unexpected(&server.endpoint, other)),
        }
    }

    /// Sets a value (expiration in seconds, 0 for none).
    pub async fn set(&self, key: &str, value: &[u8], expiration: u32) -> Result<(), Error> {
        self.store(key, value, expiration, Mode::Set)
            .await
            .map(drop)
    }

    /// Stores a value only if the key is absent: `false` if it exists.
    pub async fn add(&self, key: &str, value: &[u8], expiration: u32) -> Result<bool, Error> {
        self.store(key, value, expiration, Mode::Add).await
    }

    /// Stores a value only if the key exists: `false` if it is absent.
    pub async fn replace(&self, key: &str, value: &[u8], expiration: u32) -> Result<bool, Error> {
        self.store(key, value, expiration, Mode::Replace).await
    }

    /// Stores a value only if the item has not changed since
    /// [`McSet::gets`] returned `token`.
    pub async fn cas(
        &self,
        key: &str,
        value: &[u8],
        expiration: u32,
        token: u64,
    ) -> Result<CasOutcome, Error> {
        let command = Command::Cas {
            key,
            value,
            ttl: expiration,
            token,
        };
        match self.keyed(key, command).await? {
            (_, Reply::Cas(outcome)) => Ok(outcome),
            (server, other) => Err(unexpected(&server.endpoint, other)),
        }
    }

    /// Deletes a key: `false` if it was absent.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.done(key, Command::Delete(key)).await
    }

    /// Adds to a counter and returns the new value; `None` if the key is
    /// absent (seed counters with [`McSet::add`]). Counters wrap at 2^64,
    /// as memcached's do.
    pub async fn increment(&self, key: &str, amount: u64) -> Result<Option<u64>, Error> {
        self.counter(key, amount, true).await
    }

    /// Subtracts from a counter, not below 0, and returns the new value;
    /// `None` if the key is absent.
    pub async fn decrement(&self, key: &str, amount: u64) -> Result<Option<u64>, Error> {
        self.counter(key, amount, false).await
    }

    /// Sets a new expiration: `false` if the key is absent.
    pub async fn touch(&self, key: &str, expiration: u32) -> Result<bool, Error> {
        self.done(
            key,
            Command::Touch {
                key,
                ttl: expiration,
            },
        )
        .await
    }

    /// Gets many keys: one pipelined request per server (per 512 keys), all
    /// in parallel, each within the deadline. Absent keys are absent from the
    /// map. If a server fails, the call fails with its error (no partial
    /// result is returned as if complete).
    pub async fn get_multi(&self, keys: &[&str]) -> Result<HashMap<String, Vec<u8>>, Error> {
        self.counted(self.get_multi_once(keys)).await
    }

    /// Runs one operation, counted: the request when it starts (one its
    /// caller drops midway counts too, as in the other typed sets), the
    /// error when it fails (bad keys and values included).
    async fn counted<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        self.inner.requests.increment(1);
        let result = operation.await;
        if result.is_err() {
            self.inner.errors.increment(1);
        }
        result
    }

    /// [`McSet::get_multi`], uncounted.
    async fn get_multi_once(&self, keys: &[&str]) -> Result<HashMap<String, Vec<u8>>, Error> {
        for key in keys {
            check_key(key)?;
        }
        let state = self.state();
        let mut by_server: HashMap<usize, Vec<&str>> = HashMap::new();
        for key in keys {
            let index = state
                .ring
                .pick_index(key.as_bytes())
                .ok_or(Error::NoServers)?;
            by_server.entry(index).or_default().push(key);
        }
        let timeout = self.inner.settings.limits.timeout;
        let mut calls = Vec::with_capacity(by_server.len());
        for (index, keys) in &by_server {
            let server = state.servers.get(*index).ok_or(Error::NoServers)?;
            // Large batches are split, so that no request fills the socket
            // buffers both ways while the server waits for us to read.
            for chunk in keys.chunks(MULTI_GET_CHUNK) {
                calls.push(async move {
                    match server.call(&Command::GetMulti(chunk), timeout).await? {
                        Reply::Values(found) => Ok(found),
                        other => Err(unexpected(&server.endpoint, other)),
                    }
                });
            }
        }
        let mut found = HashMap::with_capacity(keys.len());
        for result in futures::future::join_all(calls).await {
            found.extend(result?);
        }
        Ok(found)
    }

    async fn store(&self, key: &str, value: &[u8], ttl: u32, mode: Mode) -> Result<bool, Error> {
        let command = Command::Store {
            key,
            value,
            ttl,
            mode,
        };
        match self.keyed(key, command).await? {
            (_, Reply::Done(stored)) => Ok(stored),
            (server, other) => Err(unexpected(&server.endpoint, other)),
        }
    }

    async fn done(&self, key: &str, command: Command<'_>) -> Result<bool, Error> {
        match self.keyed(key, command).await? {
            (_, Reply::Done(done)) => Ok(done),
            (server, other) => Err(unexpected(&server.endpoint, other)),
        }
    }

    async fn counter(&self, key: &str, amount: u64, up: bool) -> Result<Option<u64>, Error> {
        match self
            .keyed(key, Command::Arithmetic { key, amount, up })
            .await?
        {
            (_, Reply::Counter(value)) => Ok(value),
            (server, other) => Err(unexpected(&server.endpoint, other)),
        }
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        let max = self.inner.settings.max_value_len;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                key: shown(key),
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// Runs one keyed command on the key's server (one operation, counted).
    async fn keyed(&self, key: &str, command: Command<'_>) -> Result<(Arc<Server>, Reply), Error> {
        self.counted(self.keyed_once(key, command)).await
    }

    async fn keyed_once(
        &self,
        key: &str,
        command: Command<'_>,
    ) -> Result<(Arc<Server>, Reply), Error> {
        check_key(key)?;
        if let Command::Store { value, .. } | Command::Cas { value, .. } = &command {
            self.check_value(key, value)?;
        }
        let server = self.server_of(key)?;
        let reply = server
            .call(&command, self.inner.settings.limits.timeout)
            .await?;
        Ok((server, reply))
    }
}

/// A reply of the wrong kind for its command (not reached: each command
/// has one kind of reply).
fn unexpected(server: &Endpoint, reply: Reply) -> Error {
    Error::UnexpectedReply {
        server: server.clone(),
        reply: format!("{reply:?}"),
    }
}

/// Builds the ring for a snapshot, reusing the servers that stay. With
/// ejection on, servers marked dead are left out of the ring (unless every
/// server is), exactly as if the set did not have them, and those whose
/// backoff is over are probed in the background.
fn build(
    snapshot: &Snapshot,
    settings: &Settings,
    accrual: &Accrual,
    reuse: &HashMap<Endpoint, Arc<Server>>,
) -> State {
    let transitions = accrual.transitions();
    let mut members: HashMap<Endpoint, Arc<Server>> = HashMap::with_capacity(snapshot.len());
    for entry in snapshot.iter() {
        if members.contains_key(&entry.endpoint) {
            continue;
        }
        let server = match reuse.get(&entry.endpoint) {
            Some(server) => Arc::clone(server),
            None => Arc::new(Server::new(
                entry.endpoint.clone(),
                accrual,
                &settings.limits,
            )),
        };
        members.insert(entry.endpoint.clone(), server);
    }
    let mut next_probe: Option<Instant> = None;
    let mut ejected = 0usize;
    let in_ring = |endpoint: &Endpoint, next_probe: &mut Option<Instant>| -> bool {
        if !settings.eject {
            return true;
        }
        let Some(server) = members.get(endpoint) else {
            return true;
        };
        let mut soonest = |at: Instant| *next_probe = Some(next_probe.map_or(at, |n| n.min(at)));
        match server.tracker.state() {
            EndpointState::Live => true,
            EndpointState::Dead { until } => {
                soonest(until);
                false
            }
            EndpointState::Probing => {
                // Its backoff is over: probe it in the background; it
                // re-enters the ring when the probe succeeds (a revival
                // makes the next call rebuild). Look again after the
                // probe's deadline in any case, so that a probe that never
                // reports (its runtime gone) cannot keep it out for good.
                let started = match server.tracker.admit() {
                    Ok(permit) => server.probe(permit, settings.limits.timeout),
                    Err(_) => true, // a probe is under way
                };
                let now = Instant::now();
                soonest(if started {
                    now.checked_add(settings.limits.timeout).unwrap_or(now)
                } else {
                    now
                });
                false
            }
        }
    };
    let mut nodes: Vec<Node> = snapshot
        .iter()
        .filter(|entry| {
            let keep = in_ring(&entry.endpoint, &mut next_probe);
            ejected += usize::from(!keep);
            keep
        })
        .map(|entry| Node::from_entry(entry, settings.identifier))
        .collect();
    if nodes.is_empty() && ejected > 0 {
        warn!("every memcache server is marked dead; keeping them all in the ring");
        nodes = snapshot
            .iter()
            .map(|entry| Node::from_entry(entry, settings.identifier))
            .collect();
        next_probe = None;
    } else if ejected > 0 {
        debug!(ejected, "dead memcache servers left out of the ring");
    }
    let ring = KetamaRing::with_compatibility(nodes, settings.compatibility);
    let servers = ring
        .nodes()
        .iter()
        .filter_map(|node| members.get(&node.endpoint).cloned())
        .collect();
    State {
        version: snapshot.version(),
        transitions,
        next_probe,
        ring,
        servers,
        members,
    }
}
