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

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};
use zookeeper_client as zk;

use crate::format::member::VECTOR_PREFIX;
use crate::format::path::ServerSetPath;
use crate::metrics::ViewGauges;
use crate::set::options::WatchOptions;
use crate::set::publisher::Publisher;
use crate::set::view::View;
use crate::zk::health::Health;
use crate::zk::session::{Backoff, Session, SessionView};
use crate::zk::watch::machine::{Input, Machine, Ticket};
use crate::zk::watch::read;
use crate::zk::watch::stats::Counters;
use crate::zk::watch::{Inner, WatchEngine};

/// Running engines by set path, per client.
pub(crate) type Registry = Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>;

/// What watch handles ask of their engine.
pub(crate) enum Command {
    /// A new watch with these options; the reply is its handle, sent once
    /// the set is loaded.
    Subscribe {
        options: WatchOptions,
        reply: oneshot::Sender<Arc<Inner>>,
    },
    /// The last handle of this view is gone.
    Release(u64),
}

/// What every handle of an engine reads.
#[derive(Debug)]
pub(crate) struct Status {
    pub health: watch::Receiver<Health>,
    pub counters: Arc<Counters>,
    kind: AtomicU8,
}

impl Status {
    /// The driver in use.
    pub(crate) fn kind(&self) -> WatchEngine {
        match self.kind.load(Ordering::Relaxed) {
            0 => WatchEngine::Persistent,
            _ => WatchEngine::OneShot,
        }
    }

    fn set_kind(&self, kind: WatchEngine) {
        let value = match kind {
            WatchEngine::Persistent => 0,
            WatchEngine::OneShot => 1,
        };
        self.kind.store(value, Ordering::Relaxed);
    }
}

/// One view and its handles.
struct Slot {
    id: u64,
    view: View,
    handle: Weak<Inner>,
}

/// Whether the engine goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

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
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub counters: Arc<Counters>,
    /// Read weight vectors with a data watch (the one-shot engine).
    pub watch_vectors: bool,
    /// Data watches set by reads of weight vectors, for the driver to take.
    pub vector_watchers: Vec<(String, zk::OneshotWatcher)>,
    sender: mpsc::UnboundedSender<Command>,
    views: Vec<Slot>,
    waiting: Vec<(WatchOptions, oneshot::Sender<Arc<Inner>>)>,
    loaded: bool,
    next_id: u64,
    health: watch::Sender<Health>,
    status: Arc<Status>,
}

impl Engine {
    /// Finds the engine of `path` or starts one, and subscribes to it.
    pub(crate) fn subscribe(
        session: &Session,
        path: &ServerSetPath,
        options: WatchOptions,
    ) -> oneshot::Receiver<Arc<Inner>> {
        let (reply, handle) = oneshot::channel();
        let mut command = Command::Subscribe { options, reply };
        let Ok(mut registry) = session.shared.watches.lock() else {
            // A poisoned registry: the reply is dropped, start() says Closed.
            return handle;
        };
        if let Some(sender) = registry.get(path.as_str()) {
            match sender.send(command) {
                Ok(()) => return handle,
                Err(mpsc::error::SendError(unsent)) => command = unsent,
            }
        }
        let (sender, commands) = mpsc::unbounded_channel();
        // Cannot fail: the receiver is right here.
        let _ = sender.send(command);
        registry.insert(path.as_str().to_owned(), sender.clone());
        let engine = Engine::new(session.clone(), path.clone(), sender, commands);
        let span = info_span!("watch", path = %path);
        tokio::spawn(run(engine).instrument(span));
        handle
    }

    fn new(
        session: Session,
        path: ServerSetPath,
        sender: mpsc::UnboundedSender<Command>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let (health, health_rx) = watch::channel(Health::Disconnected);
        let counters = Arc::new(Counters::for_path(path.as_str()));
        let status = Arc::new(Status {
            health: health_rx,
            counters: Arc::clone(&counters),
            kind: AtomicU8::new(0),
        });
        status.set_kind(session.shared.config.watch_engine);
        Engine {
            machine: Machine::new(path.clone()),
            session,
            path,
            commands,
            counters,
            watch_vectors: false,
            vector_watchers: Vec::new(),
            sender,
            views: Vec::new(),
            waiting: Vec::new(),
            loaded: false,
            next_id: 0,
            health,
            status,
        }
    }

    /// Handles one command from the watches' handles.
    pub(crate) fn command(&mut self, command: Command) -> Flow {
        match command {
            Command::Subscribe { options, reply } => self.add(options, reply),
            Command::Release(id) => {
                // The view's gauges go to 0 as it drops; a view left that
                // shares its labels (other options, same selection) sets
                // them again.
                self.views.retain(|slot| slot.id != id);
                let connected = *self.health.borrow() == Health::Connected;
                for slot in &self.views {
                    slot.view.record();
                    slot.view.record_health(connected);
                }
                if self.views.is_empty() && self.waiting.is_empty() {
                    return self.stop_if_unused();
                }
            }
        }
        Flow::Continue
    }

