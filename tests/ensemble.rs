//! A three-node ZooKeeper ensemble on loopback: losing the leader, losing
//! the majority, and coming back.

mod common;

use std::time::Duration;

use common::*;
use serversets::WatchEngine;
use serversets::{codec, Client, Health};

/// The member names under `path`, as ZooKeeper holds them (read through
/// a client of its own).
async fn truth(connect: &str, path: &str) -> Vec<String> {
    let observer = raw(connect).await;
    member_nodes(&observer, path)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn names(snapshot: &serversets::Snapshot) -> Vec<String> {
    let mut n: Vec<String> = snapshot.iter().map(|e| e.name.clone()).collect();
    n.sort();
    n
}

both_engines!(leader_loss_majority_loss_and_recovery);
async fn leader_loss_majority_loss_and_recovery(engine: WatchEngine) {
    init_tracing();
    let mut ensemble = tokio::task::spawn_blocking(|| testkit::Ensemble::start(3))
        .await
        .unwrap()
        .expect("ensemble");
    let connect = ensemble.connect_string();
    let client = Client::builder(&connect)
        .watch_engine(engine)
        .session_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let set = path("/discovery/test/ensemble");
    let mut registrations = Vec::new();
    for port in [1001, 1002, 1003] {
        registrations.push(client.register(&set, member(port)).await.unwrap());
    }
    let watch = client.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [1001, 1002, 1003]);
    let before = truth(&connect, set.as_str()).await;
    assert_eq!(before.len(), 3);

    // Kill the leader: nothing is lost or duplicated, the watch catches up.
    let leader = ensemble.leader_index().expect("a leader");
    ensemble.stop(leader);
    tokio::task::block_in_place(|| ensemble.wait_for_leader(DEADLINE)).expect("a new leader");
    let writer = raw(&connect).await;
    raw_member(&writer, set.as_str(), &codec::encode(&member(1004))).await;
    wait_set(&watch, "a change after the leader died", |s| {
        ports(s) == [1001, 1002, 1003, 1004]
    })
    .await;
    let after = truth(&connect, set.as_str()).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(
        before.iter().all(|n| after.contains(n)),
        "a member was lost"
    );
    assert_eq!(names(&watch.current()), after);
    drop(writer);

    // Kill a majority: the watch keeps its last set and says it is unhealthy.
    let survivor = (leader + 1) % 3;
    let second = (leader + 2) % 3;
    ensemble.stop(second);
    let mut health = watch.health_watcher();
    within("watch unhealthy without a quorum", async {
        while health.current() == Health::Connected {
            health.wait_change(Health::Connected).await;
        }
    })
    .await;
    let kept = watch.current();
    assert_eq!(
        ports(&kept),
        [1001, 1002, 1003, 1004],
        "the last set is kept"
    );
    assert_ne!(client.health(), Health::Connected);
    assert!(ensemble.is_running(survivor));
    // Long enough for the client to give up on its session (7/5 of the
    // timeout without a server); without a quorum the server keeps it.
    let session = client.session_id();
    let znodes: Vec<Option<String>> = registrations.iter().map(|r| r.znode()).collect();
    let mut session_health = client.health_watcher();
    within(
        "the client gives up on its session",
        session_health.wait_for(Health::Expired),
    )
    .await;
    assert_eq!(
        ports(&watch.current()),
        [1001, 1002, 1003, 1004],
        "still the last set"
    );
    // A member closed while ZooKeeper is unreachable is deleted once the
    // session is back (it must not linger in the resumed session).
    let leaving = registrations.pop().unwrap();
    let closing = tokio::spawn(leaving.close());

    // Restore: everything recovers without user action.
    ensemble.start_again(leader).unwrap();
    ensemble.start_again(second).unwrap();
    tokio::task::block_in_place(|| ensemble.wait_for_leader(DEADLINE)).expect("quorum again");
    within("watch healthy again", health.wait_for(Health::Connected)).await;
    // The server still held the session: it is resumed, nothing re-created.
    assert_eq!(client.session_id(), session, "the session was resumed");
    let now: Vec<Option<String>> = registrations.iter().map(|r| r.znode()).collect();
    assert_eq!(now, znodes[..2], "no member was re-created");
    within("the close completes", closing).await.unwrap();
    // Our three members exist exactly once each (re-created if the session
    // expired meanwhile), the other client's member is whatever its session
    // says, and the watch equals ZooKeeper.
    for registration in &mut registrations {
        within("registration restored", async {
            while registration.znode().is_none() {
                registration.changed().await;
            }
        })
        .await;
    }
    // Until the watch equals ZooKeeper, ZooKeeper must never hold one of
    // our members twice (a session resumed or re-created exactly once).
    let mut changes = watch.changes();
    within("the watch equals ZooKeeper, no duplicates", async {
        loop {
            let observer = raw(&connect).await;
            let held = member_nodes(&observer, set.as_str()).await;
            let mut ports_held: Vec<u16> = held
                .iter()
                .filter_map(|(_, data)| codec::decode(data).ok())
                .map(|d| d.member.service_endpoint.port)
                .filter(|p| *p != 1004)
                .collect();
            ports_held.sort();
            let mut deduped = ports_held.clone();
            deduped.dedup();
            assert_eq!(
                ports_held, deduped,
                "a member is registered twice: {held:?}"
            );
            let names_held: Vec<String> = held.into_iter().map(|(n, _)| n).collect();
            let ours_present = registrations.iter().all(|r| {
                r.znode()
                    .is_some_and(|z| names_held.contains(&z.rsplit('/').next().unwrap().to_owned()))
            });
            if ports_held == [1001, 1002] && ours_present && names(&watch.current()) == names_held {
                return;
            }
            tokio::select! {
                _ = changes.next() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await;
}
