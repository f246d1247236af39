//! Publishing snapshots to readers (lock-free) and to change subscribers
//! (coalescing, never unbounded).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use arc_swap::ArcSwap;
use futures::Stream;
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;

use crate::set::snapshot::{diff, Change, Entry, Snapshot};

/// What the publisher hands subscribers: a snapshot and its delta from the
/// previous version.
#[derive(Debug, Default)]
struct Published {
    snapshot: Arc<Snapshot>,
    added: Vec<Arc<Entry>>,
    removed: Vec<Arc<Entry>>,
    /// The source is gone for good: subscriptions end.
    closed: bool,
}

/// The writing side of a set: swaps the current snapshot atomically and
/// wakes subscribers. A [`Watch`](crate::Watch) uses one; so can any other
/// [`Source`](crate::Source), such as a fixed list.
///
/// ```
/// use std::sync::Arc;
/// use serversets::{Endpoint, Entry, Member, Publisher};
///
/// let publisher = Publisher::new();
/// let mut changes = publisher.subscribe();
/// let endpoint = Endpoint::new("10.0.0.1", 11211);
/// let entry = Entry::new(&endpoint.to_string(), endpoint.clone(), 1.0, Arc::new(Member::new(endpoint)));
/// publisher.replace(vec![Arc::new(entry)]);
/// assert_eq!(publisher.current().len(), 1);
/// # tokio_test_block(async move {
/// let change = changes.next().await.unwrap();
/// assert_eq!(change.added.len(), 1);
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug)]
pub struct Publisher {
    current: ArcSwap<Snapshot>,
    tx: watch::Sender<Arc<Published>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// A publisher holding an empty snapshot of version 0.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(Published::default()));
        Publisher {
            current: ArcSwap::from_pointee(Snapshot::default()),
            tx,
        }
    }

    /// The current snapshot: one atomic load, no lock, no await.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot's version, without taking a reference to it
    /// (no shared counter is written: cheap on a hot path).
    pub fn version(&self) -> u64 {
        self.current.load().version()
    }

    /// Publishes a new snapshot of `entries`, which are in snapshot order
    /// already, with its delta.
    pub(crate) fn publish(
        &self,
        entries: Vec<Arc<Entry>>,
        added: Vec<Arc<Entry>>,
        removed: Vec<Arc<Entry>>,
    ) -> Arc<Snapshot> {
        let version = self.current.load().version() + 1;
        let snapshot = Arc::new(Snapshot::from_sorted(version, entries));
        self.current.store(Arc::clone(&snapshot));
        let closed = self.is_closed();
        self.tx.send_replace(Arc::new(Published {
            snapshot: Arc::clone(&snapshot),
            added,
            removed,
            closed,
        }));
        snapshot
    }

    /// Publishes `entries` as the new set, computing the delta from the
    /// current one; publishes nothing when they are equal.
    pub fn replace(&self, entries: Vec<Arc<Entry>>) -> Arc<Snapshot> {
        let current = self.current();
        let candidate = Snapshot::new(current.version(), entries);
        let (added, removed) = diff(&current, &candidate);
        if added.is_empty() && removed.is_empty() && current.version() > 0 {
            return current;
        }
        self.publish(candidate.into_entries(), added, removed)
    }

    /// Ends every subscription: after the changes they have not seen yet,
    /// their streams end (`None`). For a source that is gone for good (a
    /// [`Watch`](crate::Watch) whose client was closed). The current
    /// snapshot stays readable.
    pub fn close(&self) {
        self.tx.send_modify(|published| {
            // The last delta stays with its snapshot, for subscribers that
            // have not seen it yet.
            *published = Arc::new(Published {
                snapshot: Arc::clone(&published.snapshot),
                added: published.added.clone(),
                removed: published.removed.clone(),
                closed: true,
            })
        });
    }

    /// Whether [`Publisher::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.tx.borrow().closed
    }

    /// A subscriber that starts from the current snapshot.
    pub fn subscribe(&self) -> Changes {
        self.subscribe_keeping(Arc::new(()))
    }

    /// A subscriber that starts from the current snapshot; `keep_alive`
    /// is held as long as the subscription (it keeps the source running).
    pub(crate) fn subscribe_keeping(&self, keep_alive: Arc<dyn Send + Sync>) -> Changes {
        let rx = self.tx.subscribe();
        let ended = rx.borrow().closed;
        Changes {
            stream: WatchStream::from_changes(rx),
            last: self.current(),
            spent: None,
            ended,
            _keep_alive: keep_alive,
        }
    }
}

