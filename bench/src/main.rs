//! The benchmark suite: propagation, churn, scale and the hot paths, each
//! figure next to a reference measured in the same run.
//!
//! ```text
//! cargo run --release -p serversets-bench [-- --quick] [--only NAME[,NAME]] [--json PATH]
//! ```
//!
//! It starts its own ZooKeeper (and etcd, HTTP servers, memcached servers,
//! and loopback TCP servers),
//! prints a markdown table (measurement, figure, reference, ratio, target,
//! met) and writes the same rows as JSON (default `target/bench.json`).
//! `--quick` uses small sizes and few rounds, for a smoke run. Measurements
//! (for `--only`): `propagation`, `join`, `sessions`, `memory`, `scale`,
//! `ring`, `http`, `http_faults`, `pool`, `memcache`, `gateway`, `etcd`.
//!
//! References:
//! - the ZooKeeper floor: `zookeeper-client`'s own create -> child
//!   notification time, on a session of its own;
//! - a naive watcher that lists and re-reads every member on every change,
//!   as go.serversets does (with pipelined reads, its best case);
//! - a raw incremental watcher: the least any watcher on ZooKeeper's
//!   one-shot child watches does per change (re-list, read the new member);
//! - for the hot paths, the bare operation underneath (the MD5 of the key,
//!   plain reqwest, a bare mutex-guarded idle list, the raw
//!   `async-memcached` client driven the same way);
//! - for faults, the same figure before the fault or without the faulty
//!   server;
//! - for `scale` (the persistent watch engine from 100 to 100,000
//!   members: join/leave latency, churn, bytes per change per watcher, the
//!   CPU and bytes 50 watcher processes cost ZooKeeper, the initial load,
//!   memory and a reconnection at 100,000), ZooKeeper's own persistent
//!   recursive watch notification on a raw session, the one-shot engine,
//!   and a raw load of the set;
//! - for `gateway` (the discovery gateway in a process of its own: 1,000
//!   SSE subscribers of one set, 1,000 TTL instances renewed every 5 s for
//!   5 minutes, `GET /v1/members` of 10,000 members), one `serversets`
//!   watch in the bench process seeing the same changes, the renewal PUTs
//!   sustained, and a raw listing of the same set;
//! - for `etcd` (the etcd backend: put and delete → visible at 100 and
//!   10,000 members, the initial load of 10,000, connections per process),
//!   a bare `etcd-client` prefix watch seeing the same writes, and a bare
//!   prefix get.

mod etcd;
mod gateway;
mod http;
mod http_faults;
mod join;
mod memcache;
mod memory;
mod pool;
mod propagation;
mod ring;
mod scale;
mod sessions;
mod support;

use std::path::PathBuf;
use std::time::Instant;

use support::{BoxError, Row};

/// Every measurement, in the order they run.
const MEASUREMENTS: [&str; 12] = [
    "propagation",
    "join",
    "sessions",
    "memory",
    "scale",
    "ring",
    "http",
    "http_faults",
    "pool",
    "memcache",
    "gateway",
    "etcd",
];

/// The order they run in: the hot paths first, the largest sets last.
const RUN_ORDER: [&str; 12] = [
    "ring",
    "http",
    "http_faults",
    "pool",
    "memcache",
    "propagation",
    "join",
    "sessions",
    "memory",
    "scale",
    "gateway",
    "etcd",
];

/// The measurements that need ZooKeeper.
const ZOOKEEPER_MEASUREMENTS: [&str; 6] = [
    "propagation",
    "join",
    "sessions",
    "memory",
    "scale",
    "gateway",
];

/// What the measurements share.
pub struct Context {
    /// Small sizes and few rounds.
    pub quick: bool,
    /// The throwaway ZooKeeper's connect string.
    pub connect: String,
    /// The throwaway ZooKeeper itself (for four-letter words).
    pub zookeeper: testkit::ZooKeeper,
    /// Its version.
    pub version: String,
}

struct Args {
    quick: bool,
    only: Vec<String>,
    json: PathBuf,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        quick: false,
        only: Vec::new(),
        json: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench.json")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--only" => {
                let names = it.next().ok_or("--only needs a measurement name")?;
                for name in names.split(',').filter(|n| !n.is_empty()) {
                    if !MEASUREMENTS.contains(&name) {
                        return Err(format!(
                            "unknown measurement {name:?} (one of: {})",
                            MEASUREMENTS.join(", ")
                        )
                        .into());
                    }
                    args.only.push(name.to_owned());
                }
            }
            "--json" => args.json = it.next().ok_or("--json needs a path")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: bench [--quick] [--only NAME[,NAME]] [--json PATH]\nmeasurements: {}",
                    MEASUREMENTS.join(", ")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    Ok(args)
}

