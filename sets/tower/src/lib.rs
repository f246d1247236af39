//! # serversets-tower
//!
//! A serverset as a [`tower::discover::Discover`] stream: a ZooKeeper
//! [`Watch`](serversets::Watch), or any other [`Source`] such as a
//! `serversets::FixedSet`, feeds tower's balancers
//! ([`tower::balance::p2c::Balance`]) and tonic's balanced channels.
//!
//! [`Discovery`] yields [`Change::Insert`] for every member of the set as it
//! is when the stream is made, then follows the set: for each change,
//! [`Change::Remove`] for the members that left, then [`Change::Insert`] for
//! those that joined. Members are keyed by their znode name
//! ([`Entry::name`]), so two members on the same host and port stay two
//! services; a member whose weight changed is removed and inserted again.
//! The service for a member is built by a closure from its [`Entry`]: a
//! tower service, a tonic `Endpoint`, a connection, anything.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use serversets::FixedSet;
//! use tower::balance::p2c::Balance;
//! use tower::load::{CompleteOnResponse, PendingRequestsDiscover};
//! use tower::{service_fn, Service, ServiceExt};
//! use serversets_tower::Discovery;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let set = FixedSet::parse("10.0.0.1:8080,10.0.0.2:8080")?;
//!
//! // One service per member; here it only says which member answered.
//! let discovery = Discovery::new(&set, |entry| {
//!     let endpoint = entry.endpoint.to_string();
//!     service_fn(move |request: &'static str| {
//!         let answer = format!("{endpoint} answers {request}");
//!         async move { Ok::<_, Infallible>(answer) }
//!     })
//! });
//!
//! // Power of two choices over the least pending requests.
//! let mut balance = Balance::new(PendingRequestsDiscover::new(
//!     discovery,
//!     CompleteOnResponse::default(),
//! ));
//! let answer = balance.ready().await?.call("ping").await?;
//! assert!(answer.ends_with(":8080 answers ping"));
//!
//! // The balancer follows the set.
//! set.replace_endpoints(["10.0.0.3:8080".parse()?]);
//! let answer = balance.ready().await?.call("ping").await?;
//! assert_eq!(answer, "10.0.0.3:8080 answers ping");
//! # Ok(()) }
//! ```
//!
//! ## tonic
//!
//! [`tonic::transport::Channel::balance_channel`] returns a
//! `tokio::sync::mpsc::Sender` of tonic's own `Change` type (the same two
//! variants); [`Discovery::forward_with`] sends the set into it, converting
//! each change, until the source ends or the channel is dropped:
//!
//! ```ignore
//! use tonic::transport::{channel, Channel, Endpoint};
//!
//! let watch = client.watch(&path).await?;
//! let (channel, sender) = Channel::balance_channel::<String>(64);
//! let discovery = serversets_tower::Discovery::filter_map(&watch, |entry| {
//!     Endpoint::from_shared(format!("http://{}", entry.endpoint)).ok()
//! });
//! tokio::spawn(discovery.forward_with(sender, |change| match change {
//!     serversets_tower::Change::Insert(key, endpoint) => channel::Change::Insert(key, endpoint),
//!     serversets_tower::Change::Remove(key) => channel::Change::Remove(key),
//! }));
//! let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
//! ```
//!
//! The repository's `examples/grpc_balance.rs` runs that against real
//! tonic servers registered in ZooKeeper.
//!
//! [`tonic::transport::Channel::balance_channel`]: https://docs.rs/tonic/0.14/tonic/transport/channel/struct.Channel.html#method.balance_channel

#![warn(missing_docs)]

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, FusedStream};
use futures::{Stream, StreamExt};
use serversets::{Entry, Snapshot, Source};
use tokio::sync::mpsc::Sender;

/// A change of a discovered set: tower's [`tower::discover::Change`], keyed
/// here by the member's znode name.
pub use tower::discover::Change;

type Make<S> = Box<dyn FnMut(&Entry) -> Option<S> + Send>;

