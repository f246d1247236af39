//! Our ketama ring against the real thing: pylibmc (libmemcached's weighted
//! ketama, behavior `ketama_weighted`) storing keys on real memcached
//! servers, each server then asked which keys it holds.
//!
//! Needs Debian's `python3-pylibmc` and `memcached` (installed on demand
//! with apt-get). Skipped, with a message, only where `python3-pylibmc`
//! cannot be installed.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serversets::Endpoint;
use serversets_memcache::ring::{Compatibility, KetamaRing, Node};
use testkit::Memcached;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pylibmc_ring.py");
const KEYS: usize = 1000;

/// The Python interpreter that has pylibmc, or `None` (after printing why)
/// when python3-pylibmc cannot be installed here.
fn python() -> Option<&'static str> {
    if let Err(err) = testkit::ensure_installed(&["python3-pylibmc"]) {
        eprintln!(
            "SKIPPED: python3-pylibmc cannot be installed on this machine ({err}); \
             the ring was not compared with pylibmc"
        );
        return None;
    }
    // Debian's package is for Debian's interpreter, not a pyenv or venv one.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let status = Command::new(python)
        .args(["-c", "import pylibmc"])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "python3-pylibmc is installed but {python} cannot import pylibmc"
    );
    Some(python)
}

/// 1000 distinct pseudo-random memcached keys: 1 to 40 printable ASCII
/// characters, no whitespace.
fn keys(seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    while keys.len() < KEYS {
        let len = 1 + (next() % 40) as usize;
        let key: String = (0..len)
            .map(|_| char::from(b'!' + (next() % 94) as u8))
            .collect();
        if seen.insert(key.clone()) {
            keys.push(key);
        }
    }
    keys
}

/// Starts one memcached per weight, has pylibmc store the keys, and returns
/// the servers' endpoints and, for each key, the index of the server that
/// holds it (as the script reports it, checked against the servers).
fn pylibmc_placement(
    python: &str,
    weights: &[u32],
    keys: &[String],
) -> (Vec<Endpoint>, Vec<usize>) {
    let servers: Vec<Memcached> = weights
        .iter()
        .map(|_| Memcached::start().unwrap())
        .collect();
    placement_on(python, &servers, weights, None, keys)
}

/// Has pylibmc store the keys on `servers` (one of them, `dead`, stopped:
/// then pylibmc ejects it, as `remove_failed` does) and returns the
/// endpoints and each key's server index.
fn placement_on(
    python: &str,
    servers: &[Memcached],
    weights: &[u32],
    dead: Option<usize>,
    keys: &[String],
) -> (Vec<Endpoint>, Vec<usize>) {
    let endpoints: Vec<Endpoint> = servers.iter().map(|s| Endpoint::from(s.addr())).collect();

    let mut input = String::new();
    for (weight, server) in weights.iter().zip(servers) {
        input.push_str(&format!("server {weight} {}\n", server.endpoint()));
    }
    if let Some(dead) = dead {
        input.push_str(&format!("dead {dead}\n"));
    }
    for key in keys {
        input.push_str(&format!("key {key}\n"));
    }
    let mut child = Command::new(python)
        .arg(SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "pylibmc_ring.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();

    let mut placement = Vec::new();
    for line in stdout.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            eprintln!("{comment}");
            continue;
        }
        let (key, index) = line.rsplit_once(' ').unwrap();
        assert_eq!(key, keys[placement.len()], "keys out of order");
        let index: i64 = index.parse().unwrap();
        assert!(index >= 0, "{key:?} is on no server or on several");
        placement.push(index as usize);
    }
    assert_eq!(placement.len(), keys.len());

    // Ask the servers ourselves too.
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut held = vec![Vec::new(); keys.len()];
    for (index, server) in servers.iter().enumerate() {
        if Some(index) == dead {
            continue;
        }
        let present: HashSet<String> = server
            .keys_present(&key_refs)
            .unwrap()
            .into_iter()
            .collect();
        for (k, key) in keys.iter().enumerate() {
            if present.contains(key) {
                held[k].push(index);
            }
        }
    }
    for (k, holders) in held.iter().enumerate() {
        assert_eq!(holders, &[placement[k]], "holders of {:?}", keys[k]);
    }
    (endpoints, placement)
}

/// How many keys a ring places on another server than pylibmc did.
fn mismatches(ring: &KetamaRing, keys: &[String], placement: &[usize]) -> usize {
    keys.iter()
        .zip(placement)
        .filter(|(key, &index)| ring.pick_index(key.as_bytes()) != Some(index))
        .count()
}

