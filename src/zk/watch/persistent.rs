//! The driver on one persistent recursive watch (ZooKeeper 3.6+).
//!
//! One `addWatch(set path, PERSISTENT_RECURSIVE)` per connection. ZooKeeper
//! then names each child created, deleted or changed: a join costs one
//! read of the new member, a leave nothing at all, a weight vector change
//! one read of that vector. Nobody lists the set per change, so a change
//! costs the server a few hundred bytes per watcher whatever the set's size.
//!
//! Events that happen while the connection is down are lost
//! (ZOOKEEPER-4698), and `zookeeper-client` 0.11 does not re-arm persistent
//! watches on reconnection: after every (re)connection the driver adds the
//! watch again (before dropping the old one, so the server's watch is
//! never removed) and lists the set once, reading only the names it does
//! not know. A new session after expiry is the same, from a new client.

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

/// How many ready events one step takes before publishing, so that a
/// flood is applied in batches (one publication, one read request per
/// batch) instead of one by one.
const BATCH: usize = 1024;

/// What one connection's following ended with.
enum Followed {
    /// Reconnected, or a read failed: add the watch again and list.
    Resync(zk::PersistentWatcher),
    /// The session ended: its watcher must not be polled again.
    Lost,
    /// No watch left, or the client is closed.
    Stop,
}

/// Runs the engine until it stops, or until the server turns out to
/// refuse persistent watches.
pub(crate) async fn run(engine: &mut Engine) -> Ended {
    engine.machine.reread_vectors_when_listed(true);
    let mut views = engine.session.views();
    let mut backoff = Backoff::new();
    let mut armed: Option<zk::PersistentWatcher> = None;
    loop {
        let Some((zk, epoch)) = engine.connected(&mut views).await else {
            return Ended::Stop;
        };
        let failure = match zk
            .watch(engine.path.as_str(), zk::AddWatchMode::PersistentRecursive)
            .await
        {
            Ok(watcher) => {
                // The old one goes only now: dropped first, its removal
                // would reach the server before the new addWatch.
                armed = Some(watcher);
                let listing = zk
                    .get_children(engine.path.as_str())
                    .map(|listed| listed.map(|(names, stat)| (names, stat, ())));
                engine.resync(&zk, listing).await.err()
            }
            Err(zk::Error::Unimplemented) => return Ended::Fallback,
            Err(e) => Some(e),
        };
        if let Some(e) = failure {
            if engine.pause(&mut views, &mut backoff, &e).await == Flow::Stop {
                return Ended::Stop;
            }
            continue;
        }
        backoff.reset();
        engine.synced();
        let Some(watcher) = armed.take() else {
            continue;
        };
        match follow(engine, &zk, watcher, &mut views, epoch).await {
            Followed::Resync(watcher) => armed = Some(watcher),
            Followed::Lost => {
                drop(zk);
                let lost = zk::Error::SessionExpired;
                if engine.pause(&mut views, &mut backoff, &lost).await == Flow::Stop {
                    return Ended::Stop;
                }
            }
            Followed::Stop => return Ended::Stop,
        }
    }
}

