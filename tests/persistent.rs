//! The persistent watch engine against a real ZooKeeper: what it costs
//! (listings and reads, counted), that it re-arms its watch after a
//! reconnection, that watches of one path share it, and that it keeps up
//! with a flood of changes and ignores what is not a member.

mod common;

use std::collections::BTreeSet;

use common::*;
use futures::future::join_all;
use serversets::{codec, Selection, WatchEngine};
use zookeeper_client as zk;

fn names(snapshot: &serversets::Snapshot) -> BTreeSet<String> {
    snapshot.iter().map(|e| e.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_cost_one_read_leaves_none_and_no_listing() {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client(&connect).await;
    let other = raw(&connect).await;
    let dir = "/discovery/test/costs";
    mkdir(&other, dir).await;
    for port in 1..=50 {
        raw_member(&other, dir, &codec::encode(&member(port))).await;
    }
    let watch = client.watch(&path(dir)).await.unwrap();
    assert_eq!(watch.engine(), WatchEngine::Persistent);
    assert_eq!(watch.current().len(), 50);
    let loaded = watch.stats();
    assert_eq!(loaded.listings, 1, "one listing to load");
    assert_eq!(loaded.reads, 50, "one read per member");

    let created = raw_member(&other, dir, &codec::encode(&member(51))).await;
    wait_set(&watch, "the join", |s| s.len() == 51).await;
    other.delete(&created, None).await.unwrap();
    wait_set(&watch, "the leave", |s| s.len() == 50).await;
    let after = watch.stats();
    assert_eq!(after.listings, loaded.listings, "no listing per change");
    assert_eq!(
        after.reads,
        loaded.reads + 1,
        "the join's read, none for the leave"
    );
    assert_eq!(after.events, loaded.events + 2);
    assert_eq!(names(&watch.current()), valid_members(&other, dir).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_nothing_changed_lists_once_and_reads_nothing() {
    let server = zookeeper();
    let proxy = testkit::Proxy::start(server.addr()).unwrap();
    let client = client(&proxy.endpoint()).await;
    let other = raw(&server.connect_string()).await;
    let dir = "/discovery/test/reconnect";
    mkdir(&other, dir).await;
    for port in 1..=200 {
        raw_member(&other, dir, &codec::encode(&member(port))).await;
    }
    let watch = client.watch(&path(dir)).await.unwrap();
    assert_eq!(watch.current().len(), 200);
    let before = watch.stats();

    proxy.cut();
    within("the resync after the reconnection", async {
        while watch.stats().listings == before.listings {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    let after = watch.stats();
    assert_eq!(after.listings, before.listings + 1, "one listing");
    assert_eq!(after.reads, before.reads, "no member read");
    assert_eq!(watch.current().len(), 200);

    // The watch was armed again: joins and leaves still arrive.
    let created = raw_member(&other, dir, &codec::encode(&member(201))).await;
    wait_set(&watch, "a join after the reconnection", |s| s.len() == 201).await;
    other.delete(&created, None).await.unwrap();
    let first = other
        .list_children(dir)
        .await
        .unwrap()
        .into_iter()
        .min()
        .unwrap();
    other.delete(&format!("{dir}/{first}"), None).await.unwrap();
    wait_set(&watch, "leaves after the reconnection", |s| s.len() == 199).await;
    assert_eq!(names(&watch.current()), valid_members(&other, dir).await);
    assert_eq!(
        watch.stats().listings,
        after.listings,
        "still no listing per change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_while_disconnected_are_found_by_the_resync() {
    let server = zookeeper();
    let proxy = testkit::Proxy::start(server.addr()).unwrap();
    let client = client(&proxy.endpoint()).await;
    let other = raw(&server.connect_string()).await;
    let dir = "/discovery/test/missed";
    mkdir(&other, dir).await;
    let mut created = Vec::new();
    for port in 1..=20 {
        created.push(raw_member(&other, dir, &codec::encode(&member(port))).await);
    }
    let watch = client.watch(&path(dir)).await.unwrap();
    let mut health = watch.health_watcher();

    // Partitioned: the client keeps its session (the outage is shorter
    // than the timeout) but misses every event meanwhile.
    proxy.partition();
    for gone in &created[..10] {
        other.delete(gone, None).await.unwrap();
    }
    for port in 21..=25 {
        raw_member(&other, dir, &codec::encode(&member(port))).await;
    }
    within("the watch to notice the outage", async {
        while health.current() == serversets::Health::Connected {
            health.wait_change(serversets::Health::Connected).await;
        }
    })
    .await;
    assert_eq!(watch.current().len(), 20, "the last good set is kept");
    proxy.heal();
    wait_set(&watch, "the resync", |s| s.len() == 15).await;
    assert_eq!(names(&watch.current()), valid_members(&other, dir).await);
    // Still armed.
    raw_member(&other, dir, &codec::encode(&member(26))).await;
    wait_set(&watch, "a join after the resync", |s| s.len() == 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_of_one_path_share_one_engine() {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client(&connect).await;
    let other = raw(&connect).await;
    let dir = "/discovery/test/shared";
    mkdir(&other, dir).await;
    let http = member(1).with_additional("http", serversets::Endpoint::new("127.0.0.1", 8001));
    raw_member(&other, dir, &codec::encode(&http)).await;
    raw_member(&other, dir, &codec::encode(&member(2))).await;

    let set = path(dir);
    let first = client.watch(&set).await.unwrap();
    let second = client.watch(&set).await.unwrap();
    let named = client
        .watch_with(&set, Selection::endpoint("http"))
        .await
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first.current(), &second.current()),
        "the same options share one published set"
    );
    assert_eq!(ports(&first.current()), [1, 2]);
    assert_eq!(ports(&named.current()), [8001]);
    let stats = first.stats();
    assert_eq!(stats.listings, 1, "one listing for three watches");
    assert_eq!(stats.reads, 2, "each member read once");
    assert_eq!(named.stats(), stats, "one engine");
    // One watch on the server for the path, whatever the count of watches.
    let watches = server.four_letter("wchc").unwrap();
    assert_eq!(
        watches.matches(dir).count(),
        1,
        "one server watch: {watches}"
    );

    raw_member(&other, dir, &codec::encode(&member(3))).await;
    wait_set(&first, "the join, first", |s| s.len() == 3).await;
    wait_set(&named, "the join, named (none)", |s| s.len() == 1).await;
    assert_eq!(first.stats().reads, 3, "read once for every view");

    // The last handle gone, the engine stops; a new watch starts afresh.
    drop((first, second, named));
    let again = within("a new engine", async {
        loop {
            let watch = client.watch(&set).await.unwrap();
            if watch.stats().listings == 1 && watch.stats().reads == 3 {
                return watch;
            }
            drop(watch);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(again.current().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_changes_converges_and_strangers_are_ignored() {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client(&connect).await;
    let writers: Vec<zk::Client> = join_all((0..4).map(|_| raw(&connect))).await;
    let dir = "/discovery/test/flood";
    mkdir(&writers[0], dir).await;
    let watch = client.watch(&path(dir)).await.unwrap();

    // Something that is not a member, with a child of its own.
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    writers[0]
        .create(&format!("{dir}/config"), b"x", &persistent)
        .await
        .unwrap();
    writers[0]
        .create(&format!("{dir}/config/deeper"), b"y", &persistent)
        .await
        .unwrap();

    // 4 writers, 500 joins each, all pipelined; then every other one leaves.
    let joins = writers.iter().enumerate().map(|(w, writer)| async move {
        let creates = (0..500u16).map(|i| async move {
            let data = codec::encode(&member(w as u16 * 1000 + i + 1));
            raw_member(writer, dir, &data).await
        });
        join_all(creates).await
    });
    let created: Vec<String> = join_all(joins).await.into_iter().flatten().collect();
    let leaves = created
        .iter()
        .step_by(2)
        .map(|node| writers[0].delete(node, None));
    for result in join_all(leaves).await {
        result.unwrap();
    }
    let expected = valid_members(&writers[0], dir).await;
    assert_eq!(expected.len(), 1000);
    wait_set(&watch, "the flood to settle", |s| s.len() == 1000).await;
    assert_eq!(names(&watch.current()), expected);
    assert_eq!(watch.stats().listings, 1, "no listing for a flood");
    assert!(
        watch.stats().reads <= 2000,
        "at most one read per join: {:?}",
        watch.stats()
    );
}
