//! Helpers for the gRPC test: a real ZooKeeper per test, clients, and waits on
//! events with generous deadlines (the part of the core's tests/common
//! they use; a crate's tests cannot share a module with another crate's).
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serversets::{Client, ServerSetPath, Snapshot, Watch};

/// How long any awaited event may take before a test fails. Generous:
/// tests wait on events, this only bounds a broken run.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A fresh ZooKeeper server on a free loopback port.
pub fn zookeeper() -> testkit::ZooKeeper {
    init_tracing();
    testkit::ZooKeeper::start().expect("start ZooKeeper")
}

/// A serversets client with a short session timeout.
pub async fn client(connect: &str) -> Client {
    Client::builder(connect)
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect")
}

pub fn path(p: &str) -> ServerSetPath {
    ServerSetPath::new(p).expect("valid path")
}

/// Bounds a future by [`DEADLINE`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// Waits until the watch's set satisfies `pred` (checked now and at every
/// change), and returns that snapshot.
pub async fn wait_set(
    watch: &Watch,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let mut changes = watch.changes();
    within(what, async {
        let now = watch.current();
        if pred(&now) {
            return now;
        }
        loop {
            let change = changes.next().await.expect("watch ended");
            if pred(&change.snapshot) {
                return change.snapshot;
            }
        }
    })
    .await
}

/// The ports of a snapshot's endpoints, in snapshot order.
pub fn ports(snapshot: &Snapshot) -> Vec<u16> {
    snapshot.endpoints().map(|e| e.port).collect()
}
