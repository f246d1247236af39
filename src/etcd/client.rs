//! The etcd client: one connection per process, shared by every
//! registration and watch made through it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info_span, Instrument};

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::format::codec::DecodeError;
use crate::format::member::Member;
use crate::format::naming::Format;
use crate::format::path::ServerSetPath;
use crate::set::health::{Health, HealthWatcher};
use crate::set::inspect::RawChild;
use crate::set::options::WatchOptions;
use crate::set::registration::RegisterOptions;
use crate::set::registration::Registration;
use crate::set::watch::hub::Registry;
use crate::set::watch::Watch;

/// How long [`EtcdClient::connect`] waits for etcd by default; also the
/// wait for a watch's first load and a registration's first put.
pub const DEFAULT_ETCD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one etcd request may take by default before it counts as
/// failed (the connection is then presumed lost).
pub const DEFAULT_ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the client checks that etcd answers (its
/// [`health`](EtcdClient::health)); also the HTTP/2 keep-alive interval,
/// so a dead or partitioned connection is noticed within about two of
/// these.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The client's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub relative_keys: bool,
}

/// What every handle of one client shares.
pub(crate) struct Shared {
    pub etcd: etcd_client::Client,
    pub config: Config,
    /// Running watch engines, by format and prefix.
    pub watches: Arc<Registry>,
    pub health: watch::Receiver<Health>,
    /// Set once by [`EtcdClient::close`].
    pub closed: watch::Sender<bool>,
}

impl Shared {
    /// The key prefix of the set at `path`, with its trailing `/`:
    /// `/services/users/`, or `services/users/` with relative keys.
    pub(crate) fn prefix_of(&self, path: &ServerSetPath) -> String {
        let path = path.as_str();
        if self.config.relative_keys {
            format!("{}/", path.trim_start_matches('/'))
        } else {
            format!("{path}/")
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdShared")
            .field("config", &self.config)
            .field("health", &*self.health.borrow())
            .finish()
    }
}

/// Builds an [`EtcdClient`].
#[derive(Debug, Clone)]
pub struct EtcdClientBuilder {
    endpoints: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    relative_keys: bool,
}

impl EtcdClientBuilder {
    /// How long [`connect`](Self::connect) waits for etcd to answer, and
    /// watches and registrations for their first load or put (default
    /// 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one request may take (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Keys without the set path's leading `/` (default: with it): the set
    /// `/services/users` is then the keys below `services/users/`, which
    /// is what Go's etcd resolver reads for the target
    /// `etcd:///services/users` (it drops the `/`) and where Go services
    /// usually register.
    pub fn relative_keys(mut self, relative: bool) -> Self {
        self.relative_keys = relative;
        self
    }

    /// Connects, and checks that etcd answers.
    pub async fn connect(self) -> Result<EtcdClient> {
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(Error::InvalidConfig(
                "etcd timeouts must be above zero".into(),
            ));
        }
        let endpoints = parse_endpoints(&self.endpoints)?;
        let address = endpoints.join(",");
        let failed = |reason: String| Error::Connect {
            store: "etcd",
            address: address.clone(),
            reason,
            source: None,
        };
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(PROBE_INTERVAL, PROBE_INTERVAL)
            .with_keep_alive_while_idle(true)
            // A member cut off from its quorum refuses, rather than serving
            // a watch that goes silent.
            .with_require_leader(true);
        let etcd = etcd_client::Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| failed(e.to_string()))?;
        // etcd may be starting or restarting: ask again (with backoff)
        // until it answers or the connect timeout is spent.
        let deadline = Instant::now() + self.connect_timeout;
        let mut backoff = Backoff::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut maintenance = etcd.maintenance_client();
            let reason = match tokio::time::timeout(left, maintenance.status()).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {:?}", self.connect_timeout),
            };
            let pause = backoff.next_delay();
            if Instant::now() + pause >= deadline {
                return Err(failed(reason));
            }
            debug!(endpoints = %address, %reason, "etcd did not answer; retrying");
            tokio::time::sleep(pause).await;
        }
        let (health_tx, health) = watch::channel(Health::Connected);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            etcd,
            config: Config {
                endpoints,
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
                relative_keys: self.relative_keys,
            },
            watches: Arc::default(),
            health,
            closed,
        });
        let span = info_span!("etcd_health", endpoints = %address);
        tokio::spawn(probe(Arc::downgrade(&shared), health_tx).instrument(span));
        Ok(EtcdClient { shared })
    }
}

