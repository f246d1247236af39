//! Scale: the persistent watch engine against the one-shot one, and both
//! against ZooKeeper's own notification floor, from 100 to 100,000
//! members (`--quick`: 100 and 2,000; 10,000 for the large-set figures).
//!
//! 1. Join -> visible and leave -> visible (p50), at each size, for both
//!    engines. Per round, one create and one delete by a writer session;
//!    each is timed from the request's start twice: until our watch's
//!    change stream adds (removes) the member, and until ZooKeeper's floor,
//!    a raw `zookeeper-client` session of its own with a persistent
//!    recursive watch on the set, gets the `NodeCreated` (`NodeDeleted`)
//!    event. At 10,000 and 100,000 members, 10 other watchers of the
//!    engine under test follow the set too (load), each a process of its
//!    own (this binary with the hidden flag [`WATCHER_FLAG`], as other
//!    watchers would be: in this process their engines' work would queue
//!    with the timed tasks on the runtime's two workers). Every watcher has
//!    seen each change before the next one. At 100,000 the same runs once
//!    more without the other watchers (rows without targets: what the
//!    load adds). Then, at 10,000: back-to-back churn, each join or leave
//!    sent as soon as the previous one is visible to our watch, against
//!    the same churn gated by the floor watcher, in alternating blocks.
//! 2. Bytes the server sends one watcher per change: the 10 other
//!    watchers connect through one counting [`testkit::Proxy`]; N changes
//!    (half joins, half leaves), each awaited until all 10 report it; the
//!    proxy's count of bytes to them, over N and 10.
//! 3. Ensemble cost: 50 watcher processes (`--quick`: 10) on 10,000
//!    members (`--quick`: 2,000), through one counting proxy, 100 changes
//!    (`--quick`: 20), each awaited until every process reported the new
//!    size: ZooKeeper's CPU time (utime + stime of its `java` process, from
//!    `/proc/PID/stat`) and the bytes sent to the watchers.
//! 4. At 100,000 members (`--quick`: 10,000): a persistent watch's initial
//!    load against a raw load (one listing plus multi-reads of 500
//!    members, all in flight; one listing alone is shown too), the resident
//!    memory of a watcher process (the memory probe, against the naive
//!    watcher), and a reconnection with nothing changed (the proxy cuts the
//!    connection): the listings and member reads it takes.
//!
//! The sets are built once (multi-op creates) and shared by the
//! scenarios. After each scenario, every watcher (ours and the processes)
//! and the set itself (one raw listing) must hold as many members as the
//! writer left there.

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serversets::{Client, ServerSetPath, Watch, WatchEngine};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zookeeper_client as zk;

use crate::memory;
use crate::support::{self, member_data, ms, p50, p99, BoxError, Row};
use crate::Context;

/// The hidden flag that makes the binary a watcher process of the
/// ensemble scenario: `--scale-watcher persistent|oneshot CONNECT PATH`.
/// It prints `ready LEN` once loaded, then `n LEN` per change, until its
/// stdin closes.
pub const WATCHER_FLAG: &str = "--scale-watcher";

/// Both engines, the one with targets first.
const ENGINES: [WatchEngine; 2] = [WatchEngine::Persistent, WatchEngine::OneShot];

/// How long any one wait may take before the scenario fails.
const WAIT: Duration = Duration::from_secs(60);

/// How often snapshots and statistics are polled.
const POLL: Duration = Duration::from_millis(10);

/// The other watchers present at the sizes with load.
const LOAD_WATCHERS: usize = 10;

/// Session timeout of every session here: generous, so that a busy
/// machine (the one-shot engine at 100,000 members) expires none.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// What one set size runs.
struct SizePlan {
    size: usize,
    /// Other watchers of the engine under test (0 or [`LOAD_WATCHERS`]).
    watchers: usize,
    /// Join/leave rounds, per engine (as in [`ENGINES`]).
    rounds: [usize; 2],
    /// Changes of the bytes phase, per engine (0: none).
    bytes_changes: [usize; 2],
    /// Back-to-back changes per gate and engine (0: no churn here).
    churn: usize,
    /// Whether the persistent engine's rows have the targets
    /// (the extra run at 100,000 without other watchers has none: it
    /// shows what the load adds).
    targeted: bool,
}

struct Plan {
    sizes: Vec<SizePlan>,
    processes: usize,
    ensemble_size: usize,
    ensemble_changes: usize,
    large: usize,
    load_rounds: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                sizes: vec![
                    SizePlan {
                        size: 100,
                        watchers: 0,
                        rounds: [50, 30],
                        bytes_changes: [0, 0],
                        churn: 0,
                        targeted: true,
                    },
                    SizePlan {
                        size: 2000,
                        watchers: LOAD_WATCHERS,
                        rounds: [50, 30],
                        bytes_changes: [20, 10],
                        churn: 40,
                        targeted: true,
                    },
                ],
                processes: 10,
                ensemble_size: 2000,
                ensemble_changes: 20,
                large: 10_000,
                load_rounds: 2,
            }
        } else {
            Plan {
                sizes: vec![
                    SizePlan {
                        size: 100,
                        watchers: 0,
                        rounds: [200, 100],
                        bytes_changes: [0, 0],
                        churn: 0,
                        targeted: true,
                    },
                    SizePlan {
                        size: 10_000,
                        watchers: LOAD_WATCHERS,
                        rounds: [200, 60],
                        bytes_changes: [100, 20],
                        churn: 200,
                        targeted: true,
                    },
                    SizePlan {
                        size: 100_000,
                        watchers: 0,
                        rounds: [100, 10],
                        bytes_changes: [0, 0],
                        churn: 0,
                        targeted: false,
                    },
                    SizePlan {
                        size: 100_000,
                        watchers: LOAD_WATCHERS,
                        rounds: [200, 10],
                        bytes_changes: [100, 6],
                        churn: 0,
                        targeted: true,
                    },
                ],
                processes: 50,
                ensemble_size: 10_000,
                ensemble_changes: 100,
                large: 100_000,
                load_rounds: 5,
            }
        }
    }
}

