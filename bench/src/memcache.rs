//! The memcache client (`serversets-memcache`) against real memcached on loopback:
//! throughput and latency beside the raw `async-memcached` client it is
//! built on, driven the same way; behaviour through a stalled server
//! (SIGSTOP / SIGCONT) and a killed and restarted one; OS threads.
//!
//! Every value read is checked against the value written for its key; a
//! wrong value is counted and shown (the target is zero).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_memcached::{AsciiProtocol, Client as RawClient};
use serversets::Endpoint;
use serversets::FixedSet;
use serversets_memcache::ring::Node;
use serversets_memcache::{KetamaRing, McSet};
use testkit::Memcached;

use crate::support::{ms, p50, p99, BoxError, Row};

const TASKS: usize = 64;
const KEYS: usize = 10_000;

fn value_of(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", i * 7919 % 10007).into_bytes()
}

fn key(i: usize) -> String {
    format!("bench:{i}")
}

/// What a timed run collected.
#[derive(Default)]
struct Run {
    ok: u64,
    errors: u64,
    wrong: u64,
    times: Vec<Duration>,
}

impl Run {
    /// Counts one get of key `i` begun at `started`: its value checked.
    fn count(&mut self, i: usize, started: Instant, got: Result<Option<&[u8]>, ()>) {
        match got {
            Ok(Some(v)) if v == value_of(i).as_slice() => self.ok += 1,
            Ok(_) => self.wrong += 1,
            Err(()) => self.errors += 1,
        }
        self.times.push(started.elapsed());
    }
}

fn merge(runs: Vec<Run>) -> Run {
    let mut all = Run::default();
    for mut r in runs {
        all.ok += r.ok;
        all.errors += r.errors;
        all.wrong += r.wrong;
        all.times.append(&mut r.times);
    }
    all
}

/// `tasks` tasks getting random keys from `cache` for `duration`.
async fn drive_set(cache: &McSet, tasks: usize, duration: Duration) -> Run {
    let until = Instant::now() + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut run = Run::default();
                let mut i = t * 104_729;
                while Instant::now() < until {
                    i = (i + 7919) % KEYS;
                    let started = Instant::now();
                    let got = cache.get(&key(i)).await;
                    run.count(i, started, got.as_ref().map(|v| v.as_deref()).map_err(drop));
                }
                run
            })
        })
        .collect();
    join(handles).await
}

/// The reference: `tasks` tasks, each with its own raw connection to
/// every server, getting the same keys, each from the server the same ring
/// picks.
async fn drive_raw(
    servers: &[&Memcached],
    tasks: usize,
    duration: Duration,
) -> Result<Run, BoxError> {
    let eps: Vec<Endpoint> = servers
        .iter()
        .map(|s| s.endpoint().parse())
        .collect::<Result<_, _>>()?;
    let ring = Arc::new(KetamaRing::new(
        eps.iter().map(|e| Node::new(e.clone(), 1.0)).collect(),
    ));
    let mut clients = Vec::new();
    for _ in 0..tasks {
        let mut mine = Vec::new();
        for server in servers {
            mine.push(RawClient::new(format!("tcp://{}", server.endpoint())).await?);
        }
        clients.push(mine);
    }
    let until = Instant::now() + duration;
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(t, mut mine)| {
            let ring = Arc::clone(&ring);
            tokio::spawn(async move {
                let mut run = Run::default();
                let mut i = t * 104_729;
                while Instant::now() < until {
                    i = (i + 7919) % KEYS;
                    let k = key(i);
                    let started = Instant::now();
                    let index = ring.pick_index(k.as_bytes()).unwrap_or(0);
                    let Some(client) = mine.get_mut(index) else {
                        run.errors += 1;
                        continue;
                    };
                    let got = client.get(&k).await;
                    let got = got
                        .as_ref()
                        .map(|v| v.as_ref().and_then(|v| v.data.as_deref()));
                    run.count(i, started, got.map_err(drop));
                }
                run
            })
        })
        .collect();
    Ok(join(handles).await)
}

/// The runs of some tasks, merged.
async fn join(handles: Vec<tokio::task::JoinHandle<Run>>) -> Run {
    let mut runs = Vec::new();
    for h in handles {
        runs.push(h.await.unwrap_or_default());
    }
    merge(runs)
}

fn rate(run: &Run, duration: Duration) -> f64 {
    (run.ok + run.errors + run.wrong) as f64 / duration.as_secs_f64()
}

