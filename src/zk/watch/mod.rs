//! Watching a serverset: an always-current snapshot and a change stream.
//!
//! A watch task keeps a cache of member data by znode name. Member data is
//! immutable (Finagle reads it once and sets no data watch), so a change of
//! the children list costs reads of the new children only, issued all at
//! once (ZooKeeper requests are pipelined on the session's connection).
//! Child watches are one-shot and re-armed by re-listing, also after every
//! reconnection. While ZooKeeper is unreachable the last good set is kept.
//!
//! Re-listing a large set takes the server a while (about 5 ms for 10,000
//! names), and a one-shot notification does not say which child changed.
//! So a notification first asks for the members a join would have created:
//! ZooKeeper numbers the sequential children of a parent from one counter,
//! so the next join takes the number after the highest one seen so far
//! (or the one after that, if a child the watch never saw took a number).
//! Those two names are read in one multi-read, and a member that joined is
//! published without waiting for the listing; the listing, which stays the
//! truth, follows at once and re-arms the watch. A wrong guess (a leave)
//! costs one round trip, two reads of missing nodes, before the listing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::future::{join_all, BoxFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, warn};
use zookeeper_client as zk;

use crate::format::codec;
use crate::error::{Error, Result};
use crate::zk::health::{Health, HealthWatcher};
use crate::format::member::{sequential_suffix, Member, MEMBER_PREFIX, VECTOR_PREFIX};
use crate::format::path::ServerSetPath;
use crate::set::publisher::{Changes, Publisher};
use crate::format::selection::Selection;
use crate::set::options::WatchOptions;
use crate::set::served::Served;
use crate::zk::session::{connected, Backoff, Session};
use crate::set::snapshot::{Entry, Snapshot};
use crate::set::stabilizer::Stabilizer;
use crate::format::vector::{self, Vector};

/// A watched serverset. Cloning is cheap; the watch runs until the last
/// clone (and the last [`Changes`] taken from it) is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), serversets::Error> {
/// use serversets::{Client, ServerSetPath};
///
/// let client = Client::connect("127.0.0.1:2181").await?;
/// let watch = client.watch(&ServerSetPath::new("/discovery/prod/users")?).await?;
/// for entry in watch.current().iter() {
///     println!("{} weight {}", entry.endpoint, entry.weight);
/// }
/// let mut changes = watch.changes();
/// while let Some(change) = changes.next().await {
///     println!("+{} -{} now {}", change.added.len(), change.removed.len(), change.snapshot.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Watch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: ServerSetPath,
    selection: Selection,
    publisher: Arc<Publisher>,
    health: watch::Receiver<Health>,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watch {
    pub(crate) async fn start(
        session: Session,
        path: ServerSetPath,
        options: WatchOptions,
    ) -> Result<Watch> {
        let selection = options.served().clone();
        let publisher = Arc::new(Publisher::new());
        let (health_tx, health) = watch::channel(Health::Disconnected);
        let (ready_tx, ready) = oneshot::channel();
        let wait = session.shared.config.connect_timeout;
        let watcher = Watcher {
            session,
            path: path.clone(),
            selection: selection.clone(),
            members: HashMap::new(),
            listing: 0,
            next_sequence: None,
            vectors: BTreeMap::new(),
            vector_events: FuturesUnordered::new(),
            entries: Served::default(),
            stabilizer: options.removal_window().map(Stabilizer::new),
            publisher: Arc::clone(&publisher),
            health: health_tx,
            ready: Some(ready_tx),
        };
        let task = tokio::spawn(watcher.run());
        let watch = Watch {
            inner: Arc::new(Inner {
                path,
                selection,
                publisher,
                health,
                task: task.abort_handle(),
            }),
        };
        match tokio::time::timeout(wait, ready).await {
            Ok(Ok(())) => Ok(watch),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout {
                what: format!("initial load of {}", watch.inner.path),
                after: wait,
            }),
        }
    }

    /// The current set: one atomic load, no lock, no await.
    pub fn current(&self) -> Arc<Snapshot> {
        self.inner.publisher.current()
    }

    /// A subscription to changes from now on.
    pub fn changes(&self) -> Changes {
        self.inner
            .publisher
            .subscribe_keeping(Arc::clone(&self.inner) as Arc<dyn Send + Sync>)
    }

    /// Whether the set is in sync with ZooKeeper right now.
    pub fn health(&self) -> Health {
        *self.inner.health.borrow()
    }

    /// Follows this watch's health.
    pub fn health_watcher(&self) -> HealthWatcher {
        HealthWatcher::new(self.inner.health.clone())
    }

    /// The watched path.
    pub fn path(&self) -> &ServerSetPath {
        &self.inner.path
    }

    /// The endpoint selection this watch serves.
    pub fn selection(&self) -> &Selection {
        &self.inner.selection
    }
}

