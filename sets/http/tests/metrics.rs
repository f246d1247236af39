//! The HTTP set's metrics (`set="http"`), read through the `metrics`
//! facade's debugging recorder, against real servers on loopback: requests,
//! failed requests, retries, and the failure accrual's ejections and
//! revivals.
//!
//! A process has one global recorder: this file holds one test, which
//! installs it before anything records.

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serversets::metrics::{EJECTIONS, REQUESTS, REQUEST_ERRORS, RETRIES, REVIVALS};
use serversets::{Endpoint, FixedSet};
use serversets_http::{Error, FailureAccrual, HttpSet};
use testkit::HttpServer;

/// Counters by name, with `set="http"` (any other label is a failure),
/// added up over every snapshot taken (a snapshot resets what it reads).
struct Counters {
    snapshotter: Snapshotter,
    totals: HashMap<String, u64>,
}

impl Counters {
    fn get(&mut self, name: &str) -> u64 {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            assert_eq!(labels, ["set=http"], "{key:?}");
            let DebugValue::Counter(n) = value else {
                panic!("{key:?} is not a counter");
            };
            *self.totals.entry(key.key().name().to_owned()).or_default() += n;
        }
        self.totals.get(name).copied().unwrap_or(0)
    }
}

/// An address on loopback where nothing listens: connecting is refused.
fn refusing() -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    Endpoint::new("127.0.0.1", port)
}

fn endpoint(server: &HttpServer) -> Endpoint {
    server.endpoint().parse().expect("endpoint")
}

#[test]
fn requests_errors_retries_ejections_and_revivals_are_counted() {
    let recorder = DebuggingRecorder::new();
    let mut counters = Counters {
        snapshotter: recorder.snapshotter(),
        totals: HashMap::new(),
    };
    recorder
        .install()
        .expect("the only recorder of this process");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let a = HttpServer::start("a").expect("http server");
        let b = HttpServer::start("b").expect("http server");
        let set = FixedSet::from_endpoints([endpoint(&a), endpoint(&b), refusing()]);
        let http = HttpSet::builder(set)
            .attempt_timeout(Duration::from_millis(300))
            .failure_accrual(
                FailureAccrual::new()
                    .consecutive_failures(2)
                    .backoff(Duration::from_millis(100), Duration::from_millis(200))
                    .jitter(false),
            )
            .build();
        let mut sent = 0;
        let mut failed = 0;

        // The refusing endpoint: its requests are retried elsewhere, all
        // answered, until it is marked dead.
        while http.accrual_stats().ejections == 0 {
            http.get("/").send().await.expect("retried elsewhere");
            sent += 1;
            assert!(sent < 100, "never ejected");
        }
        assert_eq!(counters.get(REQUESTS), sent);
        assert_eq!(counters.get(REQUEST_ERRORS), 0);
        assert_eq!(
            counters.get(RETRIES),
            2,
            "two refused connects before the marking, each retried"
        );
        assert_eq!(counters.get(EJECTIONS), 1);

        // A hangs: its requests time out (not retried) until it is marked
        // dead too. (The refusing one's failed probes mark it again.)
        a.set_hanging(true);
        while http.accrual_stats().dead < 2 {
            match http.get("/").send().await {
                Ok(_) => {}
                Err(Error::Timeout { .. }) => failed += 1,
                Err(other) => panic!("unexpected {other}"),
            }
            sent += 1;
            assert!(sent < 200, "a never ejected");
        }
        assert!(failed >= 2, "{failed} timeouts");
        assert_eq!(counters.get(REQUESTS), sent);
        assert_eq!(counters.get(REQUEST_ERRORS), failed);
        let stats = http.accrual_stats();
        assert!(stats.ejections >= 2, "{stats:?}");
        assert_eq!(counters.get(EJECTIONS), stats.ejections);
        assert_eq!(counters.get(REVIVALS), 0);

        // A answers again: its probe revives it.
        a.set_hanging(false);
        let started = Instant::now();
        while http.accrual_stats().revivals == 0 {
            match http.get("/").send().await {
                Ok(_) => {}
                Err(Error::Timeout { .. }) => failed += 1,
                Err(other) => panic!("unexpected {other}"),
            }
            sent += 1;
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "a never revived"
            );
        }
        let stats = http.accrual_stats();
        assert_eq!(counters.get(REVIVALS), stats.revivals);
        assert_eq!(counters.get(EJECTIONS), stats.ejections);
        assert_eq!(counters.get(REQUESTS), sent);
        assert_eq!(counters.get(REQUEST_ERRORS), failed);
    });
}
