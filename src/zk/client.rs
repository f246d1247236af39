//! The client handle: one ZooKeeper session shared by every registration
//! and watch made through it.

use std::time::Duration;

use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::format::codec;
use crate::format::member::{Member, MEMBER_PREFIX};
use crate::format::path::ServerSetPath;
use crate::format::selection::Selection;
use crate::set::health::{Health, HealthWatcher};
use crate::set::inspect::RawChild;
use crate::set::options::WatchOptions;
use crate::set::registration::RegisterOptions;
use crate::set::registration::Registration;
use crate::set::watch::{Watch, WatchEngine};
use crate::zk::session::{Config, Session};

/// The default ZooKeeper session timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time allowed to establish a session.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on one ZooKeeper session, shared by all registrations and
/// watches made through it (and through its clones).
///
/// When the session expires, the client builds a new one with backoff and
/// restores every registration and watch on it. Health is reported through
/// `tracing` and [`Client::health`].
///
/// ```no_run
/// # async fn demo() -> Result<(), serversets::Error> {
/// use serversets::{Client, Endpoint, Environment, Member, ServerSetPath};
///
/// let client = Client::connect("127.0.0.1:2181").await?;
/// let path = ServerSetPath::discovery(Environment::Production, "users")?;
///
/// // Announce this process, as a Finagle server would.
/// let registration = client.register(&path, Member::new(Endpoint::new("10.0.0.1", 8080))).await?;
/// println!("registered as {:?}", registration.znode());
///
/// // Follow the set.
/// let watch = client.watch(&path).await?;
/// println!("{} live members", watch.current().len());
///
/// registration.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    session: Session,
}

/// Builds a [`Client`] with non-default settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), serversets::Error> {
/// use std::time::Duration;
///
/// let client = serversets::Client::builder("zk1:2181,zk2:2181/chroot")
///     .session_timeout(Duration::from_secs(6))
///     .digest("user", "secret")
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    config: Config,
    #[cfg(feature = "tls")]
    tls: Option<crate::zk::tls::Tls>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

impl ClientBuilder {
    /// The session timeout asked of ZooKeeper (default 10 s; the server
    /// bounds it between 2 and 20 ticks).
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.config.session_timeout = timeout;
        self
    }

    /// How long [`ClientBuilder::connect`] (and the first load of a watch or
    /// registration) may take (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Authenticates the session with ZooKeeper's `digest` scheme.
    pub fn digest(mut self, user: &str, password: &str) -> Self {
        self.config.digest = Some(format!("{user}:{password}"));
        self
    }

    /// How watches learn of changes (default [`WatchEngine::Persistent`]:
    /// one persistent recursive watch per set, falling back to one-shot
    /// child watches on a server before ZooKeeper 3.6). Force
    /// [`WatchEngine::OneShot`] to keep server-side watch state minimal
    /// on old ensembles or to compare the two.
    pub fn watch_engine(mut self, engine: WatchEngine) -> Self {
        self.config.watch_engine = engine;
        self
    }

    /// Connects over TLS (feature `tls`): every host of the connect string
    /// is a TLS port (ZooKeeper's `secureClientPort`) unless written
    /// `tcp://host:port`.
    ///
    /// The first connection installs aws-lc-rs as the process's rustls
    /// crypto provider if none is installed yet.
    ///
    /// ```no_run
    /// # async fn demo(ca_pem: String) -> Result<(), serversets::Error> {
    /// let client = serversets::Client::builder("zk1:2281,zk2:2281")
    ///     .tls(serversets::Tls::new().ca_pem(ca_pem))
    ///     .connect()
    ///     .await?;
    /// # let _ = client;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::zk::tls::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects: fails with [`Error::Connect`] naming the address if no
    /// session is established within the connect timeout (with TLS, the
    /// reason includes why the TLS handshake failed, if it did), and with
    /// [`Error::InvalidConfig`] on unusable settings.
    pub async fn connect(self) -> Result<Client> {
        #[cfg(feature = "tls")]
        let config = Config {
            tls: self
                .tls
                .as_ref()
                .map(crate::zk::tls::Tls::build)
                .transpose()?,
            ..self.config
        };
        #[cfg(not(feature = "tls"))]
        let config = self.config;
        if config.connect.trim().is_empty() {
            return Err(Error::InvalidConfig(
                "the ZooKeeper connect string is empty".into(),
            ));
        }
        if config.session_timeout.is_zero() || config.connect_timeout.is_zero() {
            return Err(Error::InvalidConfig("timeouts must be above zero".into()));
        }
        if config.watch_engine == WatchEngine::Etcd {
            return Err(Error::InvalidConfig(
                "WatchEngine::Etcd is etcd's: a ZooKeeper client watches with Persistent or OneShot"
                    .into(),
            ));
        }
        if config.connect.contains("tcp+tls://") && !config.has_tls() {
            return Err(Error::InvalidConfig(format!(
                "connect string {:?} has TLS hosts but no TLS settings (ClientBuilder::tls, feature `tls`)",
                config.connect
            )));
        }
        Ok(Client {
            session: Session::start(config).await?,
        })
    }
}

