//! Helpers for the CLI tests: a real ZooKeeper per test, clients, and waits on
//! events with generous deadlines (the part of the core's tests/common
//! they use; a crate's tests cannot share a module with another crate's).
#![allow(dead_code)]

use std::time::Duration;

use zookeeper_client as zk;

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

/// A raw ZooKeeper client, standing for "another client" (a JVM service).
pub async fn raw(connect: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .connect(connect)
        .await
        .expect("raw connect")
}

/// Creates a parent path (persistent) with a raw client.
pub async fn mkdir(raw: &zk::Client, path: &str) {
    raw.mkdir(
        path,
        &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
    )
    .await
    .expect("mkdir");
}

/// Creates a raw member node with `data`; returns its full path.
pub async fn raw_member(raw: &zk::Client, path: &str, data: &[u8]) -> String {
    let prefix = format!("{path}/member_");
    let (_, seq) = raw
        .create(
            &prefix,
            data,
            &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .expect("create member");
    format!("{prefix}{seq}")
}
