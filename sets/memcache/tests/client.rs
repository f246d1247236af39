//! The memcache client against real memcached servers.

use std::collections::HashMap;

use serversets::Endpoint;
use serversets::FixedSet;
use serversets_memcache::{Error, McSet};
use testkit::Memcached;

fn start(n: usize) -> Vec<Memcached> {
    (0..n)
        .map(|_| Memcached::start().expect("memcached"))
        .collect()
}

fn endpoints(servers: &[Memcached]) -> Vec<Endpoint> {
    servers
        .iter()
        .map(|s| s.endpoint().parse().unwrap())
        .collect()
}

fn keys(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag}:{i}:{}", i * 7919 % 1013))
        .collect()
}

/// Which server (by endpoint) holds each key, asking every server directly.
fn holders(servers: &[Memcached], keys: &[String]) -> HashMap<String, String> {
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut out = HashMap::new();
    for server in servers {
        for key in server.keys_present(&refs).expect("ask server") {
            assert!(
                out.insert(key.clone(), server.endpoint()).is_none(),
                "{key} is on two servers"
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_lands_where_the_ring_says() {
    let servers = start(4);
    let cache = McSet::new(FixedSet::from_endpoints(endpoints(&servers)));
    let keys = keys(2000, "land");
    for key in &keys {
        cache.set(key, key.as_bytes(), 0).await.unwrap();
    }
    let held = holders(&servers, &keys);
    assert_eq!(held.len(), keys.len(), "every key stored once");
    for key in &keys {
        assert_eq!(
            held[key],
            cache.server_for(key).unwrap().to_string(),
            "{key} is not where the ring says"
        );
    }
    // Every server got a fair share (160 points each).
    for server in &servers {
        let n = held.values().filter(|s| **s == server.endpoint()).count();
        assert!(
            (300..=700).contains(&n),
            "{} holds {n} of 2000",
            server.endpoint()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_server_moves_about_one_in_n_plus_one() {
    let mut servers = start(5);
    let extra = servers.pop().unwrap();
    let set = FixedSet::from_endpoints(endpoints(&servers));
    let cache = McSet::new(set.clone());
    let keys = keys(10_000, "move");
    let before: Vec<Endpoint> = keys.iter().map(|k| cache.server_for(k).unwrap()).collect();
    for key in keys.iter().take(2000) {
        cache.set(key, b"v", 0).await.unwrap();
    }

    set.replace_endpoints(
        endpoints(&servers)
            .into_iter()
            .chain([extra.endpoint().parse().unwrap()]),
    );
    // The client follows the set at once: the next call sees the new ring.
    assert_eq!(cache.servers().len(), 5);

    let new: Endpoint = extra.endpoint().parse().unwrap();
    let mut moved = 0;
    for (key, old) in keys.iter().zip(&before) {
        let now = cache.server_for(key).unwrap();
        if &now != old {
            assert_eq!(now, new, "{key} moved between two old servers");
            moved += 1;
        }
    }
    let fraction = moved as f64 / keys.len() as f64;
    // Expected 1/5 = 0.20; ketama's spread keeps it well inside this bound.
    assert!(
        (0.14..=0.26).contains(&fraction),
        "moved {fraction:.3} of keys"
    );

    // Keys that did not move are still hits; moved ones are misses on the new server.
    let mut hits = 0;
    for key in keys.iter().take(2000) {
        if cache.get(key).await.unwrap().is_some() {
            hits += 1;
        }
    }
    let unmoved = keys
        .iter()
        .take(2000)
        .zip(&before)
        .filter(|(k, old)| cache.server_for(k).as_ref() == Some(*old))
        .count();
    assert_eq!(hits, unmoved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_servers_keys_move_to_the_others() {
    let servers = start(4);
    let set = FixedSet::from_endpoints(endpoints(&servers));
    let cache = McSet::new(set.clone());
    let keys = keys(5000, "remove");
    let before: Vec<Endpoint> = keys.iter().map(|k| cache.server_for(k).unwrap()).collect();
    let gone: Endpoint = servers[1].endpoint().parse().unwrap();
    set.replace_endpoints(endpoints(&servers).into_iter().filter(|e| *e != gone));
    assert_eq!(cache.servers().len(), 3);
    let mut moved = 0;
    for (key, old) in keys.iter().zip(&before) {
        let now = cache.server_for(key).unwrap();
        assert_ne!(now, gone);
        if *old == gone {
            moved += 1;
        } else {
            assert_eq!(&now, old, "{key} moved though its server stayed");
        }
    }
    assert!(moved > 0);
    // Writes now land on the remaining servers only.
    for key in keys.iter().take(500) {
        cache.set(key, b"x", 0).await.unwrap();
    }
    assert_eq!(servers[1].curr_items().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_errors() {
    let servers = start(3);
    let set = FixedSet::from_endpoints(endpoints(&servers));
    let cache = McSet::new(set.clone());

    assert_eq!(cache.get("absent").await.unwrap(), None);
    cache.set("k", b"v1", 0).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(
        !cache.add("k", b"v2", 0).await.unwrap(),
        "add on an existing key"
    );
    assert!(cache.add("k2", b"a", 0).await.unwrap());
    assert!(cache.replace("k", b"v3", 0).await.unwrap());
    assert!(!cache.replace("nope", b"x", 0).await.unwrap());
    assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(&b"v3"[..]));
    assert!(cache.touch("k", 100).await.unwrap());
    assert!(!cache.touch("nope", 100).await.unwrap());
    assert!(cache.delete("k").await.unwrap());
    assert!(!cache.delete("k").await.unwrap());
    // A missing counter is not created: seed it with add.
    assert_eq!(cache.increment("fresh", 1).await.unwrap(), None);
    assert!(cache.add("fresh", b"0", 0).await.unwrap());
    assert_eq!(cache.increment("fresh", 1).await.unwrap(), Some(1));
    cache.set("n", b"10", 0).await.unwrap();
    assert_eq!(cache.increment("n", 5).await.unwrap(), Some(15));
    assert_eq!(cache.decrement("n", 20).await.unwrap(), Some(0));

    let many = keys(300, "multi");
    for key in many.iter().step_by(2) {
        cache.set(key, key.as_bytes(), 0).await.unwrap();
    }
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let got = cache.get_multi(&refs).await.unwrap();
    assert_eq!(got.len(), 150);
    for key in many.iter().step_by(2) {
        assert_eq!(got[key], key.as_bytes());
    }

    // Bad keys fail before any I/O.
    for bad in ["", "has space", "line\nbreak", &"k".repeat(251)] {
        assert!(
            matches!(cache.get(bad).await, Err(Error::InvalidKey { .. })),
            "{bad:?}"
        );
        assert!(matches!(
            cache.get_multi(&["ok", bad]).await,
            Err(Error::InvalidKey { .. })
        ));
    }

    // A dead server: a clear error naming it, in bounded time.
    let dead: Endpoint = testkit::dead_endpoint().unwrap().parse().unwrap();
    let lonely = McSet::new(FixedSet::from_endpoints([dead.clone()]));
    match lonely.get("k").await {
        Err(Error::Connect { server, .. }) => assert_eq!(server, dead),
        other => panic!("expected a connect error, got {other:?}"),
    }

    // No servers: a clear error.
    set.replace_endpoints([]);
    assert!(cache.servers().is_empty());
    let err = cache.get("k").await.unwrap_err();
    assert!(matches!(err, Error::NoServers), "{err}");
    assert!(err.to_string().contains("no memcache servers"));
}