/// The set of `size` members.
fn set_dir(size: usize) -> String {
    format!("/bench/scale/set{size}")
}

fn engine_name(engine: WatchEngine) -> &'static str {
    match engine {
        WatchEngine::Persistent => "persistent",
        WatchEngine::OneShot => "one-shot",
        _ => "other",
    }
}

/// The argument the watcher processes take.
fn engine_arg(engine: WatchEngine) -> &'static str {
    match engine {
        WatchEngine::OneShot => "oneshot",
        _ => "persistent",
    }
}

fn parse_engine(arg: &str) -> Result<WatchEngine, BoxError> {
    match arg {
        "persistent" => Ok(WatchEngine::Persistent),
        "oneshot" => Ok(WatchEngine::OneShot),
        other => Err(format!("unknown engine {other:?} (persistent or oneshot)").into()),
    }
}

/// 100000 -> "100,000".
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub async fn run(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let plan = Plan::new(ctx.quick);
    let writer = raw_session(&ctx.connect).await?;
    let mut sizes: Vec<usize> = plan.sizes.iter().map(|s| s.size).collect();
    sizes.extend([plan.ensemble_size, plan.large]);
    sizes.sort_unstable();
    sizes.dedup();
    for &size in &sizes {
        let started = Instant::now();
        support::populate_multi(&writer, &set_dir(size), size).await?;
        eprintln!(
            "  populated {} members in {:.1} s",
            count(size),
            started.elapsed().as_secs_f64()
        );
    }

    let mut latency = Vec::new();
    let mut churn = Vec::new();
    let mut bytes = Vec::new();
    for size_plan in &plan.sizes {
        let mut figures = Vec::new();
        for (e, engine) in ENGINES.into_iter().enumerate() {
            let started = Instant::now();
            figures.push(measure_size(ctx, &writer, size_plan, e, engine).await?);
            eprintln!(
                "  {} members, {}: {:.1} s",
                count(size_plan.size),
                engine_name(engine),
                started.elapsed().as_secs_f64()
            );
        }
        latency.extend(latency_rows(size_plan, &figures));
        churn.extend(churn_rows(size_plan, &figures));
        bytes.extend(bytes_rows(size_plan, &figures));
    }

    let mut ensembles = Vec::new();
    for engine in ENGINES {
        let started = Instant::now();
        ensembles.push(ensemble(ctx, &writer, &plan, engine).await?);
        eprintln!(
            "  ensemble, {}: {:.1} s",
            engine_name(engine),
            started.elapsed().as_secs_f64()
        );
    }
    let started = Instant::now();
    let large_rows = large(ctx, &writer, &plan).await?;
    eprintln!(
        "  {} members: {:.1} s",
        count(plan.large),
        started.elapsed().as_secs_f64()
    );

    let mut rows = latency;
    rows.extend(churn);
    rows.extend(bytes);
    rows.extend(ensemble_rows(&plan, &ensembles));
    rows.extend(large_rows);
    drop(writer);
    Ok(rows)
}

/// A raw session with [`SESSION_TIMEOUT`].
async fn raw_session(connect: &str) -> Result<zk::Client, BoxError> {
    zk::Client::connector()
        .with_session_timeout(SESSION_TIMEOUT)
        .connect(connect)
        .await
        .map_err(|e| format!("connecting to ZooKeeper at {connect}: {e}").into())
}

/// A serversets client with `engine`.
async fn client(connect: &str, engine: WatchEngine) -> Result<Client, BoxError> {
    Ok(Client::builder(connect)
        .watch_engine(engine)
        .session_timeout(SESSION_TIMEOUT)
        .connect_timeout(WAIT)
        .connect()
        .await?)
}

/// A watch of `path` that must run `engine` and hold `size` members.
async fn watch(
    client: &Client,
    path: &ServerSetPath,
    engine: WatchEngine,
    size: usize,
) -> Result<Watch, BoxError> {
    let watch = client.watch(path).await?;
    if watch.engine() != engine {
        return Err(format!(
            "asked for the {} engine, the watch of {path} runs {}",
            engine_name(engine),
            engine_name(watch.engine())
        )
        .into());
    }
    if watch.current().len() != size {
        return Err(format!(
            "the watch of {path} loaded {} of {size} members",
            watch.current().len()
        )
        .into());
    }
    Ok(watch)
}