/// A [`Source`] as a stream of [`Change`]s keyed by member
/// ([`Entry::name`]), with a service of type `S` built for each member.
///
/// It is a `TryStream` of `Change<String, S>` that never fails, so tower
/// implements [`tower::discover::Discover`] for it: it can be given to
/// [`tower::balance::p2c::Balance`], wrapped in
/// [`tower::load::PendingRequestsDiscover`] or
/// [`tower::load::PeakEwmaDiscover`], or sent into a channel with
/// [`Discovery::forward`].
///
/// First it yields an insert for every entry of the set as it is when the
/// `Discovery` is made, in snapshot order (oldest member first); then, for
/// every change of the set, a remove for each entry that left or changed,
/// then an insert for each entry that joined or changed. A slow reader
/// gets several changes of the set combined into one, as
/// [`serversets::Changes`] does. Services are built when the stream is
/// polled, not before.
///
/// The stream ends when the source is gone for good (a
/// [`Watch`](serversets::Watch) never ends while the stream lives: the
/// stream keeps it running; a fixed set ends when every handle on it is
/// dropped). It is fused: polling it after the end returns `None` again.
///
/// tower's balancers do not use weights; `make` sees each entry's
/// [`Entry::weight`] (and its [`Entry::member`] data), to build a service
/// that uses it, or to leave members out with [`Discovery::filter_map`].
pub struct Discovery<S> {
    make: Make<S>,
    /// The set to insert first, until the first poll.
    initial: Option<Arc<Snapshot>>,
    /// The source's changes; `None` once the source has ended.
    changes: Option<BoxStream<'static, serversets::Change>>,
    /// Changes built but not yet yielded.
    pending: VecDeque<Change<String, S>>,
    /// The keys inserted and not removed since.
    live: HashSet<String>,
}

impl<S> Discovery<S> {
    /// Discovers the members of `source`, building each member's service
    /// with `make`.
    pub fn new<Src, F>(source: &Src, mut make: F) -> Self
    where
        Src: Source + ?Sized,
        F: FnMut(&Entry) -> S + Send + 'static,
    {
        Self::filter_map(source, move |entry| Some(make(entry)))
    }

    /// Discovers the members of `source` for which `make` builds a service:
    /// an entry for which it returns `None` is left out (no insert, and no
    /// remove when it leaves). For fallible builds, such as a tonic
    /// `Endpoint` from a host name, or to select members by their data.
    pub fn filter_map<Src, F>(source: &Src, make: F) -> Self
    where
        Src: Source + ?Sized,
        F: FnMut(&Entry) -> Option<S> + Send + 'static,
    {
        let changes = source.changes();
        // The subscription starts from this snapshot, so the inserts and
        // the changes that follow them fit together exactly.
        let initial = Arc::clone(changes.snapshot());
        Discovery {
            make: Box::new(make),
            initial: Some(initial),
            changes: Some(changes.boxed()),
            pending: VecDeque::new(),
            live: HashSet::new(),
        }
    }

    /// The keys (member znode names) of the inserts this stream has
    /// yielded or queued, less those removed since: empty before the first
    /// poll.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.live.iter().map(String::as_str)
    }

    /// Sends this stream's changes into `sender` (see [`forward`]) until
    /// the source ends or the receiver is dropped, and says which.
    pub async fn forward(self, sender: Sender<Change<String, S>>) -> Stopped {
        match forward(self, sender).await {
            Ok(stopped) => stopped,
            Err(never) => match never {},
        }
    }

    /// Sends this stream's changes into `sender`, converting each with
    /// `convert` (see [`forward_with`]), until the source ends or the
    /// receiver is dropped, and says which. For tonic's balanced channel,
    /// whose sender takes tonic's own `Change` type.
    pub async fn forward_with<T, F>(self, sender: Sender<T>, convert: F) -> Stopped
    where
        F: FnMut(Change<String, S>) -> T,
    {
        match forward_with(self, sender, convert).await {
            Ok(stopped) => stopped,
            Err(never) => match never {},
        }
    }

    /// Queues a remove for each of `removed` that was inserted, then an
    /// insert for each of `added` that `make` builds a service for.
    fn queue(&mut self, removed: &[Arc<Entry>], added: &[Arc<Entry>]) {
        for entry in removed {
            if self.live.remove(&entry.name) {
                self.pending.push_back(Change::Remove(entry.name.clone()));
            }
        }
        for entry in added {
            match (self.make)(entry) {
                Some(service) => {
                    self.live.insert(entry.name.clone());
                    self.pending
                        .push_back(Change::Insert(entry.name.clone(), service));
                }
                // Not in the set any more under this key.
                None if self.live.remove(&entry.name) => {
                    self.pending.push_back(Change::Remove(entry.name.clone()));
                }
                None => {}
            }
        }
    }
}