/// `h:p,h:p` (each optionally `http://h:p`) as etcd-client's URLs.
fn parse_endpoints(input: &str) -> Result<Vec<String>> {
    let endpoints: Vec<String> = input
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.starts_with("http://") || e.starts_with("https://") {
                e.to_owned()
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    if endpoints.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "no etcd endpoint in {input:?}: expected host:port[,host:port]"
        )));
    }
    for endpoint in &endpoints {
        let authority = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest);
        if authority.parse::<crate::Endpoint>().is_err() {
            return Err(Error::InvalidConfig(format!(
                "invalid etcd endpoint {endpoint:?}: expected host:port"
            )));
        }
    }
    Ok(endpoints)
}

/// Says whether etcd answers, every [`PROBE_INTERVAL`], until the client
/// is closed or dropped.
async fn probe(shared: std::sync::Weak<Shared>, health: watch::Sender<Health>) {
    loop {
        let Some(client) = shared.upgrade() else {
            return;
        };
        if *client.closed.borrow() {
            health.send_replace(Health::Closed);
            return;
        }
        let wait = client.config.request_timeout.min(PROBE_INTERVAL * 3);
        let mut maintenance = client.etcd.maintenance_client();
        let mut closed = client.closed.subscribe();
        drop(client);
        let answered = tokio::select! {
            status = tokio::time::timeout(wait, maintenance.status()) => {
                matches!(status, Ok(Ok(status)) if status.leader() != 0)
            }
            _ = closed.changed() => continue,
        };
        let now = if answered {
            Health::Connected
        } else {
            Health::Disconnected
        };
        if health.send_replace(now) != now {
            debug!(health = %now, "etcd health changed");
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = closed.changed() => {}
        }
    }
}

/// An etcd v3 client for serversets: registrations kept alive by leases,
/// and watches that serve the same [`Watch`] a ZooKeeper
/// [`Client`](crate::Client) does, so typed sets cannot tell the stores
/// apart. Cloning is cheap; clones share one connection (one HTTP/2
/// connection per etcd endpoint in use), and watches of one prefix share
/// one etcd watch.
///
/// Sets are key prefixes written like ZooKeeper paths (`/services/users`):
/// members are the keys directly below `/services/users/` (or
/// `services/users/` with [`EtcdClientBuilder::relative_keys`]), in Finagle's JSON
/// ([`Format::Finagle`], the default) or etcd's naming format
/// ([`Format::EtcdNaming`], chosen with [`WatchOptions::format`] and
/// [`RegisterOptions::format`]).
///
/// ```no_run
/// # async fn demo() -> Result<(), serversets::Error> {
/// use std::time::Duration;
/// use serversets::{EtcdClient, Endpoint, Member, RegisterOptions, ServerSetPath};
///
/// let etcd = EtcdClient::connect("127.0.0.1:2379").await?;
/// let path = ServerSetPath::new("/services/users")?;
/// let options = RegisterOptions::new().ttl(Duration::from_secs(10));
/// let _registration = etcd
///     .register_with(&path, Member::new(Endpoint::new("10.0.0.1", 8080)), options)
///     .await?;
/// let watch = etcd.watch(&path).await?;
/// println!("{} members, leader {:?}", watch.current().len(), watch.current().leader());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EtcdClient {
    shared: Arc<Shared>,
}

