//! Watches against a real ZooKeeper: membership changes, scale, Finagle
//! members written by other clients, malformed data.

mod common;

use common::*;
use serversets::WatchEngine;
use serversets::{codec, Endpoint, Member, Selection, Status};
use zookeeper_client as zk;

both_engines!(add_remove_readd);
async fn add_remove_readd(engine: WatchEngine) {
    let server = zookeeper();
    let client = client_on(&server.connect_string(), engine).await;
    let set = path("/discovery/test/add-remove");
    let watch = client.watch(&set).await.unwrap();
    assert!(
        watch.current().is_empty(),
        "a set whose path does not exist is empty"
    );
    let mut changes = watch.changes();

    let a = client.register(&set, member(1001)).await.unwrap();
    let change = within("a added", changes.next()).await.unwrap();
    assert_eq!(ports(&change.snapshot), [1001]);
    assert_eq!(change.added.len(), 1);
    assert_eq!(
        change.added[0].name,
        a.znode().unwrap().rsplit('/').next().unwrap()
    );

    let b = client.register(&set, member(1002)).await.unwrap();
    let snap = wait_set(&watch, "b added", |s| s.len() == 2).await;
    assert_eq!(ports(&snap), [1001, 1002], "sorted by sequence");
    assert_eq!(
        snap.leader().unwrap().endpoint.port,
        1001,
        "oldest is leader"
    );

    let a_name = a.znode().unwrap();
    a.close().await;
    let change = within("a removed", async {
        loop {
            let c = changes.next().await.unwrap();
            if !c.removed.is_empty() {
                return c;
            }
        }
    })
    .await;
    assert_eq!(ports(&change.snapshot), [1002]);
    assert_eq!(change.removed[0].endpoint.port, 1001);
    assert_eq!(change.snapshot.leader().unwrap().endpoint.port, 1002);

    let a2 = client.register(&set, member(1001)).await.unwrap();
    assert_ne!(a2.znode().unwrap(), a_name, "re-added as a new member");
    let snap = wait_set(&watch, "a re-added", |s| s.len() == 2).await;
    assert_eq!(ports(&snap), [1002, 1001]);
    drop(b);
    wait_set(&watch, "b dropped", |s| ports(s) == [1001]).await;
    drop(a2);
    wait_set(&watch, "all gone", |s| s.is_empty()).await;
}

both_engines!(two_thousand_members_seen_exactly);
async fn two_thousand_members_seen_exactly(engine: WatchEngine) {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let writer = raw(&connect).await;
    let set = path("/big/set");
    mkdir(&writer, set.as_str()).await;
    let watch = client.watch(&set).await.unwrap();

    let creates = (0..2000u16).map(|i| {
        let data = codec::encode(&member(10_000 + i));
        let writer = writer.clone();
        async move { raw_member(&writer, "/big/set", &data).await }
    });
    let mut created: Vec<String> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|p| p.rsplit('/').next().unwrap().to_owned())
        .collect();
    created.sort();

    let snap = wait_set(&watch, "2000 members", |s| s.len() == 2000).await;
    let seen: Vec<String> = snap.iter().map(|e| e.name.clone()).collect();
    assert_eq!(
        seen, created,
        "exactly the created members, in sequence order"
    );
    let mut seen_ports: Vec<u16> = ports(&snap);
    seen_ports.sort();
    assert_eq!(seen_ports, (10_000..12_000).collect::<Vec<_>>());

    // Remove half: exactly the other half remains.
    for name in created.iter().step_by(2) {
        writer
            .delete(&format!("/big/set/{name}"), None)
            .await
            .unwrap();
    }
    let snap = wait_set(&watch, "1000 members", |s| s.len() == 1000).await;
    let seen: Vec<String> = snap.iter().map(|e| e.name.clone()).collect();
    let want: Vec<String> = created.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(seen, want);

    // A second watch loads the whole set at once.
    let second = client.watch(&set).await.unwrap();
    assert_eq!(second.current().len(), 1000);
}

