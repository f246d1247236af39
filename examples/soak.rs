//! Soak: churn registrations, kill and restart ensemble members and force
//! session expiries for a bounded time, checking after every round that
//! every watcher's set equals what ZooKeeper holds, that every registration
//! exists exactly once, and that sessions, tasks and memory do not grow.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 10 [--clients 4] [--members 6] [--round-seconds 20]
//! ```
//!
//! Opt-in (not part of the test suite). It starts its own three-node
//! ZooKeeper ensemble on loopback and stops it at the end; it exits 1 if any
//! check failed.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serversets::{codec, Client, Endpoint, Member, Registration, ServerSetPath, Watch};
use zookeeper_client as zk;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SETS: usize = 3;

fn arg(name: &str, default: u64) -> Result<u64, BoxError> {
    Ok(std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(default))
}

/// One process-like participant: a client (one session), its registrations
/// (slot -> live registration) and a watch on every set.
struct Participant {
    client: Client,
    slots: Vec<(usize, Member, Option<Registration>)>,
    watches: Vec<Watch>,
}

#[derive(Default)]
struct Counters {
    toggles: u64,
    expiries: u64,
    restarts: u64,
    majority_losses: u64,
    rounds: u64,
    checks_failed: u64,
    hangs: Vec<String>,
}

