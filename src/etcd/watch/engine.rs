//! The task behind every watch of one prefix (and format) through one
//! etcd client: loads the set, follows the watch stream, resyncs when the
//! stream breaks or is compacted, and feeds the hub.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::EventType;
use tokio::sync::oneshot;
use tracing::{debug, info_span, warn, Instrument};

use crate::backoff::Backoff;
use crate::etcd::client::Shared;
use crate::etcd::watch::get_all;
use crate::etcd::watch::machine::{Input, Kv, Machine};
use crate::format::path::ServerSetPath;
use crate::set::health::Health;
use crate::set::options::WatchOptions;
use crate::set::watch::hub::{sleep_until, Flow, Hub};
use crate::set::watch::stats::Counters;
use crate::set::watch::{Inner, WatchEngine};

/// Finds the engine of `path` in this format or starts one, and
/// subscribes to it.
pub(crate) fn subscribe(
    shared: &Arc<Shared>,
    path: &ServerSetPath,
    options: WatchOptions,
) -> oneshot::Receiver<Arc<Inner>> {
    let format = options.stored_as();
    let key = format!("{format} {path}");
    let counters = Counters::for_etcd(path.as_str());
    Hub::subscribe(
        &shared.watches,
        key,
        path,
        options,
        WatchEngine::Etcd,
        counters,
        |hub| {
            let engine = Engine {
                shared: Arc::clone(shared),
                machine: Machine::new(shared.prefix_of(path), format),
                hub,
            };
            let span = info_span!("watch", path = %path, %format);
            tokio::spawn(engine.run().instrument(span));
        },
    )
}

struct Engine {
    shared: Arc<Shared>,
    machine: Machine,
    hub: Hub,
}

/// The largest watch response accepted. etcd never splits one revision's
/// events (a `del --prefix` of a large set is one response), so tonic's
/// default of 4 MB could refuse one forever.
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Broken streams in a row, none having applied an event, before the set
/// is loaded again rather than resumed (a response that cannot be
/// received would otherwise be asked for forever).
const BROKEN_BEFORE_RELOAD: u32 = 3;

/// Why a watch stream ended.
enum Ended {
    /// The stream broke (or could not be opened): resume it from the last
    /// revision applied, after a pause.
    Broken(String),
    /// etcd compacted the revisions the watch would resume from, or
    /// cancelled it: load the set again (a get and a diff).
    Resync(String),
    /// No watch is left, or the client is closed.
    Stop,
}

impl Engine {
    async fn run(mut self) {
        let mut closed = self.shared.closed.subscribe();
        let mut backoff = Backoff::new();
        let mut loaded = false;
        // Broken streams in a row that applied nothing.
        let mut broken = 0;
        loop {
            if *closed.borrow() {
                return;
            }
            if !loaded {
                match self.load().await {
                    Ok(()) => loaded = true,
                    Err(error) => {
                        warn!(prefix = self.machine.prefix(), %error, "etcd get failed; keeping the last set and retrying");
                        self.hub.set_health(Health::Disconnected);
                        if self.pause(backoff.next_delay(), &mut closed).await == Flow::Stop {
                            return;
                        }
                        continue;
                    }
                }
            }
            let revision = self.machine.revision();
            let ended = self.follow(&mut closed, &mut backoff).await;
            broken = if self.machine.revision() == revision {
                broken + 1
            } else {
                0
            };
            match ended {
                Ended::Stop => return,
                Ended::Broken(why) if broken < BROKEN_BEFORE_RELOAD => {
                    warn!(prefix = self.machine.prefix(), %why, "etcd watch lost; keeping the last set and resuming it");
                    self.hub.set_health(Health::Disconnected);
                }
                Ended::Broken(why) | Ended::Resync(why) => {
                    warn!(prefix = self.machine.prefix(), %why, "etcd watch out of date; loading the set again");
                    self.hub.set_health(Health::Disconnected);
                    loaded = false;
                    broken = 0;
                }
            }
            if self.pause(backoff.next_delay(), &mut closed).await == Flow::Stop {
                return;
            }
        }
    }

