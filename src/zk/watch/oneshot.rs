//! The driver on one-shot child watches: any ZooKeeper, the fallback for
//! servers before 3.6 (which refuse persistent watches) and a switch
//! ([`WatchEngine::OneShot`](crate::WatchEngine::OneShot)).
//!
//! A children notification does not say which child changed, so every
//! change costs a listing, which also re-arms the watch; only new names
//! are read. Before listing, a notification first reads the members a
//! join would have created: ZooKeeper numbers the sequential children of a
//! parent from one counter, so the next join takes the number after the
//! highest one seen. A member that joined is published without waiting for
//! the listing; a wrong guess (a leave) costs one round trip. Weight
//! vectors are read with a data watch each.

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::debug;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::set::health::Health;
use crate::zk::session::SessionView;
use crate::zk::watch::engine::{sleep_until, Ended, Engine, Flow};
use crate::zk::watch::machine::Input;
use crate::zk::watch::read;

/// Why the set must be listed again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The children changed: a member may have joined.
    Children,
    /// Anything else (reconnection, a weight vector, the path appearing).
    Other,
    /// No watch left, or the client is closed.
    Stop,
}

/// Data watches on weight vectors; each yields the vector's name.
type VectorEvents = FuturesUnordered<BoxFuture<'static, String>>;

/// Runs the engine until it stops.
pub(crate) async fn run(engine: &mut Engine) -> Ended {
    engine.watch_vectors = true;
    engine.machine.reread_vectors_when_listed(false);
    let mut views = engine.session.views();
    let mut backoff = Backoff::new();
    let mut vector_events = VectorEvents::new();
    let mut wake = Wake::Other;
    loop {
        let Some((zk, epoch)) = engine.connected(&mut views).await else {
            return Ended::Stop;
        };
        let synced = sync(engine, &zk, wake).await;
        for (name, watcher) in engine.vector_watchers.drain(..) {
            vector_events.push(
                async move {
                    watcher.changed().await;
                    name
                }
                .boxed(),
            );
        }
        let watcher = match synced {
            Ok(Some(watcher)) => watcher,
            Ok(None) => {
                wake = Wake::Other;
                continue;
            }
            Err(e) => {
                if engine.pause(&mut views, &mut backoff, &e).await == Flow::Stop {
                    return Ended::Stop;
                }
                wake = Wake::Other;
                continue;
            }
        };
        backoff.reset();
        engine.synced();
        // Hold no client clone while waiting: closing drops the session
        // when the last clone goes.
        drop(zk);
        wake = wait(engine, watcher, &mut vector_events, &mut views, epoch).await;
        if wake == Wake::Stop {
            return Ended::Stop;
        }
    }
}

/// Lists the children (arming a child watch) and reads what is new.
/// Woken by a children change, it first reads (and publishes) a member
/// that joined, if it guesses it. `None`: the path appeared meanwhile.
async fn sync(
    engine: &mut Engine,
    zk: &zk::Client,
    wake: Wake,
) -> Result<Option<zk::OneshotWatcher>, zk::Error> {
    if wake == Wake::Children {
        engine.machine.guess_joins();
        let (reads, _) = engine.flush();
        if !reads.is_empty() {
            let before = engine.machine.cache().len();
            // A failure is left to the listing that follows.
            for input in read::read(zk, &engine.path, reads, &engine.counters).await {
                engine.feed(input);
            }
            let joined = engine.machine.cache().len().saturating_sub(before);
            if joined > 0 {
                debug!(path = %engine.path, joined, "joined members read before the listing");
            }
            // Publishes the joins; a failed read is left to the listing.
            let _ = engine.flush();
        }
    }
    let listing = zk.get_and_watch_children(engine.path.as_str());
    if let Some(watcher) = engine.resync(zk, listing).await? {
        return Ok(Some(watcher));
    }
    // No path, no members: wait for it to appear.
    match zk.check_and_watch_stat(engine.path.as_str()).await? {
        (None, watcher) => Ok(Some(watcher)),
        (Some(_), _) => Ok(None),
    }
}

/// Waits until the set must be listed again, and says why.
async fn wait(
    engine: &mut Engine,
    watcher: zk::OneshotWatcher,
    vector_events: &mut VectorEvents,
    views: &mut watch::Receiver<SessionView>,
    epoch: u64,
) -> Wake {
    let mut children = watcher.changed().boxed();
    loop {
        let deadline = engine.next_deadline();
        tokio::select! {
            _ = sleep_until(deadline) => engine.expire(),
            Some(command) = engine.hub.commands.recv() => {
                if engine.command(command) == Flow::Stop {
                    return Wake::Stop;
                }
            }
            event = &mut children => {
                engine.counters.count_event();
                debug!(path = %engine.path, ?event.event_type, ?event.session_state, "watch fired");
                return if event.event_type == zk::EventType::NodeChildrenChanged {
                    Wake::Children
                } else {
                    Wake::Other
                };
            }
            Some(name) = vector_events.next() => {
                engine.counters.count_event();
                engine.feed(Input::DataChanged(name));
                return Wake::Other;
            }
            changed = views.changed() => {
                if changed.is_err() {
                    return Wake::Stop;
                }
                let view = views.borrow().clone();
                match view.health {
                    Health::Closed => return Wake::Stop,
                    // Reconnected: events may have been missed, list again.
                    Health::Connected if view.epoch != epoch => return Wake::Other,
                    Health::Connected => {}
                    other => engine.set_health(other),
                }
            }
        }
    }
}
