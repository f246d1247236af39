//! The discovery gateway (`serversets-gateway`, what `serverset serve`
//! runs) under the loads of its issue, served by a child process of its
//! own (this binary with the hidden flag [`CHILD_FLAG`]) so that its
//! resident memory and CPU time are its own; every request comes from this
//! process over loopback HTTP/1.1.
//!
//! 1. 1,000 Server-Sent Events subscribers on one set of 10 members
//!    (`--quick`: 100): each a task of this process reading its own
//!    `GET /v1/events` stream. Then 20 changes (`--quick`: 5), a member
//!    created by a raw `zookeeper-client` session alternating with its
//!    deletion, each awaited until every subscriber saw its `up` (`down`)
//!    event. Per (subscriber, change): the time from the create (delete)
//!    request's start to the chunk that carried the event, p50 and p99.
//!    Reference: the same change seen by one `serversets` watch in this
//!    process (its change stream). The subscribers' tasks share this
//!    process's two runtime workers, and the machine's two cores with the
//!    gateway and ZooKeeper: their own wake-ups are in the figure.
//! 2. 1,000 TTL instances (`--quick`: 200), `ttl_secs` 10, each created by
//!    a PUT and renewed every 5 s (the renewals spread evenly over the
//!    5 s) for 5 minutes (`--quick`: 20 s); every renewal must answer 200
//!    with `"renewed":true` and the instance's znode. Spurious expiries:
//!    renewals answered 201 (re-created) or 200 for other data, plus
//!    member znodes missing or new between a raw listing of the set at the
//!    start and at the end. ZooKeeper writes during the renewals: the
//!    server's zxid (`srvr`) before and after (every create, delete,
//!    setData and session creation or close moves it; pings do not); the
//!    set's own pzxid and its members' mzxids are checked too. The
//!    gateway's `VmRSS` every 5 s: flat means end ≤ start × 1.1 + 2 MB.
//!    Reference: the renewal PUTs per second sustained, and how many.
//! 3. `GET /v1/members` of a 10,000-member set (`--quick`: 2,000): one
//!    warm-up GET (it starts the gateway's watch; its members must be the
//!    set's), then 200 sequential GETs (`--quick`: 50), each timed until
//!    its whole body is in. Reference: a raw `list_children` of the same
//!    set by a raw session (what any client must at least do), interleaved.
//!
//! The TTL phase runs first, on a gateway that has done nothing else yet
//! (its memory figure is then its own), then the subscribers, then the
//! large set. The gateway process is killed if anything fails (the child
//! handle kills it when dropped).

use std::collections::BTreeSet;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serversets::{Client, ServerSetPath};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use zookeeper_client as zk;

use crate::scale::{clock_ticks, cpu_ticks};
use crate::support::{self, member_data, ms, p50, p99, BoxError, Row};
use crate::Context;

/// The hidden flag that makes the binary the gateway process:
/// `--gateway-child CONNECT PORT`. It serves on 127.0.0.1:PORT until its
/// stdin closes, then stops the gateway and closes its session.
pub const CHILD_FLAG: &str = "--gateway-child";

/// How long any one wait may take before the measurement fails.
const WAIT: Duration = Duration::from_secs(60);

/// Members of the subscribers' set before the changes.
const INITIAL_MEMBERS: usize = 10;

/// Subscribers that connect at a time.
const CONNECT_BATCH: usize = 100;

/// The TTL instances' renewal period and TTL.
const RENEW_EVERY: Duration = Duration::from_secs(5);
const TTL_SECS: u64 = 10;

/// PUTs (and DELETEs) in flight while the instances are created (removed).
const CREATE_IN_FLIGHT: usize = 50;

/// What one run does.
struct Plan {
    subscribers: usize,
    changes: usize,
    instances: usize,
    renew_for: Duration,
    members: usize,
    gets: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                subscribers: 100,
                changes: 5,
                instances: 200,
                renew_for: Duration::from_secs(20),
                members: 2000,
                gets: 50,
            }
        } else {
            Plan {
                subscribers: 1000,
                changes: 20,
                instances: 1000,
                renew_for: Duration::from_secs(300),
                members: 10_000,
                gets: 200,
            }
        }
    }
}

pub async fn run(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let plan = Plan::new(ctx.quick);
    let http = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let raw = support::raw_client(&ctx.connect).await?;
    let gateway = GatewayProcess::start(&ctx.connect, &http).await?;

    let ttl = ttl_phase(ctx, &raw, &http, &gateway, &plan).await?;
    let sse = sse_phase(ctx, &raw, &gateway, &plan).await?;
    let members = members_phase(&raw, &http, &gateway, &plan).await?;
    gateway.stop().await?;
    drop(raw);

    let mut rows = sse_rows(&plan, &sse);
    rows.extend(ttl_rows(&plan, &ttl));
    rows.push(members_row(&plan, &members));
    Ok(rows)
}

