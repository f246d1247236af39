//! 5000 members join at once: a writer sends 5000 creates, all in flight;
//! a watcher follows the set. The figure is the time until the watcher's
//! snapshot has all 5000, the reference the time until every create was
//! answered, both from the first create sent.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serversets::{Client, ServerSetPath};

use crate::support::{self, create, member_data, ms, BoxError, Row};
use crate::Context;

pub async fn run(ctx: &Context) -> Result<Vec<Row>, BoxError> {
    let members = if ctx.quick { 500 } else { 5000 };
    let rounds = if ctx.quick { 2 } else { 5 };
    let client = Client::connect(&ctx.connect).await?;
    let (mut creates, mut visible) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let dir = format!("/bench/join/round{round}");
        // A writer of its own each round.
        let writer = support::raw_client(&ctx.connect).await?;
        support::mkdir(&writer, &dir).await?;
        let watch = client.watch(&ServerSetPath::new(&dir)?).await?;
        let mut changes = watch.changes();
        let follower = tokio::spawn(async move {
            loop {
                let change = changes.next().await?;
                if change.snapshot.len() >= members {
                    return Some(Instant::now());
                }
            }
        });
        let data: Vec<Vec<u8>> = (0..members).map(member_data).collect();
        let started = Instant::now();
        let names = join_all(data.iter().map(|d| create(&writer, &dir, d)))
            .await
            .into_iter()
            .collect::<Result<Vec<String>, _>>()?;
        let created = started.elapsed();
        let seen = tokio::time::timeout(Duration::from_secs(60), follower)
            .await
            .map_err(|_| format!("the watcher did not see all {members} within 60 s"))??
            .ok_or("watch ended")?;
        creates.push(ms(created));
        visible.push(ms(seen - started));
        drop(watch);
        // Deleted before the writer goes: closing a session that owns
        // thousands of ephemerals is slow enough for the client to give up
        // waiting and warn.
        let deletes = names
            .iter()
            .map(|n| writer.delete(&format!("{dir}/{n}"), None));
        for result in join_all(deletes).await {
            result?;
        }
        drop(writer);
    }
    client.close().await;
    let (created, seen) = (support::median(&creates), support::median(&visible));
    let row = Row::info(
        format!("{members} members join at once -> watcher has all {members} (median of {rounds})"),
        seen,
        "ms",
    )
    .against("the creates themselves", created);
    let ratio = row.ratio.unwrap_or(f64::INFINITY);
    Ok(vec![row.target("≤ 1.5x the creates", ratio <= 1.5)])
}
