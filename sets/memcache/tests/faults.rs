//! The memcache client under the faults a production network produces,
//! against real memcached servers: every value returned is checked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serversets::accrual::FailureAccrual;
use serversets::Endpoint;
use serversets::FixedSet;
use serversets_memcache::{CasOutcome, Error, KetamaRing, McSet};
use testkit::Memcached;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Generous bound for anything that waits on an event.
const DEADLINE: Duration = Duration::from_secs(30);

fn start(n: usize) -> Vec<Memcached> {
    (0..n)
        .map(|_| Memcached::start().expect("memcached"))
        .collect()
}

fn endpoint(server: &Memcached) -> Endpoint {
    server.endpoint().parse().expect("endpoint")
}

fn value_of(key: &str) -> Vec<u8> {
    format!("value-of-{key}-{}", key.len() * 31).into_bytes()
}

/// Seeds `n` keys with distinct values; returns them.
async fn seed(cache: &McSet, n: usize, tag: &str) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{tag}:{i}")).collect();
    for key in &keys {
        cache.set(key, &value_of(key), 0).await.expect("seed");
    }
    keys
}

/// Counts of a load run.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
    slowest_error: AtomicU64,
}

/// Gets `keys` round and round from `tasks` tasks until `stop`, checking
/// every value: a hit must be the key's own value; `allow_miss` accepts a
/// miss (a restarted, empty server).
async fn load(
    cache: McSet,
    keys: Arc<Vec<String>>,
    tasks: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    allow_miss: bool,
) {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (cache, keys, stop, tally) = (cache.clone(), keys.clone(), stop.clone(), tally.clone());
        handles.push(tokio::spawn(async move {
            let mut i = t * 7919;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i % keys.len()];
                i += 1;
                let started = Instant::now();
                match cache.get(key).await {
                    Ok(Some(value)) if value == value_of(key) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(value)) => {
                        eprintln!(
                            "WRONG VALUE for {key}: {:?}",
                            String::from_utf8_lossy(&value)
                        );
                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) if allow_miss => {
                        tally.misses.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => {
                        eprintln!("unexpected miss for {key}");
                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        let took = started.elapsed().as_micros() as u64;
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        tally.slowest_error.fetch_max(took, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for handle in handles {
        handle.await.expect("load task");
    }
}

/// A load of 16 tasks over some keys (see [`load`]), running until
/// [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    handle: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts the load and waits until it has read 500 values.
    async fn start(cache: &McSet, keys: &[String], allow_miss: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let handle = tokio::spawn(load(
            cache.clone(),
            Arc::new(keys.to_vec()),
            16,
            stop.clone(),
            tally.clone(),
            allow_miss,
        ));
        wait_until("the load to run", async || {
            tally.ok.load(Ordering::Relaxed) >= 500
        })
        .await;
        Load {
            stop,
            tally,
            handle,
        }
    }

    /// Stops the load; its counts.
    async fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("load");
        self.tally
    }
}

/// The keys `server` holds now.
fn keys_of(cache: &McSet, keys: &[String], server: &Endpoint) -> Vec<String> {
    keys.iter()
        .filter(|k| cache.server_for(k).as_ref() == Some(server))
        .cloned()
        .collect()
}

/// Success rate of one round of gets over `keys` (every value checked:
/// returns the number of wrong values too).
async fn round(cache: &McSet, keys: &[String], allow_miss: bool) -> (usize, usize) {
    let mut ok = 0;
    let mut wrong = 0;
    for key in keys {
        match cache.get(key).await {
            Ok(Some(v)) if v == value_of(key) => ok += 1,
            Ok(None) if allow_miss => ok += 1,
            Ok(_) => wrong += 1,
            Err(_) => {}
        }
    }
    (ok, wrong)
}

/// Waits until at least 99 of `keys` (100) succeed in one round, checking
/// that no round returns a wrong value.
async fn wait_recovered(cache: &McSet, keys: &[String], allow_miss: bool, what: &str) {
    wait_until(what, async || {
        let (ok, wrong) = round(cache, keys, allow_miss).await;
        assert_eq!(wrong, 0, "wrong values while waiting for {what}");
        ok * 100 >= keys.len() * 99
    })
    .await;
}

async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut done: F) {
    let deadline = Instant::now() + DEADLINE;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_never_yields_another_keys_value_and_recovers() {
    let servers = start(3);
    let set = FixedSet::from_endpoints(servers.iter().map(endpoint));
    let timeout = Duration::from_millis(300);
    let cache = McSet::builder(set).timeout(timeout).build();
    let keys = seed(&cache, 3000, "stall").await;
    let stalled = endpoint(&servers[1]);
    let (theirs, others): (Vec<String>, Vec<String>) = keys
        .iter()
        .cloned()
        .partition(|k| cache.server_for(k).as_ref() == Some(&stalled));
    assert!(
        theirs.len() > 500,
        "{} keys on the stalled server",
        theirs.len()
    );

    let load = Load::start(&cache, &keys, false).await;
    servers[1].pause().expect("SIGSTOP");
    // Longer than the deadline, so requests time out on it.
    let stall_until = Instant::now() + Duration::from_secs(2);
    wait_until("the stalled server to be marked dead", async || {
        cache.accrual_stats().ejections >= 1
    })
    .await;
    // While it is dead its keys fail at once; the others keep working.
    let started = Instant::now();
    match cache.get(&theirs[0]).await {
        Err(Error::Dead { server, .. }) => assert_eq!(server, stalled),
        other => panic!("expected the stalled server marked dead, got {other:?}"),
    }
    assert!(started.elapsed() <= Duration::from_millis(100));
    // A multi-get touching it fails, naming it, within the deadline.
    let started = Instant::now();
    let some: Vec<&str> = theirs[..3]
        .iter()
        .chain(&others[..3])
        .map(String::as_str)
        .collect();
    match cache.get_multi(&some).await {
        Err(error) => assert_eq!(error.server(), Some(&stalled), "{error}"),
        Ok(found) => panic!("a multi-get over a stalled server returned {found:?}"),
    }
    assert!(started.elapsed() <= timeout + Duration::from_millis(200));
    let healthy: Vec<&str> = others[..100].iter().map(String::as_str).collect();
    let found = cache
        .get_multi(&healthy)
        .await
        .expect("multi-get of healthy keys");
    assert_eq!(found.len(), 100);
    for key in &healthy {
        assert_eq!(found[*key], value_of(key), "{key}");
    }
    let (ok, wrong) = round(&cache, &others[..200], false).await;
    assert_eq!((ok, wrong), (200, 0), "healthy servers during the stall");
    tokio::time::sleep(stall_until.saturating_duration_since(Instant::now())).await;
    servers[1].resume().expect("SIGCONT");
    let resumed = Instant::now();

    // Back within the backoff (at most 1 s) plus a probe; generous bound.
    wait_recovered(
        &cache,
        &theirs[..100],
        false,
        "the stalled server's keys to succeed again",
    )
    .await;
    eprintln!("recovered {:?} after SIGCONT", resumed.elapsed());
    let tally = load.finish().await;
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong values returned"
    );
    assert!(tally.ok.load(Ordering::Relaxed) > 1000);
    let slowest = Duration::from_micros(tally.slowest_error.load(Ordering::Relaxed));
    assert!(
        slowest <= timeout + Duration::from_millis(500),
        "an error took {slowest:?}, beyond the deadline"
    );
    // Every key, every value, after the stall.
    let (ok, wrong) = round(&cache, &keys, false).await;
    assert_eq!((ok, wrong), (keys.len(), 0));
    assert!(cache.accrual_stats().revivals >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_server_is_used_again() {
    let mut servers = start(3);
    let set = FixedSet::from_endpoints(servers.iter().map(endpoint));
    let cache = McSet::builder(set)
        .timeout(Duration::from_millis(300))
        .build();
    let keys = seed(&cache, 2000, "kill").await;
    let victim = endpoint(&servers[2]);
    let theirs = keys_of(&cache, &keys, &victim);
    let load = Load::start(&cache, &keys, true).await;
    servers[2].stop();
    wait_until("errors on the killed server", async || {
        load.tally.errors.load(Ordering::Relaxed) > 0
    })
    .await;
    servers[2].start_again().expect("restart on the same port");
    let restarted = Instant::now();
    wait_recovered(
        &cache,
        &theirs[..100],
        true,
        "the restarted server's keys to succeed",
    )
    .await;
    eprintln!(
        "restarted server used again after {:?}",
        restarted.elapsed()
    );
    // It is empty: sets land on it again and read back.
    for key in &theirs[..50] {
        cache
            .set(key, &value_of(key), 0)
            .await
            .expect("set after restart");
    }
    let (ok, wrong) = round(&cache, &theirs[..50], false).await;
    assert_eq!((ok, wrong), (50, 0));
    let tally = load.finish().await;
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong values returned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_does_not_leave_its_reply_for_the_next() {
    let servers = start(1);
    let set = FixedSet::from_endpoints([endpoint(&servers[0])]);
    // One connection: a reused one would read the late reply.
    let cache = McSet::builder(set)
        .max_connections(1)
        .timeout(Duration::from_secs(5))
        .build();
    let keys = seed(&cache, 50, "cancel").await;
    for round_ in 0..5 {
        servers[0].pause().expect("SIGSTOP");
        // The caller gives up (drops the future) while the request is out.
        let gave_up =
            tokio::time::timeout(Duration::from_millis(100), cache.get(&keys[round_])).await;
        assert!(
            gave_up.is_err(),
            "the stalled get cannot have completed: {gave_up:?}"
        );
        servers[0].resume().expect("SIGCONT");
        // The late reply for keys[round_] must never answer another key.
        for key in &keys[round_ + 1..] {
            assert_eq!(
                cache.get(key).await.expect("get").as_deref(),
                Some(value_of(key).as_slice()),
                "{key}"
            );
        }
    }
    // Cancellation says nothing about the server: never marked dead.
    assert_eq!(cache.accrual_stats().ejections, 0);
}

/// A fake memcached on loopback that answers each request line with
/// `reply(line)` (raw bytes) and then closes the connection if `close`.
async fn fake_server<F>(reply: F) -> (Endpoint, Arc<AtomicU64>)
where
    F: Fn(&str) -> (Vec<u8>, bool) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicU64::new(0));
    let reply = Arc::new(reply);
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = reply.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let (bytes, close) = reply(&line);
                    if write.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (Endpoint::new("127.0.0.1", port), connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_short_or_for_another_key_is_an_error_not_a_value() {
    // Closes the connection in the middle of the value.
    let (cut, _) = fake_server(|_| (b"VA 10 kk1\r\nhello".to_vec(), true)).await;
    let cache = McSet::builder(FixedSet::from_endpoints([cut.clone()]))
        .timeout(Duration::from_secs(2))
        .build();
    for _ in 0..3 {
        match cache.get("k1").await {
            Err(Error::Memcache { server, .. }) => assert_eq!(server, cut),
            other => panic!("a cut reply must be an error, got {other:?}"),
        }
    }

    // Answers every get with another key's value.
    let (liar, connections) = fake_server(|line| {
        if line.starts_with("mg ") {
            (b"VA 5 kother\r\nWRONG\r\n".to_vec(), false)
        } else {
            (b"ERROR\r\n".to_vec(), false)
        }
    })
    .await;
    let cache = McSet::builder(FixedSet::from_endpoints([liar.clone()]))
        .max_connections(1)
        .failure_accrual(FailureAccrual::disabled())
        .build();
    for i in 0..3 {
        match cache.get("mine").await {
            Err(Error::Mismatch {
                server,
                expected,
                got,
            }) => {
                assert_eq!(server, liar);
                assert_eq!((expected.as_str(), got.as_str()), ("mine", "other"));
            }
            other => panic!("a reply for another key must be an error, got {other:?}"),
        }
        // Each mismatch closed its connection: a new one every time.
        assert_eq!(connections.load(Ordering::SeqCst), i + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_rehashes_a_dead_servers_keys_and_it_comes_back() {
    let mut servers = start(4);
    let all: Vec<Endpoint> = servers.iter().map(endpoint).collect();
    let cache = McSet::builder(FixedSet::from_endpoints(all.clone()))
        .timeout(Duration::from_millis(300))
        .eject_failed_hosts(true)
        .failure_accrual(
            FailureAccrual::new()
                .consecutive_failures(3)
                .backoff(Duration::from_millis(200), Duration::from_millis(400)),
        )
        .build();
    let keys = seed(&cache, 1000, "eject").await;
    let dead = all[3].clone();
    servers[3].stop();
    // Its keys fail until it is marked dead and leaves the ring.
    wait_until("the dead server to leave the ring", async || {
        for key in keys.iter().take(200) {
            let _ = cache.get(key).await;
        }
        !cache.servers().contains(&dead)
    })
    .await;
    // The ring without it is the ring built without it.
    let without = KetamaRing::new(
        all[..3]
            .iter()
            .map(|e| serversets_memcache::ring::Node::new(e.clone(), 1.0))
            .collect(),
    );
    for key in &keys {
        assert_eq!(
            cache.server_for(key).as_ref(),
            without.pick(key.as_bytes()).map(|n| &n.endpoint),
            "{key}"
        );
    }
    // Its keys now work on the others (misses: they lived on the dead one).
    let mut stored = HashMap::new();
    for key in keys.iter().take(300) {
        let value = cache.get(key).await.expect("get while ejected");
        if let Some(value) = value {
            assert_eq!(value, value_of(key));
        } else {
            cache
                .set(key, &value_of(key), 0)
                .await
                .expect("set while ejected");
            stored.insert(key.clone(), ());
        }
    }
    assert!(!stored.is_empty());
    assert!(cache.accrual_stats().ejections >= 1);

    // Restarted: after its backoff a probe brings it back into the ring.
    servers[3].start_again().expect("restart");
    wait_until("the server to re-enter the ring", async || {
        for key in keys.iter().take(200) {
            let _ = cache.get(key).await;
        }
        cache.servers().contains(&dead)
    })
    .await;
    assert!(cache.accrual_stats().revivals >= 1);
    assert_eq!(cache.servers().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_values_cas_and_counters() {
    let servers = start(2);
    let cache = McSet::new(FixedSet::from_endpoints(servers.iter().map(endpoint)));
    // Values up to memcached's item size (1 MB default, item header included).
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    cache.set("big", &big, 0).await.expect("set 1 MB");
    assert_eq!(
        cache.get("big").await.expect("get").as_deref(),
        Some(big.as_slice())
    );
    let huge = vec![0u8; serversets_memcache::DEFAULT_MAX_VALUE_LEN + 1];
    assert!(matches!(
        cache.set("huge", &huge, 0).await,
        Err(Error::ValueTooLarge { .. })
    ));

    // gets + cas.
    cache.set("c", b"1", 0).await.expect("set");
    let (value, token) = cache.gets("c").await.expect("gets").expect("present");
    assert_eq!(value, b"1");
    assert_eq!(
        cache.cas("c", b"2", 0, token).await.expect("cas"),
        CasOutcome::Stored
    );
    assert_eq!(
        cache.cas("c", b"3", 0, token).await.expect("cas"),
        CasOutcome::Changed
    );
    assert_eq!(
        cache.get("c").await.expect("get").as_deref(),
        Some(&b"2"[..])
    );
    cache.delete("c").await.expect("delete");
    assert_eq!(
        cache.cas("c", b"4", 0, token).await.expect("cas"),
        CasOutcome::NotFound
    );
    assert_eq!(cache.gets("c").await.expect("gets"), None);

    // Counters.
    assert_eq!(cache.increment("n", 1).await.expect("incr"), None);
    assert!(cache.add("n", b"10", 0).await.expect("add"));
    assert_eq!(cache.increment("n", 5).await.expect("incr"), Some(15));
    assert_eq!(cache.decrement("n", 20).await.expect("decr"), Some(0));
    cache.set("text", b"abc", 0).await.expect("set");
    assert!(matches!(
        cache.increment("text", 1).await,
        Err(Error::Memcache { .. })
    ));
    // The connection that got the error line still gives right answers.
    assert_eq!(
        cache.get("text").await.expect("get").as_deref(),
        Some(&b"abc"[..])
    );
}

#[tokio::test(flavor = "current_thread")]
async fn thirty_servers_add_no_threads() {
    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
    }
    let servers = start(30);
    let before = threads();
    let cache = McSet::new(FixedSet::from_endpoints(servers.iter().map(endpoint)));
    let keys = seed(&cache, 600, "threads").await;
    let mut calls = Vec::new();
    for key in &keys {
        calls.push(cache.get(key));
    }
    for (key, got) in keys.iter().zip(futures::future::join_all(calls).await) {
        assert_eq!(got.expect("get").as_deref(), Some(value_of(key).as_slice()));
    }
    assert_eq!(threads(), before, "threads were started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_server_fails_within_the_deadline_and_recovers() {
    let servers = start(3);
    let proxy = testkit::Proxy::start(servers[0].addr()).expect("proxy");
    let behind: Endpoint = proxy.endpoint().parse().expect("endpoint");
    let set =
        FixedSet::from_endpoints([behind.clone(), endpoint(&servers[1]), endpoint(&servers[2])]);
    let timeout = Duration::from_millis(300);
    let cache = McSet::builder(set).timeout(timeout).build();
    let keys = seed(&cache, 2000, "partition").await;
    let theirs = keys_of(&cache, &keys, &behind);
    let load = Load::start(&cache, &keys, false).await;
    // Requests and replies are black-holed: lost, not delayed.
    proxy.partition();
    wait_until("the partitioned server to be marked dead", async || {
        cache.accrual_stats().ejections >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.heal();
    wait_recovered(
        &cache,
        &theirs[..100],
        false,
        "the partitioned server's keys to succeed again",
    )
    .await;
    let tally = load.finish().await;
    assert_eq!(
        tally.wrong.load(Ordering::Relaxed),
        0,
        "wrong values returned"
    );
    let slowest = Duration::from_micros(tally.slowest_error.load(Ordering::Relaxed));
    assert!(
        slowest <= timeout + Duration::from_millis(500),
        "an error took {slowest:?}, beyond the deadline"
    );
    let (ok, wrong) = round(&cache, &keys, false).await;
    assert_eq!((ok, wrong), (keys.len(), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_writes_and_counters_leave_no_reply_behind() {
    let servers = start(1);
    let set = FixedSet::from_endpoints([endpoint(&servers[0])]);
    // One connection: a reused one would read the late reply.
    let cache = McSet::builder(set)
        .max_connections(1)
        .timeout(Duration::from_secs(5))
        .build();
    let mut counters: Vec<u64> = Vec::new();
    for i in 0..10u64 {
        let key = format!("counter:{i}");
        assert!(cache
            .add(&key, (i * 100).to_string().as_bytes(), 0)
            .await
            .expect("add"));
        counters.push(i * 100);
    }
    let connections = |server: &Memcached| -> u64 {
        server.stats().expect("stats")["total_connections"]
            .parse()
            .expect("a number")
    };
    for round_ in 0..3usize {
        let opened = connections(&servers[0]);
        servers[0].pause().expect("SIGSTOP");
        // Cancelled while out: an increment, a set and a delete.
        let victim = format!("counter:{round_}");
        let cancelled = tokio::time::timeout(Duration::from_millis(100), async {
            let _ = cache.increment(&victim, 1000).await;
        })
        .await;
        assert!(cancelled.is_err());
        servers[0].resume().expect("SIGCONT");
        // The late `1000 + n` reply must not answer these.
        for (i, expected) in counters.iter_mut().enumerate().skip(round_ + 1) {
            let got = cache
                .increment(&format!("counter:{i}"), 1)
                .await
                .expect("increment");
            *expected += 1;
            assert_eq!(got, Some(*expected), "counter:{i}");
        }
        for (what, result) in [
            ("set", cache.set("plain", b"x", 0).await.map(|()| true)),
            ("delete", cache.delete("absent-key").await.map(|d| !d)),
        ] {
            assert!(result.expect(what), "{what}");
        }
        // The cancelled request's connection was closed: a new one opened.
        assert!(
            connections(&servers[0]) > opened,
            "the connection was reused"
        );
    }
    assert_eq!(
        cache.get("plain").await.expect("get").as_deref(),
        Some(&b"x"[..])
    );
}
