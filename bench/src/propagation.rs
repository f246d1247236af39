//! Member created -> visible to a watcher, at 10, 1000 and 10000 members,
//! next to the ZooKeeper floor and a naive re-reading watcher; the initial
//! load of each set; and where the time of one change goes.
//!
//! Per round, interleaved so that machine noise hits all alike:
//! - floor: the raw `zookeeper-client` create -> child-watch notification,
//!   on a session of its own;
//! - serversets: create -> the watch's change stream has the member, and
//!   create -> "watch fired" (the notification reaching our watch task,
//!   seen through its `tracing` debug event);
//! - one raw children listing of the quiet set.
//!
//! Then, with our watch gone (it would re-list at the same moment):
//! - a raw incremental watcher, the least a watcher that learns of a join
//!   from the listing does: notified, re-list (which re-arms the watch),
//!   find the new name, read it; each step timed (serversets reads a join
//!   before re-listing, from the number ZooKeeper gave it);
//! - the naive watcher (go.serversets' way): list and re-read every member
//!   on each notification, all reads pipelined (its best case).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serversets::{codec, Client, ServerSetPath};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use zookeeper_client as zk;

use crate::support::{self, create, member_data, ms, p50, p99, BoxError, Row};
use crate::Context;

/// When the watch task last logged "watch fired" (reset before each round).
static FIRED: Mutex<Option<Instant>> = Mutex::new(None);

/// Records the first "watch fired" debug event of `serversets::zk::watch`
/// after a reset.
struct FiredLayer;

impl<S: tracing::Subscriber> Layer<S> for FiredLayer {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let now = Instant::now();
        if let Ok(mut fired) = FIRED.lock() {
            fired.get_or_insert(now);
        }
    }
}

fn reset_fired() {
    if let Ok(mut fired) = FIRED.lock() {
        *fired = None;
    }
}

fn fired() -> Option<Instant> {
    FIRED.lock().ok().and_then(|f| *f)
}

/// Logs warnings to stderr (`RUST_LOG` overrides) and feeds [`FiredLayer`]
/// with the watch's debug events only.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let fired = FiredLayer.with_filter(tracing_subscriber::filter::filter_fn(|m| {
        m.target().starts_with("serversets::zk::watch") && *m.level() == tracing::Level::DEBUG
    }));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(fired)
        .try_init();
}

/// What one size gives.
struct Figures {
    size: usize,
    loads: Vec<Duration>,
    floor: Vec<Duration>,
    ours: Vec<Duration>,
    fired: Vec<Duration>,
    listing: Vec<Duration>,
    incremental: Vec<Duration>,
    relist: Vec<Duration>,
    diff: Vec<Duration>,
    new_read: Vec<Duration>,
    naive: Vec<Duration>,
}

pub async fn run(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let sizes: &[usize] = if ctx.quick {
        &[10, 1000]
    } else {
        &[10, 1000, 10_000]
    };
    let rounds = if ctx.quick { 8 } else { 40 };
    let writer = support::raw_client(&ctx.connect).await?;
    let client = Client::connect(&ctx.connect).await?;
    let mut all = Vec::new();
    for &size in sizes {
        all.push(measure(ctx, &writer, &client, size, rounds).await?);
    }
    // All p50s, all p99s, all loads, then the phases of the largest size.
    let mut by_kind: [Vec<Row>; 3] = Default::default();
    for figures in &all {
        for (kind, row) in size_rows(figures).into_iter().enumerate() {
            by_kind[kind].push(row);
        }
    }
    let mut rows: Vec<Row> = by_kind.into_iter().flatten().collect();
    if let Some(largest) = all.last() {
        rows.extend(phase_rows(largest));
    }
    client.close().await;
    Ok(rows)
}

