//! The ketama ring (serversets-memcache): one pick on a 100-server ring, next to the MD5
//! of the key alone (which every pick computes), and a 1000-server rebuild.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serversets::Endpoint;
use serversets_memcache::ring::{key_hash, KetamaRing, Node};

use crate::support::{BoxError, Row};

/// Servers on the ring that `pick` is timed on.
const PICK_SERVERS: usize = 100;
/// Distinct keys picked (cycled through).
const PICK_KEYS: usize = 100_000;
/// Servers on the rings whose construction is timed.
const BUILD_SERVERS: usize = 1000;

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

pub fn run(quick: bool) -> Result<Vec<Row>, BoxError> {
    let (picks_per_round, rounds, builds) = if quick {
        (200_000, 3, 3)
    } else {
        (1_000_000, 7, 20)
    };
    let ring = KetamaRing::new(nodes(PICK_SERVERS));
    let keys = keys(PICK_KEYS);
    let points = ring.point_count();

    // Warm up.
    let mut checksum = 0usize;
    for key in &keys {
        checksum = checksum.wrapping_add(ring.pick_index(black_box(key)).unwrap_or(0));
    }
    // Rounds of picks and of bare MD5s alternate, so noise hits both.
    let (mut picks, mut hashes) = (Vec::new(), Vec::new());
    let mut hash_sum = 0u32;
    for _ in 0..rounds {
        let start = Instant::now();
        for key in keys.iter().cycle().take(picks_per_round) {
            checksum = checksum.wrapping_add(ring.pick_index(black_box(key)).unwrap_or(0));
        }
        picks.push(per(start.elapsed(), picks_per_round));
        let start = Instant::now();
        for key in keys.iter().cycle().take(picks_per_round) {
            hash_sum ^= key_hash(black_box(key));
        }
        hashes.push(per(start.elapsed(), picks_per_round));
    }
    black_box((checksum, hash_sum));
    let pick = crate::support::median(&picks);
    let md5 = crate::support::median(&hashes);

    let nodes = nodes(BUILD_SERVERS);
    let _ = black_box(KetamaRing::new(nodes.clone())); // warm up
    let mut times = Vec::with_capacity(builds);
    let mut build_points = 0;
    for _ in 0..builds {
        let input = nodes.clone();
        let start = Instant::now();
        let ring = KetamaRing::new(black_box(input));
        times.push(start.elapsed().as_secs_f64() * 1e3);
        build_points = ring.point_count();
        drop(black_box(ring));
    }
    let build = crate::support::median(&times);

    Ok(vec![
        Row::info(
            format!("ketama pick, {PICK_SERVERS} servers ({points} points), random keys"),
            pick,
            "ns",
        )
        .against("MD5 of the key alone", md5)
        .target("< 300 ns", pick < 300.0),
        Row::info(
            format!("ketama ring rebuild, {BUILD_SERVERS} servers ({build_points} points)"),
            build,
            "ms",
        ),
    ])
}
