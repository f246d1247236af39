//! The etcd backend against a real etcd (Debian's `etcd-server`, started
//! by the testkit): registrations with leases, watches of both formats,
//! and the faults a production network produces (restarts shorter and
//! longer than the TTL, partitions, cut connections, bad values, keys
//! outside the prefix).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{init_tracing, path, ports, wait_set, within};
use serversets::naming::Format;
use serversets::{
    Endpoint, EtcdClient, Health, Member, RegisterOptions, Snapshot, Watch, WatchEngine,
    WatchOptions,
};

fn etcd() -> testkit::Etcd {
    init_tracing();
    testkit::Etcd::start().expect("start etcd")
}

async fn client(endpoints: &str) -> EtcdClient {
    EtcdClient::builder(endpoints)
        .request_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect to etcd")
}

/// A client, its watch of `/services/users`, and a registration there of
/// port 9090 with a lease of `ttl_secs`, once the watch sees it.
async fn registered(
    etcd: &testkit::Etcd,
    ttl_secs: u64,
) -> (EtcdClient, Watch, serversets::Registration) {
    let client = client(&etcd.endpoint()).await;
    let set = path("/services/users");
    let watch = client.watch(&set).await.expect("watch");
    let registration = client
        .register_with(
            &set,
            common::member(9090),
            RegisterOptions::new().ttl(Duration::from_secs(ttl_secs)),
        )
        .await
        .expect("register");
    wait_set(&watch, "the member", |s| s.len() == 1).await;
    (client, watch, registration)
}

