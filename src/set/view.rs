//! One selection's view of a member cache: the entries it serves, the
//! removals it holds back, and the publisher readers load from.
//!
//! Pure: a backend's watch keeps one cache of members per set and one
//! view per distinct [`WatchOptions`] of its watchers; it tells each view
//! which member names changed (or that weights did) and the view works out
//! the entries added and removed. No I/O and no clock of its own: "now"
//! comes in, for the stabilizer's windows.

use std::sync::Arc;

use tokio::time::Instant;

use crate::format::member::member_sequence;
use crate::format::selection::Selection;
use crate::metrics::ViewGauges;
use crate::set::options::WatchOptions;
use crate::set::publisher::Publisher;
use crate::set::served::Served;
use crate::set::snapshot::{diff, Entry, Snapshot};
use crate::set::stabilizer::Stabilizer;

/// A cache of members, as a view reads it.
pub(crate) trait Members {
    /// The entry `selection` serves for the member named `name`: `None`
    /// when there is no such member, its data is unusable or the selection
    /// skips it.
    fn entry(&self, name: &str, selection: &Selection) -> Option<Arc<Entry>>;

    /// Every cached member's name, in no particular order.
    fn names(&self) -> Vec<&str>;

    /// The sequence number of the entry last published for the member
    /// named `name`, if any: where a view finds it among its served
    /// entries. ZooKeeper's is in the name; a backend whose names do not
    /// say it (etcd: the key's create revision) keeps the old one until
    /// the views have applied the change.
    fn served_sequence(&self, name: &str) -> Option<u64> {
        member_sequence(name)
    }
}

/// The served entries of one [`WatchOptions`], published, and their
/// gauges (size and held-back removals; health is the engine's to say).
#[derive(Debug)]
pub(crate) struct View {
    options: WatchOptions,
    served: Served,
    stabilizer: Option<Stabilizer>,
    publisher: Arc<Publisher>,
    gauges: ViewGauges,
}

impl Drop for View {
    fn drop(&mut self) {
        self.gauges.clear();
    }
}

impl View {
    /// An empty view that publishes to `publisher`; nothing is published
    /// until the first [`View::rebuild`].
    pub(crate) fn new(options: WatchOptions, publisher: Arc<Publisher>) -> Self {
        View {
            stabilizer: options.removal_window().map(Stabilizer::new),
            options,
            served: Served::default(),
            publisher,
            gauges: ViewGauges::noop(),
        }
    }

    /// Records its size, held-back removals and health in `gauges` (none
    /// by default).
    pub(crate) fn with_gauges(mut self, gauges: ViewGauges) -> Self {
        self.gauges = gauges;
        self.record();
        self
    }

    /// Sets its gauges to what it publishes now.
    pub(crate) fn record(&self) {
        let held = self.stabilizer.as_ref().map_or(0, Stabilizer::held);
        self.gauges.size(self.publisher.current().len(), held);
    }

    /// Sets its health gauge: whether its watch is in sync.
    pub(crate) fn record_health(&self, connected: bool) {
        self.gauges.health(connected);
    }

    /// The options this view serves.
    pub(crate) fn options(&self) -> &WatchOptions {
        &self.options
    }

    /// Where it publishes.
    pub(crate) fn publisher(&self) -> &Arc<Publisher> {
        &self.publisher
    }

    /// Builds every entry anew from the cache (the first load, or weights
    /// that changed) and publishes what differs; the first call always
    /// publishes, even an empty set.
    pub(crate) fn rebuild(&mut self, members: &impl Members, now: Instant) {
        let selection = self.options.served();
        let entries = members
            .names()
            .into_iter()
            .filter_map(|name| members.entry(name, selection))
            .collect();
        let new = Snapshot::new(0, entries);
        let old = Snapshot::from_sorted(0, self.served.replace(new.entries().to_vec()));
        let (added, removed) = diff(&old, &new);
        self.publish(added, removed, now);
    }

