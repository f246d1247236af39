//! Least-active choice, even spread under concurrent load, random ties.

mod common;

use std::collections::HashMap;

use common::{eventually, round_trip, servers, within};
use serversets::Endpoint;
use serversets::FixedSet;
use serversets_pool::{Options, PoolSet, TcpConnector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_checkout_goes_to_an_endpoint_with_the_fewest_active() {
    let servers = servers(3).await;
    let set = FixedSet::from_endpoints(servers.iter().map(|s| s.endpoint()));
    let pool = PoolSet::new(set, TcpConnector::new());

    let mut held = Vec::new();
    for step in 0..40usize {
        let before = pool.stats();
        let least = before.iter().map(|s| s.active).min().expect("endpoints");
        let conn = pool.checkout().await.expect("checkout");
        let chosen = before
            .iter()
            .find(|s| &s.endpoint == conn.endpoint())
            .expect("chosen endpoint is in the pool");
        assert_eq!(
            chosen.active, least,
            "step {step}: went to {} with {} active, but the least was {least}: {before:?}",
            chosen.endpoint, chosen.active
        );
        held.push(conn);
        // Return some, from different endpoints, so the loads differ.
        if step % 3 == 2 {
            let victim = (step * 7) % held.len();
            held.swap_remove(victim);
        }
    }

    // Explicitly: 2/2/2, then free both of one endpoint: the next two
    // checkouts must go there.
    held.clear();
    for _ in 0..6 {
        held.push(pool.checkout().await.expect("checkout"));
    }
    let counts = per_endpoint(held.iter().map(|c| c.endpoint().clone()));
    assert!(counts.values().all(|&n| n == 2), "{counts:?}");
    let freed = held[0].endpoint().clone();
    held.retain(|c| c.endpoint() != &freed);
    for _ in 0..2 {
        let conn = pool.checkout().await.expect("checkout");
        assert_eq!(conn.endpoint(), &freed);
        held.push(conn);
    }
    let next = pool.checkout().await.expect("checkout");
    let counts = per_endpoint(held.iter().map(|c| c.endpoint().clone()));
    assert!(counts.values().all(|&n| n == 2), "{counts:?}");
    drop(next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_concurrent_checkouts_spread_exactly_evenly() {
    let servers = servers(3).await;
    let set = FixedSet::from_endpoints(servers.iter().map(|s| s.endpoint()));
    let pool = PoolSet::with_options(set, TcpConnector::new(), Options::new().max_idle(32));

    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (chosen_tx, mut chosen_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let pool = pool.clone();
        let chosen_tx = chosen_tx.clone();
        let mut release_rx = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.checkout().await.expect("checkout");
            round_trip(&mut conn, format!("task {i}").as_bytes()).await;
            chosen_tx.send(conn.endpoint().clone()).expect("send");
            let _ = release_rx.wait_for(|released| *released).await;
            drop(conn);
        }));
    }
    let mut chosen = Vec::new();
    for _ in 0..60 {
        chosen.push(
            within("60 checkouts", chosen_rx.recv())
                .await
                .expect("endpoint"),
        );
    }
    let counts = per_endpoint(chosen);
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n == 20), "uneven: {counts:?}");
    for server in &servers {
        assert_eq!(server.accepted(), 20, "one connection per checkout");
    }
    assert!(pool.stats().iter().all(|s| s.active == 20));

    release_tx.send_replace(true);
    for task in tasks {
        within("task end", task).await.expect("task");
    }
    assert!(pool.stats().iter().all(|s| s.active == 0 && s.idle == 20));
    // Idle connections are reused: a second wave opens nothing new.
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(pool.checkout().await.expect("checkout"));
    }
    let counts = per_endpoint(held.iter().map(|c| c.endpoint().clone()));
    assert!(counts.values().all(|&n| n == 20), "uneven: {counts:?}");
    assert_eq!(servers.iter().map(|s| s.accepted()).sum::<usize>(), 60);
}

#[tokio::test]
async fn ties_are_broken_at_random() {
    let servers = servers(3).await;
    let set = FixedSet::from_endpoints(servers.iter().map(|s| s.endpoint()));
    let pool = PoolSet::new(set, TcpConnector::new());

    let mut chosen = Vec::new();
    for _ in 0..300 {
        // All endpoints at 0 active: a tie every time.
        let conn = pool.checkout().await.expect("checkout");
        chosen.push(conn.endpoint().clone());
    }
    let counts = per_endpoint(chosen);
    assert_eq!(counts.len(), 3, "every endpoint gets chosen: {counts:?}");
    let first = &pool.endpoints()[0];
    assert!(counts[first] < 300, "{counts:?}");
    // And each one reused its single idle connection.
    eventually("one connection per endpoint", || {
        servers.iter().all(|s| s.accepted() == 1)
    })
    .await;
}

fn per_endpoint(endpoints: impl IntoIterator<Item = Endpoint>) -> HashMap<Endpoint, usize> {
    let mut counts = HashMap::new();
    for endpoint in endpoints {
        *counts.entry(endpoint).or_insert(0) += 1;
    }
    counts
}
