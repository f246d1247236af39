//! The state of one watched set, pure: what the watch knows of the
//! children of the set path, and what it must read to know more.
//!
//! The driver feeds it what ZooKeeper said ([`Input`]: a listing, a child
//! created, deleted or changed, the result of a read) and takes back
//! [`Actions`]: the nodes to read, whether to list the set again, and the
//! member names whose entries may have changed (for the [`View`]s). It
//! never waits and never does I/O, so every sequence of inputs, including
//! lost events and resynchronisations, can be tested without a server.
//!
//! Reads carry a ticket: a read whose node was deleted, re-read or listed
//! away since it was issued is stale, and its result is ignored. Results
//! and events may arrive in any order relative to each other; only a
//! listing must be fed before the events that follow it on the wire
//! (the driver awaits it directly, so they wait in their queue).
//!
//! [`View`]: crate::set::view::View

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tracing::{debug, warn};

use crate::format::codec;
use crate::format::member::{sequential_suffix, Member, MEMBER_PREFIX, VECTOR_PREFIX};
use crate::format::path::ServerSetPath;
use crate::format::selection::Selection;
use crate::format::vector::{self, Vector};
use crate::set::snapshot::Entry;
use crate::set::view::Members;

/// Identifies one read, so that a stale result is recognised.
pub(crate) type Ticket = u64;

/// Something ZooKeeper said about the set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// The children of the set path, all of them, as of now.
    Listed {
        /// Their names.
        names: Vec<String>,
        /// The set path's creation (its `czxid`): a path deleted and
        /// created again numbers its children from zero again, so a name
        /// cached from before may now be another member.
        incarnation: i64,
    },
    /// The set path does not exist (listed, or deleted).
    Missing,
    /// A child was created (a persistent watch's `NodeCreated`).
    Created(String),
    /// A child was deleted.
    Deleted(String),
    /// A child's data changed.
    DataChanged(String),
    /// A read this machine asked for finished.
    Read {
        /// The child read.
        name: String,
        /// The ticket it was asked with.
        ticket: Ticket,
        /// What came back.
        result: Read,
    },
}

/// The outcome of reading one child.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Read {
    /// Its data.
    Data(Vec<u8>),
    /// It does not exist (any more).
    Missing,
    /// The read failed (connection lost, timeout): the set must be listed
    /// again once ZooKeeper answers.
    Failed,
}

/// What the driver must do after some inputs.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Actions {
    /// Children to read, each with its ticket.
    pub reads: Vec<(String, Ticket)>,
    /// List the set again (a read failed).
    pub relist: bool,
    /// Members whose entries may have changed (joined, left or re-read),
    /// possibly repeated.
    pub touched: Vec<String>,
    /// The weight vectors changed: every entry may have.
    pub reweigh: bool,
}

impl Actions {
    /// Whether views have anything to apply.
    pub(crate) fn changed(&self) -> bool {
        self.reweigh || !self.touched.is_empty()
    }
}

/// A cached member.
#[derive(Debug)]
struct Slot {
    /// Decoded, or `None` when its data is unusable (warned once).
    member: Option<Arc<Member>>,
    /// The last listing that included it (or the listing current when it
    /// was read).
    mark: u64,
}

/// A cached weight vector.
#[derive(Debug)]
struct VectorSlot {
    vector: Vector,
    mark: u64,
}

/// A read in flight.
#[derive(Debug)]
struct Pending {
    ticket: Ticket,
    mark: u64,
}

/// The members and weight vectors of one set, as last known.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    members: HashMap<String, Slot>,
    vectors: BTreeMap<String, VectorSlot>,
}

impl Cache {
    /// How many members are cached (decodable or not).
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }
}

impl Members for Cache {
    fn entry(&self, name: &str, selection: &Selection) -> Option<Arc<Entry>> {
        let member = self.members.get(name)?.member.as_ref()?;
        let endpoint = selection.select(member)?.clone();
        let vectors = self.vectors.values().map(|v| &v.vector);
        let weight = vector::weight(vectors, name, member.shard, &endpoint);
        Some(Arc::new(Entry::new(
            name,
            endpoint,
            weight,
            Arc::clone(member),
        )))
    }

    fn names(&self) -> Vec<&str> {
        self.members.keys().map(String::as_str).collect()
    }
}

/// What a child's name says it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Member,
    Vector,
    Other,
}

fn kind(name: &str) -> Kind {
    if name.starts_with(MEMBER_PREFIX) {
        Kind::Member
    } else if name.starts_with(VECTOR_PREFIX) {
        Kind::Vector
    } else {
        Kind::Other
    }
}

