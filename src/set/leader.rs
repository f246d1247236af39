//! Leader changes of a set as a stream (Flynn's leader events): the
//! leader is the oldest live member, the one with the lowest sequence
//! number, as [`Snapshot::leader`](crate::Snapshot::leader) says.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures::Stream;

use crate::set::publisher::Changes;
use crate::set::snapshot::Entry;
use crate::set::source::Source;

/// The leader of a set, each time it changes: a [`futures::Stream`] whose
/// first item is the leader now (`None` when the set is empty), then one
/// item per change of leader. It ends when its source is gone.
///
/// ```
/// use futures::StreamExt;
/// use serversets::{FixedSet, Leaders};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let set = FixedSet::parse("10.0.0.1:80,10.0.0.2:80")?;
/// let mut leaders = Leaders::of(&set);
/// let first = leaders.next().await.flatten().map(|e| e.endpoint.to_string());
/// assert_eq!(first.as_deref(), Some("10.0.0.1:80"));
/// set.replace_endpoints(["10.0.0.2:80".parse()?]);
/// let next = leaders.next().await.flatten().map(|e| e.endpoint.to_string());
/// assert_eq!(next.as_deref(), Some("10.0.0.2:80"));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Leaders {
    changes: Changes,
    /// The leader last yielded (by name), once the first item is out.
    last: Option<Option<String>>,
}

impl Leaders {
    /// Follows the leader of `source`.
    pub fn of(source: &(impl Source + ?Sized)) -> Leaders {
        Leaders {
            changes: source.changes(),
            last: None,
        }
    }

    /// Yields `leader` unless it is the one last yielded.
    fn offer(&mut self, leader: Option<&Arc<Entry>>) -> Option<Option<Arc<Entry>>> {
        let name = leader.map(|e| e.name.clone());
        if self.last.as_ref() == Some(&name) {
            return None;
        }
        self.last = Some(name);
        Some(leader.cloned())
    }
}

impl Stream for Leaders {
    type Item = Option<Arc<Entry>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.last.is_none() {
            let now = Arc::clone(this.changes.snapshot());
            if let Some(first) = this.offer(now.leader()) {
                return Poll::Ready(Some(first));
            }
        }
        loop {
            let Some(change) = ready!(Pin::new(&mut this.changes).poll_next(cx)) else {
                return Poll::Ready(None);
            };
            if let Some(leader) = this.offer(change.snapshot.leader()) {
                return Poll::Ready(Some(leader));
            }
        }
    }
}