fn endpoints(servers: &[Memcached]) -> Result<Vec<Endpoint>, BoxError> {
    Ok(servers
        .iter()
        .map(|s| s.endpoint().parse())
        .collect::<Result<_, _>>()?)
}

async fn seed(cache: &McSet) -> Result<(), BoxError> {
    for i in 0..KEYS {
        cache.set(&key(i), &value_of(i), 0).await?;
    }
    Ok(())
}

pub async fn run(quick: bool) -> Result<Vec<Row>, BoxError> {
    let (rounds, slice) = if quick {
        (2, Duration::from_millis(500))
    } else {
        (5, Duration::from_secs(1))
    };
    let servers: Vec<Memcached> = (0..3)
        .map(|_| Memcached::start())
        .collect::<Result<_, _>>()?;
    let set = FixedSet::from_endpoints(endpoints(&servers)?);
    let cache = McSet::builder(set.clone())
        .timeout(Duration::from_secs(1))
        .build();
    seed(&cache).await?;
    // A fourth server holds every key, for the one-server runs.
    let reference = Memcached::start()?;
    let single = McSet::new(FixedSet::from_endpoints([reference.endpoint().parse()?]));
    seed(&single).await?;
    let three: Vec<&Memcached> = servers.iter().collect();

    // Warm-up, then the four clients take turns, a slice each per round,
    // so drift and noise hit all alike; rates are the medians of the
    // rounds, latencies the percentiles of all calls.
    drive_set(&cache, TASKS, Duration::from_millis(300)).await;
    drive_raw(&[&reference], TASKS, Duration::from_millis(300)).await?;
    let mut turns: [Vec<Run>; 4] = Default::default();
    for _ in 0..rounds {
        turns[0].push(drive_set(&cache, TASKS, slice).await);
        turns[1].push(drive_raw(&[&reference], TASKS, slice).await?);
        turns[2].push(drive_set(&single, TASKS, slice).await);
        turns[3].push(drive_raw(&three, TASKS, slice).await?);
    }
    let rates = |runs: &[Run]| {
        crate::support::median(&runs.iter().map(|r| rate(r, slice)).collect::<Vec<f64>>())
    };
    let [ours3, raw1, ours1, raw3] = turns.map(|runs| {
        let r = rates(&runs);
        (r, merge(runs))
    });
    let wrong = ours3.1.wrong + ours1.1.wrong;
    let mut rows = vec![
        Row::info(
            format!("memcache get, {TASKS} tasks, 3 servers: McSet throughput"),
            ours3.0,
            "req/s",
        )
        .against(
            &format!("raw async-memcached, {TASKS} tasks with a connection each, 1 server:"),
            raw1.0,
        )
        .target("≥ 0.9x", ours3.0 >= 0.9 * raw1.0),
        Row::info(
            format!("memcache get, {TASKS} tasks, 3 servers: McSet throughput (same servers)"),
            ours3.0,
            "req/s",
        )
        .against(
            &format!(
                "raw async-memcached, {TASKS} tasks with a connection to each of the 3, same ring:"
            ),
            raw3.0,
        ),
        Row::info(
            format!("memcache get, {TASKS} tasks, 1 server: McSet throughput"),
            ours1.0,
            "req/s",
        )
        .against("raw async-memcached, same server", raw1.0),
        Row::info(
            format!("memcache get, {TASKS} tasks, 3 servers: McSet p99"),
            p99(&ours3.1.times),
            "ms",
        )
        .against("raw async-memcached, 1 server, p99", p99(&raw1.1.times))
        .target("≤ 2x", p99(&ours3.1.times) <= 2.0 * p99(&raw1.1.times)),
    ];
    // One task, one call at a time: latency.
    let mut one_ours = Vec::new();
    let mut one_raw = Vec::new();
    for _ in 0..rounds {
        one_ours.push(drive_set(&single, 1, slice).await);
        one_raw.push(drive_raw(&[&reference], 1, slice).await?);
    }
    let (one_ours, one_raw) = (merge(one_ours), merge(one_raw));
    rows.push(
        Row::info(
            "memcache get, 1 task: McSet p50",
            p50(&one_ours.times) * 1e3,
            "µs",
        )
        .against("raw async-memcached p50", p50(&one_raw.times) * 1e3)
        .target("≤ 1.1x", p50(&one_ours.times) <= 1.1 * p50(&one_raw.times)),
    );

    rows.extend(stall(&servers, &cache, quick).await?);
    drop(cache);
    rows.extend(restart(quick).await?);
    rows.extend(threads(quick).await?);
    rows.push(
        Row::info(
            "memcache: wrong values returned in all runs above",
            (wrong + WRONG.load(Ordering::Relaxed)) as f64,
            "",
        )
        .target("0", wrong + WRONG.load(Ordering::Relaxed) == 0),
    );
    Ok(rows)
}