impl crate::Source for Watch {
    fn current(&self) -> Arc<Snapshot> {
        Watch::current(self)
    }

    fn changes(&self) -> Changes {
        Watch::changes(self)
    }

    fn version(&self) -> u64 {
        self.inner.publisher.version()
    }
}

/// A member znode as cached.
struct Cached {
    /// Decoded, or `None` when its data is unusable (warned once).
    member: Option<Arc<Member>>,
    /// The last listing that included it.
    listed: u64,
}

/// Why the set must be synchronised again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// The children changed: a member may have joined.
    Children,
    /// Anything else (reconnection, a weight vector, the path appearing).
    Other,
}

/// How many sequential numbers a children notification guesses: a join,
/// or two back to back (or a join after a child the listings never showed,
/// which took a number too).
const GUESSES: u64 = 2;

/// What ended one synchronisation.
enum Synced {
    /// In sync; this watcher fires on the next children change.
    Children(zk::OneshotWatcher),
    /// The path does not exist; this watcher fires when it is created.
    Missing(zk::OneshotWatcher),
    /// The path appeared meanwhile: list again.
    Again,
}

struct Watcher {
    session: Session,
    path: ServerSetPath,
    selection: Selection,
    /// Member data by znode name.
    members: HashMap<String, Cached>,
    /// Counts listings, to mark the members each one includes.
    listing: u64,
    /// The number after the highest sequential suffix listed or read ahead
    /// since the path (last) appeared: what ZooKeeper gives the next
    /// sequential child.
    next_sequence: Option<u64>,
    /// Weight vectors by znode name.
    vectors: BTreeMap<String, Vector>,
    /// Data watches on vector nodes; each yields the node's name.
    vector_events: FuturesUnordered<BoxFuture<'static, String>>,
    /// The served entries, in snapshot order.
    entries: Served,
    /// Holds removals back, when configured.
    stabilizer: Option<Stabilizer>,
    publisher: Arc<Publisher>,
    health: watch::Sender<Health>,
    ready: Option<oneshot::Sender<()>>,
}

impl Drop for Watcher {
    /// The watch task ended (its client closed, or every handle is gone):
    /// change streams end too instead of waiting forever.
    fn drop(&mut self) {
        self.publisher.close();
    }
}

