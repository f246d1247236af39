//! The watch's read-ahead of joined members: on a children notification it
//! reads the member ZooKeeper's sequential naming says a join created,
//! before the listing. Checked here: the server behaviour it relies on, that
//! a join is published from it, and that deltas stay exact under churn that
//! makes the guesses miss (leaves, other children, bad data).

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::*;
use serversets::{codec, WatchEngine};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use zookeeper_client as zk;

/// The watch's debug events of interest, as (path, message).
static EVENTS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// How many of the events of the watch of `path` say `what`.
fn events(path: &str, what: &str) -> usize {
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, m)| p == path && m.contains(what))
        .count()
}

/// How many times the watch of `path` published members read ahead of a
/// listing.
fn read_aheads(path: &str) -> usize {
    events(path, "before the listing")
}

/// Records the watch's debug events (tests run in parallel, each on its
/// own path).
struct EventRecorder;

impl<S: tracing::Subscriber> Layer<S> for EventRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let (mut message, mut path) = (String::new(), String::new());
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| match field.name() {
                "message" => message = format!("{value:?}"),
                "path" => path = format!("{value:?}"),
                _ => {}
            },
        );
        EVENTS.lock().unwrap().push((path, message));
    }
}

/// Waits until the watch of `path` has listed its children more than
/// `before` times.
async fn listed_after(path: &str, before: usize) {
    within("the watch to list again", async {
        while events(path, "children listed") <= before {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await
}

fn count_read_aheads() {
    let _ = tracing_subscriber::registry()
        .with(
            EventRecorder.with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("serversets::zk::watch")
                    && *m.level() == tracing::Level::DEBUG
            })),
        )
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_children_are_numbered_by_one_counter() {
    count_read_aheads();
    let server = testkit::ZooKeeper::start().expect("start ZooKeeper");
    let raw = raw(&server.connect_string()).await;
    let dir = "/naming";
    mkdir(&raw, dir).await;
    let number = |name: &str| name.rsplit('_').next()?.parse::<u64>().ok();
    // What the read-ahead relies on: whatever else happened (leaves, other
    // sequential children), the next join is numbered one or two past the
    // highest number listed so far.
    let mut highest = None::<u64>;
    let mut live = Vec::new();
    for round in 0..12u64 {
        let created = raw_member(&raw, dir, b"{}").await;
        let created_number = number(&created).unwrap();
        if let Some(highest) = highest {
            assert!(
                (highest + 1..=highest + 2).contains(&created_number),
                "round {round}: {created} after highest {highest}"
            );
        }
        live.push(created);
        match round % 4 {
            0 => {}
            1 => {
                // The newest leaves: it no longer shows the highest number.
                raw.delete(&live.pop().unwrap(), None).await.unwrap();
            }
            2 => {
                raw.delete(&live.remove(0), None).await.unwrap();
            }
            _ => {
                raw.create(
                    &format!("{dir}/other_"),
                    b"",
                    &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
                )
                .await
                .unwrap();
            }
        }
        let listed = raw.list_children(dir).await.unwrap();
        let listed_max = listed.iter().filter_map(|name| number(name)).max();
        highest = highest.max(listed_max).max(Some(created_number));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_is_published_from_the_read_ahead() {
    count_read_aheads();
    let server = testkit::ZooKeeper::start().expect("start ZooKeeper");
    let connect = server.connect_string();
    let client = client_on(&connect, WatchEngine::OneShot).await;
    let other = raw(&connect).await;
    let dir = "/discovery/test/read-ahead";
    mkdir(&other, dir).await;
    for port in 1..=3 {
        raw_member(&other, dir, &codec::encode(&member(port))).await;
    }
    let watch = client.watch(&path(dir)).await.unwrap();
    assert_eq!(ports(&watch.current()), [1, 2, 3]);
    let mut changes = watch.changes();
    for port in 4..=6 {
        // Joins one at a time, each once the watch is idle again (it lists
        // right after publishing a join).
        let before = read_aheads(dir);
        let listings = events(dir, "children listed");
        let created = raw_member(&other, dir, &codec::encode(&member(port))).await;
        let change = within("the join", changes.next()).await.unwrap();
        assert_eq!(change.added.len(), 1);
        assert_eq!(
            change.added[0].name,
            created.rsplit('/').next().unwrap(),
            "the created member"
        );
        assert!(change.removed.is_empty());
        assert_eq!(
            read_aheads(dir),
            before + 1,
            "published from the read-ahead, once"
        );
        listed_after(dir, listings).await;
    }
    assert_eq!(ports(&watch.current()), [1, 2, 3, 4, 5, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_stay_exact_under_churn() {
    count_read_aheads();
    let server = testkit::ZooKeeper::start().expect("start ZooKeeper");
    let connect = server.connect_string();
    let client = client_on(&connect, WatchEngine::OneShot).await;
    let writer = raw(&connect).await;
    let dir = "/discovery/test/churn";
    mkdir(&writer, dir).await;
    let watch = client.watch(&path(dir)).await.unwrap();
    let mut changes = watch.changes();

    // Follow the changes while the writer churns: each delta must lead
    // from the previous snapshot to the new one.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(BTreeSet::new());
    let follower = tokio::spawn(async move {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        while let Some(change) = changes.next().await {
            for entry in &change.removed {
                assert!(seen.remove(&entry.name), "removed unknown {}", entry.name);
            }
            for entry in &change.added {
                assert!(
                    seen.insert(entry.name.clone()),
                    "added twice {}",
                    entry.name
                );
            }
            let now: BTreeSet<String> = change.snapshot.iter().map(|e| e.name.clone()).collect();
            assert_eq!(seen, now, "the delta leads to the snapshot");
            progress_tx.send_replace(seen.clone());
        }
    });

    // A deterministic mix: joins, leaves, replacements, bad members and
    // other sequential children, some back to back.
    let mut live: Vec<String> = Vec::new();
    let mut state = 0x2545_f491_u32;
    for step in 0..300u32 {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        match state % 6 {
            0 | 1 => {
                live.push(raw_member(&writer, dir, &codec::encode(&member(step as u16))).await)
            }
            2 if !live.is_empty() => {
                let victim = live.remove(state as usize % live.len());
                writer.delete(&victim, None).await.unwrap();
            }
            3 if !live.is_empty() => {
                let victim = live.remove(0);
                writer.delete(&victim, None).await.unwrap();
                live.push(raw_member(&writer, dir, &codec::encode(&member(step as u16))).await);
            }
            4 => {
                raw_member(&writer, dir, b"{not json").await;
            }
            _ => {
                writer
                    .create(
                        &format!("{dir}/other_"),
                        b"",
                        &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
                    )
                    .await
                    .unwrap();
            }
        }
    }
    let want = valid_members(&writer, dir).await;
    assert_eq!(want.len(), live.len());
    let converged = within("the follower to reach the churned set", async {
        loop {
            if *progress.borrow_and_update() == want {
                return true;
            }
            if progress.changed().await.is_err() {
                return false;
            }
        }
    })
    .await;
    if !converged {
        // The follower stopped: show its failed assertion.
        follower.await.unwrap();
        panic!("the change stream ended");
    }
    follower.abort();
    let names: BTreeSet<String> = watch.current().iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, want);
}