/// Longer than any single operation may take, even during an outage.
const HANG: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    common::init_logging();
    let minutes = arg("--minutes", 10)?;
    let clients = arg("--clients", 4)? as usize;
    let members = arg("--members", 6)? as usize;
    let round = Duration::from_secs(arg("--round-seconds", 20)?);
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);

    let mut ensemble = tokio::task::spawn_blocking(|| testkit::Ensemble::start(3)).await??;
    let connect = ensemble.connect_string();
    println!("soak: {minutes} min, {clients} clients x {members} members over {SETS} sets, ensemble {connect}");
    let paths: Vec<ServerSetPath> = (0..SETS)
        .map(|i| ServerSetPath::new(format!("/soak/set{i}")))
        .collect::<Result<_, _>>()?;

    let mut participants = Vec::new();
    for c in 0..clients {
        let client = Client::builder(&connect)
            .session_timeout(Duration::from_secs(6))
            .connect_timeout(Duration::from_secs(30))
            .connect()
            .await?;
        let mut slots = Vec::new();
        for m in 0..members {
            let set = (c + m) % SETS;
            let member = Member::new(Endpoint::new("127.0.0.1", (10_000 + c * 100 + m) as u16));
            let registration = client.register(&paths[set], member.clone()).await?;
            slots.push((set, member, Some(registration)));
        }
        let mut watches = Vec::new();
        for path in &paths {
            watches.push(client.watch(path).await?);
        }
        participants.push(Participant {
            client,
            slots,
            watches,
        });
    }

    let mut counters = Counters::default();
    let mut samples: Vec<(u64, usize, u64)> = Vec::new(); // (rss kB, alive tasks, zk connections)
    println!("| round | toggles | expiries | restarts | quorum losses | check | rss kB | tasks | zk connections | ephemerals |");
    println!("| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    while Instant::now() < deadline {
        counters.rounds += 1;
        let round_end = (Instant::now() + round).min(deadline);
        while Instant::now() < round_end {
            let action = rand::rng().random_range(0..100);
            let who = rand::rng().random_range(0..participants.len());
            if action < 70 {
                let p = &mut participants[who];
                let slot = rand::rng().random_range(0..p.slots.len());
                let (set, member, registration) = &mut p.slots[slot];
                match registration.take() {
                    Some(r) => {
                        if tokio::time::timeout(HANG, r.close()).await.is_err() {
                            counters
                                .hangs
                                .push(format!("close of {member:?} took over {HANG:?}"));
                        }
                    }
                    None => match tokio::time::timeout(
                        HANG,
                        p.client.register(&paths[*set], member.clone()),
                    )
                    .await
                    {
                        Ok(Ok(r)) => *registration = Some(r),
                        // Refused while the quorum is rebuilding: later.
                        Ok(Err(e)) => eprintln!("register failed (will retry): {e}"),
                        Err(_) => counters
                            .hangs
                            .push(format!("register of {member:?} took over {HANG:?}")),
                    },
                }
                counters.toggles += 1;
            } else if action < 80 {
                if tokio::time::timeout(HANG, expire(&connect, &participants[who].client))
                    .await
                    .is_err()
                {
                    counters.hangs.push("forcing an expiry hung".into());
                }
                counters.expiries += 1;
            } else if action < 87 {
                // Lose the quorum for longer than clients wait for their
                // sessions (7/5 of the timeout), then restore it.
                let first = rand::rng().random_range(0..3);
                let second = (first + 1) % 3;
                ensemble.stop(first);
                ensemble.stop(second);
                tokio::time::sleep(Duration::from_millis(
                    rand::rng().random_range(1000..10_000),
                ))
                .await;
                tokio::task::block_in_place(|| ensemble.start_again(first))?;
                tokio::task::block_in_place(|| ensemble.start_again(second))?;
                counters.majority_losses += 1;
            } else if action < 90 {
                let victim = rand::rng().random_range(0..3);
                ensemble.stop(victim);
                tokio::time::sleep(Duration::from_millis(rand::rng().random_range(200..3000)))
                    .await;
                tokio::task::block_in_place(|| ensemble.start_again(victim))?;
                counters.restarts += 1;
            }
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(20..300))).await;
        }

        // Quiesce and check.
        tokio::task::block_in_place(|| ensemble.wait_for_leader(Duration::from_secs(60)))?;
        // A fresh observer each time: a raw client does not outlive an
        // outage the way ours does.
        let observer = match zk::Client::connect(&connect).await {
            Ok(observer) => observer,
            Err(e) => {
                counters.checks_failed += 1;
                println!("| {} | cannot observe: {e} |", counters.rounds);
                continue;
            }
        };
        let verdict = match tokio::time::timeout(
            Duration::from_secs(90),
            converged(&observer, &paths, &participants),
        )
        .await
        {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(why)) => {
                counters.checks_failed += 1;
                format!("FAILED: {why}")
            }
            Err(_) => {
                counters.checks_failed += 1;
                let why = converged_once(&observer, &paths, &participants)
                    .await
                    .err()
                    .unwrap_or_default();
                format!("FAILED (not converged in 90 s): {why}")
            }
        };
        let rss = rss_kb();
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        drop(observer);
        let (connections, ephemerals) = zk_counts(&ensemble);
        samples.push((rss, tasks, connections));
        println!(
            "| {} | {} | {} | {} | {} | {verdict} | {rss} | {tasks} | {connections} | {ephemerals} |",
            counters.rounds,
            counters.toggles,
            counters.expiries,
            counters.restarts,
            counters.majority_losses
        );
    }

    // Growth: compare the second half's maxima with the first rounds'.
    let first = samples.first().copied().unwrap_or_default();
    let last = samples.last().copied().unwrap_or_default();
    let max_rss = samples.iter().map(|s| s.0).max().unwrap_or_default();
    let max_tasks = samples.iter().map(|s| s.1).max().unwrap_or_default();
    let max_connections = samples.iter().map(|s| s.2).max().unwrap_or_default();
    let bounded = last.1 <= first.1 + 8
        && max_connections <= clients as u64 + 1 + 3
        && last.0 <= first.0 * 2 + 32_768;
    println!();
    println!(
        "rounds {}, toggles {}, forced expiries {}, ensemble restarts {}, failed checks {}",
        counters.rounds,
        counters.toggles,
        counters.expiries,
        counters.restarts,
        counters.checks_failed
    );
    println!("rss kB first/last/max {}/{}/{}; alive tasks first/last/max {}/{}/{}; zk connections max {} (clients {} + the check's own mntr connections, one per server)",
        first.0, last.0, max_rss, first.1, last.1, max_tasks, max_connections, clients);
    println!("growth bounded: {bounded}");

    for p in participants {
        for (_, _, registration) in p.slots {
            if let Some(r) = registration {
                r.close().await;
            }
        }
        p.client.close().await;
    }
    drop(ensemble);
    for hang in &counters.hangs {
        println!("HANG: {hang}");
    }
    if counters.checks_failed > 0 || !bounded || !counters.hangs.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// Expires a client's session from outside (resume it, close it).
