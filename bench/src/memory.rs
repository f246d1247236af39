//! Resident memory of a watcher holding 10000 members, above an empty
//! process.
//!
//! Measured in a child process (this same binary with a hidden flag, so
//! that nothing the benchmark did before counts): it reads its `VmRSS` once
//! its tokio runtime runs (the empty process), connects, loads a watch of
//! the set and reads `VmRSS` again. The reference is a naive watcher in
//! another child: the raw client listing the set and holding every
//! member's name and raw data, nothing decoded.

use std::time::Duration;

use futures::future::join_all;
use serversets::{Client, ServerSetPath};

use crate::support::{self, BoxError, Row};
use crate::Context;

/// The hidden flag that makes the binary a probe:
/// `--memory-probe serversets|naive CONNECT PATH MEMBERS`.
pub const PROBE_FLAG: &str = "--memory-probe";

pub async fn run(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let members = if ctx.quick { 1000 } else { 10_000 };
    let dir = "/bench/memory/set";
    let writer = support::raw_client(&ctx.connect).await?;
    support::populate(&writer, dir, members).await?;
    let data_bytes: usize = (0..members).map(|i| support::member_data(i).len()).sum();

    let ours = spawn_probe("serversets", &ctx.connect, dir, members).await?;
    let naive = spawn_probe("naive", &ctx.connect, dir, members).await?;
    drop(writer);

    let mb = |kb: u64| kb as f64 * 1024.0 / 1e6;
    let above = mb(ours.watching.saturating_sub(ours.empty));
    let naive_above = mb(naive.watching.saturating_sub(naive.empty));
    let per_member = ours.watching.saturating_sub(ours.empty) as f64 * 1024.0 / members as f64;
    let row = Row::info(
        format!("resident memory of a watcher holding {members} members, above an empty process"),
        above,
        "MB",
    )
    .against("naive watcher holding the raw data", naive_above)
    .figure_text(format!(
        "{above:.1} MB ({per_member:.0} B per member; session alone {:.1} MB)",
        mb(ours.connected.saturating_sub(ours.empty))
    ));
    let row = Row {
        reference: format!(
            "{}; empty process {:.1} MB; member data {:.1} MB",
            row.reference,
            mb(ours.empty),
            data_bytes as f64 / 1e6
        ),
        ..row
    };
    Ok(vec![row.target("< 10 MB", above < 10.0)])
}

/// `VmRSS` in kB at three moments of a probe.
pub struct Probe {
    /// Once its runtime runs.
    pub empty: u64,
    /// Connected, nothing watched.
    pub connected: u64,
    /// Holding the set.
    pub watching: u64,
}

/// Runs a probe (`serversets` or `naive`) on the set at `dir`, which has
/// `members` members (the scale measurement uses it too).
pub async fn spawn_probe(
    mode: &str,
    connect: &str,
    dir: &str,
    members: usize,
) -> Result<Probe, BoxError> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let output = tokio::process::Command::new(&exe)
        .args([PROBE_FLAG, mode, connect, dir, &members.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{mode} probe failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let field = |name: &str| -> Result<u64, BoxError> {
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("{mode} probe printed no {name}: {stdout:?}"))?
            .parse()
            .map_err(|e| format!("{mode} probe's {name}: {e}").into())
    };
    Ok(Probe {
        empty: field("empty")?,
        connected: field("connected")?,
        watching: field("watching")?,
    })
}

/// The child: prints `empty=KB connected=KB watching=KB`.
pub fn probe(args: &[String]) -> Result<(), BoxError> {
    let [mode, connect, dir, members] = args else {
        return Err(format!("usage: {PROBE_FLAG} serversets|naive CONNECT PATH MEMBERS").into());
    };
    let members: usize = members.parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Let the workers start and settle.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let empty = vm_rss()?;
        let held = match mode.as_str() {
            "serversets" => {
                let client = Client::connect(connect).await?;
                let connected = vm_rss()?;
                let watch = client.watch(&ServerSetPath::new(dir)?).await?;
                let len = watch.current().len();
                settle().await;
                (
                    connected,
                    vm_rss()?,
                    len,
                    Box::new((client, watch)) as Box<dyn Send>,
                )
            }
            "naive" => {
                let zk = support::raw_client(connect).await?;
                let connected = vm_rss()?;
                let names = zk.list_children(dir).await?;
                let reads = names.iter().map(|n| zk.get_data(&format!("{dir}/{n}")));
                let data: Vec<Vec<u8>> = join_all(reads)
                    .await
                    .into_iter()
                    .map(|r| r.map(|(data, _)| data))
                    .collect::<Result<_, _>>()?;
                let held: Vec<(String, Vec<u8>)> = names.into_iter().zip(data).collect();
                let len = held.len();
                settle().await;
                (
                    connected,
                    vm_rss()?,
                    len,
                    Box::new((zk, held)) as Box<dyn Send>,
                )
            }
            other => return Err(format!("unknown probe mode {other:?}").into()),
        };
        let (connected, watching, len, kept) = held;
        if len != members {
            return Err(format!("the {mode} probe holds {len} of {members} members").into());
        }
        println!("empty={empty} connected={connected} watching={watching}");
        drop(kept);
        Ok(())
    })
}

/// Lets background work (the watch task, the session) finish what the
/// load started before reading the memory.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// This process's resident set size in kB.
fn vm_rss() -> Result<u64, BoxError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status (Linux only): {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc/self/status".into())
}
