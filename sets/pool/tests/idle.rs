//! Idle connections: reuse, the idle limit, the idle timeout.

mod common;

use std::time::Duration;

use common::{eventually, round_trip, EchoServer};
use serversets::FixedSet;
use serversets_pool::{Options, PoolSet, TcpConnector};

#[tokio::test]
async fn a_returned_connection_is_reused() {
    let server = EchoServer::start().await;
    let pool = PoolSet::new(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
    );

    let mut conn = pool.checkout().await.expect("checkout");
    round_trip(&mut conn, b"hello").await;
    let local = conn.local_addr().expect("local addr");
    assert!(conn.nodelay().expect("nodelay"), "TCP_NODELAY is set");
    drop(conn);
    assert_eq!(pool.stats()[0].idle, 1);

    for i in 0..10 {
        let mut conn = pool.checkout().await.expect("checkout");
        assert_eq!(conn.local_addr().expect("local addr"), local, "round {i}");
        round_trip(&mut conn, b"again").await;
    }
    assert_eq!(server.accepted(), 1);
    assert_eq!(server.closed(), 0);
}

#[tokio::test]
async fn at_most_max_idle_connections_are_kept() {
    let server = EchoServer::start().await;
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
        Options::new().max_idle(2),
    );

    let mut held = Vec::new();
    for _ in 0..5 {
        let mut conn = pool.checkout().await.expect("checkout");
        // Once echoed, the server has surely counted the connection.
        round_trip(&mut conn, b"x").await;
        held.push(conn);
    }
    assert_eq!(server.accepted(), 5);
    assert_eq!(pool.stats()[0].active, 5);
    held.clear();
    eventually("3 connections beyond max_idle are closed", || {
        server.closed() == 3
    })
    .await;
    assert_eq!((pool.stats()[0].active, pool.stats()[0].idle), (0, 2));

    // The two idle ones are handed out first, then new ones are opened.
    let mut a = pool.checkout().await.expect("checkout");
    let mut b = pool.checkout().await.expect("checkout");
    round_trip(&mut a, b"a").await;
    round_trip(&mut b, b"b").await;
    assert_eq!(server.accepted(), 5);
    let mut c = pool.checkout().await.expect("checkout");
    round_trip(&mut c, b"c").await;
    assert_eq!(server.accepted(), 6);
    drop((a, b, c));
    eventually("one more closed", || server.closed() == 4).await;
}

#[tokio::test]
async fn idle_connections_older_than_the_idle_timeout_are_closed() {
    let server = EchoServer::start().await;
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
        Options::new().idle_timeout(Some(Duration::from_millis(100))),
    );

    // Swept by the pool with no checkout at all.
    let mut conn = pool.checkout().await.expect("checkout");
    round_trip(&mut conn, b"x").await;
    drop(conn);
    assert_eq!(server.accepted(), 1);
    eventually("the idle connection is closed", || server.closed() == 1).await;
    assert_eq!(pool.stats()[0].idle, 0);

    // Discarded on checkout when older than the timeout.
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
        Options::new()
            // The sweep runs every 10 minutes: only checkouts discard.
            .idle_timeout(Some(Duration::from_secs(1200))),
    );
    let mut conn = pool.checkout().await.expect("checkout");
    round_trip(&mut conn, b"x").await;
    drop(conn);
    assert_eq!(server.accepted(), 2);
    let mut fresh = pool.checkout().await.expect("checkout");
    round_trip(&mut fresh, b"x").await;
    assert_eq!(server.accepted(), 2, "young enough: reused");
    drop(fresh);
    drop(pool);
    eventually("dropping the pool closes its idle connection", || {
        server.closed() == 2
    })
    .await;
}

#[tokio::test]
async fn a_stale_idle_connection_is_replaced_on_checkout() {
    let server = EchoServer::start().await;
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
        Options::new()
            .idle_timeout(Some(Duration::from_millis(50)))
            .max_idle(4),
    );
    let mut first = pool.checkout().await.expect("checkout");
    round_trip(&mut first, b"x").await;
    let first_addr = first.local_addr().expect("addr");
    drop(first);
    // Older than the timeout for sure (whether the sweep or this checkout
    // closes it).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = pool.checkout().await.expect("checkout");
    round_trip(&mut second, b"x").await;
    assert_ne!(second.local_addr().expect("addr"), first_addr);
    assert_eq!(server.accepted(), 2);
    eventually("the stale connection is closed", || server.closed() == 1).await;
}
