//! Pool benchmarks, against real servers on loopback.
//!
//! ```sh
//! cargo run --release -p poolset --example pool_bench [-- SECONDS_PER_STRATEGY]
//! ```
//!
//! (a) checkout + return of an idle connection, one task, ns per op;
//! (b) four endpoints of unequal speed (answers after 1, 2, 4, 8 ms), 32
//!     concurrent workers: least request (this pool) versus round robin
//!     (a rotating choice over one pool per endpoint), requests served per
//!     endpoint, throughput and mean latency.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixedset::FixedSet;
use poolset::{Options, PoolSet, TcpConnector};
use serversets::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// (a): checkout + drop of an idle connection, in a loop.
async fn idle_checkout(endpoints: &[Endpoint]) -> Result<f64, Box<dyn std::error::Error>> {
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
    for _ in 0..100_000 {
        drop(pool.checkout().await?);
    }
    let rounds = 2_000_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        let conn = pool.checkout().await?;
        drop(std::hint::black_box(conn));
    }
    let elapsed = started.elapsed();
    Ok(elapsed.as_nanos() as f64 / f64::from(rounds))
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
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let options = Options {
        max_active: WORKERS,
        max_idle: WORKERS,
        checkout_timeout: Duration::from_secs(5),
        ..Options::default()
    };
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);

    // (a)
    let mut instant = Vec::new();
    for _ in 0..4 {
        instant.push(Endpoint::from(start_server(Duration::ZERO).await?));
    }
    let one = idle_checkout(&instant[..1]).await?;
    let four = idle_checkout(&instant).await?;
    println!("## Checkout + return of an idle connection (one task)\n");
    println!("| endpoints | ns per checkout + return |");
    println!("| ---: | ---: |");
    println!("| 1 | {one:.0} |");
    println!("| 4 (all tied: random tie-break) | {four:.0} |");

    // (b)
    let mut endpoints = Vec::new();
    for ms in DELAYS_MS {
        endpoints.push(Endpoint::from(
            start_server(Duration::from_millis(ms)).await?,
        ));
    }
    let run = Duration::from_secs(seconds);
    let least = load(Strategy::LeastRequest, &endpoints, run).await?;
    let robin = load(Strategy::RoundRobin, &endpoints, run).await?;

    println!(
        "\n## {WORKERS} workers, 4 endpoints answering after 1/2/4/8 ms, {seconds} s per strategy\n"
    );
    println!("| endpoint | least request: served | share | mean latency | round robin: served | share | mean latency |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let total = |o: &Outcome| o.served.iter().sum::<u64>();
    let (lt, rt) = (total(&least), total(&robin));
    for (i, ms) in DELAYS_MS.iter().enumerate() {
        let mean = |o: &Outcome| {
            if o.served[i] == 0 {
                0.0
            } else {
                o.latency_ns[i] as f64 / o.served[i] as f64 / 1e6
            }
        };
        println!(
            "| {ms} ms | {} | {:.1} % | {:.2} ms | {} | {:.1} % | {:.2} ms |",
            least.served[i],
            100.0 * least.served[i] as f64 / lt.max(1) as f64,
            mean(&least),
            robin.served[i],
            100.0 * robin.served[i] as f64 / rt.max(1) as f64,
            mean(&robin),
        );
    }
    let summary = |o: &Outcome| {
        let n = total(o);
        let rate = n as f64 / o.elapsed.as_secs_f64();
        let mean = o.latency_ns.iter().sum::<u64>() as f64 / n.max(1) as f64 / 1e6;
        (rate, mean, o.errors)
    };
    let (lr, lm, le) = summary(&least);
    let (rr, rm, re) = summary(&robin);
    println!("\n| strategy | requests/s | mean latency | errors |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| least request (poolset) | {lr:.0} | {lm:.2} ms | {le} |");
    println!("| round robin | {rr:.0} | {rm:.2} ms | {re} |");
    Ok(())
}
