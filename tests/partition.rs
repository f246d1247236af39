//! A network partition between the client and ZooKeeper, longer than the
//! session timeout, through a black-holing TCP proxy.

mod common;

use std::time::Duration;

use common::*;
use serversets::WatchEngine;
use serversets::{Client, Health};

both_engines!(partition_longer_than_the_session_timeout);
async fn partition_longer_than_the_session_timeout(engine: WatchEngine) {
    let server = zookeeper();
    let proxy = testkit::Proxy::start(server.addr()).unwrap();
    let client = Client::builder(proxy.endpoint())
        .watch_engine(engine)
        .session_timeout(Duration::from_secs(4))
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let observer = raw(&server.connect_string()).await;
    let set = path("/discovery/test/partition");
    let mut registration = client.register(&set, member(3001)).await.unwrap();
    let watch = client.watch(&set).await.unwrap();
    let first = registration.znode().unwrap();
    let first_session = client.session_id().unwrap();
    let mut health = client.health_watcher();

    proxy.partition();
    // The server expires the session: the member disappears for everyone else.
    within("the server expires the session", async {
        loop {
            let (children, _, watcher) =
                observer.get_and_watch_children(set.as_str()).await.unwrap();
            if children.is_empty() {
                return;
            }
            watcher.changed().await;
        }
    })
    .await;
    // Our side keeps its last set and says it is not healthy.
    within("the client notices", health.wait_change(Health::Connected)).await;
    assert_ne!(watch.health(), Health::Connected);
    assert_eq!(ports(&watch.current()), [3001], "the last good set is kept");

    proxy.heal();
    within("a new session", health.wait_for(Health::Connected)).await;
    assert_ne!(client.session_id().unwrap(), first_session);
    let second = within("the member is re-registered", async {
        loop {
            match registration.znode() {
                Some(z) if z != first => return z,
                _ => {
                    registration.changed().await;
                }
            }
        }
    })
    .await;
    // Exactly once, owned by the new session.
    let nodes = member_nodes(&observer, set.as_str()).await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    let (_, stat) = observer.get_data(&second).await.unwrap();
    assert_eq!(stat.ephemeral_owner, client.session_id().unwrap());
    // The watch converges to the truth and follows new changes.
    let truth = second.rsplit('/').next().unwrap().to_owned();
    wait_set(&watch, "the watch converges", |s| {
        s.len() == 1 && s.entries()[0].name == truth
    })
    .await;
    raw_member(
        &observer,
        set.as_str(),
        &serversets::codec::encode(&member(3002)),
    )
    .await;
    wait_set(&watch, "a change after healing", |s| {
        ports(s) == [3001, 3002]
    })
    .await;
    assert_eq!(watch.health(), Health::Connected);
}