/// The gateway process; killed when dropped, whatever happened.
struct GatewayProcess {
    /// Spawned with `kill_on_drop`: dropping it kills the process.
    child: tokio::process::Child,
    pid: u32,
    /// `http://127.0.0.1:PORT`.
    base: String,
}

impl GatewayProcess {
    /// Starts it and waits until `/healthz` answers 200.
    async fn start(connect: &str, http: &reqwest::Client) -> Result<GatewayProcess, BoxError> {
        let port = testkit::free_port()?;
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let child = tokio::process::Command::new(&exe)
            .args([CHILD_FLAG, connect, &port.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        let pid = child.id().ok_or("the gateway process has no pid")?;
        let mut process = GatewayProcess {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}/healthz", process.base);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = process.child.try_wait()? {
                return Err(format!("the gateway process exited ({status}) before serving").into());
            }
            if let Ok(response) = http.get(&url).send().await {
                if response.status() == reqwest::StatusCode::OK {
                    return Ok(process);
                }
            }
            if Instant::now() > deadline {
                return Err(
                    format!("the gateway's {url} did not answer 200 within {WAIT:?}").into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its resident set size, kB.
    fn rss_kb(&self) -> Result<u64, BoxError> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {path} (Linux only): {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in {path}").into())
    }

    /// Its CPU time (user + system), clock ticks.
    fn cpu_ticks(&self) -> Result<u64, BoxError> {
        cpu_ticks(self.pid)
    }

    /// Closes its stdin and waits for a clean exit.
    async fn stop(mut self) -> Result<(), BoxError> {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .map_err(|_| format!("the gateway process did not stop within {WAIT:?}"))??;
        if !status.success() {
            return Err(format!("the gateway process ended with {status}").into());
        }
        Ok(())
    }
}

/// The gateway process: serves until its stdin closes.
pub fn child(args: &[String]) -> Result<(), BoxError> {
    let [connect, port] = args else {
        return Err(format!("usage: {CHILD_FLAG} CONNECT PORT").into());
    };
    let port: u16 = port.parse().map_err(|e| format!("port {port:?}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let client = Client::connect(connect).await?;
        // Stdin is read on a thread of its own (blocking); its end is the
        // signal to stop.
        let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                let mut stdin = std::io::stdin();
                while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
                let _ = closed_tx.send(());
            })?;
        let options =
            serversets_gateway::Options::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        serversets_gateway::run(client.clone(), options, async move {
            let _ = closed.await;
        })
        .await?;
        client.close().await;
        Ok::<_, BoxError>(())
    });
    runtime.shutdown_background();
    result
}

// ---------------------------------------------------------------------
// 1. SSE subscribers

/// What the subscribers and the reference watch report, as they see it.
enum Seen {
    /// A subscriber got its initial `current` after `ups` `up` events.
    Ready {
        i: usize,
        ups: usize,
        current: usize,
    },
    /// An `up` or `down` event of member `name`.
    Event {
        i: usize,
        up: bool,
        name: String,
        at: Instant,
    },
    /// A `current` snapshot after the initial one (the subscriber fell
    /// behind): the names it holds.
    Current {
        i: usize,
        names: Vec<String>,
        at: Instant,
    },
    /// A subscriber's stream ended or failed.
    Ended { i: usize, why: String },
    /// The reference watch's change stream.
    Watch {
        added: Vec<String>,
        removed: Vec<String>,
        at: Instant,
    },
}

struct SseFigures {
    subscribers: usize,
    changes: usize,
    /// Per (subscriber, change).
    seen: Vec<Duration>,
    /// Per change, the reference watch.
    reference: Vec<Duration>,
    /// `current` snapshots instead of `up`/`down` (a subscriber behind).
    snapshots: usize,
    rss_before_kb: u64,
    rss_with_kb: u64,
    /// The gateway's CPU time over the changes, seconds.
    cpu_seconds: f64,
    connect_time: Duration,
}

async fn sse_phase(
    ctx: &Context,
    raw: &zk::Client,
    gateway: &GatewayProcess,
    plan: &Plan,
) -> Result<SseFigures, BoxError> {
    let dir = "/bench/gateway/events";
    support::populate(raw, dir, INITIAL_MEMBERS).await?;
    let path = ServerSetPath::new(dir)?;

    // The reference: one watch in this process.
    let reference = Client::connect(&ctx.connect).await?;
    let watch = reference.watch(&path).await?;
    if watch.current().len() != INITIAL_MEMBERS {
        return Err(format!(
            "the reference watch of {dir} holds {} of {INITIAL_MEMBERS} members",
            watch.current().len()
        )
        .into());
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let mut changes = watch.changes();
    let watch_tx = tx.clone();
    tasks.spawn(async move {
        while let Some(change) = changes.next().await {
            let at = Instant::now();
            let names = |entries: &[std::sync::Arc<serversets::Entry>]| {
                entries.iter().map(|e| e.name.clone()).collect()
            };
            let seen = Seen::Watch {
                added: names(&change.added),
                removed: names(&change.removed),
                at,
            };
            if watch_tx.send(seen).is_err() {
                return;
            }
        }
    });

    // The subscribers: one on its own first (it starts the gateway's
    // watch of the set), then the others in batches.
    let streams = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/v1/events?path={dir}", gateway.base);
    let rss_before_kb = gateway.rss_kb()?;
    let connecting = Instant::now();
    let mut started = 0;
    let mut batch = 1;
    while started < plan.subscribers {
        let end = (started + batch).min(plan.subscribers);
        for i in started..end {
            tasks.spawn(subscriber(i, streams.clone(), url.clone(), tx.clone()));
        }
        await_ready(&mut rx, end - started).await?;
        started = end;
        batch = CONNECT_BATCH;
    }
    let connect_time = connecting.elapsed();
    drop(tx);
    let rss_with_kb = gateway.rss_kb()?;

    // The changes, each seen by every subscriber before the next.
    let n = plan.subscribers;
    let mut figures = SseFigures {
        subscribers: n,
        changes: plan.changes,
        seen: Vec::with_capacity(n * plan.changes),
        reference: Vec::with_capacity(plan.changes),
        snapshots: 0,
        rss_before_kb,
        rss_with_kb,
        cpu_seconds: 0.0,
        connect_time,
    };
    let cpu_before = gateway.cpu_ticks()?;
    let mut joined: Option<String> = None;
    for k in 0..plan.changes {
        let (up, name, begun) = match joined.take() {
            None => {
                let begun = Instant::now();
                let name = support::create(raw, dir, &member_data(1_000_000 + k)).await?;
                joined = Some(name.clone());
                (true, name, begun)
            }
            Some(name) => {
                let begun = Instant::now();
                let member = format!("{dir}/{name}");
                raw.delete(&member, None)
                    .await
                    .map_err(|e| format!("deleting {member}: {e}"))?;
                (false, name, begun)
            }
        };
        await_change(&mut rx, n, up, &name, begun, &mut figures).await?;
    }
    figures.cpu_seconds = gateway.cpu_ticks()?.saturating_sub(cpu_before) as f64 / clock_ticks()?;
    if figures.seen.len() != n * plan.changes || figures.reference.len() != plan.changes {
        return Err(format!(
            "{} of {} subscriber timings, {} of {} reference timings",
            figures.seen.len(),
            n * plan.changes,
            figures.reference.len(),
            plan.changes
        )
        .into());
    }

    // Every stream still up.
    while let Ok(seen) = rx.try_recv() {
        if let Seen::Ended { i, why } = seen {
            return Err(format!("subscriber {i} ended after the changes: {why}").into());
        }
    }
    drop(tasks);
    drop(watch);
    reference.close().await;
    if let Some(name) = joined {
        let member = format!("{dir}/{name}");
        raw.delete(&member, None)
            .await
            .map_err(|e| format!("deleting {member}: {e}"))?;
    }
    Ok(figures)
}

/// Waits until `count` more subscribers are ready, each with the set's
/// initial members.
async fn await_ready(rx: &mut mpsc::UnboundedReceiver<Seen>, count: usize) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut ready = 0;
    while ready < count {
        let seen = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| format!("{} subscribers not ready within {WAIT:?}", count - ready))?
            .ok_or("the subscribers' channel closed")?;
        match seen {
            Seen::Ready { i, ups, current } => {
                if ups != INITIAL_MEMBERS || current != INITIAL_MEMBERS {
                    return Err(format!(
                        "subscriber {i} started with {ups} up events and a current of {current}, \
                         the set has {INITIAL_MEMBERS} members"
                    )
                    .into());
                }
                ready += 1;
            }
            Seen::Ended { i, why } => {
                return Err(format!("subscriber {i} ended before it was ready: {why}").into())
            }
            Seen::Event { i, name, .. } => {
                return Err(format!("subscriber {i} saw {name} change before any change").into())
            }
            Seen::Current { i, .. } => {
                return Err(format!("subscriber {i} got a second current before any change").into())
            }
            Seen::Watch { .. } => {
                return Err("the reference watch saw a change before any change".into())
            }
        }
    }
    Ok(())
}

/// Waits until every subscriber and the reference watch saw member
/// `name` come `up` (or go down); records the times since `begun`.
async fn await_change(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    n: usize,
    up: bool,
    name: &str,
    begun: Instant,
    figures: &mut SseFigures,
) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut pending = vec![true; n];
    let mut left = n;
    let mut reference = false;
    let what = if up { "up" } else { "down" };
    while left > 0 || !reference {
        let seen = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                format!(
                    "{left} subscribers (and the reference watch: {}) did not see {name} {what} within {WAIT:?}",
                    if reference { "saw it" } else { "did not" }
                )
            })?
            .ok_or("the subscribers' channel closed")?;
        // Subscriber `i` saw it at `at`: once only.
        let mut saw = |i: usize, at: Instant| -> Result<(), BoxError> {
            match pending.get_mut(i) {
                Some(p) if *p => {
                    *p = false;
                    left -= 1;
                    figures.seen.push(at.saturating_duration_since(begun));
                    Ok(())
                }
                _ => Err(format!("subscriber {i} saw {name} {what} twice").into()),
            }
        };
        match seen {
            Seen::Event {
                i,
                up: event_up,
                name: event_name,
                at,
            } => {
                if event_up != up || event_name != name {
                    return Err(format!(
                        "subscriber {i} saw {event_name} {}, expected {name} {what}",
                        if event_up { "up" } else { "down" }
                    )
                    .into());
                }
                saw(i, at)?;
            }
            Seen::Current { i, names, at } => {
                if names.iter().any(|n| n == name) != up {
                    return Err(format!(
                        "subscriber {i} got a current of {} members that does not show {name} {what}",
                        names.len()
                    )
                    .into());
                }
                saw(i, at)?;
                figures.snapshots += 1;
            }
            Seen::Watch { added, removed, at } => {
                let (hit, other) = if up {
                    (&added, &removed)
                } else {
                    (&removed, &added)
                };
                if reference || hit.len() != 1 || hit[0] != name || !other.is_empty() {
                    return Err(format!(
                        "the reference watch saw added {added:?}, removed {removed:?}; expected {name} {what}"
                    )
                    .into());
                }
                reference = true;
                figures.reference.push(at.saturating_duration_since(begun));
            }
            Seen::Ready { i, .. } => {
                return Err(format!("subscriber {i} was ready a second time").into())
            }
            Seen::Ended { i, why } => {
                return Err(format!("subscriber {i} ended during the changes: {why}").into())
            }
        }
    }
    Ok(())
}

