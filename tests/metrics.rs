//! The metrics of `serversets::metrics`, read through the `metrics`
//! facade's debugging recorder, against a real ZooKeeper: set gauges per
//! view, ZooKeeper request counters and latencies, session events and
//! registrations.
//!
//! A process has one global recorder: this file holds one test, which
//! installs it before anything records.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serversets::metrics::{
    REGISTRATIONS_CREATED, REGISTRATIONS_RECREATED, SESSION_EVENTS, SET_HEALTH, SET_LIMBO,
    SET_SIZE, ZK_LISTINGS, ZK_LISTING_SECONDS, ZK_READS, ZK_READ_SECONDS,
};
use serversets::{codec, Endpoint, Selection, WatchOptions};

/// A metric's name and its labels, sorted.
type Key = (String, Vec<(String, String)>);

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// What the recorder saw: counters and histogram samples added up over
/// every snapshot taken, gauges as of the last one (a snapshot of the
/// debugging recorder resets what it reads).
struct Seen {
    snapshotter: Snapshotter,
    counters: HashMap<Key, u64>,
    samples: HashMap<Key, Vec<f64>>,
    gauges: HashMap<Key, f64>,
}

impl Seen {
    fn new(snapshotter: Snapshotter) -> Self {
        Seen {
            snapshotter,
            counters: HashMap::new(),
            samples: HashMap::new(),
            gauges: HashMap::new(),
        }
    }