impl Watcher {
    async fn run(mut self) {
        let mut views = self.session.views();
        let mut backoff = Backoff::new();
        let mut wake = Wake::Other;
        loop {
            let view = match connected(&mut views).await {
                Ok(view) => view,
                Err(_) => {
                    self.set_health(Health::Closed);
                    return;
                }
            };
            let epoch = view.epoch;
            let Some(zk) = view.client else {
                continue;
            };
            let synced = match self.sync(&zk, wake).await {
                Ok(synced) => synced,
                Err(e) => {
                    warn!(path = %self.path, error = %e, "watch out of sync; keeping the last set and retrying");
                    self.set_health(Health::Disconnected);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        changed = views.changed() => if changed.is_err() { return },
                    }
                    continue;
                }
            };
            backoff.reset();
            self.entries.prepare();
            self.set_health(Health::Connected);
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(());
            }
            let watcher = match synced {
                Synced::Again => {
                    wake = Wake::Other;
                    continue;
                }
                Synced::Children(w) | Synced::Missing(w) => w,
            };
            drop(zk);
            match self.wait(watcher, &mut views, epoch).await {
                Some(why) => wake = why,
                None => return,
            }
        }
    }

    /// Waits until the set must be listed again, and says why. `None`: the
    /// client is gone, stop.
    async fn wait(
        &mut self,
        watcher: zk::OneshotWatcher,
        views: &mut watch::Receiver<crate::zk::session::SessionView>,
        epoch: u64,
    ) -> Option<Wake> {
        let mut children = watcher.changed().boxed();
        loop {
            let expiry = self.next_expiry();
            let expired = async {
                match expiry {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = expired => {
                    if let Some(stabilizer) = &mut self.stabilizer {
                        if stabilizer.expire(Instant::now()) {
                            self.publish_stabilized();
                        }
                    }
                }
                event = &mut children => {
                    debug!(path = %self.path, ?event.event_type, ?event.session_state, "watch fired");
                    return Some(if event.event_type == zk::EventType::NodeChildrenChanged {
                        Wake::Children
                    } else {
                        Wake::Other
                    });
                }
                Some(name) = self.vector_events.next() => {
                    // Re-read it on the next listing.
                    self.vectors.remove(&name);
                    return Some(Wake::Other);
                }
                changed = views.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    let view = views.borrow().clone();
                    if view.health == Health::Connected && view.epoch != epoch {
                        // Reconnected: events may have been missed, list again.
                        return Some(Wake::Other);
                    }
                    if view.health != Health::Connected {
                        self.set_health(view.health);
                    }
                    if view.health == Health::Closed {
                        return None;
                    }
                }
            }
        }
    }

    fn set_health(&self, health: Health) {
        self.health.send_if_modified(|h| {
            let changed = *h != health;
            *h = health;
            changed
        });
    }

    /// Lists the children (arming a child watch), reads what is new,
    /// forgets what is gone and publishes the result. Woken by a children
    /// change, it first publishes a member that joined, if it guesses it.
    async fn sync(
        &mut self,
        zk: &zk::Client,
        wake: Wake,
    ) -> std::result::Result<Synced, zk::Error> {
        if let (Wake::Children, Some(next)) = (wake, self.next_sequence) {
            // The listing waits for this: sent together, the server and we
            // would spend on the listing what the join's reads need.
            self.read_ahead(zk, next).await;
        }
        let children = match zk.get_and_watch_children(self.path.as_str()).await {
            Ok((children, _, watcher)) => (children, watcher),
            Err(zk::Error::NoNode) => {
                // No path, no members: the set is empty until it appears.
                self.next_sequence = None;
                let gone = self.members.drain().map(|(name, _)| name).collect();
                self.vectors.clear();
                self.update(Vec::new(), gone, false);
                return match zk.check_and_watch_stat(self.path.as_str()).await? {
                    (None, watcher) => Ok(Synced::Missing(watcher)),
                    (Some(_), _) => Ok(Synced::Again),
                };
            }
            Err(e) => return Err(e),
        };
        let (names, watcher) = children;
        debug!(path = %self.path, children = names.len(), "children listed");
        // Mark what is still listed, then sweep the rest: one lookup per
        // child, no second set.
        self.listing += 1;
        let listing = self.listing;
        let mut new_members = Vec::new();
        let mut vectors_now = HashSet::new();
        let mut next_sequence = self.next_sequence.unwrap_or(0);
        for name in names {
            if let Some(sequence) = sequential_suffix(&name) {
                next_sequence = next_sequence.max(sequence.saturating_add(1));
            }
            if name.starts_with(MEMBER_PREFIX) {
                match self.members.get_mut(&name) {
                    Some(known) => known.listed = listing,
                    None => new_members.push(name),
                }
            } else if name.starts_with(VECTOR_PREFIX) {
                vectors_now.insert(name);
            }
        }
        self.next_sequence = Some(next_sequence);
        let mut gone = Vec::new();
        self.members.retain(|name, known| {
            let keep = known.listed == listing;
            if !keep {
                gone.push(name.clone());
            }
            keep
        });
        let vectors_changed = self.sync_vectors(zk, &vectors_now).await?;
        let (added, failure) = self.read_members(zk, new_members).await;
        self.update(added, gone, vectors_changed);
        match failure {
            Some(e) => Err(e),
            None => Ok(Synced::Children(watcher)),
        }
    }

    /// Reads the members the next sequence numbers would name (in one
    /// multi-read: one request, one round trip), and caches and publishes
    /// those that exist. Anything that fails is left to the listing that
    /// follows (a server before 3.6 refuses multi-reads).
    async fn read_ahead(&mut self, zk: &zk::Client, next: u64) {
        let names: Vec<String> = (0..GUESSES)
            .filter_map(|i| next.checked_add(i))
            .map(|sequence| format!("{MEMBER_PREFIX}{sequence:010}"))
            .filter(|name| !self.members.contains_key(name))
            .collect();
        if names.is_empty() {
            return;
        }
        let mut reader = zk.new_multi_reader();
        for name in &names {
            if reader.add_get_data(&self.path.member_path(name)).is_err() {
                return;
            }
        }
        let Ok(results) = reader.commit().await else {
            return;
        };
        let mut joined = Vec::new();
        for (name, result) in names.into_iter().zip(results) {
            if let zk::MultiReadResult::Data { data, .. } = result {
                // It may be gone before the next listing: count its number
                // as listed, or the next guesses would start below it.
                if let Some(sequence) = sequential_suffix(&name) {
                    self.next_sequence = self.next_sequence.max(Some(sequence.saturating_add(1)));
                }
                let cached = Cached {
                    member: decode(&self.path, &name, &data),
                    listed: self.listing,
                };
                self.members.insert(name.clone(), cached);
                joined.push(name);
            }
        }
        if !joined.is_empty() {
            debug!(path = %self.path, members = ?joined, "joined members read before the listing");
            self.update(joined, Vec::new(), false);
        }
    }

    /// Reads new member nodes, all requests in flight at once. Returns the
    /// names read (decodable or not) and the first transient failure.
    async fn read_members(
        &mut self,
        zk: &zk::Client,
        names: Vec<String>,
    ) -> (Vec<String>, Option<zk::Error>) {
        let results = read_all(zk, &self.path, &names).await;
        let mut added = Vec::with_capacity(names.len());
        let mut failure = None;
        for (name, result) in names.into_iter().zip(results) {
            match result {
                Ok(data) => {
                    let cached = Cached {
                        member: decode(&self.path, &name, &data),
                        listed: self.listing,
                    };
                    self.members.insert(name.clone(), cached);
                    added.push(name);
                }
                // Deleted between list and read: simply absent.
                Err(zk::Error::NoNode) => {}
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        (added, failure)
    }

    /// Reads new vector nodes (with a data watch) and forgets removed ones.
    async fn sync_vectors(
        &mut self,
        zk: &zk::Client,
        present: &HashSet<String>,
    ) -> std::result::Result<bool, zk::Error> {
        let before = self.vectors.len();
        self.vectors.retain(|name, _| present.contains(name));
        let mut changed = self.vectors.len() != before;
        let new: Vec<&String> = present
            .iter()
            .filter(|name| !self.vectors.contains_key(*name))
            .collect();
        for name in new {
            let path = self.path.member_path(name);
            let (data, _, watcher) = match zk.get_and_watch_data(&path).await {
                Ok(read) => read,
                Err(zk::Error::NoNode) => continue,
                Err(e) => return Err(e),
            };
            let name = name.clone();
            let owned = name.clone();
            self.vector_events.push(
                async move {
                    watcher.changed().await;
                    owned
                }
                .boxed(),
            );
            let vector = match vector::parse(&data) {
                Ok((vector, warnings)) => {
                    for warning in warnings {
                        warn!(znode = %path, %warning, "weight vector descriptor skipped");
                    }
                    vector
                }
                Err(why) => {
                    warn!(znode = %path, %why, "weight vector ignored");
                    Vector::default()
                }
            };
            self.vectors.insert(name, vector);
            changed = true;
        }
        Ok(changed)
    }

    /// Applies added and removed member names to the served entries and
    /// publishes a change if there is one.
    fn update(&mut self, added: Vec<String>, gone: Vec<String>, reweigh: bool) {
        let mut added_entries = Vec::new();
        let mut removed_entries = Vec::new();
        if reweigh {
            // Weights may have changed for anyone: rebuild every entry.
            let rebuilt = self
                .members
                .keys()
                .filter_map(|name| self.entry(name))
                .collect();
            let new = Snapshot::new(0, rebuilt);
            let old = Snapshot::from_sorted(0, self.entries.replace(new.entries().to_vec()));
            (added_entries, removed_entries) = crate::set::snapshot::diff(&old, &new);
        } else {
            for name in gone {
                let sequence = crate::format::member::member_sequence(&name).unwrap_or(u64::MAX);
                removed_entries.extend(self.entries.remove((sequence, &name)));
            }
            for name in added {
                if let Some(entry) = self.entry(&name) {
                    if self.entries.insert(&entry) {
                        added_entries.push(entry);
                    }
                }
            }
        }
        if let Some(stabilizer) = &mut self.stabilizer {
            stabilizer.observe(&added_entries, &removed_entries, Instant::now());
            self.publish_stabilized();
            return;
        }
        let first = self.publisher.current().version() == 0;
        if first || !added_entries.is_empty() || !removed_entries.is_empty() {
            self.publisher
                .publish(self.entries.publishable(), added_entries, removed_entries);
        }
    }

    /// Publishes the stabilized view of the entries, if it changed.
    fn publish_stabilized(&mut self) {
        if let Some(stabilizer) = &self.stabilizer {
            let view = stabilizer.view(self.entries.iter());
            self.publisher.replace(view);
        }
    }

    /// When held-back removals are due, if any are.
    fn next_expiry(&self) -> Option<Instant> {
        self.stabilizer.as_ref().and_then(Stabilizer::next_deadline)
    }

    /// The served entry for a cached member, if the selection serves it.
    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        let member = self.members.get(name)?.member.as_ref()?;
        let endpoint = self.selection.select(member)?.clone();
        let weight = vector::weight(self.vectors.values(), name, member.shard, &endpoint);
        Some(Arc::new(Entry::new(
            name,
            endpoint,
            weight,
            Arc::clone(member),
        )))
    }
}

