//! Either store behind one type, for programs that take a connect string
//! from their user (the CLI, the gateway): ZooKeeper (`h1:2181,h2:2181`)
//! or, with the `etcd` feature, etcd (`etcd://h1:2379,h2:2379`).

use crate::error::Result;
use crate::format::member::Member;
use crate::format::naming::Format;
use crate::format::path::ServerSetPath;
use crate::set::health::{Health, HealthWatcher};
use crate::set::inspect::RawChild;
use crate::set::options::WatchOptions;
use crate::set::registration::RegisterOptions;
use crate::set::registration::Registration;
use crate::set::watch::Watch;
use crate::zk::client::Client;

/// The scheme that marks an etcd connect string.
pub const ETCD_SCHEME: &str = "etcd://";

/// A connected store: registrations and watches work the same on both;
/// the [`Watch`]es and [`Registration`]s are the same types.
///
/// ```no_run
/// # async fn demo(backend: serversets::Backend) -> Result<(), serversets::Error> {
/// use serversets::{ServerSetPath, WatchOptions};
///
/// let watch = backend
///     .watch_with(&ServerSetPath::new("/services/users")?, WatchOptions::new())
///     .await?;
/// println!("{} members on {}", watch.current().len(), backend.store());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Backend {
    /// A ZooKeeper client (one session).
    ZooKeeper(Client),
    /// An etcd client (one connection).
    #[cfg(feature = "etcd")]
    Etcd(crate::etcd::client::EtcdClient),
}

impl Backend {
    /// The etcd endpoints of an `etcd://host:port[,host:port]` connect
    /// string, or `None` for a ZooKeeper connect string.
    pub fn etcd_endpoints(connect: &str) -> Option<&str> {
        connect.strip_prefix(ETCD_SCHEME)
    }

    /// "ZooKeeper" or "etcd".
    pub fn store(&self) -> &'static str {
        match self {
            Backend::ZooKeeper(_) => "ZooKeeper",
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => "etcd",
        }
    }

    /// Watches the set at `path`.
    pub async fn watch_with(
        &self,
        path: &ServerSetPath,
        options: impl Into<WatchOptions>,
    ) -> Result<Watch> {
        match self {
            Backend::ZooKeeper(client) => client.watch_with(path, options).await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(client) => client.watch_with(path, options).await,
        }
    }

    /// Registers `member` in `path`.
    pub async fn register_with(
        &self,
        path: &ServerSetPath,
        member: Member,
        options: RegisterOptions,
    ) -> Result<Registration> {
        match self {
            Backend::ZooKeeper(client) => client.register_with(path, member, options).await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(client) => client.register_with(path, member, options).await,
        }
    }

    /// Every child of `path` as it is stored (`format` is etcd's; ZooKeeper
    /// members are always Finagle's).
    pub async fn inspect(&self, path: &ServerSetPath, format: Format) -> Result<Vec<RawChild>> {
        match self {
            Backend::ZooKeeper(client) => {
                let _ = format;
                client.inspect(path).await
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(client) => client.inspect(path, format).await,
        }
    }

    /// The connection's health now.
    pub fn health(&self) -> Health {
        match self {
            Backend::ZooKeeper(client) => client.health(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(client) => client.health(),
        }
    }

    /// Follows [`Backend::health`].
    pub fn health_watcher(&self) -> HealthWatcher {
        match self {
            Backend::ZooKeeper(client) => client.health_watcher(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(client) => client.health_watcher(),
        }
    }

    /// Closes the client.
    pub async fn close(self) {
        match self {
            Backend::ZooKeeper(client) => client.close().await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(client) => client.close().await,
        }
    }
}

impl From<Client> for Backend {
    fn from(client: Client) -> Self {
        Backend::ZooKeeper(client)
    }
}

#[cfg(feature = "etcd")]
impl From<crate::etcd::client::EtcdClient> for Backend {
    fn from(client: crate::etcd::client::EtcdClient) -> Self {
        Backend::Etcd(client)
    }
}
