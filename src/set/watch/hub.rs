//! The hub behind every watch of one set through one client, whatever the
//! backend: one [`View`] per distinct [`WatchOptions`] (identical options
//! share one), the watches' handles, health, and the registry that finds
//! a running hub by set path.
//!
//! A backend's engine owns a hub and a member cache (anything that is
//! [`Members`]); it tells the hub which names changed, and the hub has
//! every view publish its delta. The hub does no I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::debug;

use crate::format::path::ServerSetPath;
use crate::metrics::ViewGauges;
use crate::set::health::Health;
use crate::set::options::WatchOptions;
use crate::set::publisher::Publisher;
use crate::set::view::{Members, View};
use crate::set::watch::stats::Counters;
use crate::set::watch::{Inner, WatchEngine};

/// Running hubs by set path, per client.
pub(crate) type Registry = Mutex<HashMap<String, mpsc::UnboundedSender<Command>>>;

/// What watch handles ask of their hub.
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

/// What every handle of a hub reads.
#[derive(Debug)]
pub(crate) struct Status {
    pub health: watch::Receiver<Health>,
    pub counters: Arc<Counters>,
    kind: AtomicU8,
}

impl Status {
    /// The engine in use.
    pub(crate) fn kind(&self) -> WatchEngine {
        match self.kind.load(Ordering::Relaxed) {
            0 => WatchEngine::Persistent,
            1 => WatchEngine::OneShot,
            _ => WatchEngine::Etcd,
        }
    }

    /// Says which engine runs.
    pub(crate) fn set_kind(&self, kind: WatchEngine) {
        let value = match kind {
            WatchEngine::Persistent => 0,
            WatchEngine::OneShot => 1,
            WatchEngine::Etcd => 2,
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

/// The views and handles of one watched set.
pub(crate) struct Hub {
    path: ServerSetPath,
    /// Its name in the registry.
    key: String,
    registry: Arc<Registry>,
    sender: mpsc::UnboundedSender<Command>,
    /// The handles' commands, for the engine to wait on.
    pub commands: mpsc::UnboundedReceiver<Command>,
    views: Vec<Slot>,
    waiting: Vec<(WatchOptions, oneshot::Sender<Arc<Inner>>)>,
    loaded: bool,
    next_id: u64,
    health: watch::Sender<Health>,
    status: Arc<Status>,
}

impl Hub {
    /// Finds the hub named `key` in `registry` or has `start` run a new
    /// one (its engine task) for `path`, and subscribes to it. The reply
    /// comes once the set is loaded; it is dropped if the engine ends
    /// first.
    pub(crate) fn subscribe(
        registry: &Arc<Registry>,
        key: String,
        path: &ServerSetPath,
        options: WatchOptions,
        kind: WatchEngine,
        counters: Counters,
        start: impl FnOnce(Hub),
    ) -> oneshot::Receiver<Arc<Inner>> {
        let (reply, handle) = oneshot::channel();
        let mut command = Command::Subscribe { options, reply };
        let Ok(mut map) = registry.lock() else {
            // A poisoned registry: the reply is dropped, the caller says
            // Closed.
            return handle;
        };
        if let Some(sender) = map.get(&key) {
            match sender.send(command) {
                Ok(()) => return handle,
                Err(mpsc::error::SendError(unsent)) => command = unsent,
            }
        }
        let (sender, commands) = mpsc::unbounded_channel();
        // Cannot fail: the receiver is right here.
        let _ = sender.send(command);
        map.insert(key.clone(), sender.clone());
        drop(map);
        let (health, health_rx) = watch::channel(Health::Disconnected);
        let status = Arc::new(Status {
            health: health_rx,
            counters: Arc::new(counters),
            kind: AtomicU8::new(0),
        });
        status.set_kind(kind);
        start(Hub {
            path: path.clone(),
            key,
            registry: Arc::clone(registry),
            sender,
            commands,
            views: Vec::new(),
            waiting: Vec::new(),
            loaded: false,
            next_id: 0,
            health,
            status,
        });
        handle
    }

    /// What every handle reads.
    pub(crate) fn status(&self) -> &Arc<Status> {
        &self.status
    }

    /// The counters of requests made for this set.
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.status.counters
    }

    /// Handles one command from the watches' handles.
    pub(crate) fn command(&mut self, command: Command, members: &impl Members) -> Flow {
        match command {
            Command::Subscribe { options, reply } => self.add(options, reply, members),
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
                    return self.stop_if_unused(members);
                }
            }
        }
        Flow::Continue
    }

    /// Stops if no handle is left and none is on its way: decided under
    /// the registry's lock, which every subscription holds while sending.
    fn stop_if_unused(&mut self, members: &impl Members) -> Flow {
        let registry = Arc::clone(&self.registry);
        let Ok(mut map) = registry.lock() else {
            return Flow::Continue;
        };
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Subscribe { options, reply } = command {
                self.add(options, reply, members);
            }
        }
        if !self.views.is_empty() || !self.waiting.is_empty() {
            return Flow::Continue;
        }
        if map
            .get(&self.key)
            .is_some_and(|s| s.same_channel(&self.sender))
        {
            map.remove(&self.key);
        }
        debug!(path = %self.path, "no watch left; engine stopped");
        Flow::Stop
    }

    fn add(
        &mut self,
        options: WatchOptions,
        reply: oneshot::Sender<Arc<Inner>>,
        members: &impl Members,
    ) {
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
            // Callers that gave up (a timed-out first load) go.
            self.waiting.retain(|(_, waiting)| !waiting.is_closed());
            self.waiting.push((options, reply));
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let publisher = Arc::new(Publisher::new());
        let gauges = ViewGauges::new(self.path.as_str(), options.served());
        let mut view = View::new(options.clone(), Arc::clone(&publisher)).with_gauges(gauges);
        view.rebuild(members, Instant::now());
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

    /// Has every view publish the change of the members named in
    /// `touched` (nothing before the first load).
    pub(crate) fn apply<'a>(
        &mut self,
        touched: impl Iterator<Item = &'a str> + Clone,
        members: &impl Members,
    ) {
        if self.loaded {
            let now = Instant::now();
            for slot in &mut self.views {
                slot.view.apply(touched.clone(), members, now);
            }
        }
    }

    /// Has every view rebuild its entries from `members` (weights changed).
    pub(crate) fn rebuild(&mut self, members: &impl Members) {
        if self.loaded {
            let now = Instant::now();
            for slot in &mut self.views {
                slot.view.rebuild(members, now);
            }
        }
    }

    /// The set is in sync: publish it to views waiting for their first
    /// load, and say so.
    pub(crate) fn synced(&mut self, members: &impl Members) {
        if !self.loaded {
            self.loaded = true;
            let now = Instant::now();
            for slot in &mut self.views {
                slot.view.rebuild(members, now);
            }
            for (options, reply) in std::mem::take(&mut self.waiting) {
                self.add(options, reply, members);
            }
        }
        self.set_health(Health::Connected);
    }

    /// Says how the set stands with its backend.
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
}

impl Drop for Hub {
    /// Closes every view's stream and leaves the registry: the engine is
    /// gone.
    fn drop(&mut self) {
        self.set_health(Health::Closed);
        for slot in &self.views {
            slot.view.publisher().close();
        }
        if let Ok(mut map) = self.registry.lock() {
            if map
                .get(&self.key)
                .is_some_and(|s| s.same_channel(&self.sender))
            {
                map.remove(&self.key);
            }
        }
    }
}

/// Sleeps until `deadline`, or forever.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