/// One subscriber: reads the stream and reports what it sees.
async fn subscriber(i: usize, http: reqwest::Client, url: String, tx: mpsc::UnboundedSender<Seen>) {
    let why = match follow(i, &http, &url, &tx).await {
        Ok(()) => "the stream ended".to_owned(),
        Err(e) => e.to_string(),
    };
    let _ = tx.send(Seen::Ended { i, why });
}

/// Reads `url`'s event stream: `event:`, `id:` and `data:` lines, an event
/// per blank line.
async fn follow(
    i: usize,
    http: &reqwest::Client,
    url: &str,
    tx: &mpsc::UnboundedSender<Seen>,
) -> Result<(), BoxError> {
    let mut response = http.get(url).send().await?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("GET {url} answered {}", response.status()).into());
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/event-stream") {
        return Err(format!("GET {url} answered content type {content_type:?}").into());
    }
    let mut buf: Vec<u8> = Vec::new();
    let (mut kind, mut data, mut id) = (String::new(), String::new(), false);
    let mut ups = 0;
    let mut ready = false;
    while let Some(chunk) = response.chunk().await? {
        let at = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = std::str::from_utf8(&line)?.trim_end_matches(['\n', '\r']);
            if !line.is_empty() {
                let field = |name: &str| {
                    line.strip_prefix(name)
                        .map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
                };
                if let Some(v) = field("event:") {
                    kind = v;
                } else if let Some(v) = field("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(&v);
                } else if line.starts_with("id:") {
                    id = true;
                }
                // Comments (the heartbeat) and other fields: nothing.
                continue;
            }
            let (event, payload) = (std::mem::take(&mut kind), std::mem::take(&mut data));
            let had_id = std::mem::replace(&mut id, false);
            if event.is_empty() {
                continue;
            }
            if !had_id {
                return Err(format!("a {event} event without an id: {payload}").into());
            }
            let seen = match event.as_str() {
                "up" | "down" => {
                    let name = member_name(&payload)?;
                    let up = event == "up";
                    if !ready {
                        if !up {
                            return Err(format!("a down event before current: {name}").into());
                        }
                        ups += 1;
                        continue;
                    }
                    Seen::Event { i, up, name, at }
                }
                "current" => {
                    let names = member_names(&payload)?;
                    if !ready {
                        ready = true;
                        Seen::Ready {
                            i,
                            ups,
                            current: names.len(),
                        }
                    } else {
                        Seen::Current { i, names, at }
                    }
                }
                // leader, health
                _ => continue,
            };
            if tx.send(seen).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The `member` of an `up` or `down` event's entry.
fn member_name(payload: &str) -> Result<String, BoxError> {
    let entry: serde_json::Value = serde_json::from_str(payload)?;
    entry
        .get("member")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("an entry without a member name: {payload}").into())
}