/// Aborts a task when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A change as our watch's stream gave it, and when.
struct Seen {
    at: Instant,
    added: Vec<String>,
    removed: Vec<String>,
}

/// A watch event as the floor session got it, and when.
struct FloorEvent {
    at: Instant,
    /// For a member created while [`Observers::read_joins`] is on: when
    /// the floor session had read it, right after the event (the least a
    /// watcher can do to know a joining endpoint).
    read_at: Option<Instant>,
    kind: zk::EventType,
    path: String,
    /// A session event with a terminal state: nothing follows.
    terminated: bool,
}

/// Timestamps what our watch's change stream and the floor's persistent
/// watch yield, as they yield it, in tasks of their own.
struct Observers {
    ours: mpsc::UnboundedReceiver<Seen>,
    floor: mpsc::UnboundedReceiver<FloorEvent>,
    /// Whether the floor session reads each member it sees created.
    read_joins: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _tasks: [Task; 2],
}

impl Observers {
    async fn start(watch: &Watch, floor: &zk::Client, dir: &str) -> Result<Observers, BoxError> {
        let mut watcher = floor
            .watch(dir, zk::AddWatchMode::PersistentRecursive)
            .await
            .map_err(|e| format!("the floor's persistent watch on {dir}: {e}"))?;
        let (floor_tx, floor_rx) = mpsc::unbounded_channel();
        let read_joins = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reading = std::sync::Arc::clone(&read_joins);
        let reader = floor.clone();
        let floor_task = tokio::spawn(async move {
            loop {
                let event = watcher.changed().await;
                let at = Instant::now();
                let terminated = event.event_type == zk::EventType::Session
                    && event.session_state.is_terminated();
                let read_at = if event.event_type == zk::EventType::NodeCreated
                    && reading.load(std::sync::atomic::Ordering::Relaxed)
                {
                    match reader.get_data(&event.path).await {
                        Ok(_) => Some(Instant::now()),
                        Err(_) => None,
                    }
                } else {
                    None
                };
                let sent = floor_tx.send(FloorEvent {
                    at,
                    read_at,
                    kind: event.event_type,
                    path: event.path,
                    terminated,
                });
                // Never poll the watcher after a terminal session event.
                if sent.is_err() || terminated {
                    return;
                }
            }
        });
        let mut changes = watch.changes();
        let (ours_tx, ours_rx) = mpsc::unbounded_channel();
        let ours_task = tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                let at = Instant::now();
                let names = |entries: &[std::sync::Arc<serversets::Entry>]| {
                    entries.iter().map(|e| e.name.clone()).collect()
                };
                let seen = Seen {
                    at,
                    added: names(&change.added),
                    removed: names(&change.removed),
                };
                if ours_tx.send(seen).is_err() {
                    return;
                }
            }
        });
        Ok(Observers {
            ours: ours_rx,
            floor: floor_rx,
            read_joins,
            _tasks: [Task(floor_task), Task(ours_task)],
        })
    }

    /// When our change stream first added (or removed) `name`.
    async fn ours_sees(&mut self, name: &str, added: bool) -> Result<Instant, BoxError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = tokio::time::timeout_at(deadline, self.ours.recv())
                .await
                .map_err(|_| format!("our watch did not show {name} within {WAIT:?}"))?
                .ok_or("our watch's change stream ended")?;
            let list = if added { &seen.added } else { &seen.removed };
            if list.iter().any(|n| n == name) {
                return Ok(seen.at);
            }
        }
    }

    /// When the floor session got the `kind` event of `path`.
    async fn floor_sees(&mut self, path: &str, kind: zk::EventType) -> Result<Instant, BoxError> {
        Ok(self.floor_event(path, kind).await?.at)
    }

    /// The floor session's `kind` event of `path`.
    async fn floor_event(
        &mut self,
        path: &str,
        kind: zk::EventType,
    ) -> Result<FloorEvent, BoxError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.floor.recv())
                .await
                .map_err(|_| format!("the floor watcher got no {kind} of {path} within {WAIT:?}"))?
                .ok_or("the floor watcher ended")?;
            if event.terminated {
                return Err("the floor watcher's session ended".into());
            }
            if event.kind == kind && event.path == path {
                return Ok(event);
            }
        }
    }

    /// Waits for the event of `op` on whichever side `gate` names.
    async fn sees(&mut self, gate: Gate, dir: &str, op: &Op) -> Result<Instant, BoxError> {
        match gate {
            Gate::Ours => self.ours_sees(&op.name, op.join).await,
            Gate::Floor => self.floor_sees(&op.path(dir), op.kind()).await,
        }
    }
}

/// Who gates back-to-back churn.
#[derive(Clone, Copy)]
enum Gate {
    Ours,
    Floor,
}

/// One join or leave by the writer.
struct Op {
    join: bool,
    name: String,
    started: Instant,
}

impl Op {
    fn path(&self, dir: &str) -> String {
        format!("{dir}/{}", self.name)
    }

    fn kind(&self) -> zk::EventType {
        if self.join {
            zk::EventType::NodeCreated
        } else {
            zk::EventType::NodeDeleted
        }
    }
}

