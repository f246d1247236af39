//! Limits and failures: max active and waiting, checkout and connect
//! timeouts, closed pools, empty sets, ended sources, custom connectors.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, round_trip, servers, within, EchoServer};
use serversets::FixedSet;
use serversets::{Changes, Endpoint, Publisher, Snapshot, Source};
use serversets_pool::{Connector, Error, Options, PoolSet, TcpConnector};

fn limited(max_active: usize, checkout_timeout: Duration) -> Options {
    Options::new()
        .max_active(max_active)
        .checkout_timeout(checkout_timeout)
}

/// Whether `future` is still pending after a short while (a failure here
/// means it finished when it must not have).
async fn still_pending<F: Future + Unpin>(future: &mut F) -> bool {
    tokio::time::timeout(Duration::from_millis(100), future)
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_waits_at_max_active_and_gets_the_returned_connection() {
    let servers = servers(2).await;
    let set = FixedSet::from_endpoints(servers.iter().map(|s| s.endpoint()));
    let pool = PoolSet::with_options(
        set,
        TcpConnector::new(),
        limited(2, Duration::from_secs(30)),
    );

    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = pool.checkout().await.expect("checkout");
        round_trip(&mut conn, b"x").await;
        held.push(conn);
    }
    assert!(pool.stats().iter().all(|s| s.active == 2));

    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut conn = pool.checkout().await.expect("checkout after waiting");
            round_trip(&mut conn, b"waited").await;
            conn.endpoint().clone()
        })
    };
    let mut waiting = waiting;
    assert!(still_pending(&mut waiting).await, "it must wait");
    assert!(
        pool.stats().iter().all(|s| s.active == 2),
        "max active held"
    );

    let returned = held.pop().expect("held");
    let endpoint = returned.endpoint().clone();
    drop(returned);
    let got = within("the waiting checkout", waiting).await.expect("task");
    assert_eq!(got, endpoint, "it took the slot that was freed");
    assert_eq!(
        servers.iter().map(|s| s.accepted()).sum::<usize>(),
        4,
        "the returned connection was reused"
    );

    // Many waiters, one return each: all served, never over the limit.
    let mut waiters = Vec::new();
    for _ in 0..6 {
        let pool = pool.clone();
        waiters.push(tokio::spawn(async move {
            let conn = pool.checkout().await.expect("checkout");
            let over = pool.stats().iter().any(|s| s.active > 2);
            drop(conn);
            over
        }));
    }
    held.clear();
    for waiter in waiters {
        assert!(!within("waiters", waiter).await.expect("task"), "over max");
    }
}

#[tokio::test]
async fn a_checkout_times_out_with_a_clear_error() {
    let server = EchoServer::start().await;
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
        limited(1, Duration::from_millis(150)),
    );
    let _held = pool.checkout().await.expect("checkout");
    match pool.checkout().await {
        Err(
            ref error @ Error::CheckoutTimeout {
                timeout,
                max_active,
                ref endpoints,
            },
        ) => {
            assert_eq!(timeout, Duration::from_millis(150));
            assert_eq!(max_active, 1);
            assert_eq!(endpoints, &[server.endpoint()]);
            let text = error.to_string();
            assert!(text.contains(&server.endpoint().to_string()), "{text}");
            assert!(text.contains("150ms"), "{text}");
        }
        other => panic!("expected a checkout timeout, got {other:?}"),
    }
    assert_eq!(pool.stats()[0].active, 1);
}

#[tokio::test]
async fn closing_fails_checkouts_and_closes_connections() {
    let server = EchoServer::start().await;
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([server.endpoint()]),
        TcpConnector::new(),
        limited(2, Duration::from_secs(30)),
    );
    let mut a = pool.checkout().await.expect("checkout");
    let mut b = pool.checkout().await.expect("checkout");
    round_trip(&mut a, b"a").await;
    round_trip(&mut b, b"b").await;
    drop(a);
    let mut waiting = {
        let pool = pool.clone();
        tokio::spawn(async move {
            // Takes the idle one, then a second checkout must wait.
            let _first = pool.checkout().await.expect("idle one");
            pool.checkout().await.map(|_| ())
        })
    };
    assert!(still_pending(&mut waiting).await);

    pool.close();
    assert!(pool.is_closed());
    let result = within("the waiter wakes", waiting).await.expect("task");
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    match pool.checkout().await {
        Err(error @ Error::Closed) => assert!(error.to_string().contains("closed")),
        other => panic!("expected closed, got {other:?}"),
    }
    assert!(pool.endpoints().is_empty());
    eventually("the waiter's connection is closed on return", || {
        server.closed() == 1
    })
    .await;
    round_trip(&mut b, b"still open while out").await;
    drop(b);
    eventually("b is closed on return", || server.closed() == 2).await;
}

#[tokio::test]
async fn an_empty_set_is_a_clear_error_until_it_fills() {
    let server = EchoServer::start().await;
    let set = FixedSet::new();
    let pool = PoolSet::new(set.clone(), TcpConnector::new());
    match pool.checkout().await {
        Err(error @ Error::NoEndpoints) => assert!(error.to_string().contains("empty")),
        other => panic!("expected no endpoints, got {other:?}"),
    }
    set.replace_endpoints([server.endpoint()]);
    eventually("the pool follows", || !pool.endpoints().is_empty()).await;
    let mut conn = pool.checkout().await.expect("checkout");
    round_trip(&mut conn, b"x").await;
}