async fn expire(connect: &str, client: &Client) {
    let Some(zk) = client.zookeeper() else { return };
    let session = zk.session().clone();
    drop(zk);
    if let Ok(other) = zk::Client::connector()
        .with_session(session)
        .with_session_timeout(Duration::from_secs(6))
        .connect(connect)
        .await
    {
        drop(other);
    }
}

/// Waits until every set converged (checking again at every change).
async fn converged(
    observer: &zk::Client,
    paths: &[ServerSetPath],
    participants: &[Participant],
) -> Result<(), String> {
    loop {
        match converged_once(observer, paths, participants).await {
            Ok(()) => return Ok(()),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One check: ZooKeeper holds each live registration exactly once and no
/// other member, and every watch equals ZooKeeper.
async fn converged_once(
    observer: &zk::Client,
    paths: &[ServerSetPath],
    participants: &[Participant],
) -> Result<(), String> {
    for (i, path) in paths.iter().enumerate() {
        let names = observer
            .list_children(path.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let mut by_port: BTreeMap<u16, usize> = BTreeMap::new();
        let mut truth = Vec::new();
        for name in names.iter().filter(|n| n.starts_with("member_")) {
            let Ok((data, _)) = observer.get_data(&path.member_path(name)).await else {
                continue;
            };
            if let Ok(decoded) = codec::decode(&data) {
                *by_port
                    .entry(decoded.member.service_endpoint.port)
                    .or_default() += 1;
            }
            truth.push(name.clone());
        }
        truth.sort();
        for p in participants {
            for (set, member, registration) in &p.slots {
                if *set != i {
                    continue;
                }
                let port = member.service_endpoint.port;
                let want = usize::from(registration.as_ref().is_some_and(|r| r.znode().is_some()));
                let have = by_port.get(&port).copied().unwrap_or(0);
                if registration.is_some() && have != 1 || registration.is_none() && have != 0 {
                    return Err(format!(
                        "{path}: port {port} present {have} times, registered {}",
                        want
                    ));
                }
            }
            let mut seen: Vec<String> = p.watches[i]
                .current()
                .iter()
                .map(|e| e.name.clone())
                .collect();
            seen.sort();
            if seen != truth {
                return Err(format!(
                    "{path}: a watch holds {} members, ZooKeeper {}",
                    seen.len(),
                    truth.len()
                ));
            }
        }
    }
    Ok(())
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Client connections (including the `mntr` query's own, one per server)
/// and ephemeral nodes across the ensemble.
fn zk_counts(ensemble: &testkit::Ensemble) -> (u64, u64) {
    let mut connections = 0;
    let mut ephemerals = 0;
    for server in ensemble.servers() {
        let Ok(mntr) = server.four_letter("mntr") else {
            continue;
        };
        for line in mntr.lines() {
            let mut fields = line.split_whitespace();
            match (
                fields.next(),
                fields.next().and_then(|v| v.parse::<u64>().ok()),
            ) {
                (Some("zk_num_alive_connections"), Some(n)) => connections += n,
                (Some("zk_ephemerals_count"), Some(n)) => ephemerals = ephemerals.max(n),
                _ => {}
            }
        }
    }
    (connections, ephemerals)
}