/// A subscription to a set's changes: a [`futures::Stream`] of [`Change`]s
/// (`Send`, `Unpin`, `'static`, so it can be stored in a struct or
/// boxed), with [`Changes::next`] for the common loop.
///
/// Each item is the change since the previous one. A slow subscriber never
/// queues changes: if several happened, it gets one [`Change`] with the
/// combined delta, computed from the last snapshot it saw. The stream ends
/// (`None`) when its source is gone for good: a [`Watch`](crate::Watch)
/// whose client was closed, a [`Publisher`] that was closed or dropped.
///
/// ```
/// use futures::StreamExt;
/// use serversets::{Changes, FixedSet, Source};
///
/// struct Follower { changes: Changes } // nameable and storable
///
/// let set = FixedSet::parse("10.0.0.1:80")?;
/// let mut follower = Follower { changes: set.changes() };
/// set.replace_endpoints(["10.0.0.2:80".parse()?]);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async move {
/// let change = follower.changes.next().await.unwrap(); // StreamExt::next
/// assert_eq!((change.added.len(), change.removed.len()), (1, 1));
/// # });
/// # Ok::<(), serversets::Error>(())
/// ```
pub struct Changes {
    stream: WatchStream<Arc<Published>>,
    last: Arc<Snapshot>,
    /// The snapshot seen before `last`, released at the next call rather
    /// than while a change is being delivered (for a large set, releasing
    /// it touches every entry).
    spent: Option<Arc<Snapshot>>,
    /// The source closed: no more items.
    ended: bool,
    _keep_alive: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("last_version", &self.last.version())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Changes {
    /// Waits for the next change. `None` once the source is gone for good.
    pub async fn next(&mut self) -> Option<Change> {
        futures::StreamExt::next(self).await
    }

    /// The last snapshot this subscriber has seen.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.last
    }
}

impl Stream for Changes {
    type Item = Change;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Change>> {
        let this = self.get_mut();
        this.spent = None;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(published) = ready!(Pin::new(&mut this.stream).poll_next(cx)) else {
                this.ended = true;
                return Poll::Ready(None);
            };
            this.ended = published.closed;
            let version = published.snapshot.version();
            if version <= this.last.version() {
                continue;
            }
            let (added, removed) = if version == this.last.version() + 1 {
                (published.added.clone(), published.removed.clone())
            } else {
                diff(&this.last, &published.snapshot)
            };
            let seen = std::mem::replace(&mut this.last, Arc::clone(&published.snapshot));
            this.spent = Some(seen);
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            return Poll::Ready(Some(Change {
                snapshot: Arc::clone(&published.snapshot),
                added,
                removed,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Arc<Entry> {
        crate::set::snapshot::test_entry(seq, 1.0)
    }

    #[tokio::test]
    async fn coalesces_for_slow_subscribers() {
        let p = Publisher::new();
        let mut fast = p.subscribe();
        let mut slow = p.subscribe();
        p.publish(vec![entry(1)], vec![entry(1)], vec![]);
        let c = fast.next().await.unwrap();
        assert_eq!(c.added.len(), 1);
        p.publish(vec![entry(1), entry(2)], vec![entry(2)], vec![]);
        p.publish(vec![entry(2)], vec![], vec![entry(1)]);
        // It missed version 2 too: one combined delta from {1} to {2}.
        let c = fast.next().await.unwrap();
        assert_eq!((c.added.len(), c.removed.len()), (1, 1));
        let c = slow.next().await.unwrap();
        assert_eq!(c.snapshot.version(), 3);
        assert_eq!(c.added.len(), 1);
        assert_eq!(c.added[0].sequence, Some(2));
        assert!(c.removed.is_empty());
        assert_eq!(p.current().len(), 1);
    }

    #[tokio::test]
    async fn a_closed_publisher_ends_its_streams_after_the_last_change() {
        fn check<T: Stream + Send + Unpin + 'static>(_: &T) {}
        let p = Publisher::new();
        let mut changes = p.subscribe();
        check(&changes);
        p.publish(vec![entry(1)], vec![entry(1)], vec![]);
        p.close();
        assert!(p.is_closed());
        let c = changes.next().await.unwrap();
        assert_eq!(c.added.len(), 1, "the change before the close is delivered");
        assert!(changes.next().await.is_none());
        assert!(changes.next().await.is_none());
        assert!(
            p.subscribe().next().await.is_none(),
            "a late subscriber ends at once"
        );
        // Dropping the publisher ends them too.
        let q = Publisher::new();
        let mut changes = q.subscribe();
        drop(q);
        assert!(changes.next().await.is_none());
    }
}
