//! The memcache set's metrics (`set="memcache"`), read through the
//! `metrics` facade's debugging recorder (a local one: the set's handles
//! are made with it and keep recording to it), against a real memcached
//! and a stopped one: operations, failed ones and ejections; the pools
//! inside record nothing of their own.

use std::collections::BTreeMap;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serversets::accrual::FailureAccrual;
use serversets::metrics::{EJECTIONS, REQUESTS, REQUEST_ERRORS, REVIVALS};
use serversets::{Endpoint, FixedSet};
use serversets_memcache::McSet;
use testkit::Memcached;

fn endpoint(server: &Memcached) -> Endpoint {
    server.endpoint().parse().expect("endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_errors_and_ejections_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let live = Memcached::start().expect("memcached");
    let mut stopped = Memcached::start().expect("memcached");
    stopped.stop();
    let cache = metrics::with_local_recorder(&recorder, || {
        McSet::builder(FixedSet::from_endpoints([
            endpoint(&live),
            endpoint(&stopped),
        ]))
        .timeout(Duration::from_millis(500))
        .failure_accrual(
            FailureAccrual::new()
                .consecutive_failures(2)
                .backoff(Duration::from_secs(60), Duration::from_secs(60)),
        )
        .build()
    });
    let (mut operations, mut failed) = (0u64, 0u64);
    let mut on_the_live_server = None;
    for i in 0..40 {
        let key = format!("metrics:{i}");
        if cache.set(&key, b"v", 0).await.is_err() {
            failed += 1;
        } else {
            on_the_live_server = Some(key);
        }
        operations += 1;
    }
    let keys: Vec<String> = (0..10).map(|i| format!("metrics:{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    if cache.get_multi(&keys).await.is_err() {
        failed += 1;
    }
    operations += 1;
    // Refused before any I/O: still one operation and one error each.
    let huge = vec![0u8; 2 * 1024 * 1024];
    assert!(cache.set("metrics:huge", &huge, 0).await.is_err());
    assert!(cache.get("bad key").await.is_err());
    (operations, failed) = (operations + 2, failed + 2);
    // Dropped by its caller midway: counted when it started (a key of the
    // live server: no error either way).
    let live_key = on_the_live_server.expect("keys hash to the live server");
    let _ = tokio::time::timeout(Duration::ZERO, cache.get(&live_key)).await;
    operations += 1;
    assert!(failed >= 2, "some keys hash to the stopped server");
    assert!(failed < operations, "others to the live one");

    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<String> = key
            .key()
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let DebugValue::Counter(n) = value else {
            panic!("{key:?} is not a counter");
        };
        counts.insert((key.key().name().to_owned(), labels.join(",")), n);
    }
    let count = |name: &str| counts.get(&(name.to_owned(), "set=memcache".to_owned()));
    assert_eq!(count(REQUESTS), Some(&operations));
    assert_eq!(count(REQUEST_ERRORS), Some(&failed));
    let stats = cache.accrual_stats();
    assert_eq!(stats.ejections, 1, "{stats:?}");
    assert_eq!(count(EJECTIONS), Some(&1));
    assert_eq!(count(REVIVALS), Some(&0));
    assert!(
        counts.keys().all(|(_, labels)| labels == "set=memcache"),
        "only the memcache set's series: {counts:?}"
    );
}
