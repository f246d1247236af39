//! Shared helpers for the integration tests: a real ZooKeeper per test,
//! clients, and waits on events with generous deadlines.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serversets::{Client, Endpoint, Member, ServerSetPath, Snapshot, Watch, WatchEngine};
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

/// Both watch engines, for tests that must hold on each.
pub const ENGINES: [WatchEngine; 2] = [WatchEngine::Persistent, WatchEngine::OneShot];

/// A serversets client with a short session timeout.
pub async fn client(connect: &str) -> Client {
    client_on(connect, WatchEngine::Persistent).await
}

/// A serversets client with a short session timeout, watching with this
/// engine.
pub async fn client_on(connect: &str, engine: WatchEngine) -> Client {
    Client::builder(connect)
        .watch_engine(engine)
        .session_timeout(Duration::from_secs(6))
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .expect("connect")
}

/// A raw ZooKeeper client, standing for "another client" (a JVM service).
pub async fn raw(connect: &str) -> zk::Client {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .connect(connect)
        .await
        .expect("raw connect")
}

/// A member on loopback with this port.
pub fn member(port: u16) -> Member {
    Member::new(Endpoint::new("127.0.0.1", port))
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

/// Member children of `path` and their data, read with a raw client.
pub async fn member_nodes(raw: &zk::Client, path: &str) -> Vec<(String, Vec<u8>)> {
    let mut names = raw.list_children(path).await.expect("list");
    names.retain(|n| n.starts_with("member_"));
    names.sort();
    let mut out = Vec::new();
    for name in names {
        if let Ok((data, _)) = raw.get_data(&format!("{path}/{name}")).await {
            out.push((name, data));
        }
    }
    out
}

/// Makes the test `async fn $name(engine: WatchEngine)` two tests, one per
/// watch engine: `$name::persistent` and `$name::one_shot`.
#[macro_export]
macro_rules! both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn persistent() {
                super::$name(serversets::WatchEngine::Persistent).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_shot() {
                super::$name(serversets::WatchEngine::OneShot).await
            }
        }
    };
}

/// The member names of `dir` that decode, read with a raw client: what a
/// watch of `dir` should hold.
pub async fn valid_members(raw: &zk::Client, dir: &str) -> std::collections::BTreeSet<String> {
    member_nodes(raw, dir)
        .await
        .into_iter()
        .filter(|(_, data)| serversets::codec::decode(data).is_ok())
        .map(|(name, _)| name)
        .collect()
}
