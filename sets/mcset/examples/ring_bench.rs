//! Ketama ring micro-benchmark.
//!
//! ```text
//! cargo run --release -p mcset --example ring_bench
//! ```
//!
//! Prints the mean time of one `pick` on a 100-server ring (random keys)
//! and the mean time to build a 1000-server ring.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcset::ring::{key_hash, KetamaRing, Node};
use serversets::Endpoint;

/// Servers on the ring that `pick` is timed on.
const PICK_SERVERS: usize = 100;
/// Distinct keys picked (cycled through).
const PICK_KEYS: usize = 100_000;
/// Picks per timed round.
const PICKS_PER_ROUND: usize = 1_000_000;
/// Timed rounds of picks.
const PICK_ROUNDS: usize = 5;

/// Servers on the rings whose construction is timed.
const BUILD_SERVERS: usize = 1000;
/// Timed builds.
const BUILDS: usize = 20;

fn nodes(count: usize) -> Vec<Node> {
    (0..count)
        .map(|i| {
            let host = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            // Mixed weights and ports, as in a real set.
            let port = if i % 3 == 0 { 11211 } else { 11212 };
            Node::new(Endpoint::new(host, port), 1.0 + (i % 4) as f64)
        })
        .collect()
}

/// Random-looking memcached-style keys (xorshift64).
fn keys(count: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("user:{state:x}:profile").into_bytes()
        })
        .collect()
}

fn per(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1e9 / count as f64
}

fn main() {
    let ring = KetamaRing::new(nodes(PICK_SERVERS));
    let keys = keys(PICK_KEYS);
    println!(
        "pick: {} servers, {} points, {} distinct keys of ~{} bytes",
        ring.len(),
        ring.point_count(),
        keys.len(),
        keys.first().map_or(0, Vec::len)
    );

    // Warm up.
    let mut checksum = 0usize;
    for key in &keys {
        checksum = checksum.wrapping_add(ring.pick_index(black_box(key)).unwrap_or(0));
    }
    let mut rounds = Vec::with_capacity(PICK_ROUNDS);
    for _ in 0..PICK_ROUNDS {
        let start = Instant::now();
        for key in keys.iter().cycle().take(PICKS_PER_ROUND) {
            checksum = checksum.wrapping_add(ring.pick_index(black_box(key)).unwrap_or(0));
        }
        rounds.push(per(start.elapsed(), PICKS_PER_ROUND));
    }
    let mean = rounds.iter().sum::<f64>() / rounds.len() as f64;
    let best = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "pick: mean {mean:.1} ns per key over {} picks (best round {best:.1} ns)",
        PICK_ROUNDS * PICKS_PER_ROUND
    );

    // The MD5 part alone.
    let start = Instant::now();
    let mut hashes = 0u32;
    for key in keys.iter().cycle().take(PICKS_PER_ROUND) {
        hashes ^= key_hash(black_box(key));
    }
    println!(
        "key_hash alone: {:.1} ns per key",
        per(start.elapsed(), PICKS_PER_ROUND)
    );
    black_box(hashes);

    let nodes = nodes(BUILD_SERVERS);
    let _ = black_box(KetamaRing::new(nodes.clone())); // warm up
    let mut total = Duration::ZERO;
    let mut points = 0;
    for _ in 0..BUILDS {
        let input = nodes.clone();
        let start = Instant::now();
        let ring = KetamaRing::new(black_box(input));
        total += start.elapsed();
        points = ring.point_count();
        drop(black_box(ring));
    }
    println!(
        "build: {BUILD_SERVERS} servers ({points} points): mean {:.2} ms over {BUILDS} builds",
        total.as_secs_f64() * 1e3 / BUILDS as f64
    );
    black_box(checksum);
}
