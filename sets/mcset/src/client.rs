//! The memcache client over a ring that follows the set.
//!
//! One `memcache::Client` (an r2d2 pool, lazy, no test-on-checkout) per
//! server, created when a server joins and dropped when it leaves. The ring
//! and the clients are one immutable state swapped atomically; a request
//! loads it without a lock (rebuilding it first, once, after the set
//! changed), picks the server, and runs the blocking call on tokio's
//! blocking pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use memcache::{CommandError, MemcacheError};
use serversets::{Endpoint, Snapshot, Source};
use tracing::{debug, warn};

use crate::error::{check_key, Error};
use crate::ring::{Compatibility, Identifier, KetamaRing, Node};

/// How the client connects and hashes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Time allowed to open a connection (default 1 s).
    pub connect_timeout: Duration,
    /// Read and write timeout of each request (default 1 s).
    pub io_timeout: Duration,
    /// Connections per server at most (default 8).
    pub max_connections: u32,
    /// The ketama node identifier (default `host` / `host:port`).
    pub identifier: Identifier,
    /// Whose weighted-ketama arithmetic to follow where Finagle and
    /// libmemcached differ (default Finagle; see [`Compatibility`]).
    pub compatibility: Compatibility,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            max_connections: 8,
            identifier: Identifier::HostPort,
            compatibility: Compatibility::default(),
        }
    }
}

/// A consistent-hash memcache client over a [`Source`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use mcset::McSet;
///
/// let servers = fixedset::FixedSet::parse("127.0.0.1:11211,127.0.0.1:11212")?;
/// let cache = McSet::new(servers);
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
    options: Options,
    state: ArcSwap<State>,
    /// Held by the one request that rebuilds a stale state.
    rebuilding: Mutex<()>,
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

/// The ring and one client per ring node, index-aligned.
struct State {
    version: u64,
    ring: KetamaRing,
    servers: Vec<Arc<Server>>,
}

struct Server {
    endpoint: Endpoint,
    client: memcache::Client,
}

impl McSet {
    /// A client over `source` with default [`Options`].
    pub fn new(source: impl Source) -> Self {
        Self::with_options(source, Options::default())
    }

    /// A client over `source` with these options.
    ///
    /// The client follows its source without a task of its own: each call
    /// compares the source's snapshot version with the ring's (one atomic
    /// load) and, after a change, one call rebuilds the ring, reusing the
    /// clients of servers that stayed, while concurrent calls go on with
    /// the previous ring.
    pub fn with_options(source: impl Source, options: Options) -> Self {
        let state = build(&source.current(), &options, &HashMap::new());
        McSet {
            inner: Arc::new(Inner {
                source: Box::new(source),
                options,
                state: ArcSwap::from_pointee(state),
                rebuilding: Mutex::new(()),
            }),
        }
    }

    /// The ring for the source's current snapshot (rebuilt here if stale).
    fn state(&self) -> Arc<State> {
        let state = self.inner.state.load_full();
        let snapshot = self.inner.source.current();
        if snapshot.version() == state.version {
            return state;
        }
        let Ok(_guard) = self.inner.rebuilding.try_lock() else {
            return state; // another call is rebuilding; use the last ring
        };
        let current = self.inner.state.load_full();
        if current.version == snapshot.version() {
            return current;
        }
        let reuse: HashMap<Endpoint, Arc<Server>> = current
            .servers
            .iter()
            .map(|s| (s.endpoint.clone(), Arc::clone(s)))
            .collect();
        let fresh = Arc::new(build(&snapshot, &self.inner.options, &reuse));
        self.inner.state.store(Arc::clone(&fresh));
        debug!(servers = fresh.servers.len(), "memcache ring rebuilt");
        fresh
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

    /// Gets a value.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.call(key, |c, k| c.get::<Vec<u8>>(k)).await
    }

    /// Sets a value (expiration in seconds, 0 for none).
    pub async fn set(&self, key: &str, value: &[u8], expiration: u32) -> Result<(), Error> {
        let value = value.to_vec();
        self.call(key, move |c, k| c.set(k, value.as_slice(), expiration))
            .await
    }

    /// Stores a value only if the key is absent: `false` if it exists.
    pub async fn add(&self, key: &str, value: &[u8], expiration: u32) -> Result<bool, Error> {
        let value = value.to_vec();
        self.call(key, move |c, k| {
            absent_is_false(c.add(k, value.as_slice(), expiration).map(|()| true))
        })
        .await
    }

    /// Stores a value only if the key exists: `false` if it is absent.
    pub async fn replace(&self, key: &str, value: &[u8], expiration: u32) -> Result<bool, Error> {
        let value = value.to_vec();
        self.call(key, move |c, k| {
            absent_is_false(c.replace(k, value.as_slice(), expiration).map(|()| true))
        })
        .await
    }