impl Client {
    /// Starts building a client for a connect string
    /// (`h1:2181,h2:2181[/chroot]`).
    pub fn builder(connect: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            config: Config {
                connect: connect.into(),
                session_timeout: DEFAULT_SESSION_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                digest: None,
                watch_engine: WatchEngine::default(),
                #[cfg(feature = "tls")]
                tls: None,
            },
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Connects with default settings.
    pub async fn connect(connect: &str) -> Result<Client> {
        Client::builder(connect).connect().await
    }

    /// Registers `member` in the set at `path` (creating parent znodes as
    /// needed) and keeps it registered while the returned handle lives.
    pub async fn register(&self, path: &ServerSetPath, member: Member) -> Result<Registration> {
        self.register_with(path, member, RegisterOptions::default())
            .await
    }

    /// [`Client::register`] with options (a health check).
    pub async fn register_with(
        &self,
        path: &ServerSetPath,
        member: Member,
        options: RegisterOptions,
    ) -> Result<Registration> {
        crate::zk::registration::start(self.session.clone(), path.clone(), member, options).await
    }

    /// Watches the set at `path`, serving each live member's service
    /// endpoint. Returns once the set is loaded.
    pub async fn watch(&self, path: &ServerSetPath) -> Result<Watch> {
        self.watch_with(path, Selection::service()).await
    }

    /// Watches the set at `path` with an endpoint selection, or with
    /// [`WatchOptions`] (which can also hold removals back).
    pub async fn watch_with(
        &self,
        path: &ServerSetPath,
        options: impl Into<WatchOptions>,
    ) -> Result<Watch> {
        crate::zk::watch::start(self.session.clone(), path.clone(), options.into()).await
    }

    /// Reads every child of `path` as it is, for diagnosis (the CLI's
    /// `ls`). Children are sorted by name.
    pub async fn inspect(&self, path: &ServerSetPath) -> Result<Vec<RawChild>> {
        let zk = self.zookeeper().ok_or(Error::Closed)?;
        let mut names = match zk.list_children(path.as_str()).await {
            Ok(names) => names,
            Err(zk::Error::NoNode) => Vec::new(),
            Err(e) => return Err(Error::zk("list", path.as_str(), e)),
        };
        names.sort();
        let reads = names.iter().map(|n| zk.get_data(&path.member_path(n)));
        let results = futures::future::join_all(reads).await;
        let mut children = Vec::with_capacity(names.len());
        for (name, result) in names.into_iter().zip(results) {
            let data = match result {
                Ok((data, _)) => data,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(Error::zk("get", &path.member_path(&name), e)),
            };
            let decoded = name
                .starts_with(MEMBER_PREFIX)
                .then(|| codec::decode(&data).map(|d| d.member));
            children.push(RawChild {
                name,
                data,
                decoded,
            });
        }
        Ok(children)
    }

    /// The session's health now.
    pub fn health(&self) -> Health {
        self.session.view().health
    }

    /// Follows the session's health.
    pub fn health_watcher(&self) -> HealthWatcher {
        HealthWatcher::of_session(self.session.views())
    }

    /// The id of the current ZooKeeper session, if there is one.
    pub fn session_id(&self) -> Option<i64> {
        self.zookeeper().map(|zk| zk.session_id().0)
    }

    /// The escape hatch: the current raw `zookeeper-client` handle of the
    /// shared session, for operations this crate does not wrap (add the
    /// `zookeeper-client` crate, version 0.11, to your dependencies to name
    /// its types). `None` between sessions and after close. It is the
    /// session registrations and watches use: do not close it.
    ///
    /// ```no_run
    /// # async fn demo(client: serversets::Client) {
    /// if let Some(zk) = client.zookeeper() {
    ///     if let Ok(children) = zk.list_children("/discovery").await {
    ///         println!("{children:?}");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn zookeeper(&self) -> Option<zk::Client> {
        self.session.view().client
    }

    /// Closes the session: every member registered through this client
    /// disappears at once and watches stop updating.
    pub async fn close(self) {
        self.session.close().await;
    }
}