impl EtcdClient {
    /// Starts building a client for `endpoints` (`host:port[,host:port]`,
    /// each optionally with `http://`).
    pub fn builder(endpoints: impl Into<String>) -> EtcdClientBuilder {
        EtcdClientBuilder {
            endpoints: endpoints.into(),
            connect_timeout: DEFAULT_ETCD_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_ETCD_REQUEST_TIMEOUT,
            relative_keys: false,
        }
    }

    /// Connects with the default settings.
    pub async fn connect(endpoints: &str) -> Result<EtcdClient> {
        EtcdClient::builder(endpoints).connect().await
    }

    /// Registers `member` in `path` (Finagle's format, a 10 s lease).
    pub async fn register(&self, path: &ServerSetPath, member: Member) -> Result<Registration> {
        self.register_with(path, member, RegisterOptions::new())
            .await
    }

    /// Registers `member` in `path` with these options (TTL, format,
    /// health check).
    pub async fn register_with(
        &self,
        path: &ServerSetPath,
        member: Member,
        options: RegisterOptions,
    ) -> Result<Registration> {
        if *self.shared.closed.borrow() {
            return Err(Error::Closed);
        }
        crate::etcd::registration::start(Arc::clone(&self.shared), path.clone(), member, options)
            .await
    }

    /// Watches the set at `path` (Finagle's format, service endpoints).
    pub async fn watch(&self, path: &ServerSetPath) -> Result<Watch> {
        self.watch_with(path, WatchOptions::new()).await
    }

    /// Watches the set at `path` with these options (selection, held
    /// removals, format).
    pub async fn watch_with(
        &self,
        path: &ServerSetPath,
        options: impl Into<WatchOptions>,
    ) -> Result<Watch> {
        if *self.shared.closed.borrow() {
            return Err(Error::Closed);
        }
        crate::etcd::watch::start(Arc::clone(&self.shared), path.clone(), options.into()).await
    }

    /// Reads every key directly below `path` as it is, for diagnosis (the
    /// CLI's `ls`), sorted by name; `decoded` is `None` for keys that are
    /// not members in `format`.
    pub async fn inspect(&self, path: &ServerSetPath, format: Format) -> Result<Vec<RawChild>> {
        let prefix = self.shared.prefix_of(path);
        let kvs = crate::etcd::watch::get_all(&self.shared, &prefix).await?.1;
        let mut children: Vec<RawChild> = kvs
            .into_iter()
            .filter_map(|kv| {
                let name = String::from_utf8(kv.key).ok()?;
                let name = name.strip_prefix(&prefix)?.to_owned();
                if name.contains('/') {
                    return None;
                }
                let decoded =
                    format
                        .is_member(&name)
                        .then(|| match format.decode(&name, &kv.value) {
                            Ok(Some(member)) => Ok(member),
                            Ok(None) => {
                                Err(DecodeError::Naming("Op 1: the endpoint is deleted".into()))
                            }
                            Err(e) => Err(e),
                        });
                Some(RawChild {
                    name,
                    data: kv.value,
                    decoded,
                })
            })
            .collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(children)
    }

    /// Whether etcd answered the last check (once a second).
    pub fn health(&self) -> Health {
        *self.shared.health.borrow()
    }

    /// Follows [`EtcdClient::health`].
    pub fn health_watcher(&self) -> HealthWatcher {
        HealthWatcher::new(self.shared.health.clone())
    }

    /// The endpoints, as given (with `http://`).
    pub fn endpoints(&self) -> &[String] {
        &self.shared.config.endpoints
    }

    /// The underlying `etcd-client` client (one connection, shared): for
    /// what this crate does not do. Keys it writes under a watched prefix
    /// are seen by watches like any other.
    pub fn etcd(&self) -> etcd_client::Client {
        self.shared.etcd.clone()
    }

    /// Closes the client: registrations revoke their leases (their members
    /// leave) and watches stop (their last set stays readable, their
    /// streams end). Returns at once; [`Registration::close`] waits for
    /// its revocation.
    pub async fn close(self) {
        self.shared.closed.send_replace(true);
    }
}
