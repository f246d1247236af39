//! 100 registrations and 100 watches in one process: how many ZooKeeper
//! sessions and connections they take.
//!
//! Counted two ways: the distinct `ephemeralOwner` (session id) of the
//! registered member znodes, read back with a separate raw client, and
//! ZooKeeper's own `cons` list (connections carrying the client's session,
//! and connections added to the server since before the client existed).

use std::collections::HashSet;
use std::time::Duration;

use serversets::{Client, Endpoint, Member, ServerSetPath};

use crate::support::{self, BoxError, Row};
use crate::Context;

pub async fn run(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let count = 100;
    let inspector = support::raw_client(&ctx.connect).await?;
    let before = session_connections(ctx).await?;

    let client = Client::builder(&ctx.connect)
        .session_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let session = client.session_id().ok_or("client has no session")?;
    let paths = (0..count)
        .map(|i| ServerSetPath::new(format!("/bench/sessions/service{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut registrations = Vec::with_capacity(count);
    for (i, path) in paths.iter().enumerate() {
        let member = Member::new(Endpoint::new("10.1.0.1", 20_000 + i as u16));
        registrations.push(client.register(path, member).await?);
    }
    let mut watches = Vec::with_capacity(count);
    for path in &paths {
        watches.push(client.watch(path).await?);
    }
    for (watch, path) in watches.iter().zip(&paths) {
        if watch.current().len() != 1 {
            return Err(format!("watch of {path} holds {} members", watch.current().len()).into());
        }
    }

    let mut owners = HashSet::new();
    for registration in &registrations {
        let znode = registration.znode().ok_or("a registration has no znode")?;
        let (_, stat) = inspector
            .get_data(&znode)
            .await
            .map_err(|e| format!("reading {znode}: {e}"))?;
        owners.insert(stat.ephemeral_owner);
    }
    let after = session_connections(ctx).await?;
    let carrying = after.iter().filter(|sid| **sid == session).count();
    let added = after.iter().filter(|sid| !before.contains(sid)).count();

    for registration in registrations {
        registration.close().await;
    }
    drop(watches);
    client.close().await;

    let sessions = owners.len() as f64;
    let row = Row::info(
        format!("{count} registrations and {count} watches in one process: ZooKeeper sessions"),
        sessions,
        "",
    )
    .figure_text(match owners.len() {
        1 => "1 session".to_owned(),
        n => format!("{n} sessions"),
    })
    .reference_text(format!(
        "`cons`: {carrying} connection with its session id, {added} added by the process"
    ))
    .target(
        "1 session",
        owners.len() == 1 && owners.contains(&session) && carrying == 1 && added == 1,
    );
    Ok(vec![row])
}

/// The session id of every client connection ZooKeeper lists in `cons`
/// (one entry per connection).
async fn session_connections(ctx: &Context) -> Result<Vec<i64>, BoxError> {
    let addr = ctx.zookeeper.addr();
    let cons = tokio::task::spawn_blocking(move || testkit::four_letter_word(addr, "cons"))
        .await?
        .map_err(|e| format!("ZooKeeper `cons`: {e}"))?;
    Ok(cons
        .lines()
        .filter_map(|line| {
            let hex = line.split("sid=0x").nth(1)?;
            let hex = hex.split([',', ')']).next()?;
            // Java prints the id as an unsigned 64-bit hex number.
            u64::from_str_radix(hex, 16).ok().map(|id| id as i64)
        })
        .collect())
}