    /// Applies a change of the members named in `touched` (joined, left or
    /// re-read, in any order and possibly repeated): each one's entry is
    /// taken from the cache as it is now.
    pub(crate) fn apply<'a>(
        &mut self,
        touched: impl IntoIterator<Item = &'a str>,
        members: &impl Members,
        now: Instant,
    ) {
        let selection = self.options.served();
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        for name in touched {
            let key = (members.served_sequence(name).unwrap_or(u64::MAX), name);
            let old = self.served.remove(key);
            let new = members.entry(name, selection);
            match (old, new) {
                (Some(old), Some(new)) if old == new => {
                    self.served.insert(&old);
                }
                (old, new) => {
                    removed.extend(old);
                    if let Some(new) = new {
                        self.served.insert(&new);
                        added.push(new);
                    }
                }
            }
        }
        self.publish(added, removed, now);
    }

    /// Ends the holding windows due by `now`, publishing if any ended.
    pub(crate) fn expire(&mut self, now: Instant) {
        if let Some(stabilizer) = &mut self.stabilizer {
            if stabilizer.expire(now) {
                self.publisher.replace(stabilizer.view(self.served.iter()));
                self.record();
            }
        }
    }

    /// When held-back removals are next due, if any are.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.stabilizer.as_ref().and_then(Stabilizer::next_deadline)
    }

    fn publish(&mut self, added: Vec<Arc<Entry>>, removed: Vec<Arc<Entry>>, now: Instant) {
        if let Some(stabilizer) = &mut self.stabilizer {
            stabilizer.observe(&added, &removed, now);
            self.publisher.replace(stabilizer.view(self.served.iter()));
            self.record();
            return;
        }
        let first = self.publisher.version() == 0;
        if first || !added.is_empty() || !removed.is_empty() {
            let snapshot = self
                .publisher
                .publish(self.served.publishable(), added, removed);
            self.served.published(snapshot);
            self.record();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::format::endpoint::Endpoint;
    use crate::format::member::Member;

    /// Members by name, each at port = its sequence.
    #[derive(Default)]
    struct Cache(BTreeMap<String, Arc<Member>>);

    impl Cache {
        fn put(&mut self, seq: u64, shard: Option<i32>) -> String {
            let name = format!("member_{seq:010}");
            let mut member = Member::new(Endpoint::new("h", seq as u16));
            member.shard = shard;
            self.0.insert(name.clone(), Arc::new(member));
            name
        }
    }

    impl Members for Cache {
        fn entry(&self, name: &str, selection: &Selection) -> Option<Arc<Entry>> {
            let member = self.0.get(name)?;
            let endpoint = selection.select(member)?.clone();
            Some(Arc::new(Entry::new(
                name,
                endpoint,
                1.0,
                Arc::clone(member),
            )))
        }

        fn names(&self) -> Vec<&str> {
            self.0.keys().map(String::as_str).collect()
        }
    }

    fn ports(view: &View) -> Vec<u16> {
        view.publisher()
            .current()
            .iter()
            .map(|e| e.endpoint.port)
            .collect()
    }

    #[test]
    fn deltas_follow_the_cache_whatever_the_order_of_names() {
        let mut cache = Cache::default();
        let a = cache.put(1, Some(0));
        let b = cache.put(2, Some(1));
        let publisher = Arc::new(Publisher::new());
        let mut view = View::new(
            WatchOptions::new().selection(Selection::service().with_shard(0)),
            Arc::clone(&publisher),
        );
        let now = Instant::now();
        view.rebuild(&cache, now);
        let mut changes = publisher.subscribe();
        assert_eq!(ports(&view), [1], "the shard filter applies");
        // Joined then left within one batch, and a name repeated.
        let c = cache.put(3, Some(0));
        cache.0.remove(&a);
        view.apply(
            [c.as_str(), a.as_str(), c.as_str(), b.as_str()],
            &cache,
            now,
        );
        assert_eq!(ports(&view), [3]);
        use futures::FutureExt;
        let change = changes.next().now_or_never().flatten().expect("a change");
        let added: Vec<u16> = change.added.iter().map(|e| e.endpoint.port).collect();
        let removed: Vec<u16> = change.removed.iter().map(|e| e.endpoint.port).collect();
        assert_eq!((added, removed), (vec![3], vec![1]));
        // Nothing changed for this selection: nothing published.
        let version = publisher.version();
        view.apply([b.as_str()], &cache, now);
        assert_eq!(publisher.version(), version);
    }

    /// The view's gauges follow what it publishes and go to 0 when it is
    /// dropped.
    #[test]
    fn gauges_follow_the_view_and_go_to_zero_when_it_is_dropped() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        use std::time::Duration;

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        // Gauges by name, for the view of /s with shard 0; reading resets
        // them (the debugging recorder's way).
        let read = || -> BTreeMap<String, f64> {
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter_map(|(key, _, _, value)| {
                    let labels: Vec<String> = key
                        .key()
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect();
                    assert_eq!(labels, ["path=/s", "selection=shard=0"]);
                    match value {
                        DebugValue::Gauge(g) => Some((key.key().name().to_owned(), g.into_inner())),
                        _ => None,
                    }
                })
                .collect()
        };
        let mut cache = Cache::default();
        let a = cache.put(1, Some(0));
        cache.put(2, Some(0));
        cache.put(3, Some(1));
        let options = WatchOptions::new()
            .selection(Selection::service().with_shard(0))
            .hold_removals(Duration::from_secs(5));
        let now = Instant::now();
        let mut view = metrics::with_local_recorder(&recorder, || {
            View::new(options.clone(), Arc::new(Publisher::new()))
                .with_gauges(ViewGauges::new("/s", options.served()))
        });
        view.rebuild(&cache, now);
        view.record_health(true);
        let gauges = read();
        assert_eq!(gauges["serversets_set_size"], 2.0);
        assert_eq!(gauges["serversets_set_limbo"], 0.0);
        assert_eq!(gauges["serversets_set_health"], 1.0);
        // A member leaves: held back, still published.
        cache.0.remove(&a);
        view.apply([a.as_str()], &cache, now);
        let gauges = read();
        assert_eq!(gauges["serversets_set_size"], 2.0);
        assert_eq!(gauges["serversets_set_limbo"], 1.0);
        // Its window ends.
        view.expire(now + Duration::from_secs(6));
        let gauges = read();
        assert_eq!(gauges["serversets_set_size"], 1.0);
        assert_eq!(gauges["serversets_set_limbo"], 0.0);
        // Set again and not read since: they stand until the view drops.
        view.record();
        view.record_health(true);
        drop(view);
        let gauges = read();
        assert_eq!(gauges["serversets_set_size"], 0.0);
        assert_eq!(gauges["serversets_set_health"], 0.0);
    }
}