/// The watch's knowledge of one set.
#[derive(Debug)]
pub(crate) struct Machine {
    path: ServerSetPath,
    cache: Cache,
    pending: HashMap<String, Pending>,
    /// Children whose read failed: read again by the next listing, cached
    /// or not (a failed re-read leaves stale data in the cache).
    retry: HashSet<String>,
    /// Counts listings, to mark what each one includes.
    mark: u64,
    next_ticket: Ticket,
    /// The number after the highest sequential suffix seen since the path
    /// (last) appeared: what ZooKeeper gives the next sequential child.
    next_sequence: Option<u64>,
    /// Read every listed weight vector again, cached or not.
    reread_vectors: bool,
    /// The set path's `czxid` as last listed.
    incarnation: Option<i64>,
    actions: Actions,
}

/// How many sequence numbers [`Machine::guess_joins`] reads ahead: a join,
/// or two back to back (or a join after a child never seen, which took a
/// number too).
const GUESSES: u64 = 2;

impl Machine {
    /// Knows nothing yet.
    pub(crate) fn new(path: ServerSetPath) -> Self {
        Machine {
            path,
            cache: Cache::default(),
            pending: HashMap::new(),
            retry: HashSet::new(),
            mark: 0,
            next_ticket: 0,
            next_sequence: None,
            reread_vectors: false,
            incarnation: None,
            actions: Actions::default(),
        }
    }

    /// Whether a listing reads every weight vector again. A listing shows
    /// names only: a vector whose data changed while the connection was
    /// down (its event lost) looks the same. Members are written once, but
    /// vectors are rewritten by operators; there are few of them, so the
    /// persistent engine reads them all on every resync. The one-shot
    /// engine keeps a data watch on each instead, which ZooKeeper fires on
    /// reconnection for changes it missed.
    pub(crate) fn reread_vectors_when_listed(&mut self, on: bool) {
        self.reread_vectors = on;
    }

    /// The cache the views read.
    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    /// How many reads are in flight.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The actions accumulated since the last call.
    pub(crate) fn take_actions(&mut self) -> Actions {
        std::mem::take(&mut self.actions)
    }

    /// Takes one input into account.
    pub(crate) fn handle(&mut self, input: Input) {
        match input {
            Input::Listed { names, incarnation } => {
                if self.incarnation.is_some_and(|known| known != incarnation) {
                    debug!(path = %self.path, "the set path was created again: every cached member is forgotten");
                    self.missing();
                }
                self.incarnation = Some(incarnation);
                self.listed(names)
            }
            Input::Missing => self.missing(),
            Input::Created(name) => self.created(name),
            Input::Deleted(name) => self.deleted(&name),
            Input::DataChanged(name) => self.data_changed(name),
            Input::Read {
                name,
                ticket,
                result,
            } => self.read_done(name, ticket, result),
        }
    }

    /// Reads the members ZooKeeper's next sequence numbers would name, if
    /// not known (the one-shot engine's read-ahead: a children
    /// notification does not say which child joined).
    pub(crate) fn guess_joins(&mut self) {
        let Some(next) = self.next_sequence else {
            return;
        };
        for sequence in (0..GUESSES).filter_map(|i| next.checked_add(i)) {
            let name = format!("{MEMBER_PREFIX}{sequence:010}");
            if !self.cache.members.contains_key(&name) && !self.pending.contains_key(&name) {
                self.read(name);
            }
        }
    }

    fn listed(&mut self, names: Vec<String>) {
        self.mark += 1;
        let mark = self.mark;
        let mut next_sequence = self.next_sequence.unwrap_or(0);
        for name in names {
            if let Some(sequence) = sequential_suffix(&name) {
                next_sequence = next_sequence.max(sequence.saturating_add(1));
            }
            let known = match kind(&name) {
                Kind::Member => self.cache.members.get_mut(&name).map(|s| &mut s.mark),
                Kind::Vector => self.cache.vectors.get_mut(&name).map(|s| &mut s.mark),
                Kind::Other => {
                    debug!(path = %self.path, child = %name, "child ignored: neither a member nor a weight vector");
                    continue;
                }
            };
            let pending = self.pending.get_mut(&name).map(|p| p.mark = mark).is_some();
            match known {
                Some(known) => {
                    *known = mark;
                    // A failed read, or a vector whose data a listing cannot
                    // vouch for: read it again, unless a read is on its way.
                    let again = self.retry.contains(&name)
                        || (self.reread_vectors && kind(&name) == Kind::Vector);
                    if again && !pending {
                        self.read(name);
                    }
                }
                None if !pending => self.read(name),
                None => {}
            }
        }
        self.next_sequence = Some(next_sequence);
        // Sweep what the listing no longer has.
        let touched = &mut self.actions.touched;
        self.cache.members.retain(|name, slot| {
            let keep = slot.mark == mark;
            if !keep {
                touched.push(name.clone());
            }
            keep
        });
        let vectors = self.cache.vectors.len();
        self.cache.vectors.retain(|_, slot| slot.mark == mark);
        self.actions.reweigh |= self.cache.vectors.len() != vectors;
        self.pending.retain(|_, pending| pending.mark == mark);
        // Failed reads of names no longer listed, and of names read anew.
        self.retry.clear();
    }

