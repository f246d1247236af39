//! Publishing snapshots to readers (lock-free) and to change subscribers
//! (coalescing, never unbounded).

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::Stream;
use tokio::sync::watch;

use crate::snapshot::{diff, Change, Entry, Snapshot};

/// What the publisher hands subscribers: a snapshot and its delta from the
/// previous version.
#[derive(Debug, Default)]
struct Published {
    snapshot: Arc<Snapshot>,
    added: Vec<Arc<Entry>>,
    removed: Vec<Arc<Entry>>,
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
        self.tx.send_replace(Arc::new(Published {
            snapshot: Arc::clone(&snapshot),
            added,
            removed,
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

    /// A subscriber that starts from the current snapshot.
    pub fn subscribe(&self) -> Changes {
        self.subscribe_keeping(Arc::new(()))
    }

    /// A subscriber that starts from the current snapshot; `keep_alive`
    /// is held as long as the subscription (it keeps the source running).
    pub(crate) fn subscribe_keeping(&self, keep_alive: Arc<dyn Send + Sync>) -> Changes {
        let mut rx = self.tx.subscribe();
        rx.mark_unchanged();
        Changes {
            rx,
            last: self.current(),
            spent: None,
            _keep_alive: keep_alive,
        }
    }
}

/// A subscription to a set's changes.
///
/// Each call to [`Changes::next`] returns the changes since the previous
/// one. A slow subscriber never queues changes: if several happened, it
/// gets one [`Change`] with the combined delta, computed from the last
/// snapshot it saw.
pub struct Changes {
    rx: watch::Receiver<Arc<Published>>,
    last: Arc<Snapshot>,
    /// The snapshot seen before `last`, released at the next call rather
    /// than while a change is being delivered (for a large set, releasing
    /// it touches every entry).
    spent: Option<Arc<Snapshot>>,
    _keep_alive: Arc<dyn Send + Sync>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("last_version", &self.last.version())
            .finish()
    }
}

impl Changes {
    /// Waits for the next change. `None` once the source is gone for good.
    pub async fn next(&mut self) -> Option<Change> {
        self.spent = None;
        loop {
            self.rx.changed().await.ok()?;
            let published = Arc::clone(&self.rx.borrow_and_update());
            let version = published.snapshot.version();
            if version <= self.last.version() {
                continue;
            }
            let (added, removed) = if version == self.last.version() + 1 {
                (published.added.clone(), published.removed.clone())
            } else {
                diff(&self.last, &published.snapshot)
            };
            let seen = std::mem::replace(&mut self.last, Arc::clone(&published.snapshot));
            self.spent = Some(seen);
            if added.is_empty() && removed.is_empty() {
                continue;
            }
            return Some(Change {
                snapshot: Arc::clone(&published.snapshot),
                added,
                removed,
            });
        }
    }

    /// The last snapshot this subscriber has seen.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.last
    }

    /// The changes as a `futures::Stream`.
    pub fn into_stream(self) -> impl Stream<Item = Change> + Send {
        futures::stream::unfold(self, |mut changes| async move {
            let change = changes.next().await?;
            Some((change, changes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> Arc<Entry> {
        crate::snapshot::test_entry(seq, 1.0)
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
}
