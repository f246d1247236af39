//! The engine behind every watch of one set path through one client.
//!
//! Two `watch()` calls on the same path share one engine, one member cache
//! and one ZooKeeper watch (Finagle shares them too); each distinct
//! [`WatchOptions`] gets a [`View`] of that cache, and identical options
//! share one view. The engine runs one of the drivers ([`persistent`] or
//! [`oneshot`]), which do the I/O; this module keeps what both share: the
//! machine, the views, the watches' handles and the registry that finds
//! a running engine by path.
//!
//! [`persistent`]: super::persistent
//! [`oneshot`]: super::oneshot

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info_span, warn, Instrument};
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::format::member::VECTOR_PREFIX;
use crate::format::path::ServerSetPath;
use crate::set::health::Health;
use crate::set::options::WatchOptions;
pub(crate) use crate::set::watch::hub::Flow;
use crate::set::watch::hub::{Command, Hub};
use crate::set::watch::stats::Counters;
use crate::set::watch::{Inner, WatchEngine};
use crate::zk::session::{Session, SessionView};
use crate::zk::watch::machine::{Input, Machine, Ticket};
use crate::zk::watch::read;

pub(crate) use crate::set::watch::hub::sleep_until;

/// How a driver ended.
pub(crate) enum Ended {
    /// The server refuses persistent watches: use the one-shot driver.
    Fallback,
    /// No watch is left, or the client is closed.
    Stop,
}

/// The state both drivers work on.
pub(crate) struct Engine {
    pub session: Session,
    pub path: ServerSetPath,
    pub machine: Machine,
    pub counters: Arc<Counters>,
    /// Read weight vectors with a data watch (the one-shot engine).
    pub watch_vectors: bool,
    /// Data watches set by reads of weight vectors, for the driver to take.
    pub vector_watchers: Vec<(String, zk::OneshotWatcher)>,
    /// The views and handles.
    pub hub: Hub,
}

impl Engine {
    /// Finds the engine of `path` or starts one, and subscribes to it.
    pub(crate) fn subscribe(
        session: &Session,
        path: &ServerSetPath,
        options: WatchOptions,
    ) -> oneshot::Receiver<Arc<Inner>> {
        let kind = session.shared.config.watch_engine;
        let counters = Counters::for_zookeeper(path.as_str());
        Hub::subscribe(
            &session.shared.watches,
            path.as_str().to_owned(),
            path,
            options,
            kind,
            counters,
            |hub| {
                let engine = Engine {
                    machine: Machine::new(path.clone()),
                    session: session.clone(),
                    path: path.clone(),
                    counters: Arc::clone(hub.counters()),
                    watch_vectors: false,
                    vector_watchers: Vec::new(),
                    hub,
                };
                let span = info_span!("watch", path = %path);
                tokio::spawn(run(engine).instrument(span));
            },
        )
    }

    /// Handles one command from the watches' handles.
    pub(crate) fn command(&mut self, command: Command) -> Flow {
        self.hub.command(command, self.machine.cache())
    }

    /// Feeds one input to the machine.
    pub(crate) fn feed(&mut self, input: Input) {
        self.machine.handle(input);
    }

    /// Publishes what the inputs fed since the last call changed, and
    /// returns the reads to issue and whether to list again.
    pub(crate) fn flush(&mut self) -> (Vec<(String, Ticket)>, bool) {
        let actions = self.machine.take_actions();
        if actions.changed() {
            let cache = self.machine.cache();
            if actions.reweigh {
                self.hub.rebuild(cache);
            } else {
                self.hub
                    .apply(actions.touched.iter().map(String::as_str), cache);
            }
        }
        (actions.reads, actions.relist)
    }

    /// The set is in sync: publish it to views waiting for their first
    /// load, and say so.
    pub(crate) fn synced(&mut self) {
        self.hub.synced(self.machine.cache());
    }

    /// Lists the set once with `listing` (a plain listing, or one that
    /// arms a one-shot watch; its latency is recorded) and reads what is
    /// new, all before any event is handled: the listing is the truth as
    /// of when the server answered. Returns what the listing returned
    /// beside the names, or the failure.
    pub(crate) async fn resync<W>(
        &mut self,
        zk: &zk::Client,
        listing: impl Future<Output = Result<(Vec<String>, zk::Stat, W), zk::Error>>,
    ) -> Result<Option<W>, zk::Error> {
        self.counters.count_listing();
        let started = std::time::Instant::now();
        let listing = listing.await;
        self.counters.time_listing(started.elapsed());
        let armed = match listing {
            Ok((names, stat, armed)) => {
                debug!(path = %self.path, children = names.len(), "children listed");
                self.feed(Input::Listed {
                    names,
                    incarnation: stat.czxid,
                });
                Some(armed)
            }
            Err(zk::Error::NoNode) => {
                self.feed(Input::Missing);
                None
            }
            Err(e) => return Err(e),
        };
        self.read_now(zk).await?;
        Ok(armed)
    }