    fn missing(&mut self) {
        self.incarnation = None;
        self.actions
            .touched
            .extend(self.cache.members.drain().map(|(name, _)| name));
        self.cache.vectors.clear();
        self.pending.clear();
        self.retry.clear();
        self.next_sequence = None;
    }

    fn created(&mut self, name: String) {
        match kind(&name) {
            Kind::Member => {
                if let Some(sequence) = sequential_suffix(&name) {
                    let next = sequence.saturating_add(1);
                    self.next_sequence = Some(self.next_sequence.map_or(next, |n| n.max(next)));
                }
                if !self.cache.members.contains_key(&name) && !self.pending.contains_key(&name) {
                    self.read(name);
                }
            }
            Kind::Vector => self.read(name),
            Kind::Other => {
                debug!(path = %self.path, child = %name, "event ignored: neither a member nor a weight vector")
            }
        }
    }

    fn deleted(&mut self, name: &str) {
        self.pending.remove(name);
        self.retry.remove(name);
        match kind(name) {
            Kind::Member => {
                if self.cache.members.remove(name).is_some() {
                    self.actions.touched.push(name.to_owned());
                }
            }
            Kind::Vector => {
                self.actions.reweigh |= self.cache.vectors.remove(name).is_some();
            }
            Kind::Other => {}
        }
    }

    fn data_changed(&mut self, name: String) {
        match kind(&name) {
            // Members are written once, but an old writer may update one
            // in place (Twitter commons' status updates): read it again.
            Kind::Member | Kind::Vector => self.read(name),
            Kind::Other => {}
        }
    }

    /// Asks for a read of `name`; any read of it in flight becomes stale.
    fn read(&mut self, name: String) {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.pending.insert(
            name.clone(),
            Pending {
                ticket,
                mark: self.mark,
            },
        );
        self.actions.reads.push((name, ticket));
    }

    fn read_done(&mut self, name: String, ticket: Ticket, result: Read) {
        match self.pending.get(&name) {
            Some(pending) if pending.ticket == ticket => {}
            // Deleted, listed away or read again since: stale.
            _ => return,
        }
        self.pending.remove(&name);
        let mark = self.mark;
        match (kind(&name), result) {
            (_, Read::Failed) => {
                self.retry.insert(name);
                self.actions.relist = true;
            }
            (Kind::Member, Read::Data(data)) => {
                if let Some(sequence) = sequential_suffix(&name) {
                    let next = sequence.saturating_add(1);
                    self.next_sequence = Some(self.next_sequence.map_or(next, |n| n.max(next)));
                }
                let member = decode(&self.path, &name, &data);
                self.cache
                    .members
                    .insert(name.clone(), Slot { member, mark });
                self.actions.touched.push(name);
            }
            (Kind::Member, Read::Missing) => {
                if self.cache.members.remove(&name).is_some() {
                    self.actions.touched.push(name);
                }
            }
            (Kind::Vector, Read::Data(data)) => {
                let vector = parse_vector(&self.path, &name, &data);
                self.cache.vectors.insert(name, VectorSlot { vector, mark });
                self.actions.reweigh = true;
            }
            (Kind::Vector, Read::Missing) => {
                self.actions.reweigh |= self.cache.vectors.remove(&name).is_some();
            }
            (Kind::Other, _) => {}
        }
    }
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

/// Parses one weight vector; an unusable one weighs nothing.
fn parse_vector(path: &ServerSetPath, name: &str, data: &[u8]) -> Vector {
    match vector::parse(data) {
        Ok((vector, warnings)) => {
            for warning in warnings {
                warn!(znode = %path.member_path(name), %warning, "weight vector descriptor skipped");
            }
            vector
        }
        Err(why) => {
            warn!(znode = %path.member_path(name), %why, "weight vector ignored");
            Vector::default()
        }
    }
}

#[cfg(test)]
mod tests;
