//! serversets-pool: checkout and return of an idle connection, next to a bare
//! mutex-guarded idle list doing the same pop and push; and four endpoints
//! of unequal speed (answers after 1, 2, 4, 8 ms) under 32 concurrent
//! workers, least request (this pool) versus round robin (a rotating
//! choice over one pool per endpoint).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serversets::Endpoint;
use serversets::FixedSet;
use serversets_pool::{Options, PoolSet, TcpConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{BoxError, Row};

const REQUEST: &[u8; 8] = b"request\n";
const WORKERS: usize = 32;
const DELAYS_MS: [u64; 4] = [1, 2, 4, 8];

/// A server answering each 8-byte request with 8 bytes after `delay`.
async fn start_server(delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut buf = [0u8; 8];
                while stream.read_exact(&mut buf).await.is_ok() {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if stream.write_all(b"response").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn call(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(REQUEST).await?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).await?;
    Ok(())
}

/// Checkout + drop of an idle connection, in a loop: ns per op.
async fn idle_checkout(endpoints: &[Endpoint], rounds: u32) -> Result<f64, BoxError> {
    let pool = PoolSet::new(
        FixedSet::from_endpoints(endpoints.iter().cloned()),
        TcpConnector::new(),
    );
    // One idle connection per endpoint.
    let mut warm = Vec::new();
    for _ in endpoints {
        warm.push(pool.checkout().await?);
    }
    drop(warm);
    for _ in 0..rounds / 20 {
        drop(pool.checkout().await?);
    }
    let started = Instant::now();
    for _ in 0..rounds {
        let conn = pool.checkout().await?;
        drop(std::hint::black_box(conn));
    }
    let elapsed = started.elapsed();
    Ok(elapsed.as_nanos() as f64 / f64::from(rounds))
}

/// The reference: a bare idle list behind a mutex, pop and push of one
/// connection, in a loop: ns per op.
async fn bare_idle_list(endpoint: &Endpoint, rounds: u32) -> Result<f64, BoxError> {
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let idle = Mutex::new(vec![stream]);
    let cycle = || -> Result<(), BoxError> {
        let conn = idle
            .lock()
            .map_err(|_| "poisoned")?
            .pop()
            .ok_or("no idle connection")?;
        let conn = std::hint::black_box(conn);
        idle.lock().map_err(|_| "poisoned")?.push(conn);
        Ok(())
    };
    for _ in 0..rounds / 20 {
        cycle()?;
    }
    let started = Instant::now();
    for _ in 0..rounds {
        cycle()?;
    }
    Ok(started.elapsed().as_nanos() as f64 / f64::from(rounds))
}

#[derive(Default)]
struct Tally {
    served: [AtomicU64; 4],
    latency_ns: [AtomicU64; 4],
    errors: AtomicU64,
}

struct Outcome {
    served: [u64; 4],
    latency_ns: [u64; 4],
    errors: u64,
    elapsed: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    LeastRequest,
    RoundRobin,
}

/// (b): WORKERS workers sending requests for `run` with one strategy.
async fn load(
    strategy: Strategy,
    endpoints: &[Endpoint],
    run: Duration,
) -> Result<Outcome, BoxError> {
    let options = Options::new()
        .max_active(WORKERS)
        .max_idle(WORKERS)
        .checkout_timeout(Duration::from_secs(5));
    let least = PoolSet::with_options(
        FixedSet::from_endpoints(endpoints.iter().cloned()),
        TcpConnector::new(),
        options.clone(),
    );
    let single: Vec<_> = endpoints
        .iter()
        .map(|e| {
            PoolSet::with_options(
                FixedSet::from_endpoints([e.clone()]),
                TcpConnector::new(),
                options.clone(),
            )
        })
        .collect();
    let index_of = Arc::new(endpoints.to_vec());
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    let started = Instant::now();
    for _ in 0..WORKERS {
        let (least, single) = (least.clone(), single.clone());
        let (tally, stop, next, index_of) = (
            Arc::clone(&tally),
            Arc::clone(&stop),
            Arc::clone(&next),
            Arc::clone(&index_of),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let begun = Instant::now();
                let checkout = match strategy {
                    Strategy::LeastRequest => least.checkout().await,
                    Strategy::RoundRobin => {
                        let turn = next.fetch_add(1, Ordering::Relaxed) % single.len();
                        single[turn].checkout().await
                    }
                };
                let mut conn = match checkout {
                    Ok(conn) => conn,
                    Err(_) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let Some(i) = index_of.iter().position(|e| e == conn.endpoint()) else {
                    continue;
                };
                if call(&mut conn).await.is_err() {
                    conn.mark_broken();
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                drop(conn);
                let took = u64::try_from(begun.elapsed().as_nanos()).unwrap_or(u64::MAX);
                tally.served[i].fetch_add(1, Ordering::Relaxed);
                tally.latency_ns[i].fetch_add(took, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(run).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await?;
    }
    let elapsed = started.elapsed();
    Ok(Outcome {
        served: std::array::from_fn(|i| tally.served[i].load(Ordering::Relaxed)),
        latency_ns: std::array::from_fn(|i| tally.latency_ns[i].load(Ordering::Relaxed)),
        errors: tally.errors.load(Ordering::Relaxed),
        elapsed,
    })
}

pub async fn run(quick: bool) -> Result<Vec<Row>, BoxError> {
    let (rounds, seconds) = if quick { (200_000, 1) } else { (2_000_000, 4) };

    let mut instant = Vec::new();
    for _ in 0..4 {
        instant.push(Endpoint::from(start_server(Duration::ZERO).await?));
    }
    // Alternate the three, best of three each, so noise hits all alike.
    let (mut one, mut four, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        bare.push(bare_idle_list(&instant[0], rounds).await?);
        one.push(idle_checkout(&instant[..1], rounds).await?);
        four.push(idle_checkout(&instant, rounds).await?);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (one, four, bare) = (best(&one), best(&four), best(&bare));

    let mut endpoints = Vec::new();
    for ms in DELAYS_MS {
        endpoints.push(Endpoint::from(
            start_server(Duration::from_millis(ms)).await?,
        ));
    }
    let run = Duration::from_secs(seconds);
    let least = load(Strategy::LeastRequest, &endpoints, run).await?;
    let robin = load(Strategy::RoundRobin, &endpoints, run).await?;
    let summary = |o: &Outcome| {
        let n = o.served.iter().sum::<u64>();
        let rate = n as f64 / o.elapsed.as_secs_f64();
        let mean = o.latency_ns.iter().sum::<u64>() as f64 / n.max(1) as f64 / 1e6;
        let shares: Vec<String> = o
            .served
            .iter()
            .map(|s| format!("{:.0}", 100.0 * *s as f64 / n.max(1) as f64))
            .collect();
        (rate, mean, shares.join("/"), o.errors)
    };
    let (lr, lm, ls, le) = summary(&least);
    let (rr, rm, rs, re) = summary(&robin);
    if le + re > 0 {
        return Err(format!("load test errors: least request {le}, round robin {re}").into());
    }

    Ok(vec![
        Row::info("serversets-pool checkout + return of an idle connection, 1 endpoint", one, "ns")
            .against("bare mutex-guarded idle list", bare)
            .target("< 1 µs", one < 1000.0),
        Row::info(
            "serversets-pool checkout + return of an idle connection, 4 tied endpoints (random tie-break)",
            four,
            "ns",
        )
        .against("bare mutex-guarded idle list", bare)
        .target("< 1 µs", four < 1000.0),
        Row::info(
            format!("{WORKERS} workers, 4 endpoints answering after 1/2/4/8 ms, {seconds} s: least request throughput"),
            lr,
            "req/s",
        )
        .against("round robin", rr)
        .figure_text(format!("{lr:.0} req/s, {lm:.2} ms mean, shares {ls} %"))
        .reference_text(format!("round robin: {rr:.0} req/s, {rm:.2} ms mean, shares {rs} %")),
    ])
}
