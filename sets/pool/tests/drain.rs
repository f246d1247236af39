//! Following the set: removed endpoints drain, added ones are used at once.

mod common;

use common::{eventually, round_trip, servers};
use serversets::FixedSet;
use serversets_pool::{Options, PoolSet, TcpConnector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_endpoint_drains_and_an_added_one_is_used_at_once() {
    let servers = servers(3).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let set = FixedSet::from_endpoints([a.endpoint(), b.endpoint()]);
    let pool = PoolSet::with_options(set.clone(), TcpConnector::new(), Options::new().max_idle(8));

    // 3 on each of A and B.
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut conn = pool.checkout().await.expect("checkout");
        round_trip(&mut conn, b"x").await;
        held.push(conn);
    }
    assert_eq!((a.accepted(), b.accepted()), (3, 3));
    // Return two of A's (idle) and all of B's; keep one of A's out.
    let mut a_out = Vec::new();
    for conn in held.drain(..) {
        if conn.endpoint() == &a.endpoint() && a_out.is_empty() {
            a_out.push(conn);
        }
    }
    let a_out = a_out.pop().expect("one of A's");
    let stats = pool.stats();
    let of = |e: &serversets::Endpoint| {
        let s = stats.iter().find(|s| &s.endpoint == e).expect("stats");
        (s.active, s.idle)
    };
    assert_eq!(of(&a.endpoint()), (1, 2), "{stats:?}");
    assert_eq!(of(&b.endpoint()), (0, 3), "{stats:?}");

    // A leaves, C joins.
    set.replace_endpoints([b.endpoint(), c.endpoint()]);
    eventually("the pool follows the set", || {
        let mut now = pool.endpoints();
        now.sort();
        let mut want = vec![b.endpoint(), c.endpoint()];
        want.sort();
        now == want
    })
    .await;
    eventually("A's idle connections are closed at once", || {
        a.closed() == 2
    })
    .await;

    // C is used at once: hold one on B, so C is strictly the least active.
    let mut on_b = pool.checkout().await.expect("checkout");
    round_trip(&mut on_b, b"b").await;
    let on_c = if on_b.endpoint() == &c.endpoint() {
        // The tie went to C: then the next one goes to B.
        std::mem::replace(&mut on_b, pool.checkout().await.expect("checkout"))
    } else {
        pool.checkout().await.expect("checkout")
    };
    assert_eq!(on_c.endpoint(), &c.endpoint());
    assert_eq!(on_b.endpoint(), &b.endpoint());

    // A gets no new checkouts.
    let mut more = Vec::new();
    for _ in 0..20 {
        let conn = pool.checkout().await.expect("checkout");
        assert_ne!(conn.endpoint(), &a.endpoint());
        more.push(conn);
    }
    assert_eq!(a.accepted(), 3);

    // The checked-out A connection still works, and is closed on return.
    let mut a_out = a_out;
    round_trip(&mut a_out, b"still works").await;
    assert_eq!(a.closed(), 2);
    drop(a_out);
    eventually("A's last connection is closed on return", || {
        a.closed() == 3
    })
    .await;
    assert!(pool.stats().iter().all(|s| s.endpoint != a.endpoint()));

    // A comes back: a fresh pool for it, used at once.
    drop((more, on_b, on_c));
    set.replace_endpoints([a.endpoint(), b.endpoint(), c.endpoint()]);
    eventually("A is back", || pool.endpoints().len() == 3).await;
    let mut held = Vec::new();
    for _ in 0..9 {
        held.push(pool.checkout().await.expect("checkout"));
    }
    assert_eq!(
        held.iter()
            .filter(|c| c.endpoint() == &a.endpoint())
            .count(),
        3,
        "A takes its even share"
    );
}

#[tokio::test]
async fn emptying_the_set_drains_everything() {
    let servers = servers(2).await;
    let set = FixedSet::from_endpoints(servers.iter().map(|s| s.endpoint()));
    let pool = PoolSet::new(set.clone(), TcpConnector::new());
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = pool.checkout().await.expect("checkout");
        round_trip(&mut conn, b"x").await;
        held.push(conn);
    }
    held.truncate(1);
    set.replace_endpoints([]);
    eventually("the pool is empty", || pool.endpoints().is_empty()).await;
    eventually("idle ones closed", || {
        servers.iter().map(|s| s.closed()).sum::<usize>() == 3
    })
    .await;
    assert!(matches!(
        pool.checkout().await,
        Err(serversets_pool::Error::NoEndpoints)
    ));
    drop(held);
    eventually("the last one closed on return", || {
        servers.iter().map(|s| s.closed()).sum::<usize>() == 4
    })
    .await;
}
