//! Registration and session behaviour against a real ZooKeeper: expiry,
//! server restarts, health checks, one session per client.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serversets::WatchEngine;
use serversets::{codec, Health, RegisterOptions};
use zookeeper_client as zk;

/// Expires the client's session from outside: resume it from a second
/// connection and close that one. The client may win its session back
/// before the close gets through (it reconnects at once), so this repeats
/// until the client has seen its session expire.
async fn expire(connect: &str, client: &serversets::Client) {
    let old = client.session_id();
    let session = client
        .zookeeper()
        .expect("a live session")
        .session()
        .clone();
    let mut health = client.health_watcher();
    let mut last = None;
    for _ in 0..10 {
        match zk::Client::connector()
            .with_session(session.clone())
            .with_session_timeout(Duration::from_secs(6))
            .with_connection_timeout(Duration::from_secs(5))
            .connect(connect)
            .await
        {
            // Dropping the only handle closes the (shared) session.
            Ok(other) => drop(other),
            Err(e) => {
                last = Some(e);
                continue;
            }
        }
        let expired = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let now = health.current();
                if now == Health::Expired || client.session_id() != old {
                    return;
                }
                health.wait_change(now).await;
            }
        });
        if expired.await.is_ok() {
            return;
        }
    }
    panic!("cannot expire the session: {last:?}");
}

/// Waits until the registration's znode is a different one than `old`.
async fn new_znode(reg: &mut serversets::Registration, old: &str) -> String {
    within("a re-created member", async {
        loop {
            match reg.znode() {
                Some(z) if z != old => return z,
                _ => reg.changed().await,
            };
        }
    })
    .await
}

both_engines!(session_expiry_restores_member_once_and_watch);
async fn session_expiry_restores_member_once_and_watch(engine: WatchEngine) {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let observer = raw(&connect).await;
    let set = path("/discovery/test/expiry");
    let mut reg = client.register(&set, member(7001)).await.unwrap();
    let watch = client.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [7001]);
    let before = reg.znode().unwrap();
    let old_session = client.session_id().unwrap();
    let mut health = client.health_watcher();

    expire(&connect, &client).await;
    within("new session", async {
        while client.session_id() == Some(old_session) || client.health() != Health::Connected {
            health.wait_change(health.current()).await;
        }
    })
    .await;

    // The member is re-created on the new session, exactly once.
    let after = new_znode(&mut reg, &before).await;
    let nodes = member_nodes(&observer, set.as_str()).await;
    assert_eq!(nodes.len(), 1, "exactly one member after expiry: {nodes:?}");
    assert_eq!(format!("{}/{}", set, nodes[0].0), after);
    let (_, stat) = observer.get_data(&after).await.unwrap();
    assert_eq!(stat.ephemeral_owner, client.session_id().unwrap());

    // The watch resumes on the new session: it sees the new node and more.
    wait_set(&watch, "re-created member", |s| {
        s.len() == 1 && s.entries()[0].name != before.rsplit('/').next().unwrap()
    })
    .await;
    raw_member(&observer, set.as_str(), &codec::encode(&member(7002))).await;
    wait_set(&watch, "member added after expiry", |s| {
        ports(s) == [7001, 7002]
    })
    .await;
    assert_eq!(watch.health(), Health::Connected);

    // Someone else deletes our member: it is re-created.
    observer.delete(&after, None).await.unwrap();
    let again = new_znode(&mut reg, &after).await;
    assert_ne!(again, after);
    assert_eq!(member_nodes(&observer, set.as_str()).await.len(), 2);
}