/// Wrong values seen by the fault runs.
static WRONG: AtomicU64 = AtomicU64::new(0);

fn p99_of(times: &[Duration]) -> Duration {
    crate::support::percentile(times, 0.99)
}

/// Gets from `tasks` tasks until `stop`, recording each get's time, the
/// server of its key, and whether it succeeded (every value checked).
struct Recorder {
    samples: Mutex<Vec<(Instant, Duration, usize, bool)>>,
}

async fn record(
    cache: McSet,
    servers: Vec<Endpoint>,
    tasks: usize,
    stop: Arc<AtomicBool>,
    recorder: Arc<Recorder>,
    allow_miss: bool,
) {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (cache, servers, stop, recorder) = (
                cache.clone(),
                servers.clone(),
                stop.clone(),
                recorder.clone(),
            );
            tokio::spawn(async move {
                let mut i = t * 104_729;
                let mut local = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 7919) % KEYS;
                    let k = key(i);
                    let server = cache
                        .server_for(&k)
                        .and_then(|e| servers.iter().position(|s| *s == e))
                        .unwrap_or(usize::MAX);
                    let started = Instant::now();
                    let ok = match cache.get(&k).await {
                        Ok(Some(v)) if v == value_of(i) => true,
                        Ok(None) if allow_miss => true,
                        Ok(_) => {
                            WRONG.fetch_add(1, Ordering::Relaxed);
                            false
                        }
                        Err(_) => false,
                    };
                    local.push((started, started.elapsed(), server, ok));
                    if local.len() >= 256 {
                        if let Ok(mut s) = recorder.samples.lock() {
                            s.append(&mut local);
                        }
                    }
                }
                if let Ok(mut s) = recorder.samples.lock() {
                    s.append(&mut local);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.await;
    }
}

/// First time from `from` after which every 100 consecutive gets of
/// `server`'s keys succeeded at least 99 times.
fn recovered_after(
    samples: &[(Instant, Duration, usize, bool)],
    server: usize,
    from: Instant,
) -> Option<Duration> {
    let mut theirs: Vec<&(Instant, Duration, usize, bool)> = samples
        .iter()
        .filter(|s| s.2 == server && s.0 >= from)
        .collect();
    theirs.sort_by_key(|s| s.0);
    // The earliest start from which all later windows of 100 are >= 99 %.
    let mut last_bad: Option<usize> = None;
    for (i, w) in theirs.windows(100).enumerate() {
        if w.iter().filter(|s| s.3).count() < 99 {
            last_bad = Some(i);
        }
    }
    let start = match last_bad {
        Some(i) => i + 1,
        None => 0,
    };
    theirs
        .get(start)
        .map(|s| (s.0 + s.1).saturating_duration_since(from))
}