/// Applies events and read results until the connection changes.
async fn follow(
    engine: &mut Engine,
    zk: &zk::Client,
    mut watcher: zk::PersistentWatcher,
    views: &mut watch::Receiver<SessionView>,
    epoch: u64,
) -> Followed {
    let mut inflight: FuturesUnordered<BoxFuture<'static, Vec<Input>>> = FuturesUnordered::new();
    let children = Children::new(engine.path.as_str());
    loop {
        let deadline = engine.next_deadline();
        tokio::select! {
            biased;
            Some(command) = engine.hub.commands.recv() => {
                if engine.command(command) == Flow::Stop {
                    return Followed::Stop;
                }
            }
            Some(inputs) = inflight.next() => {
                for input in inputs {
                    engine.feed(input);
                }
            }
            event = watcher.changed() => {
                debug!(path = %engine.path, ?event.event_type, "watch fired");
                let mut next = Some(event);
                let mut taken = 0;
                while let Some(event) = next.take() {
                    engine.counters.count_event();
                    match children.classify(&event) {
                        Event::Input(input) => engine.feed(input),
                        Event::Relist => return Followed::Resync(watcher),
                        Event::Lost => return Followed::Lost,
                        Event::Ignore => {}
                    }
                    taken += 1;
                    if taken < BATCH {
                        next = watcher.changed().now_or_never();
                    }
                }
            }
            changed = views.changed() => {
                if changed.is_err() {
                    return Followed::Stop;
                }
                let view = views.borrow_and_update().clone();
                match view.health {
                    Health::Closed => return Followed::Stop,
                    Health::Connected if view.epoch != epoch => return Followed::Resync(watcher),
                    Health::Connected => {}
                    other => engine.set_health(other),
                }
            }
            _ = sleep_until(deadline) => engine.expire(),
        }
        let (reads, relist) = engine.flush();
        if relist {
            return Followed::Resync(watcher);
        }
        if !reads.is_empty() {
            inflight.push(read::read_owned(
                zk.clone(),
                engine.path.clone(),
                reads,
                std::sync::Arc::clone(&engine.counters),
            ));
        }
    }
}

/// Tells events about the set path's children from the rest.
struct Children {
    path: String,
    prefix: String,
}

/// What one watch event means for the machine.
enum Event {
    Input(Input),
    /// The set path appeared: list it.
    Relist,
    /// The session ended.
    Lost,
    Ignore,
}

impl Children {
    fn new(path: &str) -> Self {
        let prefix = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        Children {
            path: path.to_owned(),
            prefix,
        }
    }

    fn classify(&self, event: &zk::WatchedEvent) -> Event {
        self.classify_parts(event.event_type, event.session_state, &event.path)
    }

    fn classify_parts(
        &self,
        event_type: zk::EventType,
        state: zk::SessionState,
        path: &str,
    ) -> Event {
        use zk::EventType::*;
        if event_type == Session {
            return if state.is_terminated() {
                Event::Lost
            } else {
                // Reconnections are followed through the session's views.
                Event::Ignore
            };
        }
        if path == self.path {
            return match event_type {
                NodeCreated => Event::Relist,
                NodeDeleted => Event::Input(Input::Missing),
                _ => Event::Ignore,
            };
        }
        let Some(name) = path.strip_prefix(&self.prefix) else {
            debug!(path = %self.path, event = ?event_type, node = %path, "event outside the set ignored");
            return Event::Ignore;
        };
        if name.is_empty() || name.contains('/') {
            debug!(path = %self.path, event = ?event_type, node = %path, "event below a child ignored");
            return Event::Ignore;
        }
        let name = name.to_owned();
        match event_type {
            NodeCreated => Event::Input(Input::Created(name)),
            NodeDeleted => Event::Input(Input::Deleted(name)),
            NodeDataChanged => Event::Input(Input::DataChanged(name)),
            _ => Event::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_told_apart() {
        use zk::EventType::*;
        let children = Children::new("/d/s");
        let classify = |t, p: &str| children.classify_parts(t, zk::SessionState::SyncConnected, p);
        let input = |(t, p): (zk::EventType, &str)| match classify(t, p) {
            Event::Input(input) => Some(input),
            _ => None,
        };
        assert_eq!(
            input((NodeCreated, "/d/s/member_0000000001")),
            Some(Input::Created("member_0000000001".into()))
        );
        assert_eq!(
            input((NodeDeleted, "/d/s/member_0000000001")),
            Some(Input::Deleted("member_0000000001".into()))
        );
        assert_eq!(
            input((NodeDataChanged, "/d/s/vector_0000000002")),
            Some(Input::DataChanged("vector_0000000002".into()))
        );
        assert_eq!(input((NodeDeleted, "/d/s")), Some(Input::Missing));
        assert!(matches!(classify(NodeCreated, "/d/s"), Event::Relist));
        // Grandchildren and neighbours with a common prefix.
        assert_eq!(input((NodeCreated, "/d/s/member_1/x")), None);
        assert_eq!(input((NodeCreated, "/d/s2/member_0000000001")), None);
        let lost = children.classify_parts(Session, zk::SessionState::Expired, "");
        assert!(matches!(lost, Event::Lost));
    }
}