both_engines!(finagle_member_from_another_client);
async fn finagle_member_from_another_client(engine: WatchEngine) {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let jvm = raw(&connect).await;
    let dir = "/aurora/www-data/prod/hello";
    mkdir(&jvm, dir).await;
    // What Finagle / Twitter commons write, with extra fields a Python writer adds.
    let m1 = raw_member(&jvm, dir, br#"{"serviceEndpoint":{"host":"10.0.0.1","port":8080},
        "additionalEndpoints":{"http":{"host":"10.0.0.1","port":8081},"admin":{"host":"10.0.0.1","port":9990}},
        "status":"ALIVE","shard":7,"metadata":{"zone":"eu-1"},"member_id":"x"}"#).await;
    let _m2 = raw_member(
        &jvm,
        dir,
        br#"{"serviceEndpoint":{"host":"::1","port":8080},
        "additionalEndpoints":{"admin":{"host":"::1","port":9990}},"status":"ALIVE","shard":3}"#,
    )
    .await;
    let _m3 = raw_member(
        &jvm,
        dir,
        br#"{"serviceEndpoint":{"host":"10.0.0.3","port":8080},
        "additionalEndpoints":{},"status":"STOPPING","shard":7}"#,
    )
    .await;

    let set = path(dir);
    let all = client.watch(&set).await.unwrap();
    let snap = all.current();
    assert_eq!(snap.len(), 2, "STOPPING is not live");
    let first = &snap.entries()[0];
    assert_eq!(first.name, m1.rsplit('/').next().unwrap());
    assert_eq!(first.endpoint, Endpoint::new("10.0.0.1", 8080));
    assert_eq!(first.member.shard, Some(7));
    assert_eq!(
        first.member.metadata.get("zone").map(String::as_str),
        Some("eu-1")
    );
    assert_eq!(first.member.additional("admin").unwrap().port, 9990);
    assert_eq!(first.member.status, Status::Alive);
    assert_eq!(snap.entries()[1].endpoint.to_string(), "[::1]:8080");
    assert_eq!(snap.leader().unwrap().name, first.name);

    let http = client
        .watch_with(&set, Selection::endpoint("http"))
        .await
        .unwrap();
    assert_eq!(
        http.current().endpoints().cloned().collect::<Vec<_>>(),
        [Endpoint::new("10.0.0.1", 8081)],
        "members without the named endpoint are skipped"
    );
    let shard3 = client
        .watch_with(&set, Selection::endpoint("admin").with_shard(3))
        .await
        .unwrap();
    assert_eq!(
        shard3
            .current()
            .endpoints()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        ["[::1]:9990"]
    );

    // Weight vectors: the product of every matching descriptor.
    let weights_of = |s: &serversets::Snapshot| s.iter().map(|e| e.weight).collect::<Vec<_>>();
    assert_eq!(weights_of(&all.current()), [1.0, 1.0]);
    let m1_name = first.name.clone();
    let vector = format!(
        r#"{{"vector":[{{"select":"member={m1_name}","weight":2.0,"priority":1}},{{"select":"shard=7","weight":1.5}},{{"select":"inet=[::1]:8080","weight":0.5}}]}}"#
    );
    let (_, seq) = jvm
        .create(
            &format!("{dir}/vector_"),
            vector.as_bytes(),
            &zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let vector_path = format!("{dir}/vector_{seq}");
    let snap = wait_set(&all, "weights applied", |s| weights_of(s) == [3.0, 0.5]).await;
    assert_eq!(snap.len(), 2);
    // A second vector multiplies in; changing a vector's data is followed.
    jvm.create(
        &format!("{dir}/vector_"),
        br#"{"vector":[{"select":"shard=3","weight":4}]}"#,
        &zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all()),
    )
    .await
    .unwrap();
    wait_set(&all, "second vector", |s| weights_of(s) == [3.0, 2.0]).await;
    jvm.set_data(&vector_path, br#"{"vector":[]}"#, None)
        .await
        .unwrap();
    wait_set(&all, "vector data change", |s| weights_of(s) == [1.0, 4.0]).await;
    // The named-endpoint watch weighs its own endpoint.
    wait_set(&http, "http weights", |s| weights_of(s) == [1.0]).await;
}

