//! Ejection of failing endpoints (the shared failure accrual), probing and
//! recovery; the last endpoint in rotation is never ejected.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{dead_endpoint, eventually, round_trip, servers, EchoServer, DEADLINE};
use serversets::Endpoint;
use serversets::FixedSet;
use serversets_pool::{
    Connector, EndpointStats, Error, FailureAccrual, Options, PoolSet, TcpConnector,
};
use tokio::net::TcpStream;

fn options(base_backoff: Duration) -> Options {
    Options::new().failure_accrual(
        FailureAccrual::new()
            .consecutive_failures(3)
            .backoff(base_backoff, base_backoff * 2)
            .jitter(false),
    )
}

/// A TCP connector counting the connects it starts to `target`.
fn counting(target: Endpoint, count: Arc<AtomicUsize>) -> impl Connector<Connection = TcpStream> {
    move |endpoint: Endpoint| {
        if endpoint == target {
            count.fetch_add(1, Ordering::SeqCst);
        }
        async move { TcpConnector::new().connect(&endpoint).await }
    }
}

fn stats_of<C: serversets_pool::Connector>(
    pool: &PoolSet<C>,
    endpoint: &Endpoint,
) -> EndpointStats {
    pool.stats()
        .into_iter()
        .find(|s| &s.endpoint == endpoint)
        .expect("endpoint in the pool")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_is_ejected_then_probed_and_used_again() {
    let live = servers(2).await;
    let mut down = EchoServer::start().await;
    down.stop().await;
    let set = FixedSet::from_endpoints([live[0].endpoint(), live[1].endpoint(), down.endpoint()]);
    let pool = PoolSet::with_options(
        set,
        TcpConnector::new(),
        options(Duration::from_millis(200)),
    );

    // Every checkout succeeds (failed connects go to another endpoint)
    // until the down one is ejected.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut checkouts = 0;
    while !stats_of(&pool, &down.endpoint()).ejected {
        assert!(tokio::time::Instant::now() < deadline, "never ejected");
        let conn = pool.checkout().await.expect("a live endpoint answers");
        assert_ne!(conn.endpoint(), &down.endpoint());
        checkouts += 1;
    }
    assert!(checkouts >= 1);
    // Three failures in a row marked it (and the marking reset the count).
    assert_eq!(pool.accrual_stats().ejections, 1);
    assert_eq!(stats_of(&pool, &down.endpoint()).consecutive_failures, 0);
    assert!(!stats_of(&pool, &live[0].endpoint()).ejected);

    // Back on the same port: after its backoff it is probed and used.
    down.restart().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never used again");
        let mut conn = pool.checkout().await.expect("checkout");
        if conn.endpoint() == &down.endpoint() {
            round_trip(&mut conn, b"back").await;
            break;
        }
    }
    let stats = stats_of(&pool, &down.endpoint());
    assert!(!stats.ejected, "{stats:?}");
    assert_eq!(stats.consecutive_failures, 0);
    assert_eq!(pool.accrual_stats().revivals, 1);
    // Back in rotation: it takes its share of concurrent load.
    let mut held = Vec::new();
    for _ in 0..9 {
        held.push(pool.checkout().await.expect("checkout"));
    }
    assert_eq!(
        held.iter()
            .filter(|c| c.endpoint() == &down.endpoint())
            .count(),
        3
    );
}