/// The members of a `current` event's (or `/v1/members`') array.
fn member_names(payload: &str) -> Result<Vec<String>, BoxError> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(payload)?;
    entries
        .iter()
        .map(|e| {
            e.get("member")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("an entry without a member name: {e}").into())
        })
        .collect()
}

fn sse_rows(plan: &Plan, f: &SseFigures) -> Vec<Row> {
    let what = format!(
        "gateway: {} SSE subscribers on one set, create/delete -> event seen",
        count(f.subscribers)
    );
    let pairs = count(f.seen.len());
    let behind = if f.snapshots > 0 {
        format!("; {} as a current snapshot", f.snapshots)
    } else {
        String::new()
    };
    let mb = |kb: u64| kb as f64 * 1024.0 / 1e6;
    vec![
        Row::info(
            format!("{what}, p50 ({} changes, {pairs} pairs)", f.changes),
            p50(&f.seen),
            "ms",
        )
        .against(
            "one serversets watch in the bench process, p50",
            p50(&f.reference),
        ),
        Row::info(
            format!("{what}, p99 ({} changes, {pairs} pairs)", f.changes),
            p99(&f.seen),
            "ms",
        )
        .figure_text(format!(
            "{:.2} ms (max {:.2}{behind})",
            p99(&f.seen),
            ms(f.seen.iter().copied().max().unwrap_or_default())
        ))
        .reference_text(format!(
            "one serversets watch in the bench process: p99 {:.2} ms",
            p99(&f.reference)
        ))
        .target("p99 ≤ 50 ms", p99(&f.seen) <= 50.0),
        Row::info(
            format!(
                "gateway: its cost with {} SSE subscribers: CPU time per change",
                count(plan.subscribers)
            ),
            f.cpu_seconds * 1e3 / f.changes.max(1) as f64,
            "ms",
        )
        .figure_text(format!(
            "{:.2} ms per change; RSS {:.1} MB with the streams",
            f.cpu_seconds * 1e3 / f.changes.max(1) as f64,
            mb(f.rss_with_kb)
        ))
        .reference_text(format!(
            "RSS {:.1} MB before the streams; all {} connected in {:.2} s",
            mb(f.rss_before_kb),
            count(f.subscribers),
            f.connect_time.as_secs_f64()
        )),
    ]
}

