//! The pool on the shared failure accrual, with an in-memory connector:
//! one probe at a time revives a dead endpoint or marks it again, and
//! connections the connector reports broken are closed without counting
//! as failures.

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, within, DEADLINE};
use serversets::Endpoint;
use serversets::FixedSet;
use serversets_pool::{Connector, EndpointStats, FailureAccrual, Options, PoolSet};
use tokio::sync::Semaphore;

/// An in-memory connection: says when it is dropped (closed), and can be
/// flagged closed by its client.
#[derive(Debug)]
struct Conn {
    endpoint: Endpoint,
    closed: Arc<AtomicBool>,
    drops: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// How connects to one endpoint go.
#[derive(Default, Clone)]
struct Behaviour {
    fail: bool,
    /// Connects wait for a permit of this semaphore first.
    gate: Option<Arc<Semaphore>>,
}

/// Connects in memory, as each endpoint's [`Behaviour`] says; counts
/// connects per endpoint and connections dropped.
#[derive(Default)]
struct Fake {
    behaviour: Mutex<HashMap<Endpoint, Behaviour>>,
    connects: Mutex<HashMap<Endpoint, usize>>,
    drops: Arc<AtomicUsize>,
}

impl Fake {
    fn set(&self, endpoint: &Endpoint, behaviour: Behaviour) {
        self.behaviour
            .lock()
            .expect("lock")
            .insert(endpoint.clone(), behaviour);
    }

    fn connects(&self, endpoint: &Endpoint) -> usize {
        self.connects
            .lock()
            .expect("lock")
            .get(endpoint)
            .copied()
            .unwrap_or(0)
    }

    fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }
}

impl Connector for Fake {
    type Connection = Conn;
    type Error = io::Error;

    async fn connect(&self, endpoint: &Endpoint) -> io::Result<Conn> {
        *self
            .connects
            .lock()
            .expect("lock")
            .entry(endpoint.clone())
            .or_default() += 1;
        let behaviour = self
            .behaviour
            .lock()
            .expect("lock")
            .get(endpoint)
            .cloned()
            .unwrap_or_default();
        if let Some(gate) = behaviour.gate {
            let _permit = gate.acquire().await.expect("gate open");
        }
        if behaviour.fail {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "down"));
        }
        Ok(Conn {
            endpoint: endpoint.clone(),
            closed: Arc::new(AtomicBool::new(false)),
            drops: Arc::clone(&self.drops),
        })
    }

    fn is_broken(&self, conn: &Conn) -> bool {
        conn.closed.load(Ordering::SeqCst)
    }
}

fn pool(
    endpoints: impl IntoIterator<Item = Endpoint>,
    failure_accrual: FailureAccrual,
) -> PoolSet<Fake> {
    PoolSet::with_options(
        FixedSet::from_endpoints(endpoints),
        Fake::default(),
        Options::new().failure_accrual(failure_accrual),
    )
}

fn stats_of(pool: &PoolSet<Fake>, endpoint: &Endpoint) -> EndpointStats {
    pool.stats()
        .into_iter()
        .find(|s| &s.endpoint == endpoint)
        .expect("endpoint in the pool")
}