    /// Stops if no handle is left and none is on its way: decided under
    /// the registry's lock, which every subscription holds while sending.
    fn stop_if_unused(&mut self) -> Flow {
        let registry = Arc::clone(&self.session.shared);
        let Ok(mut registry) = registry.watches.lock() else {
            return Flow::Continue;
        };
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Subscribe { options, reply } = command {
                self.add(options, reply);
            }
        }
        if !self.views.is_empty() || !self.waiting.is_empty() {
            return Flow::Continue;
        }
        if registry
            .get(self.path.as_str())
            .is_some_and(|s| s.same_channel(&self.sender))
        {
            registry.remove(self.path.as_str());
        }
        debug!(path = %self.path, "no watch left; engine stopped");
        Flow::Stop
    }

    fn add(&mut self, options: WatchOptions, reply: oneshot::Sender<Arc<Inner>>) {
        if let Some(inner) = self
            .views
            .iter()
            .filter(|slot| slot.view.options() == &options)
            .find_map(|slot| slot.handle.upgrade())
        {
            let _ = reply.send(inner);
            return;
        }
        if !self.loaded {
            self.waiting.push((options, reply));
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let publisher = Arc::new(Publisher::new());
        let gauges = ViewGauges::new(self.path.as_str(), options.served());
        let mut view = View::new(options.clone(), Arc::clone(&publisher)).with_gauges(gauges);
        view.rebuild(self.machine.cache(), Instant::now());
        view.record_health(*self.health.borrow() == Health::Connected);
        let inner = Arc::new(Inner {
            path: self.path.clone(),
            options,
            publisher,
            status: Arc::clone(&self.status),
            id,
            commands: self.sender.clone(),
        });
        self.views.push(Slot {
            id,
            view,
            handle: Arc::downgrade(&inner),
        });
        // A caller that gave up drops it: its release follows.
        let _ = reply.send(inner);
    }

    /// Feeds one input to the machine.
    pub(crate) fn feed(&mut self, input: Input) {
        self.machine.handle(input);
    }

    /// Publishes what the inputs fed since the last call changed, and
    /// returns the reads to issue and whether to list again.
    pub(crate) fn flush(&mut self) -> (Vec<(String, Ticket)>, bool) {
        let actions = self.machine.take_actions();
        if self.loaded && actions.changed() {
            let now = Instant::now();
            let cache = self.machine.cache();
            for slot in &mut self.views {
                if actions.reweigh {
                    slot.view.rebuild(cache, now);
                } else {
                    slot.view
                        .apply(actions.touched.iter().map(String::as_str), cache, now);
                }
            }
        }
        (actions.reads, actions.relist)
    }

    /// The set is in sync: publish it to views waiting for their first
    /// load, and say so.
    pub(crate) fn synced(&mut self) {
        if !self.loaded {
            self.loaded = true;
            let now = Instant::now();
            for slot in &mut self.views {
                slot.view.rebuild(self.machine.cache(), now);
            }
            for (options, reply) in std::mem::take(&mut self.waiting) {
                self.add(options, reply);
            }
        }
        self.set_health(Health::Connected);
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

    /// Follows the session's health while not in sync.
    pub(crate) fn set_health(&self, health: Health) {
        let changed = self.health.send_if_modified(|h| {
            let changed = *h != health;
            *h = health;
            changed
        });
        if changed {
            for slot in &self.views {
                slot.view.record_health(health == Health::Connected);
            }
        }
    }

    /// When held-back removals are next due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.views
            .iter()
            .filter_map(|slot| slot.view.next_deadline())
            .min()
    }

    /// Publishes held-back removals that are due.
    pub(crate) fn expire(&mut self) {
        let now = Instant::now();
        for slot in &mut self.views {
            slot.view.expire(now);
        }
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
                Some(command) = self.commands.recv() => {
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
                Some(command) = self.commands.recv() => {
                    if self.command(command) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
            }
        }
    }

    /// Closes every view's stream: the engine is gone.
    fn finish(&mut self) {
        for slot in &self.views {
            slot.view.publisher().close();
        }
        if let Ok(mut registry) = self.session.shared.watches.lock() {
            if registry
                .get(self.path.as_str())
                .is_some_and(|s| s.same_channel(&self.sender))
            {
                registry.remove(self.path.as_str());
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.set_health(Health::Closed);
        self.finish();
    }
}

/// Sleeps until `deadline`, or forever.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The engine task.
async fn run(mut engine: Engine) {
    let mut kind = engine.status.kind();
    loop {
        let ended = match kind {
            WatchEngine::Persistent => super::persistent::run(&mut engine).await,
            WatchEngine::OneShot => super::oneshot::run(&mut engine).await,
        };
        match ended {
            Ended::Fallback => {
                warn!(path = %engine.path, "the server refuses persistent watches (ZooKeeper before 3.6): using one-shot watches");
                kind = WatchEngine::OneShot;
                engine.status.set_kind(kind);
            }
            Ended::Stop => return,
        }
    }
}
