//! `GET /v1/events?path=P[...]`: a set as Server-Sent Events (Flynn's
//! discoverd stream): one `up` per current member, a `leader`, a
//! `current` (the whole set), then `up` / `down` / `leader` as the set
//! changes, and `health` at start and on each change of the watch's or
//! the session's health (on etcd, `session` is the etcd connection's).
//! Every event has an `id:`; a comment every 15 s keeps idle connections
//! alive.
//!
//! A client that falls behind gets no backlog: the watch's change stream
//! coalesces what it missed, and a change that spans several versions is
//! sent as a fresh `current` snapshot.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use serversets::{Changes, Entry, Health, HealthWatcher, Snapshot};
use tokio::sync::watch;

use super::api::{pairs, Pairs};
use super::error::ApiError;
use super::query::SetQuery;
use super::Gateway;

/// How often an idle stream sends a comment.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// How many event streams the gateway serves at once (503 beyond).
pub(crate) const MAX_STREAMS: usize = 10_000;

/// The SSE route.
pub async fn events(
    State(gateway): State<Arc<Gateway>>,
    query: Pairs,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let query = SetQuery::parse(&pairs(query)?)?;
    let permit = Arc::clone(&gateway.streams)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::unavailable(format!("{MAX_STREAMS} event streams are open already"))
        })?;
    let watch = gateway.watch(&query).await?;
    let feed = Feed::new(
        watch.changes(),
        watch.health_watcher(),
        gateway.backend.health_watcher(),
        gateway.shutdown.clone(),
        permit,
    );
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat")))
}

/// One subscriber's stream.
struct Feed {
    changes: Changes,
    watch_health: HealthWatcher,
    session_health: HealthWatcher,
    /// The healths last sent.
    sent: (Health, Health),
    /// Whether each health is still followed (its source lives).
    following: (bool, bool),
    /// The initial set, sent one `up` at a time (not queued at once: a set
    /// of 100,000 would be that many events in memory per subscriber),
    /// and how many of its members are sent.
    initial: Option<(Arc<Snapshot>, usize)>,
    /// The version and leader (by name) last sent.
    version: u64,
    leader: Option<String>,
    next_id: u64,
    queue: VecDeque<Event>,
    shutdown: watch::Receiver<bool>,
    /// Counts connected subscribers while this one lives.
    clients: metrics::Gauge,
    /// One of the gateway's stream slots, while this one lives.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.clients.decrement(1.0);
    }
}

impl Feed {
    fn new(
        changes: Changes,
        watch_health: HealthWatcher,
        session_health: HealthWatcher,
        shutdown: watch::Receiver<bool>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        let snapshot = Arc::clone(changes.snapshot());
        let sent = (watch_health.current(), session_health.current());
        let clients = metrics::gauge!(crate::metric_names::SSE_CLIENTS);
        clients.increment(1.0);
        let mut feed = Feed {
            changes,
            watch_health,
            session_health,
            sent,
            following: (true, true),
            version: snapshot.version(),
            leader: None,
            next_id: 0,
            queue: VecDeque::new(),
            shutdown,
            clients,
            _permit: permit,
            initial: Some((snapshot, 0)),
        };
        feed.next_initial();
        feed
    }

    /// Queues the next event of the initial set: its members' `up`s one by
    /// one, then `leader`, `current` and `health`.
    fn next_initial(&mut self) {
        let Some((snapshot, sent)) = self.initial.take() else {
            return;
        };
        match snapshot.entries().get(sent) {
            Some(entry) => {
                let entry = Arc::clone(entry);
                self.push("up", &*entry);
                self.initial = Some((snapshot, sent + 1));
            }
            None => {
                self.push_leader(&snapshot, true);
                self.push("current", snapshot.entries());
                self.push_health();
            }
        }
    }

    /// The next event; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.initial.is_some() {
                self.next_initial();
                continue;
            }
            tokio::select! {
                change = self.changes.next() => {
                    let change = change?;
                    let snapshot = &change.snapshot;
                    if snapshot.version() > self.version + 1 {
                        // Fell behind: the whole set, not a backlog.
                        self.push("current", snapshot.entries());
                    } else {
                        for gone in &change.removed {
                            self.push("down", &**gone);
                        }
                        for joined in &change.added {
                            self.push("up", &**joined);
                        }
                    }
                    self.version = snapshot.version();
                    self.push_leader(snapshot, false);
                }
                health = self.watch_health.wait_change(self.sent.0), if self.following.0 => {
                    // Closed is the last word: a source that is gone would
                    // answer at once forever.
                    self.following.0 = health != Health::Closed;
                    self.sent.0 = health;
                    self.push_health();
                }
                health = self.session_health.wait_change(self.sent.1), if self.following.1 => {
                    self.following.1 = health != Health::Closed;
                    self.sent.1 = health;
                    self.push_health();
                }
                _ = self.shutdown.changed() => return None,
            }
        }
    }

    /// Queues an event of this type with `data` as JSON.
    fn push(&mut self, kind: &str, data: &(impl Serialize + ?Sized)) {
        self.next_id += 1;
        // Entries and plain maps always serialize.
        let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned());
        self.queue.push_back(
            Event::default()
                .event(kind)
                .id(self.next_id.to_string())
                .data(json),
        );
    }

    /// Queues a `leader` event if the leader changed (or `always`).
    fn push_leader(&mut self, snapshot: &Snapshot, always: bool) {
        let leader = snapshot.leader();
        let name = leader.map(|e| e.name.clone());
        if always || name != self.leader {
            self.leader = name;
            let data: Option<&Entry> = leader.map(|e| &**e);
            self.push("leader", &data);
        }
    }

    fn push_health(&mut self) {
        let health = serde_json::json!({
            "watch": format!("{:?}", self.sent.0),
            "session": format!("{:?}", self.sent.1),
        });
        self.push("health", &health);
    }
}