both_engines!(malformed_members_are_skipped);
async fn malformed_members_are_skipped(engine: WatchEngine) {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let other = raw(&connect).await;
    let dir = "/discovery/test/messy";
    mkdir(&other, dir).await;
    let good1 = raw_member(&other, dir, &codec::encode(&member(1))).await;
    raw_member(&other, dir, b"{this is not json").await;
    raw_member(
        &other,
        dir,
        br#"{"serviceEndpoint":{"port":80},"additionalEndpoints":{},"status":"ALIVE"}"#,
    )
    .await;
    raw_member(&other, dir, br#"{"serviceEndpoint":{"host":"h","port":"80"},"additionalEndpoints":{},"status":"ALIVE"}"#).await;
    raw_member(&other, dir, b"").await;
    other
        .create(
            &format!("{dir}/not_a_member"),
            &codec::encode(&member(9)),
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let set = path(dir);
    let watch = client.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [1]);
    assert_eq!(
        watch.current().entries()[0].name,
        good1.rsplit('/').next().unwrap()
    );

    // The set keeps being served as members come and go around the bad ones.
    raw_member(&other, dir, &codec::encode(&member(2))).await;
    raw_member(&other, dir, b"[]").await;
    wait_set(&watch, "good member 2", |s| ports(s) == [1, 2]).await;
    other.delete(&good1, None).await.unwrap();
    wait_set(&watch, "good member 1 gone", |s| ports(s) == [2]).await;

    // inspect shows everything, with reasons.
    let children = client.inspect(&set).await.unwrap();
    assert_eq!(children.len(), 7);
    let bad = children
        .iter()
        .filter(|c| matches!(c.decoded, Some(Err(_))))
        .count();
    assert_eq!(bad, 5);
    assert!(children
        .iter()
        .any(|c| c.name == "not_a_member" && c.decoded.is_none()));
}

both_engines!(path_created_and_deleted);
async fn path_created_and_deleted(engine: WatchEngine) {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let other = raw(&connect).await;
    let set = path("/late/arrival");
    let watch = client.watch(&set).await.unwrap();
    assert!(watch.current().is_empty());
    mkdir(&other, "/late/arrival").await;
    let m = raw_member(
        &other,
        "/late/arrival",
        &codec::encode(&Member::new(Endpoint::new("h", 5))),
    )
    .await;
    wait_set(&watch, "member after path creation", |s| ports(s) == [5]).await;
    other.delete(&m, None).await.unwrap();
    other.delete("/late/arrival", None).await.unwrap();
    wait_set(&watch, "empty after delete", |s| s.is_empty()).await;
    mkdir(&other, "/late/arrival").await;
    raw_member(&other, "/late/arrival", &codec::encode(&member(6))).await;
    wait_set(&watch, "member after re-creation", |s| ports(s) == [6]).await;
}

both_engines!(flapping_members_with_and_without_stabilization);
async fn flapping_members_with_and_without_stabilization(engine: WatchEngine) {
    use serversets::WatchOptions;
    use std::time::Duration;

    let server = zookeeper();
    let client = client_on(&server.connect_string(), engine).await;
    let set = path("/discovery/test/flappy");
    let a = client.register(&set, member(4001)).await.unwrap();
    let plain = client.watch(&set).await.unwrap();
    let window = Duration::from_secs(4);
    let stable = client
        .watch_with(&set, WatchOptions::new().hold_removals(window))
        .await
        .unwrap();
    let a_name = stable.current().entries()[0].name.clone();
    let mut plain_changes = plain.changes();
    let mut stable_changes = stable.changes();

    // A flap: the member leaves and registers again (a new znode name).
    a.close().await;
    let a = client.register(&set, member(4001)).await.unwrap();
    // Off by default: users see it go and come back.
    let mut removed = 0;
    let mut added = 0;
    within("plain watch sees the flap", async {
        while removed == 0 || added == 0 {
            let change = plain_changes.next().await.unwrap();
            removed += change.removed.len();
            added += change.added.len();
        }
    })
    .await;
    assert_eq!(plain.current().len(), 1);

    // On: a later, unrelated change is the first thing users see, and it
    // carries only that change; the kept entry still stands for the member.
    let b = client.register(&set, member(4002)).await.unwrap();
    let change = within("stable watch sees b", stable_changes.next())
        .await
        .unwrap();
    assert_eq!(ports(&change.snapshot), [4001, 4002]);
    assert!(change.removed.is_empty(), "the flap leaked: {change:?}");
    assert_eq!(change.added.len(), 1);
    assert_eq!(change.added[0].endpoint.port, 4002);
    assert_eq!(
        change.snapshot.entries()[0].name,
        a_name,
        "the original entry is kept"
    );

    // A member that leaves for good is removed once the window ends.
    b.close().await;
    let change = within("b removed after the window", stable_changes.next())
        .await
        .unwrap();
    assert_eq!(change.removed.len(), 1);
    assert_eq!(change.removed[0].endpoint.port, 4002);
    assert_eq!(ports(&change.snapshot), [4001]);
    drop(a);
    let change = within("a removed after the window", stable_changes.next())
        .await
        .unwrap();
    assert!(change.snapshot.is_empty());
}

both_engines!(change_streams_end_when_the_client_closes);
/// Change streams are `futures::Stream`s that end when the client closes,
/// instead of waiting forever.
async fn change_streams_end_when_the_client_closes(engine: WatchEngine) {
    use futures::StreamExt;

    struct Follower {
        changes: serversets::Changes,
    }
    let server = zookeeper();
    let client = client_on(&server.connect_string(), engine).await;
    let set = path("/discovery/test/stream-end");
    let watch = client.watch(&set).await.unwrap();
    let mut follower = Follower {
        changes: watch.changes(),
    };
    let _member = client.register(&set, member(1101)).await.unwrap();
    let change = within("the join", StreamExt::next(&mut follower.changes))
        .await
        .unwrap();
    assert_eq!(ports(&change.snapshot), [1101]);
    client.close().await;
    assert!(
        within("the stream to end", StreamExt::next(&mut follower.changes))
            .await
            .is_none(),
        "a stream of a closed client ends"
    );
    // The last set stays readable.
    assert_eq!(ports(&watch.current()), [1101]);
}

both_engines!(leader_changes_and_metadata_filters);
/// `Watch::leaders` yields the oldest member now and at each change of
/// leader only; metadata filters select members by their metadata.
async fn leader_changes_and_metadata_filters(engine: WatchEngine) {
    use futures::StreamExt;
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let other = raw(&connect).await;
    let dir = "/discovery/test/leaders";
    mkdir(&other, dir).await;
    let zoned = |port: u16, zone: &str| codec::encode(&member(port).with_metadata("zone", zone));
    let first = raw_member(&other, dir, &zoned(1, "eu")).await;
    let watch = client.watch(&path(dir)).await.unwrap();
    let eu = client
        .watch_with(&path(dir), Selection::service().with_metadata("zone", "eu"))
        .await
        .unwrap();
    let mut leaders = watch.leaders();
    let port = |e: Option<std::sync::Arc<serversets::Entry>>| e.map(|e| e.endpoint.port);
    assert_eq!(
        port(within("the leader", leaders.next()).await.unwrap()),
        Some(1)
    );
    raw_member(&other, dir, &zoned(2, "us")).await;
    raw_member(&other, dir, &zoned(3, "eu")).await;
    wait_set(&watch, "three members", |s| s.len() == 3).await;
    wait_set(&eu, "the eu members", |s| ports(s) == [1, 3]).await;
    other.delete(&first, None).await.unwrap();
    // The joins changed no leader: the next item is the new one.
    assert_eq!(
        port(within("the next leader", leaders.next()).await.unwrap()),
        Some(2)
    );
    wait_set(&eu, "eu without the first", |s| ports(s) == [3]).await;
    assert_eq!(
        eu.leaders().next().await.unwrap().map(|e| e.endpoint.port),
        Some(3)
    );
}