fn ring(endpoints: &[Endpoint], weights: &[u32], compatibility: Compatibility) -> KetamaRing {
    let nodes = endpoints
        .iter()
        .zip(weights)
        .map(|(e, &w)| Node::new(e.clone(), f64::from(w)))
        .collect();
    KetamaRing::with_compatibility(nodes, compatibility)
}

/// Both rings must place every key where pylibmc did.
fn check_same(weights: &[u32], seed: u64) {
    let Some(python) = python() else { return };
    let keys = keys(seed);
    let (endpoints, placement) = pylibmc_placement(python, weights, &keys);
    let mut used = HashSet::new();
    used.extend(placement.iter().copied());
    assert_eq!(used.len(), weights.len(), "every server should get keys");
    for compatibility in [Compatibility::Libmemcached, Compatibility::Finagle] {
        let ring = ring(&endpoints, weights, compatibility);
        let wrong = mismatches(&ring, &keys, &placement);
        println!(
            "weights {weights:?}, {compatibility:?} ring: {} of {} keys on pylibmc's server",
            keys.len() - wrong,
            keys.len()
        );
        assert_eq!(wrong, 0, "{compatibility:?} ring disagrees with pylibmc");
    }
}

#[test]
fn equal_weights_four_servers() {
    check_same(&[1, 1, 1, 1], 0x1234_5678_9abc_def1);
}

#[test]
fn unequal_weights_four_servers() {
    check_same(&[1, 2, 3, 4], 0x0fed_cba9_8765_4321);
}

#[test]
fn unequal_weights_three_servers() {
    check_same(&[5, 3, 1], 0x5555_aaaa_3333_cccc);
}

/// With 25 equal-weight servers libmemcached's `f32` arithmetic gives each
/// server 39 digests (156 points) where Finagle's `f64` gives 40 (160): the
/// libmemcached-compatible ring matches pylibmc exactly, the Finagle one
/// does not.
#[test]
fn twenty_five_servers_show_libmemcached_float_rounding() {
    let Some(python) = python() else { return };
    let weights = [1; 25];
    let keys = keys(0x2525_2525_2525_2525);
    let (endpoints, placement) = pylibmc_placement(python, &weights, &keys);

    let libmemcached = ring(&endpoints, &weights, Compatibility::Libmemcached);
    assert_eq!(libmemcached.points_of(0), 156);
    assert_eq!(mismatches(&libmemcached, &keys, &placement), 0);

    let finagle = ring(&endpoints, &weights, Compatibility::Finagle);
    assert_eq!(finagle.points_of(0), 160);
    let wrong = mismatches(&finagle, &keys, &placement);
    println!("25 servers: the Finagle ring places {wrong} of {KEYS} keys elsewhere than pylibmc");
    assert!(
        wrong > 0,
        "expected the f64 ring to differ from libmemcached's"
    );
}

/// A server down: pylibmc with `remove_failed` ejects it, and our client
/// with `eject_failed_hosts` does too; both then place every key on the
/// same server, the ring built without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejecting_a_dead_server_agrees_with_pylibmc_remove_failed() {
    let Some(python) = python() else { return };
    let weights = [1, 1, 1, 1];
    let mut servers: Vec<Memcached> = weights
        .iter()
        .map(|_| Memcached::start().unwrap())
        .collect();
    let all: Vec<Endpoint> = servers.iter().map(|s| Endpoint::from(s.addr())).collect();
    servers[2].stop();
    let keys = keys(0x0dea_d5e7_0bad_cafe);
    let (endpoints, placement) = {
        let (servers, keys) = (&servers, &keys);
        tokio::task::block_in_place(|| placement_on(python, servers, &weights, Some(2), keys))
    };
    assert_eq!(endpoints, all);
    assert!(placement.iter().all(|&i| i != 2));

    let cache =
        serversets_memcache::McSet::builder(serversets::FixedSet::from_endpoints(all.clone()))
            .compatibility(Compatibility::Libmemcached)
            .eject_failed_hosts(true)
            .timeout(std::time::Duration::from_millis(500))
            .build();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while cache.servers().contains(&all[2]) {
        assert!(std::time::Instant::now() < deadline, "never ejected");
        for key in keys.iter().take(50) {
            let _ = cache.get(key).await;
        }
    }
    let without = ring(
        &[all[0].clone(), all[1].clone(), all[3].clone()],
        &[1, 1, 1],
        Compatibility::Libmemcached,
    );
    for (key, &index) in keys.iter().zip(&placement) {
        let ours = cache.server_for(key).expect("a server");
        assert_eq!(ours, all[index], "{key:?}: ours and pylibmc's differ");
        assert_eq!(
            Some(&ours),
            without.pick(key.as_bytes()).map(|n| &n.endpoint),
            "{key:?}: not the ring built without the dead server"
        );
    }
}