async fn stall(servers: &[Memcached], cache: &McSet, quick: bool) -> Result<Vec<Row>, BoxError> {
    let stall_for = Duration::from_secs(if quick { 2 } else { 3 });
    let eps = endpoints(servers)?;
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = Arc::new(Recorder {
        samples: Mutex::new(Vec::new()),
    });
    let load = tokio::spawn(record(
        cache.clone(),
        eps.clone(),
        TASKS,
        stop.clone(),
        recorder.clone(),
        false,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = Instant::now();
    servers[1].pause()?;
    tokio::time::sleep(stall_for).await;
    servers[1].resume()?;
    let resumed = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await?;
    let samples = std::mem::take(&mut *recorder.samples.lock().map_err(|_| "poisoned")?);
    let healthy = |from: Instant, to: Instant| -> Vec<Duration> {
        samples
            .iter()
            .filter(|s| s.2 != 1 && s.0 >= from && s.0 < to)
            .map(|s| s.1)
            .collect()
    };
    let before = healthy(paused - Duration::from_millis(1500), paused);
    let during = healthy(paused, resumed);
    let stalled: Vec<&(Instant, Duration, usize, bool)> = samples
        .iter()
        .filter(|s| s.2 == 1 && s.0 >= paused && s.0 < resumed)
        .collect();
    let slowest_failure = stalled
        .iter()
        .filter(|s| !s.3)
        .map(|s| s.1)
        .max()
        .unwrap_or_default();
    let dead_fast: Vec<Duration> = stalled
        .iter()
        .filter(|s| !s.3 && s.0 >= paused + Duration::from_millis(1500))
        .map(|s| s.1)
        .collect();
    let recovered = recovered_after(&samples, 1, resumed);
    let mut rows =
        vec![
        Row::info(
            "memcache, one of 3 servers stalled (SIGSTOP): healthy servers' p99 during the stall",
            ms(p99_of(&during)),
            "ms",
        )
        .against("their p99 before the stall", ms(p99_of(&before)))
        .target("≤ 2x", p99(&during) <= 2.0 * p99(&before).max(0.001)),
        Row::info(
            "memcache stall: slowest failure of the stalled server's keys",
            ms(slowest_failure),
            "ms",
        )
        .against("the deadline", 1000.0)
        .target("≤ deadline", slowest_failure <= Duration::from_millis(1100)),
        Row::info(
            "memcache stall: its keys' p50 once marked dead (fail fast)",
            p50(&dead_fast) * 1e3,
            "µs",
        )
        .reference_text(format!("{} failures after the first 1.5 s", dead_fast.len())),
    ];
    let recovered_ms = recovered.map_or(f64::INFINITY, ms);
    rows.push(
        Row::info(
            "memcache stall: after SIGCONT, time until ≥ 99 % of its keys' gets succeed",
            recovered_ms,
            "ms",
        )
        .reference_text(format!(
            "backoff ≤ 1 s; {} ejections, {} revivals",
            cache.accrual_stats().ejections,
            cache.accrual_stats().revivals
        ))
        .target(
            "≤ 2 s",
            recovered.is_some_and(|d| d <= Duration::from_secs(2)),
        ),
    );
    Ok(rows)
}

async fn restart(quick: bool) -> Result<Vec<Row>, BoxError> {
    let _ = quick;
    let mut servers: Vec<Memcached> = (0..3)
        .map(|_| Memcached::start())
        .collect::<Result<_, _>>()?;
    let eps = endpoints(&servers)?;
    let cache = McSet::new(FixedSet::from_endpoints(eps.clone()));
    seed(&cache).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = Arc::new(Recorder {
        samples: Mutex::new(Vec::new()),
    });
    let load = tokio::spawn(record(
        cache.clone(),
        eps.clone(),
        TASKS,
        stop.clone(),
        recorder.clone(),
        true,
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    servers[2].stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let server = tokio::task::spawn_blocking(move || {
        let r = servers[2].start_again();
        (servers, r)
    })
    .await?;
    server.1?;
    let _servers = server.0;
    let restarted = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await?;
    let samples = std::mem::take(&mut *recorder.samples.lock().map_err(|_| "poisoned")?);
    let recovered = recovered_after(&samples, 2, restarted);
    Ok(vec![Row::info(
        "memcache, a server killed and restarted on the same port: time until ≥ 99 % of its keys' gets succeed",
        recovered.map_or(f64::INFINITY, ms),
        "ms",
    )
    .reference_text(format!(
        "{} ejections, {} revivals",
        cache.accrual_stats().ejections,
        cache.accrual_stats().revivals
    ))
    .target("≤ 2 s", recovered.is_some_and(|d| d <= Duration::from_secs(2)))])
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

async fn threads(quick: bool) -> Result<Vec<Row>, BoxError> {
    let servers: Vec<Memcached> = (0..30)
        .map(|_| Memcached::start())
        .collect::<Result<_, _>>()?;
    let before = thread_count();
    let cache = McSet::new(FixedSet::from_endpoints(endpoints(&servers)?));
    seed(&cache).await?;
    let run = drive_set(
        &cache,
        TASKS,
        Duration::from_secs(if quick { 1 } else { 2 }),
    )
    .await;
    let after = thread_count();
    if run.wrong > 0 {
        WRONG.fetch_add(run.wrong, Ordering::Relaxed);
    }
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    Ok(vec![Row::info(
        "memcache, 30 servers under load (64 tasks): OS threads added",
        after.saturating_sub(before) as f64,
        "",
    )
    .reference_text(format!(
        "runtime workers {workers}; the previous client: 3 per server + up to 512 blocking"
    ))
    .target(
        "≤ the runtime's workers",
        after.saturating_sub(before) <= workers,
    )])
}
