//! What a watch costs its backend, counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::StoreRequests;

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
    /// reconnection, and with the one-shot engine one per change); on
    /// etcd, prefix gets (the initial load and one per resync).
    pub listings: u64,
    /// Nodes read (members and weight vectors), however they were
    /// batched; always 0 on etcd (a get returns the values).
    pub reads: u64,
    /// Watch events received from the backend.
    pub events: u64,
}

/// The live counters behind [`WatchStats`], and the engine's metrics
/// (see [`crate::metrics`]).
#[derive(Debug)]
pub(crate) struct Counters {
    listings: AtomicU64,
    reads: AtomicU64,
    events: AtomicU64,
    metrics: StoreRequests,
}

impl Counters {
    /// Counters that also record the ZooKeeper metrics of the watch of
    /// `path`.
    pub(crate) fn for_zookeeper(path: &str) -> Self {
        Counters::recording(StoreRequests::zookeeper(path))
    }

    /// Counters that also record the etcd metrics of the watch of `path`.
    #[cfg(feature = "etcd")]
    pub(crate) fn for_etcd(path: &str) -> Self {
        Counters::recording(StoreRequests::etcd(path))
    }

    fn recording(metrics: StoreRequests) -> Self {
        Counters {
            listings: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            events: AtomicU64::new(0),
            metrics,
        }
    }

    pub(crate) fn count_listing(&self) {
        self.listings.fetch_add(1, Ordering::Relaxed);
        self.metrics.listings.increment(1);
    }

    pub(crate) fn count_reads(&self, n: usize) {
        self.reads.fetch_add(n as u64, Ordering::Relaxed);
        self.metrics.reads.increment(n as u64);
    }

    /// One listing request took `took`.
    pub(crate) fn time_listing(&self, took: Duration) {
        self.metrics.listing_seconds.record(took.as_secs_f64());
    }

    /// One read request (a multi-read or a get) took `took`.
    pub(crate) fn time_read(&self, took: Duration) {
        self.metrics.read_seconds.record(took.as_secs_f64());
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