both_engines!(zookeeper_restart_and_outage);
async fn zookeeper_restart_and_outage(engine: WatchEngine) {
    let mut server = zookeeper();
    let connect = server.connect_string();
    let client = serversets::Client::builder(&connect)
        .watch_engine(engine)
        .session_timeout(std::time::Duration::from_secs(20))
        .connect_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let set = path("/discovery/test/restart");
    let reg = client.register(&set, member(8001)).await.unwrap();
    let watch = client.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [8001]);
    let session = client.session_id();
    let znode = reg.znode();
    let mut health = watch.health_watcher();

    // Down: the watch keeps its last set and reports unhealthy.
    server.stop();
    within("watch unhealthy", health.wait_for(Health::Disconnected)).await;
    assert_eq!(watch.health(), Health::Disconnected);
    assert_eq!(client.health(), Health::Disconnected);
    assert_eq!(ports(&watch.current()), [8001], "the last good set is kept");

    // Back within the session timeout: same session, same members.
    server.start_again().unwrap();
    within("watch healthy again", health.wait_for(Health::Connected)).await;
    assert_eq!(client.session_id(), session, "the session survived");
    assert_eq!(reg.znode(), znode, "the member was not re-created");
    assert_eq!(ports(&watch.current()), [8001]);

    // The watch resumes.
    let other = raw(&connect).await;
    raw_member(&other, set.as_str(), &codec::encode(&member(8002))).await;
    wait_set(&watch, "member after restart", |s| ports(s) == [8001, 8002]).await;
    assert_eq!(member_nodes(&other, set.as_str()).await.len(), 2);
}

/// Options whose health check answers what `flag` holds, every 100 ms.
fn checked_by(flag: &Arc<AtomicBool>) -> RegisterOptions {
    let flag = Arc::clone(flag);
    RegisterOptions::new()
        .health_check(move || {
            let flag = Arc::clone(&flag);
            async move { flag.load(Ordering::SeqCst) }
        })
        .health_check_interval(Duration::from_millis(100))
}

both_engines!(health_check_removes_and_readds);
async fn health_check_removes_and_readds(engine: WatchEngine) {
    let server = zookeeper();
    let client = client_on(&server.connect_string(), engine).await;
    let set = path("/discovery/test/health");
    let healthy = Arc::new(AtomicBool::new(true));
    let options = checked_by(&healthy);
    let mut reg = client
        .register_with(&set, member(9001), options)
        .await
        .unwrap();
    let watch = client.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [9001]);
    let first = reg.znode().unwrap();

    healthy.store(false, Ordering::SeqCst);
    wait_set(&watch, "member removed on failing check", |s| s.is_empty()).await;
    within("znode cleared", async {
        while reg.znode().is_some() {
            reg.changed().await;
        }
    })
    .await;

    healthy.store(true, Ordering::SeqCst);
    wait_set(&watch, "member back on recovery", |s| ports(s) == [9001]).await;
    let second = reg.znode().unwrap();
    assert_ne!(first, second);

    // A registration that starts unhealthy has no node until it recovers.
    let down = Arc::new(AtomicBool::new(false));
    let options = checked_by(&down);
    let late = client
        .register_with(&set, member(9002), options)
        .await
        .unwrap();
    assert_eq!(late.znode(), None);
    down.store(true, Ordering::SeqCst);
    wait_set(&watch, "late member", |s| ports(s) == [9001, 9002]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_for_everything() {
    let server = zookeeper();
    let client = client(&server.connect_string()).await;
    let session = client.session_id().unwrap();
    let mut registrations = Vec::new();
    let mut watches = Vec::new();
    for i in 0..10u16 {
        let set = path(&format!("/discovery/test/svc{}", i % 3));
        registrations.push(client.register(&set, member(6000 + i)).await.unwrap());
        watches.push(client.clone().watch(&set).await.unwrap());
    }
    for w in &watches {
        wait_set(w, "all members", |s| s.len() >= 3).await;
    }
    // Every member is owned by the one session...
    let zk = client.zookeeper().unwrap();
    for r in &registrations {
        let (_, stat) = zk.get_data(&r.znode().unwrap()).await.unwrap();
        assert_eq!(stat.ephemeral_owner, session);
    }
    // ...and the server sees one client connection.
    let cons = server.four_letter("cons").unwrap();
    let connections = cons.lines().filter(|l| l.contains("sid=0x")).count();
    assert_eq!(connections, 1, "{cons}");
    drop(zk); // a raw handle keeps the session open

    // Closing the client removes every member at once.
    let observer = raw(&server.connect_string()).await;
    client.close().await;
    for i in 0..3 {
        let nodes = member_nodes(&observer, &format!("/discovery/test/svc{i}")).await;
        assert!(nodes.is_empty(), "{nodes:?}");
    }
}