async fn measure(
    ctx: &Context,
    writer: &zk::Client,
    client: &Client,
    size: usize,
    rounds: usize,
) -> Result<Figures, BoxError> {
    let dir = format!("/bench/propagation/set{size}");
    support::populate(writer, &dir, size).await?;
    let path = ServerSetPath::new(&dir)?;

    // Initial loads: a fresh client each time (watches of one path through
    // one client share their engine: a second one would load nothing).
    let load_rounds = if ctx.quick { 2 } else { 5 };
    let mut loads = Vec::with_capacity(load_rounds);
    for _ in 0..load_rounds {
        let loader = Client::connect(&ctx.connect).await?;
        let started = Instant::now();
        let loaded = loader.watch(&path).await?;
        loads.push(started.elapsed());
        if loaded.current().len() != size {
            return Err(format!("loaded {} of {size} members", loaded.current().len()).into());
        }
        drop(loaded);
        loader.close().await;
    }
    let watch = client.watch(&path).await?;
    let mut changes = watch.changes();

    let observer = support::raw_client(&ctx.connect).await?;
    let mut f = Figures {
        size,
        loads,
        floor: Vec::new(),
        ours: Vec::new(),
        fired: Vec::new(),
        listing: Vec::new(),
        incremental: Vec::new(),
        relist: Vec::new(),
        diff: Vec::new(),
        new_read: Vec::new(),
        naive: Vec::new(),
    };
    for i in 0..rounds {
        // The floor.
        let (_, _, notified) = observer.get_and_watch_children(&dir).await?;
        let started = Instant::now();
        let name = create(writer, &dir, &member_data(i)).await?;
        notified.changed().await;
        f.floor.push(started.elapsed());
        // Let our watch see it come and go, so that it is idle for its round.
        wait_for(&mut changes, &name, true).await?;
        writer.delete(&format!("{dir}/{name}"), None).await?;
        wait_for(&mut changes, &name, false).await?;

        // One listing of the quiet set, raw.
        let started = Instant::now();
        writer.get_children(&dir).await?;
        f.listing.push(started.elapsed());

        // serversets.
        reset_fired();
        let started = Instant::now();
        let name = create(writer, &dir, &member_data(i)).await?;
        wait_for(&mut changes, &name, true).await?;
        let visible = Instant::now();
        f.ours.push(visible - started);
        if let Some(fired) = fired() {
            f.fired.push(fired.saturating_duration_since(started));
        }
        writer.delete(&format!("{dir}/{name}"), None).await?;
        wait_for(&mut changes, &name, false).await?;
    }
    drop(changes);
    drop(watch);

    // Without our watch listening (it would re-list at the same moment).
    for i in 0..rounds {
        // The least an incremental watcher on a one-shot child watch does:
        // notified, re-list (re-arming), find the new name, read it.
        let (names, _, notified) = observer.get_and_watch_children(&dir).await?;
        let known: HashSet<String> = names.into_iter().collect();
        let started = Instant::now();
        let name = create(writer, &dir, &member_data(i)).await?;
        notified.changed().await;
        let at_notified = Instant::now();
        let (names, _, _) = observer.get_and_watch_children(&dir).await?;
        let at_listed = Instant::now();
        let new: Vec<&String> = names.iter().filter(|n| !known.contains(*n)).collect();
        let at_diffed = Instant::now();
        for n in new {
            let (data, _) = observer.get_data(&format!("{dir}/{n}")).await?;
            codec::decode(&data)?;
        }
        let at_read = Instant::now();
        f.incremental.push(at_read - started);
        f.relist.push(at_listed - at_notified);
        f.diff.push(at_diffed - at_listed);
        f.new_read.push(at_read - at_diffed);
        writer.delete(&format!("{dir}/{name}"), None).await?;
    }

    let naive_rounds = if size >= 10_000 {
        rounds.min(10)
    } else {
        rounds
    };
    f.naive = measure_naive(&ctx.connect, writer, &dir, naive_rounds).await?;
    Ok(f)
}