    /// A full get, applied (a diff against what is known).
    async fn load(&mut self) -> crate::Result<()> {
        let counters = Arc::clone(self.hub.counters());
        counters.count_listing();
        let started = std::time::Instant::now();
        let got = get_all(&self.shared, self.machine.prefix()).await;
        counters.time_listing(started.elapsed());
        let (revision, kvs) = got?;
        debug!(
            prefix = self.machine.prefix(),
            keys = kvs.len(),
            revision,
            "prefix loaded"
        );
        self.machine.handle(Input::Loaded { revision, kvs });
        self.publish();
        self.hub.synced(&self.machine);
        Ok(())
    }

    /// Publishes what the inputs since the last call changed.
    fn publish(&mut self) {
        let touched = self.machine.take_touched();
        if !touched.is_empty() {
            self.hub
                .apply(touched.iter().map(String::as_str), &self.machine);
        }
        self.machine.settle();
    }

    /// Follows the watch stream from the last revision applied (what was
    /// missed while it was away comes first), until it ends.
    async fn follow(
        &mut self,
        closed: &mut tokio::sync::watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Ended {
        let prefix = self.machine.prefix().to_owned();
        let options = etcd_client::WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.machine.revision() + 1)
            .with_progress_notify();
        let mut client = self
            .shared
            .etcd
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE);
        let opened = tokio::time::timeout(
            self.shared.config.request_timeout,
            client.watch(prefix.clone(), Some(options)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Ended::Broken(format!("watch not opened: {e}")),
            Err(_) => return Ended::Broken("watch not opened in time".into()),
        };
        let counters = Arc::clone(self.hub.counters());
        loop {
            let deadline = self.hub.next_deadline();
            tokio::select! {
                message = stream.message() => {
                    let response = match message {
                        Ok(Some(response)) => response,
                        Ok(None) => return Ended::Broken("the watch stream ended".into()),
                        Err(e) => return Ended::Broken(format!("the watch stream failed: {e}")),
                    };
                    if response.compact_revision() > 0 {
                        return Ended::Resync(format!(
                            "revision {} compacted (at {})",
                            self.machine.revision() + 1,
                            response.compact_revision()
                        ));
                    }
                    if response.canceled() {
                        return Ended::Resync(format!("watch cancelled: {}", response.cancel_reason()));
                    }
                    if response.created() {
                        // Resumed: what was missed follows in order.
                        backoff.reset();
                        self.hub.set_health(Health::Connected);
                    }
                    for event in response.events() {
                        counters.count_event();
                        let Some(kv) = event.kv() else { continue };
                        let input = match event.event_type() {
                            EventType::Put => Input::Put(Kv {
                                key: kv.key().to_vec(),
                                value: kv.value().to_vec(),
                                create_revision: kv.create_revision(),
                                mod_revision: kv.mod_revision(),
                            }),
                            EventType::Delete => Input::Deleted {
                                key: kv.key().to_vec(),
                                revision: kv.mod_revision(),
                            },
                        };
                        self.machine.handle(input);
                    }
                    self.publish();
                }
                Some(command) = self.hub.commands.recv() => {
                    if self.hub.command(command, &self.machine) == Flow::Stop {
                        return Ended::Stop;
                    }
                }
                _ = sleep_until(deadline) => self.hub.expire(),
                _ = closed.changed() => return Ended::Stop,
            }
        }
    }

    /// Waits `delay` (out of sync), handling commands and held-back
    /// removals meanwhile.
    async fn pause(
        &mut self,
        delay: Duration,
        closed: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Flow {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let deadline = self.hub.next_deadline();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return Flow::Continue,
                Some(command) = self.hub.commands.recv() => {
                    if self.hub.command(command, &self.machine) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                _ = sleep_until(deadline) => self.hub.expire(),
                _ = closed.changed() => return Flow::Stop,
            }
        }
    }
}