fn main() {
    // The child processes of the memory, scale and gateway measurements.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(memory::PROBE_FLAG) {
        if let Err(e) = memory::probe(&argv[2..]) {
            eprintln!("memory probe: {e}");
            std::process::exit(1);
        }
        return;
    }
    if argv.get(1).map(String::as_str) == Some(scale::WATCHER_FLAG) {
        if let Err(e) = scale::watcher(&argv[2..]) {
            eprintln!("scale watcher: {e}");
            std::process::exit(1);
        }
        return;
    }
    if argv.get(1).map(String::as_str) == Some(gateway::CHILD_FLAG) {
        if let Err(e) = gateway::child(&argv[2..]) {
            eprintln!("gateway process: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Starts the throwaway ZooKeeper.
async fn start_zookeeper(quick: bool) -> Result<Context, BoxError> {
    eprintln!("starting ZooKeeper ...");
    let server = tokio::task::spawn_blocking(testkit::ZooKeeper::start).await??;
    let version = server
        .four_letter("srvr")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.trim_start_matches("Zookeeper version:").trim())
                .and_then(|v| v.split(['-', ',']).next())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!("ZooKeeper {version} on {}", server.connect_string());
    Ok(Context {
        quick,
        connect: server.connect_string(),
        zookeeper: server,
        version,
    })
}

fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    propagation::init_tracing();
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|n| n == name);
    let machine = support::machine();
    println!(
        "serversets benchmark{}: {machine}",
        if args.quick { " (--quick)" } else { "" }
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let (rows, zookeeper_version) = runtime.block_on(async {
        // The hot paths run first, before ZooKeeper's JVM is there to
        // disturb them; the table keeps the order of MEASUREMENTS.
        let mut ctx: Option<Context> = None;
        let mut by_name: Vec<(&str, Vec<Row>)> = Vec::new();
        for name in RUN_ORDER.iter().filter(|m| selected(m)) {
            if ZOOKEEPER_MEASUREMENTS.contains(name) && ctx.is_none() {
                ctx = Some(start_zookeeper(args.quick).await?);
            }
            let begun = Instant::now();
            eprintln!("running {name} ...");
            let zk = || ctx.as_ref().ok_or("no ZooKeeper");
            let rows = match *name {
                "propagation" => propagation::run(zk()?).await,
                "join" => join::run(zk()?).await,
                "sessions" => sessions::run(zk()?).await,
                "memory" => memory::run(zk()?).await,
                "scale" => scale::run(zk()?).await,
                "gateway" => gateway::run(zk()?).await,
                "ring" => {
                    let quick = args.quick;
                    tokio::task::spawn_blocking(move || ring::run(quick)).await?
                }
                "http" => {
                    let quick = args.quick;
                    // One request after another on one thread, as the
                    // clients would be used in a request handler.
                    tokio::task::spawn_blocking(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?
                            .block_on(http::run(quick))
                    })
                    .await?
                }
                "http_faults" => {
                    let quick = args.quick;
                    tokio::task::spawn_blocking(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?
                            .block_on(http_faults::run(quick))
                    })
                    .await?
                }
                "pool" => pool::run(args.quick).await,
                "memcache" => memcache::run(args.quick).await,
                "etcd" => etcd::run(args.quick).await,
                _ => Err(format!("unknown measurement {name}").into()),
            }
            .map_err(|e| format!("{name}: {e}"))?;
            eprintln!("  {name} took {:.1} s", begun.elapsed().as_secs_f64());
            by_name.push((name, rows));
        }
        let mut rows = Vec::new();
        for name in MEASUREMENTS {
            if let Some((_, new)) = by_name.iter_mut().find(|(n, _)| *n == name) {
                rows.append(new);
            }
        }
        let version = ctx.map(|c| c.version);
        Ok::<_, BoxError>((rows, version))
    })?;

    println!();
    println!("{}", support::table(&rows));
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let targets = rows.iter().filter(|r| r.met.is_some()).count();
    println!(
        "{met} of {targets} targets met; {:.0} s in all.",
        started.elapsed().as_secs_f64()
    );
    support::write_json(
        &args.json,
        &machine,
        zookeeper_version.as_deref(),
        args.quick,
        &rows,
    )?;
    println!("JSON: {}", args.json.display());
    Ok(())
}
