//! The trait every typed set is built on.

use std::sync::Arc;

use crate::set::publisher::Changes;
use crate::set::snapshot::Snapshot;

/// A set of endpoints that changes over time: a ZooKeeper
/// [`Watch`](crate::Watch), or a fixed list ([`FixedSet`](crate::FixedSet)).
///
/// Typed sets (a memcache client, an HTTP client, a balancer) take any
/// `Source`: they read [`Source::current`] once and follow
/// [`Source::changes`].
///
/// ```
/// use std::sync::Arc;
/// use serversets::{Publisher, Snapshot, Source, Changes};
///
/// /// A source that never changes.
/// struct Empty(Publisher);
///
/// impl Source for Empty {
///     fn current(&self) -> Arc<Snapshot> { self.0.current() }
///     fn changes(&self) -> Changes { self.0.subscribe() }
/// }
///
/// fn size(source: &dyn Source) -> usize { source.current().len() }
/// assert_eq!(size(&Empty(Publisher::new())), 0);
/// ```
pub trait Source: Send + Sync + 'static {
    /// The set now: no lock, no await.
    fn current(&self) -> Arc<Snapshot>;

    /// The changes from now on.
    fn changes(&self) -> Changes;

    /// The current snapshot's [version](Snapshot::version): what a typed
    /// set compares on its request path to know whether to rebuild.
    /// Sources backed by a [`Publisher`](crate::Publisher) answer without
    /// touching the snapshot's reference count.
    fn version(&self) -> u64 {
        self.current().version()
    }
}

impl<S: Source + ?Sized> Source for Arc<S> {
    fn current(&self) -> Arc<Snapshot> {
        (**self).current()
    }

    fn changes(&self) -> Changes {
        (**self).changes()
    }

    fn version(&self) -> u64 {
        (**self).version()
    }
}