/// Checks out and returns connections (every checkout must succeed) until
/// `condition` holds, failing the test after the deadline.
async fn checkout_until(pool: &PoolSet<Fake>, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        drop(pool.checkout().await.expect("checkout"));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_revives_a_dead_endpoint_and_a_failed_probe_marks_it_again() {
    let (a, b) = (Endpoint::new("a", 1), Endpoint::new("b", 1));
    let pool = pool(
        [a.clone(), b.clone()],
        FailureAccrual::new()
            .consecutive_failures(2)
            .backoff(Duration::from_millis(50), Duration::from_millis(100))
            .jitter(false),
    );
    let fake = pool.connector();
    fake.set(
        &b,
        Behaviour {
            fail: true,
            gate: None,
        },
    );

    // Two failed connects mark B dead; every checkout still succeeds (on A).
    checkout_until(&pool, "B is marked dead", || stats_of(&pool, &b).ejected).await;
    assert_eq!(fake.connects(&b), 2);
    let stats = pool.accrual_stats();
    assert_eq!((stats.ejections, stats.revivals, stats.dead), (1, 0, 1));

    // After the backoff one checkout probes B; the probe fails: dead again.
    checkout_until(&pool, "B is probed", || fake.connects(&b) == 3).await;
    assert!(stats_of(&pool, &b).ejected);
    let stats = pool.accrual_stats();
    assert_eq!((stats.ejections, stats.revivals, stats.dead), (2, 0, 1));

    // B comes back, slowly: its next probe waits at the gate.
    let gate = Arc::new(Semaphore::new(0));
    fake.set(
        &b,
        Behaviour {
            fail: false,
            gate: Some(Arc::clone(&gate)),
        },
    );
    let prober = {
        let pool = pool.clone();
        let b = b.clone();
        tokio::spawn(async move {
            loop {
                let conn = pool.checkout().await.expect("checkout");
                if conn.endpoint() == &b {
                    return conn.endpoint().clone();
                }
                drop(conn);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    eventually("the probe is under way", || fake.connects(&b) == 4).await;
    // Meanwhile B is probed by nobody else, and still dead.
    let mut held = Vec::new();
    for _ in 0..20 {
        let conn = pool.checkout().await.expect("checkout");
        assert_eq!(conn.endpoint(), &a);
        held.push(conn);
    }
    assert_eq!(fake.connects(&b), 4, "one probe at a time");
    assert!(stats_of(&pool, &b).ejected);

    // The probe connects: B is revived, and takes its share again.
    gate.add_permits(1000);
    let probed = within("the probe", prober).await.expect("prober");
    assert_eq!(probed, b);
    let stats = stats_of(&pool, &b);
    assert!(!stats.ejected, "{stats:?}");
    assert_eq!(stats.consecutive_failures, 0);
    let stats = pool.accrual_stats();
    assert_eq!((stats.ejections, stats.revivals, stats.dead), (2, 1, 0));
    let conn = pool.checkout().await.expect("checkout");
    assert_eq!(conn.endpoint(), &b, "A has 20 out, B none");
}

#[tokio::test]
async fn a_connection_reported_broken_is_closed_not_reused_and_not_a_failure() {
    let (a, b) = (Endpoint::new("a", 1), Endpoint::new("b", 1));
    // One failure would mark an endpoint dead.
    let pool = pool(
        [a.clone(), b.clone()],
        FailureAccrual::new().consecutive_failures(1).jitter(false),
    );
    let fake = pool.connector();

    // Returned flagged closed: closed, not idled, not a failure.
    for round in 1..=10 {
        let conn = pool.checkout().await.expect("checkout");
        conn.closed.store(true, Ordering::SeqCst);
        drop(conn);
        assert_eq!(fake.drops(), round, "closed on return");
        assert!(pool.stats().iter().all(|s| s.idle == 0));
    }
    assert_eq!(fake.connects(&a) + fake.connects(&b), 10, "none reused");
    assert!(pool
        .stats()
        .iter()
        .all(|s| !s.ejected && s.consecutive_failures == 0));
    assert_eq!(pool.accrual_stats().ejections, 0);

    // Flagged closed while idle: skipped (and closed) by the next checkout.
    let pool = self::pool([a.clone()], FailureAccrual::new());
    let fake = pool.connector();
    let first = pool.checkout().await.expect("checkout");
    let second = pool.checkout().await.expect("checkout");
    let first_closed = Arc::clone(&first.closed);
    drop(first);
    drop(second);
    assert_eq!(stats_of(&pool, &a).idle, 2);
    // `second` is the newest idle one, handed out first; then `first`.
    first_closed.store(true, Ordering::SeqCst);
    let x = pool.checkout().await.expect("checkout");
    assert!(!x.closed.load(Ordering::SeqCst));
    assert_eq!(x.endpoint, a, "the connection's own idea of its endpoint");
    let y = pool.checkout().await.expect("checkout");
    assert!(!y.closed.load(Ordering::SeqCst));
    assert_eq!(fake.drops(), 1, "the flagged one was closed");
    assert_eq!(fake.connects(&a), 3, "and replaced by a new one");
    assert_eq!(stats_of(&pool, &a).consecutive_failures, 0);

    // An explicit mark_broken, by contrast, is a failure.
    let mut z = x;
    z.mark_broken();
    drop(z);
    assert_eq!(stats_of(&pool, &a).consecutive_failures, 1);
    drop(y);
}

#[tokio::test]
async fn clear_idle_closes_every_idle_connection() {
    let (a, b) = (Endpoint::new("a", 1), Endpoint::new("b", 1));
    let pool = pool([a.clone(), b.clone()], FailureAccrual::new());
    let fake = pool.connector();
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(pool.checkout().await.expect("checkout"));
    }
    let kept = held.pop().expect("one");
    drop(held);
    assert_eq!(pool.stats().iter().map(|s| s.idle).sum::<usize>(), 5);
    assert_eq!(fake.drops(), 0);

    pool.clear_idle();
    assert!(pool.stats().iter().all(|s| s.idle == 0));
    assert_eq!(fake.drops(), 5);
    // Checked-out connections are not affected, and come back as usual.
    let endpoint = kept.endpoint().clone();
    drop(kept);
    assert_eq!(stats_of(&pool, &endpoint).idle, 1);
    assert_eq!(fake.drops(), 5);
    // Not failures.
    assert!(pool.stats().iter().all(|s| s.consecutive_failures == 0));
}

#[tokio::test]
async fn a_checkout_waiting_at_max_active_wakes_when_a_dead_endpoint_may_be_probed() {
    let (a, b) = (Endpoint::new("a", 1), Endpoint::new("b", 1));
    let pool = PoolSet::with_options(
        FixedSet::from_endpoints([a.clone(), b.clone()]),
        Fake::default(),
        Options::new()
            .max_active(1)
            // Far longer than the test: only B's backoff can end the wait.
            .checkout_timeout(Duration::from_secs(600))
            .failure_accrual(
                FailureAccrual::new()
                    .consecutive_failures(1)
                    .backoff(Duration::from_millis(100), Duration::from_millis(100))
                    .jitter(false),
            ),
    );
    let fake = pool.connector();
    fake.set(
        &b,
        Behaviour {
            fail: true,
            gate: None,
        },
    );
    checkout_until(&pool, "B is marked dead", || stats_of(&pool, &b).ejected).await;
    fake.set(&b, Behaviour::default());

    // A is at its limit and B dead: the checkout waits for B's backoff,
    // then probes it.
    let held = pool.checkout().await.expect("checkout");
    assert_eq!(held.endpoint(), &a);
    let conn = within("the checkout wakes after B's backoff", pool.checkout())
        .await
        .expect("checkout");
    assert_eq!(conn.endpoint(), &b);
    assert_eq!(pool.accrual_stats().revivals, 1);
}
