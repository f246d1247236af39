//! What a watch costs ZooKeeper, counted.

use std::sync::atomic::{AtomicU64, Ordering};

/// Requests and events of the engine behind a [`Watch`](crate::Watch),
/// since it started (watches of the same path through one client share an
/// engine, so they share these counts).
///
/// ```no_run
/// # async fn demo(watch: serversets::Watch) {
/// let stats = watch.stats();
/// println!("{} listings, {} node reads, {} events", stats.listings, stats.reads, stats.events);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchStats {
    /// Children listings of the set path (the initial load, one per
    /// reconnection, and with the one-shot engine one per change).
    pub listings: u64,
    /// Nodes read (members and weight vectors), however they were batched.
    pub reads: u64,
    /// Watch events received from ZooKeeper.
    pub events: u64,
}

/// The live counters behind [`WatchStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    listings: AtomicU64,
    reads: AtomicU64,
    events: AtomicU64,
}

impl Counters {
    pub(crate) fn count_listing(&self) {
        self.listings.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_reads(&self, n: usize) {
        self.reads.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> WatchStats {
        WatchStats {
            listings: self.listings.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
        }
    }
}
