//! Reading the children a watch's machine asks for, as few requests and
//! round trips as ZooKeeper allows.
//!
//! A few nodes are read with plain requests, pipelined on the session's
//! connection. Many (an initial load, a resync after a long outage) are
//! read with multi-reads of [`MULTI_READ_CHUNK`] nodes each, all in flight
//! at once: 100,000 members are 200 requests, not 100,000. A chunk the
//! server refuses as a whole (a server before 3.6, a response over its
//! size limit) is read node by node.

use std::future::Future;
use std::time::Instant;

use futures::future::{join_all, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use zookeeper_client as zk;

use crate::format::path::ServerSetPath;
use crate::set::watch::stats::Counters;
use crate::zk::watch::machine::{Input, Read, Ticket};

/// How many reads one multi-read request carries.
const MULTI_READ_CHUNK: usize = 500;

/// Below this many nodes, plain pipelined reads.
const MULTI_READ_MIN: usize = 8;

/// Starts reading `reads` (children of `path`): each item of the returned
/// stream is the results of one request, as inputs for the machine, so
/// that they can be applied (and their data freed) as they come. Each
/// request's latency is recorded in `counters`.
pub(crate) fn start<'a>(
    zk: &'a zk::Client,
    path: &'a ServerSetPath,
    reads: Vec<(String, Ticket)>,
    counters: &'a Counters,
) -> FuturesUnordered<BoxFuture<'a, Vec<Input>>> {
    counters.count_reads(reads.len());
    let batches = FuturesUnordered::new();
    if reads.len() < MULTI_READ_MIN {
        batches.push(read_each(zk, path, reads, counters).boxed());
        return batches;
    }
    let mut reads = reads.into_iter();
    loop {
        let chunk: Vec<_> = reads.by_ref().take(MULTI_READ_CHUNK).collect();
        if chunk.is_empty() {
            return batches;
        }
        batches.push(read_chunk(zk, path, chunk, counters).boxed());
    }
}

/// Reads `reads` and returns every result.
pub(crate) async fn read(
    zk: &zk::Client,
    path: &ServerSetPath,
    reads: Vec<(String, Ticket)>,
    counters: &Counters,
) -> Vec<Input> {
    let batches: Vec<Vec<Input>> = start(zk, path, reads, counters).collect().await;
    batches.into_iter().flatten().collect()
}

/// Reads weight vectors with a data watch each (for the one-shot engine,
/// which has no other way to learn that one changed), returned beside the
/// results.
pub(crate) async fn read_vectors_watching(
    zk: &zk::Client,
    path: &ServerSetPath,
    vectors: Vec<(String, Ticket)>,
    counters: &Counters,
) -> (Vec<Input>, Vec<(String, zk::OneshotWatcher)>) {
    counters.count_reads(vectors.len());
    let mut inputs = Vec::with_capacity(vectors.len());
    let mut watchers = Vec::new();
    for (name, ticket) in vectors {
        let request = zk.get_and_watch_data(&path.member_path(&name));
        let result = match timed(counters, request).await {
            Ok((data, _, watcher)) => {
                watchers.push((name.clone(), watcher));
                Read::Data(data)
            }
            Err(e) => classify(e),
        };
        inputs.push(Input::Read {
            name,
            ticket,
            result,
        });
    }
    (inputs, watchers)
}

/// The same, as a future that owns what it needs (for a driver that keeps
/// reads in flight while it handles events).
pub(crate) fn read_owned(
    zk: zk::Client,
    path: ServerSetPath,
    reads: Vec<(String, Ticket)>,
    counters: std::sync::Arc<Counters>,
) -> BoxFuture<'static, Vec<Input>> {
    async move { read(&zk, &path, reads, &counters).await }.boxed()
}

async fn read_chunk(
    zk: &zk::Client,
    path: &ServerSetPath,
    chunk: Vec<(String, Ticket)>,
    counters: &Counters,
) -> Vec<Input> {
    let mut reader = zk.new_multi_reader();
    for (name, _) in &chunk {
        if reader.add_get_data(&path.member_path(name)).is_err() {
            return read_each(zk, path, chunk, counters).await;
        }
    }
    match timed(counters, reader.commit()).await {
        Ok(results) if results.len() == chunk.len() => chunk
            .into_iter()
            .zip(results)
            .map(|((name, ticket), result)| {
                let result = match result {
                    zk::MultiReadResult::Data { data, .. } => Read::Data(data),
                    zk::MultiReadResult::Error { err } => classify(err),
                    _ => Read::Failed,
                };
                Input::Read {
                    name,
                    ticket,
                    result,
                }
            })
            .collect(),
        _ => read_each(zk, path, chunk, counters).await,
    }
}

/// Reads nodes with one pipelined request each.
async fn read_each(
    zk: &zk::Client,
    path: &ServerSetPath,
    reads: Vec<(String, Ticket)>,
    counters: &Counters,
) -> Vec<Input> {
    let requests: Vec<_> = reads
        .iter()
        .map(|(name, _)| timed(counters, zk.get_data(&path.member_path(name))))
        .collect();
    let results = join_all(requests).await;
    reads
        .into_iter()
        .zip(results)
        .map(|((name, ticket), result)| Input::Read {
            name,
            ticket,
            result: match result {
                Ok((data, _)) => Read::Data(data),
                Err(e) => classify(e),
            },
        })
        .collect()
}

/// Awaits one read request, recording its latency.
async fn timed<T>(counters: &Counters, request: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let result = request.await;
    counters.time_read(started.elapsed());
    result
}

/// A failed read: the node is gone, or the read must be retried.
pub(crate) fn classify(e: zk::Error) -> Read {
    match e {
        zk::Error::NoNode => Read::Missing,
        _ => Read::Failed,
    }
}