// ---------------------------------------------------------------------
// 2. TTL instances

/// A PUT's answer, checked.
struct PutAnswer {
    status: u16,
    renewed: bool,
    /// The member znode's full path.
    znode: String,
}

struct TtlFigures {
    instances: usize,
    period: Duration,
    renewals: usize,
    /// Renewals answered 201: the instance had expired and was re-created.
    recreated: usize,
    /// Renewals answered 200 not as a renewal, or naming another znode.
    replaced: usize,
    /// Member znodes at the start missing at the end, and new ones.
    missing: usize,
    new: usize,
    zxid_before: u64,
    zxid_after: u64,
    /// The set's pzxid and its members' largest mzxid, unchanged.
    set_untouched: bool,
    /// `VmRSS` every 5 s, kB.
    rss_kb: Vec<u64>,
    create_rate: f64,
    renew_rate: f64,
    /// How late a renewal was sent at worst, after its slot.
    max_late: Duration,
    renew_times: Vec<Duration>,
    /// The gateway's CPU time over the renewals, seconds.
    cpu_seconds: f64,
}

fn instance_url(base: &str, dir: &str, i: usize) -> String {
    format!("{base}/v1/instances/inst-{i}?path={dir}")
}

/// PUTs instance `i` (always the same data).
async fn put(
    http: &reqwest::Client,
    base: &str,
    dir: &str,
    i: usize,
) -> Result<PutAnswer, BoxError> {
    let url = instance_url(base, dir, i);
    let body = serde_json::json!({
        "host": format!("10.1.{}.{}", (i / 256) % 256, i % 256),
        "port": 20_000 + i,
        "ttl_secs": TTL_SECS,
    });
    let response = http
        .put(&url)
        .timeout(Duration::from_secs(10))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("PUT {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.bytes().await?;
    if status != 200 && status != 201 {
        return Err(format!(
            "PUT {url} answered {status}: {}",
            String::from_utf8_lossy(&text)
        )
        .into());
    }
    let answer: serde_json::Value = serde_json::from_slice(&text)?;
    let field = |name: &str| {
        answer
            .get(name)
            .ok_or_else(|| format!("PUT {url}: no {name} in {answer}"))
    };
    let id = field("id")?.as_str();
    if id != Some(format!("inst-{i}").as_str()) {
        return Err(format!("PUT {url} answered for id {id:?}").into());
    }
    let renewed = field("renewed")?
        .as_bool()
        .ok_or_else(|| format!("PUT {url}: renewed is not a boolean in {answer}"))?;
    let znode = field("znode")?
        .as_str()
        .filter(|z| z.starts_with(&format!("{dir}/")))
        .ok_or_else(|| format!("PUT {url}: no member znode of {dir} in {answer}"))?
        .to_owned();
    Ok(PutAnswer {
        status,
        renewed,
        znode,
    })
}

/// The server's last zxid (`srvr`).
fn zxid(ctx: &Context) -> Result<u64, BoxError> {
    let text = ctx.zookeeper.four_letter("srvr")?;
    let hex = text
        .lines()
        .find_map(|l| l.strip_prefix("Zxid:"))
        .ok_or_else(|| format!("no Zxid in srvr's answer: {text:?}"))?
        .trim();
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .map_err(|e| format!("srvr's Zxid {hex:?}: {e}").into())
}

/// The set's children, its pzxid and its members' largest mzxid.
async fn set_state(raw: &zk::Client, dir: &str) -> Result<(BTreeSet<String>, i64, i64), BoxError> {
    let (names, stat) = raw
        .get_children(dir)
        .await
        .map_err(|e| format!("listing {dir}: {e}"))?;
    let reads = names.iter().map(|n| raw.get_data(&format!("{dir}/{n}")));
    let mut mzxid = 0;
    for (name, read) in names.iter().zip(futures::future::join_all(reads).await) {
        let (_, stat) = read.map_err(|e| format!("reading {dir}/{name}: {e}"))?;
        mzxid = mzxid.max(stat.mzxid);
    }
    Ok((names.into_iter().collect(), stat.pzxid, mzxid))
}

async fn ttl_phase(
    ctx: &Context,
    raw: &zk::Client,
    http: &reqwest::Client,
    gateway: &GatewayProcess,
    plan: &Plan,
) -> Result<TtlFigures, BoxError> {
    let dir = "/bench/gateway/instances";
    let n = plan.instances;
    let base = gateway.base.as_str();
    support::mkdir(raw, dir).await?;

    // Create them all.
    let creating = Instant::now();
    let answers: Vec<Result<PutAnswer, BoxError>> = stream::iter(0..n)
        .map(|i| put(http, base, dir, i))
        .buffered(CREATE_IN_FLIGHT)
        .collect()
        .await;
    let create_rate = n as f64 / creating.elapsed().as_secs_f64();
    let mut znodes = Vec::with_capacity(n);
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer?;
        if answer.status != 201 || answer.renewed {
            return Err(format!(
                "creating inst-{i} answered {} with renewed {}",
                answer.status, answer.renewed
            )
            .into());
        }
        znodes.push(answer.znode);
    }
    let (start_names, pzxid_before, mzxid_before) = set_state(raw, dir).await?;
    let created: BTreeSet<String> = znodes
        .iter()
        .filter_map(|z| z.strip_prefix(&format!("{dir}/")).map(str::to_owned))
        .collect();
    if start_names != created || created.len() != n {
        return Err(format!(
            "{dir} holds {} members, the {n} PUTs named {} distinct znodes, {} in common",
            start_names.len(),
            created.len(),
            start_names.intersection(&created).count()
        )
        .into());
    }

    // Renew each every 5 s, spread evenly over the 5 s.
    let rounds = (plan.renew_for.as_secs_f64() / RENEW_EVERY.as_secs_f64()).round() as usize;
    let zxid_before = zxid(ctx)?;
    let cpu_before = gateway.cpu_ticks()?;
    let mut rss_kb = Vec::with_capacity(rounds + 1);
    let mut tasks: JoinSet<Result<(usize, PutAnswer, Duration), BoxError>> = JoinSet::new();
    let mut outcomes = Vec::with_capacity(rounds * n);
    let mut max_late = Duration::ZERO;
    let t0 = tokio::time::Instant::now() + Duration::from_millis(50);
    for k in 0..rounds {
        for i in 0..n {
            let slot = t0 + RENEW_EVERY * k as u32 + RENEW_EVERY.mul_f64(i as f64 / n as f64);
            tokio::time::sleep_until(slot).await;
            max_late = max_late.max(tokio::time::Instant::now().saturating_duration_since(slot));
            if i == 0 {
                rss_kb.push(gateway.rss_kb()?);
            }
            while let Some(done) = tasks.try_join_next() {
                outcomes.push(done??);
            }
            let (http, base) = (http.clone(), base.to_owned());
            tasks.spawn(async move {
                let begun = Instant::now();
                let answer = put(&http, &base, dir, i).await?;
                Ok((i, answer, begun.elapsed()))
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcomes.push(done??);
    }
    tokio::time::sleep_until(t0 + RENEW_EVERY * rounds as u32).await;
    let period = t0.elapsed();
    rss_kb.push(gateway.rss_kb()?);
    let cpu_seconds = gateway.cpu_ticks()?.saturating_sub(cpu_before) as f64 / clock_ticks()?;
    let zxid_after = zxid(ctx)?;
    let (end_names, pzxid_after, mzxid_after) = set_state(raw, dir).await?;

    let (mut recreated, mut replaced) = (0, 0);
    let mut renew_times = Vec::with_capacity(outcomes.len());
    for (i, answer, took) in &outcomes {
        renew_times.push(*took);
        let same_znode = znodes.get(*i) == Some(&answer.znode);
        if answer.status == 201 {
            recreated += 1;
        } else if !answer.renewed || !same_znode {
            replaced += 1;
        }
    }
    if outcomes.len() != rounds * n {
        return Err(format!("{} of {} renewals answered", outcomes.len(), rounds * n).into());
    }

    // Remove them all; the set must end empty.
    let deletes: Vec<Result<(), BoxError>> = stream::iter(0..n)
        .map(|i| async move {
            let url = instance_url(base, dir, i);
            let response = http
                .delete(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::NO_CONTENT {
                return Err(format!("DELETE {url} answered {}", response.status()).into());
            }
            Ok(())
        })
        .buffer_unordered(CREATE_IN_FLIGHT)
        .collect()
        .await;
    for result in deletes {
        result?;
    }
    let left = raw.list_children(dir).await?.len();
    if left != 0 {
        return Err(format!("{dir} holds {left} members after every instance was deleted").into());
    }

    Ok(TtlFigures {
        instances: n,
        period,
        renewals: outcomes.len(),
        recreated,
        replaced,
        missing: start_names.difference(&end_names).count(),
        new: end_names.difference(&start_names).count(),
        zxid_before,
        zxid_after,
        set_untouched: pzxid_before == pzxid_after && mzxid_before == mzxid_after,
        rss_kb,
        create_rate,
        renew_rate: outcomes.len() as f64 / period.as_secs_f64(),
        max_late,
        renew_times,
        cpu_seconds,
    })
}

fn ttl_rows(plan: &Plan, f: &TtlFigures) -> Vec<Row> {
    let what = format!(
        "gateway: {} TTL instances renewed every {} s for {:.0} s",
        count(f.instances),
        RENEW_EVERY.as_secs(),
        plan.renew_for.as_secs_f64()
    );
    let sustained = format!(
        "{} renewals, {:.0} PUT/s sustained (renewal p50 {:.2} ms, p99 {:.2} ms; sent ≤ {:.1} ms late); \
         {} creates at {:.0} PUT/s",
        count(f.renewals),
        f.renew_rate,
        p50(&f.renew_times),
        p99(&f.renew_times),
        ms(f.max_late),
        count(f.instances),
        f.create_rate
    );
    let spurious = f.recreated + f.replaced + f.missing + f.new;
    let writes = f.zxid_after.saturating_sub(f.zxid_before);
    let mb = |kb: u64| kb as f64 * 1024.0 / 1e6;
    let start = f.rss_kb.first().copied().unwrap_or_default();
    let end = f.rss_kb.last().copied().unwrap_or_default();
    let max = f.rss_kb.iter().copied().max().unwrap_or_default();
    // Flat: end ≤ start × 1.1 + 2 MB (2,000 kB).
    let flat = (end as f64) <= start as f64 * 1.1 + 2000.0;
    vec![
        Row::info(format!("{what}: spurious expiries"), spurious as f64, "")
            .figure_text(format!(
                "{spurious} ({} re-created, {} replaced, {} znodes missing, {} new at the end)",
                f.recreated, f.replaced, f.missing, f.new
            ))
            .reference_text(sustained.clone())
            .target("0", spurious == 0),
        Row::info(
            format!("{what}: ZooKeeper writes during the renewals (srvr zxid)"),
            writes as f64,
            "",
        )
        .figure_text(format!(
            "{writes} (zxid {:#x} -> {:#x}; the set's pzxid and mzxids {})",
            f.zxid_before,
            f.zxid_after,
            if f.set_untouched {
                "unchanged"
            } else {
                "CHANGED"
            }
        ))
        .reference_text(sustained)
        .target("0 (zxid unchanged)", writes == 0),
        Row::info(format!("{what}: gateway RSS"), mb(end), "MB")
            .figure_text(format!(
                "start {:.1} MB, end {:.1} MB, max {:.1} MB ({} samples, every {} s)",
                mb(start),
                mb(end),
                mb(max),
                f.rss_kb.len(),
                RENEW_EVERY.as_secs()
            ))
            .reference_text(format!(
                "gateway CPU {:.1} % of a core over {:.0} s",
                f.cpu_seconds * 100.0 / f.period.as_secs_f64(),
                f.period.as_secs_f64()
            ))
            .target("flat: end ≤ start × 1.1 + 2 MB", flat),
    ]
}

// ---------------------------------------------------------------------
// 3. GET /v1/members of a large set

struct MembersFigures {
    size: usize,
    gets: Vec<Duration>,
    /// Until the response's headers: the gateway serializes the whole
    /// body before it sends them.
    headers: Vec<Duration>,
    listings: Vec<Duration>,
    bytes: usize,
}

/// GETs `url`: the body (the answer must be 200), and when the headers
/// came.
async fn get_body(http: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Instant), BoxError> {
    let response = http
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let headers = Instant::now();
    let status = response.status();
    let body = response.bytes().await?;
    if status != reqwest::StatusCode::OK {
        return Err(format!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )
        .into());
    }
    Ok((body.to_vec(), headers))
}

async fn members_phase(
    raw: &zk::Client,
    http: &reqwest::Client,
    gateway: &GatewayProcess,
    plan: &Plan,
) -> Result<MembersFigures, BoxError> {
    let dir = "/bench/gateway/members";
    let size = plan.members;
    support::populate_multi(raw, dir, size).await?;
    let names: BTreeSet<String> = raw.list_children(dir).await?.into_iter().collect();
    if names.len() != size {
        return Err(format!("{dir} lists {} of {size} members", names.len()).into());
    }
    let url = format!("{}/v1/members?path={dir}", gateway.base);

    // The warm-up starts the gateway's watch: its members must be the set's.
    let (body, _) = get_body(http, &url).await?;
    let served: BTreeSet<String> = member_names(std::str::from_utf8(&body)?)?
        .into_iter()
        .collect();
    if served != names {
        return Err(format!(
            "GET /v1/members served {} members, {} of the set's {size}",
            served.len(),
            served.intersection(&names).count()
        )
        .into());
    }
    let bytes = body.len();

    let mut figures = MembersFigures {
        size,
        gets: Vec::with_capacity(plan.gets),
        headers: Vec::with_capacity(plan.gets),
        listings: Vec::with_capacity(plan.gets),
        bytes,
    };
    for _ in 0..plan.gets {
        let begun = Instant::now();
        let (body, headers) = get_body(http, &url).await?;
        figures.gets.push(begun.elapsed());
        figures
            .headers
            .push(headers.saturating_duration_since(begun));
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&body)?;
        if body.len() != bytes || entries.len() != size {
            return Err(format!(
                "GET /v1/members answered {} B with {} members, the first {bytes} B with {size}",
                body.len(),
                entries.len()
            )
            .into());
        }

        let begun = Instant::now();
        let listed = raw.list_children(dir).await?;
        figures.listings.push(begun.elapsed());
        if listed.len() != size {
            return Err(format!("{dir} lists {} of {size} members", listed.len()).into());
        }
    }
    Ok(figures)
}

fn members_row(plan: &Plan, f: &MembersFigures) -> Row {
    let row = Row::info(
        format!(
            "gateway: GET /v1/members of a {}-member set, p50 ({} sequential GETs)",
            count(f.size),
            plan.gets
        ),
        p50(&f.gets),
        "ms",
    )
    .against("raw list_children of the set, p50", p50(&f.listings))
    .figure_text(format!(
        "{:.2} ms (p99 {:.2}; headers after p50 {:.2} ms, the body serialized before them)",
        p50(&f.gets),
        p99(&f.gets),
        p50(&f.headers)
    ));
    let reference = format!("{}; response {} B", row.reference, count(f.bytes));
    row.reference_text(reference)
        .target("p50 ≤ 5 ms", p50(&f.gets) <= 5.0)
}

/// 10000 as "10,000".
fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
