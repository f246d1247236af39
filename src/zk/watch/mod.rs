//! Watching a serverset: an always-current snapshot and a change stream.
//!
//! The parts, each in its own module:
//! - [`machine`]: what the watch knows of the set, pure (inputs in,
//!   reads and deltas out), property-tested;
//! - [`engine`]: the task shared by every watch of one path through one
//!   client: the machine, one view per distinct [`WatchOptions`], the
//!   handles;
//! - [`persistent`] (default) and [`oneshot`] (fallback): the drivers
//!   that do the I/O, on a persistent recursive watch or on one-shot child
//!   watches;
//! - [`read`]: batched reads of the nodes the machine asks for.
//!
//! While ZooKeeper is unreachable the last good set is kept.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::format::path::ServerSetPath;
use crate::format::selection::Selection;
use crate::set::options::WatchOptions;
use crate::set::publisher::{Changes, Publisher};
use crate::set::snapshot::Snapshot;
use crate::zk::health::{Health, HealthWatcher};
use crate::zk::session::Session;

pub(crate) mod engine;
pub(crate) mod machine;
mod oneshot;
mod persistent;
mod read;
mod stats;

pub use stats::WatchStats;

use engine::{Command, Engine, Status};

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
    pub(crate) async fn start(
        session: Session,
        path: ServerSetPath,
        options: WatchOptions,
    ) -> Result<Watch> {
        let wait = session.shared.config.connect_timeout;
        let handle = Engine::subscribe(&session, &path, options);
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

    /// Whether the set is in sync with ZooKeeper right now.
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

    /// The engine in use: [`WatchEngine::Persistent`] unless the client
    /// was told otherwise or the server refused persistent watches.
    pub fn engine(&self) -> WatchEngine {
        self.inner.status.kind()
    }

    /// What this watch's engine has asked of ZooKeeper so far.
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