/// Writes joins and leaves, keeping the truth: how many members the set has.
struct Writer<'a> {
    zk: &'a zk::Client,
    dir: String,
    truth: usize,
    /// Data index of the next join (beyond the populated members).
    next: usize,
    /// Members joined here and not left yet, oldest first.
    joined: Vec<String>,
}

impl<'a> Writer<'a> {
    fn new(zk: &'a zk::Client, size: usize) -> Writer<'a> {
        Writer {
            zk,
            dir: set_dir(size),
            truth: size,
            next: size + 1_000_000,
            joined: Vec::new(),
        }
    }

    async fn join(&mut self) -> Result<Op, BoxError> {
        let data = member_data(self.next);
        self.next += 1;
        let started = Instant::now();
        let name = support::create(self.zk, &self.dir, &data).await?;
        self.truth += 1;
        self.joined.push(name.clone());
        Ok(Op {
            join: true,
            name,
            started,
        })
    }

    /// Deletes the member joined last.
    async fn leave(&mut self) -> Result<Op, BoxError> {
        let name = self.joined.pop().ok_or("no member of ours to delete")?;
        let path = format!("{}/{name}", self.dir);
        let started = Instant::now();
        self.zk
            .delete(&path, None)
            .await
            .map_err(|e| format!("deleting {path}: {e}"))?;
        self.truth -= 1;
        Ok(Op {
            join: false,
            name,
            started,
        })
    }

    /// A join when `k` is even, else a leave.
    async fn step(&mut self, k: usize) -> Result<Op, BoxError> {
        if k.is_multiple_of(2) {
            self.join().await
        } else {
            self.leave().await
        }
    }

    /// Fails unless ZooKeeper holds `truth` members (one raw listing).
    async fn check(&self) -> Result<(), BoxError> {
        let names = self.zk.list_children(&self.dir).await?;
        if names.len() != self.truth {
            return Err(format!(
                "{} holds {} members, the writer expected {}",
                self.dir,
                names.len(),
                self.truth
            )
            .into());
        }
        Ok(())
    }
}

/// Waits until the watch holds `truth` members.
async fn settle(watch: &Watch, truth: usize) -> Result<(), BoxError> {
    let deadline = Instant::now() + WAIT;
    while watch.current().len() != truth {
        if Instant::now() > deadline {
            return Err(format!(
                "a watch of {} holds {} members, the set {truth}, after {WAIT:?}",
                watch.path(),
                watch.current().len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// What one size gives with one engine.
struct SizeFigures {
    join_ours: Vec<Duration>,
    join_floor: Vec<Duration>,
    /// The floor's notification plus its read of the new member.
    join_floor_read: Vec<Duration>,
    leave_ours: Vec<Duration>,
    leave_floor: Vec<Duration>,
    churn_ours: Vec<Duration>,
    churn_floor: Vec<Duration>,
    /// Bytes to one watcher per change, and the changes counted.
    bytes: Option<(f64, usize)>,
    /// CPU time of one other watcher process per change in that phase, ms.
    watcher_cpu: Option<f64>,
}

async fn measure_size(
    ctx: &Context,
    zk: &zk::Client,
    plan: &SizePlan,
    e: usize,
    engine: WatchEngine,
) -> Result<SizeFigures, BoxError> {
    let size = plan.size;
    let mut writer = Writer::new(zk, size);
    let dir = writer.dir.clone();
    let path = ServerSetPath::new(&dir)?;

    // The other watchers: processes of their own (as they would be), all
    // through one counting proxy.
    let proxy = testkit::Proxy::start(ctx.zookeeper.addr())?;
    let mut others = Processes::spawn(plan.watchers, engine, &proxy.endpoint(), &dir)?;
    others.all_report(size).await?;
    let ours_client = client(&ctx.connect, engine).await?;
    let ours = watch(&ours_client, &path, engine, size).await?;
    let floor = raw_session(&ctx.connect).await?;
    let mut observers = Observers::start(&ours, &floor, &dir).await?;

    let mut f = SizeFigures {
        join_ours: Vec::new(),
        join_floor: Vec::new(),
        join_floor_read: Vec::new(),
        leave_ours: Vec::new(),
        leave_floor: Vec::new(),
        churn_ours: Vec::new(),
        churn_floor: Vec::new(),
        bytes: None,
        watcher_cpu: None,
    };

    // Join and leave, every watcher up to date before the next change.
    observers
        .read_joins
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..plan.rounds[e] {
        for join in [true, false] {
            let op = if join {
                writer.join().await?
            } else {
                writer.leave().await?
            };
            let ours_at = observers.ours_sees(&op.name, join).await?;
            let floor = observers.floor_event(&op.path(&dir), op.kind()).await?;
            let floor_at = floor.at;
            if let Some(read_at) = floor.read_at {
                f.join_floor_read
                    .push(read_at.saturating_duration_since(op.started));
            }
            let (o, fl) = if join {
                (&mut f.join_ours, &mut f.join_floor)
            } else {
                (&mut f.leave_ours, &mut f.leave_floor)
            };
            o.push(ours_at.saturating_duration_since(op.started));
            fl.push(floor_at.saturating_duration_since(op.started));
            others.all_report(writer.truth).await?;
        }
    }

    observers
        .read_joins
        .store(false, std::sync::atomic::Ordering::Relaxed);

    // Back-to-back churn, in blocks gated alternately by our watch and by
    // the floor. After each block, two marker members: the churn never
    // took the set that high, so a watcher that shows both has seen every
    // change before them; once they are gone the next block starts quiet.
    if plan.churn > 0 {
        let block = plan.churn.min(20);
        let blocks = plan.churn.div_ceil(block);
        for _ in 0..blocks {
            for gate in [Gate::Ours, Gate::Floor] {
                for k in 0..block {
                    let op = writer.step(k).await?;
                    let at = observers.sees(gate, &dir, &op).await?;
                    let times = match gate {
                        Gate::Ours => &mut f.churn_ours,
                        Gate::Floor => &mut f.churn_floor,
                    };
                    times.push(at.saturating_duration_since(op.started));
                }
                while !writer.joined.is_empty() {
                    writer.leave().await?;
                }
                for _ in 0..2 {
                    let marker = writer.join().await?;
                    observers
                        .floor_sees(&marker.path(&dir), marker.kind())
                        .await?;
                }
                settle(&ours, writer.truth).await?;
                others.all_report(writer.truth).await?;
                for _ in 0..2 {
                    let marker = writer.leave().await?;
                    observers
                        .floor_sees(&marker.path(&dir), marker.kind())
                        .await?;
                }
                settle(&ours, writer.truth).await?;
                others.all_report(writer.truth).await?;
            }
        }
    }

    // Bytes to the other watchers per change.
    let changes = plan.bytes_changes[e];
    if plan.watchers > 0 && changes > 0 {
        let before = proxy.bytes_to_clients();
        let cpu_before = others.cpu_ticks()?;
        for k in 0..changes {
            writer.step(k).await?;
            others.all_report(writer.truth).await?;
        }
        while !writer.joined.is_empty() {
            writer.leave().await?;
            others.all_report(writer.truth).await?;
        }
        let counted = changes + changes % 2;
        let sent = proxy.bytes_to_clients().saturating_sub(before);
        f.bytes = Some((sent as f64 / counted as f64 / plan.watchers as f64, counted));
        let cpu = others.cpu_ticks()?.saturating_sub(cpu_before);
        f.watcher_cpu =
            Some(cpu as f64 / clock_ticks()? * 1e3 / counted as f64 / plan.watchers as f64);
    }

    // Every value checked.
    settle(&ours, writer.truth).await?;
    others.all_report(writer.truth).await?;
    writer.check().await?;
    if writer.truth != size {
        return Err(format!("{dir} ended with {} members, not {size}", writer.truth).into());
    }
    others.stop().await;
    drop(observers);
    drop(ours);
    ours_client.close().await;
    drop(floor);
    drop(proxy);
    Ok(f)
}

fn latency_rows(plan: &SizePlan, figures: &[SizeFigures]) -> Vec<Row> {
    let load = if plan.watchers > 0 {
        format!(", {} other watchers", plan.watchers)
    } else if !plan.targeted {
        ", no other watchers".to_owned()
    } else {
        String::new()
    };
    let mut rows = Vec::new();
    for join in [true, false] {
        for (e, f) in figures.iter().enumerate() {
            let engine = ENGINES[e];
            let (ours, floor) = if join {
                (&f.join_ours, &f.join_floor)
            } else {
                (&f.leave_ours, &f.leave_floor)
            };
            let what = if join { "join" } else { "leave" };
            let row = Row::info(
                format!(
                    "{what} -> visible, {} members{load}, {}, p50 ({} rounds)",
                    count(plan.size),
                    engine_name(engine),
                    ours.len()
                ),
                p50(ours),
                "ms",
            )
            .against("ZooKeeper floor", p50(floor))
            .figure_text(format!("{:.2} ms (p99 {:.2})", p50(ours), p99(ours)));
            let row = if join && !f.join_floor_read.is_empty() {
                let text = format!(
                    "{}; floor + one read of the member {:.2} ms",
                    row.reference,
                    p50(&f.join_floor_read)
                );
                row.reference_text(text)
            } else {
                row
            };
            let row = if engine == WatchEngine::Persistent && plan.targeted {
                let ratio = row.ratio.unwrap_or(f64::INFINITY);
                row.target("≤ 1.5x floor", ratio <= 1.5)
            } else {
                row
            };
            rows.push(row);
            if join && engine == WatchEngine::Persistent && !f.join_floor_read.is_empty() {
                // The least any watcher does to know a joining endpoint:
                // ZooKeeper's notification names the node, not its data.
                rows.push(
                    Row::info(
                        format!(
                            "join -> visible, {} members{load}, persistent, against the floor + one read",
                            count(plan.size)
                        ),
                        p50(ours),
                        "ms",
                    )
                    .against("notification + read of the member", p50(&f.join_floor_read)),
                );
            }
        }
    }
    rows
}

fn churn_rows(plan: &SizePlan, figures: &[SizeFigures]) -> Vec<Row> {
    if plan.churn == 0 {
        return Vec::new();
    }
    figures
        .iter()
        .enumerate()
        .map(|(e, f)| {
            let engine = ENGINES[e];
            let row = Row::info(
                format!(
                    "back-to-back churn, {} members, {} other watchers, {}, p50 per change ({} changes)",
                    count(plan.size),
                    plan.watchers,
                    engine_name(engine),
                    f.churn_ours.len()
                ),
                p50(&f.churn_ours),
                "ms",
            )
            .against("ZooKeeper floor, same churn", p50(&f.churn_floor));
            if engine == WatchEngine::Persistent {
                let ratio = row.ratio.unwrap_or(f64::INFINITY);
                row.target("≤ 2x floor", ratio <= 2.0)
            } else {
                row
            }
        })
        .collect()
}

fn bytes_rows(plan: &SizePlan, figures: &[SizeFigures]) -> Vec<Row> {
    let (Some(Some((ours, n))), Some(Some((oneshot, m)))) = (
        figures.first().map(|f| f.bytes),
        figures.get(1).map(|f| f.bytes),
    ) else {
        return Vec::new();
    };
    let row = Row::info(
        format!(
            "bytes the server sends one watcher per change, {} members, {} watchers, persistent ({n} changes)",
            count(plan.size),
            plan.watchers
        ),
        ours,
        "B",
    )
    .against(&format!("one-shot engine ({m} changes)"), oneshot);
    let mut rows = vec![row.target("≤ 2 KB", ours <= 2048.0)];
    if let (Some(Some(ours)), Some(Some(oneshot))) = (
        figures.first().map(|f| f.watcher_cpu),
        figures.get(1).map(|f| f.watcher_cpu),
    ) {
        rows.push(
            Row::info(
                format!(
                    "CPU time of one watcher process per change, {} members, persistent ({n} changes; /proc clock ticks summed over the {} processes)",
                    count(plan.size),
                    plan.watchers
                ),
                ours,
                "ms",
            )
            .against(&format!("one-shot engine ({m} changes)"), oneshot),
        );
    }
    rows
}

/// What the ensemble scenario gives with one engine.
struct EnsembleFigures {
    cpu_seconds: f64,
    bytes: u64,
    /// The watcher processes' own CPU time, all together.
    watchers_cpu_seconds: f64,
}

/// The watcher processes; killed when dropped, whatever happened.
struct Processes {
    children: Vec<tokio::process::Child>,
    /// (process, size it reported; `None`: its stdout ended).
    lines: mpsc::UnboundedReceiver<(usize, Option<usize>)>,
    /// What each reported last.
    last: Vec<Option<usize>>,
    _readers: Vec<Task>,
}

impl Processes {
    fn spawn(
        n: usize,
        engine: WatchEngine,
        connect: &str,
        dir: &str,
    ) -> Result<Processes, BoxError> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let (tx, lines) = mpsc::unbounded_channel();
        let mut processes = Processes {
            children: Vec::with_capacity(n),
            lines,
            last: vec![None; n],
            _readers: Vec::with_capacity(n),
        };
        for i in 0..n {
            let mut child = tokio::process::Command::new(&exe)
                .args([WATCHER_FLAG, engine_arg(engine), connect, dir])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("running {}: {e}", exe.display()))?;
            let stdout = child
                .stdout
                .take()
                .ok_or("a watcher process has no stdout")?;
            processes.children.push(child);
            let tx = tx.clone();
            processes._readers.push(Task(tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let len = line
                        .strip_prefix("ready ")
                        .or_else(|| line.strip_prefix("n "))
                        .and_then(|n| n.trim().parse().ok());
                    if let Some(len) = len {
                        if tx.send((i, Some(len))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((i, None));
            })));
        }
        Ok(processes)
    }

    /// Waits until every process has reported `len` members last.
    async fn all_report(&mut self, len: usize) -> Result<(), BoxError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.last.iter().any(|l| *l != Some(len)) {
            let (i, reported) = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .map_err(|_| {
                    let behind = self.last.iter().filter(|l| **l != Some(len)).count();
                    format!(
                        "{behind} watcher processes did not report {len} members within {WAIT:?}"
                    )
                })?
                .ok_or("the watcher processes' output ended")?;
            match reported {
                Some(n) => {
                    if let Some(last) = self.last.get_mut(i) {
                        *last = Some(n);
                    }
                }
                None => {
                    return Err(format!(
                        "watcher process {i} ended (its error, if any, is on stderr above)"
                    )
                    .into())
                }
            }
        }
        Ok(())
    }

    /// The processes' CPU time so far (user + system, all together), in
    /// clock ticks.
    fn cpu_ticks(&self) -> Result<u64, BoxError> {
        let mut total = 0;
        for child in &self.children {
            let pid = child.id().ok_or("a watcher process has exited")?;
            total += cpu_ticks(pid)?;
        }
        Ok(total)
    }

    /// Kills and reaps every process.
    async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

/// A process's CPU time so far (user + system), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat (Linux only): {e}"))?;
    // Fields after the command name (in parentheses): state is field 3,
    // utime 14, stime 15.
    let (_, rest) = stat
        .rsplit_once(')')
        .ok_or_else(|| format!("no command name in /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, BoxError> {
        fields
            .get(n - 3)
            .ok_or_else(|| format!("/proc/{pid}/stat has no field {n}"))?
            .parse()
            .map_err(|e| format!("/proc/{pid}/stat field {n}: {e}").into())
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub(crate) fn clock_ticks() -> Result<f64, BoxError> {
    let output = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|e| format!("running getconf CLK_TCK: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let ticks: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("getconf CLK_TCK printed {text:?}: {e}"))?;
    if ticks > 0.0 {
        Ok(ticks)
    } else {
        Err(format!("getconf CLK_TCK printed {ticks}").into())
    }
}

async fn ensemble(
    ctx: &Context,
    zk: &zk::Client,
    plan: &Plan,
    engine: WatchEngine,
) -> Result<EnsembleFigures, BoxError> {
    let mut writer = Writer::new(zk, plan.ensemble_size);
    let proxy = testkit::Proxy::start(ctx.zookeeper.addr())?;
    let mut processes = Processes::spawn(plan.processes, engine, &proxy.endpoint(), &writer.dir)?;
    processes.all_report(writer.truth).await?;
    let pid = ctx.zookeeper.pid().ok_or("ZooKeeper is not running")?;
    let ticks = clock_ticks()?;

    let cpu_before = cpu_ticks(pid)?;
    let watchers_before = processes.cpu_ticks()?;
    let bytes_before = proxy.bytes_to_clients();
    for k in 0..plan.ensemble_changes {
        writer.step(k).await?;
        processes.all_report(writer.truth).await?;
    }
    while !writer.joined.is_empty() {
        writer.leave().await?;
        processes.all_report(writer.truth).await?;
    }
    let cpu_after = cpu_ticks(pid)?;
    let watchers_after = processes.cpu_ticks()?;
    let bytes = proxy.bytes_to_clients().saturating_sub(bytes_before);

    processes.stop().await;
    writer.check().await?;
    drop(proxy);
    Ok(EnsembleFigures {
        cpu_seconds: cpu_after.saturating_sub(cpu_before) as f64 / ticks,
        bytes,
        watchers_cpu_seconds: watchers_after.saturating_sub(watchers_before) as f64 / ticks,
    })
}

fn ensemble_rows(plan: &Plan, figures: &[EnsembleFigures]) -> Vec<Row> {
    let (Some(ours), Some(oneshot)) = (figures.first(), figures.get(1)) else {
        return Vec::new();
    };
    let what = format!(
        "{} watcher processes on {} members, {} changes",
        plan.processes,
        count(plan.ensemble_size),
        plan.ensemble_changes
    );
    let mb = |b: u64| b as f64 / 1e6;
    vec![
        Row::info(
            format!("{what}: ZooKeeper CPU time, persistent"),
            ours.cpu_seconds,
            "s",
        )
        .against("one-shot engine", oneshot.cpu_seconds)
        .target("≤ 0.5 s", ours.cpu_seconds <= 0.5),
        Row::info(
            format!("{what}: bytes sent to the watchers, persistent"),
            mb(ours.bytes),
            "MB",
        )
        .against("one-shot engine", mb(oneshot.bytes))
        .figure_text(format!("{:.2} MB", mb(ours.bytes)))
        .target("≤ 10 MB", mb(ours.bytes) <= 10.0),
        Row::info(
            format!("{what}: the watcher processes' own CPU time, persistent"),
            ours.watchers_cpu_seconds,
            "s",
        )
        .against("one-shot engine", oneshot.watchers_cpu_seconds),
    ]
}

/// The initial load, the memory and a reconnection at the largest size.
async fn large(ctx: &Context, zk: &zk::Client, plan: &Plan) -> Result<Vec<Row>, BoxError> {
    let size = plan.large;
    let writer = Writer::new(zk, size);
    let dir = writer.dir.clone();
    let path = ServerSetPath::new(&dir)?;
    let engine = WatchEngine::Persistent;

    // Initial loads, a fresh client each (connected before the clock
    // starts), interleaved with the raw loads.
    let raw = raw_session(&ctx.connect).await?;
    let (mut loads, mut raw_loads, mut listings) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.load_rounds {
        let fresh = client(&ctx.connect, engine).await?;
        let started = Instant::now();
        let loaded = fresh.watch(&path).await?;
        loads.push(started.elapsed());
        if loaded.engine() != engine || loaded.current().len() != size {
            return Err(format!(
                "the initial load ran {} and holds {} of {size} members",
                engine_name(loaded.engine()),
                loaded.current().len()
            )
            .into());
        }
        drop(loaded);
        fresh.close().await;

        let started = Instant::now();
        let names = raw.list_children(&dir).await?;
        listings.push(started.elapsed());
        if names.len() != size {
            return Err(format!("{dir} lists {} of {size} members", names.len()).into());
        }
        let started = Instant::now();
        let read = raw_load(&raw, &dir).await?;
        raw_loads.push(started.elapsed());
        if read != size {
            return Err(format!("the raw load read {read} of {size} members").into());
        }
    }
    drop(raw);
    let load = p50(&loads);
    let mut rows = vec![Row::info(
        format!(
            "initial load of a watch, {} members, persistent, median of {}",
            count(size),
            loads.len()
        ),
        load,
        "ms",
    )
    .against(
        "raw: one listing + multi-reads of 500 members, all in flight",
        p50(&raw_loads),
    )];
    if let Some(row) = rows.last_mut() {
        row.reference = format!(
            "{}; one raw listing alone {:.2} ms",
            row.reference,
            p50(&listings)
        );
        row.target = "≤ 1 s".into();
        row.met = Some(load <= 1000.0);
    }

    // Resident memory, in child processes.
    let ours = memory::spawn_probe("serversets", &ctx.connect, &dir, size).await?;
    let naive = memory::spawn_probe("naive", &ctx.connect, &dir, size).await?;
    let mb = |kb: u64| kb as f64 * 1024.0 / 1e6;
    let above = mb(ours.watching.saturating_sub(ours.empty));
    let naive_above = mb(naive.watching.saturating_sub(naive.empty));
    rows.push(
        Row::info(
            format!(
                "resident memory of a watcher holding {} members, above an empty process",
                count(size)
            ),
            above,
            "MB",
        )
        .against("naive watcher holding the raw data", naive_above)
        .figure_text(format!(
            "{above:.1} MB ({:.0} B per member)",
            ours.watching.saturating_sub(ours.empty) as f64 * 1024.0 / size as f64
        ))
        .target("< 80 MB", above < 80.0),
    );

    // A reconnection with nothing changed.
    let proxy = testkit::Proxy::start(ctx.zookeeper.addr())?;
    let through = client(&proxy.endpoint(), engine).await?;
    let watched = watch(&through, &path, engine, size).await?;
    let before = watched.stats();
    let started = Instant::now();
    proxy.cut();
    let deadline = started + WAIT;
    while watched.stats().listings <= before.listings || !watched.health().is_healthy() {
        if Instant::now() > deadline {
            return Err(format!(
                "no listing after the connection was cut, within {WAIT:?} (health {}, stats {:?})",
                watched.health(),
                watched.stats()
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
    let resynced = started.elapsed();
    // Anything more the reconnection does shows within a quiet half
    // second (a check, not the figure).
    let mut after = watched.stats();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(POLL).await;
        let now = watched.stats();
        if now != after {
            after = now;
            quiet_since = Instant::now();
        }
        if Instant::now() > deadline {
            break;
        }
    }
    settle(&watched, size).await?;
    writer.check().await?;
    let listings = after.listings - before.listings;
    let reads = after.reads - before.reads;
    rows.push(
        Row::info(
            format!(
                "reconnection with nothing changed, {} members: listings, member reads",
                count(size)
            ),
            listings as f64,
            "",
        )
        .figure_text(format!(
            "{listings} listing(s), {reads} reads, {} events (in sync {:.0} ms after the cut)",
            after.events - before.events,
            ms(resynced)
        ))
        .reference_text(format!(
            "initial load: {} listing(s), {} reads",
            before.listings, before.reads
        ))
        .target("1 listing, 0 member reads", listings == 1 && reads == 0),
    );
    drop(watched);
    through.close().await;
    drop(proxy);
    Ok(rows)
}

/// A raw load of the set: one listing, then every member's data with
/// multi-reads of 500, all in flight. Returns how many it read.
async fn raw_load(raw: &zk::Client, dir: &str) -> Result<usize, BoxError> {
    let names = raw.list_children(dir).await?;
    let mut commits = Vec::new();
    for chunk in names.chunks(500) {
        let mut multi = raw.new_multi_reader();
        for name in chunk {
            multi.add_get_data(&format!("{dir}/{name}"))?;
        }
        commits.push(multi.commit());
    }
    let mut read = 0;
    for result in join_all(commits).await {
        read += result?
            .iter()
            .filter(|r| matches!(r, zk::MultiReadResult::Data { .. }))
            .count();
    }
    Ok(read)
}

/// The watcher process: follows the set, prints `ready LEN` once loaded
/// and `n LEN` per change, until its stdin closes.
pub fn watcher(args: &[String]) -> Result<(), BoxError> {
    let [engine, connect, dir] = args else {
        return Err(format!("usage: {WATCHER_FLAG} persistent|oneshot CONNECT PATH").into());
    };
    let engine = parse_engine(engine)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let client = client(connect, engine).await?;
        let watch = client.watch(&ServerSetPath::new(dir.as_str())?).await?;
        if watch.engine() != engine {
            return Err(format!("the watch runs {}", engine_name(watch.engine())).into());
        }
        let mut changes = watch.changes();
        let mut out = std::io::stdout();
        writeln!(out, "ready {}", watch.current().len())?;
        // Stdin is read on a thread of its own (blocking); its end is
        // the signal to stop.
        let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                let mut stdin = std::io::stdin();
                while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
                let _ = closed_tx.send(());
            })?;
        loop {
            tokio::select! {
                change = changes.next() => {
                    let change = change.ok_or("the watch ended")?;
                    writeln!(out, "n {}", change.snapshot.len())?;
                }
                _ = &mut closed => break,
            }
        }
        drop(changes);
        drop(watch);
        client.close().await;
        Ok::<_, BoxError>(())
    });
    runtime.shutdown_background();
    result
}