    fn take(&mut self) {
        self.gauges.clear();
        for (composite, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let k = composite.key();
            let mut labels: Vec<(String, String)> = k
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let k = (k.name().to_owned(), labels);
            match value {
                DebugValue::Counter(n) => *self.counters.entry(k).or_default() += n,
                DebugValue::Gauge(g) => {
                    self.gauges.insert(k, g.into_inner());
                }
                DebugValue::Histogram(h) => self
                    .samples
                    .entry(k)
                    .or_default()
                    .extend(h.into_iter().map(|v| v.into_inner())),
            }
        }
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters.get(&key(name, labels)).copied().unwrap_or(0)
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> &[f64] {
        self.samples
            .get(&key(name, labels))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Takes snapshots until one shows the gauge at `want` (gauges are set
    /// by the engine's task, possibly just after a watcher saw the change).
    async fn wait_gauge(&mut self, name: &str, labels: &[(&str, &str)], want: f64) {
        let k = key(name, labels);
        let what = format!("{name}{labels:?} == {want}");
        within(&what, async {
            loop {
                self.take();
                if self.gauges.get(&k) == Some(&want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }

    /// Takes snapshots until the counter is at least `want`.
    async fn wait_counter(&mut self, name: &str, labels: &[(&str, &str)], want: u64) {
        let what = format!("{name}{labels:?} >= {want}");
        within(&what, async {
            loop {
                self.take();
                if self.counter(name, labels) >= want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
    }
}

/// A member with an `http` endpoint on `port + 1000`, as Finagle's JSON.
fn data(port: u16) -> Vec<u8> {
    codec::encode(&member(port).with_additional("http", Endpoint::new("127.0.0.1", port + 1000)))
}

#[test]
fn metrics_of_watches_sessions_and_registrations() {
    let recorder = DebuggingRecorder::new();
    let mut seen = Seen::new(recorder.snapshotter());
    recorder
        .install()
        .expect("the only recorder of this process");
    serversets::metrics::describe();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let server = zookeeper();
        let raw = raw(&server.connect_string()).await;
        let users = "/metrics/users";
        mkdir(&raw, users).await;
        raw_member(&raw, users, &data(7001)).await;
        raw_member(&raw, users, &data(7002)).await;

        let client = client(&server.connect_string()).await;
        seen.take();
        assert_eq!(
            seen.counter(SESSION_EVENTS, &[("state", "connected")]),
            1,
            "the first session counts as connected"
        );
        assert_eq!(
            seen.counter(SESSION_EVENTS, &[("state", "disconnected")]),
            0
        );

        // A set of two: its size and health, and what loading it cost.
        let watch = client.watch(&path(users)).await.unwrap();
        wait_set(&watch, "two members", |s| s.len() == 2).await;
        let http = client
            .watch_with(&path(users), Selection::endpoint("http"))
            .await
            .unwrap();
        wait_set(&http, "two http endpoints", |s| s.len() == 2).await;
        let plain = [("path", users)];
        let selected = [("path", users), ("selection", "endpoint=http")];
        seen.take();
        assert_eq!(seen.gauges.get(&key(SET_SIZE, &plain)), Some(&2.0));
        assert_eq!(seen.gauges.get(&key(SET_HEALTH, &plain)), Some(&1.0));
        assert_eq!(seen.gauges.get(&key(SET_LIMBO, &plain)), Some(&0.0));
        assert_eq!(
            seen.gauges.get(&key(SET_SIZE, &selected)),
            Some(&2.0),
            "a selection other than the service endpoint is labelled"
        );
        assert_eq!(seen.gauges.get(&key(SET_HEALTH, &selected)), Some(&1.0));
        let stats = watch.stats();
        assert!(stats.listings >= 1 && stats.reads >= 2, "{stats:?}");
        assert_eq!(
            seen.counter(ZK_LISTINGS, &plain),
            stats.listings,
            "the same count as WatchStats"
        );
        assert_eq!(seen.counter(ZK_READS, &plain), stats.reads);
        let listing = seen.samples(ZK_LISTING_SECONDS, &plain);
        assert_eq!(
            listing.len() as u64,
            stats.listings,
            "one sample per listing"
        );
        assert!(listing.iter().all(|s| *s > 0.0 && *s < 60.0), "{listing:?}");
        assert!(!seen.samples(ZK_READ_SECONDS, &plain).is_empty());

        // A registration joins: the set is three, and one node was created.
        let mut registration = client.register(&path(users), member(7003)).await.unwrap();
        wait_set(&watch, "three members", |s| s.len() == 3).await;
        seen.wait_gauge(SET_SIZE, &plain, 3.0).await;
        assert_eq!(seen.counter(REGISTRATIONS_CREATED, &plain), 1);
        assert_eq!(seen.counter(REGISTRATIONS_RECREATED, &plain), 0);
        assert_eq!(
            seen.counter(ZK_READS, &plain),
            watch.stats().reads,
            "the join's read is counted"
        );

        // Deleted by someone else: created again.
        let znode = registration.znode().expect("registered");
        raw.delete(&znode, None).await.expect("delete the member");
        let again = within("re-created", async {
            loop {
                match registration.znode() {
                    Some(again) if again != znode => return again,
                    _ => {
                        registration.changed().await;
                    }
                }
            }
        })
        .await;
        assert_ne!(again, znode);
        seen.wait_counter(REGISTRATIONS_RECREATED, &plain, 1).await;
        assert_eq!(seen.counter(REGISTRATIONS_CREATED, &plain), 2);

        // Held removals: a member that leaves stays published, in limbo.
        let sharded = "/metrics/sharded";
        mkdir(&raw, sharded).await;
        let a = raw_member(&raw, sharded, &codec::encode(&member(7101).with_shard(0))).await;
        raw_member(&raw, sharded, &codec::encode(&member(7102).with_shard(0))).await;
        let held = client
            .watch_with(
                &path(sharded),
                WatchOptions::new()
                    .selection(Selection::service().with_shard(0))
                    .hold_removals(Duration::from_secs(600)),
            )
            .await
            .unwrap();
        wait_set(&held, "two sharded members", |s| s.len() == 2).await;
        let shard = [("path", sharded), ("selection", "shard=0")];
        raw.delete(&a, None).await.expect("delete a member");
        seen.wait_gauge(SET_LIMBO, &shard, 1.0).await;
        assert_eq!(held.current().len(), 2, "the removal is held back");

        drop(registration);
        client.close().await;
    });
}
