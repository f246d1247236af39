//! The pool's metrics (`set="pool"` by default), read through the
//! `metrics` facade's debugging recorder (a local one: the pools' handles
//! are made with it and keep recording to it): checkouts, failed
//! checkouts, ejections and revivals; a pool without a label records
//! nothing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{round_trip, servers, EchoServer, DEADLINE};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serversets::metrics::{EJECTIONS, REQUESTS, REQUEST_ERRORS, REVIVALS};
use serversets::FixedSet;
use serversets_pool::{FailureAccrual, Options, PoolSet, TcpConnector};

/// Counters by name and labels, added up over every snapshot taken (a
/// snapshot resets what it reads).
struct Counters {
    snapshotter: Snapshotter,
    totals: BTreeMap<(String, String), u64>,
}

impl Counters {
    /// The counter `name` with the labels `labels` (`k=v` joined by
    /// commas).
    fn get(&mut self, name: &str, labels: &str) -> u64 {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let shown: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let DebugValue::Counter(n) = value else {
                panic!("{key:?} is not a counter");
            };
            *self
                .totals
                .entry((key.key().name().to_owned(), shown.join(",")))
                .or_default() += n;
        }
        self.totals
            .get(&(name.to_owned(), labels.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_errors_ejections_and_revivals_are_counted() {
    let recorder = DebuggingRecorder::new();
    let mut counters = Counters {
        snapshotter: recorder.snapshotter(),
        totals: BTreeMap::new(),
    };
    let live = servers(1).await;
    let mut down = EchoServer::start().await;
    down.stop().await;
    let policy = FailureAccrual::new()
        .consecutive_failures(2)
        .backoff(Duration::from_millis(100), Duration::from_millis(200))
        .jitter(false);
    let (pool, failing, quiet, named) = metrics::with_local_recorder(&recorder, || {
        let options = Options::new().failure_accrual(policy.clone());
        (
            PoolSet::with_options(
                FixedSet::from_endpoints([live[0].endpoint(), down.endpoint()]),
                TcpConnector::new(),
                options.clone(),
            ),
            // Only the down endpoint: every checkout fails.
            PoolSet::with_options(
                FixedSet::from_endpoints([down.endpoint()]),
                TcpConnector::new(),
                options.clone(),
            ),
            // Unlabelled: records nothing.
            PoolSet::with_options(
                FixedSet::from_endpoints([live[0].endpoint()]),
                TcpConnector::new(),
                options.clone().metrics_label(None),
            ),
            // Its own label, and one of the accrual's own for its markings.
            PoolSet::with_options(
                FixedSet::from_endpoints([live[0].endpoint()]),
                TcpConnector::new(),
                options
                    .metrics_label(Some("mine"))
                    .failure_accrual(policy.clone().metrics_label("mine-accrual")),
            ),
        )
    });
    let (set, own) = ("set=pool", "set=mine");

    // Failed connects go to the live endpoint until the down one is
    // marked dead: every checkout succeeds.
    let mut checkouts = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while pool.accrual_stats().ejections == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never ejected");
        drop(pool.checkout().await.expect("the live endpoint answers"));
        checkouts += 1;
    }
    assert_eq!(counters.get(REQUESTS, set), checkouts);
    assert_eq!(counters.get(REQUEST_ERRORS, set), 0);
    assert_eq!(counters.get(EJECTIONS, set), 1);

    // A pool with nothing to connect to: its checkouts fail (its only
    // endpoint is never marked dead).
    for _ in 0..3 {
        failing.checkout().await.expect_err("nothing listens");
    }
    assert_eq!(counters.get(REQUESTS, set), checkouts + 3);
    assert_eq!(counters.get(REQUEST_ERRORS, set), 3);
    assert_eq!(failing.accrual_stats().ejections, 0);

    // Unlabelled and labelled otherwise.
    for _ in 0..5 {
        drop(quiet.checkout().await.expect("checkout"));
    }
    drop(named.checkout().await.expect("checkout"));
    assert_eq!(counters.get(REQUESTS, set), checkouts + 3);
    assert_eq!(counters.get(REQUESTS, own), 1);

    // Back: its probe revives it.
    down.restart().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never used again");
        let mut conn = pool.checkout().await.expect("checkout");
        checkouts += 1;
        if conn.endpoint() == &down.endpoint() {
            round_trip(&mut conn, b"back").await;
            break;
        }
    }
    assert_eq!(pool.accrual_stats().revivals, 1);
    assert_eq!(counters.get(REVIVALS, set), 1);
    assert_eq!(
        counters.get(EJECTIONS, set),
        pool.accrual_stats().ejections,
        "a failed probe (none expected) marks it again"
    );
    assert_eq!(counters.get(REQUESTS, set), checkouts + 3);
    let names: Vec<(String, String)> = counters.totals.keys().cloned().collect();
    assert!(
        names
            .iter()
            .all(|(_, labels)| ["set=pool", "set=mine", "set=mine-accrual"]
                .contains(&labels.as_str())),
        "{names:?}"
    );
}