/// The keys below `prefix/` in etcd, as etcdctl sees them.
fn keys(etcd: &testkit::Etcd, prefix: &str) -> Vec<String> {
    etcd.get_prefix(&format!("{prefix}/"))
        .expect("etcdctl get")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Waits until etcd holds exactly `n` keys below `prefix/`.
async fn wait_keys(etcd: &testkit::Etcd, prefix: &str, n: usize) -> Vec<String> {
    within(&format!("{n} keys under {prefix}"), async {
        loop {
            let now = keys(etcd, prefix);
            if now.len() == n {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// The registration's key once it is one other than `old` (`None`: any).
async fn next_key(registration: &mut serversets::Registration, old: Option<&str>) -> String {
    loop {
        if let Some(key) = registration.znode() {
            if Some(key.as_str()) != old {
                return key;
            }
        }
        if registration.changed().await.is_none() {
            // Deleted (or the task ended): look again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn names(snapshot: &Snapshot) -> Vec<String> {
    snapshot.iter().map(|e| e.name.clone()).collect()
}

async fn wait_health(watch: &Watch, health: Health) {
    let mut watcher = watch.health_watcher();
    let reached = within(&format!("watch health {health}"), watcher.wait_for(health)).await;
    assert!(reached, "the watch ended before {health}");
}

#[tokio::test]
async fn a_registration_is_watched_with_every_field_and_revoked_on_close() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let set = path("/services/users");
    let watch = client.watch(&set).await.expect("watch");
    assert_eq!(watch.engine(), WatchEngine::Etcd);
    assert!(watch.current().is_empty());
    let member = Member::new(Endpoint::new("127.0.0.1", 9090))
        .with_additional("http", Endpoint::new("127.0.0.1", 8080))
        .with_shard(3)
        .with_metadata("zone", "eu-1");
    let options = RegisterOptions::new().ttl(Duration::from_secs(5));
    let registration = client
        .register_with(&set, member.clone(), options)
        .await
        .expect("register");
    let key = registration.znode().expect("a key");
    assert!(key.starts_with("/services/users/member_"), "{key}");
    assert_eq!(keys(&etcd, "/services/users"), std::slice::from_ref(&key));
    let snapshot = wait_set(&watch, "the member", |s| s.len() == 1).await;
    let entry = &snapshot.entries()[0];
    assert_eq!(format!("/services/users/{}", entry.name), key);
    assert_eq!(*entry.member, member);
    assert_eq!(entry.endpoint, Endpoint::new("127.0.0.1", 9090));
    assert_eq!(entry.weight, 1.0);
    // A watch of the http endpoint shares the engine and serves the
    // additional endpoint.
    let http = client
        .watch_with(&set, serversets::Selection::endpoint("http"))
        .await
        .expect("watch http");
    assert_eq!(ports(&http.current()), [8080]);
    assert_eq!(http.stats().listings, watch.stats().listings, "one engine");
    assert_eq!(etcd.lease_count().expect("leases"), 1);
    registration.close().await;
    assert!(
        keys(&etcd, "/services/users").is_empty(),
        "closed: the key is gone at once"
    );
    assert_eq!(
        etcd.lease_count().expect("leases"),
        0,
        "the lease is revoked"
    );
    wait_set(&watch, "the leave", Snapshot::is_empty).await;
    assert_eq!(watch.health(), Health::Connected);
}

#[tokio::test]
async fn etcd_naming_values_are_read_exactly_and_bad_ones_skipped() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let set = path("/services/users");
    // Written as Go's endpoints manager (and etcdctl) write them.
    etcd.put(
        "/services/users/10.0.0.1:8080",
        r#"{"Op":0,"Addr":"10.0.0.1:8080","Metadata":{"zone":"eu"}}"#,
    )
    .expect("put");
    etcd.put(
        "/services/users/10.0.0.2:8080",
        r#"{"Addr":"10.0.0.2:8080","Metadata":null}"#,
    )
    .expect("put");
    // Bad values, keys beside the prefix and below a member: not members.
    etcd.put("/services/users/bad", "not json").expect("put");
    etcd.put("/services/users/noaddr", r#"{"Op":0}"#)
        .expect("put");
    etcd.put("/services/users2/10.0.0.9:1", r#"{"Addr":"10.0.0.9:1"}"#)
        .expect("put");
    etcd.put(
        "/services/users/10.0.0.1:8080/x",
        r#"{"Addr":"10.0.0.8:1"}"#,
    )
    .expect("put");
    let watch = client
        .watch_with(&set, WatchOptions::new().format(Format::EtcdNaming))
        .await
        .expect("watch");
    let now = watch.current();
    assert_eq!(names(&now), ["10.0.0.1:8080", "10.0.0.2:8080"]);
    assert_eq!(now.entries()[0].endpoint, Endpoint::new("10.0.0.1", 8080));
    assert_eq!(now.entries()[0].member.metadata["zone"], "eu");
    assert!(now.entries()[1].member.metadata.is_empty());
    // The same prefix read as Finagle's format has no member at all.
    let finagle = client.watch(&set).await.expect("watch finagle");
    assert!(finagle.current().is_empty());
    // Ours, in the naming format: Go's resolver reads it.
    let registration = client
        .register_with(
            &set,
            Member::new(Endpoint::new("127.0.0.1", 9091)).with_metadata("v", "2"),
            RegisterOptions::new()
                .format(Format::EtcdNaming)
                .ttl(Duration::from_secs(5)),
        )
        .await
        .expect("register");
    assert_eq!(
        registration.znode().as_deref(),
        Some("/services/users/127.0.0.1:9091")
    );
    let stored: Vec<(String, String)> = etcd.get_prefix("/services/users/127.0.0.1").expect("get");
    assert_eq!(
        stored,
        [(
            "/services/users/127.0.0.1:9091".to_owned(),
            r#"{"Op":0,"Addr":"127.0.0.1:9091","Metadata":{"v":"2"}}"#.to_owned()
        )]
    );
    wait_set(&watch, "our member", |s| s.len() == 3).await;
    // A bad value that becomes good joins; a good one that goes bad
    // leaves; etcdctl del is a leave; Op 1 is a leave.
    etcd.put("/services/users/bad", r#"{"Addr":"10.0.0.3:8080"}"#)
        .expect("put");
    etcd.put("/services/users/10.0.0.2:8080", "{").expect("put");
    etcd.delete("/services/users/10.0.0.1:8080").expect("del");
    etcd.put(
        "/services/users/127.0.0.1:9091",
        r#"{"Op":1,"Addr":"127.0.0.1:9091"}"#,
    )
    .expect("put");
    let now = wait_set(&watch, "the edits", |s| names(s) == ["bad"]).await;
    assert_eq!(now.entries()[0].endpoint, Endpoint::new("10.0.0.3", 8080));
    registration.close().await;
}

#[tokio::test]
async fn the_leader_is_the_member_with_the_lowest_create_revision() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let set = path("/s");
    let watch = client
        .watch_with(&set, WatchOptions::new().format(Format::EtcdNaming))
        .await
        .expect("watch");
    // Names sort the other way round from their ages.
    for port in [3, 2, 1] {
        etcd.put(
            &format!("/s/h:{port}"),
            &format!(r#"{{"Addr":"h:{port}"}}"#),
        )
        .expect("put");
    }
    let now = wait_set(&watch, "three", |s| s.len() == 3).await;
    assert_eq!(names(&now), ["h:3", "h:2", "h:1"], "oldest first");
    assert_eq!(now.leader().map(|e| e.name.as_str()), Some("h:3"));
    let mut leaders = watch.leaders();
    // Rewriting the leader keeps its create revision: still the leader.
    etcd.put("/s/h:3", r#"{"Addr":"h:3","Metadata":{"k":"v"}}"#)
        .expect("put");
    wait_set(&watch, "the rewrite", |s| {
        s.get("h:3")
            .is_some_and(|e| e.member.metadata.contains_key("k"))
    })
    .await;
    assert_eq!(
        watch.current().leader().map(|e| e.name.as_str()),
        Some("h:3")
    );
    // Deleted and put again: the youngest now.
    etcd.delete("/s/h:3").expect("del");
    etcd.put("/s/h:3", r#"{"Addr":"h:3"}"#).expect("put");
    let now = wait_set(&watch, "h:3 again", |s| names(s) == ["h:2", "h:1", "h:3"]).await;
    assert_eq!(now.leader().map(|e| e.name.as_str()), Some("h:2"));
    use futures::StreamExt;
    let mut seen = Vec::new();
    within("leader changes", async {
        while seen.last().map(String::as_str) != Some("h:2") {
            let leader = leaders.next().await.expect("leaders");
            seen.push(leader.map(|e| e.name.clone()).unwrap_or_default());
        }
    })
    .await;
    assert_eq!(seen.first().map(String::as_str), Some("h:3"), "{seen:?}");
}

#[tokio::test]
async fn a_partition_shorter_than_the_ttl_changes_nothing_and_a_longer_one_re_registers_once() {
    let etcd = etcd();
    let proxy = testkit::Proxy::start(etcd.addr()).expect("proxy");
    // The registration and one watch go through the proxy; an observer
    // watches directly.
    let through = client(&proxy.endpoint()).await;
    let direct = client(&etcd.endpoint()).await;
    let set = path("/services/users");
    let observer = direct.watch(&set).await.expect("observer");
    let partitioned = through.watch(&set).await.expect("watch");
    let mut registration = through
        .register_with(
            &set,
            common::member(9090),
            RegisterOptions::new().ttl(Duration::from_secs(6)),
        )
        .await
        .expect("register");
    let first = registration.znode().expect("key");
    wait_set(&observer, "the member", |s| s.len() == 1).await;
    wait_set(&partitioned, "the member", |s| s.len() == 1).await;
    let mut observed = observer.changes();

    // Shorter than the TTL: the lease lives, nothing changes.
    proxy.partition();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ports(&partitioned.current()),
        [9090],
        "the last set is kept"
    );
    proxy.heal();
    wait_set(&partitioned, "in sync", |s| s.len() == 1).await;
    assert_eq!(registration.znode().as_deref(), Some(first.as_str()));
    assert_eq!(keys(&etcd, "/services/users"), std::slice::from_ref(&first));
    use futures::FutureExt;
    assert!(
        futures::StreamExt::next(&mut observed)
            .now_or_never()
            .is_none(),
        "the observer saw no change"
    );

    // Longer than the TTL: etcd expires the lease and the member leaves;
    // after the heal it is put again, once, under a new lease.
    proxy.partition();
    wait_health(&partitioned, Health::Disconnected).await;
    wait_set(&observer, "the lease expired", Snapshot::is_empty).await;
    assert_eq!(
        ports(&partitioned.current()),
        [9090],
        "the last set is kept"
    );
    proxy.heal();
    let second = within("a new key", next_key(&mut registration, Some(&first))).await;
    assert_ne!(second, first);
    wait_set(&observer, "the member again", |s| s.len() == 1).await;
    let name = second.trim_start_matches("/services/users/").to_owned();
    wait_set(&partitioned, "the member again", |s| {
        names(s) == [name.clone()]
    })
    .await;
    wait_health(&partitioned, Health::Connected).await;
    // Exactly once: one key, one lease, and it stays so.
    assert_eq!(
        wait_keys(&etcd, "/services/users", 1).await,
        std::slice::from_ref(&second)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        keys(&etcd, "/services/users"),
        std::slice::from_ref(&second)
    );
    assert_eq!(etcd.lease_count().expect("leases"), 1);
    registration.close().await;
    wait_set(&observer, "closed", Snapshot::is_empty).await;
}

#[tokio::test]
async fn etcd_restarted_keeps_one_member_whatever_the_outage() {
    let mut etcd = etcd();
    let (_client, watch, registration) = registered(&etcd, 4).await;
    for outage in [Duration::from_millis(500), Duration::from_secs(5)] {
        let before = registration.znode().expect("a key");
        etcd.stop();
        wait_health(&watch, Health::Disconnected).await;
        assert_eq!(ports(&watch.current()), [9090], "the last set is kept");
        tokio::time::sleep(outage).await;
        etcd.start_again().expect("restart");
        wait_health(&watch, Health::Connected).await;
        // etcd restores leases with a fresh TTL: the member survives, or
        // (had its lease expired) it is put again; either way exactly one,
        // the registration's, and it stays so.
        let key = within("one key, the registration's", async {
            loop {
                let stored = keys(&etcd, "/services/users");
                if let (Some(key), [stored]) = (registration.znode(), stored.as_slice()) {
                    if &key == stored {
                        return key;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if outage < Duration::from_secs(4) {
            assert_eq!(key, before, "a short outage keeps the lease and the key");
        }
        let name = key.trim_start_matches("/services/users/").to_owned();
        wait_set(&watch, "the member", |s| {
            names(s) == std::slice::from_ref(&name)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            keys(&etcd, "/services/users"),
            std::slice::from_ref(&key),
            "after {outage:?}"
        );
        assert_eq!(names(&watch.current()), [name]);
        assert_eq!(etcd.lease_count().expect("leases"), 1);
    }
    registration.close().await;
    wait_set(&watch, "closed", Snapshot::is_empty).await;
}

#[tokio::test]
async fn a_cut_watch_stream_resumes_and_a_compacted_one_loads_again() {
    let etcd = etcd();
    let proxy = testkit::Proxy::start(etcd.addr()).expect("proxy");
    let client = client(&proxy.endpoint()).await;
    let set = path("/s");
    let watch = client
        .watch_with(&set, WatchOptions::new().format(Format::EtcdNaming))
        .await
        .expect("watch");
    let put = |port: u16| {
        etcd.put(
            &format!("/s/h:{port}"),
            &format!(r#"{{"Addr":"h:{port}"}}"#),
        )
        .expect("put");
    };
    put(100);
    wait_set(&watch, "h:100", |s| ports(s) == [100]).await;
    assert_eq!(watch.stats().listings, 1);

    // Cut while changes happen: the watch resumes from the last revision
    // it applied and gets what it missed, in order, without a get.
    proxy.partition();
    put(101);
    etcd.delete("/s/h:100").expect("del");
    put(102);
    proxy.cut();
    proxy.heal();
    wait_set(&watch, "resumed", |s| ports(s) == [101, 102]).await;
    assert_eq!(watch.stats().listings, 1, "resumed without a get");
    wait_health(&watch, Health::Connected).await;

    // Compacted past what it applied: etcd refuses to resume it; the set
    // is loaded again and diffed.
    // Two revisions each time (a put and a delete), so that the one the
    // watch would resume from is gone.
    for (round, gone) in [(0u16, 101u16), (1, 102), (2, 200)] {
        proxy.partition();
        put(200 + round);
        assert!(etcd.delete(&format!("/s/h:{gone}")).expect("del"));
        etcd.compact(etcd.revision().expect("revision"))
            .expect("compact");
        proxy.cut();
        proxy.heal();
        wait_set(&watch, "the truth", |s| {
            let now = ports(s);
            now.contains(&(200 + round)) && !now.contains(&gone)
        })
        .await;
        assert_eq!(
            watch.stats().listings,
            2 + u64::from(round),
            "one get per compaction"
        );
        wait_health(&watch, Health::Connected).await;
    }
    // What etcd holds, exactly.
    let mut held: Vec<u16> = etcd
        .get_prefix("/s/")
        .expect("get")
        .into_iter()
        .filter_map(|(k, _)| k.rsplit(':').next()?.parse().ok())
        .collect();
    held.sort_unstable();
    let mut served = ports(&watch.current());
    served.sort_unstable();
    assert_eq!(served, held);
}

#[tokio::test]
async fn a_failing_health_check_deregisters_and_a_passing_one_registers_again() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let set = path("/services/users");
    let watch = client.watch(&set).await.expect("watch");
    let healthy = Arc::new(AtomicBool::new(true));
    let check = Arc::clone(&healthy);
    let mut registration = client
        .register_with(
            &set,
            common::member(9090),
            RegisterOptions::new()
                .ttl(Duration::from_secs(5))
                .health_check(move || {
                    let up = check.load(Ordering::SeqCst);
                    async move { up }
                })
                .health_check_interval(Duration::from_millis(100)),
        )
        .await
        .expect("register");
    wait_set(&watch, "registered", |s| s.len() == 1).await;
    healthy.store(false, Ordering::SeqCst);
    wait_set(&watch, "deregistered", Snapshot::is_empty).await;
    // The revocation's answer may come after the watch saw the leave.
    within("no key", async {
        while registration.znode().is_some() {
            registration.changed().await;
        }
    })
    .await;
    assert_eq!(etcd.lease_count().expect("leases"), 0, "revoked");
    healthy.store(true, Ordering::SeqCst);
    within("a key again", next_key(&mut registration, None)).await;
    wait_set(&watch, "registered again", |s| s.len() == 1).await;
    assert_eq!(wait_keys(&etcd, "/services/users", 1).await.len(), 1);
    registration.close().await;
}

#[tokio::test]
async fn bad_options_are_refused_and_change_nothing() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let set = path("/s");
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_secs(3601),
    ] {
        let error = client
            .register_with(&set, common::member(1), RegisterOptions::new().ttl(ttl))
            .await
            .expect_err("a bad TTL");
        assert!(error.to_string().contains("TTL"), "{error}");
    }
    assert!(keys(&etcd, "/s").is_empty());
    assert_eq!(etcd.lease_count().expect("leases"), 0);
    for endpoints in ["", " , ", "nohost", "h:99999"] {
        let error = EtcdClient::connect(endpoints)
            .await
            .expect_err("bad endpoints");
        assert!(
            matches!(error, serversets::Error::InvalidConfig(_)),
            "{error}"
        );
    }
    let dead = testkit::dead_endpoint().expect("dead endpoint");
    let error = EtcdClient::builder(dead)
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect_err("nothing listens");
    assert!(
        error.to_string().contains("cannot connect to etcd"),
        "{error}"
    );
    // A closed client refuses new work and writes nothing.
    client.clone().close().await;
    let refused = client.register(&set, common::member(1)).await;
    assert!(
        matches!(refused, Err(serversets::Error::Closed)),
        "{refused:?}"
    );
    assert!(matches!(
        client.watch(&set).await,
        Err(serversets::Error::Closed)
    ));
    assert!(keys(&etcd, "/s").is_empty());
    // The etcd engine is not a ZooKeeper client's.
    let error = serversets::Client::builder("127.0.0.1:1")
        .watch_engine(WatchEngine::Etcd)
        .connect()
        .await
        .expect_err("refused");
    assert!(
        matches!(error, serversets::Error::InvalidConfig(_)),
        "{error}"
    );
}

#[tokio::test]
async fn one_connection_serves_every_registration_and_watch() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let mut held = Vec::new();
    let mut watches = Vec::new();
    for n in 0..5u16 {
        let set = path(&format!("/s{n}"));
        watches.push(client.watch(&set).await.expect("watch"));
        watches.push(
            client
                .watch_with(&set, WatchOptions::new().format(Format::EtcdNaming))
                .await
                .expect("watch"),
        );
        held.push(
            client
                .register(&set, common::member(9000 + n))
                .await
                .expect("register"),
        );
    }
    for (n, watch) in watches.iter().step_by(2).enumerate() {
        wait_set(watch, "its member", |s| s.len() == 1).await;
        assert_eq!(ports(&watch.current()), [9000 + n as u16]);
    }
    assert_eq!(testkit::connections_to(etcd.port()).expect("/proc"), 1);
}

#[tokio::test]
async fn a_stalled_etcd_keeps_the_set_and_the_registration() {
    let etcd = etcd();
    let (client, watch, registration) = registered(&etcd, 8).await;
    let key = registration.znode().expect("key");
    etcd.pause().expect("SIGSTOP");
    // HTTP/2 keep-alives notice the stalled server.
    wait_health(&watch, Health::Disconnected).await;
    assert_eq!(ports(&watch.current()), [9090], "the last set is kept");
    assert_eq!(client.health(), Health::Disconnected);
    etcd.resume().expect("SIGCONT");
    wait_health(&watch, Health::Connected).await;
    etcd.put(
        "/services/users/member_00000000000000aa",
        &String::from_utf8(serversets::codec::encode(&common::member(9091))).expect("utf-8"),
    )
    .expect("put");
    let now = wait_set(&watch, "the new member", |s| s.len() == 2).await;
    assert_eq!(ports(&now), [9090, 9091]);
    assert_eq!(registration.znode().as_deref(), Some(key.as_str()));
    assert_eq!(keys(&etcd, "/services/users").len(), 2);
    registration.close().await;
}

#[tokio::test]
async fn a_registration_whose_caller_gives_up_leaves_nothing_behind() {
    let etcd = etcd();
    let client = client(&etcd.endpoint()).await;
    let set = path("/services/users");
    let watch = client.watch(&set).await.expect("watch");
    for wait_us in [1, 100, 1_000, 3_000, 10_000] {
        let attempt = tokio::time::timeout(
            Duration::from_micros(wait_us),
            client.register(&set, common::member(9090)),
        )
        .await;
        if let Ok(registration) = attempt {
            // Done before the deadline: dropping it revokes the lease.
            drop(registration.expect("register"));
        }
    }
    // Whatever was granted or put is revoked: no key, no lease.
    wait_keys(&etcd, "/services/users", 0).await;
    within("no lease left", async {
        while etcd.lease_count().expect("leases") != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    wait_set(&watch, "empty", Snapshot::is_empty).await;
}

#[tokio::test]
async fn a_client_waits_for_an_etcd_that_is_starting() {
    let mut etcd = etcd();
    let endpoint = etcd.endpoint();
    etcd.stop();
    // Connecting while nothing listens: it keeps asking until etcd is up
    // (within its connect timeout), as a client does after a restart.
    let connecting = tokio::spawn(async move { EtcdClient::connect(&endpoint).await });
    tokio::task::yield_now().await;
    etcd.start_again().expect("restart");
    let client = within("the connection", connecting)
        .await
        .expect("task")
        .expect("connected once etcd is up");
    assert_eq!(client.health(), Health::Connected);
    let watch = client.watch(&path("/s")).await.expect("watch");
    assert!(watch.current().is_empty());
}

#[tokio::test]
async fn a_member_deleted_by_someone_else_is_put_again() {
    let etcd = etcd();
    let (_client, watch, registration) = registered(&etcd, 3).await;
    let key = registration.znode().expect("key");
    let name = key.trim_start_matches("/services/users/").to_owned();
    let mut changes = watch.changes();
    assert!(etcd.delete(&key).expect("del"));
    // Back under the same key (its lease's), once: the watch saw it leave
    // and join again.
    within("the leave and the join", async {
        let (mut left, mut joined) = (false, false);
        while !(left && joined) {
            let change = futures::StreamExt::next(&mut changes)
                .await
                .expect("changes");
            left |= change.removed.iter().any(|e| e.name == name);
            joined |= left && change.added.iter().any(|e| e.name == name);
        }
    })
    .await;
    assert_eq!(names(&watch.current()), std::slice::from_ref(&name));
    assert_eq!(
        wait_keys(&etcd, "/services/users", 1).await,
        std::slice::from_ref(&key)
    );
    assert_eq!(registration.znode(), Some(key));
    assert_eq!(etcd.lease_count().expect("leases"), 1);
    registration.close().await;
    assert!(keys(&etcd, "/services/users").is_empty());
}

#[tokio::test]
async fn relative_keys_meet_go_services_registered_without_the_leading_slash() {
    let etcd = etcd();
    // Go: resolver target etcd:///services/users, endpoints manager keys
    // services/users/<addr>.
    etcd.put(
        "services/users/10.0.0.1:8080",
        r#"{"Op":0,"Addr":"10.0.0.1:8080"}"#,
    )
    .expect("put");
    let relative = EtcdClient::builder(etcd.endpoint())
        .relative_keys(true)
        .connect()
        .await
        .expect("connect");
    let set = path("/services/users");
    let naming = WatchOptions::new().format(Format::EtcdNaming);
    let watch = relative
        .watch_with(&set, naming.clone())
        .await
        .expect("watch");
    assert_eq!(names(&watch.current()), ["10.0.0.1:8080"]);
    let registration = relative
        .register_with(
            &set,
            common::member(9091),
            RegisterOptions::new().format(Format::EtcdNaming),
        )
        .await
        .expect("register");
    assert_eq!(
        registration.znode().as_deref(),
        Some("services/users/127.0.0.1:9091")
    );
    wait_set(&watch, "ours too", |s| s.len() == 2).await;
    // A client with absolute keys sees neither.
    let absolute = client(&etcd.endpoint()).await;
    let other = absolute.watch_with(&set, naming).await.expect("watch");
    assert!(other.current().is_empty());
    let listed = relative
        .inspect(&set, Format::EtcdNaming)
        .await
        .expect("inspect");
    let listed: Vec<&str> = listed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(listed, ["10.0.0.1:8080", "127.0.0.1:9091"]);
    registration.close().await;
    wait_set(&watch, "ours gone", |s| s.len() == 1).await;
}