    /// Issues the reads the machine asks for and feeds their results, until
    /// it asks for none; fails if one failed.
    pub(crate) async fn read_now(&mut self, zk: &zk::Client) -> Result<(), zk::Error> {
        loop {
            let (reads, relist) = self.flush();
            if relist {
                return Err(zk::Error::ConnectionLoss);
            }
            if reads.is_empty() {
                return Ok(());
            }
            let (vectors, members): (Vec<_>, Vec<_>) = if self.watch_vectors {
                reads
                    .into_iter()
                    .partition(|(name, _)| name.starts_with(VECTOR_PREFIX))
            } else {
                (Vec::new(), reads)
            };
            if !vectors.is_empty() {
                let (inputs, watchers) =
                    read::read_vectors_watching(zk, &self.path, vectors, &self.counters).await;
                self.vector_watchers.extend(watchers);
                for input in inputs {
                    self.machine.handle(input);
                }
            }
            // Applied batch by batch: 100,000 members' data is never all
            // held at once.
            let mut batches = read::start(zk, &self.path, members, &self.counters);
            while let Some(inputs) = batches.next().await {
                for input in inputs {
                    self.machine.handle(input);
                }
            }
        }
    }

    /// Says how the set stands with ZooKeeper.
    pub(crate) fn set_health(&self, health: Health) {
        self.hub.set_health(health);
    }

    /// When held-back removals are next due.
    pub(crate) fn next_deadline(&self) -> Option<tokio::time::Instant> {
        self.hub.next_deadline()
    }

    /// Publishes held-back removals that are due.
    pub(crate) fn expire(&mut self) {
        self.hub.expire();
    }

    /// Waits for a connected session, handling commands and held-back
    /// removals meanwhile, and returns its client and connection epoch.
    /// `None`: stop (closed, or no watch left).
    pub(crate) async fn connected(
        &mut self,
        views: &mut watch::Receiver<SessionView>,
    ) -> Option<(zk::Client, u64)> {
        loop {
            {
                let view = views.borrow_and_update();
                match (&view.client, view.health) {
                    (_, Health::Closed) => return None,
                    (Some(client), Health::Connected) => return Some((client.clone(), view.epoch)),
                    (_, health) => self.set_health(health),
                }
            }
            let deadline = self.next_deadline();
            tokio::select! {
                changed = views.changed() => if changed.is_err() { return None },
                Some(command) = self.hub.commands.recv() => {
                    if self.command(command) == Flow::Stop {
                        return None;
                    }
                }
                _ = sleep_until(deadline) => self.expire(),
            }
        }
    }

    /// Out of sync: says so, then waits a backoff step (less if the
    /// session changes), handling commands meanwhile.
    pub(crate) async fn pause(
        &mut self,
        views: &mut watch::Receiver<SessionView>,
        backoff: &mut Backoff,
        error: &zk::Error,
    ) -> Flow {
        warn!(path = %self.path, %error, "watch out of sync; keeping the last set and retrying");
        self.set_health(Health::Disconnected);
        let delay = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(delay);
        loop {
            tokio::select! {
                _ = &mut delay => return Flow::Continue,
                changed = views.changed() => {
                    return if changed.is_err() { Flow::Stop } else { Flow::Continue };
                }
                Some(command) = self.hub.commands.recv() => {
                    if self.command(command) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
            }
        }
    }
}

/// The engine task.
async fn run(mut engine: Engine) {
    let mut kind = engine.hub.status().kind();
    loop {
        let ended = match kind {
            WatchEngine::Persistent => super::persistent::run(&mut engine).await,
            WatchEngine::OneShot | WatchEngine::Etcd => super::oneshot::run(&mut engine).await,
        };
        match ended {
            Ended::Fallback => {
                warn!(path = %engine.path, "the server refuses persistent watches (ZooKeeper before 3.6): using one-shot watches");
                kind = WatchEngine::OneShot;
                engine.hub.status().set_kind(kind);
            }
            Ended::Stop => return,
        }
    }
}