/// A source whose publisher the test can drop, ending it.
struct Ending {
    publisher: Arc<Mutex<Option<Publisher>>>,
}

impl Source for Ending {
    fn current(&self) -> Arc<Snapshot> {
        match &*self.publisher.lock().expect("lock") {
            Some(p) => p.current(),
            None => Arc::new(Snapshot::default()),
        }
    }

    fn changes(&self) -> Changes {
        match &*self.publisher.lock().expect("lock") {
            Some(p) => p.subscribe(),
            None => Publisher::new().subscribe(),
        }
    }
}

#[tokio::test]
async fn a_pool_whose_source_ended_is_closed() {
    let server = EchoServer::start().await;
    let publisher = Publisher::new();
    let endpoint = server.endpoint();
    publisher.replace(vec![Arc::new(serversets::Entry::new(
        &endpoint.to_string(),
        endpoint.clone(),
        1.0,
        Arc::new(serversets::Member::new(endpoint.clone())),
    ))]);
    let shared = Arc::new(Mutex::new(Some(publisher)));
    let pool = PoolSet::new(
        Ending {
            publisher: Arc::clone(&shared),
        },
        TcpConnector::new(),
    );
    let mut conn = pool.checkout().await.expect("checkout");
    round_trip(&mut conn, b"x").await;
    drop(conn);

    shared.lock().expect("lock").take();
    eventually("the pool closes", || pool.is_closed()).await;
    assert!(matches!(pool.checkout().await, Err(Error::Closed)));
    eventually("its idle connection is closed", || server.closed() == 1).await;
}

#[tokio::test]
async fn connects_time_out_and_cancelled_checkouts_release_their_slot() {
    // A closure connector that never finishes for one endpoint.
    let slow: Endpoint = "127.0.0.1:9".parse().expect("endpoint");
    let connector = |endpoint: Endpoint| async move {
        if endpoint.port == 9 {
            std::future::pending::<()>().await;
        }
        Ok::<_, std::io::Error>(endpoint)
    };
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([slow.clone()]),
        connector,
        Options::new()
            .connect_timeout(Duration::from_millis(100))
            .max_active(1),
    );
    match pool.checkout().await {
        Err(error @ Error::ConnectTimeout { .. }) => {
            assert_eq!(error.endpoint(), Some(&slow));
            assert!(error.to_string().contains("127.0.0.1:9"), "{error}");
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert_eq!(pool.stats()[0].active, 0);

    // A checkout dropped while connecting gives its slot back.
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([slow.clone()]),
        connector,
        Options::new()
            .connect_timeout(Duration::from_secs(600))
            .max_active(1),
    );
    let mut checkout = Box::pin(pool.checkout());
    assert!(still_pending(&mut checkout).await, "connecting forever");
    assert_eq!(pool.stats()[0].active, 1, "the connect holds a slot");
    drop(checkout);
    assert_eq!(pool.stats()[0].active, 0);
}

#[tokio::test]
async fn any_connection_type_fits() {
    /// A "session" that remembers where it goes and how often it was used.
    #[derive(Debug)]
    struct Session {
        peer: Endpoint,
        uses: u32,
    }
    let opened = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&opened);
    let connector = move |peer: Endpoint| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, String>(Session { peer, uses: 0 })
        }
    };
    fn is_connector<C: Connector<Connection = Session>>(c: C) -> C {
        c
    }
    let pool = PoolSet::new(
        FixedSet::parse("10.0.0.1:1,10.0.0.2:2").expect("set"),
        is_connector(connector),
    );
    for _ in 0..10 {
        let mut session = pool.checkout().await.expect("checkout");
        session.uses += 1;
        assert_eq!(&session.peer, session.endpoint());
    }
    assert!(opened.load(std::sync::atomic::Ordering::SeqCst) <= 2);
    let taken = pool.checkout().await.expect("checkout").into_inner();
    assert!(taken.uses >= 1, "an idle session was reused: {taken:?}");
    assert_eq!(pool.stats().iter().map(|s| s.active).sum::<usize>(), 0);

    // A connector error is boxed and named.
    let failing = PoolSet::new(
        FixedSet::parse("10.0.0.1:1").expect("set"),
        |_: Endpoint| async { Err::<(), _>("handshake refused".to_owned()) },
    );
    let error = failing.checkout().await.expect_err("fails");
    assert_eq!(
        error.to_string(),
        "cannot connect to 10.0.0.1:1: handshake refused"
    );
}

#[test]
fn a_pool_made_outside_a_runtime_follows_its_set_once_used_in_one() {
    let set = FixedSet::new();
    let pool = PoolSet::new(set.clone(), |endpoint: Endpoint| async move {
        Ok::<_, std::io::Error>(endpoint)
    });
    set.replace_endpoints(["10.0.0.1:1".parse().expect("endpoint")]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // The change before the first checkout is picked up by the
        // follower the checkout starts.
        let _ = pool.checkout().await;
        eventually("the pool follows", || pool.endpoints().len() == 1).await;
        set.replace_endpoints(["10.0.0.2:2".parse().expect("endpoint")]);
        eventually("the pool follows again", || {
            pool.endpoints() == ["10.0.0.2:2".parse::<Endpoint>().expect("endpoint")]
        })
        .await;
        let conn = pool.checkout().await.expect("checkout");
        assert_eq!(conn.endpoint().port, 2);
    });
}