// The services are only ever moved, never pinned.
impl<S> Unpin for Discovery<S> {}

impl<S> Stream for Discovery<S> {
    type Item = Result<Change<String, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(change) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(change)));
            }
            if let Some(initial) = this.initial.take() {
                this.queue(&[], initial.entries());
                continue;
            }
            let Some(changes) = this.changes.as_mut() else {
                return Poll::Ready(None);
            };
            match changes.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    this.changes = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(change)) => this.queue(&change.removed, &change.added),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.changes {
            Some(_) => (self.pending.len(), None),
            // Ended: only what is queued is left (the first snapshot is
            // always queued before the source is polled).
            None => (self.pending.len(), Some(self.pending.len())),
        }
    }
}

impl<S> FusedStream for Discovery<S> {
    fn is_terminated(&self) -> bool {
        self.changes.is_none() && self.pending.is_empty() && self.initial.is_none()
    }
}

impl<S> fmt::Debug for Discovery<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("live", &self.live.len())
            .field("pending", &self.pending.len())
            .field("started", &self.initial.is_none())
            .field("ended", &self.changes.is_none())
            .finish()
    }
}

/// Why [`forward`] (or [`forward_with`]) returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The stream ended: its source is gone for good.
    SourceEnded,
    /// The receiving side was dropped (for tonic: every clone of the
    /// balanced channel).
    ReceiverDropped,
}

/// Sends every change of `changes` into `sender`, in order, until the
/// stream ends ([`Stopped::SourceEnded`]) or the receiver is dropped
/// ([`Stopped::ReceiverDropped`], noticed also while the stream is idle);
/// an error of the stream is returned as it is (a [`Discovery`] never
/// fails).
///
/// It waits for room in the channel, so a full channel holds the stream
/// back rather than growing.
///
/// ```
/// use serversets::FixedSet;
/// use serversets_tower::{forward, Change, Discovery, Stopped};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let set = FixedSet::parse("10.0.0.1:80")?;
/// let (sender, mut receiver) = tokio::sync::mpsc::channel(16);
/// let task = tokio::spawn(forward(Discovery::new(&set, |e| e.endpoint.port), sender));
/// let first = receiver.recv().await;
/// assert!(matches!(first, Some(Change::Insert(key, 80)) if key == "10.0.0.1:80"));
/// drop(set); // the source ends
/// assert_eq!(task.await?, Ok(Stopped::SourceEnded));
/// # Ok(()) }
/// ```
pub async fn forward<St, K, S, E>(changes: St, sender: Sender<Change<K, S>>) -> Result<Stopped, E>
where
    St: Stream<Item = Result<Change<K, S>, E>>,
{
    forward_with(changes, sender, |change| change).await
}

/// [`forward`], converting each change with `convert` before sending it:
/// for a channel of another change type, such as tonic's
/// `tonic::transport::channel::Change`.
///
/// `convert` is called once there is room in the channel, and the converted
/// change is in the channel as soon as it returns.
pub async fn forward_with<St, K, S, E, T, F>(
    changes: St,
    sender: Sender<T>,
    mut convert: F,
) -> Result<Stopped, E>
where
    St: Stream<Item = Result<Change<K, S>, E>>,
    F: FnMut(Change<K, S>) -> T,
{
    let mut changes = std::pin::pin!(changes);
    loop {
        let next = tokio::select! {
            biased;
            () = sender.closed() => return Ok(Stopped::ReceiverDropped),
            next = changes.next() => next,
        };
        let Some(change) = next.transpose()? else {
            return Ok(Stopped::SourceEnded);
        };
        let Ok(permit) = sender.reserve().await else {
            return Ok(Stopped::ReceiverDropped);
        };
        permit.send(convert(change));
    }
}

#[cfg(test)]
mod tests;