#[tokio::test]
async fn an_ejected_endpoint_is_skipped_during_its_backoff() {
    let live = servers(2).await;
    let (dead, _held) = dead_endpoint();
    let set = FixedSet::from_endpoints([live[0].endpoint(), live[1].endpoint(), dead.clone()]);
    // A backoff far longer than the test.
    let connects = Arc::new(AtomicUsize::new(0));
    let pool = PoolSet::with_options(
        set.clone(),
        counting(dead.clone(), Arc::clone(&connects)),
        options(Duration::from_secs(300)),
    );
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !stats_of(&pool, &dead).ejected {
        assert!(tokio::time::Instant::now() < deadline, "never ejected");
        pool.checkout().await.expect("checkout");
    }
    let failures = connects.load(Ordering::SeqCst);
    assert_eq!(failures, 3);
    assert_eq!(pool.accrual_stats().ejections, 1);
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(pool.checkout().await.expect("checkout"));
    }
    assert_eq!(connects.load(Ordering::SeqCst), failures, "not tried");
    assert_eq!(pool.accrual_stats().ejections, 1);
    assert!(held.iter().all(|c| c.endpoint() != &dead));
    drop(held);

    // The live ones leave: the ejected one is all there is, so it is tried
    // (connect errors, not "no endpoints").
    set.replace_endpoints([dead.clone()]);
    eventually("the pool follows", || pool.endpoints() == [dead.clone()]).await;
    match pool.checkout().await {
        Err(Error::Connect { endpoint, .. }) => assert_eq!(endpoint, dead),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_last_endpoint_is_never_ejected() {
    let (dead, _held) = dead_endpoint();
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([dead.clone()]),
        TcpConnector::new(),
        options(Duration::from_secs(300)),
    );
    for i in 1..=10u32 {
        match pool.checkout().await {
            Err(error @ Error::Connect { .. }) => {
                assert_eq!(error.endpoint(), Some(&dead));
                assert!(error.to_string().contains(&dead.to_string()), "{error}");
            }
            other => panic!("expected a connect error, got {other:?}"),
        }
        let stats = stats_of(&pool, &dead);
        assert!(!stats.ejected, "{stats:?}");
        assert_eq!(stats.consecutive_failures, i);
    }

    // Two dead endpoints: one is ejected, never both.
    let (d2, _held2) = dead_endpoint();
    let d1 = dead;
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([d1.clone(), d2.clone()]),
        TcpConnector::new(),
        options(Duration::from_secs(300)),
    );
    for _ in 0..10 {
        let error = pool.checkout().await.expect_err("both are down");
        assert!(matches!(error, Error::Connect { .. }), "{error}");
        let ejected = pool.stats().iter().filter(|s| s.ejected).count();
        assert!(ejected <= 1);
    }
    assert_eq!(pool.stats().iter().filter(|s| s.ejected).count(), 1);
}

#[tokio::test]
async fn connections_marked_broken_in_a_row_eject_their_endpoint() {
    let servers = servers(2).await;
    let set = FixedSet::from_endpoints(servers.iter().map(|s| s.endpoint()));
    let pool = PoolSet::with_options(set, TcpConnector::new(), options(Duration::from_secs(300)));

    // Hold one connection on X: every other checkout then goes to Y.
    let x_conn = pool.checkout().await.expect("checkout");
    let x = x_conn.endpoint().clone();
    let next_on_y = || async {
        let conn = pool.checkout().await.expect("checkout");
        assert_ne!(conn.endpoint(), &x);
        conn
    };
    let y = next_on_y().await.endpoint().clone();

    // Broken, broken, healthy, broken, broken: never 3 in a row.
    for broken in [true, true, false, true, true] {
        let mut conn = next_on_y().await;
        if broken {
            conn.mark_broken();
            assert!(conn.is_broken());
        }
    }
    let stats = stats_of(&pool, &y);
    assert!(!stats.ejected, "{stats:?}");
    assert_eq!(stats.consecutive_failures, 2);
    // Y opened four connections; each ended marked broken and closed (the
    // healthy returns were reused by the next checkout).
    assert_eq!(stats.idle, 0, "broken connections are closed, not kept");
    let y_server = servers.iter().find(|s| s.endpoint() == y).expect("Y");
    eventually("Y's broken connections closed", || y_server.closed() == 4).await;

    // A third in a row ejects Y.
    next_on_y().await.mark_broken();
    let stats = stats_of(&pool, &y);
    assert!(stats.ejected, "{stats:?}");
    assert_eq!(pool.accrual_stats().ejections, 1);

    // Now everything goes to X, however loaded it is.
    let mut held = vec![x_conn];
    for _ in 0..20 {
        let conn = pool.checkout().await.expect("checkout");
        assert_eq!(conn.endpoint(), &x);
        held.push(conn);
    }
    // And X, the last in rotation, is never ejected.
    for mut conn in held {
        conn.mark_broken();
    }
    let stats = stats_of(&pool, &x);
    assert!(!stats.ejected, "{stats:?}");
    assert_eq!(stats.consecutive_failures, 21);
    assert_eq!(pool.accrual_stats().ejections, 1);
    // Y's healthy connections coming back would reset it; X is still
    // served.
    let conn = pool.checkout().await.expect("checkout");
    assert_eq!(conn.endpoint(), &x);
}
