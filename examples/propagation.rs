//! Benchmark: time from a member's creation to a watcher seeing it, with
//! 10, 1000 and 10000 members in the set.
//!
//! ```text
//! cargo run --release --example propagation [-- --rounds 50]
//! ```
//!
//! Each figure sits next to two references measured in the same run on the
//! same throwaway ZooKeeper:
//! - floor: the raw `zookeeper-client` create -> child-watch notification;
//! - one children listing: what re-arming a one-shot child watch costs at
//!   that size (ZooKeeper sends the whole list);
//! - naive: a watcher that lists and re-reads every member on every change
//!   (as go.serversets does; here with pipelined reads, its best case).

use std::time::{Duration, Instant};

use futures::future::join_all;
use serversets::zookeeper_client as zk;
use serversets::{codec, Client, Endpoint, Member, ServerSetPath};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(50);
    let server = tokio::task::spawn_blocking(testkit::ZooKeeper::start).await??;
    let connect = server.connect_string();
    let writer = zk::Client::connect(&connect).await?;
    let client = Client::connect(&connect).await?;
    let acl = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

    println!(
        "create -> visible, {rounds} rounds per size, on {}",
        machine()
    );
    println!();
    println!("| members | initial load | ZooKeeper floor p50 / p99 | one children listing p50 | serversets p50 / p99 | naive re-read p50 / p99 |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for size in [10usize, 1000, 10_000] {
        let dir = format!("/bench/set{size}");
        writer.mkdir(&dir, &acl).await?;
        populate(&writer, &dir, size).await?;
        let path = ServerSetPath::new(&dir)?;

        let started = Instant::now();
        let watch = client.watch(&path).await?;
        let load = started.elapsed();
        if watch.current().len() != size {
            return Err(format!("loaded {} of {size}", watch.current().len()).into());
        }

        let floor = measure_floor(&connect, &writer, &dir, rounds).await?;
        let mut listing = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = Instant::now();
            writer.get_children(&dir).await?;
            listing.push(started.elapsed());
        }
        let ours = measure_watch(&writer, &watch, &dir, rounds).await?;
        let naive_rounds = if size >= 10_000 {
            rounds.min(10)
        } else {
            rounds
        };
        let naive = measure_naive(&connect, &writer, &dir, naive_rounds).await?;
        println!(
            "| {size} | {} | {} | {} | {} | {} |",
            ms(load),
            pair(&floor),
            ms(percentile(&listing, 0.5)),
            pair(&ours),
            pair(&naive)
        );
    }
    drop(server);
    Ok(())
}

fn member_data(i: usize) -> Vec<u8> {
    codec::encode(&Member::new(Endpoint::new(
        "10.0.0.1",
        (i % 60_000) as u16 + 1024,
    )))
}

async fn create(writer: &zk::Client, dir: &str, data: &[u8]) -> Result<String, BoxError> {
    let prefix = format!("{dir}/member_");
    let mode = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    let (_, seq) = writer.create(&prefix, data, &mode).await?;
    Ok(format!("member_{seq}"))
}

/// Creates `size` members, 1000 requests in flight at a time.
async fn populate(writer: &zk::Client, dir: &str, size: usize) -> Result<(), BoxError> {
    let data: Vec<Vec<u8>> = (0..size).map(member_data).collect();
    for chunk in data.chunks(1000) {
        for result in join_all(chunk.iter().map(|d| create(writer, dir, d))).await {
            result?;
        }
    }
    Ok(())
}

/// The raw client's own create -> child notification time.
async fn measure_floor(
    connect: &str,
    writer: &zk::Client,
    dir: &str,
    rounds: usize,
) -> Result<Vec<Duration>, BoxError> {
    let observer = zk::Client::connect(connect).await?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let (_, _, watcher) = observer.get_and_watch_children(dir).await?;
        let started = Instant::now();
        let name = create(writer, dir, &member_data(i)).await?;
        watcher.changed().await;
        times.push(started.elapsed());
        writer.delete(&format!("{dir}/{name}"), None).await?;
    }
    Ok(times)
}

/// serversets: create -> the watch's change stream has the member.
async fn measure_watch(
    writer: &zk::Client,
    watch: &serversets::Watch,
    dir: &str,
    rounds: usize,
) -> Result<Vec<Duration>, BoxError> {
    let mut changes = watch.changes();
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = Instant::now();
        let name = create(writer, dir, &member_data(i)).await?;
        loop {
            let change = changes.next().await.ok_or("watch ended")?;
            if change.added.iter().any(|e| e.name == name) {
                break;
            }
        }
        times.push(started.elapsed());
        writer.delete(&format!("{dir}/{name}"), None).await?;
        loop {
            let change = changes.next().await.ok_or("watch ended")?;
            if change.removed.iter().any(|e| e.name == name) {
                break;
            }
        }
    }
    Ok(times)
}

/// A naive watcher: on every notification, list and re-read every member.
async fn measure_naive(
    connect: &str,
    writer: &zk::Client,
    dir: &str,
    rounds: usize,
) -> Result<Vec<Duration>, BoxError> {
    let reader = zk::Client::connect(connect).await?;
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let (_, _, watcher) = reader.get_and_watch_children(dir).await?;
        let started = Instant::now();
        let name = create(writer, dir, &member_data(i)).await?;
        watcher.changed().await;
        let (children, _, _) = reader.get_and_watch_children(dir).await?;
        let reads = children
            .iter()
            .map(|c| reader.get_data(&format!("{dir}/{c}")));
        let decoded = join_all(reads)
            .await
            .into_iter()
            .filter_map(|r| r.ok())
            .filter_map(|(data, _)| codec::decode(&data).ok())
            .count();
        if !children.contains(&name) || decoded < children.len() {
            return Err("naive watcher missed the member".into());
        }
        times.push(started.elapsed());
        writer.delete(&format!("{dir}/{name}"), None).await?;
    }
    Ok(times)
}

fn percentile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn pair(times: &[Duration]) -> String {
    format!(
        "{} / {}",
        ms(percentile(times, 0.5)),
        ms(percentile(times, 0.99))
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}")
}
