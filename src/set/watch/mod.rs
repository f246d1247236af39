//! The watch handle every backend returns: an always-current snapshot,
//! a change stream, leaders and health.
//!
//! Behind the handles of one set through one client runs one engine (the
//! backend's I/O and member cache) and one [`Hub`](hub::Hub) of views; the
//! handles only read what the hub publishes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::format::path::ServerSetPath;
use crate::format::selection::Selection;
use crate::set::health::{Health, HealthWatcher};
use crate::set::options::WatchOptions;
use crate::set::publisher::{Changes, Publisher};
use crate::set::snapshot::Snapshot;

pub(crate) mod hub;
pub(crate) mod stats;

pub use stats::WatchStats;

use hub::{Command, Status};

/// How watches learn of changes (see
/// [`ClientBuilder::watch_engine`](crate::ClientBuilder::watch_engine)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WatchEngine {
    /// One persistent recursive watch per set (ZooKeeper 3.6+): a join
    /// costs one read, a leave none, and no change lists the set. A server
    /// that refuses it gets [`WatchEngine::OneShot`].
    #[default]
    Persistent,
    /// One-shot child watches, re-armed by listing the set after every
    /// change (any ZooKeeper).
    OneShot,
    /// An etcd watch of the set's key prefix (the etcd backend).
    Etcd,
}

/// A watched serverset. Cloning is cheap; the watch runs until the last
/// clone (and the last [`Changes`] taken from it) is dropped. Watches of
/// the same path through one client share one ZooKeeper watch and one
/// member cache; those with the same options share everything.
///
/// ```no_run
/// # async fn demo() -> Result<(), serversets::Error> {
/// use futures::StreamExt;
/// use serversets::{Client, ServerSetPath};
///
/// let client = Client::connect("127.0.0.1:2181").await?;
/// let watch = client.watch(&ServerSetPath::new("/discovery/prod/users")?).await?;
/// for entry in watch.current().iter() {
///     println!("{} weight {}", entry.endpoint, entry.weight);
/// }
/// let mut changes = watch.changes();
/// while let Some(change) = changes.next().await {
///     println!("+{} -{} now {}", change.added.len(), change.removed.len(), change.snapshot.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Watch {
    inner: Arc<Inner>,
}

/// One view's handle, shared by its watches.
#[derive(Debug)]
pub(crate) struct Inner {
    path: ServerSetPath,
    options: WatchOptions,
    publisher: Arc<Publisher>,
    status: Arc<Status>,
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The engine may be gone already: nothing to release then.
        let _ = self.commands.send(Command::Release(self.id));
    }
}

impl Watch {
    /// The watch a hub answers `handle` with, waiting up to `wait` for the
    /// set's first load.
    pub(crate) async fn subscribed(
        handle: oneshot::Receiver<Arc<Inner>>,
        path: &ServerSetPath,
        wait: Duration,
    ) -> Result<Watch> {
        match tokio::time::timeout(wait, handle).await {
            Ok(Ok(inner)) => Ok(Watch { inner }),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout {
                what: format!("initial load of {path}"),
                after: wait,
            }),
        }
    }

    /// The current set: one atomic load, no lock, no await.
    pub fn current(&self) -> Arc<Snapshot> {
        self.inner.publisher.current()
    }

    /// A subscription to changes from now on.
    pub fn changes(&self) -> Changes {
        self.inner
            .publisher
            .subscribe_keeping(Arc::clone(&self.inner) as Arc<dyn Send + Sync>)
    }

    /// The set's leader (its oldest live member), now and at every change
    /// of leader: a [`Leaders`](crate::Leaders) stream.
    pub fn leaders(&self) -> crate::Leaders {
        crate::Leaders::of(self)
    }

    /// Whether the set is in sync with its backend right now.
    pub fn health(&self) -> Health {
        *self.inner.status.health.borrow()
    }

    /// Follows this watch's health.
    pub fn health_watcher(&self) -> HealthWatcher {
        HealthWatcher::new(self.inner.status.health.clone())
    }

    /// The watched path.
    pub fn path(&self) -> &ServerSetPath {
        &self.inner.path
    }

    /// The endpoint selection this watch serves.
    pub fn selection(&self) -> &Selection {
        self.inner.options.served()
    }

    /// The engine in use: on ZooKeeper [`WatchEngine::Persistent`] unless
    /// the client was told otherwise or the server refused persistent
    /// watches; on etcd [`WatchEngine::Etcd`].
    pub fn engine(&self) -> WatchEngine {
        self.inner.status.kind()
    }

    /// What this watch's engine has asked of its backend so far.
    pub fn stats(&self) -> WatchStats {
        self.inner.status.counters.snapshot()
    }
}

impl crate::Source for Watch {
    fn current(&self) -> Arc<Snapshot> {
        Watch::current(self)
    }

    fn changes(&self) -> Changes {
        Watch::changes(self)
    }

    fn version(&self) -> u64 {
        self.inner.publisher.version()
    }
}
