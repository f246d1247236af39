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

/// A fresh etcd server (a single-node cluster) on free loopback ports.
pub fn etcd() -> testkit::Etcd {
    init_tracing();
    testkit::Etcd::start().expect("start etcd")
}

/// The lease TTL (in seconds) etcd granted to the lease `key` is attached
/// to, as `etcdctl lease timetolive` reports it.
pub fn granted_ttl(etcd: &testkit::Etcd, key: &str) -> u64 {
    let out = etcd
        .etcdctl(&["get", "-w", "json", "--", key])
        .expect("etcdctl get");
    let json: serde_json::Value = serde_json::from_str(&out).expect("etcdctl JSON");
    let lease = json["kvs"][0]["lease"]
        .as_i64()
        .unwrap_or_else(|| panic!("{key} has no lease: {out}"));
    let out = etcd
        .etcdctl(&["lease", "timetolive", &format!("{lease:x}")])
        .expect("etcdctl lease timetolive");
    // "lease 694d... granted with TTL(5s), remaining TTL(4s)"
    let granted = out
        .split("granted with TTL(")
        .nth(1)
        .and_then(|rest| rest.split_once("s)"))
        .and_then(|(secs, _)| secs.parse().ok());
    granted.unwrap_or_else(|| panic!("no granted TTL in {out:?}"))
}

/// The keys of a prefix, as etcdctl sees them.
pub fn etcd_keys(etcd: &testkit::Etcd, prefix: &str) -> Vec<String> {
    etcd.get_prefix(prefix)
        .expect("etcdctl get --prefix")
        .into_iter()
        .map(|(key, _)| key)
        .collect()
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