/// Waits until the change stream adds (or removes) `name`.
async fn wait_for(
    changes: &mut serversets::Changes,
    name: &str,
    added: bool,
) -> Result<(), BoxError> {
    loop {
        let change = tokio::time::timeout(Duration::from_secs(30), changes.next())
            .await
            .map_err(|_| format!("{name} not seen within 30 s"))?
            .ok_or("watch ended")?;
        let list = if added {
            &change.added
        } else {
            &change.removed
        };
        if list.iter().any(|e| e.name == name) {
            return Ok(());
        }
    }
}

/// A naive watcher: on every notification, list and re-read every member.
async fn measure_naive(
    connect: &str,
    writer: &zk::Client,
    dir: &str,
    rounds: usize,
) -> Result<Vec<Duration>, BoxError> {
    let reader = support::raw_client(connect).await?;
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

/// The p50, p99 and initial load rows of one size.
fn size_rows(f: &Figures) -> [Row; 3] {
    let size = f.size;
    let (ours50, floor50, naive50) = (p50(&f.ours), p50(&f.floor), p50(&f.naive));
    let p50_row = Row::info(
        format!("member created -> visible, {size} members, p50"),
        ours50,
        "ms",
    )
    .against("ZooKeeper floor", floor50);
    let ratio = p50_row.ratio.unwrap_or(f64::INFINITY);
    let p50_row = also(p50_row, "raw incremental", p50(&f.incremental));
    let p50_row = also(p50_row, "naive re-read", naive50).target("≤ 2x floor", ratio <= 2.0);
    let p99_row = Row::info(
        format!("member created -> visible, {size} members, p99"),
        p99(&f.ours),
        "ms",
    )
    .against("ZooKeeper floor", p99(&f.floor));
    let p99_row = also(p99_row, "raw incremental", p99(&f.incremental));
    let p99_row = also(p99_row, "naive re-read", p99(&f.naive));
    let load = support::median(&f.loads.iter().map(|d| ms(*d)).collect::<Vec<_>>());
    let mut load_row = Row::info(format!("initial load, {size} members"), load, "ms")
        .against("naive re-read of the set", naive50);
    if size >= 10_000 {
        load_row = load_row.target("< 150 ms", load < 150.0);
    }
    [p50_row, p99_row, load_row]
}

/// Where one change's time goes at the largest size (p50s).
fn phase_rows(f: &Figures) -> Vec<Row> {
    let size = f.size;
    let ours50 = p50(&f.ours);
    let floor50 = p50(&f.floor);
    let incremental50 = p50(&f.incremental);
    vec![
        Row::info(
            format!("at {size}: create -> our watch notified, p50"),
            p50(&f.fired),
            "ms",
        )
        .against("ZooKeeper floor", floor50),
        Row::info(
            format!("at {size}: raw incremental watcher (notified, re-list, find the new name, read it), p50"),
            incremental50,
            "ms",
        )
        .against("ZooKeeper floor", floor50),
        Row::info(
            format!("at {size}: its re-listing, right after the change, p50"),
            p50(&f.relist),
            "ms",
        )
        .against("the same listing on a quiet set", p50(&f.listing)),
        Row::info(
            format!("at {size}: its search for the new name (HashSet of {size}), p50"),
            p50(&f.diff),
            "ms",
        )
        .against("raw incremental total", incremental50),
        Row::info(
            format!("at {size}: its read of the new member, p50"),
            p50(&f.new_read),
            "ms",
        )
        .against("raw incremental total", incremental50),
        Row::info(
            format!("at {size}: serversets, p50"),
            ours50,
            "ms",
        )
        .against("raw incremental watcher", incremental50),
    ]
}

/// Adds a second reference (text only) to a row.
fn also(mut row: Row, label: &str, value: f64) -> Row {
    row.reference = format!(
        "{}; {label} {}",
        row.reference,
        support::show(value, row.unit)
    );
    row
}