    /// Deletes a key: `false` if it was absent.
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.call(key, |c, k| c.delete(k)).await
    }

    /// Adds to a counter and returns the new value. The client speaks
    /// memcached's binary protocol, where a missing key is created with the
    /// value 0 (and 0 is returned); seed counters with [`McSet::add`] when
    /// the first count matters.
    pub async fn increment(&self, key: &str, amount: u64) -> Result<u64, Error> {
        self.call(key, move |c, k| c.increment(k, amount)).await
    }

    /// Subtracts from a counter (not below 0) and returns the new value; a
    /// missing key is created with the value 0, as for
    /// [`McSet::increment`].
    pub async fn decrement(&self, key: &str, amount: u64) -> Result<u64, Error> {
        self.call(key, move |c, k| c.decrement(k, amount)).await
    }

    /// Sets a new expiration: `false` if the key is absent.
    pub async fn touch(&self, key: &str, expiration: u32) -> Result<bool, Error> {
        self.call(key, move |c, k| c.touch(k, expiration)).await
    }

    /// Gets many keys: one multi-get per server, all servers in parallel.
    /// Absent keys are absent from the map.
    pub async fn get_multi(&self, keys: &[&str]) -> Result<HashMap<String, Vec<u8>>, Error> {
        for key in keys {
            check_key(key)?;
        }
        let state = self.state();
        let mut by_server: HashMap<usize, Vec<String>> = HashMap::new();
        for key in keys {
            let index = state
                .ring
                .pick_index(key.as_bytes())
                .ok_or(Error::NoServers)?;
            by_server.entry(index).or_default().push((*key).to_owned());
        }
        let calls = by_server.into_iter().filter_map(|(index, keys)| {
            let server = Arc::clone(state.servers.get(index)?);
            Some(blocking(server, move |c| {
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                c.gets::<Vec<u8>>(&refs)
            }))
        });
        let mut found = HashMap::new();
        for result in futures::future::join_all(calls).await {
            found.extend(result?);
        }
        Ok(found)
    }

    /// Runs one keyed command on the key's server.
    async fn call<T, F>(&self, key: &str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&memcache::Client, &str) -> Result<T, MemcacheError> + Send + 'static,
    {
        check_key(key)?;
        let server = {
            let state = self.state();
            let index = state
                .ring
                .pick_index(key.as_bytes())
                .ok_or(Error::NoServers)?;
            Arc::clone(state.servers.get(index).ok_or(Error::NoServers)?)
        };
        let key = key.to_owned();
        blocking(server, move |c| f(c, &key)).await
    }
}

/// Runs a blocking memcache call on tokio's blocking pool.
async fn blocking<T, F>(server: Arc<Server>, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(&memcache::Client) -> Result<T, MemcacheError> + Send + 'static,
{
    let endpoint = server.endpoint.to_string();
    match tokio::task::spawn_blocking(move || f(&server.client)).await {
        Ok(result) => result.map_err(|source| Error::Memcache {
            server: endpoint,
            source,
        }),
        Err(join) => Err(Error::Interrupted {
            server: endpoint,
            reason: join.to_string(),
        }),
    }
}

fn absent_is_false(result: Result<bool, MemcacheError>) -> Result<bool, MemcacheError> {
    match result {
        Err(MemcacheError::CommandError(CommandError::KeyExists | CommandError::KeyNotFound)) => {
            Ok(false)
        }
        other => other,
    }
}

/// Builds the ring for a snapshot, reusing clients of servers that stay.
fn build(snapshot: &Snapshot, options: &Options, reuse: &HashMap<Endpoint, Arc<Server>>) -> State {
    // Only servers with a client go into the ring, so ring nodes and
    // clients stay aligned (the ring may also merge duplicate identifiers).
    let mut clients = HashMap::new();
    let nodes = snapshot
        .iter()
        .filter_map(|entry| {
            let server = match reuse.get(&entry.endpoint) {
                Some(server) => Arc::clone(server),
                None => match connect(&entry.endpoint, options) {
                    Ok(client) => Arc::new(Server {
                        endpoint: entry.endpoint.clone(),
                        client,
                    }),
                    Err(e) => {
                        warn!(server = %entry.endpoint, error = %e, "cannot set up memcache client; server left out");
                        return None;
                    }
                },
            };
            clients.insert(entry.endpoint.clone(), server);
            Some(Node::from_entry(entry, options.identifier))
        })
        .collect();
    let ring = KetamaRing::with_compatibility(nodes, options.compatibility);
    let servers = ring
        .nodes()
        .iter()
        .filter_map(|node| clients.get(&node.endpoint).cloned())
        .collect();
    State {
        version: snapshot.version(),
        ring,
        servers,
    }
}

/// A lazily connecting client for one server: no connection is opened
/// until the first request, and none is tested on checkout.
fn connect(endpoint: &Endpoint, options: &Options) -> Result<memcache::Client, MemcacheError> {
    let timeout = options.io_timeout.as_secs_f64();
    let url = format!("memcache://{endpoint}?timeout={timeout}&tcp_nodelay=true");
    let manager = memcache::ConnectionManager::new(memcache::Url::parse(&url)?);
    let pool = r2d2::Pool::builder()
        .max_size(options.max_connections.max(1))
        .min_idle(Some(0))
        .test_on_check_out(false)
        .connection_timeout(options.connect_timeout)
        .build_unchecked(manager);
    memcache::Client::with_pool(pool)
}