/// How many reads one multi-read request carries.
const MULTI_READ_CHUNK: usize = 500;

/// Reads the data of many member nodes. A few are read with plain
/// pipelined reads; many with multi-reads of [`MULTI_READ_CHUNK`] nodes
/// each (one round trip per chunk, all chunks in flight at once), falling
/// back to plain reads for a chunk the server refuses as a whole (a server
/// before 3.6, or a response over its size limit).
async fn read_all(
    zk: &zk::Client,
    path: &ServerSetPath,
    names: &[String],
) -> Vec<std::result::Result<Vec<u8>, zk::Error>> {
    if names.len() < 8 {
        return read_each(zk, path, names).await;
    }
    let chunks = names.chunks(MULTI_READ_CHUNK).map(|chunk| async move {
        let mut reader = zk.new_multi_reader();
        for name in chunk {
            if reader.add_get_data(&path.member_path(name)).is_err() {
                return read_each(zk, path, chunk).await;
            }
        }
        match reader.commit().await {
            Ok(results) if results.len() == chunk.len() => results
                .into_iter()
                .map(|r| match r {
                    zk::MultiReadResult::Data { data, .. } => Ok(data),
                    zk::MultiReadResult::Error { err } => Err(err),
                    _ => Err(zk::Error::UnexpectedError(
                        "unexpected multi-read result".into(),
                    )),
                })
                .collect(),
            _ => read_each(zk, path, chunk).await,
        }
    });
    join_all(chunks).await.into_iter().flatten().collect()
}

/// Reads member nodes with one pipelined request each.
async fn read_each(
    zk: &zk::Client,
    path: &ServerSetPath,
    names: &[String],
) -> Vec<std::result::Result<Vec<u8>, zk::Error>> {
    let reads = names
        .iter()
        .map(|name| zk.get_data(&path.member_path(name)));
    join_all(reads)
        .await
        .into_iter()
        .map(|r| r.map(|(data, _)| data))
        .collect()
}

/// Decodes one member, warning (once, since the result is cached) about
/// anything unusable.
fn decode(path: &ServerSetPath, name: &str, data: &[u8]) -> Option<Arc<Member>> {
    match codec::decode(data) {
        Ok(decoded) => {
            for warning in decoded.warnings {
                warn!(znode = %path.member_path(name), %warning, "member field ignored");
            }
            Some(Arc::new(decoded.member))
        }
        Err(e) => {
            warn!(znode = %path.member_path(name), error = %e, "member skipped: unusable data");
            None
        }
    }
}
