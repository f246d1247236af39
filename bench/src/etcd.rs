//! The etcd backend: put → visible and delete → visible at 100 and 10,000
//! members, beside a bare etcd watch's notification in the same run; the
//! initial load of 10,000 members beside a bare prefix get; and the
//! connections one process opens.
//!
//! Per change, one writer (a connection of its own) puts or deletes a
//! member key; a bare `etcd-client` prefix watch and our [`Watch`] (a
//! connection of their own each) both see it; each is timed from the
//! start of the write to its own receipt. Both watchers share the machine
//! and the server, so the ratio holds on a noisy machine.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serversets::{Endpoint, EtcdClient, Member, RegisterOptions, ServerSetPath, Watch};
use tokio::sync::mpsc;

use crate::support::{p50, BoxError, Row};

/// The member value written for port `port` (Finagle's JSON).
fn value(port: u32) -> Vec<u8> {
    let port = u16::try_from(port % 60_000 + 1).unwrap_or(1);
    serversets::codec::encode(&Member::new(Endpoint::new("10.1.0.1", port)))
}

fn key(prefix: &str, n: u32) -> String {
    format!("{prefix}/member_{n:016x}")
}

/// Puts `count` members under `prefix`, 500 at a time.
async fn populate(writer: &etcd_client::Client, prefix: &str, count: u32) -> Result<(), BoxError> {
    let mut n = 0;
    while n < count {
        let batch: Vec<_> = (n..count.min(n + 500))
            .map(|i| {
                let mut kv = writer.kv_client();
                let key = key(prefix, i);
                async move { kv.put(key, value(i), None).await }
            })
            .collect();
        for put in join_all(batch).await {
            put?;
        }
        n = count.min(n + 500);
    }
    Ok(())
}

/// Forwards the receipt time of every event of a bare prefix watch.
async fn bare_watch(
    client: &etcd_client::Client,
    prefix: &str,
) -> Result<mpsc::UnboundedReceiver<Instant>, BoxError> {
    let options = etcd_client::WatchOptions::new().with_prefix();
    let mut stream = client
        .watch_client()
        .watch(format!("{prefix}/"), Some(options))
        .await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(response)) = stream.message().await {
            let now = Instant::now();
            for _ in response.events() {
                if tx.send(now).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

/// Forwards the receipt time of every change of our watch.
fn our_watch(watch: &Watch) -> mpsc::UnboundedReceiver<Instant> {
    let mut changes = watch.changes();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let now = Instant::now();
            for _ in 0..change.added.len() + change.removed.len() {
                if tx.send(now).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Instant>, what: &str) -> Result<Instant, BoxError> {
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(at)) => Ok(at),
        _ => Err(format!("no event from {what} within 10 s").into()),
    }
}

pub async fn run(quick: bool) -> Result<Vec<Row>, BoxError> {
    eprintln!("starting etcd ...");
    let etcd = tokio::task::spawn_blocking(testkit::Etcd::start).await??;
    let endpoint = etcd.endpoint();
    println!("etcd on {endpoint}");
    let url = etcd.url();
    let writer = etcd_client::Client::connect([url.as_str()], None).await?;
    let bare = etcd_client::Client::connect([url.as_str()], None).await?;
    let ours = EtcdClient::connect(&endpoint).await?;
    let mut rows = vec![connections(&etcd).await?];
    let sizes: [u32; 2] = if quick { [100, 1_000] } else { [100, 10_000] };
    let rounds = if quick { 20 } else { 100 };
    for size in sizes {
        let prefix = format!("/bench/s{size}");
        let path = ServerSetPath::new(&prefix)?;
        populate(&writer, &prefix, size).await?;

        // Initial load: a fresh client's first watch (connect excluded),
        // beside a bare prefix get of the same keys.
        let mut loads = Vec::new();
        let mut gets = Vec::new();
        for _ in 0..5 {
            let fresh = EtcdClient::connect(&endpoint).await?;
            let started = Instant::now();
            let watch = fresh.watch(&path).await?;
            loads.push(started.elapsed());
            if watch.current().len() != size as usize {
                return Err(format!("loaded {} of {size}", watch.current().len()).into());
            }
            let mut kv = bare.kv_client();
            let started = Instant::now();
            let got = kv
                .get(
                    format!("{prefix}/"),
                    Some(etcd_client::GetOptions::new().with_prefix()),
                )
                .await?;
            gets.push(started.elapsed());
            if got.kvs().len() != size as usize {
                return Err("the bare get is short".into());
            }
            fresh.close().await;
        }
        let mut row = Row::info(
            format!("etcd initial load of {size} members, p50"),
            p50(&loads),
            "ms",
        )
        .against("bare prefix get", p50(&gets));
        if size == 10_000 {
            let met = row.value <= 150.0;
            row = row.target("≤ 150 ms", met);
        }
        rows.push(row);

        // Changes, interleaved: put (a join) then delete (a leave).
        let watch = ours.watch(&path).await?;
        let mut our_rx = our_watch(&watch);
        let mut bare_rx = bare_watch(&bare, &prefix).await?;
        let (mut put_ours, mut put_bare, mut del_ours, mut del_bare) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut kv = writer.kv_client();
        for round in 0..rounds {
            let n = 1_000_000 + round;
            let started = Instant::now();
            kv.put(key(&prefix, n), value(n), None).await?;
            put_bare.push(next(&mut bare_rx, "the bare watch").await? - started);
            put_ours.push(next(&mut our_rx, "our watch").await? - started);
            let started = Instant::now();
            kv.delete(key(&prefix, n), None).await?;
            del_bare.push(next(&mut bare_rx, "the bare watch").await? - started);
            del_ours.push(next(&mut our_rx, "our watch").await? - started);
        }
        if watch.current().len() != size as usize {
            return Err("our watch does not hold the set".into());
        }
        for (what, ours, bare) in [
            ("put → visible", &put_ours, &put_bare),
            ("delete → visible", &del_ours, &del_bare),
        ] {
            let row = Row::info(format!("etcd {what} at {size}, p50"), p50(ours), "ms")
                .against("bare etcd watch", p50(bare));
            let met = row.ratio.is_some_and(|r| r <= 1.5);
            rows.push(row.target("≤ 1.5x bare watch", met));
        }
    }

    Ok(rows)
}

/// The connections one client opens for five sets watched in both formats
/// and five registrations; the bench's own connections (open before, and
/// idle) are counted first and taken off.
async fn connections(etcd: &testkit::Etcd) -> Result<Row, BoxError> {
    let endpoint = etcd.endpoint();
    let before = testkit::connections_to(etcd.port())?;
    let ours = EtcdClient::connect(&endpoint).await?;
    let mut watches = Vec::new();
    let mut registrations = Vec::new();
    for n in 0..5u16 {
        let path = ServerSetPath::new(format!("/bench/conn{n}"))?;
        watches.push(ours.watch(&path).await?);
        watches.push(
            ours.watch_with(
                &path,
                serversets::WatchOptions::new().format(serversets::naming::Format::EtcdNaming),
            )
            .await?,
        );
        registrations.push(
            ours.register_with(
                &path,
                Member::new(Endpoint::new("127.0.0.1", 9000 + n)),
                RegisterOptions::new(),
            )
            .await?,
        );
    }
    let connections = testkit::connections_to(etcd.port())?.saturating_sub(before);
    drop(watches);
    for registration in registrations {
        registration.close().await;
    }
    Ok(Row::info(
        "etcd connections of a process (10 watches, 5 registrations)",
        connections as f64,
        "",
    )
    .figure_text(connections.to_string())
    .target("1", connections == 1))
}
